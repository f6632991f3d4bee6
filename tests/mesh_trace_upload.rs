//! An upload through the gateway and an album page read are each one trace, exported to a real
//! OTLP receiver: the upload's trace holds the gateway, storage, media and catalog server spans
//! with the image stages and SQL statements inside them, and every span hangs off the gateway's
//! request span. (Its own test binary: telemetry is process-global.)

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::*;
use photos_gateway::auth::Role;
use photos_runtime::TelemetryConfig;
use photos_testkit::otlp::{ExportedSpan, FakeCollectorServer};

/// Every span of `trace_id` received so far, collecting more until `done` holds (bounded).
async fn trace_spans(
    receiver: &mut FakeCollectorServer,
    seen: &mut Vec<ExportedSpan>,
    trace_id: &str,
    done: impl Fn(&[&ExportedSpan]) -> bool,
) -> Vec<ExportedSpan> {
    for _ in 0..40 {
        let trace: Vec<&ExportedSpan> = seen.iter().filter(|s| s.trace_id == trace_id).collect();
        if done(&trace) {
            return trace.into_iter().cloned().collect();
        }
        seen.extend(receiver.exported_spans(1, Duration::from_millis(250)).await);
    }
    seen.iter()
        .filter(|s| s.trace_id == trace_id)
        .cloned()
        .collect()
}

fn server_span<'a>(trace: &'a [ExportedSpan], rpc: &str) -> &'a ExportedSpan {
    trace
        .iter()
        .find(|s| s.kind.contains("SERVER") && s.name.ends_with(rpc))
        .unwrap_or_else(|| panic!("no server span for {rpc} in {:#?}", names(trace)))
}

fn names(trace: &[ExportedSpan]) -> Vec<String> {
    trace
        .iter()
        .map(|s| format!("{} ({})", s.name, s.kind))
        .collect()
}

/// Every span's parent is in the trace, up to the gateway span whose parent is the caller's.
fn assert_one_tree(trace: &[ExportedSpan], root: &ExportedSpan, caller_parent: &str) {
    assert_eq!(
        root.parent_span_id, caller_parent,
        "the gateway continues the caller's trace"
    );
    let by_id: HashMap<&str, &ExportedSpan> =
        trace.iter().map(|s| (s.span_id.as_str(), s)).collect();
    for span in trace {
        let mut at = span;
        let mut hops = 0;
        while at.span_id != root.span_id {
            at = by_id.get(at.parent_span_id.as_str()).unwrap_or_else(|| {
                panic!(
                    "{} has a parent outside the trace: {:#?}",
                    span.name,
                    names(trace)
                )
            });
            hops += 1;
            assert!(hops < 64, "parent cycle at {}", span.name);
        }
    }
}

