//! Service discovery through a Consul agent's HTTP API, for running photos outside Kubernetes.
//!
//! - [`ConsulClient::register`] puts an instance in the catalog with a gRPC health check
//!   (`grpc.health.v1`, which every photos gRPC port serves), and [`Registered::deregister`]
//!   takes it out on shutdown.
//! - [`balanced_channel`] follows the set of *passing* instances of a service with blocking
//!   queries (`?index=`) and feeds it into a tonic balancer as [`Change`]s, so an instance whose
//!   check turns critical stops getting calls and gets them again once it passes.
//!
//! Only the endpoints below are used, as documented in Consul's HTTP API reference:
//! `PUT /v1/agent/service/register`, `PUT /v1/agent/service/deregister/:service_id` and
//! `GET /v1/health/service/:service?passing&index=&wait=` (with the `X-Consul-Index` header).
//! Plain HTTP only: the agent is expected on the local host or pod (`http://127.0.0.1:8500`).

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, watch};
use tonic::transport::channel::Change;
use tonic::transport::{Channel, Endpoint};

/// The header carrying an ACL token (documented alternative to `Authorization: Bearer`).
const TOKEN_HEADER: &str = "X-Consul-Token";
/// Largest agent answer read: a health list of thousands of instances fits; a runaway body
/// does not take the process's memory with it.
const MAX_BODY_BYTES: usize = 16 * 1024 * 1024;

/// The header carrying the index a blocking query waits past.
pub const INDEX_HEADER: &str = "X-Consul-Index";

/// The agent every Consul node runs, where a `consul://` upstream asks by default.
pub const LOCAL_AGENT: &str = "http://127.0.0.1:8500";

/// Where the agent is and how instances are checked: the runtime's `server.consul` section
/// (registration; an empty address disables it) and each upstream's `consul` section (where a
/// `consul://` address is resolved; [`LOCAL_AGENT`] by default).
#[derive(Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct ConsulConfig {
    /// `http://host:port` of the agent; empty disables registration.
    pub address: String,
    /// ACL token sent as `X-Consul-Token`; empty sends none.
    pub token: String,
    /// How often the agent runs an instance's gRPC health check.
    pub check_interval_ms: u64,
    pub check_timeout_ms: u64,
    /// A crashed instance that never deregistered is removed after its check stays critical
    /// this long.
    pub deregister_critical_after_ms: u64,
    /// Longest a blocking query waits for a change before answering anyway.
    pub wait_ms: u64,
    /// Pause after a failed query or registration, so a down agent is not hammered.
    pub retry_ms: u64,
    /// Registration: the address other instances dial; empty uses the server's bind address
    /// (which must then not be `0.0.0.0`).
    pub advertise_address: String,
    /// Registration: the Consul service name; empty uses `photos-<server name>`.
    pub service: String,
}

impl Default for ConsulConfig {
    fn default() -> Self {
        Self {
            address: String::new(),
            token: String::new(),
            check_interval_ms: 5_000,
            check_timeout_ms: 2_000,
            deregister_critical_after_ms: 60_000,
            wait_ms: 30_000,
            retry_ms: 1_000,
            advertise_address: String::new(),
            service: String::new(),
        }
    }
}

impl fmt::Debug for ConsulConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConsulConfig")
            .field("address", &self.address)
            .field("token", &if self.token.is_empty() { "" } else { "***" })
            .field("check_interval_ms", &self.check_interval_ms)
            .field("check_timeout_ms", &self.check_timeout_ms)
            .field(
                "deregister_critical_after_ms",
                &self.deregister_critical_after_ms,
            )
            .field("wait_ms", &self.wait_ms)
            .field("retry_ms", &self.retry_ms)
            .field("advertise_address", &self.advertise_address)
            .field("service", &self.service)
            .finish()
    }
}

