//! The performance report is fed by the services themselves: calls made through the mesh show
//! up in the metrics service's report with their statement counts, and a slow statement and a
//! slow request (thresholds set to zero, so every one is slow) are listed in it.

mod common;

use std::time::Duration;

use common::*;
use photos_mesh::{Mesh, MeshConfig};
use photos_proto::catalog::v1 as catalog;
use photos_proto::catalog::v1::catalog_service_client::CatalogServiceClient;
use photos_proto::metrics::v1 as metrics;
use photos_proto::metrics::v1::metrics_service_client::MetricsServiceClient;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_statements_and_slow_requests_reach_the_performance_report() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = MeshConfig::ephemeral(dir.path());
    config.catalog.database.slow_statement_ms = 0;
    config.metrics.report.slow_request_ms = 0;
    config.gateway.http.debug_headers = true;
    config.gateway.http.report_interval_ms = 50;
    for server in [
        &mut config.catalog.server,
        &mut config.media.server,
        &mut config.storage.server,
        &mut config.cache_admin.server,
    ] {
        server.slow_request_ms = 0;
        server.report_interval_ms = 50;
    }
    let mesh = Mesh::start(config).await.unwrap();
    wait_serving(mesh.addresses.catalog).await;
    wait_serving(mesh.addresses.metrics).await;

    let mut catalog = CatalogServiceClient::new(channel(mesh.addresses.catalog).await);
    let created = catalog
        .create_album(catalog::CreateAlbumRequest {
            title: "Report me".into(),
            owner_id: "alice".into(),
            ..Default::default()
        })
        .await
        .expect("create album");
    let statements: u32 = created
        .metadata()
        .get("x-db-query-count")
        .expect("x-db-query-count")
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(statements >= 1, "creating an album runs SQL");

    // Through the gateway: the statements it caused downstream come back in its headers.
    let (status, head) = http(mesh.addresses.gateway, "GET", "/api/v1/albums", "").await;
    assert_eq!(status, 200, "{head}");
    let header = |name: &str| {
        head.lines()
            .find_map(|l| {
                l.split_once(':')
                    .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            })
            .map(|(_, v)| v.trim().to_owned())
            .unwrap_or_else(|| panic!("no {name} in {head}"))
    };
    let gateway_statements: u32 = header("x-db-query-count").parse().unwrap();
    assert_eq!(
        gateway_statements, 1,
        "one statement for the album list page (a cache miss)"
    );
    let _: f64 = header("x-response-time").parse().unwrap();

    let mut reports = MetricsServiceClient::new(channel(mesh.addresses.metrics).await);
    let mut report = metrics::GetPerformanceReportResponse::default();
    // Reports arrive every 50 ms; the loop is bounded in count, not asserted on time.
    for _ in 0..400 {
        report = reports
            .get_performance_report(metrics::GetPerformanceReportRequest {
                service: "catalog".into(),
                window: None,
            })
            .await
            .unwrap()
            .into_inner();
        let has_rpc = report
            .rpcs
            .iter()
            .any(|r| r.rpc.ends_with("CatalogService/CreateAlbum"));
        if has_rpc && !report.slowest_statements.is_empty() && !report.slowest_requests.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let create = report
        .rpcs
        .iter()
        .find(|r| r.rpc.ends_with("CatalogService/CreateAlbum"))
        .unwrap_or_else(|| panic!("CreateAlbum missing from {report:#?}"));
    assert_eq!(create.count, 1);
    assert_eq!(create.error_rate, 0.0);
    assert_eq!(
        create.mean_db_statements,
        f64::from(statements),
        "the report counts the statements the response metadata announced"
    );
    let mut gateway = metrics::GetPerformanceReportResponse::default();
    for _ in 0..400 {
        gateway = reports
            .get_performance_report(metrics::GetPerformanceReportRequest {
                service: "gateway".into(),
                window: None,
            })
            .await
            .unwrap()
            .into_inner();
        if gateway.rpcs.iter().any(|r| r.rpc == "GET /api/v1/albums") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let list = gateway
        .rpcs
        .iter()
        .find(|r| r.rpc == "GET /api/v1/albums")
        .unwrap_or_else(|| panic!("the gateway's request is not in {gateway:#?}"));
    assert_eq!(list.count, 1);
    assert_eq!(list.mean_db_statements, f64::from(gateway_statements));
    assert!(
        report
            .slowest_statements
            .iter()
            .any(|s| s.statement.to_lowercase().contains("albums")),
        "a statement on albums is among the slowest: {:#?}",
        report.slowest_statements
    );
    assert!(
        report
            .slowest_requests
            .iter()
            .any(|r| r.service == "catalog" && r.rpc.ends_with("CreateAlbum")),
        "the call is among the slowest requests: {:#?}",
        report.slowest_requests
    );
    mesh.shutdown().await.unwrap();
}