/// A server span in another service is the child of a client span, not of a local span.
fn assert_called_over_grpc(trace: &[ExportedSpan], server: &ExportedSpan) {
    let parent = trace
        .iter()
        .find(|s| s.span_id == server.parent_span_id)
        .unwrap_or_else(|| panic!("{} has no parent in the trace", server.name));
    assert!(
        parent.kind.contains("CLIENT") && parent.name == server.name,
        "{} should be the child of its client call, got {} ({})",
        server.name,
        parent.name,
        parent.kind
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_and_an_album_page_are_each_one_trace_across_the_services() {
    let mut receiver = photos_testkit::otlp::start().await.unwrap();
    let telemetry = photos_runtime::telemetry::init(
        "photos",
        &TelemetryConfig {
            otlp_endpoint: receiver.endpoint(),
            ..TelemetryConfig::default()
        },
    )
    .unwrap();
    let env = Env::start().await;
    let admin = env.token("admin", Role::Admin);
    let album = env.create_album(&admin, true).await;

    let upload_trace = "5bf92f3577b34da6a3ce929d0e0e4736";
    let caller = "00f067aa0ba902b7";
    let traceparent = format!("00-{upload_trace}-{caller}-01");
    let (status, _, photo) = env
        .upload(
            &album,
            Some(&admin),
            &[("traceparent", traceparent.as_str())],
            &form(&[], Some(&jpeg(640, 480, 1))),
        )
        .await;
    assert_eq!(status, 201, "{photo}");

    let page_trace = "6bf92f3577b34da6a3ce929d0e0e4736";
    let traceparent = format!("00-{page_trace}-{caller}-01");
    let (status, _) = http(
        env.mesh.addresses.gateway,
        "GET",
        &format!("/api/v1/albums/{album}"),
        &format!("traceparent: {traceparent}\r\nAuthorization: {admin}\r\n"),
    )
    .await;
    assert_eq!(status, 200);
    telemetry.flush();

    let mut seen = Vec::new();
    let upload = trace_spans(&mut receiver, &mut seen, upload_trace, |t| {
        [
            "StorageService/PutObject",
            "MediaService/ProcessStoredImage",
            "CatalogService/RecordMediaResult",
        ]
        .iter()
        .all(|rpc| {
            t.iter()
                .any(|s| s.kind.contains("SERVER") && s.name.ends_with(rpc))
        }) && t.iter().any(|s| s.name.starts_with("POST /api/v1/albums/"))
    })
    .await;
    let gateway = upload
        .iter()
        .find(|s| s.name == format!("POST /api/v1/albums/{album}/photos"))
        .unwrap_or_else(|| panic!("no gateway span in {:#?}", names(&upload)));
    assert_one_tree(&upload, gateway, caller);
    for rpc in [
        "StorageService/PutObject",
        "MediaService/ProcessStoredImage",
        "CatalogService/CreatePhoto",
        "CatalogService/RecordMediaResult",
    ] {
        assert_called_over_grpc(&upload, server_span(&upload, rpc));
    }
    // Media reads the original from storage and writes the variants through it: nested calls.
    let media = server_span(&upload, "MediaService/ProcessStoredImage");
    let media_children: Vec<&ExportedSpan> = upload
        .iter()
        .filter(|s| s.kind.contains("SERVER") && s.name.starts_with("photos.storage.v1"))
        .filter(|s| {
            let client = upload
                .iter()
                .find(|c| c.span_id == s.parent_span_id)
                .unwrap();
            client.parent_span_id == media.span_id
                || upload.iter().any(|m| {
                    m.span_id == client.parent_span_id && m.parent_span_id == media.span_id
                })
        })
        .collect();
    assert!(
        !media_children.is_empty(),
        "media's storage calls are inside its span: {:#?}",
        names(&upload)
    );
    for stage in [
        "image.decode",
        "image.resize",
        "image.encode",
        "db.query",
        "S3 PutObject",
        "S3 GetObject",
    ] {
        assert!(
            upload.iter().any(|s| s.name == stage),
            "no {stage} span in the upload trace: {:#?}",
            names(&upload)
        );
    }
    let encode = upload.iter().find(|s| s.name == "image.encode").unwrap();
    assert!(
        encode.attributes.contains_key("image.preset"),
        "{encode:#?}"
    );
    let query = upload.iter().find(|s| s.name == "db.query").unwrap();
    assert!(
        query
            .attributes
            .get("db.statement")
            .is_some_and(|s| s.contains("photos")),
        "{query:#?}"
    );

    let page = trace_spans(&mut receiver, &mut seen, page_trace, |t| {
        t.iter()
            .any(|s| s.kind.contains("SERVER") && s.name.ends_with("CatalogService/GetAlbum"))
            && t.iter().any(|s| s.name.starts_with("GET /api/v1/albums/"))
    })
    .await;
    let gateway = page
        .iter()
        .find(|s| s.name == format!("GET /api/v1/albums/{album}"))
        .unwrap_or_else(|| panic!("no gateway span in {:#?}", names(&page)));
    assert_one_tree(&page, gateway, caller);
    assert_called_over_grpc(&page, server_span(&page, "CatalogService/GetAlbum"));
    let lookup = page
        .iter()
        .find(|s| s.name == "cache.get")
        .unwrap_or_else(|| panic!("no cache span in the page trace: {:#?}", names(&page)));
    assert!(lookup.attributes.contains_key("cache.hit"), "{lookup:#?}");

    env.mesh.shutdown().await.unwrap();
    telemetry.shutdown();
}
