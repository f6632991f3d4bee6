//! The real mesh (embedded backends: SQLite, local S3 over the real storage path, in-process
//! cache) and the real `photosctl` binary run against it as a subprocess.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use photos_mesh::{Mesh, MeshConfig};
use photos_proto::catalog::v1 as catalog_pb;
use photos_proto::catalog::v1::catalog_service_client::CatalogServiceClient;
use photos_proto::storage::v1 as storage_pb;
use photos_proto::storage::v1::storage_service_client::StorageServiceClient;
use serde_json::Value;
use sha2::{Digest, Sha256};
use tonic::transport::Channel;

pub struct TestMesh {
    pub mesh: Mesh,
    pub dir: tempfile::TempDir,
}

pub async fn start_mesh() -> TestMesh {
    let dir = tempfile::tempdir().unwrap();
    let mut config = MeshConfig::ephemeral(dir.path().join("data"));
    // Short leases and polls keep the tests quick; the behaviour is the same.
    config.catalog.jobs.poll_ms = 100;
    config.catalog.jobs.watch_poll_ms = 50;
    let mesh = Mesh::start(config).await.expect("start the mesh");
    for (_, addr) in mesh.addresses.grpc() {
        wait_serving(addr).await;
    }
    TestMesh { mesh, dir }
}

pub async fn channel(addr: SocketAddr) -> Channel {
    tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect_lazy()
}

