use photos_runtime::ErrorKind;

#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error("job {0} not found")]
    NotFound(String),
    #[error("{0}")]
    InvalidArgument(String),
    #[error("job {id} is already {state}")]
    Finished { id: i64, state: &'static str },
    #[error("request_id {request_id:?} was already used for a {kind} job")]
    RequestIdReused { request_id: String, kind: String },
    /// Another worker took the job over (this one stalled past its lease): stop touching it.
    #[error("the lease on job {0} was lost to another worker")]
    LeaseLost(i64),
    #[error("job store database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("job store migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("job store holds an unknown {what} {value:?}")]
    Corrupt { what: &'static str, value: String },
}

impl JobError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            JobError::NotFound(_) => ErrorKind::NotFound,
            JobError::InvalidArgument(_) => ErrorKind::InvalidArgument,
            JobError::Finished { .. } => ErrorKind::FailedPrecondition,
            JobError::RequestIdReused { .. } => ErrorKind::AlreadyExists,
            JobError::LeaseLost(_) => ErrorKind::FailedPrecondition,
            JobError::Database(sqlx::Error::PoolTimedOut | sqlx::Error::Io(_)) => {
                ErrorKind::Unavailable
            }
            // Deadlock/serialization failure (Postgres) or busy (SQLite): retryable.
            JobError::Database(sqlx::Error::Database(e))
                if matches!(e.code().as_deref(), Some("40P01" | "40001" | "5" | "517")) =>
            {
                ErrorKind::Unavailable
            }
            JobError::Database(_) | JobError::Migrate(_) | JobError::Corrupt { .. } => {
                ErrorKind::Internal
            }
        }
    }
}

impl From<JobError> for tonic::Status {
    fn from(e: JobError) -> Self {
        let kind = e.kind();
        if matches!(kind, ErrorKind::Internal | ErrorKind::Unavailable) {
            tracing::error!(error = %e, "job call failed");
        }
        kind.status(e.to_string())
    }
}
