//! The cache-admin service: warm, invalidate and report on the shared cache (issue "Cache
//! library and cache-admin service").

pub mod config;
pub mod error;
mod grpc;
pub mod warm;

use std::future::Future;
use std::net::SocketAddr;

use photos_cache::{Cache, CacheConfig};
use photos_proto::cache_admin::v1::cache_admin_service_server::CacheAdminServiceServer;
use photos_proto::catalog::v1::catalog_service_client::CatalogServiceClient;
use photos_runtime::client::Channel;
use photos_runtime::server::{BoundServer, ServerBuilder};

pub use config::CacheAdminConfig;
pub use error::CacheAdminError;

pub struct Application {
    server: BoundServer,
    redis_nodes: Vec<redis::Client>,
}

/// The cache settings this service (and any service sharing the cache) derives from its
/// `redis.*` config: empty = in-process.
pub fn cache_config(config: &CacheAdminConfig) -> CacheConfig {
    CacheConfig {
        redis_url: config.redis.url.expose().to_owned(),
        cluster_nodes: config
            .redis
            .cluster_nodes
            .iter()
            .map(|s| s.expose().to_owned())
            .collect(),
        prefix: config.redis.prefix.clone(),
        ..CacheConfig::default()
    }
}

pub async fn build(config: CacheAdminConfig) -> Result<Application, CacheAdminError> {
    let catalog = CatalogServiceClient::new(Channel::connect_lazy(&config.catalog)?);
    let redis_nodes = std::iter::once(&config.redis.url)
        .chain(config.redis.cluster_nodes.iter())
        .filter(|u| !u.is_empty())
        .map(|u| redis::Client::open(u.expose()))
        .collect::<Result<Vec<_>, _>>()?;
    let cache = Cache::connect(cache_config(&config)).await?;
    let service = CacheAdminServiceServer::new(grpc::CacheAdminGrpc { catalog, cache })
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
