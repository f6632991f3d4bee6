use futures::StreamExt;
use photos_proto::storage::v1 as pb;
use photos_testkit::s3::TestS3;
use tonic::Code;

use crate::helpers::{self, config, get, header, put, s3_keys, spawn_app};

#[tokio::test]
async fn small_object_round_trips_with_metadata_and_ranges() {
    let s3 = TestS3::start().await.unwrap();
    let mut app = spawn_app(config(&s3.endpoint())).await;
    let data = helpers::bytes(300 * 1024, 7);
    let mut h = header("originals/ab/photo.jpg", "image/jpeg");
    h.content_addressed = true;
    h.sha256 = helpers::sha256_hex(&data);
    let out = put(&mut app.client, h, &data).await.unwrap();
    assert_eq!(out.parts, 1, "below the threshold: one PUT");
    let object = out.object.unwrap();
    assert_eq!(object.size, data.len() as u64);
    assert_eq!(object.sha256, helpers::sha256_hex(&data));

    let head = app
        .client
        .head_object(pb::HeadObjectRequest {
            key: "originals/ab/photo.jpg".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .object
        .unwrap();
    assert_eq!(head.size, data.len() as u64);
    assert_eq!(head.content_type, "image/jpeg");
    assert_eq!(head.cache_control, "public, max-age=31536000, immutable");
    assert_eq!(head.sha256, helpers::sha256_hex(&data));

    let (info, body) = get(&mut app.client, "originals/ab/photo.jpg", None)
        .await
        .unwrap();
    assert_eq!(info.size, data.len() as u64);
    assert!(body == data, "bytes differ");

    let (info, body) = get(
        &mut app.client,
        "originals/ab/photo.jpg",
        Some((1000, 1999)),
    )
    .await
    .unwrap();
    assert_eq!(body, &data[1000..2000]);
    assert_eq!(info.size, data.len() as u64, "size is the whole object's");
    let (_, tail) = get(
        &mut app.client,
        "originals/ab/photo.jpg",
        Some((300 * 1024 - 10, 0)),
    )
    .await
    .unwrap();
    assert_eq!(tail, &data[data.len() - 10..]);

    let bad = get(&mut app.client, "originals/ab/photo.jpg", Some((50, 10)))
        .await
        .unwrap_err();
    assert_eq!(bad.code(), Code::InvalidArgument);

    app.client
        .delete_object(pb::DeleteObjectRequest {
            key: "originals/ab/photo.jpg".into(),
        })
        .await
        .unwrap();
    let gone = app
        .client
        .head_object(pb::HeadObjectRequest {
            key: "originals/ab/photo.jpg".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(gone.code(), Code::NotFound);
    let gone = get(&mut app.client, "originals/ab/photo.jpg", None)
        .await
        .unwrap_err();
    assert_eq!(gone.code(), Code::NotFound);
}

#[tokio::test]
async fn plain_objects_get_no_immutable_cache_control() {
    let s3 = TestS3::start().await.unwrap();
    let mut app = spawn_app(config(&s3.endpoint())).await;
    put(&mut app.client, header("tmp/upload", ""), b"hello")
        .await
        .unwrap();
    let head = s3
        .client()
        .head_object()
        .bucket(photos_testkit::s3::BUCKET)
        .key("tmp/upload")
        .send()
        .await
        .unwrap();
    assert_eq!(head.cache_control(), None);
    assert_eq!(head.content_type(), Some("application/octet-stream"));
}

#[tokio::test]
async fn a_wrong_sha256_writes_nothing() {
    let s3 = TestS3::start().await.unwrap();
    let mut app = spawn_app(config(&s3.endpoint())).await;
    let mut h = header("originals/x.jpg", "image/jpeg");
    h.sha256 = helpers::sha256_hex(b"something else");
    let err = put(&mut app.client, h, b"these bytes").await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(
        err.message().contains("sha256 mismatch"),
        "{}",
        err.message()
    );
    assert!(s3_keys(&s3.client(), "").await.is_empty());

    let mut h = header("originals/x.jpg", "image/jpeg");
    h.sha256 = "abc".into();
    let err = put(&mut app.client, h, b"these bytes").await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("sha256"), "{}", err.message());
}

#[tokio::test]
async fn the_header_must_come_first() {
    let s3 = TestS3::start().await.unwrap();
    let mut app = spawn_app(config(&s3.endpoint())).await;
    let msgs = vec![pb::PutObjectRequest {
        part: Some(pb::put_object_request::Part::Chunk(b"data".to_vec())),
    }];
    let err = app
        .client
        .put_object(futures::stream::iter(msgs))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("header"), "{}", err.message());
}

#[tokio::test]
async fn traversal_and_unmanaged_keys_are_rejected_everywhere() {
    let s3 = TestS3::start().await.unwrap();
    let mut app = spawn_app(config(&s3.endpoint())).await;
    let bad_keys = [
        "../originals/a.jpg",
        "originals/../../etc/passwd",
        "/originals/a.jpg",
        "originals/a\u{0}.jpg",
        "originals/a\r\nx",
        "secrets/a.jpg",
        "originals/./a.jpg",
        "",
    ];
    for key in bad_keys {
        let err = put(&mut app.client, header(key, "image/jpeg"), b"x")
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "put {key:?}");
        let err = get(&mut app.client, key, None).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "get {key:?}");
        let err = app
            .client
            .head_object(pb::HeadObjectRequest { key: key.into() })
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "head {key:?}");
        let err = app
            .client
            .delete_object(pb::DeleteObjectRequest { key: key.into() })
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "delete {key:?}");
        let err = app
            .client
            .delete_objects(pb::DeleteObjectsRequest {
                keys: vec!["tmp/fine".into(), key.into()],
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "delete many {key:?}");
        let err = app
            .client
            .get_object_url(pb::GetObjectUrlRequest {
                key: key.into(),
                kind: pb::UrlKind::S3Presigned as i32,
                expires_in_seconds: 60,
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "url {key:?}");
        let err = app
            .client
            .copy_objects(pb::CopyObjectsRequest {
                pairs: vec![pb::CopyPair {
                    source_key: "tmp/fine".into(),
                    destination_key: key.into(),
                }],
                storage_class: 0,
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "copy {key:?}");
    }
    let err = app
        .client
        .list_objects(pb::ListObjectsRequest {
            prefix: "../".into(),
            older_than_days: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(
        s3_keys(&s3.client(), "").await.is_empty(),
        "nothing was written"
    );
}

#[tokio::test]
async fn listing_filters_by_prefix_and_age() {
    let s3 = TestS3::start().await.unwrap();
    let mut app = spawn_app(config(&s3.endpoint())).await;
    helpers::seed_objects(&s3.client(), "tmp/a/", 1500).await;
    helpers::seed_objects(&s3.client(), "tmp/b/", 3).await;
    let list = |prefix: &str, days: u32| pb::ListObjectsRequest {
        prefix: prefix.into(),
        older_than_days: days,
    };
    let mut stream = app
        .client
        .list_objects(list("tmp/a/", 0))
        .await
        .unwrap()
        .into_inner();
    let mut keys = Vec::new();
    let mut pages = 0;
    while let Some(page) = stream.next().await {
        pages += 1;
        keys.extend(page.unwrap().objects.into_iter().map(|o| o.key));
    }
    assert_eq!(keys.len(), 1500);
    assert!(keys.iter().all(|k| k.starts_with("tmp/a/")));
    assert_eq!(pages, 2, "streamed a page at a time (1000 per S3 page)");

    // Everything was written just now: nothing is older than a day.
    let mut stream = app
        .client
        .list_objects(list("tmp/", 1))
        .await
        .unwrap()
        .into_inner();
    assert!(stream.next().await.is_none());
}

async fn listed(
    client: &mut helpers::Client,
    prefix: &str,
    older_than_days: u32,
) -> Vec<pb::ObjectInfo> {
    let mut stream = client
        .list_objects(pb::ListObjectsRequest {
            prefix: prefix.into(),
            older_than_days,
        })
        .await
        .unwrap()
        .into_inner();
    let mut objects = Vec::new();
    while let Some(page) = stream.next().await {
        objects.extend(page.unwrap().objects);
    }
    objects.sort_by(|a, b| a.key.cmp(&b.key));
    objects
}

/// The age filter is compared with the Last-Modified the store reports. s3s-fs reports each
/// file's mtime, so objects are aged by setting it: 40 days, 10 days and an hour, and new.
#[tokio::test]
async fn the_age_filter_follows_the_stores_last_modified() {
    use std::time::{Duration, SystemTime};
    let s3 = TestS3::start().await.unwrap();
    let mut app = spawn_app(config(&s3.endpoint())).await;
    let keys = helpers::seed_objects(&s3.client(), "tmp/age/", 9).await;
    let day = Duration::from_secs(86_400);
    let now = SystemTime::now();
    let mut modified = Vec::new();
    for (i, key) in keys.iter().enumerate() {
        let age = match i / 3 {
            0 => 40 * day,
            1 => 10 * day + Duration::from_secs(3600),
            _ => Duration::ZERO,
        };
        let at = now - age;
        std::fs::File::options()
            .write(true)
            .open(s3.object_path(key))
            .unwrap()
            .set_modified(at)
            .unwrap();
        modified.push(at.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs() as i64);
    }
    let keys_of = |objects: Vec<pb::ObjectInfo>| -> Vec<String> {
        objects.into_iter().map(|o| o.key).collect()
    };
    assert_eq!(
        keys_of(listed(&mut app.client, "tmp/", 30).await),
        keys[0..3]
    );
    assert_eq!(
        keys_of(listed(&mut app.client, "tmp/", 10).await),
        keys[0..6]
    );
    assert_eq!(
        keys_of(listed(&mut app.client, "tmp/", 11).await),
        keys[0..3],
        "10 days and an hour is not older than 11 days"
    );
    assert!(listed(&mut app.client, "tmp/", 41).await.is_empty());
    let all = listed(&mut app.client, "tmp/age/", 0).await;
    assert_eq!(keys_of(all.clone()), keys);
    for (object, secs) in all.iter().zip(&modified) {
        let reported = object
            .last_modified
            .as_ref()
            .expect("last_modified")
            .seconds;
        assert!(
            (reported - secs).abs() <= 1,
            "{}: {reported} vs {secs}",
            object.key
        );
    }
}

/// STANDARD → STANDARD_IA → GLACIER by copy-in-place, against moto (SeaweedFS has no GLACIER):
/// the class changes, the bytes' metadata stays, and an archived object is refused on read.
#[tokio::test]
async fn storage_class_moves_down_to_glacier_on_moto() {
    let moto = helpers::Moto::start().await;
    let mut app = spawn_app(config(&moto.endpoint())).await;
    let data = helpers::bytes(20_000, 5);
    let key = "originals/cold.jpg";
    let mut h = header(key, "image/jpeg");
    h.content_addressed = true;
    put(&mut app.client, h, &data).await.unwrap();
    let head = async |client: &mut helpers::Client| {
        client
            .head_object(pb::HeadObjectRequest { key: key.into() })
            .await
            .unwrap()
            .into_inner()
            .object
            .unwrap()
    };
    assert_eq!(
        head(&mut app.client).await.storage_class,
        pb::StorageClass::Standard as i32
    );
    for class in [pb::StorageClass::StandardIa, pb::StorageClass::Glacier] {
        let out = app
            .client
            .set_storage_class(pb::SetStorageClassRequest {
                keys: vec![key.into()],
                storage_class: class as i32,
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!((out.changed, out.errors.len()), (1, 0), "{:?}", out.errors);
        let object = head(&mut app.client).await;
        assert_eq!(object.storage_class, class as i32, "{class:?}");
        assert_eq!(object.sha256, helpers::sha256_hex(&data));
        assert_eq!(object.content_type, "image/jpeg");
        assert_eq!(object.cache_control, "public, max-age=31536000, immutable");
        assert_eq!(object.size, data.len() as u64);
    }
    let listing = listed(&mut app.client, "originals/", 0).await;
    assert_eq!(listing.len(), 1);
    assert_eq!(listing[0].storage_class, pb::StorageClass::Glacier as i32);

    let err = get(&mut app.client, key, None).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    assert!(err.message().contains("restore"), "{}", err.message());
}

#[tokio::test]
async fn copies_and_storage_class_changes_on_seaweedfs() {
    let s3 = photos_testkit::s3::SeaweedFs::start().await.unwrap();
    let mut cfg = config(&s3.endpoint());
    // Small thresholds so the multipart-copy path runs on a 12 MB object.
    cfg.transfer.multipart_copy_threshold_bytes = 10 * 1024 * 1024;
    cfg.transfer.copy_part_size_bytes = 5 * 1024 * 1024;
    let mut app = spawn_app(cfg).await;
    let small = helpers::bytes(10_000, 3);
    let large = helpers::bytes(12 * 1024 * 1024, 4);
    put(
        &mut app.client,
        header("originals/small", "image/png"),
        &small,
    )
    .await
    .unwrap();
    let mut h = header("originals/large", "image/jpeg");
    h.content_addressed = true;
    put(&mut app.client, h, &large).await.unwrap();

    let out = app
        .client
        .copy_objects(pb::CopyObjectsRequest {
            pairs: vec![
                pb::CopyPair {
                    source_key: "originals/small".into(),
                    destination_key: "variants/small".into(),
                },
                pb::CopyPair {
                    source_key: "originals/large".into(),
                    destination_key: "variants/large".into(),
                },
                pb::CopyPair {
                    source_key: "originals/missing".into(),
                    destination_key: "variants/missing".into(),
                },
            ],
            storage_class: 0,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(out.copied, 2);
    assert_eq!(out.errors.len(), 1);
    assert_eq!(out.errors[0].key, "originals/missing");
    assert_eq!(out.errors[0].code, "not_found");

    let (_, body) = get(&mut app.client, "variants/small", None).await.unwrap();
    assert!(body == small);
    let (info, body) = get(&mut app.client, "variants/large", None).await.unwrap();
    assert!(body == large, "multipart copy is byte-identical");
    assert_eq!(info.content_type, "image/jpeg");
    assert_eq!(info.cache_control, "public, max-age=31536000, immutable");

    let out = app
        .client
        .set_storage_class(pb::SetStorageClassRequest {
            keys: vec!["variants/small".into()],
            storage_class: pb::StorageClass::StandardIa as i32,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!((out.changed, out.errors.len()), (1, 0), "{:?}", out.errors);
    let head = app
        .client
        .head_object(pb::HeadObjectRequest {
            key: "variants/small".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .object
        .unwrap();
    assert_eq!(head.storage_class, pb::StorageClass::StandardIa as i32);
    let (_, body) = get(&mut app.client, "variants/small", None).await.unwrap();
    assert!(body == small, "copy-in-place keeps the bytes");

    let err = app
        .client
        .set_storage_class(pb::SetStorageClassRequest {
            keys: vec!["variants/small".into()],
            storage_class: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
}
