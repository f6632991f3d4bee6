//! The catalog's database: PostgreSQL in production, SQLite as the embedded default, behind
//! one type so the service and its tests run the same queries against either.
//!
//! Every query is built once as SQL text with `$n` parameters (both drivers accept them) and
//! reads return one JSON text column per row, assembled by the database: the two drivers then
//! share one decoding path (serde), and a page with nested counts, previews and variants is a
//! single statement. The dialects differ only in the JSON functions ([`Dialect`]).

use std::str::FromStr;
use std::time::{Duration, Instant};

use photos_runtime::metrics::MethodLabels;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};
use sqlx::{AssertSqlSafe, SqlSafeStr};

use crate::config::DatabaseConfig;

/// A bind parameter. Typed nulls: Postgres needs the type of a NULL it is sent.
#[derive(Debug, Clone, PartialEq)]
pub enum Arg {
    I64(i64),
    Text(String),
    Bool(bool),
    NullI64,
}

/// SQL text plus its parameters, numbered `$1..` in push order.
#[derive(Debug, Clone, Default)]
pub struct Statement {
    pub sql: String,
    pub args: Vec<Arg>,
}

impl Statement {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a parameter and returns its placeholder.
    pub fn arg(&mut self, arg: Arg) -> String {
        self.args.push(arg);
        format!("${}", self.args.len())
    }

    pub fn push(&mut self, sql: &str) -> &mut Self {
        self.sql.push_str(sql);
        self
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dialect {
    Postgres,
    Sqlite,
}

impl Dialect {
    /// A JSON object from `(key, SQL expression)` pairs.
    pub fn object(self, pairs: &[(&str, &str)]) -> String {
        let inner = pairs
            .iter()
            .map(|(k, v)| format!("'{k}', {v}"))
            .collect::<Vec<_>>()
            .join(", ");
        match self {
            Dialect::Postgres => format!("json_build_object({inner})"),
            Dialect::Sqlite => format!("json_object({inner})"),
        }
    }

    /// A JSON array aggregate of `expr` in `order_by` order; `[]` over no rows.
    pub fn array_agg(self, expr: &str, order_by: &str) -> String {
        match self {
            Dialect::Postgres => {
                format!("COALESCE(json_agg({expr} ORDER BY {order_by}), '[]'::json)")
            }
            Dialect::Sqlite => format!("json_group_array({expr} ORDER BY {order_by})"),
        }
    }

    /// A scalar subquery returning JSON, embedded as JSON (SQLite drops the JSON subtype at a
    /// subquery boundary, which would embed it as a string).
    pub fn json_subquery(self, subquery: &str) -> String {
        match self {
            Dialect::Postgres => format!("({subquery})"),
            Dialect::Sqlite => format!("json(({subquery}))"),
        }
    }

    /// A JSON expression as a text column.
    pub fn as_text(self, expr: &str) -> String {
        match self {
            Dialect::Postgres => format!("({expr})::text"),
            Dialect::Sqlite => expr.to_owned(),
        }
    }

    /// Row lock for read-then-write transactions; SQLite's `BEGIN IMMEDIATE` already serialises
    /// writers.
    pub fn for_update(self) -> &'static str {
        match self {
            Dialect::Postgres => " FOR UPDATE",
            Dialect::Sqlite => "",
        }
    }
}

#[derive(Clone, Debug)]
pub enum Pool {
    Postgres(sqlx::PgPool),
    Sqlite(sqlx::SqlitePool),
}

/// Statement metrics, registered on the server's `/metrics`.
#[derive(Clone, Debug)]
pub struct StoreMetrics {
    pub statements: Counter,
    pub slow_statements: Counter,
    pub statements_per_call: Family<MethodLabels, Histogram, fn() -> Histogram>,
    /// Connections open and of those idle, as of the last statement: in use / max is the
    /// pool's saturation.
    pub pool_open: Gauge,
    pub pool_idle: Gauge,
    pub pool_max: Gauge,
}

fn statements_histogram() -> Histogram {
    Histogram::new(exponential_buckets(1.0, 2.0, 8))
}

impl Default for StoreMetrics {
    fn default() -> Self {
        Self {
            statements: Counter::default(),
            slow_statements: Counter::default(),
            statements_per_call: Family::new_with_constructor(statements_histogram),
            pool_open: Gauge::default(),
            pool_idle: Gauge::default(),
            pool_max: Gauge::default(),
        }
    }
}

#[derive(Clone, Debug)]
pub struct Store {
    pool: Pool,
    dialect: Dialect,
    slow_after: Duration,
    pub(crate) metrics: StoreMetrics,
}

macro_rules! migrations {
    ($dir:literal: $($version:literal $name:literal),* $(,)?) => {
        vec![$(Migration::new(
            $version,
            std::borrow::Cow::Borrowed($name),
            MigrationType::Simple,
            AssertSqlSafe(include_str!(concat!("../migrations/", $dir, "/", $name, ".sql"))).into_sql_str(),
            false,
        )),*]
    };
}

fn migrator(dialect: Dialect) -> Migrator {
    // Built from embedded files (not `sqlx::migrate!`) so the binary needs no migrations
    // directory at run time and sqlx's proc-macro feature stays off.
    Migrator::with_migrations(match dialect {
        Dialect::Postgres => migrations!("postgres": 1 "0001_schema", 2 "0002_key_indexes"),
        Dialect::Sqlite => migrations!("sqlite": 1 "0001_schema", 2 "0002_key_indexes"),
    })
}

macro_rules! bind_all {
    ($query:expr, $args:expr) => {{
        let mut query = $query;
        for arg in $args {
            query = match arg {
                Arg::I64(v) => query.bind(*v),
                Arg::Text(v) => query.bind(v.clone()),
                Arg::Bool(v) => query.bind(*v),
                Arg::NullI64 => query.bind(None::<i64>),
            };
        }
        query
    }};
}

/// Runs one statement on any executor of either backend. `$how` is `rows`, `optional` or
/// `execute`.
macro_rules! run {
    ($exec:expr, $stmt:expr, rows) => {
        bind_all!(
            sqlx::query_scalar::<_, String>(AssertSqlSafe($stmt.sql.clone())),
            &$stmt.args
        )
        .fetch_all($exec)
        .await
    };
    ($exec:expr, $stmt:expr, execute) => {
        bind_all!(sqlx::query(AssertSqlSafe($stmt.sql.clone())), &$stmt.args)
            .execute($exec)
            .await
            .map(|r| r.rows_affected())
    };
}

impl Store {
    /// Creates the pool without connecting: readiness checks connect, so the server can start
    /// (and report NOT_SERVING) while the database is still coming up.
    pub fn connect_lazy(config: &DatabaseConfig) -> Result<Store, sqlx::Error> {
        let url = config.url.expose();
        let acquire = Duration::from_millis(config.acquire_timeout_ms);
        let (pool, dialect) = if url.starts_with("sqlite:") {
            let options = SqliteConnectOptions::from_str(url)?
                .create_if_missing(true)
                .foreign_keys(true)
                .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal)
                .synchronous(sqlx::sqlite::SqliteSynchronous::Normal)
                .busy_timeout(acquire);
            (
                Pool::Sqlite(
                    SqlitePoolOptions::new()
                        .max_connections(config.max_connections)
                        .acquire_timeout(acquire)
                        .connect_lazy_with(options),
                ),
                Dialect::Sqlite,
            )
        } else {
            let options = PgConnectOptions::from_str(url)?
                .options([("statement_timeout", config.statement_timeout_ms.to_string())]);
            (
                Pool::Postgres(
                    PgPoolOptions::new()
                        .max_connections(config.max_connections)
                        .acquire_timeout(acquire)
                        .connect_lazy_with(options),
                ),
                Dialect::Postgres,
            )
        };
        Ok(Store {
            pool,
            dialect,
            slow_after: Duration::from_millis(config.slow_statement_ms),
            metrics: StoreMetrics::default(),
        })
    }

