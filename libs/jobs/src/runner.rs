//! The worker loop: claims jobs, enumerates their items once, runs the items through the
//! kind's [`Executor`] with bounded concurrency, records each as it finishes, keeps the lease
//! alive, and honours cancellation and shutdown.
//!
//! Guarantee: an item recorded finished is never run again, by this process or any other. An
//! item in flight when its process dies is run again by whoever resumes the job (at most
//! `workers` items per job), so executors must be idempotent — the jobs built on this queue
//! write content-addressed objects, upsert variants and delete by key.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::error::JobError;
use crate::model::*;
use crate::store::JobStore;

/// Items read per query while dispatching.
const DISPATCH_PAGE: u32 = 500;

/// Why a job could not be planned.
#[derive(Debug, Clone)]
pub struct ExecError {
    pub message: String,
    /// A dependency was unavailable: the job goes back to the queue and is tried again later.
    pub retryable: bool,
}

impl ExecError {
    pub fn retryable(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            retryable: true,
        }
    }

    pub fn permanent(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            retryable: false,
        }
    }
}

/// One job kind's work.
#[async_trait]
pub trait Executor: Send + Sync + 'static {
    /// Enumerates the job's items. Runs once per job: the items are stored before any runs.
    async fn plan(&self, job: &Job) -> Result<Vec<NewItem>, ExecError>;

    /// Items handed to one [`Executor::run`] call: 1 unless the work has a batch API.
    fn batch_size(&self, _job: &Job) -> usize {
        1
    }

    /// Runs a batch; one outcome per item, in the same order.
    async fn run(&self, job: &Job, items: &[Item]) -> Vec<Outcome>;
}

#[derive(Debug, Clone)]
pub struct RunnerConfig {
    /// Identifies this worker in leases; unique per process start.
    pub owner: String,
    /// A job whose worker has not renewed its lease for this long is taken over.
    pub lease: Duration,
    /// How often the queue is polled when nothing wakes the runner.
    pub poll: Duration,
    /// Jobs run at once by this process.
    pub max_jobs: usize,
    /// Claims after which a job whose worker keeps dying is failed instead of retried.
    pub max_claims: u32,
    /// Runs of an item whose outcome is [`Outcome::Retry`] before it is recorded failed.
    pub item_attempts: u32,
    /// Base delay between retries (of an item, or of a job whose planning failed).
    pub retry_backoff: Duration,
}

impl Default for RunnerConfig {
    fn default() -> Self {
        Self {
            owner: format!("worker-{}", uuid::Uuid::new_v4().simple()),
            lease: Duration::from_secs(30),
            poll: Duration::from_secs(1),
            max_jobs: 2,
            max_claims: 10,
            item_attempts: 3,
            retry_backoff: Duration::from_millis(500),
        }
    }
}

/// Wakes a runner at once (e.g. after a job was queued) instead of at its next poll.
#[derive(Clone, Debug, Default)]
pub struct Waker(Arc<Notify>);

impl Waker {
    pub fn wake(&self) {
        self.0.notify_one();
    }
}

pub struct Runner {
    store: JobStore,
    config: RunnerConfig,
    executors: HashMap<String, Arc<dyn Executor>>,
    waker: Waker,
}

struct Shared {
    store: JobStore,
    config: RunnerConfig,
}

impl Runner {
    pub fn new(store: JobStore, config: RunnerConfig) -> Self {
        Self {
            store,
            config,
            executors: HashMap::new(),
            waker: Waker::default(),
        }
    }

    /// Uses `waker` (e.g. one handed to an API before the runner was built) to wake this runner.
    pub fn with_waker(mut self, waker: Waker) -> Self {
        self.waker = waker;
        self
    }

    pub fn register(mut self, kind: impl Into<String>, executor: Arc<dyn Executor>) -> Self {
        self.executors.insert(kind.into(), executor);
        self
    }

