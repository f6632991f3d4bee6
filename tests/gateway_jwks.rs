//! RS256 and EdDSA bearer tokens verified through a JWKS file by the gateway of a real mesh,
//! over HTTP: keys are generated here (aws-lc-rs), their public halves written as a JWK set
//! that the gateway reads at start. A rotated key set accepts the new kid and refuses the
//! retired one; algorithms outside the pinned set are refused whatever the key.

mod common;

use base64::Engine;
use common::*;
use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use photos_gateway::auth::{Claims, Role};

fn rsa_key() -> EncodingKey {
    use aws_lc_rs::encoding::{AsDer, Pkcs8V1Der};
    let pair = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).unwrap();
    let der: Pkcs8V1Der<'_> = pair.as_der().unwrap();
    let b64 = base64::engine::general_purpose::STANDARD.encode(der.as_ref());
    let pem = format!("-----BEGIN PRIVATE KEY-----\n{b64}\n-----END PRIVATE KEY-----\n");
    EncodingKey::from_rsa_pem(pem.as_bytes()).unwrap()
}

fn ed25519_key() -> EncodingKey {
    let pair = aws_lc_rs::signature::Ed25519KeyPair::generate().unwrap();
    EncodingKey::from_ed_der(pair.to_pkcs8v1().unwrap().as_ref())
}

/// The public half of `key` as a JWK with `kid` (and `alg`, as identity providers publish).
fn public_jwk(key: &EncodingKey, alg: Algorithm, kid: &str) -> Jwk {
    let mut jwk = Jwk::from_encoding_key(key, alg).unwrap();
    jwk.common.key_id = Some(kid.to_owned());
    jwk
}

fn claims(env: &Env, sub: &str, role: Role) -> Claims {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    Claims {
        sub: sub.into(),
        role,
        exp: now + 600,
        iss: env.auth.issuer.clone(),
        aud: env.auth.audience.clone(),
    }
}

fn bearer(alg: Algorithm, kid: Option<&str>, claims: &Claims, key: &EncodingKey) -> String {
    let mut header = Header::new(alg);
    header.kid = kid.map(str::to_owned);
    format!(
        "Bearer {}",
        jsonwebtoken::encode(&header, claims, key).unwrap()
    )
}

/// A mesh whose gateway reads `keys` from a JWKS file.
async fn start_with_keys(keys: Vec<Jwk>) -> Env {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("jwks.json");
    std::fs::write(&path, serde_json::to_string(&JwkSet { keys }).unwrap()).unwrap();
    let env = Env::start_with(|c| c.gateway.auth.jwks_path = path.display().to_string()).await;
    // The gateway read the file at start; the directory may go.
    drop(dir);
    env
}

