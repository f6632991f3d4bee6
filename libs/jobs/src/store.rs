//! The job tables on PostgreSQL or SQLite.
//!
//! A job is claimed with a lease: one statement moves a queued job (or a running one whose
//! lease expired, i.e. whose worker died) to `running` under the claimer's owner id. On
//! PostgreSQL the candidate row is picked with `FOR UPDATE SKIP LOCKED`, so concurrent claimers
//! never wait on each other or take the same job; on SQLite, which has no row locks, the same
//! single UPDATE runs under the database's one write lock (`BEGIN IMMEDIATE` for transactions),
//! so claims are serialised and the second claimer sees the first one's lease.
//!
//! Every write a worker makes to a claimed job is fenced by its owner id and the `running`
//! state: once a lease is lost (the worker stalled, another took the job), the stale worker's
//! writes change nothing and it is told so ([`JobError::LeaseLost`]). Items are enumerated once,
//! in the transaction that marks the job planned, and each is marked finished in the same
//! transaction that advances the job's counters, so a resumed job reads exactly the items
//! that never finished.

use std::collections::BTreeMap;
use std::time::Duration;

use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::{AssertSqlSafe, Row, SqlSafeStr};

use crate::error::JobError;
use crate::model::*;

type Result<T> = std::result::Result<T, JobError>;

/// Rows per multi-row INSERT: below both drivers' bind-parameter limits.
const INSERT_CHUNK: usize = 500;
pub const MAX_PAGE: u32 = 1_000;
const DEFAULT_PAGE: u32 = 50;
/// The table recording this crate's migrations, apart from the host service's own.
const MIGRATIONS_TABLE: &str = "_photos_jobs_migrations";

#[derive(Clone, Debug)]
pub enum Db {
    Postgres(sqlx::PgPool),
    Sqlite(sqlx::SqlitePool),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Dialect {
    Postgres,
    Sqlite,
}

impl Dialect {
    /// The database clock in milliseconds since the epoch.
    fn now(self) -> &'static str {
        match self {
            Dialect::Postgres => "(extract(epoch from clock_timestamp()) * 1000)::bigint",
            Dialect::Sqlite => "CAST((julianday('now') - 2440587.5) * 86400000.0 AS INTEGER)",
        }
    }

    fn skip_locked(self) -> &'static str {
        match self {
            Dialect::Postgres => " FOR UPDATE SKIP LOCKED",
            Dialect::Sqlite => "",
        }
    }
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

/// Runs `$body` with `$pool` bound to the concrete pool and `$d` to its dialect.
macro_rules! on_db {
    ($db:expr, |$pool:ident, $d:ident| $body:expr) => {
        match $db {
            Db::Postgres($pool) => {
                let $d = Dialect::Postgres;
                $body
            }
            Db::Sqlite($pool) => {
                let $d = Dialect::Sqlite;
                $body
            }
        }
    };
}

const JOB_COLUMNS: &str = "id, kind, params, workers, state, traceparent, tracestate, planned, \
     total, done, failed, total_bytes, done_bytes, cancel_requested, error, claims, created_at, \
     started_at, finished_at, updated_at";

const ITEM_COLUMNS: &str = "seq, item_key, detail, bytes, state, attempts, error";

fn unsigned(v: i64) -> u64 {
    v.max(0) as u64
}

macro_rules! job_from_row {
    ($row:expr) => {{
        let r = $row;
        Job {
            id: r.try_get("id")?,
            kind: r.try_get("kind")?,
            params: r.try_get("params")?,
            workers: r.try_get::<i32, _>("workers")?.max(1) as u32,
            state: JobState::parse(&r.try_get::<String, _>("state")?)?,
            trace: TraceContext {
                traceparent: r.try_get("traceparent")?,
                tracestate: r.try_get("tracestate")?,
            },
            planned: r.try_get("planned")?,
            total: unsigned(r.try_get("total")?),
            done: unsigned(r.try_get("done")?),
            failed: unsigned(r.try_get("failed")?),
            total_bytes: unsigned(r.try_get("total_bytes")?),
            done_bytes: unsigned(r.try_get("done_bytes")?),
            cancel_requested: r.try_get("cancel_requested")?,
            error: r.try_get("error")?,
            claims: r.try_get::<i32, _>("claims")?.max(0) as u32,
            created_at: r.try_get("created_at")?,
            started_at: r.try_get("started_at")?,
            finished_at: r.try_get("finished_at")?,
            updated_at: r.try_get("updated_at")?,
        }
    }};
}

