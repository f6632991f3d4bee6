//! The catalog running a job dies halfway (its whole runtime is torn down at once: server, job
//! workers, connections; nothing is released); a new catalog process resumes the job once the
//! dead one's lease expires. The job completes, photosctl following it across the restart
//! reports success, and the media service — which counts every call — shows that only items
//! unfinished at the crash ran again.
//!
//! Run on PostgreSQL (a database per test) and on the embedded SQLite database.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use photos_catalog::CatalogConfig;
use photos_proto::jobs::v1 as pb;
use photos_proto::jobs::v1::job_service_client::JobServiceClient;
use photos_runtime::{Secret, UpstreamConfig};
use photos_testkit::postgres::TestDatabase;

/// A catalog in its own runtime on its own thread, so it can be killed like a process.
struct CatalogProcess {
    addr: SocketAddr,
    kill: Option<std::sync::mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl CatalogProcess {
    fn start(config: CatalogConfig) -> CatalogProcess {
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let (kill, killed) = std::sync::mpsc::channel::<()>();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            let app = runtime
                .block_on(photos_catalog::build(config))
                .expect("build catalog");
            addr_tx.send(app.grpc_addr()).unwrap();
            let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
            runtime.spawn(async move {
                let _ = app
                    .run_until_stopped(async {
                        let _ = stop_rx.await;
                    })
                    .await;
            });
            // Blocks until killed; the graceful stop is never sent.
            let _ = killed.recv();
            drop(stop_tx);
            runtime.shutdown_background();
        });
        CatalogProcess {
            addr: addr_rx.recv().expect("catalog bound"),
            kill: Some(kill),
            thread: Some(thread),
        }
    }

    /// Tears everything down at once, as SIGKILL would.
    fn kill(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        if let Some(kill) = self.kill.take() {
            let _ = kill.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for CatalogProcess {
    fn drop(&mut self) {
        self.stop();
    }
}

#[derive(Clone, Copy, Debug)]
enum Backend {
    Postgres,
    Sqlite,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_a_job_survives_the_death_of_its_catalog() {
    a_job_survives_the_death_of_its_catalog(Backend::Postgres).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_a_job_survives_the_death_of_its_catalog() {
    a_job_survives_the_death_of_its_catalog(Backend::Sqlite).await
}

async fn regenerate_calls(media_admin: SocketAddr) -> f64 {
    metric_sum(
        media_admin,
        "photos_grpc_server_requests_total",
        "method=\"RegenerateVariants\"",
    )
    .await
}

async fn a_job_survives_the_death_of_its_catalog(backend: Backend) {
    // Storage (over the local S3) from the mesh; a media server of our own whose metrics count
    // every RegenerateVariants call; catalogs of our own on their own database.
    let t = start_mesh().await;
    let storage = t.mesh.addresses.storage;
    let mut media_config = photos_media::MediaConfig::default();
    media_config.server.grpc_port = 0;
    media_config.server.admin_port = 0;
    media_config.storage = UpstreamConfig::new(format!("http://{storage}"));
    let media = photos_media::build(media_config).await.unwrap();
    let (media_addr, media_admin) = (media.grpc_addr(), media.admin_addr());
    let (stop_media, media_stopped) = tokio::sync::oneshot::channel::<()>();
    let media_task = tokio::spawn(media.run_until_stopped(async {
        let _ = media_stopped.await;
    }));
    wait_serving(media_addr).await;

    let (url, _db, _dir) = match backend {
        Backend::Postgres => {
            let db = TestDatabase::create().await.unwrap();
            (db.url().to_owned(), Some(db), None)
        }
        Backend::Sqlite => {
            let dir = tempfile::tempdir().unwrap();
            let url = format!("sqlite://{}", dir.path().join("catalog.db").display());
            (url, None, Some(dir))
        }
    };
    let config = |grpc_port: u16| {
        let mut c = CatalogConfig::default();
        c.server.grpc_port = grpc_port;
        c.server.admin_port = 0;
        c.database.url = Secret::new(url.clone());
        c.database.max_connections = 8;
        c.media = UpstreamConfig::new(format!("http://{media_addr}"));
        c.storage = UpstreamConfig::new(format!("http://{storage}"));
        c.jobs.lease_ms = 2_000;
        c.jobs.poll_ms = 100;
        c.jobs.watch_poll_ms = 50;
        c
    };

    let first = CatalogProcess::start(config(0));
    let catalog = first.addr;
    wait_serving(catalog).await;
    let album = create_album(catalog, "restart").await;
    const PHOTOS: u64 = 24;
    for seed in 0..PHOTOS as u32 {
        bare_photo(catalog, storage, &album, seed).await;
    }
    let before = regenerate_calls(media_admin).await;

    // photosctl starts the job and follows it; it must ride out the catalog's death.
    let follower = photosctl_command(
        &[("--catalog", catalog)],
        &[
            "--json",
            "generate-thumbnails",
            "--missing-only",
            "--workers",
            "4",
        ],
    )
    .stdout(std::process::Stdio::piped())
    .stderr(std::process::Stdio::piped())
    .spawn()
    .unwrap();
    let mut jobs = JobServiceClient::new(channel(catalog).await);
    let job = photos_testkit::wait::until(
        "half the items done",
        Duration::from_secs(60),
        Duration::from_millis(5),
        || {
            let mut jobs = jobs.clone();
            async move {
                let listed = jobs
                    .list_jobs(pb::ListJobsRequest::default())
                    .await
                    .map_err(|e| e.to_string())?
                    .into_inner()
                    .jobs;
                match listed.into_iter().next() {
                    Some(job) if job.done >= PHOTOS / 3 => Ok(job),
                    other => Err(format!("{other:?}")),
                }
            }
        },
    )
    .await
    .unwrap();
    assert!(job.done < PHOTOS, "killed before the end: {job:?}");
    first.kill();

    // What the dead catalog recorded, and what media ran for it (calls it was still serving
    // when the client vanished run to completion or are dropped; wait until none is open).
    photos_testkit::wait::until(
        "media idle",
        Duration::from_secs(30),
        Duration::from_millis(20),
        || async {
            let open = metric_sum(media_admin, "photos_grpc_server_in_flight", "").await;
            if open == 0.0 { Ok(()) } else { Err(open) }
        },
    )
    .await
    .unwrap();
    let first_run_calls = regenerate_calls(media_admin).await - before;

    // The new process takes the old one's port, as a restarted pod behind a Service would.
    let second = CatalogProcess::start(config(catalog.port()));
    wait_serving(catalog).await;
    jobs = JobServiceClient::new(channel(catalog).await);
    let at_restart = jobs
        .get_job(pb::GetJobRequest { id: job.id.clone() })
        .await
        .unwrap()
        .into_inner()
        .job
        .unwrap();
    // The dead worker's lease is still running: nothing moved since the crash.
    assert_eq!(at_restart.state, pb::JobState::Running as i32);
    assert_eq!(at_restart.claims, 1);
    let recorded_at_crash = at_restart.done;
    assert!(
        first_run_calls as u64 >= recorded_at_crash,
        "{first_run_calls} calls for {recorded_at_crash} recorded items"
    );
    assert!(
        first_run_calls as u64 <= recorded_at_crash + 4,
        "at most the 4 in-flight items ran unrecorded"
    );

    let output = follower.wait_with_output().await.unwrap();
    let run = Run {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    };
    assert_eq!(
        run.code, 0,
        "photosctl followed the job across the restart: {run:#?}"
    );
    let end = run.json()["job"].clone();
    assert_eq!(end["id"], job.id.as_str());
    assert_eq!(end["state"], "succeeded");
    assert_eq!(end["claims"], 2, "resumed once");
    assert_eq!(
        (end["done"].as_u64(), end["failed"].as_u64()),
        (Some(PHOTOS), Some(0))
    );

    // The resumed run called media exactly once per item left unfinished at the crash: no
    // item recorded before the crash ran again.
    let second_run_calls = regenerate_calls(media_admin).await - before - first_run_calls;
    eprintln!(
        "{backend:?}: {recorded_at_crash} of {PHOTOS} recorded at the crash; media calls: \
         {first_run_calls} before it, {second_run_calls} after"
    );
    assert_eq!(second_run_calls as u64, PHOTOS - recorded_at_crash);
    for p in album_photos(catalog, &album).await {
        let thumbs = p
            .variants
            .iter()
            .filter(|v| v.preset == "thumbnail")
            .count();
        assert_eq!(
            thumbs, 2,
            "photo {} has one JPEG and one WebP thumbnail",
            p.id
        );
    }

    drop(second);
    let _ = stop_media.send(());
    let _ = media_task.await;
    t.mesh.shutdown().await.unwrap();
}