    pub fn kinds(&self) -> Vec<String> {
        let mut kinds: Vec<String> = self.executors.keys().cloned().collect();
        kinds.sort();
        kinds
    }

    pub fn waker(&self) -> Waker {
        self.waker.clone()
    }

    /// Claims and runs jobs until `shutdown`; then stops dispatching, lets in-flight items
    /// finish and gives unfinished jobs back to the queue. Dropping the future instead aborts
    /// everything at once, like a crash: the leases then expire and other workers resume.
    pub async fn run(self, shutdown: CancellationToken) {
        let kinds = self.kinds();
        let shared = Arc::new(Shared {
            store: self.store,
            config: self.config,
        });
        let mut active: JoinSet<()> = JoinSet::new();
        let mut failures = 0u32;
        // Abandoned jobs only appear when a lease expires: sweeping once per lease is enough.
        let mut next_sweep = std::time::Instant::now();
        loop {
            if shutdown.is_cancelled() {
                break;
            }
            let mut backoff = shared.config.poll;
            if std::time::Instant::now() >= next_sweep {
                next_sweep = std::time::Instant::now() + shared.config.lease;
                if let Err(e) = shared.store.fail_exhausted(shared.config.max_claims).await {
                    tracing::warn!(error = %e, "cannot sweep abandoned jobs");
                }
            }
            while active.len() < shared.config.max_jobs {
                match shared
                    .store
                    .claim(
                        &shared.config.owner,
                        &kinds,
                        shared.config.lease,
                        shared.config.max_claims,
                    )
                    .await
                {
                    Ok(Some(job)) => {
                        failures = 0;
                        let Some(executor) = self.executors.get(&job.kind).cloned() else {
                            // Unreachable: claims are filtered by the registered kinds.
                            continue;
                        };
                        let shared = shared.clone();
                        let stop = shutdown.child_token();
                        active.spawn(run_job(shared, executor, job, stop));
                    }
                    Ok(None) => break,
                    Err(e) => {
                        failures = failures.saturating_add(1);
                        backoff = shared.config.poll * failures.min(10);
                        tracing::warn!(error = %e, retry_in_ms = backoff.as_millis() as u64, "cannot claim jobs");
                        break;
                    }
                }
            }
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = tokio::time::sleep(backoff) => {}
                () = self.waker.0.notified() => {}
                Some(joined) = active.join_next(), if !active.is_empty() => {
                    if let Err(e) = joined && e.is_panic() {
                        tracing::error!(error = %e, "a job task panicked; its lease will expire and another worker resumes it");
                    }
                }
            }
        }
        while active.join_next().await.is_some() {}
    }
}

/// Why dispatching stopped early.
#[derive(Default)]
struct Stops {
    cancelled: AtomicBool,
    lease_lost: AtomicBool,
    store_failed: AtomicBool,
    /// The job's final (or next) state is already recorded.
    settled: AtomicBool,
}

async fn run_job(
    shared: Arc<Shared>,
    executor: Arc<dyn Executor>,
    job: Job,
    stop: CancellationToken,
) {
    let span = tracing::info_span!(
        "job",
        otel.name = %format!("job {}", job.kind),
        job.id = job.id,
        job.kind = %job.kind,
        job.claims = job.claims,
        job.total = tracing::field::Empty,
        job.failed = tracing::field::Empty,
    );
    crate::trace::restore(&job.trace, &span);
    drive(shared, executor, job, stop).instrument(span).await;
}

