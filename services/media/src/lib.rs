//! The media service: decodes originals and derives every variant (issue "Media service").

pub mod config;
pub mod error;
mod grpc;
mod processor;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use photos_proto::media::v1::media_service_server::MediaServiceServer;
use photos_proto::storage::v1::storage_service_client::StorageServiceClient;
use photos_runtime::client::Channel;
use photos_runtime::server::{BoundServer, ServerBuilder};

pub use config::MediaConfig;
pub use error::MediaError;

pub struct Application {
    server: BoundServer,
}

pub async fn build(config: MediaConfig) -> Result<Application, MediaError> {
    let storage = StorageServiceClient::new(Channel::connect_lazy(&config.storage)?);
    // Originals arrive as streams of chunks, so the per-message limit only bounds one chunk;
    // it is raised above tonic's 4 MiB default on purpose (clients may send 4 MiB chunks plus
    // framing), and responses carry descriptors, never image bytes.
    let storage = storage
        .max_decoding_message_size(config.server.max_message_bytes)
        .max_encoding_message_size(config.server.max_message_bytes);
    let processor = Arc::new(processor::Processor::new(&config.pipeline));
    let service = MediaServiceServer::new(grpc::MediaGrpc {
        storage,
        processor: processor.clone(),
        upload_chunk_bytes: config.pipeline.upload_chunk_bytes,
    })
    .max_decoding_message_size(config.server.max_message_bytes)
    .max_encoding_message_size(config.server.max_message_bytes);
    let server = ServerBuilder::new("media", config.server.clone())
        .add_service(service)
        .descriptor(photos_proto::media::v1::FILE_DESCRIPTOR_SET)
        .bind()
        .await?;
    server
        .metrics()
        .with_registry(|r| processor.register_metrics(r));
    Ok(Application { server })
}

impl Application {
    pub fn grpc_addr(&self) -> SocketAddr {
        self.server.grpc_addr()
    }

    pub fn admin_addr(&self) -> SocketAddr {
        self.server.admin_addr()
    }

    /// Serves until `shutdown` resolves, then drains. Storage is reached per call, so media is
    /// ready at once; a storage outage surfaces as UNAVAILABLE on the calls that need it.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<(), MediaError> {
        self.server
            .run(
                || async { Ok::<(), std::convert::Infallible>(()) },
                shutdown,
            )
            .await?;
        Ok(())
    }
}
