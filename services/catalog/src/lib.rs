//! The catalog service: albums and photos on PostgreSQL (or the embedded SQLite database).

pub mod config;
pub mod error;
mod grpc;
pub mod store;

use std::future::Future;
use std::net::SocketAddr;

use photos_proto::catalog::v1::catalog_service_server::CatalogServiceServer;
use photos_runtime::server::{BoundServer, ServerBuilder};

pub use config::CatalogConfig;
pub use error::CatalogError;
use store::Store;

pub struct Application {
    server: BoundServer,
    store: Store,
}

/// Binds the ports and prepares the pool; nothing is served until `run_until_stopped`.
pub async fn build(config: CatalogConfig) -> Result<Application, CatalogError> {
    let store = Store::connect_lazy(&config.database)?;
    let service = CatalogServiceServer::new(grpc::CatalogGrpc {
        store: store.clone(),
    })
    .max_decoding_message_size(config.server.max_message_bytes);
    let server = ServerBuilder::new("catalog", config.server.clone())
        .add_service(service)
        .descriptor(photos_proto::catalog::v1::FILE_DESCRIPTOR_SET)
        .bind()
        .await?;
    Ok(Application { server, store })
}

impl Application {
    pub fn grpc_addr(&self) -> SocketAddr {
        self.server.grpc_addr()
    }

    pub fn admin_addr(&self) -> SocketAddr {
        self.server.admin_addr()
    }

    /// Serves until `shutdown` resolves, then drains. SERVING once the database answers.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<(), CatalogError> {
        let store = self.store;
        tracing::info!(backend = store.backend(), "catalog store configured");
        self.server
            .run(
                move || {
                    let store = store.clone();
                    async move { store.check().await }
                },
                shutdown,
            )
            .await?;
        Ok(())
    }
}
