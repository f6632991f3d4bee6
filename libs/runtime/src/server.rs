//! The gRPC server bootstrap every service uses: bind first (port 0 in tests), serve health
//! (NOT_SERVING until the service's readiness check passes), reflection limited to the
//! server's own API, the tower stack of [`crate::layers`], an admin HTTP port, and a graceful
//! drain on shutdown: NOT_SERVING → wait `drain_delay` → stop accepting → let in-flight calls
//! finish within `drain_grace` → exit.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use http::{Request, Response};
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tonic::body::Body;
use tonic::server::NamedService;
use tonic::service::RoutesBuilder;
use tonic::transport::server::TcpIncoming;
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;
use tower::Service;

use crate::config::ServerConfig;
use crate::layers::{ConcurrencyLayer, DeadlineLayer, MetricsLayer, TraceLayer, Tracking};
use crate::metrics::ServerMetrics;
use crate::tracking::Reporter;

const HEALTH_SERVICE: &str = "grpc.health.v1.Health";

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("cannot bind {what} on {addr}: {source}")]
    Bind {
        what: &'static str,
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot build the reflection service: {0}")]
    Reflection(String),
    #[error("gRPC server failed: {0}")]
    Serve(String),
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
}

/// Collects a server's services before binding.
pub struct ServerBuilder {
    name: &'static str,
    config: ServerConfig,
    routes: RoutesBuilder,
    service_names: Vec<&'static str>,
    descriptors: Vec<&'static [u8]>,
}

impl ServerBuilder {
    pub fn new(name: &'static str, config: ServerConfig) -> Self {
        Self {
            name,
            config,
            routes: RoutesBuilder::default(),
            service_names: Vec::new(),
            descriptors: Vec::new(),
        }
    }

    /// Mounts a generated tonic server; its name is reported by health and reflection.
    pub fn add_service<S>(mut self, service: S) -> Self
    where
        S: Service<Request<Body>, Response = Response<Body>, Error = Infallible>
            + NamedService
            + Clone
            + Send
            + Sync
            + 'static,
        S::Future: Send + 'static,
    {
        self.service_names.push(S::NAME);
        self.routes.add_service(service);
        self
    }

    /// Registers an encoded file descriptor set for reflection.
    pub fn descriptor(mut self, file_descriptor_set: &'static [u8]) -> Self {
        self.descriptors.push(file_descriptor_set);
        self
    }

    /// Binds the gRPC and admin listeners. Nothing is served until [`BoundServer::run`].
    pub async fn bind(self) -> Result<BoundServer, ServerError> {
        let consul = crate::consul::client_for(&self.config.consul, self.config.host)?;
        let grpc_addr = SocketAddr::new(self.config.host, self.config.grpc_port);
        let admin_addr = SocketAddr::new(self.config.host, self.config.admin_port);
        let grpc = TcpListener::bind(grpc_addr)
            .await
            .map_err(|source| ServerError::Bind {
                what: "the gRPC port",
                addr: grpc_addr,
                source,
            })?;
        let admin = TcpListener::bind(admin_addr)
            .await
            .map_err(|source| ServerError::Bind {
                what: "the admin port",
                addr: admin_addr,
                source,
            })?;
        let health = HealthReporter::new();
        let health_service = tonic_health::pb::health_server::HealthServer::new(
            tonic_health::server::HealthService::from_health_reporter(health.clone()),
        );
        health
            .set_service_status("", ServingStatus::NotServing)
            .await;
        for name in &self.service_names {
            health
                .set_service_status(*name, ServingStatus::NotServing)
                .await;
        }
        let metrics = ServerMetrics::new(self.name);
        // Replicas are told apart by pod name (HOSTNAME in Kubernetes) and port.
        let instance = format!(
            "{}:{}",
            std::env::var("HOSTNAME").unwrap_or_else(|_| "localhost".to_owned()),
            grpc.local_addr().map(|a| a.port()).unwrap_or(0)
        );
        let reporter = Reporter::new(self.name, &instance);
        metrics.with_registry(|r| {
            r.register(
                "report_dropped_samples",
                "Per-call samples dropped because the metrics service could not keep up",
                reporter.dropped(),
            );
            r.register(
                "report_failures",
                "Reports to the metrics service that failed (their samples are retried)",
                reporter.failed(),
            );
        });
        Ok(BoundServer {
            name: self.name,
            consul,
            metrics,
            reporter,
            config: self.config,
            routes: self.routes,
            service_names: self.service_names,
            descriptors: self.descriptors,
            grpc,
            admin,
            health,
            health_service,
        })
    }
}

