//! The metrics service: aggregates per-request reports from every replica into a performance
//! report, and exposes the same on its `/metrics` (issue "Metrics service and observability").

pub mod aggregate;
pub mod config;
pub mod error;
mod grpc;

use std::future::Future;
use std::net::SocketAddr;

use std::sync::Arc;

use photos_proto::metrics::v1::metrics_service_server::MetricsServiceServer;
use photos_runtime::server::{BoundServer, ServerBuilder};

pub use config::MetricsConfig;
pub use error::MetricsError;

pub struct Application {
    server: BoundServer,
}

pub async fn build(config: MetricsConfig) -> Result<Application, MetricsError> {
    let aggregator = Arc::new(aggregate::Aggregator::new(aggregate::Limits {
        retention_minutes: config.report.retention_minutes,
        top_n: config.report.top_n,
        slow_request: std::time::Duration::from_millis(config.report.slow_request_ms),
        n_plus_one_statements: config.report.n_plus_one_statements,
    }));
    let exported = grpc::Exported::default();
    let service = MetricsServiceServer::new(grpc::MetricsGrpc {
        aggregator,
        exported: exported.clone(),
    })
    .max_decoding_message_size(config.server.max_message_bytes);
    let server = ServerBuilder::new("metrics", config.server.clone())
        .add_service(service)
        .descriptor(photos_proto::metrics::v1::FILE_DESCRIPTOR_SET)
        .bind()
        .await?;
    // Families share their storage with their clones, so the service's copies feed the
    // registry the server serves on `/metrics`.
    server.metrics().with_registry(|r| exported.register(r));
    Ok(Application { server })
}

impl Application {
    pub fn grpc_addr(&self) -> SocketAddr {
        self.server.grpc_addr()
    }

    pub fn admin_addr(&self) -> SocketAddr {
        self.server.admin_addr()
    }

    /// Serves until `shutdown` resolves, then drains. It has no dependencies: ready at once.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<(), MetricsError> {
        self.server
            .run(
                || async { Ok::<(), std::convert::Infallible>(()) },
                shutdown,
            )
            .await?;
        Ok(())
    }
}
