/// Errors of the cache library. Most cache operations never surface backend failures to callers
/// (they fall back to the in-process tier); these are returned only where a caller must know.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("redis error: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("redis pool error: {0}")]
    Pool(String),
    #[error("redis did not answer within {0:?}")]
    Timeout(std::time::Duration),
    #[error("cannot encode value for cache: {0}")]
    Encode(String),
    #[error("cannot decode cached value: {0}")]
    Decode(String),
    #[error("invalid cache config `{key}`: {message}")]
    Config { key: &'static str, message: String },
    #[error("redis is unreachable (breaker open); the in-process tier answered")]
    Unavailable,
}

impl CacheError {
    /// Whether the error means the remote tier is down (as opposed to bad data).
    pub fn is_backend_failure(&self) -> bool {
        matches!(
            self,
            CacheError::Redis(_)
                | CacheError::Pool(_)
                | CacheError::Timeout(_)
                | CacheError::Unavailable
        )
    }
}
