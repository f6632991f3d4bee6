//! The media service: decodes originals and derives every variant (issue "Media service").

pub mod config;
pub mod error;

use std::future::Future;
use std::net::SocketAddr;

use photos_proto::media::v1::media_service_server::{MediaService, MediaServiceServer};
use photos_proto::storage::v1::storage_service_client::StorageServiceClient;
use photos_runtime::client::Channel;
use photos_runtime::server::{BoundServer, ServerBuilder};

pub use config::MediaConfig;
pub use error::MediaError;

/// RPCs answer UNIMPLEMENTED through the generated default stubs until their issue lands.
struct MediaGrpc {
    #[allow(dead_code)]
    storage: StorageServiceClient<Channel>,
}

#[tonic::async_trait]
impl MediaService for MediaGrpc {}

pub struct Application {
    server: BoundServer,
}

pub async fn build(config: MediaConfig) -> Result<Application, MediaError> {
    let storage = StorageServiceClient::new(Channel::connect_lazy(&config.storage)?);
    let service = MediaServiceServer::new(MediaGrpc { storage })
        .max_decoding_message_size(config.server.max_message_bytes);
    let server = ServerBuilder::new("media", config.server.clone())
        .add_service(service)
        .descriptor(photos_proto::media::v1::FILE_DESCRIPTOR_SET)
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
