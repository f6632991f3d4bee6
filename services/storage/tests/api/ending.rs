//! PutObject stores bytes only from a stream known to be complete: one that ended cleanly after
//! `finish`, or that carried exactly what the header declared (`expected_size`, `sha256`).

use photos_proto::storage::v1 as pb;
use photos_testkit::s3::TestS3;
use tonic::Code;

use crate::helpers::{
    self, config, finish, header, open_uploads, put_messages, s3_keys, spawn_app,
    unfinished_put_messages,
};

const MIB: usize = 1024 * 1024;

async fn send(
    client: &mut helpers::Client,
    msgs: Vec<pb::PutObjectRequest>,
) -> Result<pb::ObjectInfo, tonic::Status> {
    client
        .put_object(futures::stream::iter(msgs))
        .await
        .map(|r| r.into_inner().object.expect("object in the response"))
}

/// A client that maps a broken source to the end of its stream: without `finish` the shortfall
/// is invisible, so the upload is refused and nothing is left behind, on both paths.
#[tokio::test]
async fn a_stream_that_ends_without_finish_stores_nothing() {
    let s3 = photos_testkit::s3::SeaweedFs::start().await.unwrap();
    let direct = s3.client();
    let mut cfg = config(&s3.endpoint());
    cfg.transfer.multipart_threshold_bytes = 5 * MIB as u64;
    cfg.transfer.part_size_bytes = 5 * MIB as u64;
    let mut app = spawn_app(cfg).await;
    for (key, len) in [
        ("originals/short", 100 * 1024),
        ("originals/long", 12 * MIB),
    ] {
        let msgs = unfinished_put_messages(header(key, "image/jpeg"), &helpers::bytes(len, 1), MIB);
        let err = send(&mut app.client, msgs).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{key}: {err:?}");
        assert!(err.message().contains("finish"), "{}", err.message());
    }
    assert_eq!(
        open_uploads(&direct).await,
        0,
        "the multipart upload was aborted"
    );
    assert!(s3_keys(&direct, "").await.is_empty(), "nothing was stored");
}

/// A header that declared the size or the digest makes a cut-short stream detectable, so such
/// an upload may end without `finish` (as the media service's uploads do).
#[tokio::test]
async fn a_declared_size_or_digest_stands_in_for_finish() {
    let s3 = TestS3::start().await.unwrap();
    let mut app = spawn_app(config(&s3.endpoint())).await;
    let data = helpers::bytes(50_000, 2);

    let mut sized = header("variants/sized", "image/webp");
    sized.expected_size = data.len() as u64;
    let object = send(&mut app.client, unfinished_put_messages(sized, &data, 4096))
        .await
        .unwrap();
    assert_eq!(object.size, data.len() as u64);

    let mut hashed = header("variants/hashed", "image/webp");
    hashed.sha256 = helpers::sha256_hex(&data);
    send(
        &mut app.client,
        unfinished_put_messages(hashed, &data, 4096),
    )
    .await
    .unwrap();

    // Declared, then cut short: refused.
    let mut sized = header("variants/cut", "image/webp");
    sized.expected_size = data.len() as u64 + 1;
    let err = send(&mut app.client, unfinished_put_messages(sized, &data, 4096))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("expected_size"), "{}", err.message());
    assert_eq!(
        s3_keys(&s3.client(), "variants/").await,
        vec!["variants/hashed".to_owned(), "variants/sized".to_owned()]
    );
}

/// A client that hashes while sending puts the digest in `finish`; it is checked before the
/// object becomes visible, on the single-PUT path and on the multipart path.
#[tokio::test]
async fn the_digest_in_finish_is_verified() {
    let s3 = photos_testkit::s3::SeaweedFs::start().await.unwrap();
    let direct = s3.client();
    let mut cfg = config(&s3.endpoint());
    cfg.transfer.multipart_threshold_bytes = 5 * MIB as u64;
    cfg.transfer.part_size_bytes = 5 * MIB as u64;
    let mut app = spawn_app(cfg).await;
    for (key, len) in [("originals/one", 300 * 1024), ("originals/parts", 11 * MIB)] {
        let data = helpers::bytes(len, 3);
        let digest = helpers::sha256_hex(&data);

        let mut wrong = unfinished_put_messages(header(key, "image/jpeg"), &data, MIB);
        wrong.push(finish(&helpers::sha256_hex(b"other bytes")));
        let err = send(&mut app.client, wrong).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{key}");
        assert!(
            err.message().contains("sha256 mismatch"),
            "{}",
            err.message()
        );
        assert!(
            s3_keys(&direct, key).await.is_empty(),
            "{key}: nothing stored"
        );

        let mut right = unfinished_put_messages(header(key, "image/jpeg"), &data, MIB);
        right.push(finish(&digest.to_ascii_uppercase()));
        let object = send(&mut app.client, right).await.unwrap();
        assert_eq!(object.sha256, digest, "{key}");
    }
    assert_eq!(open_uploads(&direct).await, 0);

    let mut malformed = put_messages(header("originals/m", "image/jpeg"), b"x", 1);
    malformed.pop();
    malformed.push(finish("not a digest"));
    let err = send(&mut app.client, malformed).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("finish.sha256"), "{}", err.message());
}

#[tokio::test]
async fn nothing_may_follow_finish() {
    let s3 = TestS3::start().await.unwrap();
    let mut app = spawn_app(config(&s3.endpoint())).await;
    let mut msgs = put_messages(header("originals/late", "image/jpeg"), b"early", 5);
    msgs.push(pb::PutObjectRequest {
        part: Some(pb::put_object_request::Part::Chunk(b"late".to_vec())),
    });
    let err = send(&mut app.client, msgs).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("finish"), "{}", err.message());
    assert!(s3_keys(&s3.client(), "").await.is_empty());
}
