//! One gateway request is one trace across services, exported to a real OTLP receiver.
//! (Its own test binary: telemetry is process-global.)

mod common;

use std::time::Duration;

use common::*;
use photos_runtime::TelemetryConfig;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_request_is_one_trace_through_the_catalog() {
    let mut receiver = photos_testkit::otlp::start().await.unwrap();
    let telemetry = photos_runtime::telemetry::init(
        "photos",
        &TelemetryConfig {
            otlp_endpoint: receiver.endpoint(),
            ..TelemetryConfig::default()
        },
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mesh = start_mesh(dir.path()).await;
    wait_serving(mesh.addresses.catalog).await;

    // The caller (a browser's tracing, say) started the trace.
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let parent = "00f067aa0ba902b7";
    let (status, _) = http(
        mesh.addresses.gateway,
        "GET",
        "/api/v1/albums",
        &format!("traceparent: 00-{trace_id}-{parent}-01\r\n"),
    )
    .await;
    assert_eq!(status, 200);

    telemetry.flush();
    let spans = receiver.exported_spans(3, Duration::from_secs(10)).await;
    let trace: Vec<_> = spans.iter().filter(|s| s.trace_id == trace_id).collect();
    let gateway = trace
        .iter()
        .find(|s| s.name == "GET /api/v1/albums")
        .unwrap_or_else(|| panic!("no gateway span in {trace:#?}"));
    assert_eq!(
        gateway.parent_span_id, parent,
        "the gateway continues the caller's trace"
    );
    let client = trace
        .iter()
        .find(|s| s.kind.contains("CLIENT") && s.name.ends_with("CatalogService/ListAlbums"))
        .unwrap_or_else(|| panic!("no client span in {trace:#?}"));
    assert_eq!(client.parent_span_id, gateway.span_id);
    let catalog = trace
        .iter()
        .find(|s| s.kind.contains("SERVER") && s.name.ends_with("CatalogService/ListAlbums"))
        .unwrap_or_else(|| panic!("no catalog span in {trace:#?}"));
    assert_eq!(
        catalog.parent_span_id, client.span_id,
        "the catalog's span is a child of the gateway's call"
    );
    assert!(
        catalog
            .attributes
            .get("rpc.grpc.status_code")
            .is_some_and(|c| c.contains("IntValue(0)")),
        "OK recorded on the span: {catalog:#?}"
    );

    mesh.shutdown().await.unwrap();
    telemetry.shutdown();
}
