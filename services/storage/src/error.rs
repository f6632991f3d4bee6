use photos_runtime::ErrorKind;

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error(transparent)]
    Server(#[from] photos_runtime::server::ServerError),
    #[error("invalid {field}: {message}")]
    InvalidArgument {
        field: &'static str,
        message: String,
    },
    #[error("object not found: {key}")]
    NotFound { key: String },
    #[error("{0}")]
    FailedPrecondition(String),
    /// The store lacks an S3 call (answered NotImplemented): a FAILED_PRECONDITION to a caller,
    /// and what ends the multipart sweep's schedule, unlike a refusal that can be fixed.
    #[error("{0}")]
    Unsupported(String),
    #[error("sha256 mismatch for {key}: declared {expected}, received bytes hash to {actual}")]
    ChecksumMismatch {
        key: String,
        expected: String,
        actual: String,
    },
    /// A message over the server's size limit (tonic detects it while reading the stream).
    #[error("{0}")]
    TooLarge(String),
    #[error("object store unavailable: {0}")]
    S3(String),
    #[error("internal error: {0}")]
    Internal(String),
}

impl StorageError {
    pub fn invalid(field: &'static str, message: impl Into<String>) -> Self {
        StorageError::InvalidArgument {
            field,
            message: message.into(),
        }
    }

    pub fn kind(&self) -> ErrorKind {
        match self {
            StorageError::Server(_) | StorageError::Internal(_) => ErrorKind::Internal,
            StorageError::InvalidArgument { .. } | StorageError::ChecksumMismatch { .. } => {
                ErrorKind::InvalidArgument
            }
            StorageError::NotFound { .. } => ErrorKind::NotFound,
            StorageError::FailedPrecondition(_) | StorageError::Unsupported(_) => {
                ErrorKind::FailedPrecondition
            }
            StorageError::TooLarge(_) => ErrorKind::TooLarge,
            StorageError::S3(_) => ErrorKind::Unavailable,
        }
    }
}

/// An aws-sdk-s3 error with its full context (service code, message, request id).
pub fn describe<E: std::error::Error + 'static>(e: E) -> StorageError {
    StorageError::S3(aws_sdk_s3::error::DisplayErrorContext(e).to_string())
}

impl From<StorageError> for tonic::Status {
    fn from(e: StorageError) -> Self {
        e.kind().status(e.to_string())
    }
}
