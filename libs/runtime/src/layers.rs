//! The server's tower stack, outermost first:
//!
//! 1. [`TraceLayer`]: the server span, parented on the caller's `traceparent`, so everything
//!    below (including a timeout or a shed) is inside the request's trace.
//! 2. [`DeadlineLayer`]: the smaller of the caller's `grpc-timeout` and the server's limit; the
//!    deadline is made available to downstream calls. Before the limiter, so time spent waiting
//!    for nothing still counts against the caller's budget.
//! 3. [`ConcurrencyLayer`]: a concurrency limit that sheds (UNAVAILABLE, retryable) instead of
//!    queueing once full: a queue would only add latency to calls that will time out anyway.
//!    Health checks bypass it so an overloaded pod is not also declared dead.
//! 4. [`MetricsLayer`]: RED metrics of admitted calls, innermost so they measure the handler;
//!    it also opens the [`crate::tracking`] scope that counts a call's statements and cache
//!    lookups, sets `x-response-time` / `x-db-query-count`, and hands the call's sample to the
//!    reporter. It also turns tonic's OUT_OF_RANGE for an over-limit request message
//!    into RESOURCE_EXHAUSTED, the code gRPC's own servers and the house error table use.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use http::{Request, Response};
use tokio::sync::Semaphore;
use tonic::Status;
use tonic::body::Body;
use tower::{Layer, Service};
use tracing::Instrument;

use crate::metrics::{MethodLabels, RpcLabels, ServerMetrics};
use crate::propagation;
use crate::tracking::{self, Reporter};

/// Splits `/pkg.Service/Method` into its service and method.
pub fn rpc_parts(path: &str) -> (&str, &str) {
    let trimmed = path.trim_start_matches('/');
    trimmed.split_once('/').unwrap_or((trimmed, ""))
}

/// The gRPC status code of a response: from a trailers-only response's headers, else OK (the
/// real status of a streamed body arrives in trailers, after the span has ended).
fn status_code<B>(response: &Response<B>) -> i32 {
    response
        .headers()
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

macro_rules! forward_layer {
    ($layer:ident, $service:ident { $($field:ident : $ty:ty),* }) => {
        #[derive(Clone)]
        pub struct $layer { $($field: $ty),* }
        #[derive(Clone)]
        pub struct $service<S> { inner: S, $($field: $ty),* }
        impl<S> Layer<S> for $layer {
            type Service = $service<S>;
            fn layer(&self, inner: S) -> Self::Service {
                $service { inner, $($field: self.$field.clone()),* }
            }
        }
    };
}

forward_layer!(TraceLayer, TraceService {});

impl TraceLayer {
    pub fn new() -> Self {
        TraceLayer {}
    }
}

impl Default for TraceLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl<S, B> Service<Request<B>> for TraceService<S>
where
    S: Service<Request<B>, Response = Response<Body>> + Send,
    S::Future: Send + 'static,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Response<Body>, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let (service, method) = rpc_parts(req.uri().path());
        let span = tracing::info_span!(
            "grpc.server",
            otel.name = %req.uri().path().trim_start_matches('/'),
            otel.kind = "server",
            rpc.system = "grpc",
            rpc.service = %service,
            rpc.method = %method,
            rpc.grpc.status_code = tracing::field::Empty,
            otel.status_code = tracing::field::Empty,
        );
        propagation::extract_into(req.headers(), &span);
        let future = {
            let _entered = span.enter();
            self.inner.call(req)
        };
        let recorder = span.clone();
        Box::pin(
            async move {
                let response = future.await?;
                let code = status_code(&response);
                recorder.record("rpc.grpc.status_code", code);
                if code != 0 {
                    recorder.record("otel.status_code", "ERROR");
                }
                Ok(response)
            }
            .instrument(span),
        )
    }
}

const TONIC_TIMEOUT_MARGIN: Duration = Duration::from_millis(3);

forward_layer!(DeadlineLayer, DeadlineService { limit: Duration });

impl DeadlineLayer {
    pub fn new(limit: Duration) -> Self {
        DeadlineLayer { limit }
    }
}

