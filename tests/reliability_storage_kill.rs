//! Storage killed in the middle of an upload through the gateway (docs/reliability.md,
//! "Faults"). Storage runs as a process of its own (`photos-e2e-storage`, the storage binary's
//! `main`) on SeaweedFS behind a fault proxy that counts its S3 requests; the catalog is the
//! mesh's, on a PostgreSQL database of the test's own; media and the gateway are built here with
//! the storage process as their storage upstream. Every wait is bounded; nothing asserts on
//! wall-clock durations.

mod common;

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use photos_gateway::auth::Role;
use photos_runtime::{Secret, UpstreamConfig};
use photos_testkit::faults::FaultProxy;
use photos_testkit::postgres::TestDatabase;
use photos_testkit::{ports, s3, wait};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const BIN: &str = env!("CARGO_BIN_EXE_photos-e2e-storage");
const MIB: usize = 1024 * 1024;
/// S3's smallest part, and storage's smallest allowed threshold and part size: an upload of
/// more than this is a multipart upload, and its first part is sent once this much has arrived.
const PART: usize = 5 * MIB;

/// The storage process, always on one port so that a restart is reached at the address the
/// gateway and media were configured with (as a Kubernetes Service would be).
struct StorageProcess {
    child: Child,
    grpc: SocketAddr,
    log: std::path::PathBuf,
}