macro_rules! item_from_row {
    ($row:expr) => {{
        let r = $row;
        Item {
            seq: r.try_get("seq")?,
            key: r.try_get("item_key")?,
            detail: r.try_get("detail")?,
            bytes: unsigned(r.try_get("bytes")?),
            state: ItemState::parse(&r.try_get::<String, _>("state")?)?,
            attempts: r.try_get::<i32, _>("attempts")?.max(0) as u32,
            error: r.try_get("error")?,
        }
    }};
}

/// A write transaction. SQLite takes its write lock up front (`BEGIN IMMEDIATE`): a read that
/// later upgrades to a write could otherwise fail with SQLITE_BUSY under concurrent writers.
trait BeginWrite {
    type Database: sqlx::Database;
    async fn begin_write(&self) -> sqlx::Result<sqlx::Transaction<'static, Self::Database>>;
}

impl BeginWrite for sqlx::PgPool {
    type Database = sqlx::Postgres;
    async fn begin_write(&self) -> sqlx::Result<sqlx::Transaction<'static, sqlx::Postgres>> {
        self.begin().await
    }
}

impl BeginWrite for sqlx::SqlitePool {
    type Database = sqlx::Sqlite;
    async fn begin_write(&self) -> sqlx::Result<sqlx::Transaction<'static, sqlx::Sqlite>> {
        self.begin_with("BEGIN IMMEDIATE").await
    }
}

fn sql(text: String) -> AssertSqlSafe<String> {
    AssertSqlSafe(text)
}

