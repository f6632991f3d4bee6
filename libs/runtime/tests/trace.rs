//! One call through two services is one trace in a real OTLP receiver: the second server's span
//! is the child of the first server's client span, carried by `traceparent` over the wire.
//! (Its own test binary: telemetry is process-global.)

mod common;

use std::time::Duration;

use common::*;
use photos_proto::testing::v1::EchoRequest;
use photos_runtime::TelemetryConfig;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_through_two_services_is_one_trace() {
    let mut receiver = photos_testkit::otlp::start().await.unwrap();
    let telemetry = photos_runtime::telemetry::init(
        "trace-test",
        &TelemetryConfig {
            otlp_endpoint: receiver.endpoint(),
            ..TelemetryConfig::default()
        },
    )
    .unwrap();

    let (a, b) = (
        spawn_echo(test_server_config()).await,
        spawn_echo(test_server_config()).await,
    );
    let (a_addr, b_addr) = (a.grpc, b.grpc);

    // A plain client with no trace of its own: A's server span is the root.
    let mut echo = client(a_addr).await;
    let answer = echo
        .echo(EchoRequest {
            message: "trace me".into(),
            delay_ms: 0,
            forward_to: url(b_addr),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(answer.trace_ids.len(), 2);
    assert!(!answer.trace_ids[0].is_empty());
    assert_eq!(
        answer.trace_ids[0], answer.trace_ids[1],
        "both hops saw the same trace id"
    );
    let trace_id = answer.trace_ids[0].clone();

    telemetry.flush();
    let spans = receiver.exported_spans(3, Duration::from_secs(10)).await;
    let in_trace: Vec<_> = spans.iter().filter(|s| s.trace_id == trace_id).collect();
    let find = |kind: &str, skip: usize| {
        in_trace
            .iter()
            .filter(|s| s.kind.contains(kind) && s.name == "photos.testing.v1.EchoService/Echo")
            .nth(skip)
            .copied()
    };
    let client_span =
        find("CLIENT", 0).unwrap_or_else(|| panic!("no client span in {in_trace:#?}"));
    let servers: Vec<_> = in_trace
        .iter()
        .filter(|s| s.kind.contains("SERVER"))
        .collect();
    assert_eq!(
        servers.len(),
        2,
        "two server spans in the trace: {in_trace:#?}"
    );
    let root = servers
        .iter()
        .find(|s| s.parent_span_id.is_empty() || s.parent_span_id.chars().all(|c| c == '0'))
        .expect("A's server span is the root");
    let second = servers.iter().find(|s| s.span_id != root.span_id).unwrap();
    assert_eq!(
        client_span.parent_span_id, root.span_id,
        "A's client span is a child of A's server span"
    );
    assert_eq!(
        second.parent_span_id, client_span.span_id,
        "B's server span is a child of A's client span"
    );
    // The receiver renders attribute values in their protobuf debug form.
    let method = second
        .attributes
        .get("rpc.method")
        .cloned()
        .unwrap_or_default();
    assert!(
        method.contains("\"Echo\""),
        "rpc.method attribute: {method}"
    );

    a.stop().await;
    b.stop().await;
    telemetry.shutdown();
}