pub async fn wait_serving(addr: SocketAddr) {
    use tonic_health::pb::health_client::HealthClient;
    use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus};
    let mut health = HealthClient::new(channel(addr).await);
    photos_testkit::wait::until(
        "SERVING",
        Duration::from_secs(30),
        Duration::from_millis(20),
        || {
            let mut health = health.clone();
            async move {
                let status = health
                    .check(HealthCheckRequest {
                        service: String::new(),
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
    let _ = &mut health;
}

/// What a photosctl run printed and how it exited.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {self:#?}"))
    }
}

/// Runs the photosctl binary against the mesh (addresses as flags, no inherited PHOTOS_*).
pub async fn photosctl(addresses: &photos_mesh::Addresses, args: &[&str]) -> Run {
    photosctl_at(
        &[
            ("--catalog", addresses.catalog),
            ("--media", addresses.media),
            ("--storage", addresses.storage),
            ("--cache-admin", addresses.cache_admin),
        ],
        args,
    )
    .await
}

pub async fn photosctl_at(upstreams: &[(&str, SocketAddr)], args: &[&str]) -> Run {
    let mut command = photosctl_command(upstreams, args);
    let output = command.output().await.expect("run photosctl");
    Run {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

pub fn photosctl_command(
    upstreams: &[(&str, SocketAddr)],
    args: &[&str],
) -> tokio::process::Command {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_photosctl"));
    for (name, _) in std::env::vars() {
        if name.starts_with("PHOTOS") || name == "RUST_LOG" {
            command.env_remove(name);
        }
    }
    for (flag, addr) in upstreams {
        command.arg(flag).arg(format!("http://{addr}"));
    }
    command.args(args).kill_on_drop(true);
    command
}

/// A deterministic, distinct test photo (gradients plus seeded noise), a real JPEG.
pub fn photo(seed: u32, w: u32, h: u32) -> Vec<u8> {
    let mut pixels = Vec::with_capacity((w * h * 3) as usize);
    let mut x: u32 = 0x9E37_79B9 ^ seed.wrapping_mul(0x85EB_CA6B);
    for py in 0..h {
        for px in 0..w {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            let n = x % 24;
            pixels.push(((px * 200 / w) + n + seed % 31).min(255) as u8);
            pixels.push(((py * 200 / h) + n).min(255) as u8);
            pixels.push((((px + py) * 100 / (w + h)) + n + seed % 17).min(255) as u8);
        }
    }
    photos_imaging::encode_jpeg(
        &photos_imaging::Raster {
            width: w,
            height: h,
            alpha: false,
            pixels,
        },
        85,
    )
    .unwrap()
}

pub fn sha256(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

pub async fn create_album(catalog: SocketAddr, title: &str) -> String {
    CatalogServiceClient::new(channel(catalog).await)
        .create_album(catalog_pb::CreateAlbumRequest {
            title: title.into(),
            is_published: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .album
        .unwrap()
        .id
}

pub async fn put_object(storage: SocketAddr, key: &str, bytes: &[u8]) {
    let header = storage_pb::PutObjectRequest {
        part: Some(storage_pb::put_object_request::Part::Header(
            storage_pb::PutObjectHeader {
                key: key.into(),
                content_type: "image/jpeg".into(),
                expected_size: bytes.len() as u64,
                ..Default::default()
            },
        )),
    };
    let chunk = storage_pb::PutObjectRequest {
        part: Some(storage_pb::put_object_request::Part::Chunk(bytes.to_vec())),
    };
    StorageServiceClient::new(channel(storage).await)
        .put_object(tokio_stream::iter(vec![header, chunk]))
        .await
        .unwrap();
}

/// A photo whose original is stored but which has no variants yet (as if never processed).
pub async fn bare_photo(
    catalog: SocketAddr,
    storage: SocketAddr,
    album: &str,
    seed: u32,
) -> String {
    let bytes = photo(seed, 320, 240);
    let key = format!("originals/{album}/bare-{seed}.jpg");
    put_object(storage, &key, &bytes).await;
    CatalogServiceClient::new(channel(catalog).await)
        .create_photo(catalog_pb::CreatePhotoRequest {
            album_id: album.into(),
            title: format!("bare {seed}"),
            original_key: key,
            content_sha256: sha256(&bytes),
            bytes: bytes.len() as u64,
            format: catalog_pb::ImageFormat::Jpeg as i32,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .photo
        .unwrap()
        .id
}

pub async fn album_photos(catalog: SocketAddr, album: &str) -> Vec<catalog_pb::Photo> {
    let mut client = CatalogServiceClient::new(channel(catalog).await);
    let mut photos = Vec::new();
    let mut token = String::new();
    loop {
        let page = client
            .list_photos(catalog_pb::ListPhotosRequest {
                album_id: album.into(),
                page_size: 100,
                page_token: token.clone(),
            })
            .await
            .unwrap()
            .into_inner();
        photos.extend(page.photos);
        if page.next_page_token.is_empty() {
            return photos;
        }
        token = page.next_page_token;
    }
}

/// Every stored object under the managed prefixes: key → (size, storage class).
pub async fn objects(storage: SocketAddr) -> BTreeMap<String, (u64, i32)> {
    let mut client = StorageServiceClient::new(channel(storage).await);
    let mut all = BTreeMap::new();
    for prefix in ["originals/", "variants/", "tmp/"] {
        let mut pages = client
            .list_objects(storage_pb::ListObjectsRequest {
                prefix: prefix.into(),
                older_than_days: 0,
            })
            .await
            .unwrap()
            .into_inner();
        while let Some(page) = pages.message().await.unwrap() {
            for o in page.objects {
                all.insert(o.key, (o.size, o.storage_class));
            }
        }
    }
    all
}

/// Every object key the catalog references.
pub async fn referenced(catalog: SocketAddr) -> Vec<String> {
    let mut stream = CatalogServiceClient::new(channel(catalog).await)
        .stream_object_keys(catalog_pb::StreamObjectKeysRequest {})
        .await
        .unwrap()
        .into_inner();
    let mut keys = Vec::new();
    while let Some(page) = stream.message().await.unwrap() {
        keys.extend(page.object_keys);
    }
    keys
}

/// A folder of `n` distinct JPEGs named photo-00.jpg …
pub fn write_photos(dir: &Path, n: u32, first_seed: u32) {
    std::fs::create_dir_all(dir).unwrap();
    for i in 0..n {
        std::fs::write(
            dir.join(format!("photo-{i:02}.jpg")),
            photo(first_seed + i, 320, 240),
        )
        .unwrap();
    }
}

/// The value of a Prometheus counter family summed over series whose labels contain `filter`.
pub async fn metric_sum(admin: SocketAddr, family: &str, filter: &str) -> f64 {
    let (status, body) = photos_testkit::http::get(admin, "/metrics").await;
    assert_eq!(status, 200);
    body.lines()
        .filter(|l| l.starts_with(family) && l.contains(filter))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}
