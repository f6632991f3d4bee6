//! Jobs and items as stored, and what callers hand in.

use crate::error::JobError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum JobState {
    Queued,
    Running,
    Succeeded,
    Failed,
    Cancelled,
}

impl JobState {
    pub const ALL: [JobState; 5] = [
        JobState::Queued,
        JobState::Running,
        JobState::Succeeded,
        JobState::Failed,
        JobState::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Queued => "queued",
            JobState::Running => "running",
            JobState::Succeeded => "succeeded",
            JobState::Failed => "failed",
            JobState::Cancelled => "cancelled",
        }
    }

    pub fn parse(s: &str) -> Result<JobState, JobError> {
        JobState::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| JobError::Corrupt {
                what: "job state",
                value: s.to_owned(),
            })
    }

    pub fn is_final(self) -> bool {
        matches!(
            self,
            JobState::Succeeded | JobState::Failed | JobState::Cancelled
        )
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ItemState {
    Pending,
    Done,
    Failed,
}

impl ItemState {
    pub fn as_str(self) -> &'static str {
        match self {
            ItemState::Pending => "pending",
            ItemState::Done => "done",
            ItemState::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Result<ItemState, JobError> {
        [ItemState::Pending, ItemState::Done, ItemState::Failed]
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| JobError::Corrupt {
                what: "item state",
                value: s.to_owned(),
            })
    }
}

/// W3C trace context of the call that started a job.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TraceContext {
    pub traceparent: String,
    pub tracestate: String,
}

impl TraceContext {
    /// The 32-hex-digit trace id, if `traceparent` is well formed.
    pub fn trace_id(&self) -> Option<&str> {
        let mut parts = self.traceparent.split('-');
        let (_version, trace) = (parts.next()?, parts.next()?);
        (trace.len() == 32 && trace.bytes().all(|b| b.is_ascii_hexdigit())).then_some(trace)
    }
}

#[derive(Debug, Clone)]
pub struct NewJob {
    /// The executor that runs it, e.g. `cleanup-s3`.
    pub kind: String,
    /// The kind's parameters as JSON; the queue never looks inside.
    pub params: String,
    /// Items processed at once.
    pub workers: u32,
    /// Makes retried submissions return the first job; `None` for no idempotency.
    pub request_id: Option<String>,
    pub trace: TraceContext,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Job {
    pub id: i64,
    pub kind: String,
    pub params: String,
    pub workers: u32,
    pub state: JobState,
    pub trace: TraceContext,
    pub planned: bool,
    pub total: u64,
    pub done: u64,
    pub failed: u64,
    pub total_bytes: u64,
    pub done_bytes: u64,
    pub cancel_requested: bool,
    pub error: String,
    pub claims: u32,
    /// Milliseconds since the epoch (database clock).
    pub created_at: i64,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
    pub updated_at: i64,
}

/// One unit of a job's work, as its executor enumerated it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NewItem {
    /// What the item is about (a photo id, an object key); shown to operators.
    pub key: String,
    /// Whatever else the executor needs to run it, e.g. JSON.
    pub detail: String,
    pub bytes: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    pub seq: i64,
    pub key: String,
    pub detail: String,
    pub bytes: u64,
    pub state: ItemState,
    pub attempts: u32,
    pub error: String,
}

/// What became of one item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Done,
    /// Will not succeed by retrying (e.g. a corrupt original): recorded as failed.
    Failed(String),
    /// Might succeed later (a dependency was unavailable): retried a bounded number of times.
    Retry(String),
}

/// A finished item as recorded: its final state after any retries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Completion {
    pub seq: i64,
    pub attempts: u32,
    /// `None` when done, else the error.
    pub error: Option<String>,
}

/// A page of a listing and the token of the next (empty at the end).
#[derive(Debug, Clone)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_page_token: String,
}

#[derive(Debug, Clone, Default)]
pub struct JobFilter {
    pub states: Vec<JobState>,
    pub kind: Option<String>,
    pub page_size: u32,
    pub page_token: String,
}
