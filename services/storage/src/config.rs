use photos_runtime::app::ServiceConfig;
use photos_runtime::config::{ConfigError, Validate};
use photos_runtime::{Secret, ServerConfig, TelemetryConfig};
use serde::{Deserialize, Serialize};

/// S3 never accepts parts smaller than this (except the last one).
pub const MIN_PART_SIZE: u64 = 5 * 1024 * 1024;
/// S3's largest part and largest single PUT / CopyObject.
pub const MAX_PART_SIZE: u64 = 5 * 1024 * 1024 * 1024;
/// AWS's DeleteObjects limit.
pub const MAX_DELETE_KEYS: usize = 1000;
/// SigV4 presigned URLs are valid for at most seven days.
pub const MAX_PRESIGN_SECONDS: u32 = 7 * 24 * 3600;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct StorageConfig {
    pub server: ServerConfig,
    pub telemetry: TelemetryConfig,
    pub s3: S3Config,
    pub transfer: TransferConfig,
    pub keys: KeysConfig,
    pub urls: UrlsConfig,
    pub multipart_sweep: MultipartSweepConfig,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RetryMode {
    Standard,
    /// Standard retries plus client-side rate limiting when the store throttles.
    Adaptive,
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
    /// S3 Transfer Acceleration (AWS only: needs virtual-hosted addressing and no endpoint).
    pub accelerate: bool,
    /// Connections kept per host, and the bound on S3 requests in flight from this process.
    pub pool_size: usize,
    pub retry_mode: RetryMode,
    /// Attempts per S3 request, the first included.
    pub max_attempts: u32,
    pub connect_timeout_ms: u64,
    /// Longest wait for response bytes on an open connection.
    pub read_timeout_ms: u64,
    /// Bound on one attempt of one S3 request (a part upload included); 0 disables it.
    pub attempt_timeout_ms: u64,
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
            accelerate: false,
            pool_size: 50,
            retry_mode: RetryMode::Standard,
            max_attempts: 3,
            connect_timeout_ms: 3_000,
            read_timeout_ms: 30_000,
            attempt_timeout_ms: 120_000,
        }
    }
}

/// How bytes move: single PUT versus multipart, part sizes, fan-out.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct TransferConfig {
    /// Objects at or above this size are uploaded in parts.
    pub multipart_threshold_bytes: u64,
    pub part_size_bytes: u64,
    /// Parts uploaded at once per object; memory per upload is about part_size × (this + 1).
    pub part_concurrency: usize,
    /// Objects at or above this size are copied with UploadPartCopy.
    pub multipart_copy_threshold_bytes: u64,
    pub copy_part_size_bytes: u64,
    /// Objects (or parts) copied at once by CopyObjects and SetStorageClass.
    pub copy_concurrency: usize,
    /// Keys per DeleteObjects request (at most 1000, AWS's limit).
    pub delete_batch_size: usize,
    /// DeleteObjects requests in flight at once.
    pub delete_concurrency: usize,
    /// Extra DeleteObjects rounds for keys the store reported as failed.
    pub delete_retries: u32,
    /// Size of the chunks GetObject streams back.
    pub read_chunk_bytes: usize,
}

