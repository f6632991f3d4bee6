use photos_runtime::ErrorKind;

#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("database unavailable: {0}")]
    Database(#[from] sqlx::Error),
    #[error(transparent)]
    Server(#[from] photos_runtime::server::ServerError),
}

impl CatalogError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            CatalogError::Database(sqlx::Error::PoolTimedOut | sqlx::Error::Io(_)) => {
                ErrorKind::Unavailable
            }
            CatalogError::Database(_) => ErrorKind::Internal,
            CatalogError::Server(_) => ErrorKind::Internal,
        }
    }
}

impl From<CatalogError> for tonic::Status {
    fn from(e: CatalogError) -> Self {
        e.kind().status(e.to_string())
    }
}
