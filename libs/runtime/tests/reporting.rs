//! Per-call tracking on a real server: the cost metadata on every response, and the reporter
//! delivering every call's sample to a metrics-service endpoint (a collector that keeps what
//! it receives, served by the same runtime), including across an outage of that endpoint.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use photos_proto::metrics::v1 as pb;
use photos_proto::metrics::v1::metrics_service_server::{MetricsService, MetricsServiceServer};
use photos_proto::testing::v1::EchoRequest;
use photos_runtime::server::ServerBuilder;
use tonic::{Request, Response, Status, Streaming};

#[derive(Clone, Default)]
struct Collector {
    reports: Arc<Mutex<Vec<pb::ReportMetricsRequest>>>,
}

#[tonic::async_trait]
impl MetricsService for Collector {
    async fn report_metrics(
        &self,
        request: Request<Streaming<pb::ReportMetricsRequest>>,
    ) -> Result<Response<pb::ReportMetricsResponse>, Status> {
        let mut stream = request.into_inner();
        let mut accepted = 0;
        while let Some(report) = stream.message().await? {
            accepted += report.requests.len() as u64;
            self.reports.lock().unwrap().push(report);
        }
        Ok(Response::new(pb::ReportMetricsResponse { accepted }))
    }
}

impl Collector {
    fn samples(&self) -> Vec<(String, pb::RequestSample)> {
        self.reports
            .lock()
            .unwrap()
            .iter()
            .flat_map(|r| {
                r.requests
                    .iter()
                    .map(|s| (format!("{}@{}", r.service, r.instance), s.clone()))
            })
            .collect()
    }
}

/// Serves a collector on `port` (0 = any) until the returned token is cancelled.
async fn spawn_collector(
    collector: Collector,
    port: u16,
) -> (
    std::net::SocketAddr,
    tokio_util::sync::CancellationToken,
    tokio::task::JoinHandle<()>,
) {
    let server = ServerBuilder::new(
        "collector",
        photos_runtime::ServerConfig::with_ports(port, 0),
    )
    .add_service(MetricsServiceServer::new(collector))
    .bind()
    .await
    .expect("bind collector");
    let addr = server.grpc_addr();
    let stop = tokio_util::sync::CancellationToken::new();
    let s = stop.clone();
    let task = tokio::spawn(async move {
        server
            .run(|| async { Ok::<_, String>(()) }, s.cancelled_owned())
            .await
            .unwrap();
    });
    wait_serving(addr, "photos.metrics.v1.MetricsService").await;
    (addr, stop, task)
}

async fn echo(
    client: &mut photos_proto::testing::v1::echo_service_client::EchoServiceClient<
        tonic::transport::Channel,
    >,
) -> tonic::metadata::MetadataMap {
    client
        .echo(EchoRequest {
            message: "hi".into(),
            delay_ms: 0,
            forward_to: String::new(),
        })
        .await
        .expect("echo")
        .metadata()
        .clone()
}

#[tokio::test]
async fn every_response_carries_its_time_and_statement_count() {
    let server = spawn_echo(test_server_config()).await;
    let mut client = client(server.grpc).await;
    let metadata = echo(&mut client).await;
    let time: f64 = metadata
        .get("x-response-time")
        .expect("x-response-time")
        .to_str()
        .unwrap()
        .parse()
        .expect("milliseconds as a number");
    assert!(time >= 0.0);
    assert_eq!(
        metadata
            .get("x-db-query-count")
            .map(|v| v.to_str().unwrap()),
        Some("0"),
        "the echo service runs no SQL"
    );
    server.stop().await;
}

#[tokio::test]
async fn every_call_is_reported_once_and_health_checks_are_not() {
    let collector = Collector::default();
    let (addr, collector_stop, collector_task) = spawn_collector(collector.clone(), 0).await;
    let mut config = test_server_config();
    config.metrics_service = url(addr);
    config.report_interval_ms = 20;
    let server = spawn_echo(config).await;
    let mut client = client(server.grpc).await;
    for _ in 0..5 {
        echo(&mut client).await;
    }
    // Stopping flushes what is left: every call must be in the collector afterwards.
    server.stop().await;
    let samples = collector.samples();
    assert_eq!(samples.len(), 5, "{samples:?}");
    for (from, sample) in &samples {
        assert!(from.starts_with("echo@"), "{from}");
        assert_eq!(sample.rpc, "photos.testing.v1.EchoService/Echo");
        assert_eq!(sample.code, 0);
        assert!(sample.duration.is_some());
    }
    collector_stop.cancel();
    collector_task.await.unwrap();
}

#[tokio::test]
async fn samples_taken_while_the_metrics_service_is_down_are_delivered_when_it_returns() {
    // Reserve a port, then leave it closed: the reporter's calls are refused.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut config = test_server_config();
    config.metrics_service = format!("http://127.0.0.1:{port}");
    config.report_interval_ms = 20;
    let server = spawn_echo(config).await;
    let mut client = client(server.grpc).await;
    for _ in 0..3 {
        echo(&mut client).await;
    }
    // Wait until a report has really failed before the collector comes up.
    let mut failed = false;
    for _ in 0..500 {
        let metrics = http_get(server.admin, "/metrics").await.1;
        if metrics.contains("photos_report_failures_total{server=\"echo\"} ")
            && !metrics.contains("photos_report_failures_total{server=\"echo\"} 0")
        {
            failed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        failed,
        "no report failed while the metrics service was down"
    );
    let collector = Collector::default();
    let (_, collector_stop, collector_task) = spawn_collector(collector.clone(), port).await;
    echo(&mut client).await;
    server.stop().await;
    assert_eq!(
        collector.samples().len(),
        4,
        "the 3 calls made during the outage and the one after"
    );
    collector_stop.cancel();
    collector_task.await.unwrap();
}
