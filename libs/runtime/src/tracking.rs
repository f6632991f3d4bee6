//! Per-request tracking: what one call cost (SQL statements, cache hits and misses, slow
//! statements), collected in a task-local scope the server stack opens around every handler,
//! and the [`Reporter`] that streams every call's sample to the metrics service.
//!
//! A task-local (not a field on a store or cache) because one store serves every concurrent
//! call; code that runs outside a call (background work) records nothing and pays nothing.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use photos_proto::metrics::v1 as pb;
use photos_proto::metrics::v1::metrics_service_client::MetricsServiceClient;
use prometheus_client::metrics::counter::Counter;
use tokio_util::sync::CancellationToken;

use crate::client::Channel;
use crate::config::UpstreamConfig;

/// Response metadata: SQL statements the call ran.
pub const QUERY_COUNT_HEADER: &str = "x-db-query-count";
/// Response metadata: the server's time for the call until its response headers, in ms.
pub const RESPONSE_TIME_HEADER: &str = "x-response-time";

tokio::task_local! {
    static CURRENT: Arc<RequestStats>;
}

/// Counters of one call.
#[derive(Debug, Default)]
pub struct RequestStats {
    statements: AtomicU32,
    cache_hits: AtomicU32,
    cache_misses: AtomicU32,
    slow_statements: Mutex<Vec<SlowStatement>>,
}

/// A statement slower than its service's threshold.
#[derive(Debug, Clone, PartialEq)]
pub struct SlowStatement {
    /// The statement text without values.
    pub statement: String,
    pub duration: Duration,
    pub trace_id: String,
}

/// What a call cost, read when it completes.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Snapshot {
    pub statements: u32,
    pub cache_hits: u32,
    pub cache_misses: u32,
    pub slow_statements: Vec<SlowStatement>,
}

impl RequestStats {
    fn snapshot(&self) -> Snapshot {
        Snapshot {
            statements: self.statements.load(Ordering::Relaxed),
            cache_hits: self.cache_hits.load(Ordering::Relaxed),
            cache_misses: self.cache_misses.load(Ordering::Relaxed),
            slow_statements: std::mem::take(
                &mut *self.slow_statements.lock().expect("tracking lock poisoned"),
            ),
        }
    }
}

/// Runs `future` in a fresh tracking scope and returns what it recorded.
pub async fn scope<F: Future>(future: F) -> (F::Output, Snapshot) {
    let stats = Arc::new(RequestStats::default());
    let output = CURRENT.scope(stats.clone(), future).await;
    (output, stats.snapshot())
}

/// Counts one SQL statement against the current call.
pub fn statement() {
    let _ = CURRENT.try_with(|s| s.statements.fetch_add(1, Ordering::Relaxed));
}

/// Counts statements an upstream reported having run for the current call.
pub fn add_statements(n: u32) {
    let _ = CURRENT.try_with(|s| s.statements.fetch_add(n, Ordering::Relaxed));
}

/// The statements the current call has run so far (0 outside a call).
pub fn statements_so_far() -> u32 {
    CURRENT
        .try_with(|s| s.statements.load(Ordering::Relaxed))
        .unwrap_or(0)
}

/// Records a statement the service judged slow, for the performance report. The service logs
/// it itself (it knows its threshold and backend).
pub fn slow_statement(statement: &str, duration: Duration) {
    let _ = CURRENT.try_with(|s| {
        let trace_id = crate::propagation::trace_id(&tracing::Span::current()).unwrap_or_default();
        let mut slow = s.slow_statements.lock().expect("tracking lock poisoned");
        // A pathological call could run thousands; the report only needs the worst few.
        if slow.len() < MAX_SLOW_PER_CALL {
            slow.push(SlowStatement {
                statement: statement.to_owned(),
                duration,
                trace_id,
            });
        }
    });
}

const MAX_SLOW_PER_CALL: usize = 16;

/// Counts a cache lookup against the current call.
pub fn cache_lookup(hit: bool) {
    let _ = CURRENT.try_with(|s| {
        if hit {
            s.cache_hits.fetch_add(1, Ordering::Relaxed)
        } else {
            s.cache_misses.fetch_add(1, Ordering::Relaxed)
        }
    });
}

/// Cumulative counters of one named cache, as a service reads them from its cache library.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheCounters {
    pub hits: u64,
    pub misses: u64,
    pub errors: u64,
    pub fallbacks: u64,
}

type CacheSource = Box<dyn Fn() -> Vec<(String, CacheCounters)> + Send + Sync>;

/// Samples waiting to be sent, bounded so a metrics service that is down costs bounded memory.
#[derive(Default)]
struct Pending {
    requests: Vec<pb::RequestSample>,
    statements: Vec<pb::StatementSample>,
}

const MAX_PENDING_REQUESTS: usize = 50_000;
const MAX_PENDING_STATEMENTS: usize = 256;

