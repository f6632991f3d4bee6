//! Retries for idempotent upstream calls, throttled by a budget so that a service that is down
//! does not get a retry storm on top of the traffic it already cannot serve.
//!
//! The budget is gRPC's retry throttling (gRFC A6): a process-wide token count starting at
//! `max_tokens`; every failed attempt costs one token, every success earns back `token_ratio`;
//! a retry is allowed only while more than half the tokens are left. So under a lasting outage
//! only the first few failures are retried (two, from a full bucket of 10), after which every
//! call is tried exactly once; retries come back as successes refill the bucket. Only UNAVAILABLE is retried (the call
//! did not run, or the server shed it); DEADLINE_EXCEEDED is not: the caller's time is spent.

use std::future::Future;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tonic::{Code, Status};

/// Attempts per call, the first included.
pub const MAX_ATTEMPTS: u32 = 2;
/// Pause before the retry: a restarted or shedding server gets a moment.
const BACKOFF: Duration = Duration::from_millis(50);

/// Tokens are counted in thousandths, so earning back 0.1 per success is exact.
const MILLI: u64 = 1000;

pub struct RetryBudget {
    max_tokens: u64,
    earned_per_success: u64,
    tokens: Mutex<u64>,
    retries: AtomicU64,
}

impl RetryBudget {
    /// `max_tokens` whole tokens; `per_mille_per_success` thousandths earned back per success.
    pub fn new(max_tokens: u64, per_mille_per_success: u64) -> Self {
        Self {
            max_tokens: max_tokens * MILLI,
            earned_per_success: per_mille_per_success,
            tokens: Mutex::new(max_tokens * MILLI),
            retries: AtomicU64::new(0),
        }
    }

    fn succeeded(&self) {
        let mut t = self.tokens.lock().unwrap_or_else(|e| e.into_inner());
        *t = (*t + self.earned_per_success).min(self.max_tokens);
    }

    /// Records a failed attempt; true when a retry is allowed.
    fn failed(&self) -> bool {
        let mut t = self.tokens.lock().unwrap_or_else(|e| e.into_inner());
        *t = t.saturating_sub(MILLI);
        *t > self.max_tokens / 2
    }

    /// Retries made so far.
    pub fn retries(&self) -> u64 {
        self.retries.load(Ordering::Relaxed)
    }

    /// Runs an idempotent call, retrying it once on UNAVAILABLE when the budget allows.
    pub async fn call<T, F, Fut>(&self, what: &'static str, mut call: F) -> Result<T, Status>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, Status>>,
    {
        let mut attempt = 1;
        loop {
            match call().await {
                Ok(v) => {
                    self.succeeded();
                    return Ok(v);
                }
                Err(status) if status.code() == Code::Unavailable => {
                    if self.failed() && attempt < MAX_ATTEMPTS {
                        attempt += 1;
                        self.retries.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(call = what, error = %status.message(), "upstream unavailable; retrying once");
                        tokio::time::sleep(BACKOFF).await;
                        continue;
                    }
                    return Err(status);
                }
                Err(status) => return Err(status),
            }
        }
    }
}

impl Default for RetryBudget {
    /// gRPC's example policy: 10 tokens, 0.1 earned back per success.
    fn default() -> Self {
        Self::new(10, 100)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicU32;

    use super::*;

    async fn calls(budget: &RetryBudget, outcome: Code, n: u32) -> u32 {
        let attempts = AtomicU32::new(0);
        for _ in 0..n {
            let _ = budget
                .call("test", || async {
                    attempts.fetch_add(1, Ordering::SeqCst);
                    if outcome == Code::Ok {
                        Ok(())
                    } else {
                        Err(Status::new(outcome, "down"))
                    }
                })
                .await;
        }
        attempts.load(Ordering::SeqCst)
    }

    #[tokio::test]
    async fn a_lasting_outage_gets_at_most_half_the_tokens_in_retries() {
        let budget = RetryBudget::default();
        // 10 → 9 (retry) → 8; 7 (retry) → 6; 5: no retry from here on.
        assert_eq!(calls(&budget, Code::Unavailable, 100).await, 102);
        assert_eq!(budget.retries(), 2);
    }

    #[tokio::test]
    async fn successes_earn_retries_back() {
        let budget = RetryBudget::default();
        calls(&budget, Code::Unavailable, 20).await;
        assert_eq!(budget.retries(), 2);
        // Tokens are at 0; 70 successes bring them to 7: a failure leaves 6, more than half,
        // so one more retry (which leaves 5: no further one).
        assert_eq!(calls(&budget, Code::Ok, 70).await, 70);
        assert_eq!(calls(&budget, Code::Unavailable, 1).await, 2);
        assert_eq!(budget.retries(), 3);
    }

    #[tokio::test]
    async fn only_unavailable_is_retried() {
        let budget = RetryBudget::default();
        for code in [
            Code::DeadlineExceeded,
            Code::InvalidArgument,
            Code::Internal,
            Code::NotFound,
        ] {
            assert_eq!(calls(&budget, code, 1).await, 1, "{code:?}");
        }
        assert_eq!(budget.retries(), 0);
    }
}
