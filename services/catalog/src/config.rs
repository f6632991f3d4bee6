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
        Ok(())
    }
}

impl ServiceConfig for CatalogConfig {
    fn telemetry(&self) -> &TelemetryConfig {
        &self.telemetry
    }
}
