//! Attacks on the whole mesh that other suites leave out: another user's private photo by id,
//! by object key and by variant URL; tampered, re-targeted and expired signed URLs; a token
//! minted for another issuer; cookies and credentials from a foreign origin.
//!
//! Already covered elsewhere and not repeated: forged, expired, `alg: none` and wrong-audience
//! JWTs (`gateway_api.rs`); another owner's private album by id (`gateway_api.rs`) and uploads
//! into it (`gateway_upload.rs`); rate limits with spoofed `X-Forwarded-For` and the CORS
//! allowlist for preflights and simple requests (`gateway_edge.rs`); presigned URL expiry and
//! tampering against the object stores themselves (`services/storage/tests/api/urls.rs`).

mod common;

use common::*;
use photos_gateway::auth::{self, Role};
use photos_proto::storage::v1 as storage_pb;

fn source_urls(photo: &serde_json::Value) -> Vec<String> {
    photo["sources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["url"].as_str().unwrap().to_owned())
        .collect()
}

/// The object key a signed URL names (`/bucket/key?...` on the path-style local store).
fn key_of(url: &str) -> String {
    let path = url.split('?').next().unwrap();
    let at = path.find("/variants/").expect("a variant URL");
    path[at + 1..].to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_users_private_photo_is_out_of_reach_by_id_key_and_url() {
    let env = Env::start().await;
    let (alice, bob) = (
        env.token("alice", Role::Owner),
        env.token("bob", Role::Owner),
    );
    let viewer = env.token("vera", Role::Viewer);
    let album = env.create_album(&alice, false).await;
    let (status, _, photo) = env
        .upload(
            &album,
            Some(&alice),
            &[],
            &form(&[], Some(&jpeg(800, 600, 11))),
        )
        .await;
    assert_eq!(status, 201, "{photo}");
    let id = photo["id"].as_str().unwrap().to_owned();
    let bobs_album = env.create_album(&bob, false).await;
    let (status, _, bobs_photo) = env
        .upload(
            &bobs_album,
            Some(&bob),
            &[],
            &form(&[], Some(&jpeg(800, 600, 12))),
        )
        .await;
    assert_eq!(status, 201, "{bobs_photo}");

    // By id: the photo, its album's photo listing and the recent feed hide it from everyone
    // but alice; no one else may delete it.
    for (who, token) in [
        ("anonymous", None),
        ("bob", Some(&bob)),
        ("viewer", Some(&viewer)),
    ] {
        let token = token.map(String::as_str);
        let (status, _, body) = env
            .call("GET", &format!("/api/v1/photos/{id}"), token, None)
            .await;
        assert_eq!(status, 404, "{who} GET photo: {body}");
        let (status, _, body) = env
            .call(
                "GET",
                &format!("/api/v1/albums/{album}/photos"),
                token,
                None,
            )
            .await;
        assert_eq!(status, 404, "{who} GET album photos: {body}");
        let (status, _, recent) = env.call("GET", "/api/v1/photos/recent", token, None).await;
        assert_eq!(status, 200, "{who}: {recent}");
        assert!(
            !recent["photos"]
                .as_array()
                .unwrap()
                .iter()
                .any(|p| p["id"] == id.as_str()),
            "{who} sees alice's private photo in the recent feed: {recent}"
        );
        let (status, _, body) = env
            .call("DELETE", &format!("/api/v1/photos/{id}"), token, None)
            .await;
        assert!(
            matches!(status, 401 | 403 | 404),
            "{who} DELETE photo: {status} {body}"
        );
    }
    let (status, _, still) = env
        .call("GET", &format!("/api/v1/photos/{id}"), Some(&alice), None)
        .await;
    assert_eq!(status, 200, "alice's photo survived: {still}");

    // By key: the object store refuses unsigned requests for it.
    let urls = source_urls(&photo);
    let signed = &urls[0];
    let (status, bytes) = fetch(signed).await;
    assert_eq!(status, 200, "alice's own signed URL works");
    assert!(!bytes.is_empty());
    let unsigned = signed.split('?').next().unwrap();
    assert_eq!(fetch(unsigned).await.0, 403, "no signature: {unsigned}");

    // By variant URL: a signature for one key does not open another. Bob's signed URL, re-pointed
    // at alice's variant, is refused; so is alice's URL with one signature character changed.
    let bobs = &source_urls(&bobs_photo)[0];
    let (bob_path, bob_query) = bobs.split_once('?').unwrap();
    let retargeted = format!(
        "{}/{}?{bob_query}",
        &bob_path[..bob_path.find("/variants/").unwrap()],
        key_of(signed)
    );
    assert_eq!(fetch(&retargeted).await.0, 403, "re-targeted: {retargeted}");
    let sig_at = signed.find("X-Amz-Signature=").unwrap() + "X-Amz-Signature=".len();
    let mut tampered = signed.clone().into_bytes();
    tampered[sig_at] = if tampered[sig_at] == b'0' { b'1' } else { b'0' };
    let tampered = String::from_utf8(tampered).unwrap();
    assert_eq!(fetch(&tampered).await.0, 403, "tampered signature");
    // Stretching the lifetime breaks the signature too.
    let stretched = signed.replace("X-Amz-Expires=", "X-Amz-Expires=9");
    assert_ne!(&stretched, signed);
    assert_eq!(fetch(&stretched).await.0, 403, "lifetime edited");

    // The gateway's URLs live no longer than sources.signed_url_ttl_seconds (600 by default).
    for url in &urls {
        let expires: u64 = url
            .split(['?', '&'])
            .find_map(|p| p.strip_prefix("X-Amz-Expires="))
            .unwrap()
            .parse()
            .unwrap();
        assert!(expires <= 600, "{url}");
    }

    // Expired: the same signer (storage's GetObjectUrl, which the gateway calls) with a 1 s
    // lifetime; the URL works, then stops working.
    let mut storage = storage_pb::storage_service_client::StorageServiceClient::new(
        channel(env.mesh.addresses.storage).await,
    );
    let short = storage
        .get_object_url(storage_pb::GetObjectUrlRequest {
            key: key_of(signed),
            kind: storage_pb::UrlKind::S3Presigned as i32,
            expires_in_seconds: 1,
        })
        .await
        .unwrap()
        .into_inner()
        .url;
    assert_eq!(fetch(&short).await.0, 200, "fresh: {short}");
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    assert_eq!(fetch(&short).await.0, 403, "expired: {short}");
    env.mesh.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_for_another_issuer_and_cookies_do_not_authenticate() {
    let env = Env::start().await;
    let alice = env.token("alice", Role::Owner);
    let album = env.create_album(&alice, false).await;
    let mut other_issuer = env.auth.clone();
    other_issuer.issuer = "someone-else".into();
    let foreign = format!(
        "Bearer {}",
        auth::issue(&other_issuer, "alice", Role::Owner, 600).unwrap()
    );
    let (status, head, body) = env
        .call(
            "GET",
            &format!("/api/v1/albums/{album}"),
            Some(&foreign),
            None,
        )
        .await;
    assert_eq!(status, 401, "{body}");
    assert!(
        head.to_lowercase().contains("www-authenticate: bearer"),
        "{head}"
    );

    // A genuine token in a cookie is not a credential: the caller is anonymous.
    let raw = alice.trim_start_matches("Bearer ");
    let cookie = format!("token={raw}; access_token={raw}; Authorization=Bearer%20{raw}");
    let (status, _, body) = request(
        env.mesh.addresses.gateway,
        "GET",
        &format!("/api/v1/albums/{album}"),
        &[("Cookie", &cookie)],
        None,
    )
    .await;
    assert_eq!(status, 404, "cookies must not authenticate: {body}");
    env.mesh.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_foreign_origin_with_credentials_gets_no_cors_grant() {
    let env = Env::start_with(|c| {
        c.gateway.cors.allowed_origins = vec!["https://photos.example".into()];
    })
    .await;
    let gw = env.mesh.addresses.gateway;
    let alice = env.token("alice", Role::Owner);
    let album = env.create_album(&alice, false).await;
    let path = format!("/api/v1/albums/{album}");
    let grants = |head: &str| {
        (
            header(head, "access-control-allow-origin").map(str::to_owned),
            header(head, "access-control-allow-credentials").map(str::to_owned),
        )
    };

    // A foreign page's credentialed preflight and request: no grant, so the browser keeps the
    // answer from the page, whatever the server did.
    let (_, head, _) = request(
        gw,
        "OPTIONS",
        &path,
        &[
            ("Origin", "https://evil.example"),
            ("Access-Control-Request-Method", "DELETE"),
            ("Access-Control-Request-Headers", "authorization"),
            ("Cookie", "session=stolen"),
        ],
        None,
    )
    .await;
    assert_eq!(grants(&head), (None, None), "preflight: {head}");
    for origin in [
        "https://evil.example",
        "null",
        "https://photos.example.evil.example",
    ] {
        let (status, head, _) = request(
            gw,
            "GET",
            &path,
            &[
                ("Origin", origin),
                ("Authorization", &alice),
                ("Cookie", "session=x"),
            ],
            None,
        )
        .await;
        assert_eq!(
            status, 200,
            "{origin}: the server answers; the browser withholds it"
        );
        assert_eq!(grants(&head), (None, None), "{origin}: {head}");
    }
    // The allowed origin gets itself back (never `*`), and credentials mode is never granted:
    // the API authenticates with a bearer header, not cookies.
    let (_, head, _) = request(
        gw,
        "GET",
        &path,
        &[
            ("Origin", "https://photos.example"),
            ("Authorization", &alice),
        ],
        None,
    )
    .await;
    assert_eq!(
        grants(&head),
        (Some("https://photos.example".to_owned()), None),
        "{head}"
    );
    env.mesh.shutdown().await.unwrap();
}
