//! The gateway: HTTP/JSON for web apps, calling the services over gRPC (issue "Gateway").
//! Routes whose issue has not landed answer 501 with a problem document.

mod api;
pub mod auth;
pub mod config;
pub mod error;
mod http_cache;
mod openapi;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, FromRef, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use photos_proto::cache_admin::v1::cache_admin_service_client::CacheAdminServiceClient;
use photos_proto::catalog::v1::catalog_service_client::CatalogServiceClient;
use photos_proto::metrics::v1::metrics_service_client::MetricsServiceClient;
use photos_proto::storage::v1::storage_service_client::StorageServiceClient;
use photos_runtime::client::Channel;
use photos_runtime::propagation;
use tokio::net::TcpListener;
use tracing::Instrument;

pub use config::GatewayConfig;
pub use error::GatewayError;

#[derive(Clone)]
struct AppState {
    catalog: CatalogServiceClient<Channel>,
    storage: StorageServiceClient<Channel>,
    cache_admin: CacheAdminServiceClient<Channel>,
    metrics: MetricsServiceClient<Channel>,
    verifier: auth::Verifier,
    draining: Arc<AtomicBool>,
}

impl FromRef<AppState> for auth::Verifier {
    fn from_ref(state: &AppState) -> Self {
        state.verifier.clone()
    }
}

pub struct Application {
    listener: TcpListener,
    router: Router,
    draining: Arc<AtomicBool>,
    drain_grace: Duration,
}

pub async fn build(config: GatewayConfig) -> Result<Application, GatewayError> {
    let addr = SocketAddr::new(config.http.host, config.http.port);
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| GatewayError::Bind { addr, source })?;
    let draining = Arc::new(AtomicBool::new(false));
    let state = AppState {
        catalog: CatalogServiceClient::new(Channel::connect_lazy(&config.catalog)?),
        storage: StorageServiceClient::new(Channel::connect_lazy(&config.storage)?),
        cache_admin: CacheAdminServiceClient::new(Channel::connect_lazy(&config.cache_admin)?),
        metrics: MetricsServiceClient::new(Channel::connect_lazy(&config.metrics)?),
        verifier: auth::Verifier::new(&config.auth),
        draining: draining.clone(),
    };
    let api = Router::new()
        .route(
            "/api/v1/albums",
            get(api::list_albums).post(api::create_album),
        )
        .route(
            "/api/v1/albums/{id}",
            get(api::get_album)
                .patch(api::update_album)
                .delete(api::delete_album),
        )
        // Upload (POST) waits for the gateway issue's upload flow.
        .route(
            "/api/v1/albums/{id}/photos",
            get(api::list_album_photos).post(not_implemented),
        )
        .route("/api/v1/photos/recent", get(api::recent_photos))
        .route(
            "/api/v1/photos/{id}",
            get(api::get_photo).delete(api::delete_photo),
        )
        .route("/api/v1/admin/albums/publish", post(api::publish))
        .route("/api/v1/admin/albums/unpublish", post(api::unpublish))
        .route("/api/v1/admin/cache-stats", get(api::cache_stats))
        .route("/api/v1/admin/performance", get(api::performance))
        .route("/api/openapi.json", get(openapi::document))
        .layer(axum::middleware::from_fn(http_cache::etag))
        .layer(DefaultBodyLimit::max(config.http.max_json_bytes));
    let router = Router::new()
        .route("/healthz", get(healthz))
        .merge(api)
        .fallback(not_found)
        .layer(axum::middleware::from_fn(trace_request))
        .with_state(state);
    Ok(Application {
        listener,
        router,
        draining,
        drain_grace: Duration::from_millis(config.http.drain_grace_ms),
    })
}

impl Application {
    pub fn http_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("bound listener has an address")
    }

    /// Serves until `shutdown` resolves; then `/healthz` turns 503 and in-flight requests get
    /// the drain grace period to finish.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), GatewayError> {
        let draining = self.draining.clone();
        let (stopped_tx, stopped_rx) = tokio::sync::oneshot::channel::<()>();
        let serve = axum::serve(self.listener, self.router)
            .with_graceful_shutdown(async move {
                shutdown.await;
                draining.store(true, Ordering::SeqCst);
                let _ = stopped_tx.send(());
            })
            .into_future();
        let mut serve = std::pin::pin!(serve);
        tokio::select! {
            result = &mut serve => return result.map_err(GatewayError::Serve),
            _ = stopped_rx => {}
        }
        match tokio::time::timeout(self.drain_grace, serve).await {
            Ok(result) => result.map_err(GatewayError::Serve),
            Err(_) => {
                tracing::warn!("requests still open after the drain grace period; closing them");
                Ok(())
            }
        }
    }
}

/// One server span per HTTP request, continuing the caller's trace if it sent `traceparent`.
async fn trace_request(request: Request, next: Next) -> Response {
    let span = tracing::info_span!(
        "http.server",
        otel.name = %format!("{} {}", request.method(), request.uri().path()),
        otel.kind = "server",
        http.request.method = %request.method(),
        url.path = %request.uri().path(),
        http.response.status_code = tracing::field::Empty,
    );
    propagation::extract_into(request.headers(), &span);
    let recorder = span.clone();
    async move {
        let response = next.run(request).await;
        recorder.record("http.response.status_code", response.status().as_u16());
        response
    }
    .instrument(span)
    .await
}

async fn healthz(State(state): State<AppState>) -> impl IntoResponse {
    if state.draining.load(Ordering::SeqCst) {
        (StatusCode::SERVICE_UNAVAILABLE, "draining\n")
    } else {
        (StatusCode::OK, "ok\n")
    }
}

/// Routes of the v1 HTTP API whose issue has not landed yet.
async fn not_implemented() -> GatewayError {
    GatewayError::NotImplemented("this route is not implemented yet")
}

async fn not_found() -> GatewayError {
    GatewayError::NotFound
}
