//! The gateway's v1 JSON API against the real mesh (embedded catalog): who sees what, bad
//! input and bad tokens answered with problem documents, conditional GETs.

mod common;

use base64::Engine;
use common::*;
use photos_gateway::auth::{self, Role};
use photos_runtime::Secret;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn visibility_follows_publication_ownership_and_role() {
    let env = Env::start().await;
    let (alice, bob) = (
        env.token("alice", Role::Owner),
        env.token("bob", Role::Owner),
    );
    let (viewer, admin) = (
        env.token("vera", Role::Viewer),
        env.token("root", Role::Admin),
    );

    let (status, head, album) = env
        .call(
            "POST",
            "/api/v1/albums",
            Some(&alice),
            Some(r#"{"title":"Alps 2026","description":"hikes"}"#),
        )
        .await;
    assert_eq!(status, 201, "{album}");
    let id = album["id"].as_str().unwrap().to_owned();
    assert!(
        head.to_lowercase()
            .contains(&format!("location: /api/v1/albums/{id}")),
        "{head}"
    );
    assert_eq!(album["owner_id"], "alice");
    assert_eq!(album["is_published"], false);

    // Unpublished: only its owner and admins see it; to everyone else it does not exist.
    let path = format!("/api/v1/albums/{id}");
    for (who, token, expected) in [
        ("anonymous", None, 404),
        ("bob", Some(&bob), 404),
        ("viewer", Some(&viewer), 404),
        ("alice", Some(&alice), 200),
        ("admin", Some(&admin), 200),
    ] {
        let (status, _, body) = env
            .call("GET", &path, token.map(String::as_str), None)
            .await;
        assert_eq!(status, expected, "{who}: {body}");
    }
    let (_, _, list) = env.call("GET", "/api/v1/albums", None, None).await;
    assert_eq!(list["albums"].as_array().unwrap().len(), 0, "{list}");
    let (_, _, mine) = env
        .call("GET", "/api/v1/albums?mine=true", Some(&alice), None)
        .await;
    assert_eq!(mine["albums"][0]["id"], id.as_str(), "{mine}");

    // Bob cannot change it; publishing is for admins.
    let (status, _, _) = env
        .call("PATCH", &path, Some(&bob), Some(r#"{"title":"mine now"}"#))
        .await;
    assert_eq!(status, 404);
    let publish = format!(r#"{{"album_ids":["{id}"]}}"#);
    let (status, _, _) = env
        .call(
            "POST",
            "/api/v1/admin/albums/publish",
            Some(&alice),
            Some(&publish),
        )
        .await;
    assert_eq!(status, 403);
    let (status, _, body) = env
        .call(
            "POST",
            "/api/v1/admin/albums/publish",
            Some(&admin),
            Some(&publish),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["updated"], 1);

    // Published: everyone sees it; only alice (or an admin) may change it.
    let (status, _, detail) = env.call("GET", &path, None, None).await;
    assert_eq!(status, 200);
    assert_eq!(detail["album"]["title"], "Alps 2026");
    let (_, _, list) = env.call("GET", "/api/v1/albums", None, None).await;
    assert_eq!(list["albums"][0]["id"], id.as_str());
    let (status, _, _) = env
        .call("PATCH", &path, Some(&viewer), Some(r#"{"title":"x"}"#))
        .await;
    assert_eq!(status, 403);
    let (status, _, updated) = env
        .call(
            "PATCH",
            &path,
            Some(&alice),
            Some(r#"{"title":"Alps, summer 2026"}"#),
        )
        .await;
    assert_eq!(status, 200, "{updated}");
    assert_eq!(updated["title"], "Alps, summer 2026");
    assert_eq!(
        updated["description"], "hikes",
        "fields outside the patch are kept"
    );

    let (status, _, _) = env.call("DELETE", &path, Some(&bob), None).await;
    assert_eq!(status, 403);
    let (status, _, _) = env.call("DELETE", &path, Some(&alice), None).await;
    assert_eq!(status, 204);
    let (status, _, _) = env.call("GET", &path, Some(&admin), None).await;
    assert_eq!(status, 404);
    env.mesh.shutdown().await.unwrap();
}

/// (what, headers, body, expected status)
type Case<'a> = (&'a str, Vec<(&'a str, &'a str)>, String, u16);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_bodies_get_problem_documents_and_change_nothing() {
    let env = Env::start().await;
    let alice = env.token("alice", Role::Owner);
    let gw = env.mesh.addresses.gateway;
    let cases: [Case<'_>; 5] = [
        (
            "malformed json",
            vec![("Content-Type", "application/json")],
            "{\"title\":".into(),
            400,
        ),
        (
            "unknown field",
            vec![("Content-Type", "application/json")],
            r#"{"title":"x","owner_id":"mallory"}"#.into(),
            422,
        ),
        (
            "wrong content type",
            vec![("Content-Type", "text/plain")],
            r#"{"title":"x"}"#.into(),
            415,
        ),
        (
            "oversize body",
            vec![("Content-Type", "application/json")],
            format!(r#"{{"title":"{}"}}"#, "x".repeat(100 * 1024)),
            413,
        ),
        (
            "empty title",
            vec![("Content-Type", "application/json")],
            r#"{"title":""}"#.into(),
            400,
        ),
    ];
    for (what, mut headers, body, expected) in cases {
        headers.push(("Authorization", &alice));
        let (status, head, body) =
            request(gw, "POST", "/api/v1/albums", &headers, Some(&body)).await;
        assert_eq!(status, expected, "{what}: {body}");
        assert!(
            head.to_lowercase()
                .contains("content-type: application/problem+json"),
            "{what}: {head}"
        );
        let problem: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(problem["status"], expected, "{what}");
        assert!(
            !problem["detail"].as_str().unwrap_or_default().is_empty(),
            "{what}: {problem}"
        );
    }
    let (_, _, mine) = env
        .call("GET", "/api/v1/albums?mine=true", Some(&alice), None)
        .await;
    assert_eq!(
        mine["albums"].as_array().unwrap().len(),
        0,
        "no album was half-created: {mine}"
    );
    env.mesh.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_expired_and_unsigned_tokens_are_refused() {
    let env = Env::start().await;
    let b64 = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let claims = format!(
        r#"{{"sub":"root","role":"admin","exp":{},"iss":"photos","aud":"photos-gateway"}}"#,
        now + 600
    );
    let alg_none = format!(
        "Bearer {}.{}.",
        b64(r#"{"alg":"none","typ":"JWT"}"#),
        b64(&claims)
    );
    let mut other = env.auth.clone();
    other.hs256_secret = Secret::new("a-different-secret-that-is-also-32-bytes-long");
    let forged = format!(
        "Bearer {}",
        auth::issue(&other, "root", Role::Admin, 600).unwrap()
    );
    let mut wrong_audience = env.auth.clone();
    wrong_audience.audience = "someone-else".into();
    let wrong_aud = format!(
        "Bearer {}",
        auth::issue(&wrong_audience, "root", Role::Admin, 600).unwrap()
    );
    let expired = {
        let claims = auth::Claims {
            sub: "root".into(),
            role: Role::Admin,
            exp: now - 3600,
            iss: "photos".into(),
            aud: "photos-gateway".into(),
        };
        let key = jsonwebtoken_key(SECRET);
        format!(
            "Bearer {}",
            jsonwebtoken::encode(&jsonwebtoken::Header::default(), &claims, &key).unwrap()
        )
    };
    for (what, token) in [
        ("alg none", alg_none),
        ("forged", forged),
        ("wrong audience", wrong_aud),
        ("expired", expired),
        ("not bearer", "Basic cm9vdDpyb290".into()),
    ] {
        let (status, head, body) = env
            .call("GET", "/api/v1/admin/performance", Some(&token), None)
            .await;
        assert_eq!(status, 401, "{what}: {body}");
        assert!(
            head.to_lowercase().contains("www-authenticate: bearer"),
            "{what}: {head}"
        );
    }
    // The genuine article works, and a viewer is told no.
    let (status, _, body) = env
        .call(
            "GET",
            "/api/v1/admin/performance",
            Some(&env.token("root", Role::Admin)),
            None,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert!(body["rpcs"].is_array(), "{body}");
    let (status, _, _) = env
        .call(
            "GET",
            "/api/v1/admin/cache-stats",
            Some(&env.token("vera", Role::Viewer)),
            None,
        )
        .await;
    assert_eq!(status, 403);
    let (status, _, _) = env
        .call("GET", "/api/v1/admin/cache-stats", None, None)
        .await;
    assert_eq!(status, 401);
    env.mesh.shutdown().await.unwrap();
}

fn jsonwebtoken_key(secret: &str) -> jsonwebtoken::EncodingKey {
    jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unchanged_reads_answer_304_to_a_matching_etag() {
    let env = Env::start().await;
    let admin = env.token("root", Role::Admin);
    env.call(
        "POST",
        "/api/v1/albums",
        Some(&admin),
        Some(r#"{"title":"Public","is_published":true}"#),
    )
    .await;
    let gw = env.mesh.addresses.gateway;
    let (status, head, _) = request(gw, "GET", "/api/v1/albums", &[], None).await;
    assert_eq!(status, 200);
    let etag = head
        .lines()
        .find_map(|l| {
            l.to_lowercase()
                .starts_with("etag:")
                .then(|| l[5..].trim().to_owned())
        })
        .unwrap_or_else(|| panic!("no ETag in {head}"));
    assert!(
        head.to_lowercase().contains("vary: authorization"),
        "{head}"
    );
    let (status, _, body) = request(
        gw,
        "GET",
        "/api/v1/albums",
        &[("If-None-Match", &etag)],
        None,
    )
    .await;
    assert_eq!(status, 304);
    assert!(body.is_empty());
    // A change makes the old tag stale.
    env.call(
        "POST",
        "/api/v1/albums",
        Some(&admin),
        Some(r#"{"title":"Another","is_published":true}"#),
    )
    .await;
    let (status, _, _) = request(
        gw,
        "GET",
        "/api/v1/albums",
        &[("If-None-Match", &etag)],
        None,
    )
    .await;
    assert_eq!(status, 200);
    env.mesh.shutdown().await.unwrap();
}

/// The header lines a cache acts on, lowercased, in a fixed order.
fn caching_headers(head: &str) -> Vec<String> {
    let mut lines: Vec<String> = head
        .lines()
        .map(str::to_lowercase)
        .filter(|l| {
            [
                "etag:",
                "cache-control:",
                "vary:",
                "content-length:",
                "content-type:",
            ]
            .iter()
            .any(|h| l.starts_with(h))
        })
        .collect();
    lines.sort();
    lines
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn head_answers_with_the_get_headers_and_no_body() {
    let env = Env::start().await;
    let admin = env.token("root", Role::Admin);
    let album = env.create_album(&admin, true).await;
    let gw = env.mesh.addresses.gateway;
    // The album list is served from the gateway's stored pages, the album page is rendered per
    // request: both must tag HEAD the way they tag GET, anonymous (public) and with a token
    // (private).
    let private = env.create_album(&admin, false).await;
    let cases = [
        ("/api/v1/albums".to_owned(), None, "public, no-cache"),
        (format!("/api/v1/albums/{album}"), None, "public, no-cache"),
        (
            "/api/v1/albums".to_owned(),
            Some(admin.as_str()),
            "private, no-cache",
        ),
        (
            format!("/api/v1/albums/{private}"),
            Some(admin.as_str()),
            "private, no-cache",
        ),
    ];
    for (path, token, cache_control) in cases {
        let headers: Vec<(&str, &str)> = token.map(|t| ("Authorization", t)).into_iter().collect();
        let (status, get_head, get_body) = request(gw, "GET", &path, &headers, None).await;
        assert_eq!(status, 200, "{path}: {get_body}");
        let (status, head_head, head_body) = request(gw, "HEAD", &path, &headers, None).await;
        assert_eq!(status, 200, "{path}");
        assert!(
            head_body.is_empty(),
            "{path}: HEAD sent a body: {head_body}"
        );
        let expected = caching_headers(&get_head);
        assert!(
            expected.iter().any(|l| l.starts_with("etag:"))
                && expected.contains(&format!("cache-control: {cache_control}")),
            "{path}: {get_head}"
        );
        assert!(
            expected.contains(&format!("content-length: {}", get_body.len())),
            "{path}: {get_head}"
        );
        assert_eq!(caching_headers(&head_head), expected, "{path}");
        let etag = expected
            .iter()
            .find_map(|l| l.strip_prefix("etag:"))
            .unwrap()
            .trim()
            .to_owned();
        let mut conditional = headers.clone();
        conditional.push(("If-None-Match", &etag));
        let (status, _, body) = request(gw, "HEAD", &path, &conditional, None).await;
        assert_eq!(status, 304, "{path}");
        assert!(body.is_empty());
    }
    // An error answers HEAD with the GET's status and problem-document headers, without the body.
    let missing = "/api/v1/albums/00000000-0000-0000-0000-000000000000";
    let (get_status, get_head, get_body) = request(gw, "GET", missing, &[], None).await;
    let (status, head_head, head_body) = request(gw, "HEAD", missing, &[], None).await;
    assert_eq!((get_status, status), (404, 404), "{get_body}");
    assert!(head_body.is_empty(), "{head_body}");
    assert_eq!(caching_headers(&head_head), caching_headers(&get_head));
    env.mesh.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_document_lists_every_route() {
    let env = Env::start().await;
    let (status, _, doc) = env.call("GET", "/api/openapi.json", None, None).await;
    assert_eq!(status, 200);
    for path in [
        "/api/v1/albums",
        "/api/v1/albums/{id}",
        "/api/v1/albums/{id}/photos",
        "/api/v1/photos/recent",
        "/api/v1/photos/{id}",
        "/api/v1/admin/albums/publish",
        "/api/v1/admin/albums/unpublish",
        "/api/v1/admin/cache-stats",
        "/api/v1/admin/performance",
    ] {
        assert!(doc["paths"][path].is_object(), "{path} missing");
    }
    env.mesh.shutdown().await.unwrap();
}
