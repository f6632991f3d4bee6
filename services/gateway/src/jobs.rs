//! Admin endpoints over the catalog's durable jobs (`photos.jobs.v1.JobService`): start a
//! thumbnail regeneration and read any job's progress. The job runs in the catalog's workers
//! (`generate-thumbnails`: one item per photo, media's `RegenerateVariants` re-derives the
//! thumbnail in JPEG and WebP from the original and the catalog records it), so it survives
//! the gateway and the page that started it; the admin page polls the progress endpoint.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use photos_proto::jobs::v1 as pb;
use photos_proto::jobs::v1::job_params::Params;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::AppState;
use crate::auth::Principal;
use crate::error::GatewayError;

type ApiResult<T> = Result<T, GatewayError>;

/// The body of `POST /api/v1/admin/jobs/regenerate-thumbnails`; an empty body means every
/// photo of every album.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RegenerateThumbnails {
    /// One album; empty or absent for every album.
    album_id: String,
    /// Only photos that have no JPEG thumbnail yet.
    missing_only: bool,
    /// Photos processed at once, 1..16; absent for the catalog's default.
    workers: u32,
}

/// A job's progress as the API shows it.
#[derive(Debug, Serialize)]
pub struct JobJson {
    id: String,
    kind: &'static str,
    /// queued | running | succeeded | failed | cancelled.
    state: &'static str,
    /// Items (photos) to process; 0 until the job has listed them.
    total: u64,
    /// Items finished, failed ones included.
    done: u64,
    failed: u64,
    /// `done / total` in whole percent; 100 once a job with no items has finished.
    percent: u32,
    /// True once the job is in a final state (nothing more will change).
    finished: bool,
    error: String,
    created_at: Option<String>,
    started_at: Option<String>,
    finished_at: Option<String>,
}

fn kind_name(kind: i32) -> &'static str {
    match pb::JobKind::try_from(kind).unwrap_or(pb::JobKind::Unspecified) {
        pb::JobKind::WarmCache => "warm-cache",
        pb::JobKind::OptimizeImages => "optimize-images",
        pb::JobKind::GenerateThumbnails => "generate-thumbnails",
        pb::JobKind::CleanupS3 => "cleanup-s3",
        pb::JobKind::Unspecified => "unknown",
    }
}

fn ts(t: &Option<prost_types::Timestamp>) -> Option<String> {
    t.as_ref().map(ToString::to_string)
}

impl JobJson {
    fn new(job: pb::Job) -> Self {
        let state = pb::JobState::try_from(job.state).unwrap_or(pb::JobState::Unspecified);
        let finished = matches!(
            state,
            pb::JobState::Succeeded | pb::JobState::Failed | pb::JobState::Cancelled
        );
        let percent = match (job.done.min(job.total) * 100).checked_div(job.total) {
            Some(p) => p as u32,
            // Nothing to do is done once the job has finished.
            None if state == pb::JobState::Succeeded => 100,
            None => 0,
        };
        Self {
            kind: kind_name(job.kind),
            state: match state {
                pb::JobState::Queued => "queued",
                pb::JobState::Running => "running",
                pb::JobState::Succeeded => "succeeded",
                pb::JobState::Failed => "failed",
                pb::JobState::Cancelled => "cancelled",
                pb::JobState::Unspecified => "unknown",
            },
            total: job.total,
            done: job.done,
            failed: job.failed,
            percent,
            finished,
            created_at: ts(&job.create_time),
            started_at: ts(&job.start_time),
            finished_at: ts(&job.finish_time),
            error: job.error,
            id: job.id,
        }
    }
}

/// The request body: empty for the defaults, else JSON (415 for another content type).
fn parse_body(headers: &HeaderMap, body: &Bytes) -> ApiResult<RegenerateThumbnails> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(RegenerateThumbnails::default());
    }
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"));
    if !is_json {
        return Err(GatewayError::Rejected {
            status: 415,
            message: "send the job's options as application/json (or no body for the defaults)"
                .into(),
        });
    }
    serde_json::from_slice(body).map_err(|e| GatewayError::Rejected {
        // Syntax errors are 400; well-formed JSON of the wrong shape (unknown field, wrong
        // type) is 422, as axum's Json extractor answers elsewhere in the API.
        status: if e.is_syntax() || e.is_eof() {
            400
        } else {
            422
        },
        message: format!("invalid job options: {e}"),
    })
}

