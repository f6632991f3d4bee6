//! The gateway's edge against the real mesh: rate limits per user and per client IP (with
//! `X-Forwarded-For` believed only from configured proxies), the CORS allowlist, reorder
//! endpoints and body limits.

mod common;

use common::*;
use photos_gateway::auth::Role;

async fn get_albums(env: &Env, headers: &[(&str, &str)]) -> (u16, String) {
    let (status, head, _) = request(
        env.mesh.addresses.gateway,
        "GET",
        "/api/v1/albums",
        headers,
        None,
    )
    .await;
    (status, head)
}

fn limited(proxies: &'static [&'static str]) -> impl FnOnce(&mut photos_mesh::MeshConfig) {
    move |c| {
        // Two requests at once, then one a minute: a test's third request is always refused.
        c.gateway.rate_limit.requests_per_minute = 1;
        c.gateway.rate_limit.burst = 2;
        c.gateway.rate_limit.trusted_proxies = proxies.iter().map(|p| p.parse().unwrap()).collect();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anonymous_clients_are_limited_by_peer_address_whatever_they_forward() {
    let env = Env::start_with(limited(&[])).await;
    // The test connects from 127.0.0.1, which is not a trusted proxy: each request claims
    // another client, and all of them are charged to the peer.
    let mut statuses = Vec::new();
    let mut last_head = String::new();
    for spoofed in ["198.51.100.1", "198.51.100.2", "198.51.100.3"] {
        let (status, head) = get_albums(&env, &[("X-Forwarded-For", spoofed)]).await;
        statuses.push(status);
        last_head = head;
    }
    assert_eq!(statuses, [200, 200, 429]);
    let retry: u64 = header(&last_head, "retry-after").unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    assert_eq!(
        header(&last_head, "content-type"),
        Some("application/problem+json")
    );
    // Health checks are not charged.
    let (status, _) = photos_testkit::http::get(env.mesh.addresses.gateway, "/healthz").await;
    assert_eq!(status, 200);
    env.mesh.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_a_trusted_proxy_each_forwarded_client_has_its_own_limit() {
    let env = Env::start_with(limited(&["127.0.0.0/8"])).await;
    let mut statuses = Vec::new();
    for client in [
        "198.51.100.1",
        "198.51.100.2",
        "198.51.100.3",
        "198.51.100.4",
    ] {
        statuses.push(get_albums(&env, &[("X-Forwarded-For", client)]).await.0);
    }
    assert_eq!(statuses, [200; 4], "four clients, one request each");
    // The rightmost untrusted address counts: a forged entry on the left changes nothing.
    let mut same = Vec::new();
    for forged in ["6.6.6.1", "6.6.6.2", "6.6.6.3"] {
        let chain = format!("{forged}, 203.0.113.5");
        same.push(get_albums(&env, &[("X-Forwarded-For", &chain)]).await.0);
    }
    assert_eq!(same, [200, 200, 429]);
    env.mesh.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_in_users_are_limited_per_user() {
    let env = Env::start_with(limited(&[])).await;
    let (alice, bob) = (
        env.token("alice", Role::Viewer),
        env.token("bob", Role::Viewer),
    );
    let mut statuses = Vec::new();
    for token in [&alice, &alice, &alice, &bob, &bob] {
        statuses.push(get_albums(&env, &[("Authorization", token)]).await.0);
    }
    assert_eq!(statuses, [200, 200, 429, 200, 200]);
    // Anonymous callers from the same address have a budget of their own.
    assert_eq!(get_albums(&env, &[]).await.0, 200);
    // A bad token is charged to the address, and still refused as unauthenticated.
    let forged = [("Authorization", "Bearer not.a.token")];
    assert_eq!(get_albums(&env, &forged).await.0, 401);
    assert_eq!(get_albums(&env, &forged).await.0, 429);
    env.mesh.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_answers_only_allowed_origins() {
    let env = Env::start_with(|c| {
        c.gateway.cors.allowed_origins = vec!["https://photos.example".into()];
        c.gateway.cors.max_age_seconds = 600;
    })
    .await;
    let gw = env.mesh.addresses.gateway;
    let preflight = |origin: &'static str| async move {
        request(
            gw,
            "OPTIONS",
            "/api/v1/albums",
            &[
                ("Origin", origin),
                ("Access-Control-Request-Method", "POST"),
                (
                    "Access-Control-Request-Headers",
                    "authorization, content-type, idempotency-key",
                ),
            ],
            None,
        )
        .await
    };
    let (status, head, _) = preflight("https://photos.example").await;
    assert_eq!(status, 200, "{head}");
    assert_eq!(
        header(&head, "access-control-allow-origin"),
        Some("https://photos.example")
    );
    let allowed_headers = header(&head, "access-control-allow-headers")
        .unwrap()
        .to_lowercase();
    assert!(
        allowed_headers.contains("idempotency-key"),
        "{allowed_headers}"
    );
    assert_eq!(header(&head, "access-control-max-age"), Some("600"));

    let (_, head, _) = preflight("https://evil.example").await;
    assert_eq!(header(&head, "access-control-allow-origin"), None, "{head}");

    // Simple requests: the allowed origin may read the answer (and its ETag), others not.
    let (status, head, _) = request(
        gw,
        "GET",
        "/api/v1/albums",
        &[("Origin", "https://photos.example")],
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        header(&head, "access-control-allow-origin"),
        Some("https://photos.example")
    );
    assert!(
        header(&head, "access-control-expose-headers")
            .unwrap()
            .to_lowercase()
            .contains("etag")
    );
    let vary: Vec<String> = head
        .lines()
        .filter(|l| l.to_lowercase().starts_with("vary:"))
        .map(str::to_lowercase)
        .collect();
    assert!(
        vary.iter().any(|v| v.contains("origin"))
            && vary.iter().any(|v| v.contains("authorization")),
        "{head}"
    );
    let (_, head, _) = request(
        gw,
        "GET",
        "/api/v1/albums",
        &[("Origin", "https://evil.example")],
        None,
    )
    .await;
    assert_eq!(header(&head, "access-control-allow-origin"), None);
    env.mesh.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn albums_and_photos_are_reordered_by_those_allowed_to() {
    let env = Env::start().await;
    let (alice, bob, admin) = (
        env.token("alice", Role::Owner),
        env.token("bob", Role::Owner),
        env.token("root", Role::Admin),
    );
    let mut ids = Vec::new();
    for title in ["a", "b", "c"] {
        let (_, _, album) = env
            .call(
                "POST",
                "/api/v1/albums",
                Some(&alice),
                Some(&format!(r#"{{"title":"{title}","is_published":true}}"#)),
            )
            .await;
        ids.push(album["id"].as_str().unwrap().to_owned());
    }
    let reversed = format!(
        r#"{{"album_ids":["{}","{}","{}"]}}"#,
        ids[2], ids[1], ids[0]
    );
    let (status, _, _) = env
        .call(
            "POST",
            "/api/v1/admin/albums/reorder",
            Some(&alice),
            Some(&reversed),
        )
        .await;
    assert_eq!(status, 403, "album order is global: admins only");
    let (status, _, body) = env
        .call(
            "POST",
            "/api/v1/admin/albums/reorder",
            Some(&admin),
            Some(&reversed),
        )
        .await;
    assert_eq!((status, body["updated"].as_i64()), (200, Some(3)), "{body}");
    let (_, _, listing) = env.call("GET", "/api/v1/albums", None, None).await;
    let order: Vec<&str> = listing["albums"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["id"].as_str().unwrap())
        .collect();
    assert_eq!(order, [&ids[2], &ids[1], &ids[0]]);
    let unknown = format!(r#"{{"album_ids":["{}","999999"]}}"#, ids[0]);
    let (status, _, _) = env
        .call(
            "POST",
            "/api/v1/admin/albums/reorder",
            Some(&admin),
            Some(&unknown),
        )
        .await;
    assert_eq!(status, 404);

    // Photo order: the owner may, another owner may not, and ids of another album are refused.
    let path = format!("/api/v1/albums/{}/photos/order", ids[0]);
    let (status, _, _) = env
        .call("PUT", &path, Some(&bob), Some(r#"{"photo_ids":["1"]}"#))
        .await;
    assert_eq!(status, 403);
    let (status, _, problem) = env
        .call(
            "PUT",
            &path,
            Some(&alice),
            Some(r#"{"photo_ids":["424242"]}"#),
        )
        .await;
    assert!(status == 404 || status == 400, "{status} {problem}");
    let (status, _, _) = env
        .call(
            "PUT",
            &path,
            Some(&alice),
            Some(r#"{"photo_ids":[],"extra":1}"#),
        )
        .await;
    assert_eq!(status, 422, "unknown fields are refused");
    env.mesh.shutdown().await.unwrap();
}
