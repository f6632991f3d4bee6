//! The cache-admin service: warm, invalidate and report on the shared cache (issue "Cache
//! library and cache-admin service").

pub mod config;
pub mod error;

use std::future::Future;
use std::net::SocketAddr;

use photos_proto::cache_admin::v1::cache_admin_service_server::{
    CacheAdminService, CacheAdminServiceServer,
};
use photos_proto::catalog::v1::catalog_service_client::CatalogServiceClient;
use photos_runtime::client::Channel;
use photos_runtime::server::{BoundServer, ServerBuilder};

pub use config::CacheAdminConfig;
pub use error::CacheAdminError;

/// RPCs answer UNIMPLEMENTED through the generated default stubs until their issue lands.
struct CacheAdminGrpc {
    #[allow(dead_code)]
    catalog: CatalogServiceClient<Channel>,
}

#[tonic::async_trait]
impl CacheAdminService for CacheAdminGrpc {}

pub struct Application {
    server: BoundServer,
    redis_nodes: Vec<redis::Client>,
}

pub async fn build(config: CacheAdminConfig) -> Result<Application, CacheAdminError> {
    let catalog = CatalogServiceClient::new(Channel::connect_lazy(&config.catalog)?);
    let redis_nodes = std::iter::once(&config.redis.url)
        .chain(config.redis.cluster_nodes.iter())
        .filter(|u| !u.is_empty())
        .map(|u| redis::Client::open(u.expose()))
        .collect::<Result<Vec<_>, _>>()?;
    let service = CacheAdminServiceServer::new(CacheAdminGrpc { catalog })
        .max_decoding_message_size(config.server.max_message_bytes);
    let server = ServerBuilder::new("cache-admin", config.server.clone())
        .add_service(service)
        .descriptor(photos_proto::cache_admin::v1::FILE_DESCRIPTOR_SET)
        .bind()
        .await?;
    Ok(Application {
        server,
        redis_nodes,
    })
}

async fn ping_all(nodes: &[redis::Client]) -> Result<(), redis::RedisError> {
    for node in nodes {
        let mut conn = node.get_multiplexed_async_connection().await?;
        let _: String = redis::cmd("PING").query_async(&mut conn).await?;
    }
    Ok(())
}

impl Application {
    pub fn grpc_addr(&self) -> SocketAddr {
        self.server.grpc_addr()
    }

    pub fn admin_addr(&self) -> SocketAddr {
        self.server.admin_addr()
    }

    /// Serves until `shutdown` resolves, then drains. SERVING once every configured Redis node
    /// answers PING (at once with the in-process cache).
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<(), CacheAdminError> {
        let nodes = self.redis_nodes;
        self.server
            .run(
                move || {
                    let nodes = nodes.clone();
                    async move { ping_all(&nodes).await }
                },
                shutdown,
            )
            .await?;
        Ok(())
    }
}
