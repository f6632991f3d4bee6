use photos_runtime::ErrorKind;

#[derive(Debug, thiserror::Error)]
pub enum CacheAdminError {
    #[error(transparent)]
    Server(#[from] photos_runtime::server::ServerError),
    #[error(transparent)]
    Upstream(#[from] photos_runtime::client::ChannelError),
    #[error("redis unavailable: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("cache unavailable: {0}")]
    Cache(#[from] photos_cache::CacheError),
    #[error("{0}")]
    InvalidArgument(String),
}

impl CacheAdminError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            CacheAdminError::Server(_) | CacheAdminError::Upstream(_) => ErrorKind::Internal,
            CacheAdminError::Redis(_) | CacheAdminError::Cache(_) => ErrorKind::Unavailable,
            CacheAdminError::InvalidArgument(_) => ErrorKind::InvalidArgument,
        }
    }
}

impl From<CacheAdminError> for tonic::Status {
    fn from(e: CacheAdminError) -> Self {
        e.kind().status(e.to_string())
    }
}
