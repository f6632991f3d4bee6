use photos_proto::storage::v1 as pb;
use photos_proto::storage::v1::storage_service_client::StorageServiceClient;
use photos_runtime::Secret;
use photos_storage::StorageConfig;
use photos_testkit::s3;
use tokio::sync::oneshot;
use tonic::transport::Channel;

pub type Client = StorageServiceClient<Channel>;

pub struct TestApp {
    pub client: Client,
    /// The admin port (`/metrics`).
    pub admin: std::net::SocketAddr,
    stop: Option<oneshot::Sender<()>>,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// A configuration for the test S3 servers' bucket and credentials at `endpoint`.
pub fn config(endpoint: &str) -> StorageConfig {
    let mut c = StorageConfig::default();
    c.server.grpc_port = 0;
    c.server.admin_port = 0;
    c.server.drain_grace_ms = 100;
    c.s3.endpoint = endpoint.to_owned();
    c.s3.bucket = s3::BUCKET.to_owned();
    c.s3.region = s3::REGION.to_owned();
    c.s3.access_key = Secret::new(s3::ACCESS_KEY);
    c.s3.secret_key = Secret::new(s3::SECRET_KEY);
    c.s3.force_path_style = true;
    // Off unless a test turns it on: its ListMultipartUploads would show up in request counts.
    c.multipart_sweep.interval_seconds = 0;
    c
}

pub async fn spawn_app(config: StorageConfig) -> TestApp {
    use photos_runtime::config::Validate;
    config.validate().expect("test configuration is valid");
    let app = photos_storage::build(config).await.expect("build");
    let addr = app.grpc_addr();
    let admin = app.admin_addr();
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(async move {
        app.run_until_stopped(async {
            let _ = stopped.await;
        })
        .await
        .expect("storage server");
    });
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .expect("connect");
    TestApp {
        client: StorageServiceClient::new(channel)
            .max_decoding_message_size(16 * 1024 * 1024)
            .max_encoding_message_size(16 * 1024 * 1024),
        admin,
        stop: Some(stop),
    }
}

/// Deterministic pseudo-random bytes (xorshift), so a mismatch can't hide in repeated data.
pub fn bytes(len: usize, seed: u64) -> Vec<u8> {
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

pub fn sha256_hex(data: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(data))
}

pub fn header(key: &str, content_type: &str) -> pb::PutObjectHeader {
    pb::PutObjectHeader {
        key: key.to_owned(),
        content_type: content_type.to_owned(),
        ..Default::default()
    }
}

/// The header then `data` in chunks of `chunk` bytes, without the finish message.
pub fn unfinished_put_messages(
    h: pb::PutObjectHeader,
    data: &[u8],
    chunk: usize,
) -> Vec<pb::PutObjectRequest> {
    let mut msgs = vec![pb::PutObjectRequest {
        part: Some(pb::put_object_request::Part::Header(h)),
    }];
    msgs.extend(data.chunks(chunk).map(|c| pb::PutObjectRequest {
        part: Some(pb::put_object_request::Part::Chunk(c.to_vec())),
    }));
    msgs
}

pub fn finish(sha256: &str) -> pb::PutObjectRequest {
    pb::PutObjectRequest {
        part: Some(pb::put_object_request::Part::Finish(pb::PutObjectFinish {
            sha256: sha256.to_owned(),
        })),
    }
}

/// A whole upload: the header, `data` in chunks of `chunk` bytes, then finish.
pub fn put_messages(
    h: pb::PutObjectHeader,
    data: &[u8],
    chunk: usize,
) -> Vec<pb::PutObjectRequest> {
    let mut msgs = unfinished_put_messages(h, data, chunk);
    msgs.push(finish(""));
    msgs
}

pub async fn put(
    client: &mut Client,
    h: pb::PutObjectHeader,
    data: &[u8],
) -> Result<pb::PutObjectResponse, tonic::Status> {
    let msgs = put_messages(h, data, 1024 * 1024);
    client
        .put_object(futures::stream::iter(msgs))
        .await
        .map(|r| r.into_inner())
}

/// GetObject collected: the metadata message and the bytes.
pub async fn get(
    client: &mut Client,
    key: &str,
    range: Option<(u64, u64)>,
) -> Result<(pb::ObjectInfo, Vec<u8>), tonic::Status> {
    use futures::StreamExt;
    let mut stream = client
        .get_object(pb::GetObjectRequest {
            key: key.to_owned(),
            range: range.map(|(start, end)| pb::ByteRange { start, end }),
        })
        .await?
        .into_inner();
    let mut info = None;
    let mut data = Vec::new();
    while let Some(msg) = stream.next().await {
        match msg?.part {
            Some(pb::get_object_response::Part::Object(o)) => info = Some(o),
            Some(pb::get_object_response::Part::Chunk(c)) => data.extend_from_slice(&c),
            None => {}
        }
    }
    Ok((info.expect("metadata message first"), data))
}

pub fn addr_of(endpoint: &str) -> std::net::SocketAddr {
    endpoint.strip_prefix("http://").unwrap().parse().unwrap()
}

/// Multipart uploads open in the bucket (started, neither completed nor aborted).
pub async fn open_uploads(s3: &aws_sdk_s3::Client) -> usize {
    s3.list_multipart_uploads()
        .bucket(s3::BUCKET)
        .send()
        .await
        .expect("ListMultipartUploads")
        .uploads()
        .len()
}

/// Keys of every object in the bucket under `prefix`, read straight from the S3 server.
pub async fn s3_keys(s3: &aws_sdk_s3::Client, prefix: &str) -> Vec<String> {
    let mut keys = Vec::new();
    let mut pages = s3
        .list_objects_v2()
        .bucket(s3::BUCKET)
        .prefix(prefix)
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        let page = page.expect("list");
        keys.extend(
            page.contents()
                .iter()
                .filter_map(|o| o.key().map(str::to_owned)),
        );
    }
    keys
}

