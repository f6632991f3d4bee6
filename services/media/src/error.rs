use photos_imaging::ImagingError;
use photos_runtime::ErrorKind;

#[derive(Debug, thiserror::Error)]
pub enum MediaError {
    #[error(transparent)]
    Server(#[from] photos_runtime::server::ServerError),
    #[error(transparent)]
    Upstream(#[from] photos_runtime::client::ChannelError),
    #[error(transparent)]
    Image(#[from] ImagingError),
    #[error("{0}")]
    InvalidArgument(String),
    #[error("{0}")]
    TooLarge(String),
    /// A storage call failed; the downstream kind is kept (NOT_FOUND stays NOT_FOUND).
    #[error("storage {operation} failed for {key:?}: {message}")]
    Storage {
        operation: &'static str,
        key: String,
        kind: ErrorKind,
        message: String,
    },
    #[error("image worker failed: {0}")]
    Worker(String),
}

impl MediaError {
    pub fn storage(operation: &'static str, key: &str, status: &tonic::Status) -> Self {
        MediaError::Storage {
            operation,
            key: key.to_owned(),
            kind: ErrorKind::of_status(status),
            message: status.message().to_owned(),
        }
    }

    pub fn kind(&self) -> ErrorKind {
        match self {
            MediaError::Server(_) | MediaError::Upstream(_) | MediaError::Worker(_) => {
                ErrorKind::Internal
            }
            MediaError::Image(e) if e.is_limit() => ErrorKind::TooLarge,
            MediaError::Image(e) if e.is_internal() => ErrorKind::Internal,
            MediaError::Image(ImagingError::InvalidOption(_)) => ErrorKind::InvalidArgument,
            // Bytes that are not a usable image: INVALID_ARGUMENT on gRPC, 422 over HTTP.
            MediaError::Image(_) => ErrorKind::Unprocessable,
            MediaError::InvalidArgument(_) => ErrorKind::InvalidArgument,
            MediaError::TooLarge(_) => ErrorKind::TooLarge,
            MediaError::Storage { kind, .. } => *kind,
        }
    }
}

impl From<MediaError> for tonic::Status {
    fn from(e: MediaError) -> Self {
        e.kind().status(e.to_string())
    }
}
