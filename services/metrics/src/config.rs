use photos_runtime::app::ServiceConfig;
use photos_runtime::config::{ConfigError, Validate};
use photos_runtime::{ServerConfig, TelemetryConfig};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct MetricsConfig {
    pub server: ServerConfig,
    pub telemetry: TelemetryConfig,
    pub report: ReportConfig,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct ReportConfig {
    /// Minutes of per-minute aggregates kept (memory is bounded by this × RPC count).
    pub retention_minutes: u64,
    /// Entries in the slowest-requests and slowest-statements lists.
    pub top_n: usize,
    /// Requests at least this slow are listed and flagged (the seed's 1 s).
    pub slow_request_ms: u64,
    /// Mean SQL statements per request above which an N+1 query is suggested.
    pub n_plus_one_statements: f64,
}

impl Default for ReportConfig {
    fn default() -> Self {
        Self {
            retention_minutes: 60,
            top_n: 20,
            slow_request_ms: 1_000,
            n_plus_one_statements: 10.0,
        }
    }
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self {
            server: ServerConfig::with_ports(50055, 9105),
            telemetry: TelemetryConfig::default(),
            report: ReportConfig::default(),
        }
    }
}

impl Validate for MetricsConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        self.server.validate()?;
        self.telemetry.validate()?;
        if self.report.retention_minutes == 0 {
            return Err(ConfigError::new(
                "report.retention_minutes",
                "must be greater than 0",
            ));
        }
        if self.report.top_n == 0 || self.report.top_n > 1000 {
            return Err(ConfigError::new(
                "report.top_n",
                "must be between 1 and 1000",
            ));
        }
        Ok(())
    }
}

impl ServiceConfig for MetricsConfig {
    fn telemetry(&self) -> &TelemetryConfig {
        &self.telemetry
    }
}
