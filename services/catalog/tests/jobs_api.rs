//! The catalog's `photos.jobs.v1.JobService` edge, on Postgres and SQLite: validation and error
//! codes, idempotent starts, listing, cancellation, watching, and the caller's trace recorded
//! with the job. Workers are off here (`jobs.run_workers = false`) so jobs stay where the test
//! puts them; running them is covered by photos-jobs and photosctl's tests.

use std::time::Duration;

use photos_catalog::CatalogConfig;
use photos_proto::catalog::v1 as catalog_pb;
use photos_proto::catalog::v1::catalog_service_client::CatalogServiceClient;
use photos_proto::jobs::v1 as pb;
use photos_proto::jobs::v1::job_params::Params;
use photos_proto::jobs::v1::job_service_client::JobServiceClient;
use photos_runtime::Secret;
use photos_testkit::postgres::TestDatabase;
use tonic::Code;
use tonic::transport::Channel;

#[derive(Clone, Copy)]
enum Backend {
    Postgres,
    Sqlite,
}

struct App {
    jobs: JobServiceClient<Channel>,
    catalog: CatalogServiceClient<Channel>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
    _db: Option<TestDatabase>,
    _dir: Option<tempfile::TempDir>,
}

impl Drop for App {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.task.abort();
    }
}

fn telemetry() {
    // The tracing → OpenTelemetry bridge, so server spans carry the caller's trace id.
    static INIT: std::sync::Once = std::sync::Once::new();
    INIT.call_once(|| {
        let guard = photos_runtime::telemetry::init("jobs-api-test", &Default::default())
            .expect("telemetry");
        std::mem::forget(guard);
    });
}

async fn spawn(backend: Backend) -> App {
    telemetry();
    let (url, db, dir) = match backend {
        Backend::Postgres => {
            let db = TestDatabase::create().await.unwrap();
            (db.url().to_owned(), Some(db), None)
        }
        Backend::Sqlite => {
            let dir = tempfile::tempdir().unwrap();
            let url = format!("sqlite://{}", dir.path().join("c.db").display());
            (url, None, Some(dir))
        }
    };
    let mut config = CatalogConfig::default();
    config.server.grpc_port = 0;
    config.server.admin_port = 0;
    config.database.url = Secret::new(url);
    config.jobs.run_workers = false;
    config.jobs.watch_poll_ms = 20;
    let app = photos_catalog::build(config).await.unwrap();
    let addr = app.grpc_addr();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let _ = app
            .run_until_stopped(async {
                let _ = stopped.await;
            })
            .await;
    });
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect_lazy();
    // SERVING once both the catalog's and the queue's migrations ran.
    let health = tonic_health::pb::health_client::HealthClient::new(channel.clone());
    photos_testkit::wait::until(
        "SERVING",
        Duration::from_secs(30),
        Duration::from_millis(20),
        || {
            let mut h = health.clone();
            async move {
                let status = h
                    .check(tonic_health::pb::HealthCheckRequest {
                        service: "photos.jobs.v1.JobService".into(),
                    })
                    .await
                    .map_err(|e| e.to_string())?
                    .into_inner()
                    .status;
                (status == tonic_health::pb::health_check_response::ServingStatus::Serving as i32)
                    .then_some(())
                    .ok_or(format!("status {status}"))
            }
        },
    )
    .await
    .unwrap();
    App {
        jobs: JobServiceClient::new(channel.clone()),
        catalog: CatalogServiceClient::new(channel),
        stop: Some(stop),
        task,
        _db: db,
        _dir: dir,
    }
}

fn start(params: Params) -> pb::StartJobRequest {
    pb::StartJobRequest {
        params: Some(pb::JobParams {
            params: Some(params),
        }),
        ..Default::default()
    }
}

fn thumbnails(p: pb::GenerateThumbnailsParams) -> pb::StartJobRequest {
    start(Params::GenerateThumbnails(p))
}

async fn code_of(
    result: Result<tonic::Response<impl std::fmt::Debug>, tonic::Status>,
) -> (Code, String) {
    let status = result.expect_err("the call must fail");
    (status.code(), status.message().to_owned())
}

macro_rules! for_each_backend {
    ($($test:ident),* $(,)?) => {
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() { super::$test(super::Backend::Postgres).await }
            )*
        }
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() { super::$test(super::Backend::Sqlite).await }
            )*
        }
    };
}

