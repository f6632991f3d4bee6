use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use photos_proto::storage::v1 as pb;
use photos_runtime::Secret;
use photos_testkit::s3::TestS3;
use rsa::pkcs8::DecodePublicKey;
use rsa::{Pkcs1v15Sign, RsaPublicKey};
use sha1::{Digest, Sha1};
use tonic::Code;

use crate::helpers::{self, Client, config, header, put, raw_get, spawn_app};

const PRIVATE_KEY: &str = include_str!("fixtures/cloudfront-test-key.pem");
const PUBLIC_KEY: &str = include_str!("fixtures/cloudfront-test-key.pub.pem");

async fn url(
    client: &mut Client,
    key: &str,
    kind: pb::UrlKind,
    secs: u32,
) -> Result<pb::GetObjectUrlResponse, tonic::Status> {
    client
        .get_object_url(pb::GetObjectUrlRequest {
            key: key.into(),
            kind: kind as i32,
            expires_in_seconds: secs,
        })
        .await
        .map(|r| r.into_inner())
}

/// Flips one character of the signature in a SigV4 presigned URL.
fn tamper(url: &str) -> String {
    let at = url.find("X-Amz-Signature=").unwrap() + "X-Amz-Signature=".len();
    let mut bytes = url.as_bytes().to_vec();
    bytes[at] = if bytes[at] == b'0' { b'1' } else { b'0' };
    String::from_utf8(bytes).unwrap()
}

async fn presigned_urls_are_checked_by(endpoint: &str) {
    let mut app = spawn_app(config(endpoint)).await;
    let data = helpers::bytes(5000, 11);
    put(
        &mut app.client,
        header("originals/private.jpg", "image/jpeg"),
        &data,
    )
    .await
    .unwrap();

    let ok = url(
        &mut app.client,
        "originals/private.jpg",
        pb::UrlKind::S3Presigned,
        300,
    )
    .await
    .unwrap();
    let expire = ok.expire_time.unwrap().seconds;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    assert!((now + 295..=now + 305).contains(&expire), "expiry reported");
    let (status, body) = raw_get(&ok.url).await;
    assert_eq!(status, 200);
    assert!(body == data, "presigned GET returns the object");

    let (status, _) = raw_get(&tamper(&ok.url)).await;
    assert_eq!(status, 403, "a tampered signature is refused");
    let other_key = ok
        .url
        .replace("originals/private.jpg", "originals/other.jpg");
    let (status, _) = raw_get(&other_key).await;
    assert_eq!(status, 403, "a signature is bound to its key");

    let short = url(
        &mut app.client,
        "originals/private.jpg",
        pb::UrlKind::S3Presigned,
        1,
    )
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let (status, _) = raw_get(&short.url).await;
    assert_eq!(status, 403, "an expired URL is refused");
}

#[tokio::test]
async fn presigned_urls_work_until_they_expire_on_the_in_process_s3() {
    let s3 = TestS3::start().await.unwrap();
    presigned_urls_are_checked_by(&s3.endpoint()).await;
}

#[tokio::test]
async fn presigned_urls_work_until_they_expire_on_seaweedfs() {
    let s3 = photos_testkit::s3::SeaweedFs::start().await.unwrap();
    presigned_urls_are_checked_by(&s3.endpoint()).await;
}

#[tokio::test]
async fn expiry_is_bounded_by_the_configured_maximum() {
    let s3 = TestS3::start().await.unwrap();
    let mut cfg = config(&s3.endpoint());
    cfg.urls.max_expiry_seconds = 3600;
    let mut app = spawn_app(cfg).await;
    let err = url(
        &mut app.client,
        "originals/a.jpg",
        pb::UrlKind::S3Presigned,
        3601,
    )
    .await
    .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(
        err.message().contains("urls.max_expiry_seconds"),
        "{}",
        err.message()
    );
    let default = url(
        &mut app.client,
        "originals/a.jpg",
        pb::UrlKind::S3Presigned,
        0,
    )
    .await
    .unwrap();
    assert!(default.url.contains("X-Amz-Expires=900"), "{}", default.url);
    let err = url(
        &mut app.client,
        "originals/a.jpg",
        pb::UrlKind::Unspecified,
        0,
    )
    .await
    .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    // No CDN configured: public and CDN-signed URLs cannot be made.
    let err = url(&mut app.client, "originals/a.jpg", pb::UrlKind::Public, 0)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    let err = url(
        &mut app.client,
        "originals/a.jpg",
        pb::UrlKind::CdnSigned,
        60,
    )
    .await
    .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
}

#[tokio::test]
async fn cdn_urls_are_public_or_signed_with_the_cloudfront_key() {
    let s3 = TestS3::start().await.unwrap();
    let mut cfg = config(&s3.endpoint());
    cfg.urls.cdn_domain = "d111111abcdef8.cloudfront.net".into();
    cfg.urls.cloudfront_key_pair_id = "K2JCJMDEHXQW5F".into();
    cfg.urls.cloudfront_private_key_pem = Secret::new(PRIVATE_KEY);
    let mut app = spawn_app(cfg).await;

    let public = url(
        &mut app.client,
        "variants/ab/cd 1.webp",
        pb::UrlKind::Public,
        0,
    )
    .await
    .unwrap();
    assert_eq!(
        public.url,
        "https://d111111abcdef8.cloudfront.net/variants/ab/cd%201.webp"
    );
    assert!(public.expire_time.is_none());

    let signed = url(
        &mut app.client,
        "originals/ab/photo.jpg",
        pb::UrlKind::CdnSigned,
        600,
    )
    .await
    .unwrap();
    let (resource, query) = signed.url.split_once('?').unwrap();
    assert_eq!(
        resource,
        "https://d111111abcdef8.cloudfront.net/originals/ab/photo.jpg"
    );
    let params: std::collections::HashMap<_, _> = query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .collect();
    assert_eq!(params["Key-Pair-Id"], "K2JCJMDEHXQW5F");
    let expires: u64 = params["Expires"].parse().unwrap();
    assert_eq!(expires as i64, signed.expire_time.unwrap().seconds);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!((now + 595..=now + 605).contains(&expires));

    // What CloudFront does: rebuild the canned policy, undo its base64 variant, verify with
    // the public key.
    let policy = format!(
        r#"{{"Statement":[{{"Resource":"{resource}","Condition":{{"DateLessThan":{{"AWS:EpochTime":{expires}}}}}}}]}}"#
    );
    let sig = params["Signature"];
    assert!(!sig.contains(['+', '/', '=']), "URL-safe alphabet: {sig}");
    let standard: String = sig
        .chars()
        .map(|c| match c {
            '-' => '+',
            '_' => '=',
            '~' => '/',
            c => c,
        })
        .collect();
    let sig = base64::engine::general_purpose::STANDARD
        .decode(standard)
        .unwrap();
    let public_key = RsaPublicKey::from_public_key_pem(PUBLIC_KEY).unwrap();
    let digest = Sha1::digest(policy.as_bytes());
    public_key
        .verify(Pkcs1v15Sign::new::<Sha1>(), &digest, &sig)
        .expect("signature verifies with the public key");
    let other = Sha1::digest(policy.replace("photo.jpg", "other.jpg").as_bytes());
    assert!(
        public_key
            .verify(Pkcs1v15Sign::new::<Sha1>(), &other, &sig)
            .is_err(),
        "the signature covers the resource"
    );
}
