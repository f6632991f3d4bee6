//! Configuration: defaults < optional TOML file (`PHOTOS_CONFIG=path`) < `PHOTOS__SECTION__KEY`
//! environment variables. Loaded and validated once at start; a bad value is a [`ConfigError`]
//! naming the key, and binaries exit with [`EXIT_CONFIG`].

use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
pub use photos_discovery::ConsulConfig;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// Exit status for an invalid configuration (EX_USAGE).
pub const EXIT_CONFIG: i32 = 64;
/// Environment variable naming an optional TOML configuration file.
pub const CONFIG_FILE_ENV: &str = "PHOTOS_CONFIG";
/// Prefix of configuration environment variables; `__` separates nesting levels.
pub const ENV_PREFIX: &str = "PHOTOS__";

#[derive(Debug, thiserror::Error)]
#[error("invalid configuration: {key}: {message}")]
pub struct ConfigError {
    /// Dotted key, e.g. `server.grpc_port`.
    pub key: String,
    pub message: String,
}

impl ConfigError {
    pub fn new(key: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            message: message.into(),
        }
    }
}

/// Whether `s` is an `http://` or `https://` URL (as endpoints must be).
pub fn is_http_url(s: &str) -> bool {
    s.starts_with("http://") || s.starts_with("https://")
}

/// Semantic checks that serde cannot express (ranges, URLs, relations between keys).
pub trait Validate {
    fn validate(&self) -> Result<(), ConfigError>;
}

/// Loads `T` from its defaults, the optional file and the environment, then validates it.
pub fn load<T>() -> Result<T, ConfigError>
where
    T: Default + Serialize + DeserializeOwned + Validate,
{
    load_from(
        std::env::var_os(CONFIG_FILE_ENV).map(std::path::PathBuf::from),
        Env::prefixed(ENV_PREFIX).split("__"),
    )
}

/// As [`load`], with the file and environment given explicitly (tests use `Env::raw` maps).
pub fn load_from<T>(file: Option<std::path::PathBuf>, env: Env) -> Result<T, ConfigError>
where
    T: Default + Serialize + DeserializeOwned + Validate,
{
    let mut figment = Figment::from(Serialized::defaults(T::default()));
    if let Some(path) = file {
        if !path.exists() {
            return Err(ConfigError::new(
                CONFIG_FILE_ENV,
                format!("file {} does not exist", path.display()),
            ));
        }
        figment = figment.merge(Toml::file(path));
    }
    let value: T = figment.merge(env).extract().map_err(from_figment)?;
    value.validate()?;
    Ok(value)
}

fn from_figment(error: figment::Error) -> ConfigError {
    let key = if error.path.is_empty() {
        "<root>".to_owned()
    } else {
        error.path.join(".")
    };
    let source = error
        .metadata
        .as_ref()
        .map(|m| {
            if m.name.contains("environment") {
                // Name the variable exactly as the operator wrote it.
                let var = format!("{ENV_PREFIX}{}", error.path.join("__").to_uppercase());
                format!(" (from environment variable {var})")
            } else {
                let origin = m.interpolate(&error.profile.clone().unwrap_or_default(), &error.path);
                format!(" (from {}: {origin})", m.name)
            }
        })
        .unwrap_or_default();
    ConfigError::new(key, format!("{}{source}", error.kind))
}

/// A value that must never reach a log: `Debug` and `Display` print a placeholder.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_empty() { "\"\"" } else { "\"***\"" })
    }
}

