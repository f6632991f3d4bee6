//! The scheduled sweep of abandoned multipart uploads: every `multipart_sweep.interval_seconds`
//! each storage process runs the `AbortIncompleteUploads` work over every managed prefix, for
//! uploads older than `multipart_sweep.older_than_seconds`. A process killed mid-upload leaves its
//! parts behind (billed, invisible); the bucket's lifecycle rule removes them only on stores
//! that apply it and only after whole days, so the service does not rely on it.
//!
//! Every replica sweeps: there is no leader to elect, a sweep is idempotent, and two replicas
//! racing on one upload cost one extra request; the loser's abort is counted as `already_gone`
//! where the store answers NoSuchUpload (AWS), but as `aborted` on stores that answer an abort of
//! an upload already aborted with 204 (SeaweedFS). The first run waits a random part of an
//! interval so replicas started together spread out.

use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::config::MultipartSweepConfig;
use crate::error::StorageError;
use crate::store::{self, Store, SweepRequest};

/// Calls one run makes per prefix at most ([`store::SWEEP_PAGES_PER_CALL`] pages each): a
/// backstop for a listing of millions of young uploads, which use no budget.
const CALLS_PER_PREFIX: usize = 100;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RunLabels {
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct UploadLabels {
    result: &'static str,
}

/// The sweep's `/metrics` families. Cheap to clone.
#[derive(Clone, Debug, Default)]
pub struct SweepMetrics {
    runs: Family<RunLabels, Counter>,
    uploads: Family<UploadLabels, Counter>,
    last_success: Gauge,
}

impl SweepMetrics {
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "storage_multipart_sweep_runs",
            "Scheduled multipart sweeps, by outcome (ok; error: a listing failed, or aborts failed and none succeeded; interrupted: shutdown; unsupported: the store cannot list uploads, the schedule stops)",
            self.runs.clone(),
        );
        registry.register(
            "storage_multipart_sweep_uploads",
            "Incomplete multipart uploads handled by scheduled sweeps, by result (aborted, already_gone, failed)",
            self.uploads.clone(),
        );
        registry.register(
            "storage_multipart_sweep_last_success_timestamp_seconds",
            "Unix time the last scheduled sweep finished with outcome ok (0: none yet)",
            self.last_success.clone(),
        );
    }

    fn run(&self, outcome: &'static str) {
        self.runs.get_or_create(&RunLabels { outcome }).inc();
    }

    fn uploads(&self, result: &'static str, n: usize) {
        self.uploads
            .get_or_create(&UploadLabels { result })
            .inc_by(n as u64);
    }
}

/// What one run did, over every prefix.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RunTotals {
    pub aborted: usize,
    pub already_gone: usize,
    pub failed: usize,
    /// Listing failures (the prefix's sweep stopped there).
    pub list_errors: usize,
    /// Stopped at `max_uploads_per_run` or the call bound with uploads left for the next run.
    pub capped: bool,
    /// The store does not implement ListMultipartUploads (the embedded local S3): no run
    /// will ever do anything, so the schedule stops.
    pub unsupported: bool,
}

pub struct Sweeper {
    pub store: Arc<Store>,
    pub config: MultipartSweepConfig,
    pub metrics: SweepMetrics,
}