for_each_backend!(
    bad_requests_get_the_right_codes,
    starts_are_idempotent_and_listed_newest_first,
    cancelling_and_watching_a_queued_job,
    the_job_records_the_callers_trace,
);

async fn bad_requests_get_the_right_codes(backend: Backend) {
    let mut app = spawn(backend).await;
    let j = &mut app.jobs;
    let cases: Vec<(pb::StartJobRequest, Code, &str)> = vec![
        (
            pb::StartJobRequest::default(),
            Code::InvalidArgument,
            "params must set one of",
        ),
        (
            pb::StartJobRequest {
                workers: 17,
                ..start(Params::WarmCache(Default::default()))
            },
            Code::InvalidArgument,
            "workers must be 1 to 16",
        ),
        (
            thumbnails(pb::GenerateThumbnailsParams {
                width: 100,
                ..Default::default()
            }),
            Code::InvalidArgument,
            "set both width and height",
        ),
        (
            thumbnails(pb::GenerateThumbnailsParams {
                width: 9000,
                height: 10,
                ..Default::default()
            }),
            Code::InvalidArgument,
            "larger than 4096x4096",
        ),
        (
            thumbnails(pb::GenerateThumbnailsParams {
                quality: 80,
                ..Default::default()
            }),
            Code::InvalidArgument,
            "quality needs width and height",
        ),
        (
            thumbnails(pb::GenerateThumbnailsParams {
                album_id: "77".into(),
                ..Default::default()
            }),
            Code::NotFound,
            "album 77 not found",
        ),
        (
            start(Params::OptimizeImages(pb::OptimizeImagesParams {
                storage_class: 42,
                ..Default::default()
            })),
            Code::InvalidArgument,
            "storage_class 42 is unknown",
        ),
        (
            start(Params::CleanupS3(pb::CleanupS3Params {
                older_than_days: 100_000,
                ..Default::default()
            })),
            Code::InvalidArgument,
            "older_than_days must be at most",
        ),
    ];
    for (request, code, message) in cases {
        let (got, text) = code_of(j.start_job(request.clone()).await).await;
        assert_eq!(got, code, "{request:?}: {text}");
        assert!(text.contains(message), "{text:?} should say {message:?}");
    }
    let (got, _) = code_of(j.get_job(pb::GetJobRequest { id: "abc".into() }).await).await;
    assert_eq!(got, Code::NotFound);
    let (got, _) = code_of(j.get_job(pb::GetJobRequest { id: String::new() }).await).await;
    assert_eq!(got, Code::InvalidArgument);
    let (got, _) = code_of(j.cancel_job(pb::CancelJobRequest { id: "5".into() }).await).await;
    assert_eq!(got, Code::NotFound);
    let (got, text) = code_of(
        j.list_jobs(pb::ListJobsRequest {
            page_token: "not-a-token".into(),
            ..Default::default()
        })
        .await,
    )
    .await;
    assert_eq!(got, Code::InvalidArgument, "{text}");
    let (got, _) = code_of(
        j.list_jobs(pb::ListJobsRequest {
            states: vec![99],
            ..Default::default()
        })
        .await,
    )
    .await;
    assert_eq!(got, Code::InvalidArgument);
    let (got, _) = code_of(
        j.list_job_items(pb::ListJobItemsRequest {
            job_id: "12".into(),
            ..Default::default()
        })
        .await,
    )
    .await;
    assert_eq!(got, Code::NotFound);
    // Nothing was queued by any of the refused calls.
    let all = j.list_jobs(pb::ListJobsRequest::default()).await.unwrap();
    assert!(all.into_inner().jobs.is_empty());
}

