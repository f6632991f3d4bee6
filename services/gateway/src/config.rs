use std::net::IpAddr;

use photos_runtime::app::ServiceConfig;
use photos_runtime::config::{ConfigError, Validate};
use photos_runtime::{TelemetryConfig, UpstreamConfig};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct GatewayConfig {
    pub http: HttpConfig,
    pub telemetry: TelemetryConfig,
    pub catalog: UpstreamConfig,
    pub media: UpstreamConfig,
    pub storage: UpstreamConfig,
    pub cache_admin: UpstreamConfig,
    pub metrics: UpstreamConfig,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct HttpConfig {
    pub host: IpAddr,
    /// 0 picks a free port (tests).
    pub port: u16,
    /// Time in-flight requests get to finish after SIGTERM.
    pub drain_grace_ms: u64,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            host: IpAddr::from([127, 0, 0, 1]),
            port: 8080,
            drain_grace_ms: 25_000,
        }
    }
}

impl Default for GatewayConfig {
    fn default() -> Self {
        Self {
            http: HttpConfig::default(),
            telemetry: TelemetryConfig::default(),
            catalog: UpstreamConfig::new("http://127.0.0.1:50051"),
            media: UpstreamConfig::new("http://127.0.0.1:50052"),
            storage: UpstreamConfig::new("http://127.0.0.1:50053"),
            cache_admin: UpstreamConfig::new("http://127.0.0.1:50054"),
            metrics: UpstreamConfig::new("http://127.0.0.1:50055"),
        }
    }
}

impl Validate for GatewayConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        self.telemetry.validate()?;
        self.catalog.validate_as("catalog")?;
        self.media.validate_as("media")?;
        self.storage.validate_as("storage")?;
        self.cache_admin.validate_as("cache_admin")?;
        self.metrics.validate_as("metrics")
    }
}

impl ServiceConfig for GatewayConfig {
    fn telemetry(&self) -> &TelemetryConfig {
        &self.telemetry
    }
}
