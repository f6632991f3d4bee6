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

/// The service sweeps on its own: with a 1 s interval and an age of 8 s, an upload started
/// before the service is aborted once it is 8 s old, without any RPC; one started afterwards is
/// still there after two whole sweeps that began after it was started (while it is younger than
/// 8 s), and so is an old upload outside the managed prefixes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_scheduled_sweep_aborts_an_old_upload_and_leaves_a_young_one() {
    const OLDER_THAN: Duration = Duration::from_secs(8);
    let seaweed = crate::helpers::seaweedfs().await;
    let s3 = seaweed.client();
    let old_started = Instant::now();
    let old = start_upload(&s3, "originals/abandoned.jpg").await;
    let outside = start_upload(&s3, "elsewhere/abandoned.jpg").await;

    let mut cfg = config(&seaweed.endpoint());
    cfg.multipart_sweep.interval_seconds = 1;
    cfg.multipart_sweep.older_than_seconds = OLDER_THAN.as_secs();
    let app = spawn_app(cfg).await;

    eventually(
        "the old upload aborted by the schedule",
        Duration::from_secs(60),
        || {
            let s3 = s3.clone();
            let old = old.clone();
            async move { !open_ids(&s3).await.contains(&old) }
        },
    )
    .await;
    let aborted_after = old_started.elapsed();
    // Less 1 s: a store may report Initiated in whole seconds.
    assert!(
        aborted_after >= OLDER_THAN - Duration::from_secs(1),
        "aborted {aborted_after:?} after it started, younger than {OLDER_THAN:?}"
    );
    let m = metrics(app.admin).await;
    assert_eq!(metric(&m, UPLOADS, "result=\"aborted\""), 1.0, "{m}");
    assert_eq!(metric(&m, UPLOADS, "result=\"already_gone\""), 0.0, "{m}");
    assert_eq!(metric(&m, UPLOADS, "result=\"failed\""), 0.0, "{m}");
    assert_eq!(metric(&m, RUNS, "outcome=\"error\""), 0.0, "{m}");

    let young = start_upload(&s3, "originals/uploading.jpg").await;
    let young_started = Instant::now();
    // A run that was already going when the young upload started took its cutoff earlier; the
    // second run to finish from here began after it.
    let runs_then = metric(&metrics(app.admin).await, RUNS, "");
    eventually("two more sweeps", Duration::from_secs(30), || async {
        metric(&metrics(app.admin).await, RUNS, "") >= runs_then + 2.0
    })
    .await;
    let open = open_ids(&s3).await;
    let young_age = young_started.elapsed();
    assert!(
        young_age < OLDER_THAN,
        "the machine was too slow to tell: the young upload is {young_age:?} old"
    );
    assert!(open.contains(&young), "the young upload was aborted");
    assert!(
        open.contains(&outside),
        "an upload outside the managed prefixes was aborted"
    );
    let m = metrics(app.admin).await;
    assert_eq!(metric(&m, UPLOADS, "result=\"aborted\""), 1.0, "{m}");
    assert!(metric(&m, RUNS, "outcome=\"ok\"") >= 3.0, "{m}");
    assert!(
        metric(
            &m,
            "photos_storage_multipart_sweep_last_success_timestamp_seconds",
            ""
        ) > 0.0,
        "{m}"
    );
    eprintln!(
        "scheduled sweep (SeaweedFS, interval 1 s, older than 8 s): old upload aborted {:.1} s after it started; \
         young upload left after {} runs ({:.1} s old); runs ok {}, aborted {}",
        aborted_after.as_secs_f64(),
        metric(&m, RUNS, "") - runs_then,
        young_age.as_secs_f64(),
        metric(&m, RUNS, "outcome=\"ok\""),
        metric(&m, UPLOADS, "result=\"aborted\""),
    );
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
    let seaweed = crate::helpers::seaweedfs().await;
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

    let over = sweep(&mut app.client, 10_001, true, Default::default())
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
    let m = metrics(app.admin).await;
    assert_eq!(metric(&m, RUNS, "outcome=\"unsupported\""), 1.0, "{m}");
    assert_eq!(metric(&m, RUNS, "outcome=\"error\""), 0.0, "{m}");
    let err = sweep(&mut app.client, 0, true, Default::default())
        .await
        .expect_err("no ListMultipartUploads");
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    assert!(err.message().contains("ListMultipartUploads"), "{err:?}");
}
