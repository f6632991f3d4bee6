use photos_runtime::ErrorKind;

#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    #[error(transparent)]
    Server(#[from] photos_runtime::server::ServerError),
}

impl MetricsError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            MetricsError::Server(_) => ErrorKind::Internal,
        }
    }
}

impl From<MetricsError> for tonic::Status {
    fn from(e: MetricsError) -> Self {
        e.kind().status(e.to_string())
    }
}