impl ConsulConfig {
    pub fn enabled(&self) -> bool {
        !self.address.trim().is_empty()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DiscoveryError {
    #[error("invalid consul address {address:?}: {message}")]
    InvalidAddress { address: String, message: String },
    #[error("consul request {method} {path} failed: {message}")]
    Transport {
        method: Method,
        path: String,
        message: String,
    },
    #[error("consul answered {status} to {method} {path}: {body}")]
    Status {
        method: Method,
        path: String,
        status: StatusCode,
        body: String,
    },
    #[error("consul answer to {path} is not the documented JSON: {message}")]
    Decode { path: String, message: String },
}

/// One service instance to put in the catalog.
#[derive(Debug, Clone)]
pub struct Registration {
    /// Unique per instance, e.g. `photos-catalog-<host>-50051`.
    pub id: String,
    /// The service name clients discover, e.g. `photos-catalog`.
    pub name: String,
    /// The address other instances dial (never `0.0.0.0`).
    pub address: String,
    pub port: u16,
    pub tags: Vec<String>,
    pub meta: BTreeMap<String, String>,
    /// `grpc.health.v1` service name the check asks about; empty asks about the whole server.
    pub health_service: String,
}

impl Registration {
    pub fn grpc(name: impl Into<String>, address: impl Into<String>, port: u16) -> Self {
        let name = name.into();
        let address = address.into();
        Self {
            id: format!("{name}-{address}-{port}"),
            name,
            address,
            port,
            tags: vec!["grpc".to_owned()],
            meta: BTreeMap::new(),
            health_service: String::new(),
        }
    }

    /// The body of `PUT /v1/agent/service/register`, field names as documented.
    pub fn to_json(&self, config: &ConsulConfig) -> serde_json::Value {
        let mut grpc = format!("{}:{}", self.address, self.port);
        if !self.health_service.is_empty() {
            grpc.push('/');
            grpc.push_str(&self.health_service);
        }
        serde_json::json!({
            "ID": self.id,
            "Name": self.name,
            "Tags": self.tags,
            "Address": self.address,
            "Port": self.port,
            "Meta": self.meta,
            "Check": {
                "CheckID": format!("{}:grpc", self.id),
                "Name": format!("{} gRPC health", self.name),
                "GRPC": grpc,
                "GRPCUseTLS": false,
                "Interval": go_duration(config.check_interval_ms),
                "Timeout": go_duration(config.check_timeout_ms),
                "DeregisterCriticalServiceAfter": go_duration(config.deregister_critical_after_ms),
            }
        })
    }
}

/// Consul parses durations with Go's `time.ParseDuration`.
fn go_duration(ms: u64) -> String {
    format!("{ms}ms")
}

/// A passing instance as `GET /v1/health/service/:service` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instance {
    pub id: String,
    pub address: String,
    pub port: u16,
}

#[derive(Deserialize)]
struct HealthEntry {
    #[serde(rename = "Node")]
    node: NodeEntry,
    #[serde(rename = "Service")]
    service: ServiceEntry,
}

#[derive(Deserialize)]
struct NodeEntry {
    #[serde(rename = "Address", default)]
    address: String,
}

#[derive(Deserialize)]
struct ServiceEntry {
    #[serde(rename = "ID", default)]
    id: String,
    #[serde(rename = "Address", default)]
    address: String,
    #[serde(rename = "Port", default)]
    port: u16,
}

/// A thin client for the agent's HTTP API; clone it freely.
#[derive(Clone)]
pub struct ConsulClient {
    base: String,
    config: ConsulConfig,
    http: Client<HttpConnector, Full<Bytes>>,
}

impl fmt::Debug for ConsulClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConsulClient")
            .field("base", &self.base)
            .finish()
    }
}

