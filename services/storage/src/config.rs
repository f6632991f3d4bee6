use photos_runtime::app::ServiceConfig;
use photos_runtime::config::{ConfigError, Validate};
use photos_runtime::{Secret, ServerConfig, TelemetryConfig};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct StorageConfig {
    pub server: ServerConfig,
    pub telemetry: TelemetryConfig,
    pub s3: S3Config,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct S3Config {
    /// Empty for AWS; the URL of any S3-compatible server otherwise.
    pub endpoint: String,
    pub region: String,
    pub bucket: String,
    /// Empty access and secret keys: the standard AWS credential chain.
    pub access_key: Secret,
    pub secret_key: Secret,
    pub force_path_style: bool,
    /// Create the bucket at start if it is missing (local and test servers).
    pub create_bucket: bool,
}

impl Default for S3Config {
    fn default() -> Self {
        Self {
            endpoint: String::new(),
            region: "us-east-1".to_owned(),
            bucket: "photos".to_owned(),
            access_key: Secret::default(),
            secret_key: Secret::default(),
            force_path_style: false,
            create_bucket: false,
        }
    }
}

impl Default for StorageConfig {
    fn default() -> Self {
        Self {
            server: ServerConfig::with_ports(50053, 9103),
            telemetry: TelemetryConfig::default(),
            s3: S3Config::default(),
        }
    }
}

impl Validate for StorageConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        self.server.validate()?;
        self.telemetry.validate()?;
        if self.s3.bucket.is_empty() {
            return Err(ConfigError::new("s3.bucket", "must not be empty"));
        }
        if !self.s3.endpoint.is_empty() && !photos_runtime::config::is_http_url(&self.s3.endpoint) {
            return Err(ConfigError::new(
                "s3.endpoint",
                "must be an http:// or https:// URL",
            ));
        }
        if self.s3.access_key.is_empty() != self.s3.secret_key.is_empty() {
            return Err(ConfigError::new(
                "s3.secret_key",
                "s3.access_key and s3.secret_key must be set together",
            ));
        }
        Ok(())
    }
}

impl ServiceConfig for StorageConfig {
    fn telemetry(&self) -> &TelemetryConfig {
        &self.telemetry
    }
}
