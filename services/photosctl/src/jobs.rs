//! Starting server-side jobs and following them (WatchJob, reconnecting across catalog restarts),
//! and `jobs list|show|cancel|watch`.

use std::time::{Duration, Instant};

use photos_proto::jobs::v1 as pb;
use photos_proto::jobs::v1::job_service_client::JobServiceClient;
use photos_runtime::ErrorKind;
use photos_runtime::client::Channel;
use serde_json::json;

use crate::error::{CtlError, exit};
use crate::output::{self, Output};

/// How long a job may stay unreachable (e.g. the catalog restarting) before following gives up.
const MAX_OUTAGE: Duration = Duration::from_secs(600);
/// How long starting a job is retried while the catalog is unavailable (a rolling restart).
const START_RETRY: Duration = Duration::from_secs(30);

pub type Client = JobServiceClient<Channel>;

fn transient(status: &tonic::Status) -> bool {
    matches!(
        ErrorKind::of_status(status),
        ErrorKind::Unavailable | ErrorKind::DeadlineExceeded
    )
}

/// An answer about the job itself (it does not exist, ...) rather than about reaching it: a
/// dropped connection surfaces as UNKNOWN or INTERNAL ("h2 protocol error") and is worth
/// watching again.
fn rejected(status: &tonic::Status) -> bool {
    matches!(
        ErrorKind::of_status(status),
        ErrorKind::InvalidArgument
            | ErrorKind::NotFound
            | ErrorKind::PermissionDenied
            | ErrorKind::Unauthenticated
            | ErrorKind::FailedPrecondition
            | ErrorKind::Unimplemented
    )
}

