//! S3 throttling one multipart part: `503 SlowDown` answered by the fault proxy in front of the
//! real (in-process) S3 server. Retried within the configured attempt budget and the object is
//! whole; when the store keeps throttling past the budget the call fails UNAVAILABLE and the
//! upload is aborted, no attempt more.

use photos_testkit::faults::{FaultProxy, s3_slow_down};
use photos_testkit::s3::TestS3;
use tonic::Code;

use crate::helpers::{self, addr_of, config, get, header, put, spawn_app};

const MIB: usize = 1024 * 1024;

fn metric(metrics: &str, family: &str, label: &str) -> f64 {
    metrics
        .lines()
        .find(|l| l.starts_with(family) && l.contains(label))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

async fn throttled_app(proxy: &FaultProxy) -> crate::helpers::TestApp {
    let mut cfg = config(&proxy.endpoint());
    cfg.transfer.multipart_threshold_bytes = 5 * MIB as u64;
    cfg.transfer.part_size_bytes = 5 * MIB as u64;
    spawn_app(cfg).await
}

#[tokio::test]
async fn a_503_slow_down_on_one_part_is_retried_within_budget_and_the_checksum_matches() {
    let s3 = TestS3::start().await.unwrap();
    let proxy = FaultProxy::start(addr_of(&s3.endpoint())).await.unwrap();
    proxy.watch(b"partNumber=");
    proxy.watch(b"partNumber=2");
    // The second part's first attempt is throttled, as S3 does under a request-rate spike.
    proxy.answer_http(b"partNumber=2", s3_slow_down(), 1);
    let mut app = throttled_app(&proxy).await;
    let data = helpers::bytes(12 * MIB, 503);
    let mut h = header("originals/throttled.bin", "application/octet-stream");
    h.sha256 = helpers::sha256_hex(&data);
    let out = put(&mut app.client, h, &data).await.expect("retried");
    assert_eq!(out.parts, 3);
    assert_eq!(proxy.answered(), 1, "one 503 was served");
    assert_eq!(
        proxy.count(b"partNumber=2"),
        2,
        "part 2: the 503, then the retry"
    );
    assert_eq!(proxy.count(b"partNumber="), 4, "3 parts + 1 retry");
    assert_eq!(out.object.unwrap().sha256, helpers::sha256_hex(&data));
    let (info, body) = get(&mut app.client, "originals/throttled.bin", None)
        .await
        .unwrap();
    assert_eq!(info.sha256, helpers::sha256_hex(&data));
    assert!(body == data, "the bytes read back differ");
    let (_, metrics) = photos_testkit::http::get(app.admin, "/metrics").await;
    assert_eq!(
        metric(
            &metrics,
            "photos_storage_s3_retries_total{",
            "operation=\"UploadPart\""
        ),
        1.0,
        "{metrics}"
    );
}

#[tokio::test]
async fn a_part_throttled_past_the_attempt_budget_fails_unavailable_and_aborts() {
    let s3 = TestS3::start().await.unwrap();
    let proxy = FaultProxy::start(addr_of(&s3.endpoint())).await.unwrap();
    proxy.watch(b"partNumber=2");
    proxy.watch(b"AbortMultipartUpload");
    proxy.watch(b"CompleteMultipartUpload");
    // More 503s than attempts: s3.max_attempts (3) is the budget.
    proxy.answer_http(b"partNumber=2", s3_slow_down(), 10);
    let mut app = throttled_app(&proxy).await;
    let data = helpers::bytes(12 * MIB, 504);
    let err = put(
        &mut app.client,
        header("originals/throttled-out.bin", "application/octet-stream"),
        &data,
    )
    .await
    .expect_err("throttled past the budget");
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");
    assert!(err.message().contains("SlowDown"), "{err:?}");
    assert_eq!(
        proxy.count(b"partNumber=2"),
        3,
        "exactly max_attempts attempts"
    );
    assert_eq!(proxy.answered(), 3);
    assert_eq!(proxy.count(b"CompleteMultipartUpload"), 0);
    assert!(
        proxy.count(b"AbortMultipartUpload") >= 1,
        "the upload was aborted"
    );
    assert!(
        get(&mut app.client, "originals/throttled-out.bin", None)
            .await
            .is_err(),
        "no object"
    );
}