/// `$from, $from+1, ...` for `n` parameters.
fn placeholders(from: usize, n: usize) -> String {
    (from..from + n)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

fn page_size(requested: u32) -> u32 {
    match requested {
        0 => DEFAULT_PAGE,
        n => n.min(MAX_PAGE),
    }
}

fn parse_token(what: &str, token: &str) -> Result<Option<i64>> {
    if token.is_empty() {
        return Ok(None);
    }
    token
        .parse::<i64>()
        .ok()
        .filter(|v| *v >= 0)
        .map(Some)
        .ok_or_else(|| {
            JobError::InvalidArgument(format!(
                "page_token {token:?} is not a {what} page token: pass the next_page_token of the previous page"
            ))
        })
}

#[derive(Clone, Debug)]
pub struct JobStore {
    db: Db,
}

impl JobStore {
    pub fn new(db: Db) -> Self {
        Self { db }
    }

    pub fn db(&self) -> &Db {
        &self.db
    }

    /// Applies this crate's migrations (tracked in their own table, so they live beside the
    /// host service's own migrations in one database).
    pub async fn migrate(&self) -> Result<()> {
        let dialect = match self.db {
            Db::Postgres(_) => Dialect::Postgres,
            Db::Sqlite(_) => Dialect::Sqlite,
        };
        let mut migrator = Migrator::with_migrations(match dialect {
            Dialect::Postgres => migrations!("postgres": 1 "0001_jobs"),
            Dialect::Sqlite => migrations!("sqlite": 1 "0001_jobs"),
        });
        migrator.dangerous_set_table_name(MIGRATIONS_TABLE);
        match &self.db {
            Db::Postgres(pool) => migrator.run(pool).await?,
            Db::Sqlite(pool) => migrator.run(pool).await?,
        }
        Ok(())
    }

    /// Queues a job. With a `request_id` already used, returns that job (`false`) instead, or
    /// refuses when it was for another kind.
    pub async fn create(&self, new: &NewJob) -> Result<(Job, bool)> {
        if new.kind.is_empty() {
            return Err(JobError::InvalidArgument("kind is required".into()));
        }
        if new.workers == 0 {
            return Err(JobError::InvalidArgument(
                "workers must be at least 1".into(),
            ));
        }
        let created: Option<Job> = on_db!(&self.db, |pool, d| {
            let now = d.now();
            let row = sqlx::query(sql(format!(
                "INSERT INTO jobs (kind, params, workers, state, request_id, traceparent, \
                 tracestate, not_before, created_at, updated_at) \
                 VALUES ($1, $2, $3, 'queued', $4, $5, $6, {now}, {now}, {now}) \
                 ON CONFLICT (request_id) DO NOTHING RETURNING {JOB_COLUMNS}"
            )))
            .bind(&new.kind)
            .bind(&new.params)
            .bind(i32::try_from(new.workers).unwrap_or(i32::MAX))
            .bind(new.request_id.as_deref())
            .bind(&new.trace.traceparent)
            .bind(&new.trace.tracestate)
            .fetch_optional(pool)
            .await?;
            match row {
                Some(row) => Some(job_from_row!(&row)),
                None => None,
            }
        });
        if let Some(job) = created {
            return Ok((job, true));
        }
        // Only a request_id conflict inserts nothing.
        let request_id = new.request_id.clone().unwrap_or_default();
        let existing: Job = on_db!(&self.db, |pool, _d| {
            let row = sqlx::query(sql(format!(
                "SELECT {JOB_COLUMNS} FROM jobs WHERE request_id = $1"
            )))
            .bind(&request_id)
            .fetch_one(pool)
            .await?;
            job_from_row!(&row)
        });
        if existing.kind != new.kind {
            return Err(JobError::RequestIdReused {
                request_id,
                kind: existing.kind,
            });
        }
        Ok((existing, false))
    }

    pub async fn get(&self, id: i64) -> Result<Job> {
        let job: Option<Job> = on_db!(&self.db, |pool, _d| {
            let row = sqlx::query(sql(format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = $1")))
                .bind(id)
                .fetch_optional(pool)
                .await?;
            match row {
                Some(row) => Some(job_from_row!(&row)),
                None => None,
            }
        });
        job.ok_or_else(|| JobError::NotFound(id.to_string()))
    }

    /// Newest first, one statement per page.
    pub async fn list(&self, filter: &JobFilter) -> Result<Page<Job>> {
        let size = page_size(filter.page_size);
        let before = parse_token("job", &filter.page_token)?;
        let mut clauses = Vec::new();
        let mut n = 0;
        let mut next = || {
            n += 1;
            format!("${n}")
        };
        if !filter.states.is_empty() {
            let list: Vec<String> = filter.states.iter().map(|_| next()).collect();
            clauses.push(format!("state IN ({})", list.join(", ")));
        }
        if filter.kind.is_some() {
            clauses.push(format!("kind = {}", next()));
        }
        if before.is_some() {
            clauses.push(format!("id < {}", next()));
        }
        let limit = next();
        let where_clause = if clauses.is_empty() {
            String::new()
        } else {
            format!(" WHERE {}", clauses.join(" AND "))
        };
        let text =
            format!("SELECT {JOB_COLUMNS} FROM jobs{where_clause} ORDER BY id DESC LIMIT {limit}");
        let mut jobs: Vec<Job> = on_db!(&self.db, |pool, _d| {
            let mut q = sqlx::query(sql(text));
            for s in &filter.states {
                q = q.bind(s.as_str());
            }
            if let Some(kind) = &filter.kind {
                q = q.bind(kind.clone());
            }
            if let Some(b) = before {
                q = q.bind(b);
            }
            let rows = q.bind(i64::from(size) + 1).fetch_all(pool).await?;
            let mut jobs = Vec::with_capacity(rows.len());
            for row in &rows {
                jobs.push(job_from_row!(row));
            }
            jobs
        });
        let next_page_token = if jobs.len() > size as usize {
            jobs.truncate(size as usize);
            jobs.last().map(|j| j.id.to_string()).unwrap_or_default()
        } else {
            String::new()
        };
        Ok(Page {
            items: jobs,
            next_page_token,
        })
    }

    /// A queued job becomes cancelled at once; a running one is flagged and its worker stops
    /// at the next heartbeat.
    pub async fn cancel(&self, id: i64) -> Result<Job> {
        let job: Option<Job> = on_db!(&self.db, |pool, d| {
            let now = d.now();
            let row = sqlx::query(sql(format!(
                "UPDATE jobs SET cancel_requested = TRUE, updated_at = {now}, \
                 finished_at = CASE WHEN state = 'queued' THEN {now} ELSE finished_at END, \
                 state = CASE WHEN state = 'queued' THEN 'cancelled' ELSE state END \
                 WHERE id = $1 AND state IN ('queued', 'running') RETURNING {JOB_COLUMNS}"
            )))
            .bind(id)
            .fetch_optional(pool)
            .await?;
            match row {
                Some(row) => Some(job_from_row!(&row)),
                None => None,
            }
        });
        match job {
            Some(job) => Ok(job),
            None => {
                let job = self.get(id).await?;
                Err(JobError::Finished {
                    id,
                    state: job.state.as_str(),
                })
            }
        }
    }

    /// Takes the oldest claimable job: queued and due, or running with an expired lease (its
    /// worker died). Jobs claimed `max_claims` times already are left to
    /// [`JobStore::fail_exhausted`].
    pub async fn claim(
        &self,
        owner: &str,
        kinds: &[String],
        lease: Duration,
        max_claims: u32,
    ) -> Result<Option<Job>> {
        if kinds.is_empty() {
            return Ok(None);
        }
        // Only kinds this worker can run: during a rolling upgrade an older replica must leave
        // a newer kind to the replicas that know it.
        let kind_list = placeholders(4, kinds.len());
        let job: Option<Job> = on_db!(&self.db, |pool, d| {
            let now = d.now();
            let skip = d.skip_locked();
            let mut q = sqlx::query(sql(format!(
                "UPDATE jobs SET state = 'running', owner = $1, lease_until = {now} + $2, \
                 claims = claims + 1, started_at = COALESCE(started_at, {now}), \
                 updated_at = {now} \
                 WHERE id = (SELECT id FROM jobs WHERE claims < $3 AND kind IN ({kind_list}) AND \
                 ((state = 'queued' AND not_before <= {now}) OR \
                  (state = 'running' AND lease_until < {now})) \
                 ORDER BY id LIMIT 1{skip}) \
                 RETURNING {JOB_COLUMNS}"
            )))
            .bind(owner)
            .bind(millis(lease))
            .bind(i32::try_from(max_claims).unwrap_or(i32::MAX));
            for kind in kinds {
                q = q.bind(kind.clone());
            }
            let row = q.fetch_optional(pool).await?;
            match row {
                Some(row) => Some(job_from_row!(&row)),
                None => None,
            }
        });
        Ok(job)
    }

    /// Fails jobs whose worker died `max_claims` times: a job that kills its process must not
    /// be retried forever.
    pub async fn fail_exhausted(&self, max_claims: u32) -> Result<u64> {
        let affected = on_db!(&self.db, |pool, d| {
            let now = d.now();
            sqlx::query(sql(format!(
                "UPDATE jobs SET state = 'failed', owner = NULL, lease_until = NULL, \
                 finished_at = {now}, updated_at = {now}, \
                 error = 'abandoned: its worker stopped ' || claims || ' times without finishing it' \
                 WHERE claims >= $1 AND \
                 ((state = 'running' AND lease_until < {now}) OR state = 'queued')"
            )))
            .bind(i32::try_from(max_claims).unwrap_or(i32::MAX))
            .execute(pool)
            .await?
            .rows_affected()
        });
        Ok(affected)
    }

    /// Extends the lease. Returns whether cancellation was requested; [`JobError::LeaseLost`]
    /// when another worker holds the job now.
    pub async fn heartbeat(&self, id: i64, owner: &str, lease: Duration) -> Result<bool> {
        let cancel: Option<bool> = on_db!(&self.db, |pool, d| {
            let now = d.now();
            let row = sqlx::query(sql(format!(
                "UPDATE jobs SET lease_until = {now} + $3 \
                 WHERE id = $1 AND owner = $2 AND state = 'running' RETURNING cancel_requested"
            )))
            .bind(id)
            .bind(owner)
            .bind(millis(lease))
            .fetch_optional(pool)
            .await?;
            match row {
                Some(row) => Some(row.try_get::<bool, _>("cancel_requested")?),
                None => None,
            }
        });
        cancel.ok_or(JobError::LeaseLost(id))
    }

    /// Records a job's items, numbered from 0, and marks it planned, in one transaction.
    pub async fn store_plan(&self, id: i64, owner: &str, items: &[NewItem]) -> Result<()> {
        let total = items.len() as i64;
        let total_bytes: i64 = items
            .iter()
            .map(|i| i64::try_from(i.bytes).unwrap_or(i64::MAX))
            .fold(0, i64::saturating_add);
        on_db!(&self.db, |pool, d| {
            let now = d.now();
            let mut tx = pool.begin_write().await?;
            let owned = sqlx::query(sql(format!(
                "UPDATE jobs SET planned = TRUE, total = $3, total_bytes = $4, updated_at = {now} \
                 WHERE id = $1 AND owner = $2 AND state = 'running' AND NOT planned"
            )))
            .bind(id)
            .bind(owner)
            .bind(total)
            .bind(total_bytes)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if owned == 0 {
                return Err(JobError::LeaseLost(id));
            }
            for (chunk_index, chunk) in items.chunks(INSERT_CHUNK).enumerate() {
                let rows = (0..chunk.len())
                    .map(|i| {
                        format!(
                            "($1, ${}, ${}, ${}, ${}, 'pending')",
                            2 + i * 4,
                            3 + i * 4,
                            4 + i * 4,
                            5 + i * 4
                        )
                    })
                    .collect::<Vec<_>>()
                    .join(", ");
                let mut q = sqlx::query(sql(format!(
                    "INSERT INTO job_items (job_id, seq, item_key, detail, bytes, state) VALUES {rows}"
                )))
                .bind(id);
                for (i, item) in chunk.iter().enumerate() {
                    q = q
                        .bind((chunk_index * INSERT_CHUNK + i) as i64)
                        .bind(item.key.clone())
                        .bind(item.detail.clone())
                        .bind(i64::try_from(item.bytes).unwrap_or(i64::MAX));
                }
                q.execute(&mut *tx).await?;
            }
            tx.commit().await?;
        });
        Ok(())
    }

    /// Unfinished items after `after_seq`, in order.
    pub async fn pending_items(&self, id: i64, after_seq: i64, limit: u32) -> Result<Vec<Item>> {
        let items: Vec<Item> = on_db!(&self.db, |pool, _d| {
            let rows = sqlx::query(sql(format!(
                "SELECT {ITEM_COLUMNS} FROM job_items WHERE job_id = $1 AND state = 'pending' \
                 AND seq > $2 ORDER BY seq LIMIT $3"
            )))
            .bind(id)
            .bind(after_seq)
            .bind(i64::from(limit))
            .fetch_all(pool)
            .await?;
            let mut items = Vec::with_capacity(rows.len());
            for row in &rows {
                items.push(item_from_row!(row));
            }
            items
        });
        Ok(items)
    }

    /// Marks items finished and advances the job's counters, in one transaction fenced by the
    /// lease. Items already finished are left alone and not counted again.
    pub async fn complete(&self, id: i64, owner: &str, completions: &[Completion]) -> Result<()> {
        if completions.is_empty() {
            return Ok(());
        }
        // Successes with equal attempt counts share one statement.
        let mut done_by_attempts: BTreeMap<u32, Vec<i64>> = BTreeMap::new();
        let mut failures = Vec::new();
        for c in completions {
            match &c.error {
                None => done_by_attempts.entry(c.attempts).or_default().push(c.seq),
                Some(e) => failures.push((c.seq, c.attempts, e.clone())),
            }
        }
        on_db!(&self.db, |pool, d| {
            let now = d.now();
            let mut tx = pool.begin_write().await?;
            let (mut done, mut failed, mut done_bytes) = (0i64, 0i64, 0i64);
            for (attempts, seqs) in &done_by_attempts {
                for chunk in seqs.chunks(INSERT_CHUNK) {
                    let mut q = sqlx::query(sql(format!(
                        "UPDATE job_items SET state = 'done', attempts = $2, finished_at = {now} \
                         WHERE job_id = $1 AND state = 'pending' AND seq IN ({}) RETURNING bytes",
                        placeholders(3, chunk.len())
                    )))
                    .bind(id)
                    .bind(i32::try_from(*attempts).unwrap_or(i32::MAX));
                    for seq in chunk {
                        q = q.bind(*seq);
                    }
                    for row in q.fetch_all(&mut *tx).await? {
                        done += 1;
                        done_bytes = done_bytes.saturating_add(row.try_get::<i64, _>("bytes")?);
                    }
                }
            }
            for (seq, attempts, error) in &failures {
                let updated = sqlx::query(sql(format!(
                    "UPDATE job_items SET state = 'failed', attempts = $3, error = $4, \
                     finished_at = {now} WHERE job_id = $1 AND seq = $2 AND state = 'pending'"
                )))
                .bind(id)
                .bind(*seq)
                .bind(i32::try_from(*attempts).unwrap_or(i32::MAX))
                .bind(error.clone())
                .execute(&mut *tx)
                .await?
                .rows_affected() as i64;
                done += updated;
                failed += updated;
            }
            // The fence and the counters in one statement, last: the job row (which every
            // worker of the job updates) stays locked only from here to the commit. Item rows
            // are locked first by every completion and never by anyone else, so the order is
            // the same for all writers.
            let owned = sqlx::query(sql(format!(
                "UPDATE jobs SET done = done + $3, failed = failed + $4, \
                 done_bytes = done_bytes + $5, updated_at = {now} \
                 WHERE id = $1 AND owner = $2 AND state = 'running'"
            )))
            .bind(id)
            .bind(owner)
            .bind(done)
            .bind(failed)
            .bind(done_bytes)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if owned == 0 {
                // Dropping the transaction rolls the item updates back.
                return Err(JobError::LeaseLost(id));
            }
            tx.commit().await?;
        });
        Ok(())
    }

    /// Ends a claimed job in a final state.
    pub async fn finish(&self, id: i64, owner: &str, state: JobState, error: &str) -> Result<()> {
        debug_assert!(state.is_final());
        let affected = on_db!(&self.db, |pool, d| {
            let now = d.now();
            sqlx::query(sql(format!(
                "UPDATE jobs SET state = $3, error = $4, owner = NULL, lease_until = NULL, \
                 finished_at = {now}, updated_at = {now} \
                 WHERE id = $1 AND owner = $2 AND state = 'running'"
            )))
            .bind(id)
            .bind(owner)
            .bind(state.as_str())
            .bind(error)
            .execute(pool)
            .await?
            .rows_affected()
        });
        if affected == 0 {
            return Err(JobError::LeaseLost(id));
        }
        Ok(())
    }

    /// Gives a claimed job back to the queue, due after `delay`: on a clean shutdown (so the
    /// next process need not wait for the lease to expire) or after a transient failure.
    pub async fn release(&self, id: i64, owner: &str, delay: Duration, error: &str) -> Result<()> {
        let affected = on_db!(&self.db, |pool, d| {
            let now = d.now();
            sqlx::query(sql(format!(
                "UPDATE jobs SET state = 'queued', owner = NULL, lease_until = NULL, \
                 not_before = {now} + $3, error = $4, updated_at = {now} \
                 WHERE id = $1 AND owner = $2 AND state = 'running'"
            )))
            .bind(id)
            .bind(owner)
            .bind(millis(delay))
            .bind(error)
            .execute(pool)
            .await?
            .rows_affected()
        });
        if affected == 0 {
            return Err(JobError::LeaseLost(id));
        }
        Ok(())
    }

    /// A job's items in order, optionally only those in one state.
    pub async fn list_items(
        &self,
        id: i64,
        state: Option<ItemState>,
        page_size_req: u32,
        token: &str,
    ) -> Result<Page<Item>> {
        self.get(id).await?;
        let size = page_size(page_size_req);
        let after = parse_token("job item", token)?.unwrap_or(-1);
        let state_clause = if state.is_some() {
            " AND state = $4"
        } else {
            ""
        };
        let mut items: Vec<Item> = on_db!(&self.db, |pool, _d| {
            let mut q = sqlx::query(sql(format!(
                "SELECT {ITEM_COLUMNS} FROM job_items WHERE job_id = $1 AND seq > $2{state_clause} \
                 ORDER BY seq LIMIT $3"
            )))
            .bind(id)
            .bind(after)
            .bind(i64::from(size) + 1);
            if let Some(s) = state {
                q = q.bind(s.as_str());
            }
            let rows = q.fetch_all(pool).await?;
            let mut items = Vec::with_capacity(rows.len());
            for row in &rows {
                items.push(item_from_row!(row));
            }
            items
        });
        let next_page_token = if items.len() > size as usize {
            items.truncate(size as usize);
            items.last().map(|i| i.seq.to_string()).unwrap_or_default()
        } else {
            String::new()
        };
        Ok(Page {
            items,
            next_page_token,
        })
    }
}
