//! The gateway: HTTP/JSON for web apps, calling the services over gRPC (issue "Gateway").

mod api;
pub mod auth;
pub mod config;
pub mod error;
mod http_cache;
mod idempotency;
mod jobs;
mod openapi;
mod pages;
mod ratelimit;
mod rendered;
pub mod retry;
mod sources;
mod upload;

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
use photos_proto::jobs::v1::job_service_client::JobServiceClient;
use photos_proto::media::v1::media_service_client::MediaServiceClient;
use photos_proto::metrics::v1::metrics_service_client::MetricsServiceClient;
use photos_proto::storage::v1::storage_service_client::StorageServiceClient;
use photos_runtime::client::Channel;
use photos_runtime::propagation;
use photos_runtime::tracking::{self, Reporter};
use tokio::net::TcpListener;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tracing::Instrument;

pub use config::GatewayConfig;
pub use error::GatewayError;

#[derive(Clone)]
struct AppState {
    catalog: CatalogServiceClient<Channel>,
    /// The catalog's channel, for calls whose answer the gateway keeps in wire bytes.
    catalog_channel: Channel,
    /// Album lists as last sent, reused while the catalog answers the same bytes.
    album_pages: rendered::RenderedPages,
    /// The catalog's durable jobs API (same address as the catalog).
    jobs: JobServiceClient<Channel>,
    media: MediaServiceClient<Channel>,
    storage: StorageServiceClient<Channel>,
    cache_admin: CacheAdminServiceClient<Channel>,
    metrics: MetricsServiceClient<Channel>,
    verifier: auth::Verifier,
    sources: sources::Sources,
    idempotency: idempotency::Idempotency,
    rate_limiter: ratelimit::RateLimiter,
    upload: Arc<config::UploadConfig>,
    /// Shared by every idempotent upstream call this process retries.
    retries: Arc<retry::RetryBudget>,
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
    reporter: Reporter,
    metrics: photos_runtime::UpstreamConfig,
    report_interval: Duration,
    retries: Arc<retry::RetryBudget>,
}

pub async fn build(config: GatewayConfig) -> Result<Application, GatewayError> {
    let addr = SocketAddr::new(config.http.host, config.http.port);
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| GatewayError::Bind { addr, source })?;
    let draining = Arc::new(AtomicBool::new(false));
    let catalog = Channel::connect_lazy(&config.catalog)?;
    let retries = Arc::new(retry::RetryBudget::default());
    let state = AppState {
        catalog: CatalogServiceClient::new(catalog.clone()),
        catalog_channel: catalog.clone(),
        album_pages: rendered::RenderedPages::default(),
        jobs: JobServiceClient::new(catalog),
        // Originals above tonic's 4 MiB default never travel as one message, but media's
        // answers list every variant and may pass it on large preset tables.
        media: MediaServiceClient::new(Channel::connect_lazy(&config.media)?)
            .max_decoding_message_size(16 * 1024 * 1024),
        storage: StorageServiceClient::new(Channel::connect_lazy(&config.storage)?),
        cache_admin: CacheAdminServiceClient::new(Channel::connect_lazy(&config.cache_admin)?),
        metrics: MetricsServiceClient::new(Channel::connect_lazy(&config.metrics)?),
        verifier: auth::Verifier::new(&config.auth).map_err(GatewayError::Auth)?,
        sources: sources::Sources::new(&config.sources),
        idempotency: idempotency::Idempotency::new(
            shared_cache(&config)
                .await?
                .named(photos_cache::CacheName::Sessions),
            Duration::from_secs(config.upload.idempotency_ttl_seconds),
        ),
        rate_limiter: ratelimit::RateLimiter::new(&config.rate_limit),
        upload: Arc::new(config.upload.clone()),
        retries: retries.clone(),
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
        .route(
            "/api/v1/albums/{id}/photos",
            get(api::list_album_photos)
                .post(upload::upload_photo)
                .layer(DefaultBodyLimit::max(
                    usize::try_from(config.upload.max_bytes + upload::FORM_OVERHEAD_BYTES)
                        .unwrap_or(usize::MAX),
                )),
        )
        .route(
            "/api/v1/albums/{id}/photos/order",
            axum::routing::put(api::reorder_photos),
        )
        .route("/api/v1/photos/recent", get(api::recent_photos))
        .route(
            "/api/v1/photos/{id}",
            get(api::get_photo).delete(api::delete_photo),
        )
        .route("/api/v1/admin/albums/publish", post(api::publish))
        .route("/api/v1/admin/albums/unpublish", post(api::unpublish))
        .route("/api/v1/admin/albums/reorder", post(api::reorder_albums))
        .route("/api/v1/admin/cache-stats", get(api::cache_stats))
        .route("/api/v1/admin/performance", get(api::performance))
        .route(
            "/api/v1/admin/jobs/regenerate-thumbnails",
            post(jobs::regenerate_thumbnails),
        )
        .route("/api/v1/admin/jobs/{id}", get(jobs::get_job))
        .route("/api/openapi.json", get(openapi::document))
        .layer(axum::middleware::from_fn(http_cache::etag))
        .layer(DefaultBodyLimit::max(config.http.max_json_bytes))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            ratelimit::admit,
        ));
    let mut router = Router::new()
        .route("/healthz", get(healthz))
        .merge(api)
        .merge(pages::routes())
        .fallback(not_found)
        .with_state(state);
    // Outside the rate limit: preflights are answered without being charged, and refusals
    // still carry the headers a browser needs to read them.
    if let Some(cors) = cors_layer(&config.cors) {
        router = router.layer(cors);
    }
    let reporter = Reporter::new("gateway", &format!("{}", config.http.port));
    let tracked = Tracked {
        reporter: reporter.clone(),
        slow_request: Duration::from_millis(config.http.slow_request_ms),
        debug_headers: config.http.debug_headers,
    };
    let router = router.layer(axum::middleware::from_fn_with_state(tracked, trace_request));
    Ok(Application {
        listener,
        router,
        draining,
        drain_grace: Duration::from_millis(config.http.drain_grace_ms),
        reporter,
        metrics: config.metrics.clone(),
        report_interval: Duration::from_millis(config.http.report_interval_ms.max(1)),
        retries,
    })
}

