//! The all-in-one run: every service and the gateway in one process, each on its own port,
//! talking to each other over gRPC exactly as separate deployments do (never by calling each
//! other's Rust code). With `embedded = true` (the default) it needs nothing installed: the
//! catalog uses SQLite under `data_dir`, the cache is in-process, and objects go to a local
//! S3-compatible server over `data_dir/objects`, so storage runs its real aws-sdk-s3 path.

use std::net::SocketAddr;
use std::path::PathBuf;

use photos_cache_admin::CacheAdminConfig;
use photos_catalog::CatalogConfig;
use photos_catalog::config::CacheSettings;
use photos_gateway::GatewayConfig;
use photos_local_s3::LocalS3;
use photos_media::MediaConfig;
use photos_metrics::MetricsConfig;
use photos_runtime::app::ServiceConfig;
use photos_runtime::config::{ConfigError, Validate};
use photos_runtime::{Secret, TelemetryConfig, UpstreamConfig};
use photos_storage::StorageConfig;
use serde::{Deserialize, Serialize};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

mod malloc;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct MeshConfig {
    /// Use the embedded backends under `data_dir` instead of the sections' databases/Redis/S3.
    pub embedded: bool,
    pub data_dir: PathBuf,
    /// One telemetry setup for the whole process (the sections' own are ignored).
    pub telemetry: TelemetryConfig,
    /// At most this many glibc malloc arenas for the process; 0 is one per available core
    /// (glibc's own default is 8 per core). Fewer arenas keep less freed and fragmented memory
    /// (ARCHITECTURE.md, "allocator").
    pub malloc_arena_max: usize,
    pub gateway: GatewayConfig,
    pub catalog: CatalogConfig,
    pub media: MediaConfig,
    pub storage: StorageConfig,
    pub cache_admin: CacheAdminConfig,
    pub metrics: MetricsConfig,
}

impl Default for MeshConfig {
    fn default() -> Self {
        Self {
            embedded: true,
            data_dir: PathBuf::from("data"),
            telemetry: TelemetryConfig::default(),
            malloc_arena_max: 0,
            gateway: GatewayConfig::default(),
            catalog: CatalogConfig::default(),
            media: MediaConfig::default(),
            storage: StorageConfig::default(),
            cache_admin: CacheAdminConfig::default(),
            metrics: MetricsConfig::default(),
        }
    }
}

impl MeshConfig {
    /// Every port 0 (picked by the OS) and a given data directory: for tests.
    pub fn ephemeral(data_dir: impl Into<PathBuf>) -> Self {
        let mut c = Self {
            data_dir: data_dir.into(),
            ..Self::default()
        };
        c.gateway.http.port = 0;
        for server in [
            &mut c.catalog.server,
            &mut c.media.server,
            &mut c.storage.server,
            &mut c.cache_admin.server,
            &mut c.metrics.server,
        ] {
            server.grpc_port = 0;
            server.admin_port = 0;
        }
        c
    }
}

impl Validate for MeshConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        self.telemetry.validate()?;
        let prefixed = |section: &str, e: ConfigError| {
            ConfigError::new(format!("{section}.{}", e.key), e.message)
        };
        self.gateway
            .validate()
            .map_err(|e| prefixed("gateway", e))?;
        self.catalog
            .validate()
            .map_err(|e| prefixed("catalog", e))?;
        self.media.validate().map_err(|e| prefixed("media", e))?;
        self.storage
            .validate()
            .map_err(|e| prefixed("storage", e))?;
        self.cache_admin
            .validate()
            .map_err(|e| prefixed("cache_admin", e))?;
        self.metrics.validate().map_err(|e| prefixed("metrics", e))
    }
}

impl ServiceConfig for MeshConfig {
    fn telemetry(&self) -> &TelemetryConfig {
        &self.telemetry
    }
}

