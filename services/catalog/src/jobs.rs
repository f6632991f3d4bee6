//! Bulk jobs hosted by the catalog: the `photos.jobs.v1.JobService` API and the workers that run
//! the job kinds. The queue itself is `photos-jobs`, on the catalog's own database (the only
//! database in the mesh); the kinds call media, storage and cache-admin over gRPC and read or
//! record the catalog's rows directly, as the catalog owns them.
//!
//! Kinds: `warm-cache` (one item per album), `generate-thumbnails` and `optimize-images` (one
//! item per photo), `cleanup-s3` (one item per orphaned object, deleted or archived in batches).

mod cleanup;
pub mod grpc;
mod optimize;
mod thumbnails;
mod warm;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;

use photos_jobs::{Db, JobStore, Outcome, Runner, RunnerConfig, Waker};
use photos_proto::cache_admin::v1::cache_admin_service_client::CacheAdminServiceClient;
use photos_proto::media::v1::media_service_client::MediaServiceClient;
use photos_proto::media::v1::{ImageFormat, VariantDescriptor};
use photos_proto::storage::v1::storage_service_client::StorageServiceClient;
use photos_runtime::client::{Channel, ChannelError};
use photos_runtime::config::ConfigError;
use photos_runtime::{ErrorKind, UpstreamConfig};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::catalog::{Catalog, parse_id};
use crate::model::{MediaResult, VariantRow};
use crate::store::{Arg, Pool, Statement, Store};

pub const WARM_CACHE: &str = "warm-cache";
pub const OPTIMIZE_IMAGES: &str = "optimize-images";
pub const GENERATE_THUMBNAILS: &str = "generate-thumbnails";
pub const CLEANUP_S3: &str = "cleanup-s3";

/// The preset `generate-thumbnails` produces (a custom size keeps this name).
pub const THUMBNAIL: &str = "thumbnail";
const PHOTO_STATUS_FAILED: i64 = 3;

/// The most items of one job processed at once.
pub const MAX_WORKERS: u32 = 16;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct JobsConfig {
    /// Run job workers in this process (the API is served either way).
    pub run_workers: bool,
    /// Items of one job processed at once when the request does not say.
    pub default_workers: u32,
    /// Jobs this process runs at once.
    pub max_running_jobs: usize,
    /// A job whose worker has not renewed its lease for this long is resumed by another.
    pub lease_ms: u64,
    pub poll_ms: u64,
    /// How often a watched job is re-read for progress.
    pub watch_poll_ms: u64,
    /// Storage prefixes searched for orphaned objects by `cleanup-s3`.
    pub cleanup_prefixes: Vec<String>,
}

impl Default for JobsConfig {
    fn default() -> Self {
        Self {
            run_workers: true,
            default_workers: 4,
            max_running_jobs: 2,
            lease_ms: 30_000,
            poll_ms: 1_000,
            watch_poll_ms: 250,
            cleanup_prefixes: vec!["originals/".into(), "variants/".into(), "tmp/".into()],
        }
    }
}

impl JobsConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !(1..=MAX_WORKERS).contains(&self.default_workers) {
            return Err(ConfigError::new(
                "jobs.default_workers",
                format!("must be between 1 and {MAX_WORKERS}"),
            ));
        }
        if self.max_running_jobs == 0 {
            return Err(ConfigError::new(
                "jobs.max_running_jobs",
                "must be greater than 0",
            ));
        }
        // Heartbeats go out every third of the lease; below a second they would mostly be
        // database round-trips.
        if self.lease_ms < 1_000 {
            return Err(ConfigError::new("jobs.lease_ms", "must be at least 1000"));
        }
        if self.poll_ms == 0 || self.watch_poll_ms == 0 {
            return Err(ConfigError::new(
                "jobs.poll_ms",
                "jobs.poll_ms and jobs.watch_poll_ms must be greater than 0",
            ));
        }
        if self.cleanup_prefixes.is_empty()
            || self
                .cleanup_prefixes
                .iter()
                .any(|p| p.is_empty() || !p.ends_with('/'))
        {
            return Err(ConfigError::new(
                "jobs.cleanup_prefixes",
                "must list at least one prefix, each ending in '/' (e.g. originals/)",
            ));
        }
        Ok(())
    }
}

