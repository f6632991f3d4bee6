//! Faults across the mesh (docs/reliability.md, "Faults"): a downstream service down or hung
//! in the middle of uploads through the gateway. The whole mesh runs in process; a second
//! gateway reaches media through a fault proxy that plays a dead server (connections closed at
//! once) or a hung one (accepted, never answered), and counts every connection attempt. Every
//! loop is bounded; nothing asserts on wall-clock durations.

mod common;

use common::*;
use photos_gateway::auth::Role;
use photos_proto::storage::v1 as storage_pb;
use photos_proto::storage::v1::storage_service_client::StorageServiceClient;
use photos_runtime::UpstreamConfig;
use photos_testkit::faults::{FaultProxy, Mode};
use photos_testkit::http::request_bytes;

/// The gateway's deadline for media calls in this test. Long enough that a healthy upload
/// never meets it on a loaded debug build (1.5 s did: a 504 before any fault), short enough
/// that the hung phase, which waits it out once, stays cheap.
const MEDIA_DEADLINE_MS: u64 = 6_000;

struct SecondGateway {
    addr: std::net::SocketAddr,
    retries: std::sync::Arc<photos_gateway::retry::RetryBudget>,
    _stop: tokio::sync::oneshot::Sender<()>,
}

/// A gateway like the mesh's own, except that media is reached through `media`.
async fn gateway_via(env: &Env, media: &FaultProxy) -> SecondGateway {
    let a = &env.mesh.addresses;
    let url = |addr: std::net::SocketAddr| format!("http://{addr}");
    let mut config = photos_gateway::GatewayConfig::default();
    config.http.port = 0;
    config.auth = env.auth.clone();
    config.rate_limit.requests_per_minute = 0;
    config.catalog = UpstreamConfig::new(url(a.catalog));
    config.storage = UpstreamConfig {
        request_timeout_ms: 30_000,
        ..UpstreamConfig::new(url(a.storage))
    };
    config.cache_admin = UpstreamConfig::new(url(a.cache_admin));
    config.metrics = UpstreamConfig::new(url(a.metrics));
    config.media = UpstreamConfig {
        request_timeout_ms: MEDIA_DEADLINE_MS,
        ..UpstreamConfig::new(media.endpoint())
    };
    let gateway = photos_gateway::build(config).await.unwrap();
    let addr = gateway.http_addr();
    let retries = gateway.retry_budget();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(gateway.run_until_stopped(async {
        let _ = stopped.await;
    }));
    SecondGateway {
        addr,
        retries,
        _stop: stop,
    }
}

async fn upload(
    gateway: std::net::SocketAddr,
    token: &str,
    album: &str,
    seed: u8,
) -> (u16, String, serde_json::Value) {
    let content_type = format!("multipart/form-data; boundary={BOUNDARY}");
    let body = form(&[("title", "fault")], Some(&jpeg(640, 480, seed)));
    let (status, head, body) = request_bytes(
        gateway,
        "POST",
        &format!("/api/v1/albums/{album}/photos"),
        &[
            ("Content-Type", content_type.as_str()),
            ("Authorization", token),
        ],
        Some(&body),
    )
    .await;
    let json = serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null);
    (status, head, json)
}

async fn photo_count(env: &Env, album: &str, token: &str) -> i64 {
    let (status, _, detail) = env
        .call("GET", &format!("/api/v1/albums/{album}"), Some(token), None)
        .await;
    assert_eq!(status, 200, "{detail}");
    detail["album"]["photo_count"].as_i64().unwrap()
}

/// Originals stored for an album, straight from storage.
async fn originals(env: &Env, album: &str) -> usize {
    let mut storage = StorageServiceClient::new(channel(env.mesh.addresses.storage).await);
    let mut pages = storage
        .list_objects(storage_pb::ListObjectsRequest {
            prefix: format!("originals/{album}/"),
            older_than_days: 0,
        })
        .await
        .unwrap()
        .into_inner();
    let mut n = 0;
    while let Some(page) = pages.message().await.unwrap() {
        n += page.objects.len();
    }
    n
}

