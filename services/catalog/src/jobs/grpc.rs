//! `photos.jobs.v1.JobService`: validates requests, translates between the proto and the queue,
//! and streams progress by re-reading the job (it may run in another replica).

use std::time::Duration;

use photos_jobs::{ItemState, Job, JobFilter, JobState, JobStore, NewJob, Waker};
use photos_proto::jobs::v1 as pb;
use photos_proto::jobs::v1::job_params::Params;
use photos_proto::jobs::v1::job_service_server::JobService;
use photos_runtime::ErrorKind;
use prost_types::Timestamp;
use tokio_util::sync::CancellationToken;
use tonic::codegen::BoxStream;
use tonic::{Request, Response, Status};

use super::*;
use crate::catalog::Catalog;

const MAX_REQUEST_ID: usize = 128;
/// Largest custom thumbnail edge.
const MAX_EDGE: u32 = 4_096;
const MAX_DAYS: u32 = 36_500;

pub struct JobsGrpc {
    pub(super) store: JobStore,
    pub(super) catalog: Catalog,
    pub(super) waker: Waker,
    pub(super) default_workers: u32,
    pub(super) watch_poll: Duration,
    pub(super) stop: CancellationToken,
}

fn invalid(message: impl Into<String>) -> Status {
    ErrorKind::InvalidArgument.status(message)
}

fn parse_job_id(id: &str) -> Result<i64, Status> {
    if id.is_empty() {
        return Err(invalid("job id is required"));
    }
    id.parse::<i64>().ok().filter(|v| *v > 0).ok_or_else(|| {
        ErrorKind::NotFound.status(format!(
            "job {} not found",
            id.chars().take(64).collect::<String>()
        ))
    })
}

fn timestamp(millis: i64) -> Timestamp {
    Timestamp {
        seconds: millis.div_euclid(1_000),
        nanos: (millis.rem_euclid(1_000) * 1_000_000) as i32,
    }
}

fn kind_name(kind: pb::JobKind) -> Option<&'static str> {
    match kind {
        pb::JobKind::WarmCache => Some(WARM_CACHE),
        pb::JobKind::OptimizeImages => Some(OPTIMIZE_IMAGES),
        pb::JobKind::GenerateThumbnails => Some(GENERATE_THUMBNAILS),
        pb::JobKind::CleanupS3 => Some(CLEANUP_S3),
        pb::JobKind::Unspecified => None,
    }
}

fn kind_of(name: &str) -> pb::JobKind {
    match name {
        WARM_CACHE => pb::JobKind::WarmCache,
        OPTIMIZE_IMAGES => pb::JobKind::OptimizeImages,
        GENERATE_THUMBNAILS => pb::JobKind::GenerateThumbnails,
        CLEANUP_S3 => pb::JobKind::CleanupS3,
        _ => pb::JobKind::Unspecified,
    }
}

fn state_pb(state: JobState) -> pb::JobState {
    match state {
        JobState::Queued => pb::JobState::Queued,
        JobState::Running => pb::JobState::Running,
        JobState::Succeeded => pb::JobState::Succeeded,
        JobState::Failed => pb::JobState::Failed,
        JobState::Cancelled => pb::JobState::Cancelled,
    }
}

fn state_of(state: i32) -> Result<JobState, Status> {
    Ok(match pb::JobState::try_from(state) {
        Ok(pb::JobState::Queued) => JobState::Queued,
        Ok(pb::JobState::Running) => JobState::Running,
        Ok(pb::JobState::Succeeded) => JobState::Succeeded,
        Ok(pb::JobState::Failed) => JobState::Failed,
        Ok(pb::JobState::Cancelled) => JobState::Cancelled,
        _ => return Err(invalid(format!("states: {state} is not a job state"))),
    })
}

fn storage_class_name(class: i32) -> Result<String, Status> {
    Ok(match pb::StorageClass::try_from(class) {
        Ok(pb::StorageClass::Unspecified) => String::new(),
        Ok(pb::StorageClass::Standard) => "STANDARD".into(),
        Ok(pb::StorageClass::StandardIa) => "STANDARD_IA".into(),
        Ok(pb::StorageClass::Glacier) => "GLACIER".into(),
        Err(_) => {
            return Err(invalid(format!(
                "optimize_images.storage_class {class} is unknown: use STORAGE_CLASS_STANDARD, _STANDARD_IA or _GLACIER"
            )));
        }
    })
}

