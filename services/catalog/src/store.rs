//! The catalog's database: PostgreSQL in production, SQLite as the embedded default. Both
//! behind one type so the service and its tests run the same code against either.

use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};

use crate::config::DatabaseConfig;

#[derive(Clone, Debug)]
pub enum Store {
    Postgres(sqlx::PgPool),
    Sqlite(sqlx::SqlitePool),
}

impl Store {
    /// Creates the pool without connecting: readiness checks connect, so the server can start
    /// (and report NOT_SERVING) while the database is still coming up.
    pub fn connect_lazy(config: &DatabaseConfig) -> Result<Store, sqlx::Error> {
        let url = config.url.expose();
        let acquire = Duration::from_millis(config.acquire_timeout_ms);
        if url.starts_with("sqlite:") {
            let options = SqliteConnectOptions::from_str(url)?
                .create_if_missing(true)
                .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal)
                .busy_timeout(acquire);
            Ok(Store::Sqlite(
                SqlitePoolOptions::new()
                    .max_connections(config.max_connections)
                    .acquire_timeout(acquire)
                    .connect_lazy_with(options),
            ))
        } else {
            let options = PgConnectOptions::from_str(url)?
                .options([("statement_timeout", config.statement_timeout_ms.to_string())]);
            Ok(Store::Postgres(
                PgPoolOptions::new()
                    .max_connections(config.max_connections)
                    .acquire_timeout(acquire)
                    .connect_lazy_with(options),
            ))
        }
    }

    /// Succeeds once the database answers.
    pub async fn check(&self) -> Result<(), sqlx::Error> {
        match self {
            Store::Postgres(pool) => sqlx::query("SELECT 1").execute(pool).await.map(|_| ()),
            Store::Sqlite(pool) => sqlx::query("SELECT 1").execute(pool).await.map(|_| ()),
        }
    }

    pub fn backend(&self) -> &'static str {
        match self {
            Store::Postgres(_) => "postgres",
            Store::Sqlite(_) => "sqlite",
        }
    }
}