impl<S, B> Service<Request<B>> for DeadlineService<S>
where
    S: Service<Request<B>, Response = Response<Body>> + Send,
    S::Future: Send + 'static,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Response<Body>, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let requested = req
            .headers()
            .get("grpc-timeout")
            .and_then(|v| v.to_str().ok())
            .and_then(propagation::parse_grpc_timeout);
        // tonic also enforces `grpc-timeout` outside every user layer and answers CANCELLED;
        // ending a hair earlier makes the caller see DEADLINE_EXCEEDED, as the gRPC spec asks.
        let timeout = requested.map_or(self.limit, |r| {
            r.saturating_sub(TONIC_TIMEOUT_MARGIN.min(r / 2))
                .min(self.limit)
        });
        let deadline = Instant::now() + timeout;
        // The timer is armed here, at call time, not at the future's first poll: under load
        // that poll can come after tonic's own timer (armed in its call) has already fired.
        let guarded = tokio::time::timeout_at(
            deadline.into(),
            propagation::with_deadline(deadline, self.inner.call(req)),
        );
        Box::pin(async move {
            match guarded.await {
                Ok(result) => result,
                Err(_) => Ok(Status::deadline_exceeded(format!(
                    "deadline of {} ms exceeded",
                    timeout.as_millis()
                ))
                .into_http()),
            }
        })
    }
}

forward_layer!(ConcurrencyLayer, ConcurrencyService {
    permits: Arc<Semaphore>,
    limit: usize,
    metrics: ServerMetrics
});

impl ConcurrencyLayer {
    pub fn new(limit: usize, metrics: ServerMetrics) -> Self {
        ConcurrencyLayer {
            permits: Arc::new(Semaphore::new(limit)),
            limit,
            metrics,
        }
    }
}

impl<S, B> Service<Request<B>> for ConcurrencyService<S>
where
    S: Service<Request<B>, Response = Response<Body>> + Send,
    S::Future: Send + 'static,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Response<Body>, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        if req.uri().path().starts_with("/grpc.health.v1.Health/") {
            return Box::pin(self.inner.call(req));
        }
        let Ok(permit) = self.permits.clone().try_acquire_owned() else {
            self.metrics.shed.inc();
            let limit = self.limit;
            return Box::pin(async move {
                Ok(Status::unavailable(format!(
                    "server is at its limit of {limit} concurrent calls; retry with backoff"
                ))
                .into_http())
            });
        };
        let future = self.inner.call(req);
        Box::pin(async move {
            let response = future.await?;
            // The permit lives as long as the response body, so a stream counts until it ends.
            Ok(response.map(|body| {
                Body::new(Guarded {
                    body,
                    _guard: permit,
                })
            }))
        })
    }
}

forward_layer!(
    MetricsLayer,
    MetricsService {
        metrics: ServerMetrics,
        tracking: Tracking
    }
);

/// What the metrics layer does beyond Prometheus: per-call cost accounting, the slow-call
/// warning and the sample for the metrics service.
#[derive(Clone)]
pub struct Tracking {
    pub slow_request: Duration,
    pub reporter: Option<Reporter>,
}

impl MetricsLayer {
    pub fn new(metrics: ServerMetrics, tracking: Tracking) -> Self {
        MetricsLayer { metrics, tracking }
    }
}

impl<S, B> Service<Request<B>> for MetricsService<S>
where
    S: Service<Request<B>, Response = Response<Body>> + Send,
    S::Future: Send + 'static,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Response<Body>, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let path = req.uri().path().to_owned();
        let tracked = tracking::is_tracked(&path);
        let metrics = self.metrics.clone();
        let tracking = self.tracking.clone();
        metrics.in_flight.inc();
        let in_flight = InFlight(metrics.clone());
        let started = Instant::now();
        // The scope wraps the handler's future, so statements and cache lookups made while
        // producing the response count against this call.
        let future = tracking::scope(self.inner.call(req));
        Box::pin(async move {
            let (mut result, cost) = future.await;
            if let Ok(response) = &mut result {
                over_limit_as_resource_exhausted(response);
            }
            let elapsed = started.elapsed();
            let code = match &result {
                Ok(response) => status_code(response),
                Err(_) => tonic::Code::Internal as i32,
            };
            let (service, method) = rpc_parts(&path);
            metrics
                .duration
                .get_or_create(&MethodLabels {
                    service: service.to_owned(),
                    method: method.to_owned(),
                })
                .observe(elapsed.as_secs_f64());
            metrics
                .requests
                .get_or_create(&RpcLabels {
                    service: service.to_owned(),
                    method: method.to_owned(),
                    code: code.to_string(),
                })
                .inc();
            let mut response = result?;
            if tracked {
                let headers = response.headers_mut();
                if let Ok(v) =
                    http::HeaderValue::from_str(&format!("{:.3}", elapsed.as_secs_f64() * 1000.0))
                {
                    headers.insert(tracking::RESPONSE_TIME_HEADER, v);
                }
                // A service that counts more precisely (e.g. per page) has set it already.
                if !headers.contains_key(tracking::QUERY_COUNT_HEADER) {
                    headers.insert(tracking::QUERY_COUNT_HEADER, cost.statements.into());
                }
                let trace_id = propagation::trace_id(&tracing::Span::current()).unwrap_or_default();
                if elapsed >= tracking.slow_request {
                    tracing::warn!(
                        rpc = %path,
                        duration_ms = elapsed.as_secs_f64() * 1000.0,
                        db_statements = cost.statements,
                        code,
                        trace_id,
                        "slow request"
                    );
                }
                if let Some(reporter) = &tracking.reporter {
                    reporter.record(path.trim_start_matches('/'), elapsed, code, &trace_id, cost);
                }
            }
            Ok(response.map(|body| {
                Body::new(Guarded {
                    body,
                    _guard: in_flight,
                })
            }))
        })
    }
}