impl ConsulClient {
    pub fn new(config: ConsulConfig) -> Result<Self, DiscoveryError> {
        let invalid = |message: &str| DiscoveryError::InvalidAddress {
            address: config.address.clone(),
            message: message.to_owned(),
        };
        let base = config.address.trim().trim_end_matches('/').to_owned();
        if !base.starts_with("http://") {
            return Err(invalid(
                "must start with http:// (the local agent, e.g. http://127.0.0.1:8500)",
            ));
        }
        base.parse::<Uri>().map_err(|e| invalid(&e.to_string()))?;
        let http = Client::builder(TokioExecutor::new()).build_http();
        Ok(Self { base, config, http })
    }

    pub fn config(&self) -> &ConsulConfig {
        &self.config
    }

    async fn send(
        &self,
        method: Method,
        path_and_query: &str,
        body: Option<Vec<u8>>,
        timeout: Duration,
    ) -> Result<(http::HeaderMap, Bytes), DiscoveryError> {
        let path = path_and_query
            .split('?')
            .next()
            .unwrap_or_default()
            .to_owned();
        let transport = |message: String| DiscoveryError::Transport {
            method: method.clone(),
            path: path.clone(),
            message,
        };
        let mut builder = Request::builder()
            .method(method.clone())
            .uri(format!("{}{path_and_query}", self.base));
        if !self.config.token.is_empty() {
            builder = builder.header(TOKEN_HEADER, &self.config.token);
        }
        if body.is_some() {
            builder = builder.header(http::header::CONTENT_TYPE, "application/json");
        }
        let request = builder
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .map_err(|e| transport(e.to_string()))?;
        let response = tokio::time::timeout(timeout, self.http.request(request))
            .await
            .map_err(|_| transport(format!("no answer within {timeout:?}")))?
            .map_err(|e| transport(e.to_string()))?;
        let (parts, body) = response.into_parts();
        let bytes = tokio::time::timeout(timeout, Limited::new(body, MAX_BODY_BYTES).collect())
            .await
            .map_err(|_| transport(format!("body not read within {timeout:?}")))?
            .map_err(|e| transport(e.to_string()))?
            .to_bytes();
        if !parts.status.is_success() {
            return Err(DiscoveryError::Status {
                method,
                path,
                status: parts.status,
                body: String::from_utf8_lossy(&bytes).chars().take(512).collect(),
            });
        }
        Ok((parts.headers, bytes))
    }

    fn short_timeout(&self) -> Duration {
        Duration::from_millis(self.config.check_timeout_ms.max(1_000) * 5)
    }

    /// Registers the instance (replacing one with the same ID) with its gRPC health check.
    pub async fn register(
        &self,
        registration: &Registration,
    ) -> Result<Registered, DiscoveryError> {
        let body = serde_json::to_vec(&registration.to_json(&self.config)).map_err(|e| {
            DiscoveryError::Decode {
                path: "/v1/agent/service/register".to_owned(),
                message: e.to_string(),
            }
        })?;
        self.send(
            Method::PUT,
            "/v1/agent/service/register",
            Some(body),
            self.short_timeout(),
        )
        .await?;
        tracing::info!(id = %registration.id, name = %registration.name, "registered with consul");
        Ok(Registered {
            client: self.clone(),
            id: registration.id.clone(),
        })
    }

    pub async fn deregister(&self, id: &str) -> Result<(), DiscoveryError> {
        self.send(
            Method::PUT,
            &format!("/v1/agent/service/deregister/{}", encode_segment(id)),
            None,
            self.short_timeout(),
        )
        .await?;
        tracing::info!(%id, "deregistered from consul");
        Ok(())
    }

