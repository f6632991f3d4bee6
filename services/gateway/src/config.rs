use std::net::IpAddr;

use ipnet::IpNet;

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
    pub upload: UploadConfig,
    pub sources: SourcesConfig,
    pub cors: CorsConfig,
    pub rate_limit: RateLimitConfig,
    pub cache: CacheConfig,
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
    /// Adds `X-Response-Time` and `X-DB-Query-Count` (statements the request caused in every
    /// service) to responses: for debugging, they tell a client how the backend is built.
    pub debug_headers: bool,
    /// Requests slower than this are logged as warnings with their trace id.
    pub slow_request_ms: u64,
    /// How often request samples go to the metrics service (the `metrics` upstream).
    pub report_interval_ms: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct UploadConfig {
    /// Largest file an upload may carry; larger ones get 413 (checked against Content-Length
    /// up front and on the running byte count while streaming).
    pub max_bytes: u64,
    /// Bytes gathered from the request body before one chunk goes to storage.
    pub chunk_bytes: usize,
    /// How long a completed upload's response is replayed for its `Idempotency-Key`.
    pub idempotency_ttl_seconds: u64,
    /// Idempotency keys remembered at once when they are kept in process (no `cache.url`);
    /// bounds that store at about 512 bytes per key. With Redis, its own memory policy rules.
    pub idempotency_max_keys: u64,
}

impl Default for UploadConfig {
    fn default() -> Self {
        Self {
            max_bytes: 64 * 1024 * 1024,
            chunk_bytes: 256 * 1024,
            idempotency_ttl_seconds: 24 * 3600,
            idempotency_max_keys: 100_000,
        }
    }
}

/// How variant URLs are made: published albums through the CDN, everything else (and
/// everything when no CDN is configured) through short-lived signed URLs from storage.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct SourcesConfig {
    /// Public base URL of the CDN serving the bucket, e.g. `https://cdn.example.com`.
    pub cdn_base_url: String,
    pub signed_url_kind: SignedUrlKind,
    /// Lifetime of a signed URL; a signed URL is reused while at least half of it is left.
    pub signed_url_ttl_seconds: u32,
    /// Signed URLs remembered at once.
    pub signed_url_cache_entries: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SignedUrlKind {
    /// S3 presigned GETs (straight from the bucket).
    S3Presigned,
    /// CloudFront canned-policy signed URLs (storage must have a CloudFront key configured).
    CdnSigned,
}

