//! Abandoned multipart uploads on SeaweedFS: the scheduled sweep (nobody calls the RPC), the
//! RPC's per-call cap and continuation markers, and an upload that is gone by the time its
//! abort arrives. Uploads are started straight on the S3 server, as a storage process that died
//! mid-upload leaves them. Waits are polls with a bounded deadline.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use photos_proto::storage::v1 as pb;
use photos_testkit::faults::FaultProxy;
use photos_testkit::s3::BUCKET;
use tonic::Code;

use crate::helpers::{addr_of, config, spawn_app};

/// Starts a multipart upload of `key` with one small part, straight on the S3 server.
async fn start_upload(s3: &aws_sdk_s3::Client, key: &str) -> String {
    let id = s3
        .create_multipart_upload()
        .bucket(BUCKET)
        .key(key)
        .send()
        .await
        .expect("CreateMultipartUpload")
        .upload_id()
        .expect("an upload id")
        .to_owned();
    s3.upload_part()
        .bucket(BUCKET)
        .key(key)
        .upload_id(&id)
        .part_number(1)
        .body(aws_sdk_s3::primitives::ByteStream::from_static(b"part"))
        .send()
        .await
        .expect("UploadPart");
    id
}

/// (key, upload id, initiated) of every open upload in the bucket, in listing order.
async fn listed(
    s3: &aws_sdk_s3::Client,
) -> Vec<(String, String, aws_sdk_s3::primitives::DateTime)> {
    let out = s3
        .list_multipart_uploads()
        .bucket(BUCKET)
        .send()
        .await
        .expect("ListMultipartUploads");
    assert!(
        !out.is_truncated().unwrap_or(false),
        "one page is enough here"
    );
    out.uploads()
        .iter()
        .map(|u| {
            (
                u.key().unwrap().to_owned(),
                u.upload_id().unwrap().to_owned(),
                *u.initiated().expect("initiated"),
            )
        })
        .collect()
}

async fn open_ids(s3: &aws_sdk_s3::Client) -> BTreeSet<String> {
    listed(s3).await.into_iter().map(|(_, id, _)| id).collect()
}