#[derive(Debug, thiserror::Error)]
pub enum MeshError {
    #[error("cannot prepare the data directory {path}: {source}")]
    DataDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("embedded object store: {0}")]
    LocalS3(#[from] photos_local_s3::LocalS3Error),
    #[error("catalog: {0}")]
    Catalog(#[from] photos_catalog::CatalogError),
    #[error("media: {0}")]
    Media(#[from] photos_media::MediaError),
    #[error("storage: {0}")]
    Storage(#[from] photos_storage::StorageError),
    #[error("cache-admin: {0}")]
    CacheAdmin(#[from] photos_cache_admin::CacheAdminError),
    #[error("metrics: {0}")]
    Metrics(#[from] photos_metrics::MetricsError),
    #[error("gateway: {0}")]
    Gateway(#[from] photos_gateway::GatewayError),
}

/// The bound addresses of a running mesh.
#[derive(Debug, Clone)]
pub struct Addresses {
    pub gateway: SocketAddr,
    pub catalog: SocketAddr,
    pub media: SocketAddr,
    pub storage: SocketAddr,
    pub cache_admin: SocketAddr,
    pub metrics: SocketAddr,
    pub object_store: Option<SocketAddr>,
}

impl Addresses {
    /// The gRPC services, by name.
    pub fn grpc(&self) -> [(&'static str, SocketAddr); 5] {
        [
            ("catalog", self.catalog),
            ("media", self.media),
            ("storage", self.storage),
            ("cache-admin", self.cache_admin),
            ("metrics", self.metrics),
        ]
    }
}

pub struct Mesh {
    pub addresses: Addresses,
    /// An admin bearer token for local use, minted when the embedded run generated the key.
    pub admin_token: Option<String>,
    stop: CancellationToken,
    tasks: JoinSet<Result<(), MeshError>>,
    _object_store: Option<LocalS3>,
}

const LOCAL_S3_ACCESS_KEY: &str = "photos-local";

/// The arena cap for a configured `malloc_arena_max` (0: one per available core).
fn arena_max(configured: usize) -> usize {
    if configured > 0 {
        configured
    } else {
        std::thread::available_parallelism().map_or(2, |n| n.get())
    }
}

/// The catalog's cache in an embedded run: the in-process backend whatever backend was
/// configured, still bounded by the configured `l1_max_bytes` (resetting the whole section
/// silently restored the 256 MiB default, so a smaller bound never took effect).
fn embedded_catalog_cache(configured: &CacheSettings) -> CacheSettings {
    CacheSettings {
        l1_max_bytes: configured.l1_max_bytes,
        ..CacheSettings::default()
    }
}

fn url(addr: SocketAddr) -> String {
    format!("http://{addr}")
}

impl Mesh {
    /// Binds every service (so all addresses are known), wires each to the others' addresses,
    /// then starts serving.
    pub async fn start(mut config: MeshConfig) -> Result<Mesh, MeshError> {
        // Before the services start their threads: glibc only honours the cap while few arenas
        // exist.
        let arenas = arena_max(config.malloc_arena_max);
        if !malloc::limit_arenas(arenas) {
            tracing::debug!(
                arenas,
                "malloc arena cap not applied (not glibc, or mallopt refused it)"
            );
        }
        let mut object_store = None;
        let mut admin_token = None;
        if config.embedded && config.gateway.auth.hs256_secret.is_empty() {
            // A fresh signing key per run: tokens from an earlier run stop working, and nothing
            // secret is written to disk.
            config.gateway.auth.hs256_secret = Secret::new(format!(
                "{}{}",
                uuid::Uuid::new_v4().simple(),
                uuid::Uuid::new_v4().simple()
            ));
            admin_token = photos_gateway::auth::issue(
                &config.gateway.auth,
                "local-admin",
                photos_gateway::auth::Role::Admin,
                24 * 3600,
            )
            .ok();
        }
        if config.embedded {
            let data_dir = &config.data_dir;
            std::fs::create_dir_all(data_dir).map_err(|source| MeshError::DataDir {
                path: data_dir.clone(),
                source,
            })?;
            config.catalog.database.url = Secret::new(format!(
                "sqlite://{}",
                data_dir.join("catalog.db").display()
            ));
            // In-process caches: the catalog's serves its reads; cache-admin's cannot see it
            // (separate processes in production), so admin invalidations and stats do not
            // reach the catalog here; warming does (it goes through the catalog's RPCs).
            config.catalog.cache = embedded_catalog_cache(&config.catalog.cache);
            config.cache_admin.redis = Default::default();
            // A per-run secret: the local store only listens on loopback, and nothing outside
            // this process needs to sign requests to it.
            let secret = uuid::Uuid::new_v4().simple().to_string();
            let store = LocalS3::start(
                &data_dir.join("objects"),
                SocketAddr::from(([127, 0, 0, 1], 0)),
                LOCAL_S3_ACCESS_KEY,
                &secret,
            )
            .await?;
            store
                .ensure_bucket(&config.storage.s3.bucket)
                .map_err(|source| MeshError::DataDir {
                    path: store.root().to_owned(),
                    source,
                })?;
            config.storage.s3.endpoint = store.endpoint();
            config.storage.s3.force_path_style = true;
            config.storage.s3.access_key = Secret::new(LOCAL_S3_ACCESS_KEY);
            config.storage.s3.secret_key = Secret::new(secret);
            // The local store cannot list multipart uploads (no ListMultipartUploads): the
            // sweep's schedule would only warn, within the first hour, that it stopped.
            config.storage.multipart_sweep.interval_seconds = 0;
            object_store = Some(store);
        }

        // Metrics first: every other server reports its calls to it.
        let metrics = photos_metrics::build(config.metrics).await?;
        for server in [
            &mut config.catalog.server,
            &mut config.media.server,
            &mut config.storage.server,
            &mut config.cache_admin.server,
        ] {
            if server.metrics_service.is_empty() {
                server.metrics_service = url(metrics.grpc_addr());
            }
        }
        // The catalog's bulk jobs call media, storage and cache-admin, bound after it.
        let mut job_upstreams = config.catalog.upstreams();
        let mut catalog = photos_catalog::build(config.catalog).await?;
        let storage = photos_storage::build(config.storage).await?;
        config.media.storage = UpstreamConfig::new(url(storage.grpc_addr()));
        let media = photos_media::build(config.media).await?;
        config.cache_admin.catalog = UpstreamConfig::new(url(catalog.grpc_addr()));
        let cache_admin = photos_cache_admin::build(config.cache_admin).await?;
        job_upstreams.media.address = url(media.grpc_addr());
        job_upstreams.storage.address = url(storage.grpc_addr());
        job_upstreams.cache_admin.address = url(cache_admin.grpc_addr());
        catalog.set_job_upstreams(job_upstreams);
        config.gateway.catalog = UpstreamConfig::new(url(catalog.grpc_addr()));
        config.gateway.media = UpstreamConfig::new(url(media.grpc_addr()));
        config.gateway.storage = UpstreamConfig::new(url(storage.grpc_addr()));
        config.gateway.cache_admin = UpstreamConfig::new(url(cache_admin.grpc_addr()));
        config.gateway.metrics = UpstreamConfig::new(url(metrics.grpc_addr()));
        let gateway = photos_gateway::build(config.gateway).await?;

        let addresses = Addresses {
            gateway: gateway.http_addr(),
            catalog: catalog.grpc_addr(),
            media: media.grpc_addr(),
            storage: storage.grpc_addr(),
            cache_admin: cache_admin.grpc_addr(),
            metrics: metrics.grpc_addr(),
            object_store: object_store.as_ref().map(LocalS3::addr),
        };

        let stop = CancellationToken::new();
        let mut tasks = JoinSet::new();
        let s = stop.clone();
        tasks.spawn(async move { Ok(catalog.run_until_stopped(s.cancelled_owned()).await?) });
        let s = stop.clone();
        tasks.spawn(async move { Ok(storage.run_until_stopped(s.cancelled_owned()).await?) });
        let s = stop.clone();
        tasks.spawn(async move { Ok(metrics.run_until_stopped(s.cancelled_owned()).await?) });
        let s = stop.clone();
        tasks.spawn(async move { Ok(media.run_until_stopped(s.cancelled_owned()).await?) });
        let s = stop.clone();
        tasks.spawn(async move { Ok(cache_admin.run_until_stopped(s.cancelled_owned()).await?) });
        let s = stop.clone();
        tasks.spawn(async move { Ok(gateway.run_until_stopped(s.cancelled_owned()).await?) });

        Ok(Mesh {
            addresses,
            admin_token,
            stop,
            tasks,
            _object_store: object_store,
        })
    }

    /// Runs until `shutdown` resolves or a service fails, then drains every service.
    pub async fn run_until_stopped(
        mut self,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), MeshError> {
        let first = tokio::select! {
            () = shutdown => None,
            Some(joined) = self.tasks.join_next() => Some(joined),
        };
        self.stop.cancel();
        let mut result = match first {
            Some(Ok(Err(e))) => Err(e),
            _ => Ok(()),
        };
        while let Some(joined) = self.tasks.join_next().await {
            if let (Ok(Err(e)), Ok(())) = (joined, &result) {
                result = Err(e);
            }
        }
        result
    }

    /// Stops every service and waits for them to drain.
    pub async fn shutdown(self) -> Result<(), MeshError> {
        self.stop.cancel();
        self.run_until_stopped(std::future::ready(())).await
    }
}

#[cfg(test)]
mod tests {
    use photos_catalog::config::CacheBackend;

    use super::*;

    #[test]
    fn the_embedded_catalog_cache_is_in_process_and_keeps_its_configured_bound() {
        let configured = CacheSettings {
            backend: CacheBackend::Redis,
            url: Secret::new("redis://127.0.0.1:6379/0"),
            l1_max_bytes: 1024 * 1024,
            ..CacheSettings::default()
        };
        let embedded = embedded_catalog_cache(&configured);
        assert_eq!(embedded.backend, CacheBackend::Memory);
        assert!(embedded.url.expose().is_empty());
        assert_eq!(embedded.l1_max_bytes, 1024 * 1024);
    }
}