impl Default for SourcesConfig {
    fn default() -> Self {
        Self {
            cdn_base_url: String::new(),
            signed_url_kind: SignedUrlKind::S3Presigned,
            signed_url_ttl_seconds: 600,
            signed_url_cache_entries: 100_000,
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct CorsConfig {
    /// Origins allowed to call the API from a browser, e.g. `https://photos.example.com`;
    /// empty allows none (same-origin pages still work).
    pub allowed_origins: Vec<String>,
    /// How long a browser may cache a preflight answer.
    pub max_age_seconds: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct RateLimitConfig {
    /// Requests per minute per user (signed in) or per client IP (anonymous); 0 disables.
    pub requests_per_minute: u32,
    /// Requests a client may make at once before the per-minute rate applies.
    pub burst: u32,
    /// Peers whose `X-Forwarded-For` is believed (load balancers, ingress), as addresses or
    /// CIDR blocks. From any other peer the header is ignored and the peer address is the client.
    pub trusted_proxies: Vec<IpNet>,
    /// Clients tracked at once; the least recently seen are forgotten first.
    pub max_tracked_clients: u64,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        Self {
            requests_per_minute: 600,
            burst: 60,
            trusted_proxies: Vec::new(),
            max_tracked_clients: 100_000,
        }
    }
}

/// Where the gateway keeps state its replicas share (today: `Idempotency-Key` records).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct CacheConfig {
    /// `redis://[:password@]host:port/db` of a standalone Redis shared by every replica.
    pub url: Secret,
    /// `redis://host:port` of some Redis Cluster nodes (instead of `url`).
    pub cluster_nodes: Vec<Secret>,
    /// First segment of the gateway's keys. Keep it apart from the catalog's (`photos`): the
    /// gateway would otherwise join the catalog's invalidation peers.
    pub prefix: String,
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            url: Secret::default(),
            cluster_nodes: Vec::new(),
            prefix: "photos-gateway".into(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct AuthConfig {
    /// HMAC key for HS256 bearer tokens (at least 32 bytes); empty refuses every token.
    pub hs256_secret: Secret,
    /// A JWK set file (RFC 7517) of RS256 (RSA) and EdDSA (Ed25519) verification keys, read at
    /// start; tokens choose a key by `kid`. Empty accepts no RS256/EdDSA tokens.
    pub jwks_path: String,
    pub issuer: String,
    pub audience: String,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            hs256_secret: Secret::default(),
            jwks_path: String::new(),
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
            debug_headers: false,
            slow_request_ms: 1_000,
            report_interval_ms: 10_000,
        }
    }
}

impl Default for GatewayConfig {
    fn default() -> Self {
        Self {
            http: HttpConfig::default(),
            telemetry: TelemetryConfig::default(),
            auth: AuthConfig::default(),
            upload: UploadConfig::default(),
            sources: SourcesConfig::default(),
            cors: CorsConfig::default(),
            rate_limit: RateLimitConfig::default(),
            cache: CacheConfig::default(),
            catalog: UpstreamConfig::new("http://127.0.0.1:50051"),
            // Uploads stream through storage and media decodes whole photos: both get the
            // servers' own 30 s ceiling rather than the 10 s default of quick reads.
            media: UpstreamConfig {
                request_timeout_ms: 30_000,
                ..UpstreamConfig::new("http://127.0.0.1:50052")
            },
            storage: UpstreamConfig {
                request_timeout_ms: 30_000,
                ..UpstreamConfig::new("http://127.0.0.1:50053")
            },
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
        crate::auth::Verifier::new(&self.auth)
            .map_err(|message| ConfigError::new("auth.jwks_path", message))?;
        if self.http.max_json_bytes < 1024 {
            return Err(ConfigError::new(
                "http.max_json_bytes",
                "must be at least 1024",
            ));
        }
        if self.upload.max_bytes == 0 {
            return Err(ConfigError::new(
                "upload.max_bytes",
                "must be greater than 0",
            ));
        }
        if !(1024..=4 * 1024 * 1024).contains(&self.upload.chunk_bytes) {
            return Err(ConfigError::new(
                "upload.chunk_bytes",
                "must be between 1024 and 4194304 (one gRPC message)",
            ));
        }
        let cdn = &self.sources.cdn_base_url;
        if !cdn.is_empty()
            && (!(cdn.starts_with("https://") || cdn.starts_with("http://")) || cdn.ends_with('/'))
        {
            return Err(ConfigError::new(
                "sources.cdn_base_url",
                "must be an http(s) URL without a trailing '/', e.g. https://cdn.example.com",
            ));
        }
        if self.sources.signed_url_ttl_seconds < 60 {
            return Err(ConfigError::new(
                "sources.signed_url_ttl_seconds",
                "must be at least 60",
            ));
        }
        for origin in &self.cors.allowed_origins {
            if origin == "*" || origin.ends_with('/') || !origin.contains("://") {
                return Err(ConfigError::new(
                    "cors.allowed_origins",
                    format!("{origin:?} is not an origin: list each as scheme://host[:port]"),
                ));
            }
            if axum::http::HeaderValue::from_str(origin).is_err() {
                return Err(ConfigError::new(
                    "cors.allowed_origins",
                    format!("{origin:?} is not a valid header value"),
                ));
            }
        }
        if self.rate_limit.requests_per_minute > 0 && self.rate_limit.burst == 0 {
            return Err(ConfigError::new(
                "rate_limit.burst",
                "must be at least 1 when rate limiting is on",
            ));
        }
        for url in std::iter::once(&self.cache.url).chain(&self.cache.cluster_nodes) {
            let e = url.expose();
            if !(e.is_empty() || e.starts_with("redis://") || e.starts_with("rediss://")) {
                return Err(ConfigError::new(
                    if std::ptr::eq(url, &self.cache.url) {
                        "cache.url"
                    } else {
                        "cache.cluster_nodes"
                    },
                    "must be a redis:// or rediss:// URL",
                ));
            }
        }
        if !self.cache.url.is_empty() && !self.cache.cluster_nodes.is_empty() {
            return Err(ConfigError::new(
                "cache.url",
                "set cache.url (standalone) or cache.cluster_nodes (cluster), not both",
            ));
        }
        let prefix = &self.cache.prefix;
        if prefix.is_empty()
            || prefix
                .contains(|ch: char| ch == ':' || ch.is_whitespace() || "*?[]\\{}".contains(ch))
        {
            return Err(ConfigError::new(
                "cache.prefix",
                "must be non-empty, without ':', whitespace, braces or glob characters (e.g. \"photos-gateway\")",
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
