//! Aggregation of per-request reports from every replica of every service, in per-minute
//! buckets so a report can cover a trailing window with bounded memory: each bucket holds one
//! HDR histogram per (service, rpc), whatever the traffic.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hdrhistogram::Histogram;

/// One finished request as a service reports it.
#[derive(Debug, Clone)]
pub struct RequestSample {
    pub rpc: String,
    pub duration: Duration,
    /// gRPC status code; non-zero counts as an error.
    pub code: i32,
    pub db_statements: u32,
    pub cache_hits: u32,
    pub cache_misses: u32,
    pub trace_id: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct StatementSample {
    pub service: String,
    pub statement: String,
    pub duration: Duration,
    pub trace_id: String,
    pub plan_note: String,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct CacheTotals {
    pub hits: u64,
    pub misses: u64,
    pub errors: u64,
    pub fallbacks: u64,
}

impl CacheTotals {
    pub fn hit_rate(&self) -> f64 {
        ratio(self.hits, self.hits + self.misses)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct SlowRequest {
    pub service: String,
    pub rpc: String,
    pub duration: Duration,
    pub trace_id: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RpcReport {
    pub service: String,
    pub rpc: String,
    pub count: u64,
    pub error_rate: f64,
    pub p50: Duration,
    pub p95: Duration,
    pub p99: Duration,
    pub mean_db_statements: f64,
    pub cache_hit_rate: f64,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Report {
    pub rpcs: Vec<RpcReport>,
    pub slowest_requests: Vec<SlowRequest>,
    pub slowest_statements: Vec<StatementSample>,
    pub suggestions: Vec<String>,
}

#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Minutes of history kept; older buckets are dropped.
    pub retention_minutes: u64,
    /// Entries kept in each "slowest" list.
    pub top_n: usize,
    /// Requests slower than this are listed and flagged.
    pub slow_request: Duration,
    /// Mean statements per request above this suggests an N+1 query.
    pub n_plus_one_statements: f64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            retention_minutes: 60,
            top_n: 20,
            slow_request: Duration::from_secs(1),
            n_plus_one_statements: 10.0,
        }
    }
}

struct RpcAgg {
    count: u64,
    errors: u64,
    db_statements: u64,
    cache_hits: u64,
    cache_misses: u64,
    latency_us: Histogram<u64>,
}

impl RpcAgg {
    fn new() -> Self {
        Self {
            count: 0,
            errors: 0,
            db_statements: 0,
            cache_hits: 0,
            cache_misses: 0,
            // 1 µs .. 1 h at 2 significant digits (percentiles within 1%): 26 KiB per (rpc,
            // minute), kept for `retention_minutes`. At 3 digits each one took 184 KiB, which
            // made a service's memory climb by megabytes a minute for its first hour (found by
            // the load test, tests/reliability_load.rs).
            latency_us: Histogram::new_with_bounds(1, 3_600_000_000, 2).expect("valid bounds"),
        }
    }

    fn merge(&mut self, other: &RpcAgg) {
        self.count += other.count;
        self.errors += other.errors;
        self.db_statements += other.db_statements;
        self.cache_hits += other.cache_hits;
        self.cache_misses += other.cache_misses;
        // Same bounds on both sides: adding cannot fail.
        let _ = self.latency_us.add(&other.latency_us);
    }
}

type RpcKey = (String, String);

#[derive(Default)]
struct State {
    buckets: BTreeMap<u64, HashMap<RpcKey, RpcAgg>>,
    slowest_requests: Vec<(u64, SlowRequest)>,
    slowest_statements: Vec<(u64, StatementSample)>,
    caches: HashMap<(String, String), CacheTotals>,
}

pub struct Aggregator {
    limits: Limits,
    state: Mutex<State>,
}

fn ratio(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 / whole as f64
    }
}

fn minute_of(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs() / 60
}

/// Keeps the `n` largest by `key`, largest first.
fn keep_top<T>(list: &mut Vec<(u64, T)>, n: usize, key: impl Fn(&T) -> Duration) {
    list.sort_by_key(|e| std::cmp::Reverse(key(&e.1)));
    list.truncate(n);
}

impl Aggregator {
    pub fn new(limits: Limits) -> Self {
        Self {
            limits,
            state: Mutex::new(State::default()),
        }
    }

    pub fn ingest(
        &self,
        service: &str,
        requests: &[RequestSample],
        statements: &[StatementSample],
        caches: &[(String, CacheTotals)],
        now: SystemTime,
    ) {
        let minute = minute_of(now);
        let mut state = self.state.lock().expect("aggregator poisoned");
        let bucket = state.buckets.entry(minute).or_default();
        for r in requests {
            let agg = bucket
                .entry((service.to_owned(), r.rpc.clone()))
                .or_insert_with(RpcAgg::new);
            agg.count += 1;
            agg.errors += u64::from(r.code != 0);
            agg.db_statements += u64::from(r.db_statements);
            agg.cache_hits += u64::from(r.cache_hits);
            agg.cache_misses += u64::from(r.cache_misses);
            agg.latency_us
                .saturating_record((r.duration.as_micros() as u64).max(1));
        }
        for r in requests
            .iter()
            .filter(|r| r.duration >= self.limits.slow_request)
        {
            state.slowest_requests.push((
                minute,
                SlowRequest {
                    service: service.to_owned(),
                    rpc: r.rpc.clone(),
                    duration: r.duration,
                    trace_id: r.trace_id.clone(),
                },
            ));
        }
        keep_top(&mut state.slowest_requests, self.limits.top_n, |s| {
            s.duration
        });
        state
            .slowest_statements
            .extend(statements.iter().map(|s| (minute, s.clone())));
        keep_top(&mut state.slowest_statements, self.limits.top_n, |s| {
            s.duration
        });
        for (name, delta) in caches {
            let totals = state
                .caches
                .entry((service.to_owned(), name.clone()))
                .or_default();
            totals.hits += delta.hits;
            totals.misses += delta.misses;
            totals.errors += delta.errors;
            totals.fallbacks += delta.fallbacks;
        }
        let oldest = minute.saturating_sub(self.limits.retention_minutes);
        state.buckets = state.buckets.split_off(&oldest);
        state.slowest_requests.retain(|(m, _)| *m >= oldest);
        state.slowest_statements.retain(|(m, _)| *m >= oldest);
    }

    /// The report over the trailing `window` (everything retained when `None`), for one service
    /// or all.
    pub fn report(
        &self,
        service: Option<&str>,
        window: Option<Duration>,
        now: SystemTime,
    ) -> Report {
        let since = window
            .map(|w| minute_of(now).saturating_sub(w.as_secs().div_ceil(60).saturating_sub(1)))
            .unwrap_or(0);
        let wanted = |s: &str| service.is_none_or(|want| want == s);
        let state = self.state.lock().expect("aggregator poisoned");
        let mut merged: BTreeMap<RpcKey, RpcAgg> = BTreeMap::new();
        for (_, bucket) in state.buckets.range(since..) {
            for (key, agg) in bucket.iter().filter(|(k, _)| wanted(&k.0)) {
                merged
                    .entry(key.clone())
                    .or_insert_with(RpcAgg::new)
                    .merge(agg);
            }
        }
        let quantile =
            |agg: &RpcAgg, q: f64| Duration::from_micros(agg.latency_us.value_at_quantile(q));
        let rpcs: Vec<RpcReport> = merged
            .iter()
            .map(|((service, rpc), agg)| RpcReport {
                service: service.clone(),
                rpc: rpc.clone(),
                count: agg.count,
                error_rate: ratio(agg.errors, agg.count),
                p50: quantile(agg, 0.50),
                p95: quantile(agg, 0.95),
                p99: quantile(agg, 0.99),
                mean_db_statements: ratio(agg.db_statements, agg.count),
                cache_hit_rate: ratio(agg.cache_hits, agg.cache_hits + agg.cache_misses),
            })
            .collect();
        let slowest_requests: Vec<SlowRequest> = state
            .slowest_requests
            .iter()
            .filter(|(m, s)| *m >= since && wanted(&s.service))
            .map(|(_, s)| s.clone())
            .collect();
        let slowest_statements: Vec<StatementSample> = state
            .slowest_statements
            .iter()
            .filter(|(m, s)| *m >= since && wanted(&s.service))
            .map(|(_, s)| s.clone())
            .collect();
        let suggestions = self.suggestions(&rpcs, &slowest_statements);
        Report {
            rpcs,
            slowest_requests,
            slowest_statements,
            suggestions,
        }
    }

    fn suggestions(&self, rpcs: &[RpcReport], statements: &[StatementSample]) -> Vec<String> {
        let mut out = Vec::new();
        for s in statements.iter().filter(|s| !s.plan_note.is_empty()) {
            let line = format!(
                "{}: add an index for `{}` ({})",
                s.service, s.statement, s.plan_note
            );
            if !out.contains(&line) {
                out.push(line);
            }
        }
        for r in rpcs {
            if r.mean_db_statements > self.limits.n_plus_one_statements {
                out.push(format!(
                    "{} {}: {:.1} SQL statements per request on average; look for an N+1 query",
                    r.service, r.rpc, r.mean_db_statements
                ));
            }
            if r.p99 >= self.limits.slow_request {
                out.push(format!(
                    "{} {}: p99 {} ms is above the slow-request threshold of {} ms",
                    r.service,
                    r.rpc,
                    r.p99.as_millis(),
                    self.limits.slow_request.as_millis()
                ));
            }
        }
        out
    }

    /// Cumulative cache counters per (service, cache name), sorted.
    pub fn caches(&self) -> Vec<(String, String, CacheTotals)> {
        let state = self.state.lock().expect("aggregator poisoned");
        let mut out: Vec<_> = state
            .caches
            .iter()
            .map(|((s, c), t)| (s.clone(), c.clone(), t.clone()))
            .collect();
        out.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(rpc: &str, ms: u64, code: i32, db: u32) -> RequestSample {
        RequestSample {
            rpc: rpc.into(),
            duration: Duration::from_millis(ms),
            code,
            db_statements: db,
            cache_hits: 0,
            cache_misses: 0,
            trace_id: format!("t{ms}"),
        }
    }

    #[test]
    fn percentiles_error_rate_and_statements_are_computed_across_replicas() {
        let agg = Aggregator::new(Limits::default());
        let now = SystemTime::now();
        // Two replicas of one service report 50 calls each: 1..=100 ms, every 10th failing.
        let first: Vec<_> = (1..=50)
            .map(|i| sample("ListAlbums", i, i32::from(i % 10 == 0) * 14, 1))
            .collect();
        let second: Vec<_> = (51..=100)
            .map(|i| sample("ListAlbums", i, i32::from(i % 10 == 0) * 14, 1))
            .collect();
        agg.ingest("catalog", &first, &[], &[], now);
        agg.ingest("catalog", &second, &[], &[], now);
        let report = agg.report(None, None, now);
        assert_eq!(report.rpcs.len(), 1);
        let r = &report.rpcs[0];
        assert_eq!(r.count, 100);
        assert!((r.error_rate - 0.10).abs() < 1e-9);
        assert_eq!(r.mean_db_statements, 1.0);
        let ms = |d: Duration| d.as_millis();
        assert_eq!(ms(r.p50), 50);
        assert_eq!(ms(r.p95), 95);
        assert_eq!(ms(r.p99), 99);
    }

    #[test]
    fn the_window_excludes_old_minutes_and_retention_drops_them() {
        let agg = Aggregator::new(Limits {
            retention_minutes: 10,
            ..Limits::default()
        });
        let now = SystemTime::now();
        agg.ingest(
            "media",
            &[sample("ProcessImage", 5, 0, 0)],
            &[],
            &[],
            now - Duration::from_secs(5 * 60),
        );
        agg.ingest("media", &[sample("ProcessImage", 7, 0, 0)], &[], &[], now);
        assert_eq!(agg.report(None, None, now).rpcs[0].count, 2);
        assert_eq!(
            agg.report(None, Some(Duration::from_secs(60)), now).rpcs[0].count,
            1
        );
        agg.ingest("media", &[], &[], &[], now + Duration::from_secs(20 * 60));
        assert!(
            agg.report(None, None, now).rpcs.is_empty(),
            "buckets past retention are dropped"
        );
    }

    #[test]
    fn slow_requests_statements_and_suggestions_are_reported() {
        let agg = Aggregator::new(Limits {
            top_n: 2,
            ..Limits::default()
        });
        let now = SystemTime::now();
        let statement = StatementSample {
            service: "catalog".into(),
            statement: "SELECT * FROM photos WHERE album_id = $1".into(),
            duration: Duration::from_millis(250),
            trace_id: "abc".into(),
            plan_note: "Seq Scan on photos (rows=50000)".into(),
        };
        agg.ingest(
            "catalog",
            &[
                sample("GetAlbum", 1500, 0, 51),
                sample("GetAlbum", 1200, 0, 51),
                sample("GetAlbum", 3, 0, 51),
            ],
            std::slice::from_ref(&statement),
            &[],
            now,
        );
        let report = agg.report(Some("catalog"), None, now);
        assert_eq!(report.slowest_requests.len(), 2, "top_n bounds the list");
        assert_eq!(
            report.slowest_requests[0].duration,
            Duration::from_millis(1500)
        );
        assert_eq!(report.slowest_statements, vec![statement]);
        assert!(
            report
                .suggestions
                .iter()
                .any(|s| s.contains("add an index") && s.contains("Seq Scan")),
            "{:?}",
            report.suggestions
        );
        assert!(
            report.suggestions.iter().any(|s| s.contains("N+1")),
            "{:?}",
            report.suggestions
        );
        assert!(
            report.suggestions.iter().any(|s| s.contains("p99")),
            "{:?}",
            report.suggestions
        );
        assert!(
            agg.report(Some("media"), None, now).rpcs.is_empty(),
            "service filter applies"
        );
    }

    #[test]
    fn cache_deltas_accumulate() {
        let agg = Aggregator::new(Limits::default());
        let now = SystemTime::now();
        let delta = CacheTotals {
            hits: 9,
            misses: 1,
            errors: 0,
            fallbacks: 2,
        };
        agg.ingest(
            "catalog",
            &[],
            &[],
            &[("default".into(), delta.clone())],
            now,
        );
        agg.ingest("catalog", &[], &[], &[("default".into(), delta)], now);
        let caches = agg.caches();
        assert_eq!(caches.len(), 1);
        assert_eq!(
            caches[0].2,
            CacheTotals {
                hits: 18,
                misses: 2,
                errors: 0,
                fallbacks: 4
            }
        );
        assert!((caches[0].2.hit_rate() - 0.9).abs() < 1e-9);
    }

    #[test]
    fn a_histogram_per_rpc_and_minute_stays_small_and_within_one_percent() {
        // Kept for every (service, rpc) for every minute of retention: 60 minutes of 30 RPCs
        // must stay in the tens of megabytes.
        let agg = RpcAgg::new();
        let bytes = agg.latency_us.distinct_values() * std::mem::size_of::<u64>();
        assert!(bytes <= 32 * 1024, "{bytes} bytes per histogram");
        let mut agg = agg;
        for us in [1_234_567u64, 37, 999_999_999] {
            agg.latency_us.record(us).unwrap();
            let back = agg.latency_us.highest_equivalent(us);
            assert!((back - us) as f64 <= us as f64 * 0.01, "{us} -> {back}");
        }
    }
}
