//! Every S3 call the service makes is counted on `/metrics` (operations, retries, bytes), as
//! the SDK interceptor sees it.

use photos_testkit::faults::FaultProxy;
use photos_testkit::s3::TestS3;

use crate::helpers::{self, addr_of, config, get, header, put, spawn_app};

/// The value of the first `/metrics` line of `family` containing `label` (0 when absent).
fn value(metrics: &str, family: &str, label: &str) -> f64 {
    metrics
        .lines()
        .find(|l| l.starts_with(family) && l.contains(label))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test]
async fn s3_operations_bytes_and_retries_are_counted() {
    let s3 = TestS3::start().await.unwrap();
    let proxy = FaultProxy::start(addr_of(&s3.endpoint())).await.unwrap();
    let mut app = spawn_app(config(&proxy.endpoint())).await;
    let data = helpers::bytes(200 * 1024, 3);
    put(&mut app.client, header("tmp/a", ""), &data)
        .await
        .unwrap();
    let (_, back) = get(&mut app.client, "tmp/a", None).await.unwrap();
    assert_eq!(back, data);

    let (_, metrics) = photos_testkit::http::get(app.admin, "/metrics").await;
    let ops = "photos_storage_s3_operations_total{";
    assert_eq!(
        value(&metrics, ops, "operation=\"PutObject\",outcome=\"ok\""),
        1.0,
        "{metrics}"
    );
    assert_eq!(
        value(&metrics, ops, "operation=\"GetObject\",outcome=\"ok\""),
        1.0,
        "{metrics}"
    );
    assert!(value(&metrics, "photos_storage_s3_bytes_sent_total", "") >= data.len() as f64);
    assert!(value(&metrics, "photos_storage_s3_bytes_received_total", "") >= data.len() as f64);
    assert_eq!(
        value(&metrics, "photos_storage_s3_retries_total{", "PutObject"),
        0.0
    );

    // The connection dies inside the next upload's body: the SDK retries on a new one.
    proxy.cut_after(64 * 1024);
    put(&mut app.client, header("tmp/b", ""), &data)
        .await
        .unwrap();
    assert_eq!(proxy.cuts(), 1);
    let (_, metrics) = photos_testkit::http::get(app.admin, "/metrics").await;
    assert!(
        value(
            &metrics,
            "photos_storage_s3_retries_total{",
            "operation=\"PutObject\""
        ) >= 1.0,
        "{metrics}"
    );
    assert_eq!(
        value(&metrics, ops, "operation=\"PutObject\",outcome=\"ok\""),
        2.0
    );
}