impl Application {
    /// The retry budget of this gateway's idempotent upstream calls (its retry count).
    pub fn retry_budget(&self) -> Arc<retry::RetryBudget> {
        self.retries.clone()
    }

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
        let reporting_stop = tokio_util::sync::CancellationToken::new();
        let reporting = tokio::spawn(self.reporter.clone().run(
            self.metrics.clone(),
            self.report_interval,
            reporting_stop.clone(),
        ));
        // Stops the reporter after its final report, however serving ends.
        let _flush = FlushOnDrop(reporting_stop);
        let (stopped_tx, stopped_rx) = tokio::sync::oneshot::channel::<()>();
        let serve = axum::serve(
            self.listener,
            self.router
                .into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(async move {
            shutdown.await;
            draining.store(true, Ordering::SeqCst);
            let _ = stopped_tx.send(());
        })
        .into_future();
        let mut serve = std::pin::pin!(serve);
        let outcome = tokio::select! {
            result = &mut serve => Some(result.map_err(GatewayError::Serve)),
            _ = stopped_rx => None,
        };
        let outcome = match outcome {
            Some(outcome) => outcome,
            None => match tokio::time::timeout(self.drain_grace, serve).await {
                Ok(result) => result.map_err(GatewayError::Serve),
                Err(_) => {
                    tracing::warn!(
                        "requests still open after the drain grace period; closing them"
                    );
                    Ok(())
                }
            },
        };
        drop(_flush);
        let _ = reporting.await;
        outcome
    }
}

/// The state replicas share: Redis (standalone or cluster) when configured, else this
/// process's memory.
async fn shared_cache(config: &GatewayConfig) -> Result<photos_cache::Cache, GatewayError> {
    let c = &config.cache;
    let cache = photos_cache::CacheConfig {
        redis_url: c.url.expose().to_owned(),
        cluster_nodes: c
            .cluster_nodes
            .iter()
            .map(|n| n.expose().to_owned())
            .collect(),
        prefix: c.prefix.clone(),
        // In process it holds only idempotency records (about 512 bytes each); with Redis the
        // L1 is never used by records.
        l1_max_bytes: config
            .upload
            .idempotency_max_keys
            .saturating_mul(512)
            .max(1 << 20),
        ..photos_cache::CacheConfig::default()
    };
    Ok(photos_cache::Cache::connect(cache).await?)
}