/// The stored params as the proto's oneof.
fn params_pb(job: &Job) -> Option<pb::JobParams> {
    let params = match job.kind.as_str() {
        WARM_CACHE => {
            let p: WarmCacheParams = serde_json::from_str(&job.params).ok()?;
            Params::WarmCache(pb::WarmCacheParams {
                album_id: p.album_id,
                published_only: p.published_only,
                force: p.force,
            })
        }
        OPTIMIZE_IMAGES => {
            let p: OptimizeImagesParams = serde_json::from_str(&job.params).ok()?;
            Params::OptimizeImages(pb::OptimizeImagesParams {
                generate_webp: p.generate_webp,
                responsive: p.responsive,
                storage_class: pb::StorageClass::from_str_name(&format!(
                    "STORAGE_CLASS_{}",
                    p.storage_class
                ))
                .map_or(0, |c| c as i32),
                album_id: p.album_id,
            })
        }
        GENERATE_THUMBNAILS => {
            let p: GenerateThumbnailsParams = serde_json::from_str(&job.params).ok()?;
            Params::GenerateThumbnails(pb::GenerateThumbnailsParams {
                missing_only: p.missing_only,
                width: p.width,
                height: p.height,
                quality: p.quality,
                album_id: p.album_id,
            })
        }
        CLEANUP_S3 => {
            let p: CleanupS3Params = serde_json::from_str(&job.params).ok()?;
            Params::CleanupS3(pb::CleanupS3Params {
                older_than_days: p.older_than_days,
                dry_run: p.dry_run,
                archive: p.archive,
            })
        }
        _ => return None,
    };
    Some(pb::JobParams {
        params: Some(params),
    })
}

pub fn job_pb(job: &Job) -> pb::Job {
    pb::Job {
        id: job.id.to_string(),
        kind: kind_of(&job.kind) as i32,
        state: state_pb(job.state) as i32,
        params: params_pb(job),
        workers: job.workers,
        total: job.total,
        done: job.done,
        failed: job.failed,
        total_bytes: job.total_bytes,
        done_bytes: job.done_bytes,
        cancel_requested: job.cancel_requested,
        error: job.error.clone(),
        claims: job.claims,
        trace_id: job.trace.trace_id().unwrap_or_default().to_owned(),
        create_time: Some(timestamp(job.created_at)),
        start_time: job.started_at.map(timestamp),
        finish_time: job.finished_at.map(timestamp),
        update_time: Some(timestamp(job.updated_at)),
    }
}

fn item_pb(item: photos_jobs::Item) -> pb::JobItem {
    pb::JobItem {
        seq: item.seq.max(0) as u64,
        key: item.key,
        state: match item.state {
            ItemState::Pending => pb::ItemState::Pending,
            ItemState::Done => pb::ItemState::Done,
            ItemState::Failed => pb::ItemState::Failed,
        } as i32,
        bytes: item.bytes,
        attempts: item.attempts,
        error: item.error,
    }
}

impl JobsGrpc {
    async fn check_album(&self, field: &str, album_id: &str) -> Result<(), Status> {
        if album_id.is_empty() {
            return Ok(());
        }
        self.catalog
            .get_album(album_id, 1)
            .await
            .map(|_| ())
            .map_err(|e| match e {
                crate::CatalogError::NotFound { .. } => {
                    ErrorKind::NotFound.status(format!("{field}: album {album_id} not found"))
                }
                other => other.into(),
            })
    }

