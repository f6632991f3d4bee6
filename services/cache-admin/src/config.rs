use photos_runtime::app::ServiceConfig;
use photos_runtime::config::{ConfigError, Validate};
use photos_runtime::{Secret, ServerConfig, TelemetryConfig, UpstreamConfig};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct CacheAdminConfig {
    pub server: ServerConfig,
    pub telemetry: TelemetryConfig,
    pub redis: RedisConfig,
    /// Warming calls the catalog's read RPCs.
    pub catalog: UpstreamConfig,
}

/// Empty `url` and no `cluster_nodes`: the in-process cache (the embedded default).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct RedisConfig {
    /// `redis://[:password@]host:port/db` of a standalone server.
    pub url: Secret,
    /// `redis://host:port` of some cluster nodes; the rest are discovered.
    pub cluster_nodes: Vec<Secret>,
    /// First segment of every cache key; must match the services that fill the cache.
    pub prefix: String,
}

impl Default for RedisConfig {
    fn default() -> Self {
        Self {
            url: Secret::default(),
            cluster_nodes: Vec::new(),
            prefix: "photos".into(),
        }
    }
}

impl Default for CacheAdminConfig {
    fn default() -> Self {
        Self {
            server: ServerConfig::with_ports(50054, 9104),
            telemetry: TelemetryConfig::default(),
            redis: RedisConfig::default(),
            catalog: UpstreamConfig::new("http://127.0.0.1:50051"),
        }
    }
}

impl Validate for CacheAdminConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        self.server.validate()?;
        self.telemetry.validate()?;
        self.catalog.validate_as("catalog")?;
        if !self.redis.url.is_empty() && !self.redis.cluster_nodes.is_empty() {
            return Err(ConfigError::new(
                "redis.cluster_nodes",
                "set either redis.url (standalone) or redis.cluster_nodes (cluster), not both",
            ));
        }
        if self.redis.prefix.is_empty()
            || self
                .redis
                .prefix
                .contains(|c: char| c == ':' || c.is_whitespace() || "*?[]\\".contains(c))
        {
            return Err(ConfigError::new(
                "redis.prefix",
                "must be non-empty, without ':', whitespace or glob characters (e.g. \"photos\")",
            ));
        }
        for (key, url) in std::iter::once(("redis.url", &self.redis.url)).chain(
            self.redis
                .cluster_nodes
                .iter()
                .map(|u| ("redis.cluster_nodes", u)),
        ) {
            if !url.is_empty() && redis::parse_redis_url(url.expose()).is_none() {
                return Err(ConfigError::new(key, "must be a redis:// or rediss:// URL"));
            }
        }
        Ok(())
    }
}

impl ServiceConfig for CacheAdminConfig {
    fn telemetry(&self) -> &TelemetryConfig {
        &self.telemetry
    }
}
