//! The storage service: every byte of originals and variants, in S3 or any S3-compatible store
//! (issue "Storage service").

pub mod config;
pub mod error;
mod grpc;
pub mod keys;
pub mod store;
pub mod sweep;
mod telemetry;
pub mod upload;
pub mod urls;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use photos_proto::storage::v1::storage_service_server::StorageServiceServer;
use photos_runtime::server::{BoundServer, ServerBuilder};
use tokio_util::sync::CancellationToken;

pub use config::StorageConfig;
pub use error::StorageError;
pub use store::s3_client;

use crate::config::S3Config;
use crate::error::describe;

pub struct Application {
    server: BoundServer,
    s3: aws_sdk_s3::Client,
    s3_config: S3Config,
    sweeper: sweep::Sweeper,
}

/// The `photos-storage` process: configuration from the environment, telemetry, the server
/// until SIGTERM. The binary is this call; the end-to-end tests that kill storage build their
/// own binary from it too (Cargo names only a test's own package's binaries to it).
pub fn process_main() -> std::process::ExitCode {
    photos_runtime::app::run_main("photos-storage", |config: StorageConfig| async move {
        build(config)
            .await?
            .run_until_stopped(photos_runtime::shutdown::signal())
            .await?;
        Ok(())
    })
}

pub async fn build(config: StorageConfig) -> Result<Application, StorageError> {
    let telemetry = telemetry::S3Telemetry::default();
    let s3 = store::s3_client_with(&config.s3, telemetry.clone()).await;
    let store = Arc::new(store::Store::new(s3.clone(), config.clone())?);
    let service = StorageServiceServer::new(grpc::StorageGrpc {
        store: store.clone(),
    })
    .max_decoding_message_size(config.server.max_message_bytes);
    let server = ServerBuilder::new("storage", config.server.clone())
        .add_service(service)
        .descriptor(photos_proto::storage::v1::FILE_DESCRIPTOR_SET)
        .bind()
        .await?;
    let sweeper = sweep::Sweeper {
        store,
        config: config.multipart_sweep.clone(),
        metrics: sweep::SweepMetrics::default(),
    };
    server.metrics().with_registry(|r| {
        telemetry.register(r);
        sweeper.metrics.register(r);
    });
    Ok(Application {
        server,
        s3,
        s3_config: config.s3,
        sweeper,
    })
}

/// Succeeds once the bucket is reachable (creating it first if configured to).
async fn check_bucket(s3: &aws_sdk_s3::Client, config: &S3Config) -> Result<(), StorageError> {
    match s3.head_bucket().bucket(&config.bucket).send().await {
        Ok(_) => Ok(()),
        Err(e)
            if config.create_bucket && e.as_service_error().is_some_and(|s| s.is_not_found()) =>
        {
            s3.create_bucket()
                .bucket(&config.bucket)
                .send()
                .await
                .map(|_| ())
                .map_err(describe)
        }
        Err(e) => Err(describe(e)),
    }
}

impl Application {
    pub fn grpc_addr(&self) -> SocketAddr {
        self.server.grpc_addr()
    }

    pub fn admin_addr(&self) -> SocketAddr {
        self.server.admin_addr()
    }

    /// Serves until `shutdown` resolves, then drains. SERVING once the bucket is reachable; the
    /// multipart sweep runs beside the server from then on and stops as soon as shutdown begins.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<(), StorageError> {
        let (s3, s3_config) = (self.s3, self.s3_config);
        let (ready_tx, ready_rx) = tokio::sync::watch::channel(false);
        let ready_tx = Arc::new(ready_tx);
        let stop = CancellationToken::new();
        let shutdown = {
            let stop = stop.clone();
            async move {
                shutdown.await;
                stop.cancel();
            }
        };
        let serve = async {
            let served = self
                .server
                .run(
                    move || {
                        let (s3, s3_config) = (s3.clone(), s3_config.clone());
                        let ready_tx = ready_tx.clone();
                        async move {
                            check_bucket(&s3, &s3_config).await?;
                            ready_tx.send_replace(true);
                            Ok::<(), StorageError>(())
                        }
                    },
                    shutdown,
                )
                .await;
            stop.cancel();
            served
        };
        let (served, ()) = tokio::join!(serve, self.sweeper.run(ready_rx, stop.clone()));
        served?;
        Ok(())
    }
}
