//! The metrics service: aggregates per-request reports from every replica into a performance
//! report (issue "Metrics service and observability").

pub mod config;
pub mod error;

use std::future::Future;
use std::net::SocketAddr;

use photos_proto::metrics::v1::metrics_service_server::{MetricsService, MetricsServiceServer};
use photos_runtime::server::{BoundServer, ServerBuilder};

pub use config::MetricsConfig;
pub use error::MetricsError;

/// RPCs answer UNIMPLEMENTED through the generated default stubs until their issue lands.
struct MetricsGrpc;

#[tonic::async_trait]
impl MetricsService for MetricsGrpc {}

pub struct Application {
    server: BoundServer,
}

pub async fn build(config: MetricsConfig) -> Result<Application, MetricsError> {
    let service = MetricsServiceServer::new(MetricsGrpc)
        .max_decoding_message_size(config.server.max_message_bytes);
    let server = ServerBuilder::new("metrics", config.server.clone())
        .add_service(service)
        .descriptor(photos_proto::metrics::v1::FILE_DESCRIPTOR_SET)
        .bind()
        .await?;
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
