//! Consul registration of a server instance, for running photos outside Kubernetes (there, the
//! chart's headless Services and `dns://` upstreams do this job). The instance is registered
//! with a gRPC health check once it reports SERVING, and deregistered as soon as it turns
//! NOT_SERVING on shutdown, before the drain delay, so clients following the passing set (the
//! `consul://` upstreams of [`crate::client`]) stop sending it calls while it can still answer.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use photos_discovery::{ConsulClient, ConsulConfig, Registration};
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::ConfigError;

/// Longest pause between registration attempts while the agent is unreachable.
const MAX_RETRY: Duration = Duration::from_secs(30);

/// Checks `server.consul` for a server bound to `host`; `Ok(None)` when Consul is disabled.
pub(crate) fn client_for(
    config: &ConsulConfig,
    host: std::net::IpAddr,
) -> Result<Option<ConsulClient>, ConfigError> {
    if !config.enabled() {
        return Ok(None);
    }
    let client = ConsulClient::new(config.clone())
        .map_err(|e| ConfigError::new("server.consul.address", e.to_string()))?;
    if config.advertise_address.trim().is_empty() && host.is_unspecified() {
        return Err(ConfigError::new(
            "server.consul.advertise_address",
            format!(
                "must be set when server.host is {host}: other instances cannot dial an unspecified address"
            ),
        ));
    }
    for (key, value) in [
        ("server.consul.check_interval_ms", config.check_interval_ms),
        ("server.consul.check_timeout_ms", config.check_timeout_ms),
        (
            "server.consul.deregister_critical_after_ms",
            config.deregister_critical_after_ms,
        ),
    ] {
        if value == 0 {
            return Err(ConfigError::new(key, "must be greater than 0"));
        }
    }
    Ok(Some(client))
}

/// What this instance registers as: `server.consul.service` (default `photos-<server name>`) at
/// the advertised address (default: the bound one) and the bound gRPC port.
pub(crate) fn registration(
    config: &ConsulConfig,
    server_name: &str,
    bound: SocketAddr,
) -> Registration {
    let service = if config.service.trim().is_empty() {
        format!("photos-{server_name}")
    } else {
        config.service.trim().to_owned()
    };
    let address = if config.advertise_address.trim().is_empty() {
        bound.ip().to_string()
    } else {
        config.advertise_address.trim().to_owned()
    };
    let mut registration = Registration::grpc(service, address, bound.port());
    registration
        .meta
        .insert("server".to_owned(), server_name.to_owned());
    registration
}

/// This instance's presence in the Consul catalog: registered once `serving` is notified
/// (retrying while the agent is unreachable; the server serves meanwhile), taken out by
/// [`Presence::leave`].
pub(crate) struct Presence {
    client: ConsulClient,
    id: String,
    stop: CancellationToken,
    task: JoinHandle<bool>,
}

impl Presence {
    pub(crate) fn start(
        client: ConsulClient,
        registration: Registration,
        serving: Arc<Notify>,
    ) -> Presence {
        let stop = CancellationToken::new();
        let id = registration.id.clone();
        let task = tokio::spawn(register_when_serving(
            client.clone(),
            registration,
            serving,
            stop.clone(),
        ));
        Presence {
            client,
            id,
            stop,
            task,
        }
    }

    /// Stops retrying and deregisters the instance if it was registered. A failure is logged,
    /// not returned: shutdown goes on, and the agent drops the instance once its check has been
    /// critical for `deregister_critical_after_ms`.
    pub(crate) async fn leave(self) {
        self.stop.cancel();
        // A registration in flight is let finish, so it cannot land after the deregistration.
        if !self.task.await.unwrap_or(false) {
            return;
        }
        if let Err(e) = self.client.deregister(&self.id).await {
            tracing::warn!(id = %self.id, error = %e, "consul deregistration failed; the agent removes the instance after its check stays critical");
        }
    }
}

/// Returns whether the instance got registered.
async fn register_when_serving(
    client: ConsulClient,
    registration: Registration,
    serving: Arc<Notify>,
    stop: CancellationToken,
) -> bool {
    tokio::select! {
        () = stop.cancelled() => return false,
        () = serving.notified() => {}
    }
    let mut backoff = Duration::from_millis(client.config().retry_ms.max(10));
    loop {
        match client.register(&registration).await {
            Ok(_) => return true,
            Err(e) => {
                tracing::warn!(id = %registration.id, error = %e, retry_in_ms = backoff.as_millis() as u64, "consul registration failed");
                tokio::select! {
                    () = stop.cancelled() => return false,
                    () = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(MAX_RETRY);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enabled() -> ConsulConfig {
        ConsulConfig {
            address: "http://127.0.0.1:8500".to_owned(),
            ..ConsulConfig::default()
        }
    }

    #[test]
    fn disabled_by_default() {
        let none = client_for(&ConsulConfig::default(), [0, 0, 0, 0].into()).unwrap();
        assert!(none.is_none());
    }

    #[test]
    fn an_unspecified_host_needs_an_advertised_address() {
        let err = client_for(&enabled(), [0, 0, 0, 0].into()).unwrap_err();
        assert_eq!(err.key, "server.consul.advertise_address");
        let mut config = enabled();
        config.advertise_address = "10.0.0.7".to_owned();
        assert!(client_for(&config, [0, 0, 0, 0].into()).unwrap().is_some());
        assert!(
            client_for(&enabled(), [127, 0, 0, 1].into())
                .unwrap()
                .is_some()
        );
    }

    #[test]
    fn bad_values_name_their_key() {
        let mut config = enabled();
        config.address = "127.0.0.1:8500".to_owned();
        let err = client_for(&config, [127, 0, 0, 1].into()).unwrap_err();
        assert_eq!(err.key, "server.consul.address");
        let mut config = enabled();
        config.check_interval_ms = 0;
        let err = client_for(&config, [127, 0, 0, 1].into()).unwrap_err();
        assert_eq!(err.key, "server.consul.check_interval_ms");
    }

    #[test]
    fn registration_defaults_to_the_server_name_and_bound_address() {
        let bound: SocketAddr = "127.0.0.1:50053".parse().unwrap();
        let r = registration(&enabled(), "storage", bound);
        assert_eq!(r.name, "photos-storage");
        assert_eq!((r.address.as_str(), r.port), ("127.0.0.1", 50053));
        assert_eq!(r.id, "photos-storage-127.0.0.1-50053");
        let mut config = enabled();
        config.service = "photos-blobs".to_owned();
        config.advertise_address = "storage-1.internal".to_owned();
        let r = registration(&config, "storage", bound);
        assert_eq!(r.name, "photos-blobs");
        assert_eq!(r.address, "storage-1.internal");
    }
}
