//! Prometheus metrics of one server: RED metrics per RPC recorded by the tower stack, plus a
//! registry services add their own metrics to. Served on the admin port at `/metrics`.

use std::sync::{Arc, Mutex};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RpcLabels {
    pub service: String,
    pub method: String,
    pub code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MethodLabels {
    pub service: String,
    pub method: String,
}

fn latency_histogram() -> Histogram {
    // 0.5 ms .. ~16 s.
    Histogram::new(exponential_buckets(0.0005, 2.0, 16))
}

/// The metrics the server stack records. Cheap to clone.
#[derive(Clone)]
pub struct ServerMetrics {
    registry: Arc<Mutex<Registry>>,
    pub requests: Family<RpcLabels, Counter>,
    pub duration: Family<MethodLabels, Histogram, fn() -> Histogram>,
    pub in_flight: Gauge,
    pub shed: Counter,
}

impl ServerMetrics {
    pub fn new(server: &str) -> Self {
        let mut registry = Registry::with_prefix_and_labels(
            "photos",
            [(
                std::borrow::Cow::Borrowed("server"),
                std::borrow::Cow::Owned(server.to_owned()),
            )]
            .into_iter(),
        );
        let requests = Family::<RpcLabels, Counter>::default();
        let duration = Family::<MethodLabels, Histogram, fn() -> Histogram>::new_with_constructor(
            latency_histogram,
        );
        let in_flight = Gauge::default();
        let shed = Counter::default();
        registry.register(
            "grpc_server_requests",
            "gRPC calls completed, by method and status code",
            requests.clone(),
        );
        registry.register(
            "grpc_server_duration_seconds",
            "gRPC call latency until the response headers",
            duration.clone(),
        );
        registry.register(
            "grpc_server_in_flight",
            "gRPC calls in progress",
            in_flight.clone(),
        );
        registry.register(
            "grpc_server_shed",
            "gRPC calls rejected because the concurrency limit was reached",
            shed.clone(),
        );
        Self {
            registry: Arc::new(Mutex::new(registry)),
            requests,
            duration,
            in_flight,
            shed,
        }
    }

    /// Lets a service register its own metrics (pool saturation, cache stats, ...).
    pub fn with_registry<R>(&self, f: impl FnOnce(&mut Registry) -> R) -> R {
        f(&mut self.registry.lock().expect("metrics registry poisoned"))
    }

    /// The Prometheus text exposition of every registered metric.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        let registry = self.registry.lock().expect("metrics registry poisoned");
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &registry);
        out
    }
}