impl Sweeper {
    /// Sweeps every interval once `ready` turns true, until `stop` is cancelled; a run in
    /// progress is dropped at its next await (an abort is idempotent: the next run, here or on
    /// another replica, picks up what it left).
    pub async fn run(self, mut ready: watch::Receiver<bool>, stop: CancellationToken) {
        let c = &self.config;
        if c.interval_seconds == 0 {
            tracing::info!("multipart sweep disabled (multipart_sweep.interval_seconds = 0)");
            return;
        }
        let interval = Duration::from_secs(c.interval_seconds);
        let mut delay = jitter(interval);
        tokio::select! {
            ready = ready.wait_for(|r| *r) => if ready.is_err() { return },
            () = stop.cancelled() => return,
        }
        tracing::info!(
            interval_seconds = c.interval_seconds,
            older_than_seconds = c.older_than_seconds,
            first_in_ms = delay.as_millis() as u64,
            "multipart sweep scheduled"
        );
        loop {
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                () = stop.cancelled() => return,
            }
            tokio::select! {
                totals = self.sweep_once() => {
                    self.finished(totals);
                    if totals.unsupported {
                        tracing::warn!("multipart sweep stopped for good: the object store answered NotImplemented to ListMultipartUploads");
                        return;
                    }
                }
                () = stop.cancelled() => {
                    self.metrics.run("interrupted");
                    tracing::info!("multipart sweep interrupted by shutdown");
                    return;
                }
            }
            delay = interval;
        }
    }

    fn finished(&self, t: RunTotals) {
        // A run whose every abort failed (e.g. credentials that may list but not abort) did
        // nothing, and must be as alertable as one that could not list.
        let aborts_all_failed = t.failed > 0 && t.aborted == 0 && t.already_gone == 0;
        let outcome = if t.unsupported {
            "unsupported"
        } else if t.list_errors > 0 || aborts_all_failed {
            "error"
        } else {
            "ok"
        };
        self.metrics.run(outcome);
        if outcome == "ok" {
            let now = SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .unwrap_or_default();
            self.metrics.last_success.set(now.as_secs() as i64);
        }
        tracing::info!(
            aborted = t.aborted,
            already_gone = t.already_gone,
            failed = t.failed,
            list_errors = t.list_errors,
            capped = t.capped,
            older_than_seconds = self.config.older_than_seconds,
            "multipart sweep finished"
        );
    }

    /// One run over every managed prefix, in bounded calls, each going on from the last one's
    /// marker, until the listing ends or `max_uploads_per_run` uploads were acted on.
    /// Counters are updated per call, so a run cut short by shutdown still counts its work.
    pub async fn sweep_once(&self) -> RunTotals {
        let mut totals = RunTotals::default();
        let mut budget = self.config.max_uploads_per_run as usize;
        let cutoff = SystemTime::now()
            .checked_sub(Duration::from_secs(self.config.older_than_seconds))
            .unwrap_or(SystemTime::UNIX_EPOCH);
        'prefixes: for prefix in &self.store.config.keys.managed_prefixes {
            let mut start_after = None;
            for _ in 0..CALLS_PER_PREFIX {
                if budget == 0 {
                    totals.capped = true;
                    break 'prefixes;
                }
                let request = SweepRequest {
                    prefix: prefix.clone(),
                    initiated_before: Some(cutoff),
                    dry_run: false,
                    max_uploads: budget.min(store::SWEEP_DEFAULT_UPLOADS),
                    start_after: start_after.take(),
                };
                let out = match self.store.abort_incomplete(request).await {
                    Ok(out) => out,
                    Err(StorageError::Unsupported(_)) => {
                        totals.unsupported = true;
                        break 'prefixes;
                    }
                    Err(e) => {
                        tracing::warn!(prefix, error = %e, "multipart sweep could not list uploads");
                        totals.list_errors += 1;
                        continue 'prefixes;
                    }
                };
                for f in &out.errors {
                    tracing::warn!(key = %f.key, code = %f.code, message = %f.message, "multipart sweep could not abort an upload");
                }
                let acted = out.uploads.len() + out.already_gone.len() + out.errors.len();
                budget = budget.saturating_sub(acted);
                totals.aborted += out.uploads.len();
                totals.already_gone += out.already_gone.len();
                totals.failed += out.errors.len();
                self.metrics.uploads("aborted", out.uploads.len());
                self.metrics.uploads("already_gone", out.already_gone.len());
                self.metrics.uploads("failed", out.errors.len());
                match out.next {
                    Some(next) => start_after = Some(next),
                    None => continue 'prefixes,
                }
            }
            totals.capped = true;
        }
        totals
    }
}

/// A random delay in `[0, interval)`: std's per-process random hash keys, no RNG dependency.
fn jitter(interval: Duration) -> Duration {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos(),
    );
    let ms = (interval.as_millis() as u64).max(1);
    Duration::from_millis(h.finish() % ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_run_waits_less_than_one_interval() {
        let interval = Duration::from_secs(3600);
        let delays: Vec<Duration> = (0..64).map(|_| jitter(interval)).collect();
        assert!(delays.iter().all(|d| *d < interval), "{delays:?}");
        // 64 draws from an hour in ms all equal would mean no jitter at all.
        assert!(delays.iter().any(|d| *d != delays[0]), "{delays:?}");
    }

    #[test]
    fn a_gone_upload_is_told_from_a_failure() {
        use crate::store::abort_error_means_gone as gone;
        assert!(gone(Some(404), Some("NoSuchUpload")));
        // A bare 404 (a proxy, a wrong endpoint) is not proof the upload is gone.
        assert!(!gone(Some(404), None));
        // Some stores send the code with another status.
        assert!(gone(Some(400), Some("NoSuchUpload")));
        assert!(!gone(Some(404), Some("NoSuchBucket")));
        assert!(!gone(Some(403), Some("AccessDenied")));
        assert!(!gone(Some(503), Some("SlowDown")));
        assert!(!gone(None, None));
    }

    #[test]
    fn listing_errors_are_told_apart() {
        use crate::store::list_uploads_error as e;
        let kind = |s: Option<u16>, c: Option<&str>| e(s, c, "x".into(), false).kind();
        assert!(matches!(
            e(Some(501), Some("NotImplemented"), "x".into(), false),
            StorageError::Unsupported(_)
        ));
        // A 501 without the code (a proxy or gateway) is an outage, retried next interval.
        assert_eq!(
            kind(Some(501), None),
            photos_runtime::ErrorKind::Unavailable
        );
        // A 400 is the caller's only when the listing started from the caller's markers;
        // otherwise the deployment's (bucket name, region, credentials).
        assert_eq!(
            e(Some(400), Some("InvalidArgument"), "x".into(), true).kind(),
            photos_runtime::ErrorKind::InvalidArgument
        );
        assert_eq!(
            kind(Some(400), Some("AuthorizationHeaderMalformed")),
            photos_runtime::ErrorKind::FailedPrecondition
        );
        assert_eq!(
            e(Some(400), Some("RequestTimeout"), "x".into(), true).kind(),
            photos_runtime::ErrorKind::Unavailable
        );
        assert_eq!(
            kind(Some(403), Some("AccessDenied")),
            photos_runtime::ErrorKind::FailedPrecondition
        );
        assert_eq!(
            kind(Some(404), Some("NoSuchBucket")),
            photos_runtime::ErrorKind::FailedPrecondition
        );
        assert!(!matches!(
            e(Some(403), Some("AccessDenied"), "x".into(), false),
            StorageError::Unsupported(_)
        ));
        assert_eq!(
            kind(Some(503), Some("SlowDown")),
            photos_runtime::ErrorKind::Unavailable
        );
        assert_eq!(kind(None, None), photos_runtime::ErrorKind::Unavailable);
    }
}