/// Retries a call while the catalog is unavailable, for up to `budget`.
async fn retrying<T, F, Fut>(budget: Duration, mut call: F) -> Result<T, CtlError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, tonic::Status>>,
{
    let started = Instant::now();
    let mut backoff = Duration::from_millis(200);
    loop {
        match call().await {
            Ok(v) => return Ok(v),
            Err(s) if transient(&s) && started.elapsed() < budget => {
                tracing::warn!(error = %s.message(), "catalog unavailable; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
            Err(s) => return Err(CtlError::call("catalog", &s)),
        }
    }
}

/// Starts a job (safe to retry: one request id per invocation) and, unless `no_wait`, follows it
/// to its end. Returns the exit status the job's outcome maps to.
pub async fn start_and_follow(
    client: &Client,
    params: pb::job_params::Params,
    workers: u32,
    no_wait: bool,
    out: Output,
) -> Result<(pb::Job, u8), CtlError> {
    let request = pb::StartJobRequest {
        params: Some(pb::JobParams {
            params: Some(params),
        }),
        workers,
        request_id: uuid::Uuid::new_v4().to_string(),
    };
    let started = retrying(START_RETRY, || {
        let mut c = client.clone();
        let r = request.clone();
        async move { c.start_job(r).await }
    })
    .await?
    .into_inner();
    let job = started.job.unwrap_or_default();
    out.note(format!(
        "job {} {} started",
        job.id,
        output::kind_name(job.kind)
    ));
    if no_wait {
        return Ok((job, exit::OK));
    }
    let job = follow(client, &job.id, out).await?;
    let code = outcome(&job);
    Ok((job, code))
}

/// The exit status of a finished job.
pub fn outcome(job: &pb::Job) -> u8 {
    match pb::JobState::try_from(job.state) {
        Ok(pb::JobState::Succeeded) if job.failed == 0 => exit::OK,
        Ok(pb::JobState::Succeeded) => exit::PARTIAL,
        Ok(pb::JobState::Cancelled) => exit::CANCELLED,
        _ => exit::FAILED,
    }
}

/// Streams the job's progress until it ends. Ctrl-C stops following, not the job.
pub async fn follow(client: &Client, id: &str, out: Output) -> Result<pb::Job, CtlError> {
    let interrupted = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    tokio::select! {
        r = follow_inner(client, id, out) => r,
        () = interrupted => Err(CtlError::Interrupted { job: id.to_owned() }),
    }
}

async fn follow_inner(client: &Client, id: &str, out: Output) -> Result<pb::Job, CtlError> {
    let mut progress: Option<output::Progress> = None;
    let mut outage: Option<Instant> = None;
    let mut backoff = Duration::from_millis(200);
    loop {
        let mut c = client.clone();
        let error = match c.watch_job(pb::WatchJobRequest { id: id.to_owned() }).await {
            Ok(response) => {
                let mut stream = response.into_inner();
                loop {
                    match stream.message().await {
                        Ok(Some(update)) => {
                            outage = None;
                            backoff = Duration::from_millis(200);
                            let job = update.job.unwrap_or_default();
                            let bar = progress.get_or_insert_with(|| {
                                out.progress(&format!(
                                    "job {} {}",
                                    job.id,
                                    output::kind_name(job.kind)
                                ))
                            });
                            bar.update(
                                job.done,
                                job.total,
                                job.failed,
                                output::state_name(job.state),
                            );
                            if output::is_final(job.state) {
                                if let Some(bar) = progress.take() {
                                    bar.finish();
                                }
                                return Ok(job);
                            }
                        }
                        // Ended before the job did (e.g. the catalog drained): watch again.
                        Ok(None) => break None,
                        Err(status) => break Some(status),
                    }
                }
            }
            Err(status) => Some(status),
        };
        if let Some(status) = error
            && rejected(&status)
        {
            return Err(CtlError::call("catalog", &status));
        }
        let since = *outage.get_or_insert_with(Instant::now);
        if since.elapsed() > MAX_OUTAGE {
            return Err(CtlError::Call {
                service: "catalog",
                kind: ErrorKind::Unavailable,
                message: format!(
                    "lost job {id} for {} s; it goes on server-side (photosctl jobs show {id})",
                    MAX_OUTAGE.as_secs()
                ),
            });
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

/// Every item of a job, optionally only those in one state.
pub async fn all_items(
    client: &Client,
    id: &str,
    state: pb::ItemState,
) -> Result<Vec<pb::JobItem>, CtlError> {
    let mut items = Vec::new();
    let mut token = String::new();
    loop {
        let request = pb::ListJobItemsRequest {
            job_id: id.to_owned(),
            page_size: 1_000,
            page_token: token.clone(),
            state: state as i32,
        };
        let page = retrying(Duration::ZERO, || {
            let mut c = client.clone();
            let r = request.clone();
            async move { c.list_job_items(r).await }
        })
        .await?
        .into_inner();
        items.extend(page.items);
        if page.next_page_token.is_empty() {
            return Ok(items);
        }
        token = page.next_page_token;
    }
}

/// Prints a finished job: its summary, and its failed items.
pub async fn report(client: &Client, job: &pb::Job, out: Output) -> Result<(), CtlError> {
    let failed = if job.failed > 0 {
        all_items(client, &job.id, pb::ItemState::Failed).await?
    } else {
        Vec::new()
    };
    out.document(&json!({
        "job": output::job_json(job),
        "failed_items": failed.iter().map(output::item_json).collect::<Vec<_>>(),
    }));
    out.line(output::job_text(job));
    for item in &failed {
        out.line(format!("  failed   {}: {}", item.key, item.error));
    }
    Ok(())
}

pub async fn list(
    client: &Client,
    states: Vec<pb::JobState>,
    kind: pb::JobKind,
    limit: i32,
    out: Output,
) -> Result<u8, CtlError> {
    let request = pb::ListJobsRequest {
        page_size: limit,
        page_token: String::new(),
        states: states.into_iter().map(|s| s as i32).collect(),
        kind: kind as i32,
    };
    let page = retrying(Duration::ZERO, || {
        let mut c = client.clone();
        let r = request.clone();
        async move { c.list_jobs(r).await }
    })
    .await?
    .into_inner();
    out.document(&json!({
        "jobs": page.jobs.iter().map(output::job_json).collect::<Vec<_>>(),
        "next_page_token": page.next_page_token,
    }));
    out.line(format!(
        "{:>6}  {:<20} {:<10} {:>15} {:>7}  CREATED",
        "ID", "KIND", "STATE", "DONE/TOTAL", "FAILED"
    ));
    for job in &page.jobs {
        out.line(format!(
            "{:>6}  {:<20} {:<10} {:>15} {:>7}  {}",
            job.id,
            output::kind_name(job.kind),
            output::state_name(job.state),
            format!("{}/{}", job.done, job.total),
            job.failed,
            job.create_time
                .as_ref()
                .map(output::rfc3339)
                .unwrap_or_default()
        ));
    }
    Ok(exit::OK)
}

pub async fn show(
    client: &Client,
    id: &str,
    items: Option<pb::ItemState>,
    out: Output,
) -> Result<u8, CtlError> {
    let job = retrying(Duration::ZERO, || {
        let mut c = client.clone();
        let id = id.to_owned();
        async move { c.get_job(pb::GetJobRequest { id }).await }
    })
    .await?
    .into_inner()
    .job
    .unwrap_or_default();
    let listed = match items {
        Some(state) => all_items(client, id, state).await?,
        None => Vec::new(),
    };
    out.document(&json!({
        "job": output::job_json(&job),
        "items": listed.iter().map(output::item_json).collect::<Vec<_>>(),
    }));
    out.line(output::job_text(&job));
    for item in &listed {
        let mut line = format!(
            "  {:>6} {:<8} {}",
            item.seq,
            output::item_state_name(item.state),
            item.key
        );
        if item.bytes > 0 {
            line.push_str(&format!(" ({})", output::bytes(item.bytes)));
        }
        if !item.error.is_empty() {
            line.push_str(&format!(": {}", item.error));
        }
        out.line(line);
    }
    Ok(exit::OK)
}

pub async fn cancel(client: &Client, id: &str, out: Output) -> Result<u8, CtlError> {
    let job = retrying(Duration::ZERO, || {
        let mut c = client.clone();
        let id = id.to_owned();
        async move { c.cancel_job(pb::CancelJobRequest { id }).await }
    })
    .await?
    .into_inner()
    .job
    .unwrap_or_default();
    out.document(&json!({ "job": output::job_json(&job) }));
    if output::is_final(job.state) {
        out.line(format!("job {} cancelled", job.id));
    } else {
        out.line(format!(
            "job {} is stopping: items in flight finish, the rest are not started",
            job.id
        ));
    }
    Ok(exit::OK)
}
