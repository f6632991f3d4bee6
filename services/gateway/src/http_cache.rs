//! Conditional GETs: a strong ETag over the JSON body and 304 when the client already has it,
//! so a polling page costs a round trip but no transfer. Responses vary by the caller's token.

use axum::body::{Body, HttpBody};
use axum::extract::Request;
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

/// JSON bodies known to be above this are passed through untagged rather than buffered.
const MAX_TAGGED_BODY: usize = 4 * 1024 * 1024;

pub async fn etag(mut request: Request, next: Next) -> Response {
    // A HEAD answer must carry the headers the GET would (ETag, Cache-Control, Vary, length),
    // so HEAD runs as the GET and loses its body here, not in the router before the tag.
    let head = request.method() == Method::HEAD;
    if head {
        *request.method_mut() = Method::GET;
    } else if request.method() != Method::GET {
        return next.run(request).await;
    }
    let response = tagged(request, next).await;
    if !head {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    if parts.status != StatusCode::NOT_MODIFIED
        && !parts.headers.contains_key(header::CONTENT_LENGTH)
        && let Some(length) = HttpBody::size_hint(&body).exact()
    {
        parts.headers.insert(header::CONTENT_LENGTH, length.into());
    }
    Response::from_parts(parts, Body::empty())
}

async fn tagged(request: Request, next: Next) -> Response {
    let if_none_match = request.headers().get(header::IF_NONE_MATCH).cloned();
    let authenticated = request.headers().contains_key(header::AUTHORIZATION);
    let response = next.run(request).await;
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if response.status() != StatusCode::OK || !is_json {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    // A handler that keeps its rendered bodies tags them itself (with the same hash), so a
    // stored body is not hashed again on every request.
    let (tag_value, body) = match parts.headers.get(header::ETAG) {
        Some(tag) => (tag.clone(), body),
        None => {
            if HttpBody::size_hint(&body).lower() > MAX_TAGGED_BODY as u64 {
                return Response::from_parts(parts, body);
            }
            // Only a streamed body of unknown length gets here and can still run over.
            let Ok(bytes) = axum::body::to_bytes(body, MAX_TAGGED_BODY).await else {
                return (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "response body too large to tag",
                )
                    .into_response();
            };
            let tag = etag_of(&bytes);
            parts.headers.insert(header::ETAG, tag.clone());
            (tag, Body::from(bytes))
        }
    };
    parts.headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static(if authenticated {
            "private, no-cache"
        } else {
            "public, no-cache"
        }),
    );
    parts
        .headers
        .insert(header::VARY, HeaderValue::from_static("Authorization"));
    let if_none_match = if_none_match.as_ref().and_then(|v| v.to_str().ok());
    let matches = match (if_none_match, tag_value.to_str()) {
        (Some(v), Ok(tag)) => v
            .split(',')
            .map(str::trim)
            .any(|t| t == "*" || t == tag || t.strip_prefix("W/") == Some(tag)),
        _ => false,
    };
    if matches {
        parts.status = StatusCode::NOT_MODIFIED;
        parts.headers.remove(header::CONTENT_LENGTH);
        return Response::from_parts(parts, Body::empty());
    }
    Response::from_parts(parts, body)
}

/// The strong ETag of a body: the first 128 bits of its SHA-256, quoted.
pub(crate) fn etag_of(body: &[u8]) -> HeaderValue {
    let digest = Sha256::digest(body);
    HeaderValue::from_str(&format!("\"{}\"", hex(&digest[..16])))
        .expect("hex is a valid header value")
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
