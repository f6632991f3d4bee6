//! The job store and runner, one suite run on PostgreSQL (a database per test) and on SQLite
//! (the embedded database), against the real databases.

mod common;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use photos_jobs::*;
use tokio_util::sync::CancellationToken;

macro_rules! for_each_backend {
    ($($test:ident),* $(,)?) => {
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    super::$test(super::Backend::Postgres).await
                }
            )*
        }
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    super::$test(super::Backend::Sqlite).await
                }
            )*
        }
    };
}

for_each_backend!(
    create_get_list_and_cancel,
    request_ids_make_starts_idempotent,
    concurrent_claims_never_share_a_job,
    an_expired_lease_is_taken_over_and_the_stale_worker_is_fenced,
    a_job_resumed_after_a_crash_never_reruns_finished_items,
    cancelling_a_running_job_stops_dispatch_and_keeps_the_rest_pending,
    a_clean_shutdown_hands_the_job_back_at_once,
    retries_and_failures_are_recorded_per_item,
    planning_failures_fail_or_requeue_the_job,
    a_job_that_keeps_killing_its_worker_is_failed,
    batches_are_recorded_with_their_bytes,
    only_registered_kinds_are_claimed,
);

async fn create_get_list_and_cancel(backend: Backend) {
    let t = store(backend).await;
    let s = &t.store;
    let mut ids = Vec::new();
    for i in 0..5 {
        let kind = if i % 2 == 0 { "even" } else { "odd" };
        let (job, created) = s.create(&new_job(kind)).await.unwrap();
        assert!(created);
        assert_eq!(job.state, JobState::Queued);
        assert_eq!((job.total, job.done, job.failed, job.claims), (0, 0, 0, 0));
        ids.push(job.id);
    }
    let got = s.get(ids[2]).await.unwrap();
    assert_eq!(got.kind, "even");

    // Newest first, paged.
    let first = s
        .list(&JobFilter {
            page_size: 2,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        first.items.iter().map(|j| j.id).collect::<Vec<_>>(),
        vec![ids[4], ids[3]]
    );
    let second = s
        .list(&JobFilter {
            page_size: 2,
            page_token: first.next_page_token.clone(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        second.items.iter().map(|j| j.id).collect::<Vec<_>>(),
        vec![ids[2], ids[1]]
    );
    let last = s
        .list(&JobFilter {
            page_size: 2,
            page_token: second.next_page_token,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(last.items.len(), 1);
    assert!(last.next_page_token.is_empty());

    // A queued job is cancelled at once, and only once.
    let cancelled = s.cancel(ids[0]).await.unwrap();
    assert_eq!(cancelled.state, JobState::Cancelled);
    assert!(cancelled.finished_at.is_some());
    let again = s.cancel(ids[0]).await.unwrap_err();
    assert!(
        matches!(
            again,
            JobError::Finished {
                state: "cancelled",
                ..
            }
        ),
        "{again}"
    );
    assert_eq!(again.kind(), photos_runtime::ErrorKind::FailedPrecondition);

    let filtered = s
        .list(&JobFilter {
            states: vec![JobState::Queued],
            kind: Some("even".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        filtered.items.iter().map(|j| j.id).collect::<Vec<_>>(),
        vec![ids[4], ids[2]]
    );

    assert!(matches!(s.get(9_999).await, Err(JobError::NotFound(_))));
    assert!(matches!(s.cancel(9_999).await, Err(JobError::NotFound(_))));
    let bad = s
        .list(&JobFilter {
            page_token: "garbage".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(bad.kind(), photos_runtime::ErrorKind::InvalidArgument);
    let bad = s
        .create(&NewJob {
            workers: 0,
            ..new_job("x")
        })
        .await
        .unwrap_err();
    assert_eq!(bad.kind(), photos_runtime::ErrorKind::InvalidArgument);
}

async fn request_ids_make_starts_idempotent(backend: Backend) {
    let t = store(backend).await;
    let s = &t.store;
    let with_id = |kind: &str| NewJob {
        request_id: Some("req-1".into()),
        ..new_job(kind)
    };
    let (first, created) = s.create(&with_id("warm")).await.unwrap();
    assert!(created);
    let (again, created) = s.create(&with_id("warm")).await.unwrap();
    assert!(!created);
    assert_eq!(again.id, first.id);
    let err = s.create(&with_id("cleanup")).await.unwrap_err();
    assert_eq!(err.kind(), photos_runtime::ErrorKind::AlreadyExists);
    // Without a request id every start is a new job.
    let (a, _) = s.create(&new_job("warm")).await.unwrap();
    let (b, _) = s.create(&new_job("warm")).await.unwrap();
    assert_ne!(a.id, b.id);
    assert_eq!(s.list(&JobFilter::default()).await.unwrap().items.len(), 3);
}

async fn concurrent_claims_never_share_a_job(backend: Backend) {
    let t = store(backend).await;
    let s = t.store.clone();
    let mut created = HashSet::new();
    for _ in 0..30 {
        created.insert(s.create(&new_job("k")).await.unwrap().0.id);
    }
    let kinds = vec!["k".to_owned()];
    let mut tasks = tokio::task::JoinSet::new();
    for w in 0..6 {
        let s = s.clone();
        let kinds = kinds.clone();
        tasks.spawn(async move {
            let mut mine = Vec::new();
            while let Some(job) = s
                .claim(&format!("w{w}"), &kinds, Duration::from_secs(60), 10)
                .await
                .unwrap()
            {
                assert_eq!(job.state, JobState::Running);
                assert_eq!(job.claims, 1);
                mine.push(job.id);
            }
            mine
        });
    }
    let mut claimed = Vec::new();
    while let Some(r) = tasks.join_next().await {
        claimed.extend(r.unwrap());
    }
    assert_eq!(claimed.len(), 30, "every job claimed exactly once");
    assert_eq!(claimed.into_iter().collect::<HashSet<_>>(), created);
}

async fn an_expired_lease_is_taken_over_and_the_stale_worker_is_fenced(backend: Backend) {
    let t = store(backend).await;
    let s = &t.store;
    let kinds = vec!["k".to_owned()];
    let (job, _) = s.create(&new_job("k")).await.unwrap();
    let short = Duration::from_millis(300);
    let a = s.claim("a", &kinds, short, 10).await.unwrap().unwrap();
    assert_eq!(a.id, job.id);
    s.store_plan(job.id, "a", &items(3)).await.unwrap();
    // While A's lease holds, nobody else gets the job.
    assert!(s.claim("b", &kinds, short, 10).await.unwrap().is_none());
    let b = photos_testkit::wait::until(
        "lease expiry",
        Duration::from_secs(10),
        Duration::from_millis(50),
        || async {
            s.claim("b", &kinds, Duration::from_secs(60), 10)
                .await
                .map_err(|e| e.to_string())?
                .ok_or_else(|| "still leased".to_owned())
        },
    )
    .await
    .unwrap();
    assert_eq!(b.id, job.id);
    assert_eq!(b.claims, 2);
    assert!(b.planned, "the plan survives the takeover");

    let done = |seq| Completion {
        seq,
        attempts: 1,
        error: None,
    };
    // A stalled past its lease: every write it attempts now is refused and changes nothing.
    assert!(matches!(
        s.heartbeat(job.id, "a", short).await,
        Err(JobError::LeaseLost(_))
    ));
    assert!(matches!(
        s.complete(job.id, "a", &[done(0)]).await,
        Err(JobError::LeaseLost(_))
    ));
    assert!(matches!(
        s.finish(job.id, "a", JobState::Succeeded, "").await,
        Err(JobError::LeaseLost(_))
    ));
    assert_eq!(s.get(job.id).await.unwrap().done, 0);

    s.complete(job.id, "b", &[done(0), done(1)]).await.unwrap();
    // Recording an item twice counts it once.
    s.complete(job.id, "b", &[done(1), done(2)]).await.unwrap();
    let j = s.get(job.id).await.unwrap();
    assert_eq!((j.total, j.done, j.failed, j.done_bytes), (3, 3, 0, 30));
    assert!(!s.heartbeat(job.id, "b", short).await.unwrap());
    s.finish(job.id, "b", JobState::Succeeded, "")
        .await
        .unwrap();
    assert_eq!(s.get(job.id).await.unwrap().state, JobState::Succeeded);
}

async fn a_job_resumed_after_a_crash_never_reruns_finished_items(backend: Backend) {
    let t = store(backend).await;
    let s = t.store.clone();
    let counts = Arc::new(Counts::default());
    let plan = items(40);
    // The first 10 runs finish; the next ones hang, so the crash hits 4 items in flight.
    let first = Arc::new(CountingExecutor::new(plan.clone(), counts.clone()).holding_after(10));
    let runner = Runner::new(s.clone(), runner_config("first", 1_000)).register("count", first);
    let crashed = tokio::spawn(runner.run(CancellationToken::new()));
    let (job, _) = s.create(&new_job("count")).await.unwrap();
    wait_job(&s, job.id, "10 items recorded", |j| j.done == 10).await;
    photos_testkit::wait::until(
        "4 items in flight",
        Duration::from_secs(10),
        Duration::from_millis(10),
        || async {
            if counts.total_started() == 14 {
                Ok(())
            } else {
                Err(counts.total_started())
            }
        },
    )
    .await
    .unwrap();
    // The crash: the runner and its job tasks vanish without a word to the database.
    crashed.abort();
    let _ = crashed.await;
    let at_crash = s.get(job.id).await.unwrap();
    assert_eq!(at_crash.state, JobState::Running, "nobody released it");
    assert_eq!(at_crash.done, 10);
    let finished_before: Vec<String> = s
        .list_items(job.id, Some(ItemState::Done), 100, "")
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|i| i.key)
        .collect();
    assert_eq!(finished_before.len(), 10);

    // Another process starts; it waits out the dead worker's lease, then resumes.
    let second = Arc::new(CountingExecutor::new(plan.clone(), counts.clone()));
    let runner = Runner::new(s.clone(), runner_config("second", 1_000)).register("count", second);
    let stop = CancellationToken::new();
    let resumed = tokio::spawn(runner.run(stop.clone()));
    let end = wait_job(&s, job.id, "job finished", |j| j.state.is_final()).await;
    stop.cancel();
    resumed.await.unwrap();

    assert_eq!(end.state, JobState::Succeeded);
    assert_eq!((end.total, end.done, end.failed), (40, 40, 0));
    assert_eq!(end.claims, 2);
    for item in &plan {
        assert_eq!(
            counts.finished(&item.key),
            1,
            "{} finished exactly once",
            item.key
        );
    }
    for key in &finished_before {
        assert_eq!(
            counts.started(key),
            1,
            "{key} was recorded before the crash and never rerun"
        );
    }
    let rerun: Vec<&NewItem> = plan
        .iter()
        .filter(|i| counts.started(&i.key) == 2)
        .collect();
    assert_eq!(
        rerun.len(),
        4,
        "only the 4 items in flight at the crash ran again"
    );
    assert_eq!(counts.total_started(), 44);
    assert_eq!(counts.total_finished(), 40);
}

async fn cancelling_a_running_job_stops_dispatch_and_keeps_the_rest_pending(backend: Backend) {
    let t = store(backend).await;
    let s = t.store.clone();
    let counts = Arc::new(Counts::default());
    let exec = Arc::new(CountingExecutor::new(items(20), counts.clone()).holding_after(2));
    let gate = exec.gate.clone();
    let runner = Runner::new(s.clone(), runner_config("w", 300)).register("count", exec);
    let stop = CancellationToken::new();
    let task = tokio::spawn(runner.run(stop.clone()));
    let (job, _) = s
        .create(&NewJob {
            workers: 2,
            ..new_job("count")
        })
        .await
        .unwrap();
    wait_job(&s, job.id, "2 done", |j| j.done == 2).await;
    let flagged = s.cancel(job.id).await.unwrap();
    assert_eq!(flagged.state, JobState::Running);
    assert!(flagged.cancel_requested);
    // Let items through two at a time until the worker notices (at its next heartbeat) and
    // settles: far fewer than the 20 items get to run.
    let end = loop {
        let job = s.get(job.id).await.unwrap();
        if job.state.is_final() {
            break job;
        }
        gate.add_permits(2);
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    stop.cancel();
    task.await.unwrap();
    assert_eq!(end.state, JobState::Cancelled);
    assert!((4..20).contains(&end.done), "stopped early: {end:?}");
    assert_eq!(
        u64::from(counts.total_started()),
        end.done,
        "nothing left running"
    );
    let pending = s
        .list_items(job.id, Some(ItemState::Pending), 100, "")
        .await
        .unwrap();
    assert_eq!(pending.items.len() as u64, 20 - end.done);
}

async fn a_clean_shutdown_hands_the_job_back_at_once(backend: Backend) {
    let t = store(backend).await;
    let s = t.store.clone();
    let counts = Arc::new(Counts::default());
    let exec = Arc::new(CountingExecutor::new(items(10), counts.clone()).holding_after(3));
    let gate = exec.gate.clone();
    // A long lease: the second worker gets the job only because the first released it.
    let runner = Runner::new(s.clone(), runner_config("first", 600_000)).register("count", exec);
    let stop = CancellationToken::new();
    let task = tokio::spawn(runner.run(stop.clone()));
    let (job, _) = s
        .create(&NewJob {
            workers: 1,
            ..new_job("count")
        })
        .await
        .unwrap();
    wait_job(&s, job.id, "3 done", |j| j.done == 3).await;
    stop.cancel();
    gate.add_permits(100);
    task.await.unwrap();
    let released = s.get(job.id).await.unwrap();
    assert_eq!(released.state, JobState::Queued);
    assert_eq!(
        released.done, 4,
        "the item in flight finished before release"
    );

    let exec = Arc::new(CountingExecutor::new(items(10), counts.clone()));
    let runner = Runner::new(s.clone(), runner_config("second", 600_000)).register("count", exec);
    let stop = CancellationToken::new();
    let task = tokio::spawn(runner.run(stop.clone()));
    let end = wait_job(&s, job.id, "finished", |j| j.state.is_final()).await;
    stop.cancel();
    task.await.unwrap();
    assert_eq!(
        (end.state, end.done, end.claims),
        (JobState::Succeeded, 10, 2)
    );
    assert_eq!(counts.total_started(), 10, "no item ran twice");
}

async fn retries_and_failures_are_recorded_per_item(backend: Backend) {
    let t = store(backend).await;
    let s = t.store.clone();
    let counts = Arc::new(Counts::default());
    let plan: Vec<NewItem> = ["ok", "flaky", "corrupt", "down"]
        .iter()
        .map(|k| NewItem {
            key: (*k).into(),
            ..Default::default()
        })
        .collect();
    let exec = CountingExecutor::new(plan, counts.clone());
    {
        let mut o = exec.outcomes.lock().unwrap();
        o.insert(
            "flaky".into(),
            vec![Outcome::Retry("503".into()), Outcome::Retry("503".into())],
        );
        o.insert(
            "corrupt".into(),
            vec![Outcome::Failed("not an image".into())],
        );
        o.insert("down".into(), vec![Outcome::Retry("unavailable".into()); 5]);
    }
    let runner =
        Runner::new(s.clone(), runner_config("w", 1_000)).register("count", Arc::new(exec));
    let stop = CancellationToken::new();
    let task = tokio::spawn(runner.run(stop.clone()));
    let (job, _) = s.create(&new_job("count")).await.unwrap();
    let end = wait_job(&s, job.id, "finished", |j| j.state.is_final()).await;
    stop.cancel();
    task.await.unwrap();
    assert_eq!(end.state, JobState::Succeeded);
    assert_eq!((end.total, end.done, end.failed), (4, 4, 2));
    let all = s.list_items(job.id, None, 10, "").await.unwrap().items;
    let by_key = |k: &str| all.iter().find(|i| i.key == k).unwrap().clone();
    assert_eq!(
        (by_key("ok").state, by_key("ok").attempts),
        (ItemState::Done, 1)
    );
    assert_eq!(
        (by_key("flaky").state, by_key("flaky").attempts),
        (ItemState::Done, 3)
    );
    let corrupt = by_key("corrupt");
    assert_eq!((corrupt.state, corrupt.attempts), (ItemState::Failed, 1));
    assert_eq!(corrupt.error, "not an image");
    let down = by_key("down");
    assert_eq!((down.state, down.attempts), (ItemState::Failed, 3));
    assert_eq!(counts.started("down"), 3, "bounded retries");
    let failed = s
        .list_items(job.id, Some(ItemState::Failed), 10, "")
        .await
        .unwrap();
    assert_eq!(failed.items.len(), 2);
}

async fn planning_failures_fail_or_requeue_the_job(backend: Backend) {
    let t = store(backend).await;
    let s = t.store.clone();
    let counts = Arc::new(Counts::default());
    let mut permanent = CountingExecutor::new(items(3), counts.clone());
    permanent.plan_error = Some(ExecError::permanent("album 7 not found"));
    let mut transient = CountingExecutor::new(items(3), counts.clone());
    transient.plan_error = Some(ExecError::retryable("storage unavailable"));
    let mut config = runner_config("w", 1_000);
    // Long enough that the requeued job is observed queued before its retry.
    config.retry_backoff = Duration::from_secs(600);
    let runner = Runner::new(s.clone(), config)
        .register("permanent", Arc::new(permanent))
        .register("transient", Arc::new(transient));
    let stop = CancellationToken::new();
    let task = tokio::spawn(runner.run(stop.clone()));
    let (p, _) = s.create(&new_job("permanent")).await.unwrap();
    let (r, _) = s.create(&new_job("transient")).await.unwrap();
    let failed = wait_job(&s, p.id, "failed", |j| j.state.is_final()).await;
    assert_eq!(failed.state, JobState::Failed);
    assert_eq!(failed.error, "album 7 not found");
    let requeued = wait_job(&s, r.id, "requeued", |j| {
        j.claims == 1 && j.state == JobState::Queued
    })
    .await;
    assert_eq!(requeued.error, "storage unavailable");
    assert!(!requeued.planned);
    stop.cancel();
    task.await.unwrap();
    assert_eq!(counts.total_started(), 0);
}

async fn a_job_that_keeps_killing_its_worker_is_failed(backend: Backend) {
    let t = store(backend).await;
    let s = &t.store;
    let kinds = vec!["k".to_owned()];
    let (job, _) = s.create(&new_job("k")).await.unwrap();
    let lease = Duration::from_millis(100);
    for claim in 1..=2 {
        let got = photos_testkit::wait::until(
            "claim",
            Duration::from_secs(10),
            Duration::from_millis(20),
            || async {
                s.claim(&format!("w{claim}"), &kinds, lease, 2)
                    .await
                    .map_err(|e| e.to_string())?
                    .ok_or_else(|| "none".to_owned())
            },
        )
        .await
        .unwrap();
        assert_eq!(got.claims, claim);
    }
    // Its second worker died too: no third claim, and the sweep fails it once the lease expires.
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert!(s.claim("w3", &kinds, lease, 2).await.unwrap().is_none());
    assert_eq!(s.fail_exhausted(2).await.unwrap(), 1);
    let j = s.get(job.id).await.unwrap();
    assert_eq!(j.state, JobState::Failed);
    assert!(j.error.contains("2 times"), "{}", j.error);
}

async fn batches_are_recorded_with_their_bytes(backend: Backend) {
    let t = store(backend).await;
    let s = t.store.clone();
    let counts = Arc::new(Counts::default());
    let plan: Vec<NewItem> = (0..1_234)
        .map(|i| NewItem {
            key: format!("k{i}"),
            detail: format!("{{\"n\":{i}}}"),
            bytes: i,
        })
        .collect();
    let mut exec = CountingExecutor::new(plan.clone(), counts.clone());
    exec.batch = 100;
    let runner =
        Runner::new(s.clone(), runner_config("w", 1_000)).register("batch", Arc::new(exec));
    let stop = CancellationToken::new();
    let task = tokio::spawn(runner.run(stop.clone()));
    let (job, _) = s.create(&new_job("batch")).await.unwrap();
    let end = wait_job(&s, job.id, "finished", |j| j.state.is_final()).await;
    stop.cancel();
    task.await.unwrap();
    let bytes: u64 = (0..1_234).sum();
    assert_eq!(
        (end.total, end.done, end.total_bytes, end.done_bytes),
        (1_234, 1_234, bytes, bytes)
    );
    assert_eq!(counts.total_finished(), 1_234);
    // Items page in seq order with their detail intact.
    let page = s.list_items(job.id, None, 1_000, "").await.unwrap();
    assert_eq!(page.items.len(), 1_000);
    let rest = s
        .list_items(job.id, None, 1_000, &page.next_page_token)
        .await
        .unwrap();
    assert_eq!(rest.items.len(), 234);
    assert!(rest.next_page_token.is_empty());
    assert_eq!(rest.items[0].seq, 1_000);
    assert_eq!(rest.items[0].detail, "{\"n\":1000}");
}

async fn only_registered_kinds_are_claimed(backend: Backend) {
    let t = store(backend).await;
    let s = &t.store;
    s.create(&new_job("newer-kind")).await.unwrap();
    let (known, _) = s.create(&new_job("known")).await.unwrap();
    let got = s
        .claim("w", &["known".to_owned()], Duration::from_secs(60), 10)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got.id, known.id);
    assert!(
        s.claim("w", &["known".to_owned()], Duration::from_secs(60), 10)
            .await
            .unwrap()
            .is_none()
    );
}
