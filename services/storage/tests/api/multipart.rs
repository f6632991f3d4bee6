use std::time::Duration;

use photos_testkit::faults::FaultProxy;
use photos_testkit::s3::TestS3;
use tonic::Code;

use crate::helpers::{
    self, addr_of, config, get, header, open_uploads, put, s3_keys, spawn_app,
    unfinished_put_messages,
};

const MIB: usize = 1024 * 1024;

#[tokio::test]
async fn sixty_mb_goes_up_in_parts_and_comes_back_byte_identical() {
    let s3 = TestS3::start().await.unwrap();
    let proxy = FaultProxy::start(addr_of(&s3.endpoint())).await.unwrap();
    proxy.watch(b"partNumber=");
    proxy.watch(b"?uploads");
    let mut app = spawn_app(config(&proxy.endpoint())).await;
    let data = helpers::bytes(60 * MIB, 60);
    let mut h = header("originals/big.tiff", "image/tiff");
    h.sha256 = helpers::sha256_hex(&data);
    h.content_addressed = true;
    let out = put(&mut app.client, h, &data).await.unwrap();
    // 60 MiB in 8 MiB parts.
    assert_eq!(out.parts, 8);
    assert_eq!(proxy.count(b"partNumber="), 8, "one UploadPart per part");
    assert_eq!(proxy.count(b"?uploads"), 1, "one CreateMultipartUpload");
    let object = out.object.unwrap();
    assert_eq!(object.size, data.len() as u64);
    assert_eq!(object.sha256, helpers::sha256_hex(&data));

    let (info, body) = get(&mut app.client, "originals/big.tiff", None)
        .await
        .unwrap();
    assert_eq!(info.size, data.len() as u64);
    assert_eq!(info.cache_control, "public, max-age=31536000, immutable");
    assert_eq!(info.content_type, "image/tiff");
    assert!(body == data, "60 MB read back differs");
}

#[tokio::test]
async fn an_upload_at_the_threshold_uses_multipart_even_without_an_expected_size() {
    let s3 = TestS3::start().await.unwrap();
    let mut cfg = config(&s3.endpoint());
    cfg.transfer.multipart_threshold_bytes = 6 * MIB as u64;
    cfg.transfer.part_size_bytes = 5 * MIB as u64;
    let mut app = spawn_app(cfg).await;
    let below = helpers::bytes(6 * MIB - 1, 1);
    let out = put(
        &mut app.client,
        header("tmp/below", "application/octet-stream"),
        &below,
    )
    .await
    .unwrap();
    assert_eq!(out.parts, 1);
    let at = helpers::bytes(6 * MIB, 2);
    let out = put(
        &mut app.client,
        header("tmp/at", "application/octet-stream"),
        &at,
    )
    .await
    .unwrap();
    assert_eq!(out.parts, 2);
    let (_, body) = get(&mut app.client, "tmp/at", None).await.unwrap();
    assert!(body == at);
}

/// A store failure after some parts are up: the upload is aborted, no parts stay behind.
#[tokio::test]
async fn a_connection_cut_mid_upload_aborts_the_multipart_upload() {
    let s3 = photos_testkit::s3::SeaweedFs::start().await.unwrap();
    let direct = s3.client();
    let proxy = FaultProxy::start(addr_of(&s3.endpoint())).await.unwrap();
    proxy.watch(b"partNumber=");
    let mut cfg = config(&proxy.endpoint());
    cfg.s3.max_attempts = 1;
    cfg.transfer.multipart_threshold_bytes = 5 * MIB as u64;
    cfg.transfer.part_size_bytes = 5 * MIB as u64;
    cfg.transfer.part_concurrency = 2;
    let mut app = spawn_app(cfg).await;
    proxy.cut_after(17 * MIB as u64);
    let data = helpers::bytes(40 * MIB, 9);
    let err = put(
        &mut app.client,
        header("originals/cut.jpg", "image/jpeg"),
        &data,
    )
    .await
    .unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");
    assert_eq!(proxy.cuts(), 1);
    assert!(
        proxy.count(b"partNumber=") >= 3,
        "some parts were sent before the cut"
    );
    assert_eq!(open_uploads(&direct).await, 0, "the upload was aborted");
    assert!(s3_keys(&direct, "originals/").await.is_empty());
}

#[tokio::test]
async fn a_checksum_mismatch_on_a_multipart_upload_aborts_it() {
    let s3 = photos_testkit::s3::SeaweedFs::start().await.unwrap();
    let mut cfg = config(&s3.endpoint());
    cfg.transfer.multipart_threshold_bytes = 5 * MIB as u64;
    cfg.transfer.part_size_bytes = 5 * MIB as u64;
    let mut app = spawn_app(cfg).await;
    let data = helpers::bytes(12 * MIB, 5);
    let mut h = header("originals/bad.jpg", "image/jpeg");
    h.sha256 = helpers::sha256_hex(b"not these bytes");
    let err = put(&mut app.client, h, &data).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert_eq!(open_uploads(&s3.client()).await, 0);
    assert!(s3_keys(&s3.client(), "originals/").await.is_empty());
}