/// Every gRPC server's listener, admin port, limits and drain settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct ServerConfig {
    pub host: IpAddr,
    /// 0 picks a free port (tests).
    pub grpc_port: u16,
    /// HTTP port serving `/live`, `/ready` and `/metrics`; 0 picks a free port.
    pub admin_port: u16,
    /// Upper bound on any call; a smaller `grpc-timeout` from the client wins.
    pub request_timeout_ms: u64,
    /// Calls handled at once; more are shed with UNAVAILABLE.
    pub concurrency_limit: usize,
    /// Time between NOT_SERVING and closing the listener, so balancers stop sending calls.
    pub drain_delay_ms: u64,
    /// Time in-flight calls get to finish after the listener closes.
    pub drain_grace_ms: u64,
    /// Largest single gRPC message accepted (bytes travel as streams of smaller chunks).
    pub max_message_bytes: usize,
    /// Where the metrics service is (an upstream address); empty disables reporting.
    pub metrics_service: String,
    /// How often the per-call samples are sent to the metrics service.
    pub report_interval_ms: u64,
    /// Calls slower than this are logged as warnings with their trace id.
    pub slow_request_ms: u64,
    /// Registration with a Consul agent (outside Kubernetes); an empty `address` disables it.
    pub consul: ConsulConfig,
}

impl ServerConfig {
    /// Defaults with the service's well-known ports.
    pub fn with_ports(grpc_port: u16, admin_port: u16) -> Self {
        Self {
            host: IpAddr::from([127, 0, 0, 1]),
            grpc_port,
            admin_port,
            request_timeout_ms: 30_000,
            concurrency_limit: 1024,
            drain_delay_ms: 0,
            drain_grace_ms: 25_000,
            max_message_bytes: 8 * 1024 * 1024,
            metrics_service: String::new(),
            report_interval_ms: 10_000,
            slow_request_ms: 1_000,
            consul: ConsulConfig::default(),
        }
    }
    pub fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.request_timeout_ms)
    }
    pub fn drain_delay(&self) -> Duration {
        Duration::from_millis(self.drain_delay_ms)
    }
    pub fn drain_grace(&self) -> Duration {
        Duration::from_millis(self.drain_grace_ms)
    }
    pub fn report_interval(&self) -> Duration {
        Duration::from_millis(self.report_interval_ms)
    }
    pub fn slow_request(&self) -> Duration {
        Duration::from_millis(self.slow_request_ms)
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self::with_ports(0, 0)
    }
}

impl Validate for ServerConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        if self.request_timeout_ms == 0 {
            return Err(ConfigError::new(
                "server.request_timeout_ms",
                "must be greater than 0",
            ));
        }
        if self.concurrency_limit == 0 {
            return Err(ConfigError::new(
                "server.concurrency_limit",
                "must be greater than 0",
            ));
        }
        if self.max_message_bytes < 64 * 1024 {
            return Err(ConfigError::new(
                "server.max_message_bytes",
                "must be at least 65536",
            ));
        }
        if !self.metrics_service.is_empty() {
            crate::client::Target::parse(&self.metrics_service)
                .map_err(|message| ConfigError::new("server.metrics_service", message))?;
        }
        if self.report_interval_ms == 0 {
            return Err(ConfigError::new(
                "server.report_interval_ms",
                "must be greater than 0",
            ));
        }
        crate::consul::client_for(&self.consul, self.host)?;
        if self.grpc_port != 0 && self.grpc_port == self.admin_port {
            return Err(ConfigError::new(
                "server.admin_port",
                format!("must differ from server.grpc_port ({})", self.grpc_port),
            ));
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Pretty,
    Json,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct TelemetryConfig {
    pub log_format: LogFormat,
    /// An `EnvFilter` directive; `RUST_LOG` overrides it when set.
    pub log_filter: String,
    /// OTLP/gRPC endpoint, e.g. `http://otel-collector:4317`; empty disables export.
    pub otlp_endpoint: String,
    /// Fraction of new traces sampled (parent decisions are always followed).
    pub sample_ratio: f64,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        Self {
            log_format: LogFormat::Pretty,
            log_filter: "info".to_owned(),
            otlp_endpoint: String::new(),
            sample_ratio: 1.0,
        }
    }
}

impl Validate for TelemetryConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        if !(0.0..=1.0).contains(&self.sample_ratio) {
            return Err(ConfigError::new(
                "telemetry.sample_ratio",
                format!("must be between 0 and 1, got {}", self.sample_ratio),
            ));
        }
        if !self.otlp_endpoint.is_empty() && !is_http_url(&self.otlp_endpoint) {
            return Err(ConfigError::new(
                "telemetry.otlp_endpoint",
                format!(
                    "must be an http:// or https:// URL, got {:?}",
                    self.otlp_endpoint
                ),
            ));
        }
        tracing_subscriber::EnvFilter::try_new(&self.log_filter)
            .map_err(|e| ConfigError::new("telemetry.log_filter", e.to_string()))?;
        Ok(())
    }
}

