//! The harness starts real servers, they are reachable, and they are gone after drop.

use std::time::Duration;

use photos_testkit::{otlp, postgres, redis as tk_redis, s3};
use redis::AsyncCommands;

#[tokio::test]
async fn a_postgres_database_per_test_is_created_usable_and_dropped() {
    let db = postgres::TestDatabase::create().await.unwrap();
    let name = db.name().to_owned();
    let pool = sqlx::PgPool::connect(db.url()).await.unwrap();
    sqlx::query("CREATE TABLE t (id int primary key)")
        .execute(&pool)
        .await
        .unwrap();
    sqlx::query("INSERT INTO t VALUES (1), (2)")
        .execute(&pool)
        .await
        .unwrap();
    let (n,): (i64,) = sqlx::query_as("SELECT count(*) FROM t")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(n, 2);
    assert!(postgres::database_exists(&name).await.unwrap());
    // Dropping the database while the pool is still open must work (WITH FORCE).
    drop(db);
    assert!(!postgres::database_exists(&name).await.unwrap());
    pool.close().await;
}

#[tokio::test]
async fn two_test_databases_are_isolated() {
    let (a, b) = (
        postgres::TestDatabase::create().await.unwrap(),
        postgres::TestDatabase::create().await.unwrap(),
    );
    assert_ne!(a.name(), b.name());
    let pa = sqlx::PgPool::connect(a.url()).await.unwrap();
    let pb = sqlx::PgPool::connect(b.url()).await.unwrap();
    sqlx::query("CREATE TABLE only_in_a (x int)")
        .execute(&pa)
        .await
        .unwrap();
    let missing = sqlx::query("SELECT * FROM only_in_a").execute(&pb).await;
    assert!(missing.is_err(), "table leaked across test databases");
    pa.close().await;
    pb.close().await;
}

#[tokio::test]
async fn a_private_redis_starts_answers_and_stops() {
    let mut server = tk_redis::RedisServer::start().await.unwrap();
    let client = redis::Client::open(server.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let _: () = conn.set("k", "v").await.unwrap();
    let v: String = conn.get("k").await.unwrap();
    assert_eq!(v, "v");
    server.kill();
    assert!(
        tokio::net::TcpStream::connect(("127.0.0.1", server.port()))
            .await
            .is_err()
    );
    server.restart().await.unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let v: Option<String> = conn.get("k").await.unwrap();
    assert_eq!(v, None, "nothing persists across a restart");
    let port = server.port();
    drop(server);
    assert!(
        tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
    );
}

#[tokio::test]
async fn a_redis_cluster_of_three_masters_and_three_replicas_serves_every_slot() {
    let cluster = tk_redis::RedisCluster::start().await.unwrap();
    assert_eq!(cluster.masters().await.unwrap().len(), 3);
    let client = redis::cluster::ClusterClient::new(cluster.node_urls()).unwrap();
    let mut conn = client.get_async_connection().await.unwrap();
    // Enough keys to land on every master.
    for i in 0..200 {
        let _: () = conn.set(format!("key:{i}"), i).await.unwrap();
    }
    for i in 0..200 {
        let v: i32 = conn.get(format!("key:{i}")).await.unwrap();
        assert_eq!(v, i);
    }
    let ports = cluster.ports().to_vec();
    drop(cluster);
    for p in ports {
        assert!(
            tokio::net::TcpStream::connect(("127.0.0.1", p))
                .await
                .is_err(),
            "node {p} still up"
        );
    }
}

#[tokio::test]
async fn the_in_process_s3_server_stores_objects_and_checks_signatures() {
    let server = s3::TestS3::start().await.unwrap();
    let client = server.client();
    client
        .put_object()
        .bucket(s3::BUCKET)
        .key("originals/a.jpg")
        .body(aws_sdk_s3::primitives::ByteStream::from_static(b"bytes"))
        .send()
        .await
        .unwrap();
    let got = client
        .get_object()
        .bucket(s3::BUCKET)
        .key("originals/a.jpg")
        .send()
        .await
        .unwrap();
    assert_eq!(
        got.body.collect().await.unwrap().into_bytes().as_ref(),
        b"bytes"
    );

    // A client with the wrong secret is refused: the server really verifies SigV4.
    let credentials =
        aws_sdk_s3::config::Credentials::new(s3::ACCESS_KEY, "wrong-secret", None, None, "t");
    let bad = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::new()
            .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
            .region(aws_sdk_s3::config::Region::new(s3::REGION))
            .endpoint_url(server.endpoint())
            .force_path_style(true)
            .credentials_provider(credentials)
            .build(),
    );
    assert!(
        bad.get_object()
            .bucket(s3::BUCKET)
            .key("originals/a.jpg")
            .send()
            .await
            .is_err()
    );
    let endpoint = server.endpoint();
    drop(server);
    let addr = endpoint.trim_start_matches("http://").to_owned();
    // The listener closes once the accept loop sees the stop.
    let mut closed = false;
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(&addr).await.is_err() {
            closed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(closed, "local S3 still listening after drop");
}

#[tokio::test]
async fn seaweedfs_starts_and_round_trips_objects_and_lifecycle_rules() {
    use aws_sdk_s3::types::{
        BucketLifecycleConfiguration, ExpirationStatus, LifecycleExpiration, LifecycleRule,
        LifecycleRuleFilter,
    };
    let server = s3::SeaweedFs::start().await.unwrap();
    let client = server.client();
    client
        .put_object()
        .bucket(s3::BUCKET)
        .key("variants/x.webp")
        .body(aws_sdk_s3::primitives::ByteStream::from_static(b"webp"))
        .send()
        .await
        .unwrap();
    let got = client
        .get_object()
        .bucket(s3::BUCKET)
        .key("variants/x.webp")
        .send()
        .await
        .unwrap();
    assert_eq!(
        got.body.collect().await.unwrap().into_bytes().as_ref(),
        b"webp"
    );

    let rule = LifecycleRule::builder()
        .id("expire-tmp")
        .filter(LifecycleRuleFilter::builder().prefix("tmp/").build())
        .status(ExpirationStatus::Enabled)
        .expiration(LifecycleExpiration::builder().days(7).build())
        .build()
        .unwrap();
    client
        .put_bucket_lifecycle_configuration()
        .bucket(s3::BUCKET)
        .lifecycle_configuration(
            BucketLifecycleConfiguration::builder()
                .rules(rule)
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    let rules = client
        .get_bucket_lifecycle_configuration()
        .bucket(s3::BUCKET)
        .send()
        .await
        .unwrap();
    let rules = rules.rules();
    assert_eq!(rules.len(), 1);
    assert_eq!(rules[0].expiration().and_then(|e| e.days()), Some(7));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_otlp_receiver_collects_exported_spans() {
    use opentelemetry::trace::{Tracer, TracerProvider};
    let mut receiver = otlp::start().await.unwrap();
    let provider = fake_opentelemetry_collector::setup_tracer_provider(&receiver).await;
    provider.tracer("harness").in_span("harness-span", |_| {});
    // The flush blocks its thread until the receiver (on this runtime) has answered.
    let provider = tokio::task::spawn_blocking(move || {
        provider.force_flush().unwrap();
        provider
    })
    .await
    .unwrap();
    let spans = receiver.exported_spans(1, Duration::from_secs(10)).await;
    assert!(spans.iter().any(|s| s.name == "harness-span"), "{spans:#?}");
    tokio::task::spawn_blocking(move || provider.shutdown())
        .await
        .unwrap()
        .unwrap();
}
