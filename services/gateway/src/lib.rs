//! The gateway: HTTP/JSON for web apps, calling the services over gRPC (issue "Gateway").
//! Routes whose issue has not landed answer 501 with a problem document.

pub mod config;
pub mod error;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::extract::{Query, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use photos_proto::catalog::v1::catalog_service_client::CatalogServiceClient;
use photos_proto::catalog::v1::{Album, ListAlbumsRequest};
use photos_runtime::client::Channel;
use photos_runtime::propagation;
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tracing::Instrument;

pub use config::GatewayConfig;
pub use error::GatewayError;

#[derive(Clone)]
struct AppState {
    catalog: CatalogServiceClient<Channel>,
    draining: Arc<AtomicBool>,
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
        draining: draining.clone(),
    };
    let router = Router::new()
        .route("/healthz", get(healthz))
        .route("/api/v1/albums", get(list_albums).post(not_implemented))
        .route(
            "/api/v1/albums/{id}",
            get(not_implemented)
                .patch(not_implemented)
                .delete(not_implemented),
        )
        .route(
            "/api/v1/albums/{id}/photos",
            get(not_implemented).post(not_implemented),
        )
        .route("/api/v1/photos/recent", get(not_implemented))
        .route(
            "/api/v1/photos/{id}",
            get(not_implemented).delete(not_implemented),
        )
        .route(
            "/api/v1/admin/albums/publish",
            axum::routing::post(not_implemented),
        )
        .route(
            "/api/v1/admin/albums/unpublish",
            axum::routing::post(not_implemented),
        )
        .route("/api/v1/admin/cache-stats", get(not_implemented))
        .route("/api/v1/admin/performance", get(not_implemented))
        .route("/api/openapi.json", get(not_implemented))
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

#[derive(Debug, Deserialize)]
struct PageQuery {
    page_size: Option<i32>,
    page_token: Option<String>,
}

#[derive(Debug, Serialize)]
struct AlbumJson {
    id: String,
    title: String,
    description: String,
    is_published: bool,
    order: i32,
    photo_count: i64,
}

impl From<Album> for AlbumJson {
    fn from(a: Album) -> Self {
        Self {
            id: a.id,
            title: a.title,
            description: a.description,
            is_published: a.is_published,
            order: a.order,
            photo_count: a.photo_count,
        }
    }
}

#[derive(Debug, Serialize)]
struct AlbumPage {
    albums: Vec<AlbumJson>,
    next_page_token: String,
}

async fn list_albums(
    State(mut state): State<AppState>,
    Query(query): Query<PageQuery>,
) -> Result<Json<AlbumPage>, GatewayError> {
    let response = state
        .catalog
        .list_albums(ListAlbumsRequest {
            published_only: true,
            page_size: query.page_size.unwrap_or(20),
            page_token: query.page_token.unwrap_or_default(),
            preview_count: 4,
            owner_id: String::new(),
        })
        .await?
        .into_inner();
    Ok(Json(AlbumPage {
        albums: response.albums.into_iter().map(AlbumJson::from).collect(),
        next_page_token: response.next_page_token,
    }))
}

/// Routes of the v1 HTTP API whose issue has not landed yet.
async fn not_implemented() -> GatewayError {
    GatewayError::NotImplemented("this route is not implemented yet")
}

async fn not_found() -> GatewayError {
    GatewayError::NotFound
}
