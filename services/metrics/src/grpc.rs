//! The tonic service: translates proto <-> the aggregator and mirrors what it ingests into
//! Prometheus families on this server's `/metrics`.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use photos_proto::metrics::v1 as pb;
use photos_proto::metrics::v1::metrics_service_server::MetricsService;
use photos_runtime::ErrorKind;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use tonic::{Request, Response, Status, Streaming};

use crate::aggregate::{Aggregator, CacheTotals, RequestSample, StatementSample};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    service: String,
    rpc: String,
    code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RpcLabels {
    service: String,
    rpc: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CacheLabels {
    service: String,
    cache: String,
}

fn latency() -> Histogram {
    Histogram::new(exponential_buckets(0.0005, 2.0, 16))
}

/// Prometheus view of the reports: the mesh's RED metrics in one scrape target.
#[derive(Clone)]
pub struct Exported {
    requests: Family<RequestLabels, Counter>,
    duration: Family<RpcLabels, Histogram, fn() -> Histogram>,
    db_statements: Family<RpcLabels, Counter>,
    cache_hits: Family<CacheLabels, Counter>,
    cache_misses: Family<CacheLabels, Counter>,
}

impl Default for Exported {
    fn default() -> Self {
        Exported {
            requests: Family::default(),
            duration: Family::new_with_constructor(latency),
            db_statements: Family::default(),
            cache_hits: Family::default(),
            cache_misses: Family::default(),
        }
    }
}

impl Exported {
    pub fn register(&self, registry: &mut Registry) {
        let e = self;
        registry.register(
            "reported_requests",
            "Requests reported by every service",
            e.requests.clone(),
        );
        registry.register(
            "reported_request_duration_seconds",
            "Latency of requests reported by every service",
            e.duration.clone(),
        );
        registry.register(
            "reported_db_statements",
            "SQL statements run by reported requests",
            e.db_statements.clone(),
        );
        registry.register(
            "reported_cache_hits",
            "Cache hits reported by every service",
            e.cache_hits.clone(),
        );
        registry.register(
            "reported_cache_misses",
            "Cache misses reported by every service",
            e.cache_misses.clone(),
        );
    }
}

pub struct MetricsGrpc {
    pub(crate) aggregator: Arc<Aggregator>,
    pub(crate) exported: Exported,
}

fn duration(d: Option<prost_types::Duration>, field: &str) -> Result<Duration, Status> {
    let d = d.unwrap_or_default();
    Duration::try_from(d).map_err(|_| {
        ErrorKind::InvalidArgument.status(format!("{field} must be a non-negative duration"))
    })
}

fn proto_duration(d: Duration) -> prost_types::Duration {
    prost_types::Duration::try_from(d).unwrap_or_default()
}

#[tonic::async_trait]
impl MetricsService for MetricsGrpc {
    async fn report_metrics(
        &self,
        request: Request<Streaming<pb::ReportMetricsRequest>>,
    ) -> Result<Response<pb::ReportMetricsResponse>, Status> {
        let mut stream = request.into_inner();
        let mut accepted = 0u64;
        while let Some(report) = stream.message().await? {
            if report.service.is_empty() {
                return Err(ErrorKind::InvalidArgument
                    .status("service must name the reporting service, e.g. \"catalog\""));
            }
            let requests = report
                .requests
                .into_iter()
                .map(|r| {
                    Ok(RequestSample {
                        duration: duration(r.duration, "requests.duration")?,
                        rpc: r.rpc,
                        code: r.code,
                        db_statements: r.db_statements,
                        cache_hits: r.cache_hits,
                        cache_misses: r.cache_misses,
                        trace_id: r.trace_id,
                    })
                })
                .collect::<Result<Vec<_>, Status>>()?;
            let statements = report
                .slow_statements
                .into_iter()
                .map(|s| {
                    Ok(StatementSample {
                        service: report.service.clone(),
                        duration: duration(s.duration, "slow_statements.duration")?,
                        statement: s.statement,
                        trace_id: s.trace_id,
                        plan_note: s.plan_note,
                    })
                })
                .collect::<Result<Vec<_>, Status>>()?;
            let caches: Vec<(String, CacheTotals)> = report
                .caches
                .into_iter()
                .map(|c| {
                    (
                        c.cache_name,
                        CacheTotals {
                            hits: c.hits,
                            misses: c.misses,
                            errors: c.errors,
                            fallbacks: c.fallbacks,
                        },
                    )
                })
                .collect();
            for r in &requests {
                let rpc = RpcLabels {
                    service: report.service.clone(),
                    rpc: r.rpc.clone(),
                };
                self.exported
                    .requests
                    .get_or_create(&RequestLabels {
                        service: rpc.service.clone(),
                        rpc: rpc.rpc.clone(),
                        code: r.code.to_string(),
                    })
                    .inc();
                self.exported
                    .duration
                    .get_or_create(&rpc)
                    .observe(r.duration.as_secs_f64());
                self.exported
                    .db_statements
                    .get_or_create(&rpc)
                    .inc_by(u64::from(r.db_statements));
            }
            for (name, c) in &caches {
                let labels = CacheLabels {
                    service: report.service.clone(),
                    cache: name.clone(),
                };
                self.exported
                    .cache_hits
                    .get_or_create(&labels)
                    .inc_by(c.hits);
                self.exported
                    .cache_misses
                    .get_or_create(&labels)
                    .inc_by(c.misses);
            }
            accepted += requests.len() as u64;
            self.aggregator.ingest(
                &report.service,
                &requests,
                &statements,
                &caches,
                SystemTime::now(),
            );
        }
        Ok(Response::new(pb::ReportMetricsResponse { accepted }))
    }

    async fn get_performance_report(
        &self,
        request: Request<pb::GetPerformanceReportRequest>,
    ) -> Result<Response<pb::GetPerformanceReportResponse>, Status> {
        let request = request.into_inner();
        let window = match request.window {
            Some(w) => Some(duration(Some(w), "window")?),
            None => None,
        };
        let service = (!request.service.is_empty()).then_some(request.service.as_str());
        let report = self.aggregator.report(service, window, SystemTime::now());
        Ok(Response::new(pb::GetPerformanceReportResponse {
            rpcs: report
                .rpcs
                .into_iter()
                .map(|r| pb::RpcReport {
                    service: r.service,
                    rpc: r.rpc,
                    count: r.count,
                    error_rate: r.error_rate,
                    p50: Some(proto_duration(r.p50)),
                    p95: Some(proto_duration(r.p95)),
                    p99: Some(proto_duration(r.p99)),
                    mean_db_statements: r.mean_db_statements,
                    cache_hit_rate: r.cache_hit_rate,
                })
                .collect(),
            slowest_requests: report
                .slowest_requests
                .into_iter()
                .map(|s| pb::SlowRequest {
                    service: s.service,
                    rpc: s.rpc,
                    duration: Some(proto_duration(s.duration)),
                    trace_id: s.trace_id,
                })
                .collect(),
            slowest_statements: report
                .slowest_statements
                .into_iter()
                .map(|s| pb::StatementSample {
                    statement: s.statement,
                    duration: Some(proto_duration(s.duration)),
                    trace_id: s.trace_id,
                    plan_note: s.plan_note,
                })
                .collect(),
            suggestions: report.suggestions,
        }))
    }

    async fn get_cache_stats(
        &self,
        _request: Request<pb::GetCacheStatsRequest>,
    ) -> Result<Response<pb::GetCacheStatsResponse>, Status> {
        Ok(Response::new(pb::GetCacheStatsResponse {
            caches: self
                .aggregator
                .caches()
                .into_iter()
                .map(|(service, cache_name, t)| pb::CacheStatsEntry {
                    hit_rate: t.hit_rate(),
                    service,
                    cache_name,
                    hits: t.hits,
                    misses: t.misses,
                    errors: t.errors,
                    fallbacks: t.fallbacks,
                })
                .collect(),
        }))
    }
}