impl Default for TransferConfig {
    fn default() -> Self {
        Self {
            multipart_threshold_bytes: 25 * 1024 * 1024,
            part_size_bytes: 8 * 1024 * 1024,
            part_concurrency: 10,
            multipart_copy_threshold_bytes: 256 * 1024 * 1024,
            copy_part_size_bytes: 64 * 1024 * 1024,
            copy_concurrency: 16,
            delete_batch_size: MAX_DELETE_KEYS,
            delete_concurrency: 4,
            delete_retries: 3,
            read_chunk_bytes: 1024 * 1024,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct KeysConfig {
    /// Every key must start with one of these; each ends with `/`.
    pub managed_prefixes: Vec<String>,
    pub max_key_bytes: usize,
}

impl Default for KeysConfig {
    fn default() -> Self {
        Self {
            managed_prefixes: vec![
                "originals/".to_owned(),
                "variants/".to_owned(),
                "tmp/".to_owned(),
            ],
            max_key_bytes: 1024,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct UrlsConfig {
    /// CloudFront (or any CDN) domain serving the bucket, e.g. `d111111abcdef8.cloudfront.net`.
    pub cdn_domain: String,
    /// `https` in production; `http` for local CDNs.
    pub cdn_scheme: String,
    /// CloudFront public key id (key-group) or key-pair id for signed URLs.
    pub cloudfront_key_pair_id: String,
    /// RSA private key, PKCS#1 or PKCS#8 PEM.
    pub cloudfront_private_key_pem: Secret,
    /// Upper bound on any signed URL's lifetime.
    pub max_expiry_seconds: u32,
    /// Lifetime used when a request asks for 0.
    pub default_expiry_seconds: u32,
}

impl Default for UrlsConfig {
    fn default() -> Self {
        Self {
            cdn_domain: String::new(),
            cdn_scheme: "https".to_owned(),
            cloudfront_key_pair_id: String::new(),
            cloudfront_private_key_pem: Secret::default(),
            max_expiry_seconds: 24 * 3600,
            default_expiry_seconds: 900,
        }
    }
}

/// The abandoned-multipart-upload sweep each storage process runs on a schedule (over every
/// managed prefix): what a process killed mid-upload leaves behind, on any S3 API, without
/// waiting for (or relying on) the bucket's lifecycle rule.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct MultipartSweepConfig {
    /// Seconds between sweeps; 0 disables the schedule (the RPC still works). The first sweep
    /// runs after a random delay within one interval, so replicas started together do not all
    /// list the bucket at once.
    pub interval_seconds: u64,
    /// Only uploads started at least this long ago are aborted: far above the longest upload,
    /// since an upload still running is indistinguishable from an abandoned one.
    pub older_than_seconds: u64,
    /// Uploads one sweep acts on at most (all prefixes together); the rest wait for the next.
    pub max_uploads_per_run: u32,
    /// Tests and development only: allows `older_than_seconds` below
    /// [`MIN_SWEEP_AGE_SECONDS`], where a slow upload that is still running would be aborted.
    pub allow_short_age: bool,
}

/// The shortest `multipart_sweep.older_than_seconds` a deployment may set (without
/// `allow_short_age`): an upload still running looks exactly like an abandoned one, so the age
/// must stay far above the longest upload.
pub const MIN_SWEEP_AGE_SECONDS: u64 = 3600;

impl Default for MultipartSweepConfig {
    fn default() -> Self {
        Self {
            interval_seconds: 3600,
            // One day, the shortest a bucket's abort-incomplete lifecycle rule can say.
            older_than_seconds: 24 * 3600,
            max_uploads_per_run: 10_000,
            allow_short_age: false,
        }
    }
}

impl Default for StorageConfig {
    fn default() -> Self {
        Self {
            server: ServerConfig::with_ports(50053, 9103),
            telemetry: TelemetryConfig::default(),
            s3: S3Config::default(),
            transfer: TransferConfig::default(),
            keys: KeysConfig::default(),
            urls: UrlsConfig::default(),
            multipart_sweep: MultipartSweepConfig::default(),
        }
    }
}

fn positive(key: &str, value: u64) -> Result<(), ConfigError> {
    if value == 0 {
        return Err(ConfigError::new(key, "must be greater than 0"));
    }
    Ok(())
}

impl Validate for StorageConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        self.server.validate()?;
        self.telemetry.validate()?;
        let s3 = &self.s3;
        if s3.bucket.is_empty() {
            return Err(ConfigError::new("s3.bucket", "must not be empty"));
        }
        if s3.region.is_empty() {
            return Err(ConfigError::new("s3.region", "must not be empty"));
        }
        if !s3.endpoint.is_empty() && !photos_runtime::config::is_http_url(&s3.endpoint) {
            return Err(ConfigError::new(
                "s3.endpoint",
                "must be an http:// or https:// URL",
            ));
        }
        if s3.access_key.is_empty() != s3.secret_key.is_empty() {
            return Err(ConfigError::new(
                "s3.secret_key",
                "s3.access_key and s3.secret_key must be set together",
            ));
        }
        if s3.accelerate && !s3.endpoint.is_empty() {
            return Err(ConfigError::new(
                "s3.accelerate",
                "transfer acceleration is AWS-only: leave s3.endpoint empty or set s3.accelerate = false",
            ));
        }
        if s3.accelerate && s3.force_path_style {
            return Err(ConfigError::new(
                "s3.accelerate",
                "transfer acceleration needs virtual-hosted addressing: set s3.force_path_style = false",
            ));
        }
        positive("s3.pool_size", s3.pool_size as u64)?;
        if !(1..=10).contains(&s3.max_attempts) {
            return Err(ConfigError::new(
                "s3.max_attempts",
                "must be between 1 and 10",
            ));
        }
        positive("s3.connect_timeout_ms", s3.connect_timeout_ms)?;
        positive("s3.read_timeout_ms", s3.read_timeout_ms)?;

        let t = &self.transfer;
        if t.part_size_bytes < MIN_PART_SIZE || t.part_size_bytes > MAX_PART_SIZE {
            return Err(ConfigError::new(
                "transfer.part_size_bytes",
                format!("must be between {MIN_PART_SIZE} and {MAX_PART_SIZE} (S3's part limits)"),
            ));
        }
        if t.multipart_threshold_bytes < t.part_size_bytes
            || t.multipart_threshold_bytes > MAX_PART_SIZE
        {
            return Err(ConfigError::new(
                "transfer.multipart_threshold_bytes",
                "must be at least transfer.part_size_bytes and at most 5 GiB",
            ));
        }
        positive("transfer.part_concurrency", t.part_concurrency as u64)?;
        if t.copy_part_size_bytes < MIN_PART_SIZE || t.copy_part_size_bytes > MAX_PART_SIZE {
            return Err(ConfigError::new(
                "transfer.copy_part_size_bytes",
                format!("must be between {MIN_PART_SIZE} and {MAX_PART_SIZE} (S3's part limits)"),
            ));
        }
        if t.multipart_copy_threshold_bytes > MAX_PART_SIZE {
            return Err(ConfigError::new(
                "transfer.multipart_copy_threshold_bytes",
                "must be at most 5 GiB (CopyObject's limit)",
            ));
        }
        positive("transfer.copy_concurrency", t.copy_concurrency as u64)?;
        if !(1..=MAX_DELETE_KEYS).contains(&t.delete_batch_size) {
            return Err(ConfigError::new(
                "transfer.delete_batch_size",
                "must be between 1 and 1000 (the DeleteObjects limit)",
            ));
        }
        positive("transfer.delete_concurrency", t.delete_concurrency as u64)?;
        if t.read_chunk_bytes < 4096 || t.read_chunk_bytes > self.server.max_message_bytes / 2 {
            return Err(ConfigError::new(
                "transfer.read_chunk_bytes",
                "must be at least 4096 and at most half of server.max_message_bytes",
            ));
        }

        if self.keys.managed_prefixes.is_empty() {
            return Err(ConfigError::new(
                "keys.managed_prefixes",
                "must list at least one prefix",
            ));
        }
        for p in &self.keys.managed_prefixes {
            if !p.ends_with('/') || p.len() < 2 || p.starts_with('/') || p.contains("..") {
                return Err(ConfigError::new(
                    "keys.managed_prefixes",
                    format!("{p:?} must be a relative folder ending in '/', e.g. \"originals/\""),
                ));
            }
        }
        if !(1..=1024).contains(&self.keys.max_key_bytes) {
            return Err(ConfigError::new(
                "keys.max_key_bytes",
                "must be between 1 and 1024 (S3's key limit)",
            ));
        }

        let u = &self.urls;
        if !u.cdn_domain.is_empty() && (u.cdn_domain.contains('/') || u.cdn_domain.contains("://"))
        {
            return Err(ConfigError::new(
                "urls.cdn_domain",
                "must be a bare host name such as d111111abcdef8.cloudfront.net",
            ));
        }
        if u.cdn_scheme != "https" && u.cdn_scheme != "http" {
            return Err(ConfigError::new("urls.cdn_scheme", "must be https or http"));
        }
        if u.cloudfront_key_pair_id.is_empty() != u.cloudfront_private_key_pem.is_empty() {
            return Err(ConfigError::new(
                "urls.cloudfront_private_key_pem",
                "urls.cloudfront_key_pair_id and urls.cloudfront_private_key_pem must be set together",
            ));
        }
        if !u.cloudfront_key_pair_id.is_empty() {
            if u.cdn_domain.is_empty() {
                return Err(ConfigError::new(
                    "urls.cdn_domain",
                    "must be set when CloudFront signing is configured",
                ));
            }
            crate::urls::parse_private_key(u.cloudfront_private_key_pem.expose())
                .map_err(|e| ConfigError::new("urls.cloudfront_private_key_pem", e.to_string()))?;
        }
        if !(1..=MAX_PRESIGN_SECONDS).contains(&u.max_expiry_seconds) {
            return Err(ConfigError::new(
                "urls.max_expiry_seconds",
                format!("must be between 1 and {MAX_PRESIGN_SECONDS} (seven days)"),
            ));
        }
        if u.default_expiry_seconds == 0 || u.default_expiry_seconds > u.max_expiry_seconds {
            return Err(ConfigError::new(
                "urls.default_expiry_seconds",
                "must be between 1 and urls.max_expiry_seconds",
            ));
        }

        let m = &self.multipart_sweep;
        if m.interval_seconds > 0 {
            // 0 would abort uploads running right now, on every replica, every interval.
            positive("multipart_sweep.older_than_seconds", m.older_than_seconds)?;
            if m.older_than_seconds < MIN_SWEEP_AGE_SECONDS && !m.allow_short_age {
                return Err(ConfigError::new(
                    "multipart_sweep.older_than_seconds",
                    format!(
                        "must be at least {MIN_SWEEP_AGE_SECONDS} (an upload still running would \
                         be aborted); multipart_sweep.allow_short_age permits less, for tests"
                    ),
                ));
            }
            positive(
                "multipart_sweep.max_uploads_per_run",
                u64::from(m.max_uploads_per_run),
            )?;
        }
        Ok(())
    }
}

impl ServiceConfig for StorageConfig {
    fn telemetry(&self) -> &TelemetryConfig {
        &self.telemetry
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err_key(c: &StorageConfig) -> String {
        c.validate().unwrap_err().key
    }

    #[test]
    fn defaults_are_valid() {
        StorageConfig::default().validate().unwrap();
    }

    #[test]
    fn errors_name_the_key() {
        let mut c = StorageConfig::default();
        c.transfer.part_size_bytes = 1024;
        assert_eq!(err_key(&c), "transfer.part_size_bytes");

        let mut c = StorageConfig::default();
        c.transfer.delete_batch_size = 1001;
        assert_eq!(err_key(&c), "transfer.delete_batch_size");

        let mut c = StorageConfig::default();
        c.s3.accelerate = true;
        c.s3.endpoint = "http://127.0.0.1:9000".into();
        assert_eq!(err_key(&c), "s3.accelerate");

        let mut c = StorageConfig::default();
        c.s3.max_attempts = 0;
        assert_eq!(err_key(&c), "s3.max_attempts");

        let mut c = StorageConfig::default();
        c.keys.managed_prefixes = vec!["/abs/".into()];
        assert_eq!(err_key(&c), "keys.managed_prefixes");

        let mut c = StorageConfig::default();
        c.urls.cloudfront_key_pair_id = "K123".into();
        c.urls.cloudfront_private_key_pem = Secret::new("not a key");
        c.urls.cdn_domain = "cdn.example.com".into();
        assert_eq!(err_key(&c), "urls.cloudfront_private_key_pem");

        let mut c = StorageConfig::default();
        c.urls.max_expiry_seconds = MAX_PRESIGN_SECONDS + 1;
        assert_eq!(err_key(&c), "urls.max_expiry_seconds");

        let mut c = StorageConfig::default();
        c.multipart_sweep.older_than_seconds = 0;
        assert_eq!(err_key(&c), "multipart_sweep.older_than_seconds");
        c.multipart_sweep.older_than_seconds = 60;
        assert_eq!(err_key(&c), "multipart_sweep.older_than_seconds");
        c.multipart_sweep.allow_short_age = true;
        c.validate().expect("a short age for tests");
        c.multipart_sweep.older_than_seconds = 0;
        assert_eq!(err_key(&c), "multipart_sweep.older_than_seconds");
        c.multipart_sweep.interval_seconds = 0;
        c.validate().expect("a disabled sweep needs no age");
    }
}
