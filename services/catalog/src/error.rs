use photos_runtime::ErrorKind;

use crate::token::BadToken;

#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("{0}")]
    InvalidArgument(String),
    #[error("{what} {id} not found")]
    NotFound { what: &'static str, id: String },
    #[error(
        "album {album_id} has a photo at the highest order ({max}); reorder its photos before adding more",
        max = i32::MAX
    )]
    OrderOverflow { album_id: i64 },
    #[error(transparent)]
    BadToken(#[from] BadToken),
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("database returned an unreadable row: {0}")]
    Decode(#[from] serde_json::Error),
    #[error(transparent)]
    Server(#[from] photos_runtime::server::ServerError),
    #[error(transparent)]
    Jobs(#[from] photos_jobs::JobError),
    #[error("cache: {0}")]
    Cache(#[from] photos_cache::CacheError),
}

impl CatalogError {
    pub fn invalid(message: impl Into<String>) -> Self {
        CatalogError::InvalidArgument(message.into())
    }

    pub fn not_found(what: &'static str, id: impl ToString) -> Self {
        CatalogError::NotFound {
            what,
            id: id.to_string(),
        }
    }

    pub fn kind(&self) -> ErrorKind {
        match self {
            CatalogError::InvalidArgument(_) | CatalogError::BadToken(_) => {
                ErrorKind::InvalidArgument
            }
            CatalogError::NotFound { .. } => ErrorKind::NotFound,
            CatalogError::OrderOverflow { .. } => ErrorKind::FailedPrecondition,
            CatalogError::Database(e) if lost_database(e) => ErrorKind::Unavailable,
            // Deadlock/serialization failure (Postgres) or a busy database after busy_timeout
            // (SQLite): transient, the caller should retry.
            CatalogError::Database(sqlx::Error::Database(e))
                if matches!(e.code().as_deref(), Some("40P01" | "40001" | "5" | "517")) =>
            {
                ErrorKind::Unavailable
            }
            // Postgres query_canceled: statement_timeout fired.
            CatalogError::Database(sqlx::Error::Database(e))
                if e.code().as_deref() == Some("57014") =>
            {
                ErrorKind::DeadlineExceeded
            }
            CatalogError::Jobs(e) => e.kind(),
            CatalogError::Database(_)
            | CatalogError::Migrate(_)
            | CatalogError::Decode(_)
            | CatalogError::Server(_) => ErrorKind::Internal,
            // Only connecting can fail (a cluster that never answered), at startup.
            CatalogError::Cache(_) => ErrorKind::Unavailable,
        }
    }
}

/// The database went away or cannot be reached: a pool that could not hand out a connection in
/// time, a connection that broke, or a server ending sessions as it stops or restarts
/// (`57P01` admin_shutdown, `57P02` crash_shutdown, `57P03` cannot_connect_now, class `08`
/// connection exceptions). The caller should retry; the pool replaces the connection.
pub(crate) fn lost_database(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::PoolTimedOut | sqlx::Error::Io(_) => true,
        sqlx::Error::Database(e) => e.code().is_some_and(|c| {
            matches!(c.as_ref(), "57P01" | "57P02" | "57P03") || c.starts_with("08")
        }),
        _ => false,
    }
}

impl From<CatalogError> for tonic::Status {
    fn from(e: CatalogError) -> Self {
        let kind = e.kind();
        if matches!(kind, ErrorKind::Internal | ErrorKind::Unavailable) {
            tracing::error!(error = %e, "catalog call failed");
        }
        kind.status(e.to_string())
    }
}