async fn starts_are_idempotent_and_listed_newest_first(backend: Backend) {
    let mut app = spawn(backend).await;
    let album = app
        .catalog
        .create_album(catalog_pb::CreateAlbumRequest {
            title: "a".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .album
        .unwrap()
        .id;
    let j = &mut app.jobs;
    let mut request = thumbnails(pb::GenerateThumbnailsParams {
        missing_only: true,
        width: 200,
        height: 100,
        quality: 70,
        album_id: album.clone(),
    });
    request.request_id = "cron-2026-11-30T04".into();
    let first = j.start_job(request.clone()).await.unwrap().into_inner();
    assert!(first.created);
    let job = first.job.unwrap();
    assert_eq!(job.kind, pb::JobKind::GenerateThumbnails as i32);
    assert_eq!(job.state, pb::JobState::Queued as i32);
    assert_eq!(job.workers, 4, "the configured default");
    match job.params.and_then(|p| p.params) {
        Some(Params::GenerateThumbnails(p)) => {
            assert_eq!((p.width, p.height, p.quality), (200, 100, 70));
            assert_eq!(p.album_id, album);
            assert!(p.missing_only);
        }
        other => panic!("params round trip: {other:?}"),
    }
    let retried = j.start_job(request.clone()).await.unwrap().into_inner();
    assert!(!retried.created);
    assert_eq!(retried.job.unwrap().id, job.id);
    request.params = Some(pb::JobParams {
        params: Some(Params::WarmCache(Default::default())),
    });
    let (code, _) = code_of(j.start_job(request).await).await;
    assert_eq!(
        code,
        Code::AlreadyExists,
        "a request id reused for another kind"
    );

    let second = j
        .start_job(pb::StartJobRequest {
            workers: 2,
            ..start(Params::CleanupS3(pb::CleanupS3Params {
                older_than_days: 30,
                dry_run: true,
                archive: true,
            }))
        })
        .await
        .unwrap()
        .into_inner()
        .job
        .unwrap();
    assert_eq!(second.workers, 2);
    let listed = j
        .list_jobs(pb::ListJobsRequest {
            page_size: 1,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.jobs[0].id, second.id);
    let rest = j
        .list_jobs(pb::ListJobsRequest {
            page_size: 1,
            page_token: listed.next_page_token,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(rest.jobs[0].id, job.id);
    assert!(rest.next_page_token.is_empty());
    let cleanups = j
        .list_jobs(pb::ListJobsRequest {
            kind: pb::JobKind::CleanupS3 as i32,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(cleanups.jobs.len(), 1);
    let items = j
        .list_job_items(pb::ListJobItemsRequest {
            job_id: job.id.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(items.items.is_empty(), "not planned while no worker ran it");
}

async fn cancelling_and_watching_a_queued_job(backend: Backend) {
    let mut app = spawn(backend).await;
    let j = &mut app.jobs;
    let job = j
        .start_job(start(Params::WarmCache(pb::WarmCacheParams {
            force: true,
            ..Default::default()
        })))
        .await
        .unwrap()
        .into_inner()
        .job
        .unwrap();
    let mut watch = j
        .watch_job(pb::WatchJobRequest { id: job.id.clone() })
        .await
        .unwrap()
        .into_inner();
    let now = watch.message().await.unwrap().unwrap().job.unwrap();
    assert_eq!(now.state, pb::JobState::Queued as i32);
    let cancelled = j
        .cancel_job(pb::CancelJobRequest { id: job.id.clone() })
        .await
        .unwrap()
        .into_inner()
        .job
        .unwrap();
    assert_eq!(cancelled.state, pb::JobState::Cancelled as i32);
    assert!(cancelled.finish_time.is_some());
    // The watch sees the final state, then ends.
    let last = watch.message().await.unwrap().unwrap().job.unwrap();
    assert_eq!(last.state, pb::JobState::Cancelled as i32);
    assert!(watch.message().await.unwrap().is_none());
    let (code, text) = code_of(
        j.cancel_job(pb::CancelJobRequest { id: job.id.clone() })
            .await,
    )
    .await;
    assert_eq!(code, Code::FailedPrecondition);
    assert!(text.contains("already cancelled"), "{text}");
    let (code, _) = code_of(j.watch_job(pb::WatchJobRequest { id: "999".into() }).await).await;
    assert_eq!(code, Code::NotFound);
}

async fn the_job_records_the_callers_trace(backend: Backend) {
    let mut app = spawn(backend).await;
    let trace_id = "0af7651916cd43dd8448eb211c80319c";
    let mut request = tonic::Request::new(start(Params::WarmCache(Default::default())));
    request.metadata_mut().insert(
        "traceparent",
        format!("00-{trace_id}-b7ad6b7169203331-01")
            .parse()
            .unwrap(),
    );
    let job = app
        .jobs
        .start_job(request)
        .await
        .unwrap()
        .into_inner()
        .job
        .unwrap();
    assert_eq!(
        job.trace_id, trace_id,
        "the job continues the caller's trace"
    );
}