type HealthService =
    tonic_health::pb::health_server::HealthServer<tonic_health::server::HealthService>;

/// A server whose listeners are bound: addresses are known, calls are not served yet.
pub struct BoundServer {
    name: &'static str,
    consul: Option<photos_discovery::ConsulClient>,
    config: ServerConfig,
    routes: RoutesBuilder,
    service_names: Vec<&'static str>,
    descriptors: Vec<&'static [u8]>,
    grpc: TcpListener,
    admin: TcpListener,
    health: HealthReporter,
    health_service: HealthService,
    metrics: ServerMetrics,
    reporter: Reporter,
}

#[derive(Clone)]
struct AdminState {
    ready: Arc<AtomicBool>,
    metrics: ServerMetrics,
}

impl BoundServer {
    pub fn grpc_addr(&self) -> SocketAddr {
        self.grpc
            .local_addr()
            .expect("bound listener has an address")
    }

    pub fn admin_addr(&self) -> SocketAddr {
        self.admin
            .local_addr()
            .expect("bound listener has an address")
    }

    pub fn health(&self) -> HealthReporter {
        self.health.clone()
    }

    pub fn metrics(&self) -> ServerMetrics {
        self.metrics.clone()
    }

    /// The per-call sample reporter; a service with caches registers their counters here.
    pub fn reporter(&self) -> Reporter {
        self.reporter.clone()
    }

    /// Serves until `shutdown` resolves, then drains. `readiness` is retried with backoff until
    /// it succeeds; only then does health report SERVING.
    pub async fn run<R, RF, E, F>(self, mut readiness: R, shutdown: F) -> Result<(), ServerError>
    where
        R: FnMut() -> RF + Send,
        RF: Future<Output = Result<(), E>> + Send,
        E: std::fmt::Display,
        F: Future<Output = ()> + Send,
    {
        let BoundServer {
            name,
            consul,
            config,
            mut routes,
            service_names,
            descriptors,
            grpc,
            admin,
            health,
            health_service,
            metrics,
            reporter,
        } = self;
        let grpc_addr = grpc.local_addr().ok();

        let mut reflection_names: Vec<String> =
            service_names.iter().map(|s| s.to_string()).collect();
        reflection_names.extend([
            HEALTH_SERVICE.to_owned(),
            "grpc.reflection.v1.ServerReflection".to_owned(),
            "grpc.reflection.v1alpha.ServerReflection".to_owned(),
        ]);
        let reflection = |names: &[String]| {
            let mut builder = tonic_reflection::server::Builder::configure()
                .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET);
            for d in &descriptors {
                builder = builder.register_encoded_file_descriptor_set(d);
            }
            for n in names {
                builder = builder.with_service_name(n.clone());
            }
            builder
        };
        routes.add_service(
            reflection(&reflection_names)
                .build_v1()
                .map_err(|e| ServerError::Reflection(e.to_string()))?,
        );
        // grpcurl and many deployed clients still speak v1alpha.
        routes.add_service(
            reflection(&reflection_names)
                .build_v1alpha()
                .map_err(|e| ServerError::Reflection(e.to_string()))?,
        );
        routes.add_service(health_service);

        let stack = tower::ServiceBuilder::new()
            .layer(TraceLayer::new())
            .layer(DeadlineLayer::new(config.request_timeout()))
            .layer(ConcurrencyLayer::new(
                config.concurrency_limit,
                metrics.clone(),
            ))
            .layer(MetricsLayer::new(
                metrics.clone(),
                Tracking {
                    slow_request: config.slow_request(),
                    reporter: (!config.metrics_service.is_empty()).then(|| reporter.clone()),
                },
            ));
        let reporting_stop = CancellationToken::new();
        let reporting = (!config.metrics_service.is_empty()).then(|| {
            tokio::spawn(reporter.run(
                crate::config::UpstreamConfig::new(config.metrics_service.clone()),
                config.report_interval(),
                reporting_stop.clone(),
            ))
        });