/// Writes `n` small objects named `{prefix}{i:05}` straight to S3, 64 at a time.
pub async fn seed_objects(s3: &aws_sdk_s3::Client, prefix: &str, n: usize) -> Vec<String> {
    use futures::StreamExt;
    let keys: Vec<String> = (0..n).map(|i| format!("{prefix}{i:05}")).collect();
    futures::stream::iter(keys.clone())
        .map(|key| {
            let s3 = s3.clone();
            async move {
                s3.put_object()
                    .bucket(s3::BUCKET)
                    .key(&key)
                    .body(aws_sdk_s3::primitives::ByteStream::from_static(b"x"))
                    .send()
                    .await
                    .map(|_| ())
                    .map_err(|e| format!("{key}: {}", aws_sdk_s3::error::DisplayErrorContext(e)))
            }
        })
        .buffer_unordered(64)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<Vec<()>, String>>()
        .expect("seed objects");
    keys
}

/// A raw HTTP/1.1 GET of `url` (http only): the status code and the body.
pub async fn raw_get(url: &str) -> (u16, Vec<u8>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let rest = url.strip_prefix("http://").expect("http url");
    let (host, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let mut stream = tokio::net::TcpStream::connect(host).await.expect("connect");
    let request = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.unwrap();
    let text_end = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("http head");
    let head = String::from_utf8_lossy(&response[..text_end]).to_string();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status code");
    let mut body = response[text_end + 4..].to_vec();
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        body = dechunk(&body);
    }
    (status, body)
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let Some(line_end) = data.windows(2).position(|w| w == b"\r\n") else {
            return out;
        };
        let size = usize::from_str_radix(
            String::from_utf8_lossy(&data[..line_end])
                .split(';')
                .next()
                .unwrap()
                .trim(),
            16,
        )
        .unwrap_or(0);
        if size == 0 {
            return out;
        }
        let start = line_end + 2;
        out.extend_from_slice(&data[start..start + size]);
        data = &data[start + size + 2..];
    }
}

/// A moto S3 server (PyPI `moto[server]`): the one local server that stores lifecycle
/// transitions (SeaweedFS answers NotImplemented to them), and the one that answers an abort of
/// an upload already aborted with NoSuchUpload. It never checks signatures, so it is used for
/// those only.
pub struct Moto {
    child: std::process::Child,
    port: u16,
}

impl Moto {
    pub async fn start() -> Moto {
        let port = photos_testkit::ports::free_port(None);
        let child = std::process::Command::new("moto_server")
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("moto_server is installed (pip install 'moto[server]')");
        let moto = Moto { child, port };
        let client = s3::client(&moto.endpoint());
        photos_testkit::wait::until(
            "moto S3",
            std::time::Duration::from_secs(30),
            std::time::Duration::from_millis(100),
            || {
                let client = client.clone();
                async move {
                    client
                        .create_bucket()
                        .bucket(s3::BUCKET)
                        .send()
                        .await
                        .map(|_| ())
                        .map_err(|e| aws_sdk_s3::error::DisplayErrorContext(e).to_string())
                }
            },
        )
        .await
        .expect("moto S3 starts");
        moto
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