    /// The passing instances of `service`. With `index > 0` this is a blocking query: the agent
    /// answers when the result changes past `index` or after `wait`. Returns the new index.
    pub async fn passing_instances(
        &self,
        service: &str,
        index: u64,
        wait: Duration,
    ) -> Result<(Vec<Instance>, u64), DiscoveryError> {
        let path = format!("/v1/health/service/{}", encode_segment(service));
        let mut query = format!("{path}?passing=true");
        if index > 0 {
            query.push_str(&format!(
                "&index={index}&wait={}",
                go_duration(wait.as_millis() as u64)
            ));
        }
        // Consul adds up to wait/16 of jitter before answering an unchanged blocking query.
        let timeout = wait + wait / 16 + self.short_timeout();
        let (headers, body) = self.send(Method::GET, &query, None, timeout).await?;
        let decode = |message: String| DiscoveryError::Decode {
            path: path.clone(),
            message,
        };
        let new_index = headers
            .get(INDEX_HEADER)
            .ok_or_else(|| decode(format!("missing {INDEX_HEADER} header")))?
            .to_str()
            .ok()
            .and_then(|v| v.parse::<u64>().ok())
            .ok_or_else(|| decode(format!("{INDEX_HEADER} is not a number")))?;
        let entries: Vec<HealthEntry> =
            serde_json::from_slice(&body).map_err(|e| decode(e.to_string()))?;
        let instances = entries
            .into_iter()
            .map(|e| Instance {
                id: e.service.id,
                // Documented: an empty service address means "use the node's address".
                address: if e.service.address.is_empty() {
                    e.node.address
                } else {
                    e.service.address
                },
                port: e.service.port,
            })
            .collect();
        Ok((instances, new_index))
    }
}

/// The service name of a `consul://<service>` upstream address, for a resolver that wants to
/// offer Consul next to `http://` and `dns://` (e.g. `PHOTOS__CATALOG__ADDRESS=consul://photos-catalog`).
pub fn consul_service(address: &str) -> Option<&str> {
    address
        .trim()
        .strip_prefix("consul://")
        .map(|s| s.trim_end_matches('/'))
        .filter(|s| !s.is_empty() && !s.contains('/'))
}

/// Percent-encodes a path segment (IDs may hold characters that are not path-safe).
fn encode_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The next index to wait past, following Consul's documented rules for blocking queries:
/// reset when the index goes backwards (e.g. a restarted agent), and never wait on 0.
pub fn next_index(previous: u64, returned: u64) -> u64 {
    if returned < previous {
        0
    } else {
        returned.max(1)
    }
}

/// An instance registered by [`ConsulClient::register`]; deregister it on shutdown.
#[derive(Debug)]
pub struct Registered {
    client: ConsulClient,
    id: String,
}

impl Registered {
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Takes the instance out of the catalog. Call after the server reports NOT_SERVING, so
    /// balancers following the health check drop it first.
    pub async fn deregister(self) -> Result<(), DiscoveryError> {
        self.client.deregister(&self.id).await
    }
}

/// A channel balanced over the passing instances of one service, and the set it currently
/// balances over (for readiness and tests).
pub struct Discovered {
    pub channel: Channel,
    pub instances: watch::Receiver<Vec<SocketAddr>>,
}

/// Builds a balanced channel following `service`'s passing instances. `make_endpoint` sets
/// timeouts and keep-alives for each address. The follower task ends when the channel and
/// all its clones are dropped. Must run inside a tokio runtime.
pub fn balanced_channel<F>(client: ConsulClient, service: &str, make_endpoint: F) -> Discovered
where
    F: Fn(SocketAddr) -> Endpoint + Send + 'static,
{
    let (channel, changes) = Channel::balance_channel::<SocketAddr>(64);
    let (tx, instances) = watch::channel(Vec::new());
    tokio::spawn(follow(
        client,
        service.to_owned(),
        make_endpoint,
        changes,
        tx,
    ));
    Discovered { channel, instances }
}