/// Where a downstream service is: `http://host:port` (one address), a comma-separated list of
/// them, `dns://name:port` (resolved periodically and balanced client-side, for Kubernetes
/// headless services) or `consul://service` (its passing instances, followed with blocking
/// queries and balanced client-side, outside Kubernetes).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct UpstreamConfig {
    pub address: String,
    pub connect_timeout_ms: u64,
    /// Deadline of a call when the caller has none to pass on.
    pub request_timeout_ms: u64,
    /// How often `dns://` names are re-resolved.
    pub dns_refresh_ms: u64,
    /// The agent a `consul://` address is resolved through (the local agent by default).
    pub consul: ConsulConfig,
}

impl UpstreamConfig {
    pub fn new(address: impl Into<String>) -> Self {
        Self {
            address: address.into(),
            ..Self::default()
        }
    }

    pub fn validate_as(&self, key: &str) -> Result<(), ConfigError> {
        let target = crate::client::Target::parse(&self.address)
            .map_err(|message| ConfigError::new(format!("{key}.address"), message))?;
        if let crate::client::Target::Consul { .. } = target {
            photos_discovery::ConsulClient::new(self.consul.clone())
                .map_err(|e| ConfigError::new(format!("{key}.consul.address"), e.to_string()))?;
        }
        Ok(())
    }
}

impl Default for UpstreamConfig {
    fn default() -> Self {
        Self {
            address: String::new(),
            connect_timeout_ms: 2_000,
            request_timeout_ms: 10_000,
            dns_refresh_ms: 5_000,
            consul: ConsulConfig {
                address: photos_discovery::LOCAL_AGENT.to_owned(),
                ..ConsulConfig::default()
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Default, Serialize, Deserialize)]
    #[serde(default)]
    struct Sample {
        server: ServerConfig,
        telemetry: TelemetryConfig,
    }

    impl Validate for Sample {
        fn validate(&self) -> Result<(), ConfigError> {
            self.server.validate()?;
            self.telemetry.validate()
        }
    }

    /// An environment provider that matches nothing, so unit tests never read the real
    /// environment (the env layer is covered by the binaries' exit-code tests).
    fn no_env() -> Env {
        Env::prefixed("PHOTOS_UNIT_TEST_NO_SUCH_PREFIX__").split("__")
    }

    #[test]
    fn file_overrides_defaults_and_env_overrides_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, "[server]\ngrpc_port = 7000\nadmin_port = 7001\n").unwrap();
        let cfg: Sample = load_from(Some(path), no_env()).unwrap();
        assert_eq!(cfg.server.grpc_port, 7000);
        assert_eq!(cfg.server.admin_port, 7001);
        assert_eq!(
            cfg.server.request_timeout_ms, 30_000,
            "untouched keys keep defaults"
        );
    }

    #[test]
    fn missing_file_names_the_variable() {
        let err =
            load_from::<Sample>(Some("/nonexistent/photos.toml".into()), no_env()).unwrap_err();
        assert_eq!(err.key, CONFIG_FILE_ENV);
    }

    #[test]
    fn a_bad_file_value_names_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, "[server]\ngrpc_port = \"not a port\"\n").unwrap();
        let err = load_from::<Sample>(Some(path), no_env()).unwrap_err();
        assert_eq!(err.key, "server.grpc_port");
        assert!(err.to_string().contains("server.grpc_port"), "{err}");
    }

    #[test]
    fn semantic_validation_names_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, "[telemetry]\nsample_ratio = 3.0\n").unwrap();
        let err = load_from::<Sample>(Some(path), no_env()).unwrap_err();
        assert_eq!(err.key, "telemetry.sample_ratio");
    }

    #[test]
    fn secrets_do_not_print() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s:?}"), "\"***\"");
        assert_eq!(s.expose(), "hunter2");
    }
}