/// Buffers every call's sample and streams them to the metrics service on one long-lived
/// client-streaming call, re-opened when it breaks. Cheap to clone.
#[derive(Clone)]
pub struct Reporter {
    inner: Arc<ReporterInner>,
}

struct ReporterInner {
    service: String,
    instance: String,
    pending: Mutex<Pending>,
    cache_source: Mutex<Option<CacheSource>>,
    last_cache: Mutex<HashMap<String, CacheCounters>>,
    dropped: Counter,
    failed: Counter,
    sent: AtomicU64,
}

impl Reporter {
    pub fn new(service: &str, instance: &str) -> Self {
        Self {
            inner: Arc::new(ReporterInner {
                service: service.to_owned(),
                instance: instance.to_owned(),
                pending: Mutex::new(Pending::default()),
                cache_source: Mutex::new(None),
                last_cache: Mutex::new(HashMap::new()),
                dropped: Counter::default(),
                failed: Counter::default(),
                sent: AtomicU64::new(0),
            }),
        }
    }

    /// Samples dropped because the buffer was full (exported on `/metrics`).
    pub fn dropped(&self) -> Counter {
        self.inner.dropped.clone()
    }

    /// Reports that could not be delivered (their samples were kept for the next one).
    pub fn failed(&self) -> Counter {
        self.inner.failed.clone()
    }

    /// Request samples the metrics service has accepted so far.
    pub fn sent(&self) -> u64 {
        self.inner.sent.load(Ordering::Relaxed)
    }

    /// Lets the service report its caches' cumulative counters; the reporter sends deltas.
    pub fn set_cache_source(
        &self,
        source: impl Fn() -> Vec<(String, CacheCounters)> + Send + Sync + 'static,
    ) {
        *self
            .inner
            .cache_source
            .lock()
            .expect("reporter lock poisoned") = Some(Box::new(source));
    }

    /// Queues one call's sample (`rpc` as `package.Service/Method`, or `GET /route` for HTTP).
    pub fn record(
        &self,
        rpc: &str,
        duration: Duration,
        code: i32,
        trace_id: &str,
        stats: Snapshot,
    ) {
        let mut pending = self.inner.pending.lock().expect("reporter lock poisoned");
        if pending.requests.len() >= MAX_PENDING_REQUESTS {
            self.inner.dropped.inc();
        } else {
            pending.requests.push(pb::RequestSample {
                rpc: rpc.to_owned(),
                duration: Some(proto_duration(duration)),
                code,
                db_statements: stats.statements,
                cache_hits: stats.cache_hits,
                cache_misses: stats.cache_misses,
                trace_id: trace_id.to_owned(),
            });
        }
        for s in stats.slow_statements {
            if pending.statements.len() >= MAX_PENDING_STATEMENTS {
                self.inner.dropped.inc();
                continue;
            }
            pending.statements.push(pb::StatementSample {
                statement: s.statement,
                duration: Some(proto_duration(s.duration)),
                trace_id: s.trace_id,
                plan_note: String::new(),
            });
        }
    }

    /// The next report: everything pending plus the caches' deltas since the last one.
    fn take_report(&self) -> pb::ReportMetricsRequest {
        let pending =
            std::mem::take(&mut *self.inner.pending.lock().expect("reporter lock poisoned"));
        let current = self
            .inner
            .cache_source
            .lock()
            .expect("reporter lock poisoned")
            .as_ref()
            .map(|f| f())
            .unwrap_or_default();
        let mut last = self
            .inner
            .last_cache
            .lock()
            .expect("reporter lock poisoned");
        let mut caches = Vec::new();
        for (name, now) in current {
            let before = last.insert(name.clone(), now).unwrap_or_default();
            let delta = pb::CacheSample {
                cache_name: name,
                hits: now.hits.saturating_sub(before.hits),
                misses: now.misses.saturating_sub(before.misses),
                errors: now.errors.saturating_sub(before.errors),
                fallbacks: now.fallbacks.saturating_sub(before.fallbacks),
            };
            if delta.hits + delta.misses + delta.errors + delta.fallbacks > 0 {
                caches.push(delta);
            }
        }
        pb::ReportMetricsRequest {
            service: self.inner.service.clone(),
            instance: self.inner.instance.clone(),
            report_time: Some(SystemTime::now().into()),
            requests: pending.requests,
            slow_statements: pending.statements,
            caches,
        }
    }

    /// Puts back what a broken stream may not have delivered, within the buffer bounds.
    fn requeue(&self, report: pb::ReportMetricsRequest) {
        let mut pending = self.inner.pending.lock().expect("reporter lock poisoned");
        let room = MAX_PENDING_REQUESTS.saturating_sub(pending.requests.len());
        let lost = report.requests.len().saturating_sub(room);
        pending
            .requests
            .extend(report.requests.into_iter().take(room));
        let room = MAX_PENDING_STATEMENTS.saturating_sub(pending.statements.len());
        pending
            .statements
            .extend(report.slow_statements.into_iter().take(room));
        self.inner.dropped.inc_by(lost as u64);
    }

