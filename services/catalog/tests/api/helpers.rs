//! Spawns the real catalog service in-process on port 0 against a fresh database (a Postgres
//! database per test, or a SQLite file in a temp dir) and talks to it over gRPC.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::Duration;

use photos_catalog::CatalogConfig;
use photos_proto::catalog::v1::catalog_service_client::CatalogServiceClient;
use photos_proto::catalog::v1::*;
use photos_runtime::Secret;
use photos_testkit::postgres::TestDatabase;
use sqlx::{AssertSqlSafe, Connection};
use tonic::transport::Channel;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Postgres,
    Sqlite,
}

pub type Client = CatalogServiceClient<Channel>;

pub struct TestApp {
    pub client: Client,
    pub grpc: SocketAddr,
    pub admin: SocketAddr,
    pub backend: Backend,
    pub url: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
    _postgres: Option<TestDatabase>,
    _dir: Option<tempfile::TempDir>,
}

pub async fn spawn_app(backend: Backend) -> TestApp {
    spawn_app_with(backend, |_| {}).await
}

pub async fn spawn_app_with(
    backend: Backend,
    configure: impl FnOnce(&mut CatalogConfig),
) -> TestApp {
    let (url, postgres, dir) = match backend {
        Backend::Postgres => {
            let db = TestDatabase::create().await.expect("create test database");
            (db.url().to_owned(), Some(db), None)
        }
        Backend::Sqlite => {
            let dir = tempfile::tempdir().unwrap();
            let url = format!("sqlite://{}", dir.path().join("catalog.db").display());
            (url, None, Some(dir))
        }
    };
    start(backend, url, postgres, dir, configure).await
}

impl TestApp {
    /// Another instance of the service on the same database (a second replica); `self` must
    /// outlive it (it owns the database).
    pub async fn spawn_replica(&self, configure: impl FnOnce(&mut CatalogConfig)) -> TestApp {
        start(self.backend, self.url.clone(), None, None, configure).await
    }
}

async fn start(
    backend: Backend,
    url: String,
    postgres: Option<TestDatabase>,
    dir: Option<tempfile::TempDir>,
    configure: impl FnOnce(&mut CatalogConfig),
) -> TestApp {
    let mut config = CatalogConfig::default();
    config.server.grpc_port = 0;
    config.server.admin_port = 0;
    config.server.drain_delay_ms = 0;
    config.database.url = Secret::new(url.clone());
    config.database.max_connections = 8;
    configure(&mut config);
    let app = photos_catalog::build(config).await.expect("build catalog");
    let grpc = app.grpc_addr();
    let admin = app.admin_addr();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        app.run_until_stopped(async {
            let _ = stopped.await;
        })
        .await
        .expect("catalog run");
    });
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{grpc}"))
        .unwrap()
        .connect()
        .await
        .expect("connect");
    wait_serving(channel.clone()).await;
    TestApp {
        client: CatalogServiceClient::new(channel),
        grpc,
        admin,
        backend,
        url,
        stop: Some(stop),
        task: Some(task),
        _postgres: postgres,
        _dir: dir,
    }
}