async fn drive(
    shared: Arc<Shared>,
    executor: Arc<dyn Executor>,
    job: Job,
    shutdown: CancellationToken,
) {
    let store = &shared.store;
    let config = &shared.config;
    let owner = config.owner.as_str();
    let id = job.id;
    tracing::info!(job.id = id, kind = %job.kind, claims = job.claims, "job claimed");

    // Stops dispatching on shutdown, cancellation or a lost lease; in-flight items finish.
    let dispatch = shutdown.child_token();
    let stops = Arc::new(Stops::default());
    let heartbeat = {
        let store = store.clone();
        let owner = owner.to_owned();
        let lease = config.lease;
        let dispatch = dispatch.clone();
        let stops = stops.clone();
        async move {
            loop {
                tokio::time::sleep(lease / 3).await;
                match store.heartbeat(id, &owner, lease).await {
                    Ok(true) => {
                        stops.cancelled.store(true, Ordering::SeqCst);
                        dispatch.cancel();
                    }
                    Ok(false) => {}
                    Err(JobError::LeaseLost(_)) => {
                        stops.lease_lost.store(true, Ordering::SeqCst);
                        dispatch.cancel();
                        return;
                    }
                    // The lease outlives a few missed beats; completions are fenced anyway.
                    Err(e) => tracing::warn!(job.id = id, error = %e, "job heartbeat failed"),
                }
            }
        }
    };
    let work = async {
        if job.cancel_requested {
            stops.cancelled.store(true, Ordering::SeqCst);
            return;
        }
        if !job.planned {
            match executor.plan(&job).await {
                Ok(items) => {
                    if let Err(e) = store.store_plan(id, owner, &items).await {
                        note_store_error(&stops, id, &e);
                        return;
                    }
                    tracing::Span::current().record("job.total", items.len());
                    tracing::info!(job.id = id, items = items.len(), "job planned");
                }
                Err(e) => {
                    let (state, delay) = if e.retryable {
                        (None, config.retry_backoff * job.claims.max(1))
                    } else {
                        (Some(JobState::Failed), Duration::ZERO)
                    };
                    let result = match state {
                        Some(state) => store.finish(id, owner, state, &e.message).await,
                        None => store.release(id, owner, delay, &e.message).await,
                    };
                    tracing::warn!(job.id = id, error = %e.message, retryable = e.retryable, "job planning failed");
                    if let Err(e) = result {
                        tracing::warn!(job.id = id, error = %e, "cannot record the planning failure");
                    }
                    stops.settled.store(true, Ordering::SeqCst);
                    return;
                }
            }
        }
        process_items(&shared, &*executor, &job, &dispatch, &stops).await;
    };
    tokio::select! {
        () = work => {}
        () = heartbeat => {}
    }

    let settle = async {
        if stops.lease_lost.load(Ordering::SeqCst) || stops.settled.load(Ordering::SeqCst) {
            // Someone else owns the job now, or its state is already recorded.
            return Ok(());
        }
        if stops.cancelled.load(Ordering::SeqCst) {
            tracing::info!(job.id = id, "job cancelled");
            return store.finish(id, owner, JobState::Cancelled, "").await;
        }
        if shutdown.is_cancelled() {
            tracing::info!(job.id = id, "shutting down: job handed back to the queue");
            return store.release(id, owner, Duration::ZERO, "").await;
        }
        if stops.store_failed.load(Ordering::SeqCst)
            || !store.pending_items(id, -1, 1).await?.is_empty()
        {
            return store
                .release(
                    id,
                    owner,
                    config.retry_backoff,
                    "progress could not be recorded; retrying",
                )
                .await;
        }
        let final_job = store.get(id).await?;
        tracing::Span::current().record("job.failed", final_job.failed);
        tracing::info!(
            job.id = id,
            done = final_job.done,
            failed = final_job.failed,
            "job finished"
        );
        store.finish(id, owner, JobState::Succeeded, "").await
    };
    if let Err(e) = settle.await {
        tracing::warn!(job.id = id, error = %e, "cannot settle the job; its lease will expire");
    }
}

fn note_store_error(stops: &Stops, id: i64, e: &JobError) {
    if matches!(e, JobError::LeaseLost(_)) {
        stops.lease_lost.store(true, Ordering::SeqCst);
    } else {
        tracing::warn!(job.id = id, error = %e, "cannot record job progress");
        stops.store_failed.store(true, Ordering::SeqCst);
    }
}

