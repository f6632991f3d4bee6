//! Polling until a condition holds, bounded in time.

use std::future::Future;
use std::time::{Duration, Instant};

/// Polls `check` every `every` until it returns `Ok`, or fails with the last error after
/// `within`.
pub async fn until<T, E, F, Fut>(
    what: &str,
    within: Duration,
    every: Duration,
    mut check: F,
) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
    E: std::fmt::Display,
{
    let started = Instant::now();
    loop {
        match check().await {
            Ok(v) => return Ok(v),
            Err(e) if started.elapsed() >= within => {
                anyhow::bail!("{what} not ready after {:?}: {e}", within)
            }
            Err(_) => tokio::time::sleep(every).await,
        }
    }
}
