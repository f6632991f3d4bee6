//! Two gateway replicas on one Redis honour the same `Idempotency-Key`: a key claimed on one
//! is "still running" (409) on the other, its outcome is replayed by the other (same photo,
//! same status, `Idempotent-Replayed`), a different body under it is 422 on the other, and a
//! key released by a request that broke off can be used again through the other.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use photos_gateway::auth::Role;
use photos_runtime::Secret;
use photos_testkit::redis::RedisServer;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A second gateway in front of the same mesh and Redis as `env`'s.
async fn second_gateway(env: &Env, redis: &RedisServer) -> SecondGateway {
    let mut config = env.gateway_config();
    config.cache.url = Secret::new(redis.url());
    SecondGateway::start(config).await
}

async fn upload(
    gateway: SocketAddr,
    album: &str,
    token: &str,
    key: &str,
    body: &[u8],
) -> (u16, String, serde_json::Value) {
    let content_type = format!("multipart/form-data; boundary={BOUNDARY}");
    let (status, head, body) = photos_testkit::http::request_bytes(
        gateway,
        "POST",
        &format!("/api/v1/albums/{album}/photos"),
        &[
            ("Content-Type", &content_type),
            ("Authorization", token),
            ("Idempotency-Key", key),
        ],
        Some(body),
    )
    .await;
    (
        status,
        head,
        serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null),
    )
}

/// The gateway's idempotency records in Redis (by redis-cli, the real server's view).
fn records(redis: &RedisServer) -> Vec<String> {
    let out = std::process::Command::new("redis-cli")
        .args([
            "-p",
            &redis.port().to_string(),
            "--scan",
            "--pattern",
            "photos-gateway:*idempotency*",
        ])
        .output()
        .expect("run redis-cli");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

async fn until(what: &str, mut done: impl FnMut() -> bool) {
    for _ in 0..500 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("{what} did not happen within 10 s");
}

/// Sends an upload's head and the first half of its body on gateway `addr`, and keeps the
/// connection open: the request is running (its key claimed) until the rest is sent.
async fn start_held_upload(
    addr: SocketAddr,
    album: &str,
    token: &str,
    key: &str,
    body: &[u8],
) -> (tokio::net::TcpStream, usize) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST /api/v1/albums/{album}/photos HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\
         Content-Type: multipart/form-data; boundary={BOUNDARY}\r\nAuthorization: {token}\r\n\
         Idempotency-Key: {key}\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let half = body.len() / 2;
    stream.write_all(&body[..half]).await.unwrap();
    (stream, half)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_on_one_redis_honour_the_same_idempotency_key() {
    let redis = RedisServer::start().await.unwrap();
    let redis_url = redis.url();
    let env = Env::start_with(|c| c.gateway.cache.url = Secret::new(redis_url)).await;
    let a = env.mesh.addresses.gateway;
    let b = second_gateway(&env, &redis).await;
    let b_addr = b.addr;
    let owner = env.token("olga", Role::Owner);
    let album = env.create_album(&owner, false).await;
    let photo = form(&[("title", "once")], Some(&jpeg(320, 240, 1)));

    // Replica A is running the upload for "k1" (body half sent): replica B refuses to start
    // it again.
    let (mut held, sent) = start_held_upload(a, &album, &owner, "k1", &photo).await;
    until("a's claim reaching Redis", || records(&redis).len() == 1).await;
    let (status, _, problem) = upload(b_addr, &album, &owner, "k1", &photo).await;
    assert_eq!(status, 409, "{problem}");

    // A finishes: 201.
    held.write_all(&photo[sent..]).await.unwrap();
    let mut raw = Vec::new();
    held.read_to_end(&mut raw).await.unwrap();
    let raw = String::from_utf8_lossy(&raw);
    assert!(raw.starts_with("HTTP/1.1 201"), "{raw}");
    let (_, body) = raw.split_once("\r\n\r\n").unwrap();
    let first: serde_json::Value = serde_json::from_str(body).unwrap();

    // B replays A's outcome: the same photo and status (without the shared store B would run
    // it and answer 200 through the catalog's content-hash uniqueness).
    let (status, head, replay) = upload(b_addr, &album, &owner, "k1", &photo).await;
    assert_eq!(status, 201, "{replay}");
    assert_eq!(replay["id"], first["id"]);
    assert_eq!(header(&head, "idempotent-replayed"), Some("true"), "{head}");

    // The same key with another body, on B: 422.
    let other = form(&[("title", "twice")], Some(&jpeg(320, 240, 2)));
    let (status, _, problem) = upload(b_addr, &album, &owner, "k1", &other).await;
    assert_eq!(status, 422, "{problem}");
    // Keys are per user: another owner's "k1" is theirs.
    let admin = env.token("root", Role::Admin);
    let (status, head, fresh) = upload(b_addr, &album, &admin, "k1", &other).await;
    assert_eq!(status, 201, "{fresh}");
    assert_eq!(header(&head, "idempotent-replayed"), None);

    // A request that breaks off on A releases its key; B can then run it.
    let before = records(&redis).len();
    let third = form(&[], Some(&jpeg(320, 240, 3)));
    let (held, _) = start_held_upload(a, &album, &owner, "k2", &third).await;
    until("a's claim of k2", || records(&redis).len() == before + 1).await;
    drop(held);
    until("the broken-off claim's release", || {
        records(&redis).len() == before
    })
    .await;
    let (status, head, photo3) = upload(b_addr, &album, &owner, "k2", &third).await;
    assert_eq!(status, 201, "{photo3}");
    assert_eq!(header(&head, "idempotent-replayed"), None);
    let (status, _, replay) = upload(a, &album, &owner, "k2", &third).await;
    assert_eq!((status, &replay["id"]), (201, &photo3["id"]));

    // Nothing was uploaded twice: the album holds the three distinct photos.
    let (_, _, detail) = env
        .call(
            "GET",
            &format!("/api/v1/albums/{album}"),
            Some(&owner),
            None,
        )
        .await;
    assert_eq!(detail["album"]["photo_count"], 3, "{detail}");
    drop(b);
}