/// Pages through the unfinished items, runs them in batches, `workers` batches at once, and
/// records each batch as it finishes.
async fn process_items(
    shared: &Shared,
    executor: &dyn Executor,
    job: &Job,
    dispatch: &CancellationToken,
    stops: &Stops,
) {
    let store = &shared.store;
    let batch_size = executor.batch_size(job).max(1);
    let workers = job.workers.max(1) as usize;
    let mut queued: VecDeque<Vec<Item>> = VecDeque::new();
    let mut after = -1i64;
    let mut exhausted = false;
    let mut in_flight = FuturesUnordered::new();
    loop {
        while in_flight.len() < workers && !dispatch.is_cancelled() {
            if queued.is_empty() && !exhausted {
                match store.pending_items(job.id, after, DISPATCH_PAGE).await {
                    Ok(items) => {
                        exhausted = items.len() < DISPATCH_PAGE as usize;
                        if let Some(last) = items.last() {
                            after = last.seq;
                        }
                        queued.extend(items.chunks(batch_size).map(<[Item]>::to_vec));
                    }
                    Err(e) => {
                        note_store_error(stops, job.id, &e);
                        dispatch.cancel();
                    }
                }
            }
            match queued.pop_front() {
                // Each worker records its own batch, so recording overlaps the other workers'
                // runs instead of pausing them.
                Some(batch) => in_flight.push(async move {
                    let completions = run_batch(shared, executor, job, batch, dispatch).await;
                    if completions.is_empty() {
                        return Ok(());
                    }
                    store
                        .complete(job.id, &shared.config.owner, &completions)
                        .await
                }),
                None => break,
            }
        }
        match in_flight.next().await {
            None => return,
            Some(Ok(())) => {}
            Some(Err(e)) => {
                note_store_error(stops, job.id, &e);
                dispatch.cancel();
            }
        }
    }
}

/// Runs one batch, retrying the items that asked for it; returns the finished items (items
/// still retrying when dispatch stops stay pending).
async fn run_batch(
    shared: &Shared,
    executor: &dyn Executor,
    job: &Job,
    batch: Vec<Item>,
    dispatch: &CancellationToken,
) -> Vec<Completion> {
    let config = &shared.config;
    let span = tracing::info_span!(
        "job.item",
        otel.name = "job item",
        job.id = job.id,
        item.key = %batch.first().map(|i| i.key.as_str()).unwrap_or_default(),
        items = batch.len(),
    );
    async {
        let mut completions = Vec::with_capacity(batch.len());
        let mut todo = batch;
        let attempts = config.item_attempts.max(1);
        for attempt in 1..=attempts {
            let outcomes = executor.run(job, &todo).await;
            let mut outcomes = outcomes.into_iter();
            let mut retry = Vec::new();
            for item in todo {
                let outcome = outcomes
                    .next()
                    .unwrap_or_else(|| Outcome::Failed("the executor reported no outcome".into()));
                match outcome {
                    Outcome::Done => completions.push(Completion {
                        seq: item.seq,
                        attempts: attempt,
                        error: None,
                    }),
                    Outcome::Failed(e) => completions.push(Completion {
                        seq: item.seq,
                        attempts: attempt,
                        error: Some(e),
                    }),
                    Outcome::Retry(e) if attempt == attempts => completions.push(Completion {
                        seq: item.seq,
                        attempts: attempt,
                        error: Some(e),
                    }),
                    Outcome::Retry(e) => {
                        tracing::debug!(item = %item.key, error = %e, attempt, "item will be retried");
                        retry.push(item);
                    }
                }
            }
            if retry.is_empty() {
                break;
            }
            todo = retry;
            tokio::select! {
                () = tokio::time::sleep(config.retry_backoff * attempt) => {}
                // Leave the retries pending for whoever runs the job next.
                () = dispatch.cancelled() => break,
            }
        }
        completions
    }
    .instrument(span)
    .await
}
