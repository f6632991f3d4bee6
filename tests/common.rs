//! Helpers shared by the end-to-end tests.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::Duration;

use photos_mesh::{Mesh, MeshConfig};

pub async fn start_mesh(dir: &std::path::Path) -> Mesh {
    Mesh::start(MeshConfig::ephemeral(dir))
        .await
        .expect("start the mesh")
}

pub async fn channel(addr: SocketAddr) -> tonic::transport::Channel {
    tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .expect("connect")
}

pub async fn wait_serving(addr: SocketAddr) {
    use tonic_health::pb::health_client::HealthClient;
    use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus};
    let mut health = HealthClient::new(channel(addr).await);
    for _ in 0..1000 {
        if let Ok(r) = health
            .check(HealthCheckRequest {
                service: String::new(),
            })
            .await
            && r.into_inner().status == ServingStatus::Serving as i32
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("{addr} never became SERVING");
}

pub use photos_testkit::http::request;

/// A request with raw extra header lines: (status, head and body as text).
pub async fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    extra_headers: &str,
) -> (u16, String) {
    let headers: Vec<(&str, &str)> = extra_headers
        .split("\r\n")
        .filter_map(|l| l.split_once(": "))
        .collect();
    let (status, head, body) = request(addr, method, path, &headers, None).await;
    (status, format!("{head}\r\n\r\n{body}"))
}

pub const SECRET: &str = "an-hs256-test-secret-of-at-least-32-bytes";

/// A mesh with a known HS256 secret, rate limiting off unless `configure` turns it on.
pub struct Env {
    pub mesh: Mesh,
    pub dir: tempfile::TempDir,
    pub auth: photos_gateway::config::AuthConfig,
}

/// A gateway of a test's own beside the mesh's (built with [`Env::gateway_config`], then
/// pointed elsewhere where the test needs it); it stops when `_stop` is dropped.
pub struct SecondGateway {
    pub addr: SocketAddr,
    pub retries: std::sync::Arc<photos_gateway::retry::RetryBudget>,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl SecondGateway {
    pub async fn start(config: photos_gateway::GatewayConfig) -> SecondGateway {
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
}

impl Env {
    pub async fn start() -> Env {
        Self::start_with(|_| {}).await
    }

    pub async fn start_with(configure: impl FnOnce(&mut MeshConfig)) -> Env {
        let dir = tempfile::tempdir().unwrap();
        let mut config = MeshConfig::ephemeral(dir.path().join("mesh"));
        config.gateway.auth.hs256_secret = photos_runtime::Secret::new(SECRET);
        config.gateway.rate_limit.requests_per_minute = 0;
        configure(&mut config);
        let auth = config.gateway.auth.clone();
        let mesh = Mesh::start(config).await.unwrap();
        wait_serving(mesh.addresses.catalog).await;
        Env { mesh, dir, auth }
    }

    /// A gateway configuration like the mesh's own gateway's: the same auth, no rate limit, every
    /// upstream at the mesh's services, HTTP on port 0.
    pub fn gateway_config(&self) -> photos_gateway::GatewayConfig {
        use photos_runtime::UpstreamConfig;
        let a = &self.mesh.addresses;
        let url = |addr: SocketAddr| format!("http://{addr}");
        let mut config = photos_gateway::GatewayConfig::default();
        config.http.port = 0;
        config.auth = self.auth.clone();
        config.rate_limit.requests_per_minute = 0;
        config.catalog = UpstreamConfig::new(url(a.catalog));
        config.storage = UpstreamConfig::new(url(a.storage));
        config.media = UpstreamConfig::new(url(a.media));
        config.cache_admin = UpstreamConfig::new(url(a.cache_admin));
        config.metrics = UpstreamConfig::new(url(a.metrics));
        config
    }

    pub fn token(&self, sub: &str, role: photos_gateway::auth::Role) -> String {
        format!(
            "Bearer {}",
            photos_gateway::auth::issue(&self.auth, sub, role, 600).unwrap()
        )
    }

    pub async fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<&str>,
    ) -> (u16, String, serde_json::Value) {
        let mut headers = vec![];
        if let Some(t) = token {
            headers.push(("Authorization", t));
        }
        if body.is_some() {
            headers.push(("Content-Type", "application/json"));
        }
        let (status, head, body) =
            request(self.mesh.addresses.gateway, method, path, &headers, body).await;
        let json = serde_json::from_str(&body).unwrap_or(serde_json::Value::Null);
        (status, head, json)
    }

    pub async fn create_album(&self, token: &str, published: bool) -> String {
        let (status, _, album) = self
            .call(
                "POST",
                "/api/v1/albums",
                Some(token),
                Some(&format!(r#"{{"title":"Trip","is_published":{published}}}"#)),
            )
            .await;
        assert_eq!(status, 201, "{album}");
        album["id"].as_str().unwrap().to_owned()
    }

    pub async fn upload(
        &self,
        album: &str,
        token: Option<&str>,
        extra: &[(&str, &str)],
        body: &[u8],
    ) -> (u16, String, serde_json::Value) {
        let content_type = format!("multipart/form-data; boundary={BOUNDARY}");
        let mut headers = vec![("Content-Type", content_type.as_str())];
        if let Some(t) = token {
            headers.push(("Authorization", t));
        }
        headers.extend_from_slice(extra);
        let (status, head, body) = photos_testkit::http::request_bytes(
            self.mesh.addresses.gateway,
            "POST",
            &format!("/api/v1/albums/{album}/photos"),
            &headers,
            Some(body),
        )
        .await;
        let json = serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null);
        (status, head, json)
    }
}

/// The value of a response header (case-insensitive name) in a raw head.
pub fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

pub const BOUNDARY: &str = "photos-test-boundary-7d1f";

/// A JPEG with a gradient and a seed-dependent pattern, so different seeds give different bytes.
pub fn jpeg(width: u32, height: u32, seed: u8) -> Vec<u8> {
    let img = image::RgbImage::from_fn(width, height, |x, y| {
        image::Rgb([
            (x * 255 / width) as u8,
            (y * 255 / height) as u8,
            seed.wrapping_mul(37) ^ ((x / 16 + y / 16) % 2 * 200) as u8,
        ])
    });
    let mut out = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 85)
        .encode_image(&img)
        .unwrap();
    out
}

/// A multipart form: text fields, then the file (if any) as field `file`.
pub fn form(fields: &[(&str, &str)], file: Option<&[u8]>) -> Vec<u8> {
    let mut body = Vec::new();
    for (name, value) in fields {
        body.extend_from_slice(
            format!(
                "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n"
            )
            .as_bytes(),
        );
    }
    if let Some(bytes) = file {
        body.extend_from_slice(
            format!(
                "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"p.jpg\"\r\nContent-Type: image/jpeg\r\n\r\n"
            )
            .as_bytes(),
        );
        body.extend_from_slice(bytes);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{BOUNDARY}--\r\n").as_bytes());
    body
}

/// GETs an absolute loopback URL from a response (signed URLs, the embedded object store),
/// with the Host header the URL names (a signature covers it).
pub async fn fetch(url: &str) -> (u16, Vec<u8>) {
    let rest = url.strip_prefix("http://").expect("a loopback http URL");
    let (authority, path) = rest.split_at(rest.find('/').unwrap());
    let (status, _, body) = photos_testkit::http::request_bytes(
        authority.parse().unwrap(),
        "GET",
        path,
        &[("Host", authority)],
        None,
    )
    .await;
    (status, body)
}