async fn follow<F>(
    client: ConsulClient,
    service: String,
    make_endpoint: F,
    changes: mpsc::Sender<Change<SocketAddr, Endpoint>>,
    published: watch::Sender<Vec<SocketAddr>>,
) where
    F: Fn(SocketAddr) -> Endpoint + Send + 'static,
{
    let wait = Duration::from_millis(client.config().wait_ms.max(1));
    let retry = Duration::from_millis(client.config().retry_ms.max(10));
    let mut current: HashSet<SocketAddr> = HashSet::new();
    let mut index = 0;
    loop {
        if changes.is_closed() {
            return;
        }
        let (instances, returned) = match client.passing_instances(&service, index, wait).await {
            Ok(answer) => answer,
            Err(e) => {
                // Keep the last known set: an agent blip must not empty the balancer.
                tracing::warn!(%service, error = %e, "consul query failed");
                tokio::time::sleep(retry).await;
                continue;
            }
        };
        let mut found = HashSet::new();
        for instance in &instances {
            match tokio::net::lookup_host((instance.address.as_str(), instance.port)).await {
                Ok(mut addrs) => found.extend(addrs.next()),
                Err(e) => {
                    tracing::warn!(%service, id = %instance.id, error = %e, "cannot resolve instance")
                }
            }
        }
        for addr in found.difference(&current) {
            if changes
                .send(Change::Insert(*addr, make_endpoint(*addr)))
                .await
                .is_err()
            {
                return;
            }
        }
        for addr in current.difference(&found) {
            if changes.send(Change::Remove(*addr)).await.is_err() {
                return;
            }
        }
        if found != current {
            let mut list: Vec<SocketAddr> = found.iter().copied().collect();
            list.sort();
            tracing::info!(%service, instances = ?list, "consul instances changed");
            published.send_replace(list);
            current = found;
        }
        let unchanged = returned == index;
        index = next_index(index, returned);
        if unchanged {
            // An unchanged answer ends a full wait; a tiny pause bounds the loop if an agent
            // answers blocking queries early.
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_resets_when_it_goes_backwards_and_never_stays_zero() {
        assert_eq!(next_index(0, 0), 1);
        assert_eq!(next_index(5, 9), 9);
        assert_eq!(next_index(9, 9), 9);
        assert_eq!(next_index(9, 3), 0);
    }

    #[test]
    fn registration_body_uses_the_documented_field_names() {
        let mut r = Registration::grpc("photos-catalog", "10.0.0.7", 50051);
        r.health_service = "photos.catalog.v1.CatalogService".to_owned();
        let body = r.to_json(&ConsulConfig::default());
        assert_eq!(body["ID"], "photos-catalog-10.0.0.7-50051");
        assert_eq!(body["Name"], "photos-catalog");
        assert_eq!(body["Port"], 50051);
        assert_eq!(
            body["Check"]["GRPC"],
            "10.0.0.7:50051/photos.catalog.v1.CatalogService"
        );
        assert_eq!(body["Check"]["Interval"], "5000ms");
        assert_eq!(body["Check"]["DeregisterCriticalServiceAfter"], "60000ms");
    }

    #[test]
    fn bad_addresses_are_rejected_and_tokens_never_print() {
        let err = ConsulClient::new(ConsulConfig {
            address: "127.0.0.1:8500".to_owned(),
            ..ConsulConfig::default()
        })
        .unwrap_err();
        assert!(err.to_string().contains("http://"), "{err}");
        let config = ConsulConfig {
            token: "s3cr3t".to_owned(),
            ..ConsulConfig::default()
        };
        assert!(!format!("{config:?}").contains("s3cr3t"));
    }

    #[test]
    fn consul_addresses_name_one_service() {
        assert_eq!(
            consul_service("consul://photos-catalog"),
            Some("photos-catalog")
        );
        assert_eq!(
            consul_service(" consul://photos-catalog/ "),
            Some("photos-catalog")
        );
        assert_eq!(consul_service("consul://"), None);
        assert_eq!(consul_service("consul://a/b"), None);
        assert_eq!(consul_service("dns://photos-catalog:50051"), None);
    }

    #[test]
    fn path_segments_are_escaped() {
        assert_eq!(encode_segment("a b/c"), "a%20b%2Fc");
        assert_eq!(encode_segment("photos-catalog_1.x"), "photos-catalog_1.x");
    }
}