async fn create_album(env: &Env, token: &str) -> (u16, String, serde_json::Value) {
    env.call(
        "POST",
        "/api/v1/albums",
        Some(token),
        Some(r#"{"title":"Signed by a JWKS key"}"#),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rs256_and_eddsa_tokens_verify_through_the_jwks_file() {
    let (rsa, ed) = (rsa_key(), ed25519_key());
    let env = start_with_keys(vec![
        public_jwk(&rsa, Algorithm::RS256, "rsa-1"),
        public_jwk(&ed, Algorithm::EdDSA, "ed-1"),
    ])
    .await;

    // RS256: an owner creates an album, which is recorded as theirs.
    let token = bearer(
        Algorithm::RS256,
        Some("rsa-1"),
        &claims(&env, "rita", Role::Owner),
        &rsa,
    );
    let (status, _, album) = create_album(&env, &token).await;
    assert_eq!(status, 201, "{album}");
    assert_eq!(album["owner_id"], "rita");

    // EdDSA: the role comes from the verified token, so an admin endpoint answers.
    let admin = bearer(
        Algorithm::EdDSA,
        Some("ed-1"),
        &claims(&env, "root", Role::Admin),
        &ed,
    );
    let (status, _, stats) = env
        .call("GET", "/api/v1/admin/cache-stats", Some(&admin), None)
        .await;
    assert_eq!(status, 200, "{stats}");
    // The same claims as an owner are not enough there.
    let owner = bearer(
        Algorithm::EdDSA,
        Some("ed-1"),
        &claims(&env, "rita", Role::Owner),
        &ed,
    );
    let (status, _, _) = env
        .call("GET", "/api/v1/admin/cache-stats", Some(&owner), None)
        .await;
    assert_eq!(status, 403);

    // One key per algorithm: a token without kid finds it.
    let token = bearer(
        Algorithm::EdDSA,
        None,
        &claims(&env, "eddie", Role::Owner),
        &ed,
    );
    let (status, _, album) = create_album(&env, &token).await;
    assert_eq!(status, 201, "{album}");
    assert_eq!(album["owner_id"], "eddie");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_key_set_accepts_the_new_kid_and_refuses_retired_and_unknown_ones() {
    // The identity provider rotated rsa-1 out: the gateway now holds rsa-2 (and ed-1).
    let (retired, current, ed) = (rsa_key(), rsa_key(), ed25519_key());
    let env = start_with_keys(vec![
        public_jwk(&current, Algorithm::RS256, "rsa-2"),
        public_jwk(&ed, Algorithm::EdDSA, "ed-1"),
    ])
    .await;
    let c = claims(&env, "rita", Role::Owner);

    let (status, _, album) =
        create_album(&env, &bearer(Algorithm::RS256, Some("rsa-2"), &c, &current)).await;
    assert_eq!(status, 201, "the new kid verifies: {album}");

    let refused = [
        (
            "retired kid",
            bearer(Algorithm::RS256, Some("rsa-1"), &c, &retired),
        ),
        (
            "unknown kid",
            bearer(Algorithm::RS256, Some("rsa-9"), &c, &current),
        ),
        // Without a kid the only RS256 key is tried, and the retired key's signature fails.
        (
            "retired key without kid",
            bearer(Algorithm::RS256, None, &c, &retired),
        ),
        (
            "the current kid signed by the retired key",
            bearer(Algorithm::RS256, Some("rsa-2"), &c, &retired),
        ),
    ];
    for (what, token) in refused {
        let (status, head, problem) = create_album(&env, &token).await;
        assert_eq!(status, 401, "{what}: {problem}");
        assert_eq!(header(&head, "www-authenticate"), Some("Bearer"), "{what}");
        assert_eq!(problem["kind"], "unauthenticated", "{what}: {problem}");
    }
    let (status, _, problem) =
        create_album(&env, &bearer(Algorithm::RS256, Some("rsa-1"), &c, &retired)).await;
    assert_eq!(status, 401);
    assert!(
        problem["detail"].as_str().unwrap().contains("rsa-1"),
        "the refusal names the unknown kid: {problem}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn algorithms_outside_the_pinned_set_are_refused() {
    let (rsa, ed) = (rsa_key(), ed25519_key());
    let env = start_with_keys(vec![
        public_jwk(&rsa, Algorithm::RS256, "rsa-1"),
        public_jwk(&ed, Algorithm::EdDSA, "ed-1"),
    ])
    .await;
    let c = claims(&env, "mallory", Role::Admin);
    let b64 = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
    let payload = serde_json::to_string(&c).unwrap();
    let refused = [
        // The RSA key under another RSA algorithm: each key verifies one algorithm only.
        (
            "RS384 with the RSA key",
            bearer(Algorithm::RS384, Some("rsa-1"), &c, &rsa),
        ),
        (
            "PS256 with the RSA key",
            bearer(Algorithm::PS256, Some("rsa-1"), &c, &rsa),
        ),
        // The Ed25519 key's kid under RS256, and the RSA kid under EdDSA.
        (
            "RS256 naming the Ed25519 kid",
            bearer(Algorithm::RS256, Some("ed-1"), &c, &rsa),
        ),
        (
            "EdDSA naming the RSA kid",
            bearer(Algorithm::EdDSA, Some("rsa-1"), &c, &ed),
        ),
        // HS256 is accepted with the configured secret only; HS384/HS512 never.
        (
            "HS512",
            bearer(
                Algorithm::HS512,
                None,
                &c,
                &EncodingKey::from_secret(SECRET.as_bytes()).unwrap(),
            ),
        ),
        (
            "alg none",
            format!(
                "Bearer {}.{}.",
                b64(r#"{"alg":"none","typ":"JWT","kid":"rsa-1"}"#),
                b64(&payload)
            ),
        ),
    ];
    for (what, token) in refused {
        let (status, _, problem) = env
            .call("GET", "/api/v1/admin/cache-stats", Some(&token), None)
            .await;
        assert_eq!(status, 401, "{what}: {problem}");
    }
    // The same claims properly signed pass, so the refusals above were the algorithm's doing.
    let (status, _, stats) = env
        .call(
            "GET",
            "/api/v1/admin/cache-stats",
            Some(&bearer(Algorithm::RS256, Some("rsa-1"), &c, &rsa)),
            None,
        )
        .await;
    assert_eq!(status, 200, "{stats}");
}
