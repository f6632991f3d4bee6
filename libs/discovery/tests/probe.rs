//! The container health probe against real servers: a tonic grpc.health.v1 server and an HTTP
//! server, checked through the built `photos-health-probe` binary's exit status.

use std::net::SocketAddr;

use axum::Router;
use axum::http::StatusCode;
use axum::routing::get;
use tokio_stream::wrappers::TcpListenerStream;
use tonic_health::ServingStatus;
use tonic_health::server::health_reporter;

async fn probe(target: &str) -> i32 {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_photos-health-probe"))
        .arg(target)
        .output()
        .await
        .unwrap()
        .status
        .code()
        .unwrap()
}

async fn grpc_server() -> (SocketAddr, tonic_health::server::HealthReporter) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (reporter, svc) = health_reporter();
    reporter
        .set_service_status("photos.test.v1.Svc", ServingStatus::Serving)
        .await;
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(svc)
            .serve_with_incoming(TcpListenerStream::new(listener)),
    );
    (addr, reporter)
}

#[tokio::test]
async fn grpc_probe_exit_status_follows_the_serving_status() {
    let (addr, reporter) = grpc_server().await;
    assert_eq!(probe(&format!("grpc://{addr}")).await, 0);
    assert_eq!(probe(&format!("grpc://{addr}/photos.test.v1.Svc")).await, 0);
    // Unknown service: NOT_FOUND from the server, unhealthy.
    assert_eq!(
        probe(&format!("grpc://{addr}/photos.test.v1.Other")).await,
        1
    );
    reporter
        .set_service_status("", ServingStatus::NotServing)
        .await;
    assert_eq!(probe(&format!("grpc://{addr}")).await, 1);
    reporter
        .set_service_status("", ServingStatus::Serving)
        .await;
    assert_eq!(probe(&format!("grpc://{addr}")).await, 0);
}

#[tokio::test]
async fn http_probe_accepts_2xx_only_and_bad_targets_exit_2() {
    let app = Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/down", get(|| async { StatusCode::SERVICE_UNAVAILABLE }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    assert_eq!(probe(&format!("http://{addr}/healthz")).await, 0);
    assert_eq!(probe(&format!("http://{addr}/down")).await, 1);
    assert_eq!(probe(&format!("http://{addr}/missing")).await, 1);
    assert_eq!(probe("tcp://127.0.0.1:1").await, 2);

    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closed = listener.local_addr().unwrap();
    drop(listener);
    assert_eq!(probe(&format!("grpc://{closed}")).await, 1);
}
