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

/// A gateway like the mesh's own, except that media is reached through `media`.
async fn gateway_via(env: &Env, media: &FaultProxy) -> SecondGateway {
    let mut config = env.gateway_config();
    config.storage.request_timeout_ms = 30_000;
    config.media = UpstreamConfig {
        request_timeout_ms: MEDIA_DEADLINE_MS,
        ..UpstreamConfig::new(media.endpoint())
    };
    SecondGateway::start(config).await
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

/// A private PostgreSQL's `photos` rows for an album (straight from the database).
async fn rows_in_album(url: &str, album: &str) -> i64 {
    use sqlx::Connection;
    let mut c = sqlx::PgConnection::connect(url).await.unwrap();
    let album: i64 = album.parse().unwrap();
    sqlx::query_scalar("SELECT count(*) FROM photos WHERE album_id = $1")
        .bind(album)
        .fetch_one(&mut c)
        .await
        .unwrap()
}

fn assert_unavailable_problem(status: u16, head: &str, problem: &serde_json::Value) {
    assert_eq!(status, 503, "{head}\n{problem}");
    assert!(
        header(head, "content-type").is_some_and(|v| v.starts_with("application/problem+json")),
        "{head}"
    );
    assert_eq!(problem["kind"], "unavailable", "{problem}");
}

/// PostgreSQL (a private cluster: stopping the shared one would break every other test) stopped
/// while an upload through the gateway waits inside the catalog's INSERT, then restarted. The
/// upload in flight and every request while the database is down answer 503 with a problem
/// document (the catalog's pool gives up within its acquire timeout; nothing hangs) and leave no
/// row and no original; after the restart requests succeed, and the retried upload leaves
/// exactly one row (a second retry finds it: 200, the same photo).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_restarted_mid_upload_answers_503_recovers_and_keeps_one_row() {
    let postgres = photos_testkit::postgres::PrivatePostgres::start()
        .await
        .expect("a private PostgreSQL");
    let url = postgres.url();
    let s3 = photos_testkit::s3::TestS3::start().await.unwrap();
    let env = Env::start_with(|c| {
        // The real backends instead of the embedded ones: the catalog on PostgreSQL, storage
        // on an S3 server of the test's own.
        c.embedded = false;
        c.catalog.database.url = photos_runtime::Secret::new(url.clone());
        c.catalog.database.acquire_timeout_ms = 500;
        c.catalog.database.max_connections = 4;
        // Every read reaches the database, so the outage is seen by reads too.
        c.catalog.cache.backend = photos_catalog::config::CacheBackend::None;
        c.catalog.jobs.run_workers = false;
        c.storage.s3.endpoint = s3.endpoint();
        c.storage.s3.bucket = photos_testkit::s3::BUCKET.into();
        c.storage.s3.region = photos_testkit::s3::REGION.into();
        c.storage.s3.access_key = photos_runtime::Secret::new(photos_testkit::s3::ACCESS_KEY);
        c.storage.s3.secret_key = photos_runtime::Secret::new(photos_testkit::s3::SECRET_KEY);
        c.storage.s3.force_path_style = true;
    })
    .await;
    wait_serving(env.mesh.addresses.media).await;
    wait_serving(env.mesh.addresses.storage).await;
    let gateway = env.mesh.addresses.gateway;
    let alice = env.token("alice", Role::Owner);
    let album = env.create_album(&alice, false).await;
    let (status, _, photo) = upload(gateway, &alice, &album, 1).await;
    assert_eq!(status, 201, "{photo}");
    assert_eq!(
        (
            rows_in_album(&url, &album).await,
            originals(&env, &album).await
        ),
        (1, 1)
    );

    // An upload in flight: its CreatePhoto waits on a lock inside its INSERT when the server
    // stops (`-m fast` ends every session with 57P01).
    let mut locker = {
        use sqlx::Connection;
        sqlx::PgConnection::connect(&url).await.unwrap()
    };
    sqlx::raw_sql("BEGIN; LOCK TABLE photos IN SHARE MODE")
        .execute(&mut locker)
        .await
        .unwrap();
    let in_flight = tokio::spawn({
        let alice = alice.clone();
        let album = album.clone();
        async move { upload(gateway, &alice, &album, 2).await }
    });
    photos_testkit::postgres::wait_blocked_on_lock(&url, 1, false).await;
    tokio::task::block_in_place(|| postgres.stop_server("fast")).unwrap();
    let (status, head, problem) = in_flight.await.unwrap();
    assert_unavailable_problem(status, &head, &problem);
    drop(locker);

    // While it is down: reads and uploads answer 503 problem documents.
    const DOWN_REQUESTS: usize = 3;
    for n in 0..DOWN_REQUESTS {
        let (status, head, problem) = env
            .call(
                "GET",
                &format!("/api/v1/albums/{album}"),
                Some(&alice),
                None,
            )
            .await;
        assert_unavailable_problem(status, &head, &problem);
        let (status, head, problem) = upload(gateway, &alice, &album, 10 + n as u8).await;
        assert_unavailable_problem(status, &head, &problem);
    }

    postgres.start_server().await.unwrap();
    // The pool replaces the connections the restart broke; count the 503s meanwhile.
    let mut failed_while_recovering = 0;
    for attempt in 0.. {
        let (status, head, problem) = env
            .call(
                "GET",
                &format!("/api/v1/albums/{album}"),
                Some(&alice),
                None,
            )
            .await;
        if status == 200 {
            break;
        }
        assert_unavailable_problem(status, &head, &problem);
        failed_while_recovering += 1;
        assert!(attempt < 400, "the gateway never recovered");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }

    // Nothing was written by the failed uploads: one row, one original.
    assert_eq!(
        (
            rows_in_album(&url, &album).await,
            originals(&env, &album).await
        ),
        (1, 1),
        "no row and no original from the uploads that failed"
    );
    // The interrupted upload retried: created once; a second retry finds the same photo.
    let (status, _, first) = upload(gateway, &alice, &album, 2).await;
    assert_eq!(status, 201, "{first}");
    let (status, _, again) = upload(gateway, &alice, &album, 2).await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(first["id"], again["id"]);
    assert_eq!(
        (
            rows_in_album(&url, &album).await,
            originals(&env, &album).await
        ),
        (2, 2),
        "the retried upload left exactly one row and one original"
    );
    eprintln!(
        "postgres restarted mid-upload through the gateway: in-flight upload 503; while down \
         {DOWN_REQUESTS} reads + {DOWN_REQUESTS} uploads, all 503 problem documents; 503s while \
         the pool recovered: {failed_while_recovering}; retried upload 201 then 200 (same \
         photo); rows 2, originals 2 (the first photo and the retried one)"
    );
}
