use photos_runtime::ErrorKind;

#[derive(Debug, thiserror::Error)]
pub enum MediaError {
    #[error(transparent)]
    Server(#[from] photos_runtime::server::ServerError),
    #[error(transparent)]
    Upstream(#[from] photos_runtime::client::ChannelError),
}

impl MediaError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            MediaError::Server(_) | MediaError::Upstream(_) => ErrorKind::Internal,
        }
    }
}

impl From<MediaError> for tonic::Status {
    fn from(e: MediaError) -> Self {
        e.kind().status(e.to_string())
    }
}
