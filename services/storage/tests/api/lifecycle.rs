use photos_proto::storage::v1 as pb;
use tonic::Code;

use crate::helpers::{config, spawn_app};

async fn round_trip(endpoint: &str, rules: Vec<pb::LifecycleRule>) {
    let mut app = spawn_app(config(endpoint)).await;
    let empty = app
        .client
        .get_lifecycle(pb::GetLifecycleRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(empty.rules.is_empty());

    app.client
        .put_lifecycle(pb::PutLifecycleRequest {
            rules: rules.clone(),
        })
        .await
        .unwrap();
    let mut got = app
        .client
        .get_lifecycle(pb::GetLifecycleRequest {})
        .await
        .unwrap()
        .into_inner()
        .rules;
    got.sort_by(|a, b| a.id.cmp(&b.id));
    assert_eq!(got, rules);

    app.client
        .delete_lifecycle(pb::DeleteLifecycleRequest {})
        .await
        .unwrap();
    let after = app
        .client
        .get_lifecycle(pb::GetLifecycleRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(after.rules.is_empty());
}

fn tiering() -> pb::LifecycleRule {
    pb::LifecycleRule {
        id: "originals-tiering".into(),
        prefix: "originals/".into(),
        transition_to_ia_days: 30,
        transition_to_glacier_days: 90,
        expiration_days: 365,
        abort_incomplete_multipart_days: 0,
    }
}

fn cleanup() -> pb::LifecycleRule {
    pb::LifecycleRule {
        id: "tmp-cleanup".into(),
        prefix: "tmp/".into(),
        transition_to_ia_days: 0,
        transition_to_glacier_days: 0,
        expiration_days: 2,
        abort_incomplete_multipart_days: 1,
    }
}

/// SeaweedFS stores expiration and abort-incomplete-multipart rules (and answers
/// NotImplemented to storage-class transitions, which it does not have).
#[tokio::test]
async fn expiration_rules_round_trip_on_seaweedfs() {
    let s3 = photos_testkit::s3::SeaweedFs::start().await.unwrap();
    let mut other = cleanup();
    other.id = "variants-cleanup".into();
    other.prefix = "variants/".into();
    other.expiration_days = 400;
    round_trip(&s3.endpoint(), vec![cleanup(), other]).await;
}

/// The full rule set, transitions included, against moto, which stores them.
#[tokio::test]
async fn transition_rules_round_trip_on_moto() {
    let s3 = crate::helpers::Moto::start().await;
    round_trip(&s3.endpoint(), vec![tiering(), cleanup()]).await;
}

#[tokio::test]
async fn invalid_rules_are_refused_before_reaching_the_store() {
    let s3 = photos_testkit::s3::TestS3::start().await.unwrap();
    let mut app = spawn_app(config(&s3.endpoint())).await;
    let rule = |ia, glacier, expire, prefix: &str| pb::LifecycleRule {
        id: "r".into(),
        prefix: prefix.into(),
        transition_to_ia_days: ia,
        transition_to_glacier_days: glacier,
        expiration_days: expire,
        abort_incomplete_multipart_days: 0,
    };
    for (r, field) in [
        (rule(10, 0, 0, "originals/"), "transition_to_ia_days"),
        (rule(60, 40, 0, "originals/"), "transition_to_glacier_days"),
        (rule(30, 90, 60, "originals/"), "expiration_days"),
        (rule(0, 0, 0, "originals/"), "no step"),
        (rule(0, 0, 5, "../"), "prefix"),
    ] {
        let err = app
            .client
            .put_lifecycle(pb::PutLifecycleRequest { rules: vec![r] })
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument);
        assert!(err.message().contains(field), "{}", err.message());
    }
}
