use photos_runtime::app::ServiceConfig;
use photos_runtime::config::{ConfigError, Validate};
use photos_runtime::{ServerConfig, TelemetryConfig};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct MetricsConfig {
    pub server: ServerConfig,
    pub telemetry: TelemetryConfig,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self {
            server: ServerConfig::with_ports(50055, 9105),
            telemetry: TelemetryConfig::default(),
        }
    }
}

impl Validate for MetricsConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        self.server.validate()?;
        self.telemetry.validate()
    }
}

impl ServiceConfig for MetricsConfig {
    fn telemetry(&self) -> &TelemetryConfig {
        &self.telemetry
    }
}