// ---- parameters, stored as JSON with the job ----

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct WarmCacheParams {
    pub album_id: String,
    pub published_only: bool,
    pub force: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct OptimizeImagesParams {
    pub generate_webp: bool,
    pub responsive: bool,
    /// `STANDARD`, `STANDARD_IA`, `GLACIER`, or empty to leave originals where they are.
    pub storage_class: String,
    pub album_id: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct GenerateThumbnailsParams {
    pub missing_only: bool,
    pub width: u32,
    pub height: u32,
    pub quality: u32,
    pub album_id: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct CleanupS3Params {
    pub older_than_days: u32,
    pub dry_run: bool,
    pub archive: bool,
}

fn params<T: serde::de::DeserializeOwned>(
    job: &photos_jobs::Job,
) -> Result<T, photos_jobs::ExecError> {
    serde_json::from_str(&job.params).map_err(|e| {
        photos_jobs::ExecError::permanent(format!("job {} has unreadable params: {e}", job.id))
    })
}

// ---- upstreams ----

/// Where the job kinds' upstream services are.
#[derive(Debug, Clone)]
pub struct UpstreamConfigs {
    pub media: UpstreamConfig,
    pub storage: UpstreamConfig,
    pub cache_admin: UpstreamConfig,
}

#[derive(Clone)]
pub(crate) struct Upstreams {
    pub media: MediaServiceClient<Channel>,
    pub storage: StorageServiceClient<Channel>,
    pub cache_admin: CacheAdminServiceClient<Channel>,
}

impl Upstreams {
    fn connect(c: &UpstreamConfigs) -> Result<Self, ChannelError> {
        Ok(Self {
            media: MediaServiceClient::new(Channel::connect_lazy(&c.media)?)
                .max_decoding_message_size(16 * 1024 * 1024),
            storage: StorageServiceClient::new(Channel::connect_lazy(&c.storage)?)
                .max_decoding_message_size(16 * 1024 * 1024),
            cache_admin: CacheAdminServiceClient::new(Channel::connect_lazy(&c.cache_admin)?),
        })
    }
}

/// The outcome of an item whose upstream call failed: retried when the failure is transient.
pub(crate) fn failed_call(what: &str, status: &tonic::Status) -> Outcome {
    let message = format!("{what}: {}", status.message());
    match ErrorKind::of_status(status) {
        ErrorKind::Unavailable | ErrorKind::DeadlineExceeded => Outcome::Retry(message),
        _ => Outcome::Failed(message),
    }
}

/// A planning failure from a catalog error: retried when the database is briefly unavailable.
pub(crate) fn plan_error(e: crate::CatalogError) -> photos_jobs::ExecError {
    match e.kind() {
        ErrorKind::Unavailable | ErrorKind::DeadlineExceeded => {
            photos_jobs::ExecError::retryable(e.to_string())
        }
        _ => photos_jobs::ExecError::permanent(e.to_string()),
    }
}

pub(crate) fn plan_status(what: &str, status: &tonic::Status) -> photos_jobs::ExecError {
    let message = format!("{what}: {}", status.message());
    match ErrorKind::of_status(status) {
        ErrorKind::Unavailable | ErrorKind::DeadlineExceeded => {
            photos_jobs::ExecError::retryable(message)
        }
        _ => photos_jobs::ExecError::permanent(message),
    }
}

// ---- shared by the photo kinds ----

#[derive(Deserialize)]
struct PhotoItemRow {
    id: i64,
    original_key: String,
    bytes: i64,
}

/// One item per photo (key: photo id, detail: original key), in id order: every photo that
/// has not failed, of one album or all, optionally only those lacking the JPEG thumbnail.
pub(crate) async fn photo_items(
    catalog: &Catalog,
    album_id: &str,
    missing_thumbnail: bool,
) -> Result<Vec<photos_jobs::NewItem>, photos_jobs::ExecError> {
    let store = catalog.store();
    let d = store.dialect();
    let mut s = Statement::new();
    let mut sql = format!(
        "SELECT {} FROM photos p WHERE p.status <> {}",
        d.as_text(&d.object(&[
            ("id", "p.id"),
            ("original_key", "p.original_key"),
            ("bytes", "p.bytes"),
        ])),
        s.arg(Arg::I64(PHOTO_STATUS_FAILED))
    );
    if !album_id.is_empty() {
        let id = parse_id("album", album_id).map_err(plan_error)?;
        catalog.get_album(album_id, 1).await.map_err(plan_error)?;
        sql.push_str(&format!(" AND p.album_id = {}", s.arg(Arg::I64(id))));
    }
    if missing_thumbnail {
        sql.push_str(&format!(
            " AND NOT EXISTS (SELECT 1 FROM photo_variants v WHERE v.photo_id = p.id \
             AND v.preset = {} AND v.format = {})",
            s.arg(Arg::Text(THUMBNAIL.into())),
            s.arg(Arg::I64(i64::from(ImageFormat::Jpeg as i32)))
        ));
    }
    sql.push_str(" ORDER BY p.id");
    s.push(&sql);
    let rows = store.rows(&s).await.map_err(|e| plan_error(e.into()))?;
    rows.iter()
        .map(|r| {
            let p: PhotoItemRow = serde_json::from_str(r).map_err(|e| {
                photos_jobs::ExecError::permanent(format!("unreadable photo row: {e}"))
            })?;
            Ok(photos_jobs::NewItem {
                key: p.id.to_string(),
                detail: p.original_key,
                bytes: p.bytes.max(0) as u64,
            })
        })
        .collect()
}

pub(crate) fn variant_rows(variants: Vec<VariantDescriptor>) -> Vec<VariantRow> {
    variants
        .into_iter()
        .map(|v| VariantRow {
            preset: v.preset,
            format: v.format,
            object_key: v.object_key,
            width: v.width.into(),
            height: v.height.into(),
            bytes: i64::try_from(v.bytes).unwrap_or(i64::MAX),
        })
        .collect()
}

/// Records new variants of a photo, keeping what else the catalog holds about it unless
/// `derived` replaces it. A photo deleted meanwhile needs nothing more.
pub(crate) async fn record(
    catalog: &Catalog,
    photo_id: &str,
    variants: Vec<VariantRow>,
    derived: Option<MediaResult>,
) -> Outcome {
    let result = match derived {
        Some(r) => MediaResult { variants, ..r },
        None => {
            // Read-modify-write: start from the database, not from a cached copy.
            let photo = match catalog.get_photo(photo_id).await {
                Ok(p) => p,
                Err(crate::CatalogError::NotFound { .. }) => return Outcome::Done,
                Err(e) => return catalog_outcome(e),
            };
            MediaResult {
                photo_id: photo_id.to_owned(),
                status: photo.status,
                failure_reason: photo.failure_reason,
                width: u32::try_from(photo.width).unwrap_or(0),
                height: u32::try_from(photo.height).unwrap_or(0),
                taken_at: photo.taken_at,
                dominant_color: photo.dominant_color,
                blur_placeholder: photo.blur_placeholder,
                blurhash: photo.blurhash,
                thumbhash: photo.thumbhash,
                variants,
            }
        }
    };
    match catalog.record_media_result(result).await {
        Ok(_) | Err(crate::CatalogError::NotFound { .. }) => Outcome::Done,
        Err(e) => catalog_outcome(e),
    }
}

pub(crate) fn catalog_outcome(e: crate::CatalogError) -> Outcome {
    match e.kind() {
        ErrorKind::Unavailable | ErrorKind::DeadlineExceeded => Outcome::Retry(e.to_string()),
        _ => Outcome::Failed(e.to_string()),
    }
}

// ---- hosting ----

/// The jobs part of the catalog process: the API, and the workers started once the database
/// is migrated.
pub struct Hosted {
    store: JobStore,
    catalog: Catalog,
    config: JobsConfig,
    upstreams: UpstreamConfigs,
    waker: Waker,
    stop: CancellationToken,
    ready: watch::Sender<bool>,
}

pub fn job_store(store: &Store) -> JobStore {
    JobStore::new(match store.pool() {
        Pool::Postgres(p) => Db::Postgres(p.clone()),
        Pool::Sqlite(p) => Db::Sqlite(p.clone()),
    })
}

impl Hosted {
    pub fn new(
        store: &Store,
        catalog: Catalog,
        config: JobsConfig,
        upstreams: UpstreamConfigs,
    ) -> Self {
        Self {
            store: job_store(store),
            catalog,
            config,
            upstreams,
            waker: Waker::default(),
            stop: CancellationToken::new(),
            ready: watch::channel(false).0,
        }
    }

    /// Points the job kinds at other upstream addresses (the all-in-one run learns them after
    /// the catalog is bound).
    pub fn set_upstreams(&mut self, upstreams: UpstreamConfigs) {
        self.upstreams = upstreams;
    }

    pub fn service(
        &self,
    ) -> photos_proto::jobs::v1::job_service_server::JobServiceServer<grpc::JobsGrpc> {
        photos_proto::jobs::v1::job_service_server::JobServiceServer::new(grpc::JobsGrpc {
            store: self.store.clone(),
            catalog: self.catalog.clone(),
            waker: self.waker.clone(),
            default_workers: self.config.default_workers,
            watch_poll: Duration::from_millis(self.config.watch_poll_ms),
            stop: self.stop.clone(),
        })
    }

    /// The readiness step applying the queue's migrations; the workers start after its first
    /// success.
    pub fn migration_fn(
        &self,
    ) -> impl Fn() -> BoxFuture<'static, Result<(), photos_jobs::JobError>> + Send + use<> {
        let store = self.store.clone();
        let ready = self.ready.clone();
        move || {
            let store = store.clone();
            let ready = ready.clone();
            Box::pin(async move {
                store.migrate().await?;
                ready.send_replace(true);
                Ok(())
            })
        }
    }

    /// Resolves when `shutdown` does, after telling the workers and open watches to stop.
    pub fn on_shutdown<F: Future<Output = ()> + Send>(
        &self,
        shutdown: F,
    ) -> impl Future<Output = ()> + Send + use<F> {
        let stop = self.stop.clone();
        async move {
            shutdown.await;
            stop.cancel();
        }
    }

    /// Runs the workers beside `server` (once the database is migrated) until it ends. Items
    /// in flight finish and unfinished jobs go back to the queue before this returns.
    pub async fn run_alongside<F: Future>(self, server: F) -> F::Output {
        let stop = self.stop.clone();
        let workers = async {
            if !self.config.run_workers {
                return;
            }
            let upstreams = match Upstreams::connect(&self.upstreams) {
                Ok(u) => u,
                Err(e) => {
                    tracing::error!(error = %e, "job workers not started");
                    return;
                }
            };
            let mut ready = self.ready.subscribe();
            tokio::select! {
                _ = ready.wait_for(|r| *r) => {}
                () = stop.cancelled() => return,
            }
            let runner = self.runner(upstreams);
            tracing::info!(kinds = ?runner.kinds(), "job workers started");
            runner.run(stop.clone()).await;
        };
        let serve = async {
            let output = server.await;
            stop.cancel();
            output
        };
        let (output, ()) = tokio::join!(serve, workers);
        output
    }

    fn runner(&self, upstreams: Upstreams) -> Runner {
        let c = &self.config;
        let config = RunnerConfig {
            lease: Duration::from_millis(c.lease_ms),
            poll: Duration::from_millis(c.poll_ms),
            max_jobs: c.max_running_jobs,
            ..RunnerConfig::default()
        };
        let catalog = self.catalog.clone();
        // StartJob wakes the runner of its own process: no poll interval before a job starts.
        Runner::new(self.store.clone(), config)
            .with_waker(self.waker.clone())
            .register(
                WARM_CACHE,
                Arc::new(warm::WarmCache {
                    catalog: catalog.clone(),
                    upstreams: upstreams.clone(),
                }),
            )
            .register(
                GENERATE_THUMBNAILS,
                Arc::new(thumbnails::GenerateThumbnails {
                    catalog: catalog.clone(),
                    upstreams: upstreams.clone(),
                }),
            )
            .register(
                OPTIMIZE_IMAGES,
                Arc::new(optimize::OptimizeImages {
                    catalog: catalog.clone(),
                    upstreams: upstreams.clone(),
                }),
            )
            .register(
                CLEANUP_S3,
                Arc::new(cleanup::CleanupS3 {
                    catalog,
                    upstreams,
                    prefixes: c.cleanup_prefixes.clone(),
                }),
            )
    }
}