/// The sum of the `/metrics` samples of `family` whose labels contain `label`.
fn metric(metrics: &str, family: &str, label: &str) -> f64 {
    metrics
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| {
            l.split([' ', '{'])
                .next()
                .is_some_and(|name| name == family)
                && l.contains(label)
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

async fn metrics(admin: std::net::SocketAddr) -> String {
    photos_testkit::http::get(admin, "/metrics").await.1
}

const RUNS: &str = "photos_storage_multipart_sweep_runs_total";
const UPLOADS: &str = "photos_storage_multipart_sweep_uploads_total";

/// Polls `check` every 100 ms until it holds, failing after `within`.
async fn eventually<F, Fut>(what: &str, within: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = Instant::now();
    while !check().await {
        assert!(started.elapsed() < within, "{what}: not after {within:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits (bounded) until every open upload started more than a second ago by the store's own
/// `Initiated` (whole seconds), so a sweep with an age of 1 s takes each of them.
async fn all_older_than_a_second(s3: &aws_sdk_s3::Client) {
    eventually(
        "the uploads older than 1 s",
        Duration::from_secs(30),
        || {
            let s3 = s3.clone();
            async move {
                let now =
                    aws_sdk_s3::primitives::DateTime::from(std::time::SystemTime::now()).secs();
                listed(&s3)
                    .await
                    .iter()
                    .all(|(_, _, initiated)| initiated.secs() + 1 < now)
            }
        },
    )
    .await;
}

/// Waits (bounded) for `n` more completed runs, counted on `/metrics`, than `from`.
async fn runs_after(admin: std::net::SocketAddr, from: f64, n: f64) {
    eventually("more sweeps", Duration::from_secs(60), || async move {
        metric(&metrics(admin).await, RUNS, "") >= from + n
    })
    .await;
}

/// The service sweeps on its own, nobody calling the RPC. With an age of an hour, uploads just
/// started (as a running upload is) are still open after three completed runs (counted on
/// `/metrics`, not timed); with an age of 1 s, a service started once they are older than that
/// aborts the ones under the managed prefixes on its own and leaves the one outside them.
/// The ages hold by construction: no assertion reads a clock.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_scheduled_sweep_aborts_an_old_upload_and_leaves_a_young_one() {
    let seaweed = photos_testkit::s3::SeaweedFs::start().await.unwrap();
    let s3 = seaweed.client();
    let first = start_upload(&s3, "originals/abandoned.jpg").await;
    let outside = start_upload(&s3, "elsewhere/abandoned.jpg").await;

    let mut cfg = config(&seaweed.endpoint());
    cfg.multipart_sweep.interval_seconds = 1;
    cfg.multipart_sweep.older_than_seconds = 3600;
    let app = spawn_app(cfg.clone()).await;
    let young = start_upload(&s3, "originals/uploading.jpg").await;
    // A run already going when `young` started may have listed before it: three more runs
    // from here, so at least two listed it.
    let runs_then = metric(&metrics(app.admin).await, RUNS, "");
    runs_after(app.admin, runs_then, 3.0).await;
    let open = open_ids(&s3).await;
    assert!(open.contains(&young), "a young upload was aborted");
    assert!(
        open.contains(&first),
        "an upload younger than the age was aborted"
    );
    let m = metrics(app.admin).await;
    assert_eq!(metric(&m, UPLOADS, ""), 0.0, "{m}");
    assert!(metric(&m, RUNS, "outcome=\"ok\"") >= 3.0, "{m}");
    assert!(
        metric(
            &m,
            "photos_storage_multipart_sweep_last_success_timestamp_seconds",
            ""
        ) > 0.0,
        "{m}"
    );
    let young_runs = metric(&m, RUNS, "") - runs_then;
    drop(app);

    // Both uploads under originals/ are now older than 1 s: a run of a service with that age
    // (the old process's schedule has no age that could abort them) takes them.
    cfg.multipart_sweep.older_than_seconds = 1;
    cfg.multipart_sweep.allow_short_age = true;
    all_older_than_a_second(&s3).await;
    let app = spawn_app(cfg).await;
    // The counter is bumped after the abort answers: wait on it, not on the store.
    eventually(
        "two uploads aborted by the schedule",
        Duration::from_secs(60),
        || async { metric(&metrics(app.admin).await, UPLOADS, "result=\"aborted\"") >= 2.0 },
    )
    .await;
    let open = open_ids(&s3).await;
    assert_eq!(
        open,
        BTreeSet::from([outside.clone()]),
        "only the upload outside the managed prefixes is left"
    );
    let m = metrics(app.admin).await;
    assert_eq!(metric(&m, UPLOADS, "result=\"aborted\""), 2.0, "{m}");
    assert_eq!(metric(&m, UPLOADS, "result=\"already_gone\""), 0.0, "{m}");
    assert_eq!(metric(&m, UPLOADS, "result=\"failed\""), 0.0, "{m}");
    assert_eq!(metric(&m, RUNS, "outcome=\"error\""), 0.0, "{m}");
    eprintln!(
        "scheduled sweep (SeaweedFS, interval 1 s): age 3600 s, young uploads left after {young_runs} runs; \
         age 1 s, aborted {} (runs ok {}), outside the managed prefixes left",
        metric(&m, UPLOADS, "result=\"aborted\""),
        metric(&m, RUNS, "outcome=\"ok\""),
    );
}

/// S3's error answer with `status` and `code`.
fn s3_error(status: &str, code: &str) -> Vec<u8> {
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{code}</Code>\
         <Message>refused by the test</Message><RequestId>faultproxy</RequestId></Error>"
    );
    format!(
        "HTTP/1.1 {status}\r\nContent-Type: application/xml\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// Credentials that may list uploads but not abort them (403 AccessDenied to every
/// AbortMultipartUpload): every run fails every abort, and none counts as `ok` or moves the
/// last-success time, so the alert on it fires.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_whose_every_abort_is_refused_is_an_error() {
    let seaweed = photos_testkit::s3::SeaweedFs::start().await.unwrap();
    let s3 = seaweed.client();
    let id = start_upload(&s3, "originals/refused.jpg").await;
    // Old enough for every run, so no run finds nothing to do (which would be `ok`).
    all_older_than_a_second(&s3).await;
    let proxy = FaultProxy::start(addr_of(&seaweed.endpoint()))
        .await
        .unwrap();
    proxy.answer_http(
        b"AbortMultipartUpload",
        s3_error("403 Forbidden", "AccessDenied"),
        1000,
    );
    let mut cfg = config(&proxy.endpoint());
    cfg.multipart_sweep.interval_seconds = 1;
    cfg.multipart_sweep.older_than_seconds = 1;
    cfg.multipart_sweep.allow_short_age = true;
    let app = spawn_app(cfg).await;
    eventually(
        "two runs whose aborts failed",
        Duration::from_secs(60),
        || async {
            let m = metrics(app.admin).await;
            metric(&m, UPLOADS, "result=\"failed\"") >= 2.0 && metric(&m, RUNS, "") >= 2.0
        },
    )
    .await;
    let m = metrics(app.admin).await;
    assert_eq!(metric(&m, RUNS, "outcome=\"ok\""), 0.0, "{m}");
    assert_eq!(
        metric(&m, RUNS, "outcome=\"error\""),
        metric(&m, RUNS, ""),
        "{m}"
    );
    assert_eq!(metric(&m, UPLOADS, "result=\"aborted\""), 0.0, "{m}");
    assert_eq!(metric(&m, UPLOADS, "result=\"already_gone\""), 0.0, "{m}");
    assert_eq!(
        metric(
            &m,
            "photos_storage_multipart_sweep_last_success_timestamp_seconds",
            ""
        ),
        0.0,
        "{m}"
    );
    assert!(proxy.answered() >= 2);
    assert!(
        open_ids(&s3).await.contains(&id),
        "the refused upload is still open"
    );
}

/// A 501 without S3's NotImplemented code (a proxy or gateway in the way, not the store) does
/// not end the schedule: the run is an error and the next one runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bare_501_to_the_listing_is_an_error_retried_next_interval() {
    let seaweed = photos_testkit::s3::SeaweedFs::start().await.unwrap();
    let proxy = FaultProxy::start(addr_of(&seaweed.endpoint()))
        .await
        .unwrap();
    let bare =
        b"HTTP/1.1 501 Not Implemented\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_vec();
    proxy.answer_http(b"?uploads", bare, 1000);
    let mut cfg = config(&proxy.endpoint());
    cfg.multipart_sweep.interval_seconds = 1;
    let app = spawn_app(cfg).await;
    eventually("the first run", Duration::from_secs(60), || async {
        metric(&metrics(app.admin).await, RUNS, "") >= 1.0
    })
    .await;
    let m = metrics(app.admin).await;
    assert_eq!(metric(&m, RUNS, "outcome=\"unsupported\""), 0.0, "{m}");
    eventually("a second run", Duration::from_secs(60), || async {
        metric(&metrics(app.admin).await, RUNS, "") >= 2.0
    })
    .await;
    let m = metrics(app.admin).await;
    assert_eq!(metric(&m, RUNS, "outcome=\"unsupported\""), 0.0, "{m}");
    assert!(metric(&m, RUNS, "outcome=\"error\"") >= 2.0, "{m}");
}

/// A store that says its listing is truncated but gives no marker to go on from (and lists
/// nothing to go on after): the call fails UNAVAILABLE rather than report the listing done.
#[tokio::test]
async fn a_listing_that_cannot_go_on_is_not_taken_for_done() {
    let seaweed = photos_testkit::s3::SeaweedFs::start().await.unwrap();
    let proxy = FaultProxy::start(addr_of(&seaweed.endpoint()))
        .await
        .unwrap();
    // `true` is a character shorter than `false`: a blank keeps Content-Length right.
    let page = listing(&[]);
    let page = String::from_utf8(page)
        .unwrap()
        .replace(
            "<IsTruncated>false</IsTruncated>",
            "<IsTruncated>true</IsTruncated> ",
        )
        .into_bytes();
    proxy.answer_http(b"?uploads&max-uploads=", page, 10);
    let mut app = spawn_app(config(&proxy.endpoint())).await;
    let err = sweep(&mut app.client, 0, true, Default::default())
        .await
        .expect_err("the listing stalled");
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");
    assert!(err.message().contains("marker"), "{err:?}");
    assert_eq!(proxy.answered(), 1, "one page read");
}

async fn sweep(
    client: &mut crate::helpers::Client,
    max_uploads: u32,
    dry_run: bool,
    marker: (String, String),
) -> Result<pb::AbortIncompleteUploadsResponse, tonic::Status> {
    client
        .abort_incomplete_uploads(pb::AbortIncompleteUploadsRequest {
            prefix: "tmp/".into(),
            older_than_seconds: 0,
            dry_run,
            include_in_flight: true,
            max_uploads,
            key_marker: marker.0,
            upload_id_marker: marker.1,
        })
        .await
        .map(|r| r.into_inner())
}

/// Every call of the whole walk: the uploads each acted on, and the markers in between.
async fn walk(
    client: &mut crate::helpers::Client,
    max_uploads: u32,
    dry_run: bool,
) -> Vec<Vec<String>> {
    let mut calls = Vec::new();
    let mut marker = (String::new(), String::new());
    for _ in 0..10 {
        let out = sweep(client, max_uploads, dry_run, marker).await.unwrap();
        assert!(
            out.errors.is_empty() && out.already_gone.is_empty(),
            "{out:?}"
        );
        calls.push(out.uploads.iter().map(|u| u.upload_id.clone()).collect());
        if out.next_key_marker.is_empty() && out.next_upload_id_marker.is_empty() {
            return calls;
        }
        marker = (out.next_key_marker, out.next_upload_id_marker);
    }
    panic!("the walk did not end: {calls:?}");
}

/// Five uploads (two of them on one key), two per call: three calls, each going on from the
/// last one's markers, in a dry run and for real; nothing is listed twice or skipped. SeaweedFS
/// lists uploads by id and gives only an upload-id marker (and would answer a key-marker with
/// that key's uploads alone), so this also checks the markers are passed through as the store
/// gave them. A cap above the maximum is refused.
#[tokio::test]
async fn a_sweep_call_acts_on_at_most_max_uploads_and_goes_on_from_its_markers() {
    let seaweed = photos_testkit::s3::SeaweedFs::start().await.unwrap();
    let s3 = seaweed.client();
    for key in ["tmp/a", "tmp/b", "tmp/b", "tmp/c", "tmp/d"] {
        start_upload(&s3, key).await;
    }
    let all = open_ids(&s3).await;
    assert_eq!(all.len(), 5);
    let mut app = spawn_app(config(&seaweed.endpoint())).await;

    let dry = walk(&mut app.client, 2, true).await;
    assert_eq!(
        dry.iter().map(Vec::len).collect::<Vec<_>>(),
        [2, 2, 1],
        "{dry:?}"
    );
    let found: BTreeSet<String> = dry.iter().flatten().cloned().collect();
    assert_eq!(found, all, "each upload listed once: {dry:?}");
    assert_eq!(open_ids(&s3).await, all, "a dry run aborts nothing");

    // The default cap (1000) takes all five in one call.
    let one = sweep(&mut app.client, 0, true, Default::default())
        .await
        .unwrap();
    assert_eq!(one.uploads.len(), 5);
    assert!(one.next_key_marker.is_empty(), "{one:?}");

    let real = walk(&mut app.client, 2, false).await;
    assert_eq!(
        real.iter().map(Vec::len).collect::<Vec<_>>(),
        [2, 2, 1],
        "{real:?}"
    );
    let aborted: BTreeSet<String> = real.iter().flatten().cloned().collect();
    assert_eq!(aborted, all);
    assert!(open_ids(&s3).await.is_empty(), "every upload aborted");

    let over = sweep(&mut app.client, 1001, true, Default::default())
        .await
        .expect_err("above the maximum");
    assert_eq!(over.code(), Code::InvalidArgument, "{over:?}");
    assert!(over.message().contains("max_uploads"), "{over:?}");
}

/// The ListMultipartUploads answer a store gave while `uploads` were all open.
fn listing(uploads: &[(String, String, aws_sdk_s3::primitives::DateTime)]) -> Vec<u8> {
    use aws_smithy_types::date_time::Format;
    let entries: String = uploads
        .iter()
        .map(|(key, id, initiated)| {
            format!(
                "<Upload><Key>{key}</Key><UploadId>{id}</UploadId><Initiated>{}</Initiated>\
                 <StorageClass>STANDARD</StorageClass></Upload>",
                initiated.fmt(Format::DateTime).unwrap()
            )
        })
        .collect();
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
         <ListMultipartUploadsResult xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">\
         <Bucket>{BUCKET}</Bucket><KeyMarker></KeyMarker><UploadIdMarker></UploadIdMarker>\
         <Prefix>tmp/</Prefix><MaxUploads>1000</MaxUploads><IsTruncated>false</IsTruncated>\
         {entries}</ListMultipartUploadsResult>"
    );
    format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/xml\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// Someone else aborts an upload between the sweep's listing and its abort: the listing storage
/// sees is the one the store gave while both uploads were open (replayed by the fault proxy,
/// since nothing can be slipped in between the two requests of one call otherwise), and the
/// abort of the gone one reaches the store, whose NoSuchUpload (404) is counted as already gone:
/// not aborted, not an error. On moto: SeaweedFS answers an abort of an upload already aborted
/// with 204, as if it had aborted it.
#[tokio::test]
async fn an_upload_gone_before_its_abort_is_counted_as_already_gone() {
    let moto = crate::helpers::Moto::start().await;
    let s3 = photos_testkit::s3::client(&moto.endpoint());
    let gone_id = start_upload(&s3, "tmp/finished-elsewhere").await;
    let live_id = start_upload(&s3, "tmp/abandoned").await;
    let before = listed(&s3).await;
    assert_eq!(before.len(), 2, "{before:?}");
    s3.abort_multipart_upload()
        .bucket(BUCKET)
        .key("tmp/finished-elsewhere")
        .upload_id(&gone_id)
        .send()
        .await
        .expect("someone else aborts it");

    let proxy = FaultProxy::start(addr_of(&moto.endpoint())).await.unwrap();
    proxy.watch(b"AbortMultipartUpload");
    // ListMultipartUploads (`GET /bucket/?uploads&max-uploads=…`), nothing else.
    proxy.answer_http(b"?uploads&max-uploads=", listing(&before), 1);
    let mut app = spawn_app(config(&proxy.endpoint())).await;
    let out = sweep(&mut app.client, 0, false, Default::default())
        .await
        .unwrap();
    assert_eq!(proxy.answered(), 1, "the sweep listed through the replay");
    assert_eq!(
        proxy.count(b"AbortMultipartUpload"),
        2,
        "both aborts reached the store"
    );
    assert!(out.errors.is_empty(), "{:?}", out.errors);
    let ids =
        |u: &[pb::IncompleteUpload]| u.iter().map(|u| u.upload_id.clone()).collect::<Vec<_>>();
    assert_eq!(ids(&out.already_gone), [gone_id], "{out:?}");
    assert_eq!(ids(&out.uploads), [live_id], "{out:?}");
    assert!(open_ids(&s3).await.is_empty());
    eprintln!(
        "already gone (moto, listing replayed from before a direct abort): {} aborted, {} already gone, {} errors",
        out.uploads.len(),
        out.already_gone.len(),
        out.errors.len()
    );
}

/// A store without ListMultipartUploads (the embedded local S3, s3s-fs): the RPC answers
/// FAILED_PRECONDITION saying so, and the schedule's first run is counted as `unsupported` and
/// ends the schedule rather than failing every hour.
#[tokio::test]
async fn a_store_that_cannot_list_uploads_stops_the_schedule_and_fails_the_call_as_a_precondition()
{
    let s3 = photos_testkit::s3::TestS3::start().await.unwrap();
    let mut cfg = config(&s3.endpoint());
    cfg.multipart_sweep.interval_seconds = 1;
    let mut app = spawn_app(cfg).await;
    eventually(
        "the first scheduled run",
        Duration::from_secs(30),
        || async { metric(&metrics(app.admin).await, RUNS, "") >= 1.0 },
    )
    .await;
    // The schedule has ended: three more intervals pass without a run (a schedule that went
    // on would have run about three times more).
    tokio::time::sleep(Duration::from_millis(3500)).await;
    let m = metrics(app.admin).await;
    assert_eq!(metric(&m, RUNS, ""), 1.0, "{m}");
    assert_eq!(metric(&m, RUNS, "outcome=\"unsupported\""), 1.0, "{m}");
    assert_eq!(metric(&m, RUNS, "outcome=\"error\""), 0.0, "{m}");
    let err = sweep(&mut app.client, 0, true, Default::default())
        .await
        .expect_err("no ListMultipartUploads");
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    assert!(err.message().contains("ListMultipartUploads"), "{err:?}");
}

/// Eleven uploads younger than the age, one per page (`max_uploads` 1 sizes the pages): a
/// call reads its 10 pages, acts on nothing, and hands back where to go on rather than
/// walking the whole listing or saying it is done.
#[tokio::test]
async fn a_sweep_call_reads_at_most_ten_pages() {
    let seaweed = photos_testkit::s3::SeaweedFs::start().await.unwrap();
    let s3 = seaweed.client();
    for i in 0..11 {
        start_upload(&s3, &format!("tmp/young-{i}")).await;
    }
    let proxy = FaultProxy::start(addr_of(&seaweed.endpoint()))
        .await
        .unwrap();
    proxy.watch(b"?uploads");
    let mut app = spawn_app(config(&proxy.endpoint())).await;
    let out = app
        .client
        .abort_incomplete_uploads(pb::AbortIncompleteUploadsRequest {
            prefix: "tmp/".into(),
            older_than_seconds: 3600,
            max_uploads: 1,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(out.uploads.is_empty() && out.errors.is_empty(), "{out:?}");
    assert_eq!(proxy.count(b"?uploads"), 10, "listing pages read");
    assert!(
        !(out.next_key_marker.is_empty() && out.next_upload_id_marker.is_empty()),
        "the listing is not done: {out:?}"
    );
    assert_eq!(open_ids(&s3).await.len(), 11);
}

/// Listing answers a caller or the deployment must fix are told from an outage: a 400 to a
/// listing from the caller's markers (e.g. a marker not from a previous call) is
/// INVALID_ARGUMENT, a 400 without them (a wrong region, say) and AccessDenied are
/// FAILED_PRECONDITION.
#[tokio::test]
async fn listing_refusals_are_not_reported_as_unavailable() {
    let seaweed = photos_testkit::s3::SeaweedFs::start().await.unwrap();
    let proxy = FaultProxy::start(addr_of(&seaweed.endpoint()))
        .await
        .unwrap();
    let mut app = spawn_app(config(&proxy.endpoint())).await;
    let marker = || ("tmp/x".to_owned(), "bogus".to_owned());
    let no_marker = || (String::new(), String::new());
    for (answer, markers, code, times) in [
        (
            s3_error("400 Bad Request", "InvalidArgument"),
            marker(),
            Code::InvalidArgument,
            1,
        ),
        (
            s3_error("400 Bad Request", "AuthorizationHeaderMalformed"),
            no_marker(),
            Code::FailedPrecondition,
            1,
        ),
        (
            s3_error("403 Forbidden", "AccessDenied"),
            marker(),
            Code::FailedPrecondition,
            1,
        ),
        (
            s3_error("404 Not Found", "NoSuchBucket"),
            no_marker(),
            Code::FailedPrecondition,
            1,
        ),
        // Retried by the SDK: enough answers for every attempt.
        (
            s3_error("503 Slow Down", "SlowDown"),
            no_marker(),
            Code::Unavailable,
            100,
        ),
    ] {
        proxy.answer_http(b"?uploads", answer, times);
        let err = sweep(&mut app.client, 0, true, markers)
            .await
            .expect_err("refused");
        assert_eq!(err.code(), code, "{err:?}");
    }
}

/// A store that ignores max-uploads (three uploads for a call capped at two, not truncated):
/// the call takes two and hands back a marker for the third instead of calling the listing
/// done.
#[tokio::test]
async fn a_store_that_lists_more_than_asked_is_not_taken_for_done() {
    let seaweed = photos_testkit::s3::SeaweedFs::start().await.unwrap();
    let s3 = seaweed.client();
    for key in ["tmp/a", "tmp/b", "tmp/c"] {
        start_upload(&s3, key).await;
    }
    let all = listed(&s3).await;
    let proxy = FaultProxy::start(addr_of(&seaweed.endpoint()))
        .await
        .unwrap();
    proxy.answer_http(b"?uploads&max-uploads=", listing(&all), 1);
    let mut app = spawn_app(config(&proxy.endpoint())).await;
    let out = sweep(&mut app.client, 2, true, Default::default())
        .await
        .unwrap();
    assert_eq!(proxy.answered(), 1);
    assert_eq!(out.uploads.len(), 2, "{out:?}");
    assert_eq!(out.next_key_marker, all[1].0, "{out:?}");
    assert_eq!(out.next_upload_id_marker, all[1].1, "{out:?}");
}