/// The CORS allowlist; None when no origin is allowed (browsers then refuse cross-origin calls).
fn cors_layer(config: &config::CorsConfig) -> Option<CorsLayer> {
    use axum::http::{HeaderName, HeaderValue, Method, header};
    if config.allowed_origins.is_empty() {
        return None;
    }
    let origins: Vec<HeaderValue> = config
        .allowed_origins
        .iter()
        // Checked by `GatewayConfig::validate`.
        .filter_map(|o| HeaderValue::from_str(o).ok())
        .collect();
    Some(
        CorsLayer::new()
            .allow_origin(AllowOrigin::list(origins))
            .allow_methods([
                Method::GET,
                Method::POST,
                Method::PUT,
                Method::PATCH,
                Method::DELETE,
            ])
            .allow_headers([
                header::AUTHORIZATION,
                header::CONTENT_TYPE,
                header::IF_NONE_MATCH,
                HeaderName::from_static("idempotency-key"),
                HeaderName::from_static("traceparent"),
            ])
            .expose_headers([
                header::ETAG,
                header::LOCATION,
                header::RETRY_AFTER,
                HeaderName::from_static("idempotent-replayed"),
            ])
            .max_age(Duration::from_secs(config.max_age_seconds)),
    )
}

struct FlushOnDrop(tokio_util::sync::CancellationToken);

impl Drop for FlushOnDrop {
    fn drop(&mut self) {
        self.0.cancel();
    }
}

/// Per-request tracking for the gateway (the gRPC servers get theirs from the runtime stack).
#[derive(Clone)]
struct Tracked {
    reporter: Reporter,
    slow_request: Duration,
    debug_headers: bool,
}

/// The path with ids replaced by `{id}`, so the report groups requests by route.
fn route_of(path: &str) -> String {
    path.split('/')
        .map(|seg| {
            let id_like = !seg.is_empty()
                && (seg.bytes().all(|b| b.is_ascii_digit())
                    || (seg.len() >= 16
                        && seg.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-')));
            if id_like { "{id}" } else { seg }
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// The status a request is reported with: server faults count as errors (as non-OK gRPC codes
/// do), a client's own mistakes (4xx) do not.
fn report_code(status: StatusCode) -> i32 {
    match status.as_u16() {
        503 => tonic::Code::Unavailable as i32,
        504 => tonic::Code::DeadlineExceeded as i32,
        s if s >= 500 => tonic::Code::Internal as i32,
        _ => 0,
    }
}

/// One server span per HTTP request, continuing the caller's trace if it sent `traceparent`;
/// the request's cost (time, statements it caused downstream) goes to the metrics service.
async fn trace_request(State(tracked): State<Tracked>, request: Request, next: Next) -> Response {
    let route = format!("{} {}", request.method(), route_of(request.uri().path()));
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
    let started = std::time::Instant::now();
    async move {
        let (mut response, cost) = tracking::scope(next.run(request)).await;
        let elapsed = started.elapsed();
        recorder.record("http.response.status_code", response.status().as_u16());
        if tracked.debug_headers {
            let headers = response.headers_mut();
            if let Ok(v) = format!("{:.3}", elapsed.as_secs_f64() * 1000.0).parse() {
                headers.insert("x-response-time", v);
            }
            headers.insert("x-db-query-count", cost.statements.into());
        }
        let trace_id = propagation::trace_id(&recorder).unwrap_or_default();
        if elapsed >= tracked.slow_request {
            tracing::warn!(
                route,
                duration_ms = elapsed.as_secs_f64() * 1000.0,
                db_statements = cost.statements,
                status = response.status().as_u16(),
                trace_id,
                "slow request"
            );
        }
        if route != "GET /healthz" {
            let code = report_code(response.status());
            tracked
                .reporter
                .record(&route, elapsed, code, &trace_id, cost);
        }
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

async fn not_found() -> GatewayError {
    GatewayError::NotFound
}
