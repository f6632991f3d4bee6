use photos_runtime::app::ServiceConfig;
use photos_runtime::config::{ConfigError, Validate};
use photos_runtime::{Secret, ServerConfig, TelemetryConfig, UpstreamConfig};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct CatalogConfig {
    pub server: ServerConfig,
    pub telemetry: TelemetryConfig,
    pub database: DatabaseConfig,
    pub page_tokens: PageTokenConfig,
    pub cache: CacheSettings,
    /// Bulk jobs (see `jobs`) and the services they call.
    pub jobs: crate::jobs::JobsConfig,
    pub media: UpstreamConfig,
    pub storage: UpstreamConfig,
    pub cache_admin: UpstreamConfig,
}

impl CatalogConfig {
    pub fn upstreams(&self) -> crate::jobs::UpstreamConfigs {
        crate::jobs::UpstreamConfigs {
            media: self.media.clone(),
            storage: self.storage.clone(),
            cache_admin: self.cache_admin.clone(),
        }
    }
}

/// Where read-through entries live.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CacheBackend {
    /// No caching: every read runs its SQL. For several replicas without a shared Redis
    /// (per-replica caches could not see each other's writes).
    None,
    /// In-process only (the embedded default): right for one instance.
    #[default]
    Memory,
    /// Redis standalone at `cache.url`, with an in-process L1 kept coherent across replicas.
    Redis,
    /// Redis Cluster from the seeds in `cache.cluster_nodes`, with the same L1.
    Cluster,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct CacheSettings {
    pub backend: CacheBackend,
    /// `redis://[:password@]host:port/db` (backend = redis).
    pub url: Secret,
    /// `redis://host:port` of some cluster nodes (backend = cluster).
    pub cluster_nodes: Vec<Secret>,
    /// First segment of every key; must equal cache-admin's `redis.prefix`.
    pub prefix: String,
    /// Standalone pool size.
    pub max_connections: usize,
    /// How long a write waits for the other replicas to confirm its invalidation.
    pub sync_timeout_ms: u64,
    /// Bytes of keys and values held in process (the memory backend, or Redis's L1). Entries
    /// under a superseded generation are not removed when it changes: they stay until their
    /// TTL or until this bound evicts them.
    pub l1_max_bytes: u64,
}

impl Default for CacheSettings {
    fn default() -> Self {
        Self {
            backend: CacheBackend::Memory,
            url: Secret::default(),
            cluster_nodes: Vec::new(),
            prefix: "photos".into(),
            max_connections: 50,
            sync_timeout_ms: 250,
            l1_max_bytes: photos_cache::CacheConfig::default().l1_max_bytes,
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct PageTokenConfig {
    /// HMAC key signing page tokens. Replicas behind one load balancer must share it; empty
    /// means a random key per process (tokens die with the process), fine for a single instance.
    pub secret: Secret,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct DatabaseConfig {
    /// `postgres://…` in production, `sqlite://path` for the embedded database.
    pub url: Secret,
    pub max_connections: u32,
    /// Kept below the RPC deadline so a starved pool fails the call, not the deadline.
    pub acquire_timeout_ms: u64,
    /// Postgres `statement_timeout` for every connection.
    pub statement_timeout_ms: u64,
    /// Statements at least this slow are logged (SQL, duration, trace id) and counted.
    pub slow_statement_ms: u64,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        Self {
            url: Secret::new("postgres://postgres@127.0.0.1:5432/photos"),
            max_connections: 20,
            acquire_timeout_ms: 2_000,
            statement_timeout_ms: 5_000,
            slow_statement_ms: 100,
        }
    }
}

impl Default for CatalogConfig {
    fn default() -> Self {
        Self {
            server: ServerConfig::with_ports(50051, 9101),
            telemetry: TelemetryConfig::default(),
            database: DatabaseConfig::default(),
            page_tokens: PageTokenConfig::default(),
            cache: CacheSettings::default(),
            jobs: crate::jobs::JobsConfig::default(),
            media: UpstreamConfig::new("http://127.0.0.1:50052"),
            storage: UpstreamConfig::new("http://127.0.0.1:50053"),
            cache_admin: UpstreamConfig::new("http://127.0.0.1:50054"),
        }
    }
}

impl Validate for CatalogConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        self.server.validate()?;
        self.telemetry.validate()?;
        self.jobs.validate()?;
        self.media.validate_as("media")?;
        self.storage.validate_as("storage")?;
        self.cache_admin.validate_as("cache_admin")?;
        let url = self.database.url.expose();
        if !(url.starts_with("postgres://")
            || url.starts_with("postgresql://")
            || url.starts_with("sqlite:"))
        {
            // The URL may hold a password: name the key and the expected schemes, not the value.
            return Err(ConfigError::new(
                "database.url",
                "must start with postgres://, postgresql:// or sqlite:",
            ));
        }
        if self.database.max_connections == 0 {
            return Err(ConfigError::new(
                "database.max_connections",
                "must be greater than 0",
            ));
        }
        if self.database.acquire_timeout_ms >= self.server.request_timeout_ms {
            return Err(ConfigError::new(
                "database.acquire_timeout_ms",
                format!(
                    "must be below server.request_timeout_ms ({})",
                    self.server.request_timeout_ms
                ),
            ));
        }
        self.validate_cache()
    }
}

impl CatalogConfig {
    fn validate_cache(&self) -> Result<(), ConfigError> {
        let c = &self.cache;
        if c.l1_max_bytes == 0 {
            return Err(ConfigError::new(
                "cache.l1_max_bytes",
                "must be positive (backend = none turns caching off)",
            ));
        }
        let needs_url = |key: &'static str| {
            ConfigError::new(
                key,
                "must be set for this cache.backend, e.g. redis://127.0.0.1:6379",
            )
        };
        match c.backend {
            CacheBackend::Redis if c.url.is_empty() => return Err(needs_url("cache.url")),
            CacheBackend::Cluster if c.cluster_nodes.is_empty() => {
                return Err(needs_url("cache.cluster_nodes"));
            }
            _ => {}
        }
        for url in std::iter::once(&c.url).chain(&c.cluster_nodes) {
            let e = url.expose();
            if !(e.is_empty() || e.starts_with("redis://") || e.starts_with("rediss://")) {
                let key = if std::ptr::eq(url, &c.url) {
                    "cache.url"
                } else {
                    "cache.cluster_nodes"
                };
                return Err(ConfigError::new(key, "must be a redis:// or rediss:// URL"));
            }
        }
        if c.prefix.is_empty()
            || c.prefix
                .contains(|ch: char| ch == ':' || ch.is_whitespace() || "*?[]\\{}".contains(ch))
        {
            return Err(ConfigError::new(
                "cache.prefix",
                "must be non-empty, without ':', whitespace, braces or glob characters (e.g. \"photos\")",
            ));
        }
        if c.max_connections == 0 {
            return Err(ConfigError::new(
                "cache.max_connections",
                "must be greater than 0",
            ));
        }
        Ok(())
    }
}

impl ServiceConfig for CatalogConfig {
    fn telemetry(&self) -> &TelemetryConfig {
        &self.telemetry
    }
}
