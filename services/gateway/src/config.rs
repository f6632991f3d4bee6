use std::net::IpAddr;

use photos_runtime::app::ServiceConfig;
use photos_runtime::config::{ConfigError, Validate};
use photos_runtime::{Secret, TelemetryConfig, UpstreamConfig};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct GatewayConfig {
    pub http: HttpConfig,
    pub telemetry: TelemetryConfig,
    pub auth: AuthConfig,
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
    /// Largest JSON request body; larger ones get 413.
    pub max_json_bytes: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct AuthConfig {
    /// HMAC key for HS256 bearer tokens (at least 32 bytes); empty refuses every token.
    pub hs256_secret: Secret,
    pub issuer: String,
    pub audience: String,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            hs256_secret: Secret::default(),
            issuer: "photos".to_owned(),
            audience: "photos-gateway".to_owned(),
        }
    }
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            host: IpAddr::from([127, 0, 0, 1]),
            port: 8080,
            drain_grace_ms: 25_000,
            max_json_bytes: 64 * 1024,
        }
    }
}

impl Default for GatewayConfig {
    fn default() -> Self {
        Self {
            http: HttpConfig::default(),
            telemetry: TelemetryConfig::default(),
            auth: AuthConfig::default(),
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
        if !self.auth.hs256_secret.is_empty() && self.auth.hs256_secret.expose().len() < 32 {
            return Err(ConfigError::new(
                "auth.hs256_secret",
                "must be at least 32 bytes",
            ));
        }
        if self.http.max_json_bytes < 1024 {
            return Err(ConfigError::new(
                "http.max_json_bytes",
                "must be at least 1024",
            ));
        }
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