/// SERVING means migrations have run.
async fn wait_serving(channel: Channel) {
    use tonic_health::pb::health_client::HealthClient;
    use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus};
    let mut health = HealthClient::new(channel);
    for _ in 0..1000 {
        let status = health
            .check(HealthCheckRequest {
                service: "photos.catalog.v1.CatalogService".into(),
            })
            .await
            .map(|r| r.into_inner().status);
        if matches!(status, Ok(s) if s == ServingStatus::Serving as i32) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("catalog never became SERVING");
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// Statements the call ran, from `x-db-query-count`.
pub fn statements<T>(response: &tonic::Response<T>) -> u32 {
    response
        .metadata()
        .get("x-db-query-count")
        .expect("x-db-query-count present")
        .to_str()
        .unwrap()
        .parse()
        .unwrap()
}

/// A request carrying `x-cache-refresh: 1`: recomputed and refilled, never answered from the
/// cache.
pub fn refresh<T>(message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request
        .metadata_mut()
        .insert(photos_cache::REFRESH_METADATA, "1".parse().unwrap());
    request
}

pub fn sha(n: u64) -> String {
    format!("{n:064x}")
}

impl TestApp {
    pub fn client(&self) -> Client {
        self.client.clone()
    }

    /// Runs SQL on the service's database directly (seeding, inspection).
    pub async fn sql(&self, sql: &str) {
        match self.backend {
            Backend::Postgres => {
                let mut c = sqlx::PgConnection::connect(&self.url).await.unwrap();
                sqlx::raw_sql(AssertSqlSafe(sql.to_owned()))
                    .execute(&mut c)
                    .await
                    .unwrap();
            }
            Backend::Sqlite => {
                let mut c = sqlx::SqliteConnection::connect(&self.url).await.unwrap();
                sqlx::raw_sql(AssertSqlSafe(sql.to_owned()))
                    .execute(&mut c)
                    .await
                    .unwrap();
            }
        }
    }

    /// One text column of a query, for inspecting raw rows.
    pub async fn column(&self, sql: &str) -> Vec<String> {
        match self.backend {
            Backend::Postgres => {
                let mut c = sqlx::PgConnection::connect(&self.url).await.unwrap();
                sqlx::query_scalar(AssertSqlSafe(sql.to_owned()))
                    .fetch_all(&mut c)
                    .await
                    .unwrap()
            }
            Backend::Sqlite => {
                let mut c = sqlx::SqliteConnection::connect(&self.url).await.unwrap();
                sqlx::query_scalar(AssertSqlSafe(sql.to_owned()))
                    .fetch_all(&mut c)
                    .await
                    .unwrap()
            }
        }
    }

    /// Seeds `albums` albums with `photos` photos each, each photo with a thumbnail variant.
    /// Album i: order i % 3 (ties on purpose), published when i is even, created_at 1e12 + i.
    pub async fn seed(&self, albums: usize, photos: usize) {
        seed_sql(self, albums, photos).await
    }

    pub async fn create_album(&self, title: &str, published: bool, order: i32) -> Album {
        self.client()
            .create_album(CreateAlbumRequest {
                title: title.into(),
                is_published: published,
                order,
                ..Default::default()
            })
            .await
            .expect("create album")
            .into_inner()
            .album
            .unwrap()
    }

    pub async fn create_photo(&self, album_id: &str, n: u64) -> CreatePhotoResponse {
        self.client()
            .create_photo(CreatePhotoRequest {
                album_id: album_id.into(),
                title: format!("photo {n}"),
                original_key: format!("originals/{album_id}/{n}"),
                content_sha256: sha(n),
                bytes: 1000 + n,
                format: ImageFormat::Jpeg as i32,
                ..Default::default()
            })
            .await
            .expect("create photo")
            .into_inner()
    }

    pub async fn add_thumbnail(&self, photo_id: &str) -> Photo {
        self.client()
            .record_media_result(RecordMediaResultRequest {
                photo_id: photo_id.into(),
                status: PhotoStatus::Ready as i32,
                width: 4000,
                height: 3000,
                placeholders: Some(Placeholders {
                    dominant_color: "#112233".into(),
                    blur_data_uri: "data:image/webp;base64,AAAA".into(),
                    ..Default::default()
                }),
                variants: vec![Variant {
                    preset: "thumbnail".into(),
                    format: ImageFormat::Webp as i32,
                    object_key: format!("variants/{photo_id}/thumbnail.webp"),
                    width: 400,
                    height: 300,
                    bytes: 5000,
                }],
                ..Default::default()
            })
            .await
            .expect("record media result")
            .into_inner()
            .photo
            .unwrap()
    }
}

async fn seed_sql(app: &TestApp, albums: usize, photos: usize) {
    let base: i64 = 1_000_000_000_000;
    let mut sql = String::from("BEGIN;\n");
    for chunk in (0..albums).collect::<Vec<_>>().chunks(200) {
        let rows: Vec<String> = chunk
            .iter()
            .map(|i| {
                format!(
                    "('seeded {i}', '', 'owner-{}', {}, {}, {}, {})",
                    i % 2,
                    if i % 2 == 0 { "TRUE" } else { "FALSE" },
                    i % 3,
                    base + *i as i64,
                    base + *i as i64
                )
            })
            .collect();
        sql.push_str(&format!(
            "INSERT INTO albums (title, description, owner_id, is_published, \"order\", created_at, updated_at) VALUES {};\n",
            rows.join(", ")
        ));
    }
    sql.push_str("COMMIT;");
    app.sql(&sql).await;
    let ids = app
        .column("SELECT CAST(id AS TEXT) FROM albums WHERE title LIKE 'seeded %' ORDER BY id")
        .await;
    let mut sql = String::from("BEGIN;\n");
    let mut rows = Vec::new();
    for (ai, id) in ids.iter().enumerate() {
        for j in 0..photos {
            let n = (ai * 100_000 + j) as u64;
            rows.push(format!(
                "({id}, 'seeded-p{j}', {j}, 'originals/{id}/{j}', '{}', 1000, 1, 2, {}, {})",
                sha(n),
                base + n as i64,
                base + n as i64
            ));
            if rows.len() == 400 {
                sql.push_str(&photo_insert(&rows));
                rows.clear();
            }
        }
    }
    if !rows.is_empty() {
        sql.push_str(&photo_insert(&rows));
    }
    sql.push_str(
        "INSERT INTO photo_variants (photo_id, preset, format, object_key, width, height, bytes) \
         SELECT id, 'thumbnail', 3, 'variants/' || CAST(id AS TEXT) || '/thumbnail.webp', 400, 300, 5000 FROM photos \
         WHERE title LIKE 'seeded-p%';\nCOMMIT;",
    );
    app.sql(&sql).await;
    if app.backend == Backend::Postgres {
        app.sql("ANALYZE").await;
    }
}

fn photo_insert(rows: &[String]) -> String {
    format!(
        "INSERT INTO photos (album_id, title, \"order\", original_key, content_sha256, bytes, format, status, created_at, updated_at) VALUES {};\n",
        rows.join(", ")
    )
}

/// The admin port's Prometheus text.
pub async fn metrics_text(admin: SocketAddr) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(admin).await.unwrap();
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut raw = String::new();
    stream.read_to_string(&mut raw).await.unwrap();
    raw
}

/// The value of a metric line starting with `name` (labels included in `name` if needed).
pub fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(name))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("metric {name} not found in:\n{text}"))
}
