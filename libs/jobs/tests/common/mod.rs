//! A job store on a fresh real database per test (a Postgres database, or a SQLite file), and
//! an executor that counts what it runs.
#![allow(dead_code)]

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use photos_jobs::*;
use photos_testkit::postgres::TestDatabase;
use sqlx::postgres::PgPoolOptions;
use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};
use tokio::sync::Semaphore;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Postgres,
    Sqlite,
}

pub struct TestStore {
    pub store: JobStore,
    _postgres: Option<TestDatabase>,
    _dir: Option<tempfile::TempDir>,
}

pub async fn store(backend: Backend) -> TestStore {
    let (db, postgres, dir) = match backend {
        Backend::Postgres => {
            let test_db = TestDatabase::create().await.expect("create test database");
            let pool = PgPoolOptions::new()
                .max_connections(16)
                .connect(test_db.url())
                .await
                .expect("connect");
            (Db::Postgres(pool), Some(test_db), None)
        }
        Backend::Sqlite => {
            let dir = tempfile::tempdir().unwrap();
            // The same options as the catalog's embedded database.
            let options = SqliteConnectOptions::from_str(&format!(
                "sqlite://{}",
                dir.path().join("jobs.db").display()
            ))
            .unwrap()
            .create_if_missing(true)
            .foreign_keys(true)
            .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal)
            .busy_timeout(Duration::from_secs(5));
            let pool = SqlitePoolOptions::new()
                .max_connections(8)
                .connect_with(options)
                .await
                .expect("open sqlite");
            (Db::Sqlite(pool), None, Some(dir))
        }
    };
    let store = JobStore::new(db);
    store.migrate().await.expect("migrate");
    TestStore {
        store,
        _postgres: postgres,
        _dir: dir,
    }
}

pub fn new_job(kind: &str) -> NewJob {
    NewJob {
        kind: kind.into(),
        params: "{}".into(),
        workers: 4,
        request_id: None,
        trace: TraceContext::default(),
    }
}

pub fn items(n: usize) -> Vec<NewItem> {
    (0..n)
        .map(|i| NewItem {
            key: format!("item-{i:03}"),
            detail: String::new(),
            bytes: 10,
        })
        .collect()
}

/// Per-key counts of runs started and finished, and a gate that holds every run after the
/// first `free` ones until it is opened.
#[derive(Default)]
pub struct Counts {
    pub started: Mutex<HashMap<String, u32>>,
    pub finished: Mutex<HashMap<String, u32>>,
}

impl Counts {
    pub fn started(&self, key: &str) -> u32 {
        self.started.lock().unwrap().get(key).copied().unwrap_or(0)
    }
    pub fn finished(&self, key: &str) -> u32 {
        self.finished.lock().unwrap().get(key).copied().unwrap_or(0)
    }
    pub fn total_started(&self) -> u32 {
        self.started.lock().unwrap().values().sum()
    }
    pub fn total_finished(&self) -> u32 {
        self.finished.lock().unwrap().values().sum()
    }
}

/// Plans `items`, runs each by counting it; runs beyond the first `free` wait for `gate`.
/// Keys listed in `outcomes` get those outcomes in order, then `Done`.
pub struct CountingExecutor {
    pub plan: Vec<NewItem>,
    pub counts: Arc<Counts>,
    pub gate: Arc<Semaphore>,
    pub free: Mutex<usize>,
    pub outcomes: Mutex<HashMap<String, Vec<Outcome>>>,
    pub plan_error: Option<ExecError>,
    pub batch: usize,
}

impl CountingExecutor {
    pub fn new(plan: Vec<NewItem>, counts: Arc<Counts>) -> Self {
        Self {
            plan,
            counts,
            gate: Arc::new(Semaphore::new(0)),
            free: Mutex::new(usize::MAX),
            outcomes: Mutex::new(HashMap::new()),
            plan_error: None,
            batch: 1,
        }
    }

    pub fn holding_after(self, free: usize) -> Self {
        *self.free.lock().unwrap() = free;
        self
    }
}

#[async_trait]
impl Executor for CountingExecutor {
    async fn plan(&self, _job: &Job) -> Result<Vec<NewItem>, ExecError> {
        match &self.plan_error {
            Some(e) => Err(e.clone()),
            None => Ok(self.plan.clone()),
        }
    }

    fn batch_size(&self, _job: &Job) -> usize {
        self.batch
    }

    async fn run(&self, _job: &Job, items: &[Item]) -> Vec<Outcome> {
        let mut out = Vec::new();
        for item in items {
            let held = {
                let mut started = self.counts.started.lock().unwrap();
                let total: u32 = started.values().sum();
                *started.entry(item.key.clone()).or_default() += 1;
                total as usize >= *self.free.lock().unwrap()
            };
            if held {
                // Held until the test lets it through (or drops this future, like a crash).
                self.gate.acquire().await.expect("gate").forget();
            }
            tokio::task::yield_now().await;
            let outcome = self
                .outcomes
                .lock()
                .unwrap()
                .get_mut(&item.key)
                .and_then(|v| (!v.is_empty()).then(|| v.remove(0)))
                .unwrap_or(Outcome::Done);
            *self
                .counts
                .finished
                .lock()
                .unwrap()
                .entry(item.key.clone())
                .or_default() += 1;
            out.push(outcome);
        }
        out
    }
}

pub fn runner_config(owner: &str, lease_ms: u64) -> RunnerConfig {
    RunnerConfig {
        owner: owner.into(),
        lease: Duration::from_millis(lease_ms),
        poll: Duration::from_millis(50),
        max_jobs: 2,
        max_claims: 10,
        item_attempts: 3,
        retry_backoff: Duration::from_millis(20),
    }
}

/// Polls the job until `check` holds (bounded; the condition, not the time, is what's tested).
pub async fn wait_job(store: &JobStore, id: i64, what: &str, check: impl Fn(&Job) -> bool) -> Job {
    photos_testkit::wait::until(
        what,
        Duration::from_secs(30),
        Duration::from_millis(20),
        || async {
            let job = store.get(id).await.map_err(|e| e.to_string())?;
            if check(&job) {
                Ok(job)
            } else {
                Err(format!("{job:?}"))
            }
        },
    )
    .await
    .unwrap()
}
