//! Client channels to other photos services. Every outgoing call gets a client span, carries
//! the W3C trace context, and inherits what is left of the current call's deadline (or the
//! upstream's default timeout when there is none).

use std::collections::HashSet;
use std::net::SocketAddr;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::future::BoxFuture;
use http::{HeaderValue, Request, Response};
use tokio::sync::watch;
use tonic::body::Body;
use tonic::transport::channel::Change;
use tonic::transport::{Channel as TonicChannel, Endpoint};
use tower::Service;
use tracing::Instrument;

use crate::config::UpstreamConfig;
use crate::layers::rpc_parts;
use crate::propagation;

/// Where an upstream lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// One or more fixed `http://host:port` URLs.
    Static(Vec<String>),
    /// A DNS name resolved periodically; every address it returns gets calls.
    Dns { host: String, port: u16 },
    /// A Consul service; every instance whose health check passes gets calls.
    Consul { service: String },
}

impl Target {
    pub fn parse(address: &str) -> Result<Target, String> {
        let address = address.trim();
        if address.is_empty() {
            return Err("must not be empty".to_owned());
        }
        if address.starts_with("consul://") {
            let service = photos_discovery::consul_service(address).ok_or_else(|| {
                format!("{address:?} must name one service, e.g. consul://photos-catalog")
            })?;
            return Ok(Target::Consul {
                service: service.to_owned(),
            });
        }
        if let Some(rest) = address.strip_prefix("dns://") {
            let (host, port) = rest
                .rsplit_once(':')
                .ok_or_else(|| format!("{address:?} needs a port, e.g. dns://catalog:50051"))?;
            let port = port
                .parse()
                .map_err(|_| format!("{address:?} has an invalid port {port:?}"))?;
            if host.is_empty() {
                return Err(format!("{address:?} has no host"));
            }
            return Ok(Target::Dns {
                host: host.to_owned(),
                port,
            });
        }
        let urls: Vec<String> = address.split(',').map(|s| s.trim().to_owned()).collect();
        for url in &urls {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(format!(
                    "{url:?} must start with http://, https://, dns:// or consul://"
                ));
            }
            Endpoint::from_shared(url.clone()).map_err(|e| format!("{url:?}: {e}"))?;
        }
        Ok(Target::Static(urls))
    }
}

#[derive(Debug, thiserror::Error)]
#[error("invalid upstream address {address:?}: {message}")]
pub struct ChannelError {
    pub address: String,
    pub message: String,
}

/// A lazily connected, traced channel; clone it freely (clones share connections).
#[derive(Clone)]
pub struct Channel {
    inner: TonicChannel,
    default_timeout: Duration,
    discovered: Option<watch::Receiver<Vec<SocketAddr>>>,
}

fn endpoint(url: String, config: &UpstreamConfig) -> Result<Endpoint, tonic::transport::Error> {
    Ok(Endpoint::from_shared(url)?
        .connect_timeout(Duration::from_millis(config.connect_timeout_ms))
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(30))
        .keep_alive_while_idle(true))
}

impl Channel {
    /// Builds the channel without connecting: the first call connects, so services can start in
    /// any order. Must run inside a tokio runtime (balancing spawns background tasks).
    pub fn connect_lazy(config: &UpstreamConfig) -> Result<Channel, ChannelError> {
        let error = |message: String| ChannelError {
            address: config.address.clone(),
            message,
        };
        let (inner, discovered) = match Target::parse(&config.address).map_err(error)? {
            Target::Static(urls) if urls.len() == 1 => (
                endpoint(urls[0].clone(), config)
                    .map_err(|e| error(e.to_string()))?
                    .connect_lazy(),
                None,
            ),
            Target::Static(urls) => {
                let endpoints = urls
                    .into_iter()
                    .map(|u| endpoint(u, config))
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| error(e.to_string()))?;
                (TonicChannel::balance_list(endpoints.into_iter()), None)
            }
            Target::Dns { host, port } => {
                let (channel, changes) = TonicChannel::balance_channel::<SocketAddr>(64);
                let (published, discovered) = watch::channel(Vec::new());
                tokio::spawn(resolve_loop(host, port, config.clone(), changes, published));
                (channel, Some(discovered))
            }
            Target::Consul { service } => {
                let consul = photos_discovery::ConsulClient::new(config.consul.clone())
                    .map_err(|e| error(e.to_string()))?;
                let upstream = config.clone();
                let found = photos_discovery::balanced_channel(consul, &service, move |addr| {
                    endpoint(format!("http://{addr}"), &upstream)
                        .expect("http://<socket address> is a valid URI")
                });
                (found.channel, Some(found.instances))
            }
        };
        Ok(Channel {
            inner,
            default_timeout: Duration::from_millis(config.request_timeout_ms),
            discovered,
        })
    }

    /// The addresses a `dns://` or `consul://` channel balances over right now, following every
    /// change (for readiness checks and tests); `None` for fixed `http://` addresses.
    pub fn discovered(&self) -> Option<watch::Receiver<Vec<SocketAddr>>> {
        self.discovered.clone()
    }
}

