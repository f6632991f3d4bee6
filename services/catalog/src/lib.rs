//! The catalog service: albums and photos on PostgreSQL (or the embedded SQLite database).

pub mod cache;
pub mod catalog;
pub mod config;
mod encoded;
pub mod error;
mod grpc;
pub mod jobs;
pub mod model;
pub mod store;
pub mod token;

use std::future::Future;
use std::net::SocketAddr;

use photos_runtime::server::{BoundServer, ServerBuilder};

use catalog::Catalog;
pub use config::CatalogConfig;
pub use error::CatalogError;
use store::Store;
use token::TokenKey;

pub struct Application {
    server: BoundServer,
    store: Store,
    jobs: jobs::Hosted,
}

/// Binds the ports and prepares the pool; nothing is served until `run_until_stopped`.
pub async fn build(config: CatalogConfig) -> Result<Application, CatalogError> {
    let store = Store::connect_lazy(&config.database)?;
    let secret = config.page_tokens.secret.expose();
    let tokens = if secret.is_empty() {
        // Per-process key: fine for one instance; replicas must share page_tokens.secret.
        TokenKey::new(uuid::Uuid::new_v4().as_bytes())
    } else {
        TokenKey::new(secret.as_bytes())
    };
    let cache = cache::CatalogCache::connect(&config.cache).await?;
    let catalog = Catalog::new(store.clone(), tokens).with_cache(cache.clone());
    let jobs = jobs::Hosted::new(
        &store,
        catalog.clone(),
        config.jobs.clone(),
        config.upstreams(),
    );
    let service = encoded::CatalogService::new(
        grpc::CatalogGrpc { catalog },
        config.server.max_message_bytes,
    );
    let server = ServerBuilder::new("catalog", config.server.clone())
        .add_service(service)
        .descriptor(photos_proto::catalog::v1::FILE_DESCRIPTOR_SET)
        .add_service(jobs.service())
        .descriptor(photos_proto::jobs::v1::FILE_DESCRIPTOR_SET)
        .bind()
        .await?;
    server
        .metrics()
        .with_registry(|registry| store.register_metrics(registry));
    cache.report_to(&server.reporter());
    Ok(Application {
        server,
        store,
        jobs,
    })
}

impl Application {
    pub fn grpc_addr(&self) -> SocketAddr {
        self.server.grpc_addr()
    }

    pub fn admin_addr(&self) -> SocketAddr {
        self.server.admin_addr()
    }

    /// Where the bulk jobs find media, storage and cache-admin, when only known after build.
    pub fn set_job_upstreams(&mut self, upstreams: jobs::UpstreamConfigs) {
        self.jobs.set_upstreams(upstreams);
    }

    /// Serves until `shutdown` resolves, then drains. SERVING once migrations have run and the
    /// database answers.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<(), CatalogError> {
        let store = self.store;
        let jobs = self.jobs;
        tracing::info!(backend = store.backend(), "catalog store configured");
        let shutdown = jobs.on_shutdown(shutdown);
        let readiness = {
            let migrate_jobs = jobs.migration_fn();
            move || {
                let store = store.clone();
                let migrate_jobs = migrate_jobs();
                async move {
                    store.migrate_and_check().await?;
                    migrate_jobs.await.map_err(CatalogError::from)
                }
            }
        };
        jobs.run_alongside(self.server.run(readiness, shutdown))
            .await?;
        Ok(())
    }
}
