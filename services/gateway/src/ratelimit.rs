//! Rate limiting per client: per user when the request carries a valid token, else per client
//! IP. The client IP is the peer address unless the peer is a configured proxy; then
//! `X-Forwarded-For` is read from the right, skipping trusted proxies, and the first address
//! not trusted is the client. A header from any other peer is ignored: it is whatever the
//! client chose to write.
//!
//! The limit is GCRA (a token bucket kept as one timestamp per client): `burst` requests at
//! once, then one per `60 s / requests_per_minute`. Refusals are 429 with `Retry-After`.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, Request, State};
use axum::http::HeaderMap;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use ipnet::IpNet;
use moka::ops::compute::Op;

use crate::AppState;
use crate::auth::{Authenticated, Principal};
use crate::config::RateLimitConfig;
use crate::error::GatewayError;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ClientKey {
    User(String),
    Ip(IpAddr),
}

#[derive(Clone)]
pub struct RateLimiter {
    /// None: rate limiting is off.
    interval: Option<Duration>,
    /// How far ahead of now a client's theoretical arrival time may run: the burst.
    tolerance: Duration,
    trusted_proxies: std::sync::Arc<[IpNet]>,
    /// Theoretical arrival time per client. An entry idle for longer than the tolerance
    /// describes a full bucket, so forgetting it changes nothing.
    arrivals: moka::sync::Cache<ClientKey, Instant>,
}

impl RateLimiter {
    pub fn new(config: &RateLimitConfig) -> Self {
        let interval = (config.requests_per_minute > 0)
            .then(|| Duration::from_secs(60) / config.requests_per_minute);
        let tolerance = interval.unwrap_or_default() * config.burst;
        Self {
            interval,
            tolerance,
            trusted_proxies: config.trusted_proxies.clone().into(),
            arrivals: moka::sync::Cache::builder()
                .max_capacity(config.max_tracked_clients)
                .time_to_idle(tolerance.max(Duration::from_secs(1)))
                .build(),
        }
    }

    fn trusted(&self, ip: IpAddr) -> bool {
        self.trusted_proxies.iter().any(|net| net.contains(&ip))
    }

    /// The client's address, believing `X-Forwarded-For` only as far as trusted proxies wrote it.
    pub fn client_ip(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        if !self.trusted(peer) {
            return peer;
        }
        let mut client = peer;
        let hops = headers
            .get_all("x-forwarded-for")
            .iter()
            .rev()
            .flat_map(|v| v.to_str().unwrap_or("").rsplit(','));
        for hop in hops {
            // Garbage in the chain ends it: the last address a trusted proxy saw is the client.
            let Some(ip) = parse_hop(hop.trim()) else {
                break;
            };
            client = ip;
            if !self.trusted(ip) {
                break;
            }
        }
        client
    }

    /// Ok, or how long the client must wait.
    pub fn check(&self, key: ClientKey, now: Instant) -> Result<(), Duration> {
        let Some(interval) = self.interval else {
            return Ok(());
        };
        let mut verdict = Ok(());
        self.arrivals.entry(key).and_compute_with(|current| {
            let arrival = current.map_or(now, |e| e.into_value()).max(now);
            let next = arrival + interval;
            let ahead = next - now;
            if ahead > self.tolerance {
                verdict = Err(ahead - self.tolerance);
                Op::Nop
            } else {
                Op::Put(next)
            }
        });
        verdict
    }
}

/// `a.b.c.d`, `a.b.c.d:port`, an IPv6 address, or `[v6]:port`.
fn parse_hop(hop: &str) -> Option<IpAddr> {
    hop.parse::<IpAddr>()
        .ok()
        .or_else(|| hop.parse::<SocketAddr>().ok().map(|s| s.ip()))
}

/// Verifies the caller's token once (handlers read the result from the request), then charges
/// the request to the user or, for anonymous and badly authenticated requests, to the client IP.
pub async fn admit(State(state): State<AppState>, mut request: Request, next: Next) -> Response {
    let principal = state.verifier.from_headers(request.headers());
    let key = match &principal {
        Ok(Principal::User { id, .. }) => ClientKey::User(id.clone()),
        _ => {
            let peer = request
                .extensions()
                .get::<ConnectInfo<SocketAddr>>()
                .map_or(IpAddr::from([0, 0, 0, 0]), |c| c.0.ip());
            ClientKey::Ip(state.rate_limiter.client_ip(peer, request.headers()))
        }
    };
    if let Err(wait) = state.rate_limiter.check(key, Instant::now()) {
        return GatewayError::RateLimited {
            retry_after_secs: wait.as_secs() + u64::from(wait.subsec_nanos() > 0),
        }
        .into_response();
    }
    request
        .extensions_mut()
        .insert(Authenticated::new(principal));
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter(rpm: u32, burst: u32, trusted: &[&str]) -> RateLimiter {
        RateLimiter::new(&RateLimitConfig {
            requests_per_minute: rpm,
            burst,
            trusted_proxies: trusted.iter().map(|t| t.parse().unwrap()).collect(),
            max_tracked_clients: 1000,
        })
    }

    fn xff(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append("x-forwarded-for", v.parse().unwrap());
        }
        h
    }

    #[test]
    fn a_burst_passes_then_one_request_per_interval() {
        let l = limiter(60, 3, &[]);
        let key = || ClientKey::User("alice".into());
        let t0 = Instant::now();
        for _ in 0..3 {
            assert_eq!(l.check(key(), t0), Ok(()));
        }
        assert_eq!(l.check(key(), t0), Err(Duration::from_secs(1)));
        // Refusals do not use up capacity.
        assert_eq!(l.check(key(), t0), Err(Duration::from_secs(1)));
        assert_eq!(l.check(key(), t0 + Duration::from_secs(1)), Ok(()));
        assert!(l.check(key(), t0 + Duration::from_secs(1)).is_err());
        // Other clients have their own buckets.
        assert_eq!(l.check(ClientKey::User("bob".into()), t0), Ok(()));
    }

    #[test]
    fn zero_rate_turns_the_limit_off() {
        let l = limiter(0, 0, &[]);
        for _ in 0..1000 {
            assert_eq!(
                l.check(ClientKey::Ip([1, 2, 3, 4].into()), Instant::now()),
                Ok(())
            );
        }
    }

    #[test]
    fn forwarded_for_is_ignored_from_untrusted_peers() {
        let l = limiter(60, 1, &["10.0.0.0/8"]);
        let peer: IpAddr = "203.0.113.9".parse().unwrap();
        assert_eq!(l.client_ip(peer, &xff(&["198.51.100.1"])), peer);
    }

    #[test]
    fn forwarded_for_is_read_from_the_right_through_trusted_proxies() {
        let l = limiter(60, 1, &["10.0.0.0/8", "::1/128"]);
        let proxy: IpAddr = "10.0.0.2".parse().unwrap();
        // The client forged the leftmost entry; the trusted chain starts at the right.
        let h = xff(&["6.6.6.6, 198.51.100.7", "10.0.0.1"]);
        assert_eq!(
            l.client_ip(proxy, &h),
            "198.51.100.7".parse::<IpAddr>().unwrap()
        );
        assert_eq!(
            l.client_ip(proxy, &xff(&["[2001:db8::1]:443"])),
            "2001:db8::1".parse::<IpAddr>().unwrap()
        );
        // No header: the proxy itself is all we know.
        assert_eq!(l.client_ip(proxy, &HeaderMap::new()), proxy);
        // Garbage stops the walk at the last trusted hop.
        assert_eq!(l.client_ip(proxy, &xff(&["198.51.100.7, unknown"])), proxy);
    }
}