/// Keeps the balancer's endpoint set equal to what DNS returns; stops when the channel is gone.
async fn resolve_loop(
    host: String,
    port: u16,
    config: UpstreamConfig,
    changes: tokio::sync::mpsc::Sender<Change<SocketAddr, Endpoint>>,
    published: watch::Sender<Vec<SocketAddr>>,
) {
    let mut current: HashSet<SocketAddr> = HashSet::new();
    let refresh = Duration::from_millis(config.dns_refresh_ms.max(100));
    loop {
        match tokio::net::lookup_host((host.as_str(), port)).await {
            Ok(addrs) => {
                let found: HashSet<SocketAddr> = addrs.collect();
                for addr in found.difference(&current) {
                    let Ok(ep) = endpoint(format!("http://{addr}"), &config) else {
                        continue;
                    };
                    if changes.send(Change::Insert(*addr, ep)).await.is_err() {
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
                    published.send_replace(list);
                }
                current = found;
            }
            // Keep the last known set: a DNS blip must not empty the balancer.
            Err(e) => tracing::warn!(%host, error = %e, "cannot resolve upstream"),
        }
        tokio::time::sleep(refresh).await;
        if changes.is_closed() {
            return;
        }
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

fn is_timeout(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut current = Some(error);
    while let Some(e) = current {
        if e.is::<tonic::TimeoutExpired>() {
            return true;
        }
        current = e.source();
    }
    false
}

/// An error and its sources, `outer: inner: innermost`, without repeats.
fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut current = Some(error);
    while let Some(e) = current {
        let text = e.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        current = e.source();
    }
    parts.join(": ")
}

impl Service<Request<Body>> for Channel {
    type Response = Response<Body>;
    type Error = BoxError;
    type Future = BoxFuture<'static, Result<Response<Body>, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, mut req: Request<Body>) -> Self::Future {
        let path = req.uri().path().to_owned();
        let (service, method) = rpc_parts(&path);
        let span = tracing::info_span!(
            "grpc.client",
            otel.name = %path.trim_start_matches('/'),
            otel.kind = "client",
            rpc.system = "grpc",
            rpc.service = %service,
            rpc.method = %method,
            rpc.grpc.status_code = tracing::field::Empty,
        );
        propagation::inject(&span, req.headers_mut());

        // The tightest of: what the caller set on this request, what is left of the call we
        // are serving, and this upstream's default.
        let explicit = req
            .headers()
            .get("grpc-timeout")
            .and_then(|v| v.to_str().ok())
            .and_then(propagation::parse_grpc_timeout);
        let timeout = [
            explicit,
            propagation::remaining(),
            Some(self.default_timeout),
        ]
        .into_iter()
        .flatten()
        .min()
        .unwrap_or(self.default_timeout);
        if let Ok(value) = HeaderValue::from_str(&propagation::format_grpc_timeout(timeout)) {
            req.headers_mut().insert("grpc-timeout", value);
        }

        let future = self.inner.call(req);
        let recorder = span.clone();
        Box::pin(
            async move {
                // The server enforces `grpc-timeout` too, but a call that never reaches one (no
                // address resolved yet, connect hanging) must not outlive its deadline either.
                // A `Status` boxed here reaches the caller unchanged.
                let response = match tokio::time::timeout(timeout, future).await {
                    // tonic's channel enforces the same `grpc-timeout` and reports its expiry
                    // as a transport error that becomes CANCELLED; it is this call's deadline.
                    Ok(Err(e)) if is_timeout(&e) => {
                        return Err(Box::new(tonic::Status::deadline_exceeded(format!(
                            "no response from the upstream within {} ms",
                            timeout.as_millis()
                        ))) as BoxError);
                    }
                    // Anything else the channel fails with is the transport's (no connection,
                    // or the connection broke mid-call): the upstream is unavailable, which is
                    // what gRPC names it and what a caller may retry. tonic alone would report
                    // a broken connection as UNKNOWN "transport error".
                    Ok(Err(e)) => {
                        return Err(Box::new(tonic::Status::unavailable(format!(
                            "upstream unreachable: {}",
                            error_chain(&e)
                        ))) as BoxError);
                    }
                    Ok(Ok(response)) => response,
                    Err(_) => {
                        return Err(Box::new(tonic::Status::deadline_exceeded(format!(
                            "no response from the upstream within {} ms",
                            timeout.as_millis()
                        ))) as BoxError);
                    }
                };
                let code = response
                    .headers()
                    .get("grpc-status")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse::<i32>().ok())
                    .unwrap_or(0);
                recorder.record("rpc.grpc.status_code", code);
                // What the upstream ran counts against the call we are serving, so a gateway
                // request reports every statement it caused.
                if let Some(n) = response
                    .headers()
                    .get(crate::tracking::QUERY_COUNT_HEADER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse::<u32>().ok())
                {
                    crate::tracking::add_statements(n);
                }
                Ok(response)
            }
            .instrument(span),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_parse() {
        assert_eq!(
            Target::parse("http://127.0.0.1:50051").unwrap(),
            Target::Static(vec!["http://127.0.0.1:50051".into()])
        );
        assert_eq!(
            Target::parse("dns://catalog-headless.photos.svc:50051").unwrap(),
            Target::Dns {
                host: "catalog-headless.photos.svc".into(),
                port: 50051
            }
        );
        assert_eq!(
            Target::parse("http://a:1, http://b:2").unwrap(),
            Target::Static(vec!["http://a:1".into(), "http://b:2".into()])
        );
        assert_eq!(
            Target::parse("consul://photos-catalog").unwrap(),
            Target::Consul {
                service: "photos-catalog".into()
            }
        );
        for bad in [
            "",
            "catalog:50051",
            "dns://catalog",
            "dns://:50051",
            "dns://x:port",
            "consul://",
            "consul://a/b",
        ] {
            assert!(Target::parse(bad).is_err(), "{bad:?} should be rejected");
        }
    }
}