/// A retried start with the same `Idempotency-Key` (per admin) returns the job the first one
/// started: the key becomes the catalog's `request_id`, hashed to fit its 128 bytes.
fn request_id(principal: &Principal, headers: &HeaderMap) -> ApiResult<String> {
    let Some(value) = headers.get("idempotency-key") else {
        return Ok(String::new());
    };
    let key = crate::idempotency::parse_key(value)?;
    let mut hash = Sha256::new();
    hash.update(principal.user_id().unwrap_or_default().as_bytes());
    hash.update([0]);
    hash.update(key.as_bytes());
    Ok(format!(
        "gateway-{}",
        crate::http_cache::hex(&hash.finalize()[..16])
    ))
}

/// `POST /api/v1/admin/jobs/regenerate-thumbnails` (admin): 202 with the queued job and its
/// `Location`.
pub async fn regenerate_thumbnails(
    State(mut state): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    principal.require_admin()?;
    let options = parse_body(&headers, &body)?;
    let request_id = request_id(&principal, &headers)?;
    let started = state
        .jobs
        .start_job(pb::StartJobRequest {
            params: Some(pb::JobParams {
                params: Some(Params::GenerateThumbnails(pb::GenerateThumbnailsParams {
                    missing_only: options.missing_only,
                    album_id: options.album_id,
                    // The configured thumbnail preset: pages find it by name.
                    width: 0,
                    height: 0,
                    quality: 0,
                })),
            }),
            workers: options.workers,
            request_id,
        })
        .await?
        .into_inner();
    let job = started.job.ok_or(GatewayError::Missing("job"))?;
    let location = format!("/api/v1/admin/jobs/{}", job.id);
    Ok((
        StatusCode::ACCEPTED,
        [(header::LOCATION, location)],
        Json(JobJson::new(job)),
    )
        .into_response())
}

/// `GET /api/v1/admin/jobs/{id}` (admin): the job's progress now.
pub async fn get_job(
    State(mut state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> ApiResult<Json<JobJson>> {
    principal.require_admin()?;
    let job = state
        .jobs
        .get_job(pb::GetJobRequest { id })
        .await?
        .into_inner()
        .job
        .ok_or(GatewayError::Missing("job"))?;
    Ok(Json(JobJson::new(job)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(state: pb::JobState, total: u64, done: u64) -> pb::Job {
        pb::Job {
            id: "7".into(),
            kind: pb::JobKind::GenerateThumbnails as i32,
            state: state as i32,
            total,
            done,
            ..Default::default()
        }
    }

    #[test]
    fn percent_follows_done_over_total() {
        let j = JobJson::new(job(pb::JobState::Running, 8, 2));
        assert_eq!((j.percent, j.finished, j.state), (25, false, "running"));
        let j = JobJson::new(job(pb::JobState::Queued, 0, 0));
        assert_eq!((j.percent, j.finished), (0, false));
        // Nothing to do is done.
        let j = JobJson::new(job(pb::JobState::Succeeded, 0, 0));
        assert_eq!((j.percent, j.finished), (100, true));
        assert_eq!(j.kind, "generate-thumbnails");
    }

    #[test]
    fn bodies_are_empty_or_json_of_known_fields() {
        let json = |s: &'static str| {
            let mut h = HeaderMap::new();
            h.insert(header::CONTENT_TYPE, "application/json".parse().unwrap());
            parse_body(&h, &Bytes::from_static(s.as_bytes()))
        };
        let o = parse_body(&HeaderMap::new(), &Bytes::new()).unwrap();
        assert_eq!(
            (o.album_id.as_str(), o.missing_only, o.workers),
            ("", false, 0)
        );
        let o = json(r#"{"album_id":"12","workers":2}"#).unwrap();
        assert_eq!((o.album_id.as_str(), o.workers), ("12", 2));
        let status = |r: ApiResult<RegenerateThumbnails>| match r {
            Err(GatewayError::Rejected { status, .. }) => status,
            other => panic!("expected a rejection, got {other:?}"),
        };
        assert_eq!(status(json("{")), 400);
        assert_eq!(status(json(r#"{"colour":"red"}"#)), 422);
        assert_eq!(
            status(parse_body(&HeaderMap::new(), &Bytes::from_static(b"{}"))),
            415
        );
    }
}