    /// The kind and its params as stored JSON, after validation.
    async fn kind_and_params(
        &self,
        params: Option<pb::JobParams>,
    ) -> Result<(&'static str, String), Status> {
        let params = params.and_then(|p| p.params).ok_or_else(|| {
            invalid("params must set one of warm_cache, optimize_images, generate_thumbnails, cleanup_s3")
        })?;
        Ok(match params {
            Params::WarmCache(p) => {
                self.check_album("warm_cache.album_id", &p.album_id).await?;
                (
                    WARM_CACHE,
                    json(&WarmCacheParams {
                        album_id: p.album_id,
                        published_only: p.published_only,
                        force: p.force,
                    }),
                )
            }
            Params::OptimizeImages(p) => {
                self.check_album("optimize_images.album_id", &p.album_id)
                    .await?;
                (
                    OPTIMIZE_IMAGES,
                    json(&OptimizeImagesParams {
                        generate_webp: p.generate_webp,
                        responsive: p.responsive,
                        storage_class: storage_class_name(p.storage_class)?,
                        album_id: p.album_id,
                    }),
                )
            }
            Params::GenerateThumbnails(p) => {
                if (p.width == 0) != (p.height == 0) {
                    return Err(invalid(
                        "generate_thumbnails: set both width and height (or neither for the configured thumbnail)",
                    ));
                }
                if p.width > MAX_EDGE || p.height > MAX_EDGE {
                    return Err(invalid(format!(
                        "generate_thumbnails: {}x{} is larger than {MAX_EDGE}x{MAX_EDGE}",
                        p.width, p.height
                    )));
                }
                if p.quality > 100 {
                    return Err(invalid(format!(
                        "generate_thumbnails.quality must be 1 to 100 (0 for the preset's), got {}",
                        p.quality
                    )));
                }
                if p.quality > 0 && p.width == 0 {
                    return Err(invalid(
                        "generate_thumbnails.quality needs width and height (a custom thumbnail)",
                    ));
                }
                self.check_album("generate_thumbnails.album_id", &p.album_id)
                    .await?;
                (
                    GENERATE_THUMBNAILS,
                    json(&GenerateThumbnailsParams {
                        missing_only: p.missing_only,
                        width: p.width,
                        height: p.height,
                        quality: p.quality,
                        album_id: p.album_id,
                    }),
                )
            }
            Params::CleanupS3(p) => {
                if p.older_than_days > MAX_DAYS {
                    return Err(invalid(format!(
                        "cleanup_s3.older_than_days must be at most {MAX_DAYS}, got {}",
                        p.older_than_days
                    )));
                }
                (
                    CLEANUP_S3,
                    json(&CleanupS3Params {
                        older_than_days: p.older_than_days,
                        dry_run: p.dry_run,
                        archive: p.archive,
                    }),
                )
            }
        })
    }
}

/// Params structs are plain strings, numbers and booleans: serialising them cannot fail.
fn json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_default()
}

#[tonic::async_trait]
impl JobService for JobsGrpc {
    async fn start_job(
        &self,
        request: Request<pb::StartJobRequest>,
    ) -> Result<Response<pb::StartJobResponse>, Status> {
        let r = request.into_inner();
        let workers = match r.workers {
            0 => self.default_workers,
            n if n <= MAX_WORKERS => n,
            n => {
                return Err(invalid(format!(
                    "workers must be 1 to {MAX_WORKERS} (0 for the default), got {n}"
                )));
            }
        };
        if r.request_id.len() > MAX_REQUEST_ID {
            return Err(invalid(format!(
                "request_id is {} bytes; the limit is {MAX_REQUEST_ID}",
                r.request_id.len()
            )));
        }
        let (kind, params) = self.kind_and_params(r.params).await?;
        let new = NewJob {
            kind: kind.to_owned(),
            params,
            workers,
            request_id: (!r.request_id.is_empty()).then_some(r.request_id),
            // This handler runs in the server span of the call: the job continues its trace.
            trace: photos_jobs::trace::capture(&tracing::Span::current()),
        };
        let (job, created) = self.store.create(&new).await?;
        if created {
            tracing::info!(job.id = job.id, kind, "job queued");
            self.waker.wake();
        }
        Ok(Response::new(pb::StartJobResponse {
            job: Some(job_pb(&job)),
            created,
        }))
    }

    async fn get_job(
        &self,
        request: Request<pb::GetJobRequest>,
    ) -> Result<Response<pb::GetJobResponse>, Status> {
        let id = parse_job_id(&request.into_inner().id)?;
        let job = self.store.get(id).await?;
        Ok(Response::new(pb::GetJobResponse {
            job: Some(job_pb(&job)),
        }))
    }