    /// Sends a report every `interval` until `stop` fires, then sends what is left once.
    ///
    /// Each report is its own `ReportMetrics` call (a stream of one) whose answer says it was
    /// accepted: on a long-lived stream a message queued just before the stream broke would be
    /// lost without anyone knowing. A failed report goes back into the (bounded) buffer.
    pub async fn run(self, upstream: UpstreamConfig, interval: Duration, stop: CancellationToken) {
        let channel = match Channel::connect_lazy(&upstream) {
            Ok(channel) => channel,
            Err(e) => {
                tracing::error!(error = %e, "metrics reporting disabled: bad metrics service address");
                return;
            }
        };
        let mut client = MetricsServiceClient::new(channel);
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticker.tick().await;
        loop {
            let stopping = tokio::select! {
                _ = ticker.tick() => false,
                () = stop.cancelled() => true,
            };
            let report = self.take_report();
            let empty = report.requests.is_empty()
                && report.slow_statements.is_empty()
                && report.caches.is_empty();
            if !empty {
                let count = report.requests.len() as u64;
                let call = client.report_metrics(tokio_stream::iter([report.clone()]));
                match tokio::time::timeout(REPORT_TIMEOUT, call).await {
                    Ok(Ok(_)) => {
                        self.inner.sent.fetch_add(count, Ordering::Relaxed);
                    }
                    Ok(Err(status)) => {
                        tracing::debug!(%status, "metrics report failed; keeping its samples");
                        self.inner.failed.inc();
                        self.requeue(report);
                    }
                    Err(_) => {
                        tracing::debug!("metrics report timed out; keeping its samples");
                        self.inner.failed.inc();
                        self.requeue(report);
                    }
                }
            }
            if stopping {
                return;
            }
        }
    }
}

const REPORT_TIMEOUT: Duration = Duration::from_secs(5);

fn proto_duration(d: Duration) -> prost_types::Duration {
    prost_types::Duration {
        seconds: d.as_secs() as i64,
        nanos: d.subsec_nanos() as i32,
    }
}

/// Counts calls the reporter tracks: health, reflection and the reports themselves are noise.
pub(crate) fn is_tracked(path: &str) -> bool {
    !(path.starts_with("/grpc.health.v1.Health/")
        || path.starts_with("/grpc.reflection.")
        || path == "/photos.metrics.v1.MetricsService/ReportMetrics")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_scope_counts_what_its_call_records_and_nothing_leaks_outside() {
        statement();
        let ((), snap) = scope(async {
            statement();
            statement();
            cache_lookup(true);
            cache_lookup(false);
            cache_lookup(false);
            slow_statement("SELECT 1", Duration::from_millis(150));
            assert_eq!(statements_so_far(), 2);
        })
        .await;
        assert_eq!(snap.statements, 2);
        assert_eq!((snap.cache_hits, snap.cache_misses), (1, 2));
        assert_eq!(snap.slow_statements.len(), 1);
        assert_eq!(snap.slow_statements[0].statement, "SELECT 1");
        assert_eq!(statements_so_far(), 0);
    }

    #[test]
    fn cache_counters_are_reported_as_deltas() {
        let reporter = Reporter::new("catalog", "i1");
        let totals = Arc::new(Mutex::new(CacheCounters {
            hits: 10,
            misses: 2,
            ..Default::default()
        }));
        let source = totals.clone();
        reporter.set_cache_source(move || vec![("default".into(), *source.lock().unwrap())]);
        let first = reporter.take_report();
        assert_eq!((first.caches[0].hits, first.caches[0].misses), (10, 2));
        totals.lock().unwrap().hits = 15;
        let second = reporter.take_report();
        assert_eq!((second.caches[0].hits, second.caches[0].misses), (5, 0));
        assert!(
            reporter.take_report().caches.is_empty(),
            "no change, no sample"
        );
    }

    #[test]
    fn a_full_buffer_drops_and_counts_instead_of_growing() {
        let reporter = Reporter::new("catalog", "i1");
        for _ in 0..MAX_PENDING_REQUESTS + 7 {
            reporter.record(
                "photos.x.v1.X/Y",
                Duration::from_millis(1),
                0,
                "",
                Snapshot::default(),
            );
        }
        assert_eq!(reporter.dropped().get(), 7);
        let report = reporter.take_report();
        assert_eq!(report.requests.len(), MAX_PENDING_REQUESTS);
        reporter.requeue(report);
        reporter.record(
            "photos.x.v1.X/Y",
            Duration::from_millis(1),
            0,
            "",
            Snapshot::default(),
        );
        assert_eq!(reporter.dropped().get(), 8);
    }
}
