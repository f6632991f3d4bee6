use photos_runtime::ErrorKind;

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error(transparent)]
    Server(#[from] photos_runtime::server::ServerError),
    #[error("object store unavailable: {0}")]
    S3(String),
}

impl StorageError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            StorageError::Server(_) => ErrorKind::Internal,
            StorageError::S3(_) => ErrorKind::Unavailable,
        }
    }
}

impl From<StorageError> for tonic::Status {
    fn from(e: StorageError) -> Self {
        e.kind().status(e.to_string())
    }
}