    async fn list_jobs(
        &self,
        request: Request<pb::ListJobsRequest>,
    ) -> Result<Response<pb::ListJobsResponse>, Status> {
        let r = request.into_inner();
        if r.page_size < 0 {
            return Err(invalid("page_size must not be negative"));
        }
        let kind = match pb::JobKind::try_from(r.kind) {
            Ok(k) => kind_name(k).map(str::to_owned),
            Err(_) => return Err(invalid(format!("kind {} is not a job kind", r.kind))),
        };
        let states = r
            .states
            .iter()
            .map(|s| state_of(*s))
            .collect::<Result<Vec<_>, _>>()?;
        let page = self
            .store
            .list(&JobFilter {
                states,
                kind,
                page_size: r.page_size as u32,
                page_token: r.page_token,
            })
            .await?;
        Ok(Response::new(pb::ListJobsResponse {
            jobs: page.items.iter().map(job_pb).collect(),
            next_page_token: page.next_page_token,
        }))
    }

    async fn cancel_job(
        &self,
        request: Request<pb::CancelJobRequest>,
    ) -> Result<Response<pb::CancelJobResponse>, Status> {
        let id = parse_job_id(&request.into_inner().id)?;
        let job = self.store.cancel(id).await?;
        tracing::info!(job.id = id, "job cancellation requested");
        Ok(Response::new(pb::CancelJobResponse {
            job: Some(job_pb(&job)),
        }))
    }

    async fn watch_job(
        &self,
        request: Request<pb::WatchJobRequest>,
    ) -> Result<Response<BoxStream<pb::WatchJobResponse>>, Status> {
        let id = parse_job_id(&request.into_inner().id)?;
        let first = self.store.get(id).await?;
        let store = self.store.clone();
        let poll = self.watch_poll;
        let stop = self.stop.clone();
        // State: the last job sent, and whether the stream is over.
        let stream = futures::stream::unfold(
            (None::<Job>, Some(first), false),
            move |(last, next, over)| {
                let store = store.clone();
                let stop = stop.clone();
                async move {
                    if over {
                        return None;
                    }
                    let mut candidate = next;
                    loop {
                        let job = match candidate.take() {
                            Some(job) => job,
                            None => {
                                tokio::select! {
                                    () = tokio::time::sleep(poll) => {}
                                    () = stop.cancelled() => {
                                        let status = ErrorKind::Unavailable.status(
                                            "the catalog is shutting down; watch the job again",
                                        );
                                        return Some((Err(status), (last, None, true)));
                                    }
                                }
                                match store.get(id).await {
                                    Ok(job) => job,
                                    Err(e) => {
                                        return Some((Err(Status::from(e)), (last, None, true)));
                                    }
                                }
                            }
                        };
                        if last.as_ref() == Some(&job) {
                            continue;
                        }
                        let over = job.state.is_final();
                        let message = pb::WatchJobResponse {
                            job: Some(job_pb(&job)),
                        };
                        return Some((Ok(message), (Some(job), None, over)));
                    }
                }
            },
        );
        Ok(Response::new(Box::pin(stream)))
    }

    async fn list_job_items(
        &self,
        request: Request<pb::ListJobItemsRequest>,
    ) -> Result<Response<pb::ListJobItemsResponse>, Status> {
        let r = request.into_inner();
        let id = parse_job_id(&r.job_id)?;
        if r.page_size < 0 {
            return Err(invalid("page_size must not be negative"));
        }
        let state = match pb::ItemState::try_from(r.state) {
            Ok(pb::ItemState::Unspecified) => None,
            Ok(pb::ItemState::Pending) => Some(ItemState::Pending),
            Ok(pb::ItemState::Done) => Some(ItemState::Done),
            Ok(pb::ItemState::Failed) => Some(ItemState::Failed),
            Err(_) => return Err(invalid(format!("state {} is not an item state", r.state))),
        };
        let page = self
            .store
            .list_items(id, state, r.page_size as u32, &r.page_token)
            .await?;
        Ok(Response::new(pb::ListJobItemsResponse {
            items: page.items.into_iter().map(item_pb).collect(),
            next_page_token: page.next_page_token,
        }))
    }
}