    pub fn dialect(&self) -> Dialect {
        self.dialect
    }

    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    pub fn backend(&self) -> &'static str {
        match self.dialect {
            Dialect::Postgres => "postgres",
            Dialect::Sqlite => "sqlite",
        }
    }

    /// Applies pending migrations, then succeeds once the database answers. The readiness check:
    /// the service reports SERVING only after this.
    pub async fn migrate_and_check(&self) -> Result<(), sqlx::migrate::MigrateError> {
        let migrator = migrator(self.dialect);
        match &self.pool {
            Pool::Postgres(pool) => migrator.run(pool).await?,
            Pool::Sqlite(pool) => migrator.run(pool).await?,
        }
        let ping = Statement {
            sql: "SELECT 1".into(),
            args: vec![],
        };
        self.execute(&ping).await?;
        Ok(())
    }

    pub fn register_metrics(&self, registry: &mut Registry) {
        registry.register(
            "catalog_db_statements",
            "SQL statements run by the catalog",
            self.metrics.statements.clone(),
        );
        registry.register(
            "catalog_db_slow_statements",
            "SQL statements slower than database.slow_statement_ms",
            self.metrics.slow_statements.clone(),
        );
        registry.register(
            "catalog_db_pool_connections",
            "Database connections open (as of the last statement)",
            self.metrics.pool_open.clone(),
        );
        registry.register(
            "catalog_db_pool_idle",
            "Open database connections not in use (as of the last statement)",
            self.metrics.pool_idle.clone(),
        );
        registry.register(
            "catalog_db_pool_max",
            "Database connections the pool may open (database.max_connections)",
            self.metrics.pool_max.clone(),
        );
        registry.register(
            "catalog_db_statements_per_call",
            "SQL statements per catalog RPC, by method",
            self.metrics.statements_per_call.clone(),
        );
    }

    /// Counts and times one statement; slow ones are logged with their SQL and trace id.
    async fn timed<T>(&self, sql: &str, future: impl Future<Output = T>) -> T {
        photos_runtime::tracking::statement();
        self.metrics.statements.inc();
        let (open, idle, max) = match &self.pool {
            Pool::Postgres(p) => (p.size(), p.num_idle(), p.options().get_max_connections()),
            Pool::Sqlite(p) => (p.size(), p.num_idle(), p.options().get_max_connections()),
        };
        self.metrics.pool_open.set(i64::from(open));
        self.metrics.pool_idle.set(idle as i64);
        self.metrics.pool_max.set(i64::from(max));
        // OTel database semantic conventions; the SQL has placeholders, never values.
        let span = tracing::info_span!(
            "db.query",
            otel.kind = "client",
            db.system = if self.backend() == "postgres" {
                "postgresql"
            } else {
                "sqlite"
            },
            db.statement = sql,
        );
        let started = Instant::now();
        let output = tracing::Instrument::instrument(future, span).await;
        let elapsed = started.elapsed();
        if elapsed >= self.slow_after {
            self.metrics.slow_statements.inc();
            photos_runtime::tracking::slow_statement(sql, elapsed);
            let trace_id = photos_runtime::propagation::trace_id(&tracing::Span::current())
                .unwrap_or_default();
            tracing::warn!(
                sql,
                duration_ms = elapsed.as_secs_f64() * 1000.0,
                trace_id,
                backend = self.backend(),
                "slow SQL statement"
            );
        }
        output
    }

    /// Rows of a statement returning one text (JSON) column.
    pub async fn rows(&self, stmt: &Statement) -> Result<Vec<String>, sqlx::Error> {
        self.timed(&stmt.sql, async {
            match &self.pool {
                Pool::Postgres(pool) => run!(pool, stmt, rows),
                Pool::Sqlite(pool) => run!(pool, stmt, rows),
            }
        })
        .await
    }

    pub async fn optional(&self, stmt: &Statement) -> Result<Option<String>, sqlx::Error> {
        Ok(self.rows(stmt).await?.into_iter().next())
    }

    pub async fn execute(&self, stmt: &Statement) -> Result<u64, sqlx::Error> {
        self.timed(&stmt.sql, async {
            match &self.pool {
                Pool::Postgres(pool) => run!(pool, stmt, execute),
                Pool::Sqlite(pool) => run!(pool, stmt, execute),
            }
        })
        .await
    }

    /// A write transaction; SQLite takes the write lock up front so two read-then-write
    /// transactions cannot deadlock on the lock upgrade.
    pub async fn begin(&self) -> Result<Tx<'_>, sqlx::Error> {
        let inner = self
            .timed("BEGIN", async {
                Ok::<_, sqlx::Error>(match &self.pool {
                    Pool::Postgres(pool) => TxInner::Postgres(pool.begin().await?),
                    Pool::Sqlite(pool) => {
                        TxInner::Sqlite(pool.begin_with("BEGIN IMMEDIATE").await?)
                    }
                })
            })
            .await?;
        Ok(Tx { store: self, inner })
    }

    /// `EXPLAIN` of a statement (Postgres), for the index tests.
    pub async fn explain(&self, stmt: &Statement) -> Result<String, sqlx::Error> {
        let explain = Statement {
            sql: format!("EXPLAIN {}", stmt.sql),
            args: stmt.args.clone(),
        };
        Ok(self.rows(&explain).await?.join("\n"))
    }
}