impl StorageProcess {
    /// Starts storage on `port`, talking to S3 at `s3_endpoint`, with `extra` environment
    /// variables set last (they win). Its multipart threshold and part size are S3's minimum.
    fn spawn(
        port: u16,
        s3_endpoint: &str,
        log: std::path::PathBuf,
        extra: &[(&str, &str)],
    ) -> Self {
        let child = Command::new(BIN)
            .envs([
                ("PHOTOS__SERVER__GRPC_PORT", port.to_string()),
                ("PHOTOS__SERVER__ADMIN_PORT", "0".to_owned()),
                ("PHOTOS__SERVER__DRAIN_DELAY_MS", "100".to_owned()),
                ("PHOTOS__SERVER__DRAIN_GRACE_MS", "2000".to_owned()),
                ("PHOTOS__TELEMETRY__LOG_FORMAT", "json".to_owned()),
                ("PHOTOS__MULTIPART_SWEEP__INTERVAL_SECONDS", "0".to_owned()),
                (
                    "PHOTOS__TRANSFER__MULTIPART_THRESHOLD_BYTES",
                    PART.to_string(),
                ),
                ("PHOTOS__TRANSFER__PART_SIZE_BYTES", PART.to_string()),
            ])
            .envs(s3::storage_env(s3_endpoint))
            .envs(extra.iter().copied())
            .env_remove("RUST_LOG")
            .env_remove("PHOTOS_CONFIG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("spawn the storage process");
        StorageProcess {
            child,
            grpc: SocketAddr::from(([127, 0, 0, 1], port)),
            log,
        }
    }

    /// Starts storage again on `port` (the address the gateway and media were given) and waits
    /// for SERVING. Another process may have taken the port while storage was down: a start
    /// that fails to bind is tried again (5 times, 500 ms apart), then fails the test saying so.
    async fn restart(
        port: u16,
        s3_endpoint: &str,
        log: std::path::PathBuf,
        extra: &[(&str, &str)],
    ) -> Self {
        let mut tries = 0;
        loop {
            let mut storage = Self::spawn(port, s3_endpoint, log.clone(), extra);
            match storage.try_serving().await {
                Ok(()) => return storage,
                Err(exit) => {
                    let text = storage.log();
                    let bind = text.to_lowercase().contains("in use");
                    assert!(
                        bind && tries < 5,
                        "storage restarted on port {port} exited ({exit}) before SERVING{}; log:\n{text}",
                        if bind {
                            ": the port stayed taken by another process"
                        } else {
                            ""
                        }
                    );
                    tries += 1;
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
        }
    }

    /// Waits (bounded) for grpc.health.v1 to report SERVING; fails at once if the process
    /// exited (e.g. its port was taken), with its log.
    async fn serving(&mut self) {
        if let Err(exit) = self.try_serving().await {
            panic!(
                "storage exited ({exit}) before SERVING; log:\n{}",
                self.log()
            );
        }
    }

    /// Waits (bounded) for SERVING; `Err` with the exit status if the process exited first.
    async fn try_serving(&mut self) -> Result<(), std::process::ExitStatus> {
        use tonic_health::pb::HealthCheckRequest;
        use tonic_health::pb::health_check_response::ServingStatus;
        use tonic_health::pb::health_client::HealthClient;
        let url = format!("http://{}", self.grpc);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(exit) = self.child.try_wait().unwrap() {
                return Err(exit);
            }
            let status = async {
                let channel = tonic::transport::Endpoint::from_shared(url.clone())
                    .unwrap()
                    .connect()
                    .await
                    .ok()?;
                HealthClient::new(channel)
                    .check(HealthCheckRequest {
                        service: "photos.storage.v1.StorageService".into(),
                    })
                    .await
                    .ok()
                    .map(|r| r.into_inner().status)
            };
            // Bounded: whatever holds the port (another process, if storage could not bind it)
            // may accept and never answer; the loop must get back to checking the child.
            let status = tokio::time::timeout(Duration::from_secs(2), status)
                .await
                .ok()
                .flatten();
            if status == Some(ServingStatus::Serving as i32) {
                return Ok(());
            }
            assert!(
                Instant::now() < deadline,
                "storage not SERVING within 60 s; log:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([signal, &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success(), "kill {signal}");
    }

    /// Waits (bounded) for the process to exit.
    async fn exited(&mut self, bound: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + bound;
        loop {
            if let Some(exit) = self.child.try_wait().unwrap() {
                return exit;
            }
            assert!(
                Instant::now() < deadline,
                "storage still running {bound:?} after the signal; log:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for StorageProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A real JPEG of `PART` + 3 MiB: a small picture followed (after SOI) by APP15 segments of
/// seeded noise, which decoders skip. The size is what makes the gateway's write a multipart
/// upload; the pixels stay few, so media's work stays small on a two-core machine.
fn large_jpeg(seed: u8) -> Vec<u8> {
    let picture = jpeg(640, 480, seed);
    let target = PART + 3 * MIB;
    let mut out = Vec::with_capacity(target + picture.len());
    out.extend_from_slice(&picture[..2]); // SOI
    let mut x = u64::from(seed) | 0x9e37_79b9_7f4a_7c15;
    while out.len() + picture.len() < target {
        const SEGMENT: usize = 65_533; // the largest: the length field counts itself
        out.extend_from_slice(&[0xFF, 0xEF]);
        out.extend_from_slice(&(SEGMENT as u16 + 2).to_be_bytes());
        for _ in 0..SEGMENT {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            out.push(x as u8);
        }
    }
    out.extend_from_slice(&picture[2..]);
    out
}

/// A media service like the mesh's, except that storage is `storage`.
async fn media_via(env: &Env, storage: &str) -> (SocketAddr, tokio::sync::oneshot::Sender<()>) {
    let mut config = photos_media::MediaConfig::default();
    config.server.grpc_port = 0;
    config.server.admin_port = 0;
    config.server.metrics_service = format!("http://{}", env.mesh.addresses.metrics);
    config.storage = UpstreamConfig {
        request_timeout_ms: 60_000,
        ..UpstreamConfig::new(storage)
    };
    let media = photos_media::build(config).await.unwrap();
    let addr = media.grpc_addr();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(media.run_until_stopped(async {
        let _ = stopped.await;
    }));
    (addr, stop)
}

/// A gateway like the mesh's, except that storage is `storage` and media is `media`.
async fn gateway_via(env: &Env, storage: &str, media: SocketAddr) -> SecondGateway {
    let mut config = env.gateway_config();
    // A whole upload is one PutObject call: room for 8 MiB on a loaded debug build.
    config.storage = UpstreamConfig {
        request_timeout_ms: 60_000,
        ..UpstreamConfig::new(storage)
    };
    config.media = UpstreamConfig {
        request_timeout_ms: 60_000,
        ..UpstreamConfig::new(format!("http://{media}"))
    };
    SecondGateway::start(config).await
}

/// An upload whose body is sent in two pieces: `body[..cut]`, then `between` runs (the fault),
/// then the rest, while the answer is read. Whatever the server sent before closing is the
/// answer (a write error on the rest is not: the server may answer and close before reading it).
async fn upload_in_two_pieces(
    gateway: SocketAddr,
    token: &str,
    album: &str,
    body: &[u8],
    cut: usize,
    between: impl Future<Output = ()>,
) -> (u16, String, serde_json::Value) {
    let stream = tokio::net::TcpStream::connect(gateway).await.unwrap();
    let (mut read, mut write) = stream.into_split();
    let head = format!(
        "POST /api/v1/albums/{album}/photos HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\
         Authorization: {token}\r\nContent-Type: multipart/form-data; boundary={BOUNDARY}\r\n\
         Content-Length: {}\r\n\r\n",
        body.len()
    );
    write.write_all(head.as_bytes()).await.unwrap();
    write.write_all(&body[..cut]).await.unwrap();
    between.await;
    let rest = body[cut..].to_vec();
    let writer = tokio::spawn(async move {
        let _ = write.write_all(&rest).await;
        write
    });
    let mut raw = Vec::new();
    let read_all = tokio::time::timeout(Duration::from_secs(60), read.read_to_end(&mut raw)).await;
    assert!(
        read_all.is_ok(),
        "no answer within 60 s of the fault; read so far: {}",
        String::from_utf8_lossy(&raw)
    );
    drop(writer.await);
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or(raw.len());
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let body = raw.get(split + 4..).unwrap_or_default();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (
        status,
        head,
        serde_json::from_slice(body).unwrap_or(serde_json::Value::Null),
    )
}

async fn upload(
    gateway: SocketAddr,
    token: &str,
    album: &str,
    body: &[u8],
) -> (u16, String, serde_json::Value) {
    let content_type = format!("multipart/form-data; boundary={BOUNDARY}");
    let (status, head, body) = tokio::time::timeout(
        Duration::from_secs(120),
        photos_testkit::http::request_bytes(
            gateway,
            "POST",
            &format!("/api/v1/albums/{album}/photos"),
            &[
                ("Content-Type", content_type.as_str()),
                ("Authorization", token),
            ],
            Some(body),
        ),
    )
    .await
    .expect("an upload answered within 120 s");
    (
        status,
        head,
        serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null),
    )
}

/// The album's photos as the gateway lists them (through the catalog), by id.
async fn listed_photos(gateway: SocketAddr, album: &str, token: &str) -> Vec<String> {
    let (status, _, body) = request(
        gateway,
        "GET",
        &format!("/api/v1/albums/{album}/photos"),
        &[("Authorization", token)],
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let page: serde_json::Value = serde_json::from_str(&body).unwrap();
    page["photos"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_str().unwrap().to_owned())
        .collect()
}

/// Rows in `photos` for the album, and how far the table's id sequence has gone (`None`: never
/// used). An INSERT takes an id even when it is rolled back or its row is deleted later, so an
/// unchanged sequence means no row was written at all, not merely none left.
async fn rows(db: &str, album: &str) -> (i64, Option<i64>) {
    use sqlx::Connection;
    let mut c = sqlx::PgConnection::connect(db).await.unwrap();
    let album: i64 = album.parse().unwrap();
    let count = sqlx::query_scalar("SELECT count(*) FROM photos WHERE album_id = $1")
        .bind(album)
        .fetch_one(&mut c)
        .await
        .unwrap();
    let used = sqlx::query_scalar(
        "SELECT pg_sequence_last_value(pg_get_serial_sequence('photos', 'id')::regclass)",
    )
    .fetch_one(&mut c)
    .await
    .unwrap();
    (count, used)
}

/// Objects under `prefix`, straight from the store.
async fn objects(client: &aws_sdk_s3::Client, prefix: &str) -> Vec<String> {
    let listed = client
        .list_objects_v2()
        .bucket(s3::BUCKET)
        .prefix(prefix)
        .send()
        .await
        .unwrap();
    listed
        .contents()
        .iter()
        .map(|o| o.key().unwrap_or_default().to_owned())
        .collect()
}

/// The storage process SIGKILLed while a photo's body is still streaming through the gateway
/// and its first part has gone to S3. The client gets a 503 problem document (not a dropped
/// connection, not 201); no catalog row was ever written (the id sequence did not move), no
/// object exists under the album's originals, and the multipart upload is left incomplete in
/// the store — until storage, started again, sweeps it on its schedule. Storage restarted once
/// more (the sweep off, so it cannot race the retry), the same bytes uploaded again are created
/// once (201), a second retry finds them (200, the same photo): one row, one original.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seaweedfs_storage_killed_mid_multipart_upload_answers_503_writes_no_row_and_is_swept() {
    let seaweed = s3::SeaweedFs::start().await.unwrap();
    let proxy = FaultProxy::in_front_of_s3(&seaweed.endpoint())
        .await
        .unwrap();
    let db = TestDatabase::create().await.unwrap();
    let db_url = db.url().to_owned();
    let env = Env::start_with(|c| {
        c.embedded = false;
        c.catalog.database.url = Secret::new(db_url.clone());
        // Listings read the database, not a cache.
        c.catalog.cache.backend = photos_catalog::config::CacheBackend::None;
        c.catalog.jobs.run_workers = false;
        // The mesh's own storage is on no path of this test; it needs a store to start.
        c.storage.s3.endpoint = seaweed.endpoint();
        c.storage.s3.bucket = s3::BUCKET.into();
        c.storage.s3.region = s3::REGION.into();
        c.storage.s3.access_key = Secret::new(s3::ACCESS_KEY);
        c.storage.s3.secret_key = Secret::new(s3::SECRET_KEY);
        c.storage.s3.force_path_style = true;
        c.storage.multipart_sweep.interval_seconds = 0;
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let port = ports::free_port(None);
    let storage_url = format!("http://127.0.0.1:{port}");
    let mut storage = StorageProcess::spawn(port, &proxy.endpoint(), dir.path().join("1.log"), &[]);
    storage.serving().await;
    let (media, _media) = media_via(&env, &storage_url).await;
    wait_serving(media).await;
    let second = gateway_via(&env, &storage_url, media).await;
    let gateway = second.addr;
    let alice = env.token("alice", Role::Owner);
    let album = env.create_album(&alice, false).await;
    let originals = format!("originals/{album}/");
    let store = seaweed.client();
    let photo = large_jpeg(1);
    let body = form(&[("title", "killed")], Some(&photo));
    let before = rows(&db_url, &album).await;
    assert_eq!(before.0, 0);

    // More than a part's worth of the file reaches storage, which starts the multipart upload
    // and sends part 1; then storage dies with the rest of the body still at the client.
    let cut = PART + MIB;
    let (status, head, problem) =
        upload_in_two_pieces(gateway, &alice, &album, &body, cut, async {
            proxy.seen(b"partNumber=", 1).await;
            storage.signal("-KILL");
            storage.exited(Duration::from_secs(30)).await;
        })
        .await;
    assert_eq!(status, 503, "{head}\n{problem}");
    assert!(
        header(&head, "content-type").is_some_and(|v| v.starts_with("application/problem+json")),
        "{head}"
    );
    assert_eq!(problem["kind"], "unavailable", "{problem}");
    let parts_sent = proxy.count(b"partNumber=");
    assert_eq!(proxy.count(b"?uploads"), 1, "one multipart upload started");
    assert_eq!(proxy.count(b"CompleteMultipartUpload"), 0);
    assert_eq!(
        proxy.count(b"AbortMultipartUpload"),
        0,
        "a killed process aborts nothing"
    );

    // Nothing half-written: no row listed, none in the table, none ever inserted; no original.
    assert!(listed_photos(gateway, &album, &alice).await.is_empty());
    assert_eq!(
        rows(&db_url, &album).await,
        before,
        "no catalog row for the failed upload, not even one inserted and removed again"
    );
    assert_eq!(objects(&store, &originals).await, Vec::<String>::new());
    let left = s3::incomplete_uploads(&store, &originals).await;
    assert_eq!(
        left.len(),
        1,
        "the killed upload is left incomplete: {left:?}"
    );

    // Storage back, with the sweep on a short schedule: it aborts the abandoned upload.
    drop(storage);
    let mut storage = StorageProcess::restart(
        port,
        &proxy.endpoint(),
        dir.path().join("2.log"),
        &[
            ("PHOTOS__MULTIPART_SWEEP__INTERVAL_SECONDS", "1"),
            ("PHOTOS__MULTIPART_SWEEP__OLDER_THAN_SECONDS", "1"),
            // Below the one-hour floor: for tests only.
            ("PHOTOS__MULTIPART_SWEEP__ALLOW_SHORT_AGE", "true"),
        ],
    )
    .await;
    // The upload gone from the store, and the run that aborted it logged as finished with one
    // upload aborted (the log line comes after the abort's answer, so it is waited for too).
    wait::until(
        "the scheduled sweep aborting the killed upload",
        Duration::from_secs(60),
        Duration::from_millis(100),
        || async {
            let left = s3::incomplete_uploads(&store, &originals).await;
            if !left.is_empty() {
                return Err(format!("still open: {left:?}"));
            }
            let log = storage.log();
            let logged = log
                .lines()
                .any(|l| l.contains("multipart sweep finished") && l.contains("\"aborted\":1"));
            if !logged {
                return Err(format!("no finished sweep that aborted 1 logged:\n{log}"));
            }
            Ok(())
        },
    )
    .await
    .unwrap();
    assert_eq!(proxy.count(b"AbortMultipartUpload"), 1);
    storage.signal("-TERM");
    let exit = storage.exited(Duration::from_secs(30)).await;
    assert_eq!(exit.code(), Some(0), "{}", storage.log());
    drop(storage);

    // Storage again, the sweep off (a 1 s age would make a slow retry look abandoned).
    let storage =
        StorageProcess::restart(port, &proxy.endpoint(), dir.path().join("3.log"), &[]).await;
    // The gateway's and media's channels reconnect on their next call; a client retries a 503.
    let mut unavailable_after_restart = 0;
    let created = loop {
        let (status, head, photo) = upload(gateway, &alice, &album, &body).await;
        if status == 503 && unavailable_after_restart < 5 {
            unavailable_after_restart += 1;
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        }
        assert_eq!(
            status,
            201,
            "{head}\n{photo}\nstorage log:\n{}",
            storage.log()
        );
        break photo;
    };
    // The probe behind "id sequence unmoved" sees the sequence once a row is inserted, so its
    // `None` before was not a blind spot.
    assert!(
        rows(&db_url, &album).await.1.is_some(),
        "the id sequence probe sees no insert after a 201"
    );
    let (status, _, again) = upload(gateway, &alice, &album, &body).await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(created["id"], again["id"]);
    let id = created["id"].as_str().unwrap().to_owned();
    assert_eq!(listed_photos(gateway, &album, &alice).await, vec![id]);
    assert_eq!(rows(&db_url, &album).await.0, 1, "one row");
    let stored = objects(&store, &originals).await;
    assert_eq!(stored.len(), 1, "one original: {stored:?}");
    let original = store
        .get_object()
        .bucket(s3::BUCKET)
        .key(&stored[0])
        .send()
        .await
        .unwrap()
        .body
        .collect()
        .await
        .unwrap()
        .into_bytes();
    assert!(
        original.as_ref() == photo.as_slice(),
        "the stored bytes differ"
    );
    assert!(s3::incomplete_uploads(&store, &originals).await.is_empty());
    eprintln!(
        "storage SIGKILLed mid-multipart through the gateway: photo {} bytes (form {}), {} sent \
         before the kill, parts sent {parts_sent}, client answer 503 problem `unavailable` ({}); \
         rows 0, ids taken 0, originals 0; incomplete uploads left: 1, aborted by the scheduled \
         sweep of the restarted storage: {}; retry after restart: {unavailable_after_restart} \
         x 503 then 201, again 200 (same photo); rows 1, originals 1 (bytes equal)",
        photo.len(),
        body.len(),
        cut,
        problem["detail"],
        proxy.count(b"AbortMultipartUpload"),
    );
}