/// tonic's words for a request message over `max_decoding_message_size`.
const OVER_LIMIT: &str = "decoded message length too large";

/// Whether a status is tonic refusing a request message over the server's size limit.
pub fn is_over_limit(status: &Status) -> bool {
    status.code() == tonic::Code::OutOfRange && status.message().contains(OVER_LIMIT)
}

/// tonic answers a request message over the limit with OUT_OF_RANGE; gRPC's own servers, and
/// the house error table (`ErrorKind::TooLarge`), say RESOURCE_EXHAUSTED, which is what clients
/// and the gateway (413) expect for "too large". The refusal comes before any handler runs (or
/// from a handler passing the stream's error on), so it is a trailers-only response.
fn over_limit_as_resource_exhausted(response: &mut Response<Body>) {
    let headers = response.headers_mut();
    if headers.get("grpc-status").map(|v| v.as_bytes()) != Some(b"11") {
        return;
    }
    let over = headers
        .get("grpc-message")
        .and_then(|m| m.to_str().ok())
        .is_some_and(|m| percent_decode(m).contains(OVER_LIMIT));
    if over {
        headers.insert(
            "grpc-status",
            http::HeaderValue::from(tonic::Code::ResourceExhausted as i32),
        );
    }
}

/// grpc-message is percent-encoded (spaces included).
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && bytes[i + 1].is_ascii_hexdigit()
            && bytes[i + 2].is_ascii_hexdigit()
        {
            let hex = |b: u8| (b as char).to_digit(16).unwrap_or(0) as u8;
            out.push(hex(bytes[i + 1]) * 16 + hex(bytes[i + 2]));
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Decrements the in-flight gauge when the response body is done (or dropped).
struct InFlight(ServerMetrics);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.dec();
    }
}

pin_project_lite::pin_project! {
    /// A response body that holds `guard` until the body is dropped.
    struct Guarded<G> {
        #[pin]
        body: Body,
        _guard: G,
    }
}

impl<G> http_body::Body for Guarded<G> {
    type Data = tonic::codegen::Bytes;
    type Error = Status;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        self.project().body.poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod over_limit_tests {
    use super::*;

    fn trailers_only(status: Status) -> Response<Body> {
        status.into_http()
    }

    #[test]
    fn tonics_over_limit_refusal_becomes_resource_exhausted() {
        let status = Status::out_of_range(
            "Error, decoded message length too large: found 9437199 bytes, the limit is: 8388608 bytes",
        );
        assert!(is_over_limit(&status));
        let mut response = trailers_only(status);
        over_limit_as_resource_exhausted(&mut response);
        let code = response.headers().get("grpc-status").unwrap();
        assert_eq!(code.as_bytes(), b"8");
        // The message (with the limit) is left as it was.
        let message = response
            .headers()
            .get("grpc-message")
            .unwrap()
            .to_str()
            .unwrap();
        assert!(percent_decode(message).contains("the limit is: 8388608 bytes"));
    }

    #[test]
    fn other_out_of_range_answers_are_left_alone() {
        let mut response = trailers_only(Status::out_of_range("page 7 is past the end"));
        over_limit_as_resource_exhausted(&mut response);
        assert_eq!(
            response.headers().get("grpc-status").unwrap().as_bytes(),
            b"11"
        );
    }

    #[test]
    fn percent_decoding_tolerates_broken_escapes() {
        assert_eq!(percent_decode("a%20b%2"), "a b%2");
        assert_eq!(percent_decode("%zz%41"), "%zzA");
        assert_eq!(percent_decode("é%20"), "é ");
    }
}