        let (stop_accepting, stop_accepting_rx) = tokio::sync::oneshot::channel::<()>();
        let incoming = TcpIncoming::from(grpc)
            .with_nodelay(Some(true))
            .with_keepalive(Some(Duration::from_secs(60)));
        let serve = tonic::transport::Server::builder()
            .http2_keepalive_interval(Some(Duration::from_secs(30)))
            .layer(stack)
            .add_routes(routes.routes())
            .serve_with_incoming_shutdown(incoming, async {
                let _ = stop_accepting_rx.await;
            });
        let mut serve = tokio::spawn(serve);

        // Registered once SERVING, so the agent's first check can pass; see `crate::consul`.
        let serving = Arc::new(Notify::new());
        let presence = consul.zip(grpc_addr).map(|(client, addr)| {
            let registration = crate::consul::registration(&config.consul, name, addr);
            crate::consul::Presence::start(client, registration, serving.clone())
        });
        let leave = || async {
            if let Some(presence) = presence {
                presence.leave().await;
            }
        };

        let ready = Arc::new(AtomicBool::new(false));
        let admin_stop = CancellationToken::new();
        let admin_router = axum::Router::new()
            .route("/live", axum::routing::get(|| async { "live\n" }))
            .route("/ready", axum::routing::get(ready_handler))
            .route("/metrics", axum::routing::get(metrics_handler))
            .with_state(AdminState {
                ready: ready.clone(),
                metrics,
            });
        let admin_task = tokio::spawn(
            axum::serve(admin, admin_router)
                .with_graceful_shutdown(admin_stop.clone().cancelled_owned())
                .into_future(),
        );

        let become_ready = async {
            let mut backoff = Duration::from_millis(100);
            loop {
                match readiness().await {
                    Ok(()) => break,
                    Err(e) => {
                        tracing::warn!(server = name, error = %e, retry_in_ms = backoff.as_millis() as u64, "not ready yet");
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(Duration::from_secs(5));
                    }
                }
            }
            for n in &service_names {
                health.set_service_status(*n, ServingStatus::Serving).await;
            }
            health.set_service_status("", ServingStatus::Serving).await;
            ready.store(true, Ordering::SeqCst);
            serving.notify_one();
            tracing::info!(server = name, addr = ?grpc_addr, "serving");
            std::future::pending::<()>().await
        };

        let early_exit = tokio::select! {
            () = shutdown => None,
            () = become_ready => None,
            result = &mut serve => Some(result),
        };
        if let Some(result) = early_exit {
            leave().await;
            admin_stop.cancel();
            reporting_stop.cancel();
            return match result {
                Ok(Ok(())) => Ok(()),
                Ok(Err(e)) => Err(ServerError::Serve(e.to_string())),
                Err(e) => Err(ServerError::Serve(e.to_string())),
            };
        }

        tracing::info!(server = name, "draining: health set to NOT_SERVING");
        ready.store(false, Ordering::SeqCst);
        for n in &service_names {
            health
                .set_service_status(*n, ServingStatus::NotServing)
                .await;
        }
        health
            .set_service_status("", ServingStatus::NotServing)
            .await;
        // Out of the Consul catalog at once rather than at the agent's next check, while the
        // drain delay keeps the listener open for calls already routed here.
        tokio::join!(leave(), tokio::time::sleep(config.drain_delay()));
        let _ = stop_accepting.send(());
        let outcome = match tokio::time::timeout(config.drain_grace(), &mut serve).await {
            Ok(Ok(Ok(()))) => {
                tracing::info!(server = name, "drained");
                Ok(())
            }
            Ok(Ok(Err(e))) => Err(ServerError::Serve(e.to_string())),
            Ok(Err(e)) => Err(ServerError::Serve(e.to_string())),
            Err(_) => {
                tracing::warn!(
                    server = name,
                    grace_ms = config.drain_grace_ms,
                    "calls still open after the drain grace period; closing them"
                );
                serve.abort();
                Ok(())
            }
        };
        admin_stop.cancel();
        let _ = admin_task.await;
        // Last, so the calls completed during the drain are in the final report.
        reporting_stop.cancel();
        if let Some(task) = reporting {
            let _ = task.await;
        }
        outcome
    }
}

async fn ready_handler(State(state): State<AdminState>) -> impl IntoResponse {
    if state.ready.load(Ordering::SeqCst) {
        (StatusCode::OK, "ready\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready\n")
    }
}

async fn metrics_handler(State(state): State<AdminState>) -> impl IntoResponse {
    (
        [(
            http::header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.encode(),
    )
}
