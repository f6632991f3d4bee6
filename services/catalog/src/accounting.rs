//! Per-request SQL statement accounting: the gRPC layer opens a scope per call, every statement
//! the store runs increments it, and the count goes back in `x-db-query-count`. A task-local
//! (not a field on the store) because one store serves every concurrent call.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

/// Response metadata key carrying the number of SQL statements the call ran.
pub const QUERY_COUNT_METADATA: &str = "x-db-query-count";

tokio::task_local! {
    static STATEMENTS: Arc<AtomicU32>;
}

/// Runs `future` counting the statements it runs; returns its output and the count.
pub async fn scope<F: Future>(future: F) -> (F::Output, u32) {
    let counter = Arc::new(AtomicU32::new(0));
    let output = STATEMENTS.scope(counter.clone(), future).await;
    (output, counter.load(Ordering::Relaxed))
}

/// Counts one statement against the current call, if any (background work has no scope).
pub(crate) fn statement() {
    let _ = STATEMENTS.try_with(|c| c.fetch_add(1, Ordering::Relaxed));
}
