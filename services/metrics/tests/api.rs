//! The metrics service over real gRPC: reports from two replicas aggregate into one report, the
//! cache stats add up, bad reports are refused, and `/metrics` is valid Prometheus text.

use std::time::Duration;

use photos_metrics::MetricsConfig;
use photos_proto::metrics::v1 as pb;
use photos_proto::metrics::v1::metrics_service_client::MetricsServiceClient;
use tokio_util::sync::CancellationToken;

struct Running {
    client: MetricsServiceClient<tonic::transport::Channel>,
    admin: std::net::SocketAddr,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<Result<(), photos_metrics::MetricsError>>,
}

async fn start() -> Running {
    let mut config = MetricsConfig::default();
    config.server.grpc_port = 0;
    config.server.admin_port = 0;
    let app = photos_metrics::build(config).await.unwrap();
    let (grpc, admin) = (app.grpc_addr(), app.admin_addr());
    let stop = CancellationToken::new();
    let s = stop.clone();
    let task = tokio::spawn(async move { app.run_until_stopped(s.cancelled_owned()).await });
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{grpc}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    Running {
        client: MetricsServiceClient::new(channel),
        admin,
        stop,
        task,
    }
}

fn ms(v: u64) -> Option<prost_types::Duration> {
    Some(prost_types::Duration::try_from(Duration::from_millis(v)).unwrap())
}

fn report(instance: &str, range: std::ops::RangeInclusive<u64>) -> pb::ReportMetricsRequest {
    pb::ReportMetricsRequest {
        service: "catalog".into(),
        instance: instance.into(),
        report_time: None,
        requests: range
            .map(|i| pb::RequestSample {
                rpc: "ListAlbums".into(),
                duration: ms(i),
                code: if i % 10 == 0 { 14 } else { 0 },
                db_statements: 1,
                cache_hits: 3,
                cache_misses: 1,
                trace_id: format!("{i:032x}"),
            })
            .collect(),
        slow_statements: vec![],
        caches: vec![pb::CacheSample {
            cache_name: "default".into(),
            hits: 30,
            misses: 10,
            errors: 0,
            fallbacks: 1,
        }],
    }
}

#[tokio::test]
async fn reports_from_two_replicas_make_one_performance_report() {
    let mut app = start().await;
    // One long-lived stream per replica, as the services keep.
    let (mut ca, mut cb) = (app.client.clone(), app.client.clone());
    let a = ca.report_metrics(tokio_stream::iter([report("a", 1..=50)]));
    let b = cb.report_metrics(tokio_stream::iter([
        report("b", 51..=100),
        pb::ReportMetricsRequest {
            service: "catalog".into(),
            instance: "b".into(),
            slow_statements: vec![pb::StatementSample {
                statement: "SELECT id FROM photos WHERE album_id = $1".into(),
                duration: ms(180),
                trace_id: "f".repeat(32),
                plan_note: "Seq Scan on photos".into(),
            }],
            ..Default::default()
        },
    ]));
    let (a, b) = tokio::join!(a, b);
    assert_eq!(a.unwrap().into_inner().accepted, 50);
    assert_eq!(b.unwrap().into_inner().accepted, 50);

    let report = app
        .client
        .get_performance_report(pb::GetPerformanceReportRequest {
            service: "catalog".into(),
            window: None,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(report.rpcs.len(), 1);
    let rpc = &report.rpcs[0];
    assert_eq!(
        (rpc.service.as_str(), rpc.rpc.as_str(), rpc.count),
        ("catalog", "ListAlbums", 100)
    );
    assert!((rpc.error_rate - 0.1).abs() < 1e-9);
    assert!((rpc.cache_hit_rate - 0.75).abs() < 1e-9);
    assert_eq!(rpc.mean_db_statements, 1.0);
    let p99 = Duration::try_from(rpc.p99.unwrap()).unwrap();
    assert_eq!(p99.as_millis(), 99);
    assert_eq!(report.slowest_statements.len(), 1);
    assert!(
        report
            .suggestions
            .iter()
            .any(|s| s.contains("Seq Scan on photos")),
        "{:?}",
        report.suggestions
    );

    let caches = app
        .client
        .get_cache_stats(pb::GetCacheStatsRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(caches.caches.len(), 1);
    assert_eq!((caches.caches[0].hits, caches.caches[0].misses), (60, 20));

    // The same figures on /metrics, as valid Prometheus text.
    let (_, body) = photos_testkit::http::get(app.admin, "/metrics").await;
    let lines = body.lines().map(|l| Ok(l.to_owned()));
    let scrape = prometheus_parse::Scrape::parse(lines).expect("the exposition parses");
    let total: f64 = scrape
        .samples
        .iter()
        .filter(|s| s.metric == "photos_reported_requests_total")
        .map(|s| match s.value {
            prometheus_parse::Value::Counter(v) | prometheus_parse::Value::Untyped(v) => v,
            _ => 0.0,
        })
        .sum();
    assert_eq!(total, 100.0, "{body}");
    for family in [
        "photos_grpc_server_requests_total",
        "photos_reported_cache_hits_total",
        "photos_reported_request_duration_seconds_count",
    ] {
        assert!(
            scrape.samples.iter().any(|s| s.metric == family),
            "{family} missing from {body}"
        );
    }

    app.stop.cancel();
    app.task.await.unwrap().unwrap();
}

#[tokio::test]
async fn malformed_reports_are_refused_with_a_clear_message() {
    let mut app = start().await;
    let unnamed = pb::ReportMetricsRequest {
        service: String::new(),
        ..report("a", 1..=1)
    };
    let status = app
        .client
        .report_metrics(tokio_stream::iter([unnamed]))
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert!(status.message().contains("service"), "{}", status.message());

    let mut negative = report("a", 1..=1);
    negative.requests[0].duration = Some(prost_types::Duration {
        seconds: -1,
        nanos: 0,
    });
    let status = app
        .client
        .report_metrics(tokio_stream::iter([negative]))
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert!(
        status.message().contains("requests.duration"),
        "{}",
        status.message()
    );

    // Nothing from the refused reports was counted.
    let report = app
        .client
        .get_performance_report(pb::GetPerformanceReportRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(report.rpcs.is_empty(), "{report:?}");
    app.stop.cancel();
    app.task.await.unwrap().unwrap();
}
