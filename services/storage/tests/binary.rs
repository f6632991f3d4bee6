//! The real `photos-storage` binary under process-level faults: SIGTERM while an upload is in
//! flight and a load balancer's health watch is open, and SIGKILL in the middle of a multipart
//! upload. The S3 server is the in-process one (SeaweedFS for the SIGKILL case, which needs
//! ListMultipartUploads), behind a fault proxy that counts the S3 requests the binary makes.
//! Loops are bounded in count and time.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use photos_proto::storage::v1 as pb;
use photos_proto::storage::v1::storage_service_client::StorageServiceClient;
use photos_testkit::faults::{self, FaultProxy};
use photos_testkit::s3::{self, TestS3};
use photos_testkit::{ports, wait};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::{HealthCheckRequest, HealthCheckResponse};

const BIN: &str = env!("CARGO_BIN_EXE_photos-storage");
const MIB: usize = 1024 * 1024;
const SERVICE: &str = "photos.storage.v1.StorageService";

struct Storage {
    child: Child,
    grpc: std::net::SocketAddr,
    stderr: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl Storage {
    fn spawn(s3_endpoint: &str, drain_grace_ms: u64) -> Storage {
        Storage::spawn_with(s3_endpoint, drain_grace_ms, &[])
    }

    /// As [`Storage::spawn`], with `extra` environment variables set last (they win).
    fn spawn_with(s3_endpoint: &str, drain_grace_ms: u64, extra: &[(&str, &str)]) -> Storage {
        let dir = tempfile::tempdir().unwrap();
        let stderr = dir.path().join("stderr.log");
        let port = ports::free_port(None);
        let child = Command::new(BIN)
            .envs([
                ("PHOTOS__SERVER__GRPC_PORT", port.to_string()),
                ("PHOTOS__SERVER__ADMIN_PORT", "0".to_owned()),
                ("PHOTOS__SERVER__DRAIN_DELAY_MS", "300".to_owned()),
                ("PHOTOS__SERVER__DRAIN_GRACE_MS", drain_grace_ms.to_string()),
                ("PHOTOS__TELEMETRY__LOG_FORMAT", "json".to_owned()),
                // Its ListMultipartUploads would add to the counted `?uploads` requests.
                ("PHOTOS__MULTIPART_SWEEP__INTERVAL_SECONDS", "0".to_owned()),
                (
                    "PHOTOS__TRANSFER__MULTIPART_THRESHOLD_BYTES",
                    (5 * MIB).to_string(),
                ),
                ("PHOTOS__TRANSFER__PART_SIZE_BYTES", (5 * MIB).to_string()),
            ])
            .envs(s3::storage_env(s3_endpoint))
            .envs(extra.iter().copied())
            .env_remove("RUST_LOG")
            .env_remove("PHOTOS_CONFIG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .spawn()
            .expect("spawn photos-storage");
        Storage {
            child,
            grpc: std::net::SocketAddr::from(([127, 0, 0, 1], port)),
            stderr,
            _dir: dir,
        }
    }

    async fn channel(&self) -> tonic::transport::Channel {
        let url = format!("http://{}", self.grpc);
        wait::until(
            "photos-storage listening",
            Duration::from_secs(30),
            Duration::from_millis(20),
            || {
                let url = url.clone();
                async move {
                    tonic::transport::Endpoint::from_shared(url)
                        .unwrap()
                        .connect()
                        .await
                }
            },
        )
        .await
        .unwrap()
    }

    async fn serving(&self, channel: tonic::transport::Channel) {
        let health = HealthClient::new(channel);
        wait::until(
            "photos-storage SERVING",
            Duration::from_secs(30),
            Duration::from_millis(20),
            || {
                let mut health = health.clone();
                async move {
                    let status = health
                        .check(HealthCheckRequest {
                            service: SERVICE.into(),
                        })
                        .await
                        .map_err(|e| e.to_string())?
                        .into_inner()
                        .status;
                    if status == ServingStatus::Serving as i32 {
                        Ok(())
                    } else {
                        Err(format!("status {status}"))
                    }
                }
            },
        )
        .await
        .unwrap();
    }

    fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([signal, &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success(), "kill {signal}");
    }

    /// Waits (bounded) for the process to exit.
    fn exit_within(&mut self, bound: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + bound;
        loop {
            if let Some(exit) = self.child.try_wait().unwrap() {
                return exit;
            }
            assert!(
                Instant::now() < deadline,
                "photos-storage still running {bound:?} after the signal; log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }
}

impl Drop for Storage {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

fn sha256_hex(data: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(data))
}

fn chunk(data: &[u8]) -> pb::PutObjectRequest {
    pb::PutObjectRequest {
        part: Some(pb::put_object_request::Part::Chunk(data.to_vec())),
    }
}

/// Opens a PutObject whose messages the test sends one by one; returns the sender and the call.
fn open_upload(
    channel: tonic::transport::Channel,
    key: &str,
) -> (
    mpsc::Sender<pb::PutObjectRequest>,
    tokio::task::JoinHandle<Result<tonic::Response<pb::PutObjectResponse>, tonic::Status>>,
) {
    let (tx, rx) = mpsc::channel(4);
    tx.try_send(pb::PutObjectRequest {
        part: Some(pb::put_object_request::Part::Header(pb::PutObjectHeader {
            key: key.to_owned(),
            content_type: "image/jpeg".into(),
            ..Default::default()
        })),
    })
    .unwrap();
    let mut client = StorageServiceClient::new(channel)
        .max_encoding_message_size(8 * MIB)
        .max_decoding_message_size(8 * MIB);
    let call = tokio::spawn(async move { client.put_object(ReceiverStream::new(rx)).await });
    (tx, call)
}

async fn next_status(
    watch: &mut tonic::Streaming<HealthCheckResponse>,
) -> Result<i32, tonic::Status> {
    match tokio::time::timeout(Duration::from_secs(30), watch.message()).await {
        Ok(Ok(Some(m))) => Ok(m.status),
        Ok(Ok(None)) => Err(tonic::Status::unavailable("watch ended")),
        Ok(Err(e)) => Err(e),
        Err(_) => panic!("no health update within 30 s"),
    }
}

/// SIGTERM with an upload in the middle of its multipart transfer and a health watch open: the
/// watch sees NOT_SERVING first, the upload is finished by its client after the signal and
/// completes with every byte, and the process exits 0 within its drain grace (the watch stream,
/// which never ends by itself, is cut at the grace).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_turns_health_not_serving_first_completes_in_flight_uploads_and_exits() {
    let s3 = TestS3::start().await.unwrap();
    let proxy = FaultProxy::in_front_of_s3(&s3.endpoint()).await.unwrap();
    // Room for the rest of the upload on a loaded machine; the open watch holds the server
    // until the grace runs out, so this is also how long the test waits for the exit.
    let grace = Duration::from_millis(10_000);
    let mut storage = Storage::spawn(&proxy.endpoint(), grace.as_millis() as u64);
    let channel = storage.channel().await;
    storage.serving(channel.clone()).await;

    let mut watch = HealthClient::new(channel.clone())
        .watch(HealthCheckRequest {
            service: SERVICE.into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        next_status(&mut watch).await.unwrap(),
        ServingStatus::Serving as i32
    );

    // 7 MiB in: the service has started the multipart upload and sent its first part, so the
    // call is being served when the signal comes.
    let data = bytes(12 * MIB, 77);
    let (tx, call) = open_upload(channel.clone(), "originals/in-flight.bin");
    for c in data[..7 * MIB].chunks(MIB) {
        tx.send(chunk(c)).await.unwrap();
    }
    proxy.seen(b"partNumber=", 1).await;

    storage.signal("-TERM");
    let signalled = Instant::now();
    assert_eq!(
        next_status(&mut watch).await.unwrap(),
        ServingStatus::NotServing as i32,
        "health turns NOT_SERVING before anything else happens"
    );
    // The rest of the upload, sent after the signal, is still accepted.
    for c in data[7 * MIB..].chunks(MIB) {
        tx.send(chunk(c)).await.unwrap();
    }
    tx.send(pb::PutObjectRequest {
        part: Some(pb::put_object_request::Part::Finish(pb::PutObjectFinish {
            sha256: sha256_hex(&data),
        })),
    })
    .await
    .unwrap();
    drop(tx);
    let stored = match call.await.unwrap() {
        Ok(r) => r.into_inner(),
        Err(e) => panic!(
            "the in-flight upload failed during the drain: {e:?}\nlog:\n{}",
            storage.log()
        ),
    };
    assert_eq!(stored.parts, 3);
    assert_eq!(stored.object.unwrap().sha256, sha256_hex(&data));

    let exit = storage.exit_within(grace + Duration::from_secs(10));
    assert_eq!(exit.code(), Some(0), "log:\n{}", storage.log());
    let log = storage.log();
    assert!(log.contains("SIGTERM received"), "{log}");
    assert!(log.contains("draining: health set to NOT_SERVING"), "{log}");
    // The watch stream never ends by itself: the server cut it when the grace ran out.
    assert!(
        log.contains("calls still open after the drain grace period"),
        "{log}"
    );
    let direct = s3.client();
    let object = direct
        .get_object()
        .bucket(s3::BUCKET)
        .key("originals/in-flight.bin")
        .send()
        .await
        .unwrap();
    let body = object.body.collect().await.unwrap().into_bytes();
    assert!(body.as_ref() == data.as_slice(), "the stored bytes differ");
    eprintln!(
        "SIGTERM: watch saw NOT_SERVING first; in-flight upload completed (12 MiB, 3 parts, \
         checksum equal); exit 0 after {} ms (grace {} ms, drain delay 300 ms)",
        signalled.elapsed().as_millis(),
        grace.as_millis()
    );
}

/// SIGTERM while the scheduled multipart sweep waits on a store that never answers (its
/// ListMultipartUploads would wait out a 120 s read timeout): the sweep is dropped at the start
/// of shutdown (logged before the server's "drained"), so the process exits 0 after the drain,
/// not after the store's timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_a_sweep_waiting_on_a_hung_store() {
    // SeaweedFS: the embedded local S3 does not list multipart uploads, and the schedule stops
    // on such a store.
    let s3 = s3::SeaweedFs::start().await.unwrap();
    let proxy = FaultProxy::in_front_of_s3(&s3.endpoint()).await.unwrap();
    let mut storage = Storage::spawn_with(
        &proxy.endpoint(),
        1_000,
        &[
            ("PHOTOS__MULTIPART_SWEEP__INTERVAL_SECONDS", "1"),
            ("PHOTOS__S3__READ_TIMEOUT_MS", "120000"),
            ("PHOTOS__S3__ATTEMPT_TIMEOUT_MS", "0"),
        ],
    );
    let channel = storage.channel().await;
    storage.serving(channel).await;
    // Once SERVING, the sweep (first run within 1 s, then every second) is the only caller of
    // the store: a new connection to the hung proxy is the sweep waiting.
    let before = proxy.connections();
    proxy.set_mode(faults::Mode::Hang);
    wait::until(
        "the sweep waiting on the hung store",
        Duration::from_secs(30),
        Duration::from_millis(20),
        || async {
            if proxy.connections() > before {
                Ok(())
            } else {
                Err("no new connection")
            }
        },
    )
    .await
    .unwrap();
    storage.signal("-TERM");
    let signalled = Instant::now();
    let exit = storage.exit_within(Duration::from_secs(20));
    let log = storage.log();
    assert_eq!(exit.code(), Some(0), "log:\n{log}");
    // Dropped when shutdown begins, not once the server has drained.
    let interrupted = log.find("multipart sweep interrupted by shutdown");
    let drained = log.find("\"drained\"");
    assert!(
        interrupted.is_some() && drained.is_some() && interrupted < drained,
        "{log}"
    );
    eprintln!(
        "SIGTERM during a hung sweep: exit 0 after {} ms (drain delay 300 ms, store read timeout 120 s)",
        signalled.elapsed().as_millis()
    );
}

/// SIGKILL after two parts of a multipart upload reached the store (SeaweedFS, which lists
/// multipart uploads; the in-process server does not): no object appears, the parts stay as an
/// incomplete upload, and `AbortIncompleteUploads` on a restarted storage finds it (not when it
/// asks for uploads older than an hour) and aborts it; nothing is left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_multipart_leaves_no_object_and_the_sweep_aborts_the_incomplete_upload() {
    let seaweed = s3::SeaweedFs::start().await.unwrap();
    let proxy = FaultProxy::in_front_of_s3(&seaweed.endpoint())
        .await
        .unwrap();
    let storage = Storage::spawn(&proxy.endpoint(), 1_000);
    let channel = storage.channel().await;
    storage.serving(channel.clone()).await;

    let data = bytes(12 * MIB, 78);
    let (tx, call) = open_upload(channel, "originals/killed.bin");
    for c in data[..11 * MIB].chunks(MIB) {
        tx.send(chunk(c)).await.unwrap();
    }
    proxy.seen(b"partNumber=", 2).await;
    storage.signal("-KILL");
    // A plain tonic client reports the broken connection as UNKNOWN "transport error"; the
    // services' own client channel (photos-runtime) reports it as UNAVAILABLE.
    let err = call.await.unwrap().expect_err("the server died");
    assert!(
        matches!(err.code(), tonic::Code::Unavailable | tonic::Code::Unknown),
        "{err:?}"
    );
    drop(tx);
    drop(storage);

    assert_eq!(proxy.count(b"?uploads"), 1, "one multipart upload started");
    assert_eq!(proxy.count(b"CompleteMultipartUpload"), 0);
    assert_eq!(
        proxy.count(b"AbortMultipartUpload"),
        0,
        "a killed process aborts nothing"
    );
    let client = seaweed.client();
    let head = client
        .head_object()
        .bucket(s3::BUCKET)
        .key("originals/killed.bin")
        .send()
        .await;
    assert!(head.is_err(), "no object under the key: {head:?}");
    let listed = client
        .list_objects_v2()
        .bucket(s3::BUCKET)
        .prefix("originals/")
        .send()
        .await
        .unwrap();
    assert!(listed.contents().is_empty(), "{:?}", listed.contents());
    let left = s3::incomplete_uploads(&client, "originals/").await;
    assert_eq!(
        left.len(),
        1,
        "the killed upload is left incomplete: {left:?}"
    );
    assert_eq!(left[0].0, "originals/killed.bin");

    // The sweep, from a storage process started afterwards (as after a restart).
    let storage = Storage::spawn(&proxy.endpoint(), 1_000);
    let channel = storage.channel().await;
    storage.serving(channel.clone()).await;
    let mut client_rpc = StorageServiceClient::new(channel);
    let unsaid = client_rpc
        .abort_incomplete_uploads(pb::AbortIncompleteUploadsRequest {
            prefix: "originals/".into(),
            ..Default::default()
        })
        .await
        .expect_err("an age of 0 without include_in_flight is refused");
    assert_eq!(unsaid.code(), tonic::Code::InvalidArgument, "{unsaid:?}");
    assert!(unsaid.message().contains("include_in_flight"), "{unsaid:?}");
    let mut sweep = async |older_than_seconds: u32, dry_run: bool| {
        client_rpc
            .abort_incomplete_uploads(pb::AbortIncompleteUploadsRequest {
                prefix: "originals/".into(),
                older_than_seconds,
                dry_run,
                include_in_flight: older_than_seconds == 0,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
    };
    let young = sweep(3600, false).await;
    assert!(
        young.uploads.is_empty() && young.errors.is_empty(),
        "an upload started seconds ago is not older than an hour: {young:?}"
    );
    assert_eq!(s3::incomplete_uploads(&client, "originals/").await, left);
    let listed = sweep(0, true).await;
    let found: Vec<_> = listed
        .uploads
        .iter()
        .map(|u| (u.key.clone(), u.upload_id.clone()))
        .collect();
    assert_eq!(found, left, "the dry run finds the killed upload");
    assert!(listed.uploads[0].initiated.is_some());
    assert_eq!(
        s3::incomplete_uploads(&client, "originals/").await,
        left,
        "a dry run aborts nothing"
    );
    let swept = sweep(0, false).await;
    assert!(swept.errors.is_empty(), "{:?}", swept.errors);
    let aborted: Vec<_> = swept
        .uploads
        .iter()
        .map(|u| (u.key.clone(), u.upload_id.clone()))
        .collect();
    assert_eq!(aborted, left);
    assert_eq!(proxy.count(b"AbortMultipartUpload"), 1);
    let after = s3::incomplete_uploads(&client, "originals/").await;
    assert!(after.is_empty(), "nothing left after the sweep: {after:?}");
    let again = sweep(0, false).await;
    assert!(
        again.uploads.is_empty() && again.errors.is_empty(),
        "{again:?}"
    );
    eprintln!(
        "SIGKILL mid-multipart (SeaweedFS): {} parts sent, 0 completed, 0 aborted by the killed process, 0 objects; \
         incomplete uploads listed after the kill: {}, found by the sweep older than 1 h: {}, dry run: {}, aborted: {}, left after: {}",
        proxy.count(b"partNumber="),
        left.len(),
        young.uploads.len(),
        listed.uploads.len(),
        swept.uploads.len(),
        after.len()
    );
}
