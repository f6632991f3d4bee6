//! What the catalog reports to the metrics service (through the runtime's reporter): its slow
//! statements (SQL without values, duration, trace id) and its cache's counters.

use std::time::Duration;

use photos_proto::catalog::v1::GetAlbumRequest;
use photos_proto::metrics::v1::metrics_service_client::MetricsServiceClient;
use photos_proto::metrics::v1::{GetCacheStatsRequest, GetPerformanceReportRequest};
use photos_testkit::wait;

use crate::helpers::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_statements_and_cache_counters_reach_the_metrics_report() {
    let mut config = photos_metrics::MetricsConfig::default();
    config.server.grpc_port = 0;
    config.server.admin_port = 0;
    let metrics = photos_metrics::build(config).await.unwrap();
    let addr = metrics.grpc_addr();
    let (_stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(metrics.run_until_stopped(async {
        let _ = stopped.await;
    }));

    // Every statement counts as slow at a 0 ms threshold.
    let app = spawn_app_with(Backend::Sqlite, |c| {
        c.database.slow_statement_ms = 0;
        c.server.metrics_service = format!("http://{addr}");
        c.server.report_interval_ms = 50;
    })
    .await;
    let album = app.create_album("reported", true, 0).await;
    for _ in 0..2 {
        // A miss (two statements), then a hit.
        app.client()
            .get_album(GetAlbumRequest {
                id: album.id.clone(),
                photo_page_size: 0,
            })
            .await
            .unwrap();
    }

    let client = MetricsServiceClient::new(
        tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
            .unwrap()
            .connect()
            .await
            .unwrap(),
    );
    wait::until(
        "the catalog's slow statements and cache counters in the report",
        Duration::from_secs(20),
        Duration::from_millis(50),
        || {
            let mut client = client.clone();
            async move {
                let report = client
                    .get_performance_report(GetPerformanceReportRequest {
                        service: "catalog".into(),
                        window: None,
                    })
                    .await
                    .map_err(|e| e.to_string())?
                    .into_inner();
                let slow = report
                    .slowest_statements
                    .iter()
                    .find(|s| s.statement.contains("FROM albums a WHERE a.id = $1"))
                    .ok_or("no slow album statement yet")?;
                if slow.statement.contains("reported") {
                    return Err("values must not be in the report".to_string());
                }
                let caches = client
                    .get_cache_stats(GetCacheStatsRequest {})
                    .await
                    .map_err(|e| e.to_string())?
                    .into_inner();
                let default = caches
                    .caches
                    .iter()
                    .find(|c| c.service == "catalog" && c.cache_name == "default")
                    .ok_or("no catalog cache counters yet")?;
                if default.hits >= 1 && default.misses >= 1 {
                    Ok(())
                } else {
                    Err(format!("counters so far: {default:?}"))
                }
            }
        },
    )
    .await
    .unwrap();
}
