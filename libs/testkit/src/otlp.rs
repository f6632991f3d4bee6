//! An in-process OTLP/gRPC receiver that collects exported spans.

pub use fake_opentelemetry_collector::{ExportedSpan, FakeCollectorServer};

/// Starts a receiver on `127.0.0.1:0`; its `endpoint()` goes into `telemetry.otlp_endpoint`.
pub async fn start() -> anyhow::Result<FakeCollectorServer> {
    FakeCollectorServer::start()
        .await
        .map_err(|e| anyhow::anyhow!("cannot start the OTLP receiver: {e}"))
}
