//! Where the services are: defaults < `PHOTOS_CONFIG` TOML < `PHOTOS__<SVC>__ADDRESS`-style
//! environment variables (the same names the Helm chart's CronJobs set) < command-line flags.

use photos_catalog::config::DatabaseConfig;
use photos_runtime::config::{ConfigError, Validate};
use photos_runtime::{TelemetryConfig, UpstreamConfig};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct CtlConfig {
    pub telemetry: TelemetryConfig,
    /// Jobs, stats and imports go to the catalog (which also serves the jobs API).
    pub catalog: UpstreamConfig,
    /// Imports process their files with media.
    pub media: UpstreamConfig,
    /// Imports store their files with storage.
    pub storage: UpstreamConfig,
    /// `stats` reads cache statistics from cache-admin.
    pub cache_admin: UpstreamConfig,
    /// `migrate` applies the catalog's migrations (and the job queue's) to this database.
    pub database: DatabaseConfig,
}

impl Default for CtlConfig {
    fn default() -> Self {
        Self {
            telemetry: TelemetryConfig {
                // A CLI's stderr is for warnings; `RUST_LOG=info` shows more.
                log_filter: "warn".into(),
                ..TelemetryConfig::default()
            },
            catalog: UpstreamConfig::new("http://127.0.0.1:50051"),
            media: UpstreamConfig::new("http://127.0.0.1:50052"),
            storage: UpstreamConfig::new("http://127.0.0.1:50053"),
            cache_admin: UpstreamConfig::new("http://127.0.0.1:50054"),
            database: DatabaseConfig::default(),
        }
    }
}

impl Validate for CtlConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        self.telemetry.validate()?;
        self.catalog.validate_as("catalog")?;
        self.media.validate_as("media")?;
        self.storage.validate_as("storage")?;
        self.cache_admin.validate_as("cache_admin")
    }
}
