use photos_runtime::ErrorKind;

#[derive(Debug, thiserror::Error)]
pub enum CacheAdminError {
    #[error(transparent)]
    Server(#[from] photos_runtime::server::ServerError),
    #[error(transparent)]
    Upstream(#[from] photos_runtime::client::ChannelError),
    #[error("redis unavailable: {0}")]
    Redis(#[from] redis::RedisError),
}

impl CacheAdminError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            CacheAdminError::Server(_) | CacheAdminError::Upstream(_) => ErrorKind::Internal,
            CacheAdminError::Redis(_) => ErrorKind::Unavailable,
        }
    }
}

impl From<CacheAdminError> for tonic::Status {
    fn from(e: CacheAdminError) -> Self {
        e.kind().status(e.to_string())
    }
}