enum TxInner {
    Postgres(sqlx::Transaction<'static, sqlx::Postgres>),
    Sqlite(sqlx::Transaction<'static, sqlx::Sqlite>),
}

/// An open transaction; dropped without `commit` it rolls back, so an error midway leaves
/// nothing half-written.
pub struct Tx<'s> {
    store: &'s Store,
    inner: TxInner,
}

impl Tx<'_> {
    pub async fn rows(&mut self, stmt: &Statement) -> Result<Vec<String>, sqlx::Error> {
        let inner = &mut self.inner;
        self.store
            .timed(&stmt.sql, async {
                match inner {
                    TxInner::Postgres(tx) => run!(&mut **tx, stmt, rows),
                    TxInner::Sqlite(tx) => run!(&mut **tx, stmt, rows),
                }
            })
            .await
    }

    pub async fn optional(&mut self, stmt: &Statement) -> Result<Option<String>, sqlx::Error> {
        Ok(self.rows(stmt).await?.into_iter().next())
    }

    pub async fn execute(&mut self, stmt: &Statement) -> Result<u64, sqlx::Error> {
        let inner = &mut self.inner;
        self.store
            .timed(&stmt.sql, async {
                match inner {
                    TxInner::Postgres(tx) => run!(&mut **tx, stmt, execute),
                    TxInner::Sqlite(tx) => run!(&mut **tx, stmt, execute),
                }
            })
            .await
    }

    pub async fn commit(self) -> Result<(), sqlx::Error> {
        let store = self.store;
        store
            .timed("COMMIT", async {
                match self.inner {
                    TxInner::Postgres(tx) => tx.commit().await,
                    TxInner::Sqlite(tx) => tx.commit().await,
                }
            })
            .await
    }
}
