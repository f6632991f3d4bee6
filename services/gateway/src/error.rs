use axum::Json;
use axum::response::{IntoResponse, Response};
use photos_runtime::ErrorKind;

#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("cannot bind {addr}: {source}")]
    Bind {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("auth.jwks_path: {0}")]
    Auth(String),
    #[error(transparent)]
    Upstream(#[from] photos_runtime::client::ChannelError),
    #[error("cache: {0}")]
    Cache(#[from] photos_cache::CacheError),
    #[error("{}", .0.message())]
    Downstream(#[from] tonic::Status),
    #[error("no such route")]
    NotFound,
    #[error("{0} not found")]
    Missing(&'static str),
    #[error("{0}")]
    Unauthenticated(String),
    #[error("{0}")]
    Forbidden(&'static str),
    /// A request the gateway itself refuses (bad JSON, wrong content type, oversize body).
    #[error("{message}")]
    Rejected { status: u16, message: String },
    #[error("too many requests: retry in {retry_after_secs} s")]
    RateLimited { retry_after_secs: u64 },
    #[error("HTTP server failed: {0}")]
    Serve(std::io::Error),
    #[error("cannot render the response: {0}")]
    Render(serde_json::Error),
}

impl GatewayError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            GatewayError::Downstream(status) => ErrorKind::of_status(status),
            GatewayError::NotFound | GatewayError::Missing(_) => ErrorKind::NotFound,
            GatewayError::Unauthenticated(_) => ErrorKind::Unauthenticated,
            GatewayError::Forbidden(_) => ErrorKind::PermissionDenied,
            GatewayError::Rejected { status: 413, .. } => ErrorKind::TooLarge,
            GatewayError::Rejected { status: 409, .. } => ErrorKind::AlreadyExists,
            GatewayError::Rejected { status: 422, .. } => ErrorKind::Unprocessable,
            GatewayError::Rejected { .. } => ErrorKind::InvalidArgument,
            GatewayError::RateLimited { .. } => ErrorKind::Unavailable,
            GatewayError::Bind { .. }
            | GatewayError::Auth(_)
            | GatewayError::Upstream(_)
            | GatewayError::Cache(_)
            | GatewayError::Serve(_)
            | GatewayError::Render(_) => ErrorKind::Internal,
        }
    }
}

/// Errors leave as RFC 9457 problem documents with the status from the shared error table.
impl IntoResponse for GatewayError {
    fn into_response(self) -> Response {
        let kind = self.kind();
        let code = match &self {
            GatewayError::Rejected { status, .. } => *status,
            GatewayError::RateLimited { .. } => 429,
            _ => kind.http_status(),
        };
        let status = axum::http::StatusCode::from_u16(code)
            .unwrap_or(axum::http::StatusCode::INTERNAL_SERVER_ERROR);
        let body = serde_json::json!({
            "type": "about:blank",
            "title": status.canonical_reason().unwrap_or("error"),
            "status": status.as_u16(),
            "detail": self.to_string(),
            "kind": kind.as_str(),
        });
        let mut response = (status, Json(body)).into_response();
        response.headers_mut().insert(
            axum::http::header::CONTENT_TYPE,
            axum::http::HeaderValue::from_static("application/problem+json"),
        );
        if let GatewayError::RateLimited { retry_after_secs } = self {
            response.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from(retry_after_secs),
            );
        }
        if matches!(self, GatewayError::Unauthenticated(_)) {
            response.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Bearer"),
            );
        }
        response
    }
}
