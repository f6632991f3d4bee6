//! The gallery, album and admin pages: static HTML shells and small ES modules embedded in the
//! binary, filled in by the browser from the v1 JSON API (the pages have no server-side data
//! path of their own). The CSP allows no inline script or style attribute; the scripts set
//! placeholder colours through the CSSOM, which the policy permits.

use axum::Router;
use axum::extract::{Path, Request};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use sha2::{Digest, Sha256};
use std::sync::LazyLock;

use crate::error::GatewayError;

/// Images come from the CDN or signed storage URLs on hosts the gateway does not know ahead
/// of time, hence any http(s) image source; everything else is same-origin only.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
    img-src 'self' data: http: https:; connect-src 'self'; base-uri 'none'; \
    form-action 'none'; frame-ancestors 'none'";

struct Asset {
    name: &'static str,
    content_type: &'static str,
    body: &'static str,
}

const ASSETS: &[Asset] = &[
    Asset {
        name: "gallery.html",
        content_type: "text/html; charset=utf-8",
        body: include_str!("../assets/gallery.html"),
    },
    Asset {
        name: "album.html",
        content_type: "text/html; charset=utf-8",
        body: include_str!("../assets/album.html"),
    },
    Asset {
        name: "admin.html",
        content_type: "text/html; charset=utf-8",
        body: include_str!("../assets/admin.html"),
    },
    Asset {
        name: "app.css",
        content_type: "text/css; charset=utf-8",
        body: include_str!("../assets/app.css"),
    },
    Asset {
        name: "common.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_str!("../assets/common.js"),
    },
    Asset {
        name: "gallery.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_str!("../assets/gallery.js"),
    },
    Asset {
        name: "album.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_str!("../assets/album.js"),
    },
    Asset {
        name: "admin.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_str!("../assets/admin.js"),
    },
];

/// Strong ETags of the embedded files, computed once per process.
static ETAGS: LazyLock<Vec<HeaderValue>> = LazyLock::new(|| {
    ASSETS
        .iter()
        .map(|a| {
            let digest = Sha256::digest(a.body.as_bytes());
            let hex: String = digest[..12].iter().map(|b| format!("{b:02x}")).collect();
            HeaderValue::from_str(&format!("\"{hex}\"")).expect("hex is a valid header value")
        })
        .collect()
});

pub fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route(
            "/",
            get(|r: Request| async move { serve("gallery.html", r.headers()) }),
        )
        .route(
            "/albums/{id}",
            get(|r: Request| async move { serve("album.html", r.headers()) }),
        )
        .route(
            "/admin",
            get(|r: Request| async move { serve("admin.html", r.headers()) }),
        )
        .route(
            "/assets/{name}",
            get(|Path(name): Path<String>, r: Request| async move { serve(&name, r.headers()) }),
        )
}

fn serve(name: &str, request: &HeaderMap) -> Response {
    let Some(index) = ASSETS.iter().position(|a| a.name == name) else {
        return GatewayError::NotFound.into_response();
    };
    let asset = &ASSETS[index];
    let etag = ETAGS[index].clone();
    // Revalidated on every use: a new gateway build may ship different files under the
    // same names, and a 304 costs no transfer.
    let mut headers = HeaderMap::new();
    headers.insert(header::ETAG, etag.clone());
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    if asset.content_type.starts_with("text/html") {
        headers.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CSP),
        );
        headers.insert(
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        );
    }
    let matches = request
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(',')
                .any(|t| t.trim() == etag.to_str().unwrap_or(""))
        });
    if matches {
        return (StatusCode::NOT_MODIFIED, headers).into_response();
    }
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(asset.content_type),
    );
    (StatusCode::OK, headers, asset.body).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_reference_only_embedded_assets() {
        for page in ASSETS.iter().filter(|a| a.name.ends_with(".html")) {
            for part in page.body.split("/assets/").skip(1) {
                let name = part.split('"').next().unwrap();
                assert!(
                    ASSETS.iter().any(|a| a.name == name),
                    "{} links /assets/{name}, which is not embedded",
                    page.name
                );
            }
        }
    }

    #[test]
    fn pages_carry_no_inline_handlers_or_scripts() {
        for page in ASSETS.iter().filter(|a| a.name.ends_with(".html")) {
            let body = page.body.to_lowercase();
            assert!(!body.contains(" onclick="), "{}", page.name);
            assert!(!body.contains(" onload="), "{}", page.name);
            assert!(!body.contains(" style="), "{}", page.name);
            for script in body.split("<script").skip(1) {
                assert!(script.contains(" src="), "{}: inline script", page.name);
            }
        }
    }

    #[test]
    fn a_matching_etag_is_not_modified_and_unknown_names_are_not_found() {
        let first = serve("app.css", &HeaderMap::new());
        assert_eq!(first.status(), StatusCode::OK);
        let tag = first.headers()[header::ETAG].clone();
        let mut again = HeaderMap::new();
        again.insert(header::IF_NONE_MATCH, tag);
        assert_eq!(serve("app.css", &again).status(), StatusCode::NOT_MODIFIED);
        assert_eq!(
            serve("../Cargo.toml", &HeaderMap::new()).status(),
            StatusCode::NOT_FOUND
        );
    }
}
