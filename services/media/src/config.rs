use photos_runtime::app::ServiceConfig;
use photos_runtime::config::{ConfigError, Validate};
use photos_runtime::{ServerConfig, TelemetryConfig, UpstreamConfig};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct MediaConfig {
    pub server: ServerConfig,
    pub telemetry: TelemetryConfig,
    /// Where variants are written.
    pub storage: UpstreamConfig,
}

impl Default for MediaConfig {
    fn default() -> Self {
        Self {
            server: ServerConfig::with_ports(50052, 9102),
            telemetry: TelemetryConfig::default(),
            storage: UpstreamConfig::new("http://127.0.0.1:50053"),
        }
    }
}

impl Validate for MediaConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        self.server.validate()?;
        self.telemetry.validate()?;
        self.storage.validate_as("storage")
    }
}

impl ServiceConfig for MediaConfig {
    fn telemetry(&self) -> &TelemetryConfig {
        &self.telemetry
    }
}
