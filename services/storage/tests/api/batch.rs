use photos_proto::storage::v1 as pb;
use photos_testkit::faults::FaultProxy;
use photos_testkit::s3::{BUCKET, TestS3};

use crate::helpers::{addr_of, config, s3_keys, seed_objects, spawn_app};

const DELETE_OBJECTS: &[u8] = b"?delete";

/// SeaweedFS refuses more than 1000 keys per DeleteObjects, as AWS does: the 2,500-key delete
/// below can only succeed if it was chunked.
#[tokio::test]
async fn seaweedfs_rejects_a_delete_of_more_than_1000_keys() {
    let s3 = photos_testkit::s3::SeaweedFs::start().await.unwrap();
    let objects: Vec<_> = (0..1001)
        .map(|i| {
            aws_sdk_s3::types::ObjectIdentifier::builder()
                .key(format!("tmp/{i}"))
                .build()
                .unwrap()
        })
        .collect();
    let result = s3
        .client()
        .delete_objects()
        .bucket(BUCKET)
        .delete(
            aws_sdk_s3::types::Delete::builder()
                .set_objects(Some(objects))
                .build()
                .unwrap(),
        )
        .send()
        .await;
    // The refusal itself, not any failure (a server that went away would fail too).
    let err = result.expect_err("the server accepted 1001 keys");
    let code = err
        .as_service_error()
        .and_then(aws_sdk_s3::error::ProvideErrorMetadata::code);
    assert_eq!(
        code,
        Some("InvalidArgument"),
        "{}",
        aws_sdk_s3::error::DisplayErrorContext(&err)
    );
    assert!(
        aws_sdk_s3::error::DisplayErrorContext(&err)
            .to_string()
            .contains("1000"),
        "{}",
        aws_sdk_s3::error::DisplayErrorContext(&err)
    );
}

#[tokio::test]
async fn deleting_2500_objects_takes_three_requests() {
    let s3 = photos_testkit::s3::SeaweedFs::start().await.unwrap();
    let direct = s3.client();
    let keys = seed_objects(&direct, "tmp/batch/", 2500).await;
    seed_objects(&direct, "tmp/keep/", 5).await;
    let proxy = FaultProxy::start(addr_of(&s3.endpoint())).await.unwrap();
    // DeleteObjects is `POST /<bucket>/?delete`; nothing else the service sends contains this.
    let delete_line = DELETE_OBJECTS;
    proxy.watch(delete_line);
    let mut app = spawn_app(config(&proxy.endpoint())).await;
    let out = app
        .client
        .delete_objects(pb::DeleteObjectsRequest { keys })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(out.deleted, 2500);
    assert!(out.errors.is_empty(), "{:?}", out.errors);
    assert_eq!(out.requests, 3);
    assert_eq!(proxy.count(delete_line), 3, "seen on the wire");
    assert!(s3_keys(&direct, "tmp/batch/").await.is_empty());
    assert_eq!(
        s3_keys(&direct, "tmp/keep/").await.len(),
        5,
        "others untouched"
    );
}

/// The store fails the first attempt of every batch (the connection is cut mid-request): the
/// service sends those keys again and reports every one deleted.
#[tokio::test]
async fn failed_batches_are_retried_and_counted() {
    let s3 = TestS3::start().await.unwrap();
    let direct = s3.client();
    let keys = seed_objects(&direct, "tmp/retry/", 1200).await;
    let proxy = FaultProxy::start(addr_of(&s3.endpoint())).await.unwrap();
    let delete_line = DELETE_OBJECTS;
    proxy.watch(delete_line);
    let mut cfg = config(&proxy.endpoint());
    // No SDK-level retry: the retry seen here is the service's own.
    cfg.s3.max_attempts = 1;
    cfg.transfer.delete_concurrency = 1;
    let mut app = spawn_app(cfg).await;
    // Cut inside the first DeleteObjects body (~1000 keys × ~50 bytes of XML each).
    proxy.cut_after(10_000);
    let out = app
        .client
        .delete_objects(pb::DeleteObjectsRequest { keys })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(proxy.cuts(), 1);
    assert!(out.errors.is_empty(), "{:?}", out.errors);
    assert_eq!(out.deleted, 1200);
    assert_eq!(out.requests, 3, "two batches plus one retry");
    assert_eq!(proxy.count(delete_line), 3);
    assert!(s3_keys(&direct, "tmp/retry/").await.is_empty());
}

#[tokio::test]
async fn per_key_failures_are_reported_after_the_retries() {
    let s3 = TestS3::start().await.unwrap();
    let direct = s3.client();
    let keys = seed_objects(&direct, "tmp/down/", 10).await;
    let mut cfg = config(&s3.endpoint());
    cfg.s3.max_attempts = 1;
    cfg.transfer.delete_retries = 2;
    let mut app = spawn_app(cfg).await;
    // The store goes away: every attempt fails, every key is reported with the cause.
    drop(s3);
    let out = app
        .client
        .delete_objects(pb::DeleteObjectsRequest { keys: keys.clone() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(out.deleted, 0);
    assert_eq!(out.requests, 3, "one attempt and two retries");
    assert_eq!(out.errors.len(), 10);
    assert!(out.errors.iter().all(|e| !e.message.is_empty()));
    let mut failed: Vec<_> = out.errors.into_iter().map(|e| e.key).collect();
    failed.sort();
    assert_eq!(failed, keys);
}