/// Media down (refused), then hung, under uploads through the gateway: each upload answers a
/// problem document at once (503 `unavailable`) or at the media deadline (504
/// `deadline_exceeded`, naming it), the gateway's retries of media stay within its retry budget
/// (no retry storm against a dead service; a deadline is never retried), and nothing is
/// half-written: no catalog row
/// and no original left in storage. When media is back, uploads succeed again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn media_down_or_hung_during_uploads_fails_cleanly_and_leaves_nothing() {
    let env = Env::start().await;
    wait_serving(env.mesh.addresses.media).await;
    wait_serving(env.mesh.addresses.storage).await;
    let proxy = FaultProxy::start(env.mesh.addresses.media).await.unwrap();
    let gateway = gateway_via(&env, &proxy).await;
    let alice = env.token("alice", Role::Owner);
    let album = env.create_album(&alice, false).await;

    // Through the proxy, uploads work.
    let (status, _, photo) = upload(gateway.addr, &alice, &album, 1).await;
    assert_eq!(status, 201, "{photo}");
    assert_eq!(
        (
            photo_count(&env, &album, &alice).await,
            originals(&env, &album).await
        ),
        (1, 1)
    );

    // Media down: connections are closed as soon as they open.
    proxy.set_mode(Mode::Refuse);
    let (connections_before, retries_before) = (proxy.connections(), gateway.retries.retries());
    const DOWN_UPLOADS: u64 = 5;
    for seed in 0..DOWN_UPLOADS {
        let (status, head, problem) = upload(gateway.addr, &alice, &album, 10 + seed as u8).await;
        assert_eq!(status, 503, "{head}\n{problem}");
        assert!(
            header(&head, "content-type")
                .is_some_and(|v| v.starts_with("application/problem+json")),
            "{head}"
        );
        assert_eq!(problem["kind"], "unavailable", "{problem}");
        assert!(
            problem["detail"]
                .as_str()
                .is_some_and(|d| d.contains("upstream unreachable")),
            "{problem}"
        );
    }
    // The gateway retries media once on UNAVAILABLE while its retry budget (10 tokens, one per
    // failed attempt, retries only above half) allows: from a full bucket that is the first two
    // uploads, then none, however long the outage lasts.
    let down_retries = gateway.retries.retries() - retries_before;
    assert_eq!(down_retries, 2, "retries beyond the budget");
    let down_connections = proxy.connections() - connections_before;
    assert!(down_connections >= 1);
    assert_eq!(
        (
            photo_count(&env, &album, &alice).await,
            originals(&env, &album).await
        ),
        (1, 1),
        "no row and no original from the failed uploads"
    );

    // Media hung: connections are accepted and never answered. The call ends at the gateway's
    // media deadline, as DEADLINE_EXCEEDED naming it, instead of hanging.
    proxy.set_mode(Mode::Hang);
    let (connections_before, retries_before) = (proxy.connections(), gateway.retries.retries());
    let (status, head, problem) = tokio::time::timeout(
        std::time::Duration::from_secs(60),
        upload(gateway.addr, &alice, &album, 30),
    )
    .await
    .expect("the upload ends at its deadline, not never");
    assert_eq!(status, 504, "{head}\n{problem}");
    assert_eq!(problem["kind"], "deadline_exceeded", "{problem}");
    assert!(
        problem["detail"]
            .as_str()
            .is_some_and(|d| d.contains(&format!("{MEDIA_DEADLINE_MS} ms"))),
        "{problem}"
    );
    assert_eq!(
        gateway.retries.retries(),
        retries_before,
        "a deadline is never retried"
    );
    let hung_connections = proxy.connections() - connections_before;
    assert!(hung_connections <= 1, "{hung_connections} connections");
    assert_eq!(
        (
            photo_count(&env, &album, &alice).await,
            originals(&env, &album).await
        ),
        (1, 1),
        "no row and no original from the timed-out upload"
    );

    // Media back.
    proxy.set_mode(Mode::Pass);
    let (status, _, photo) = upload(gateway.addr, &alice, &album, 2).await;
    assert_eq!(status, 201, "{photo}");
    assert_eq!(
        (
            photo_count(&env, &album, &alice).await,
            originals(&env, &album).await
        ),
        (2, 2)
    );
    eprintln!(
        "media down: {DOWN_UPLOADS} uploads -> {DOWN_UPLOADS} x 503; media RPC attempts {} \
         ({down_retries} budgeted retries), TCP connections opened by the client channel \
         {down_connections}; media hung: 1 upload -> 504 at the {MEDIA_DEADLINE_MS} ms deadline, \
         0 retries, {hung_connections} connection; rows/originals written by failed uploads: \
         0/0; after recovery: 201",
        DOWN_UPLOADS + down_retries
    );
}