/// The caller disappears mid-stream (its call is dropped, so the server sees the stream reset):
/// the service aborts the upload it started and stores nothing, whether or not the header
/// declared a size that would have exposed the shortfall.
async fn a_client_that_goes_away_mid_upload_leaves_nothing(declared_size: u64) {
    let s3 = photos_testkit::s3::SeaweedFs::start().await.unwrap();
    let direct = s3.client();
    let mut cfg = config(&s3.endpoint());
    cfg.transfer.multipart_threshold_bytes = 5 * MIB as u64;
    cfg.transfer.part_size_bytes = 5 * MIB as u64;
    let app = spawn_app(cfg).await;
    let mut client = app.client.clone();
    let mut h = header("originals/gone.jpg", "image/jpeg");
    h.expected_size = declared_size;
    let first = unfinished_put_messages(h, &helpers::bytes(12 * MIB, 8), MIB);
    // 12 MiB, then a stream that never ends: the call can only end by being cancelled.
    let stream =
        futures::StreamExt::chain(futures::stream::iter(first), futures::stream::pending());
    let call = tokio::spawn(async move { client.put_object(stream).await });
    photos_testkit::wait::until(
        "the multipart upload to start",
        Duration::from_secs(30),
        Duration::from_millis(50),
        || {
            let direct = direct.clone();
            async move {
                match open_uploads(&direct).await {
                    0 => Err("no upload yet"),
                    _ => Ok(()),
                }
            }
        },
    )
    .await
    .unwrap();
    call.abort();
    let _ = call.await;
    photos_testkit::wait::until(
        "the multipart upload to be aborted",
        Duration::from_secs(30),
        Duration::from_millis(50),
        || {
            let direct = direct.clone();
            async move {
                match open_uploads(&direct).await {
                    0 => Ok(()),
                    n => Err(format!("{n} uploads still open")),
                }
            }
        },
    )
    .await
    .unwrap();
    assert!(s3_keys(&direct, "originals/").await.is_empty());
    drop(app);
}

#[tokio::test]
async fn a_cancelled_upload_without_a_declared_size_leaves_nothing() {
    a_client_that_goes_away_mid_upload_leaves_nothing(0).await;
}

#[tokio::test]
async fn a_cancelled_upload_with_a_declared_size_leaves_nothing() {
    a_client_that_goes_away_mid_upload_leaves_nothing(100 * MIB as u64).await;
}

/// The digest of a multipart upload is known only after its metadata was fixed: it is restated
/// by copy-in-place (CopyObject below `multipart_copy_threshold_bytes`, UploadPartCopy above), so
/// Head and Get return it like they do for a single PUT.
/// `uploads_listed_by`: a client for the store if it implements ListMultipartUploads.
async fn multipart_objects_carry_their_sha256(
    endpoint: &str,
    uploads_listed_by: Option<aws_sdk_s3::Client>,
) {
    let mut cfg = config(endpoint);
    cfg.transfer.multipart_threshold_bytes = 5 * MIB as u64;
    cfg.transfer.part_size_bytes = 5 * MIB as u64;
    cfg.transfer.multipart_copy_threshold_bytes = 10 * MIB as u64;
    cfg.transfer.copy_part_size_bytes = 5 * MIB as u64;
    let mut app = spawn_app(cfg).await;
    for (key, len) in [("originals/seven", 7 * MIB), ("originals/twelve", 12 * MIB)] {
        let data = helpers::bytes(len, len as u64);
        let mut h = header(key, "image/jpeg");
        h.content_addressed = true;
        let out = put(&mut app.client, h, &data).await.unwrap();
        assert!(out.parts > 1, "{key} went up in parts");
        let object = out.object.unwrap();
        assert_eq!(object.sha256, helpers::sha256_hex(&data));
        let head = app
            .client
            .head_object(photos_proto::storage::v1::HeadObjectRequest { key: key.into() })
            .await
            .unwrap()
            .into_inner()
            .object
            .unwrap();
        assert_eq!(head.sha256, helpers::sha256_hex(&data), "{key}: Head");
        assert_eq!(
            head.etag, object.etag,
            "{key}: the ETag returned is the final one"
        );
        assert_eq!(head.content_type, "image/jpeg");
        assert_eq!(head.cache_control, "public, max-age=31536000, immutable");
        assert_eq!(head.size, len as u64);
        let (info, body) = get(&mut app.client, key, None).await.unwrap();
        assert_eq!(info.sha256, helpers::sha256_hex(&data), "{key}: Get");
        assert!(body == data, "{key}: bytes differ after the restating copy");
    }
    if let Some(direct) = uploads_listed_by {
        assert_eq!(open_uploads(&direct).await, 0, "no upload left open");
    }
}

#[tokio::test]
async fn multipart_objects_carry_their_sha256_on_seaweedfs() {
    let s3 = photos_testkit::s3::SeaweedFs::start().await.unwrap();
    multipart_objects_carry_their_sha256(&s3.endpoint(), Some(s3.client())).await;
}

#[tokio::test]
async fn multipart_objects_carry_their_sha256_on_the_in_process_s3() {
    let s3 = TestS3::start().await.unwrap();
    // s3s-fs does not implement ListMultipartUploads.
    multipart_objects_carry_their_sha256(&s3.endpoint(), None).await;
}
