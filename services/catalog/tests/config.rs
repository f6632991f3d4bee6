//! The catalog binary refuses a bad database URL without printing it (it may hold a password).

use std::process::{Command, Stdio};

#[test]
fn a_bad_database_url_exits_64_without_echoing_the_secret() {
    let out = Command::new(env!("CARGO_BIN_EXE_photos-catalog"))
        .env("PHOTOS__DATABASE__URL", "mysql://root:hunter2@db/photos")
        .env("PHOTOS__SERVER__GRPC_PORT", "0")
        .env("PHOTOS__SERVER__ADMIN_PORT", "0")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("database.url"), "{stderr}");
    assert!(!stderr.contains("hunter2"), "the password leaked: {stderr}");
}

#[test]
fn an_acquire_timeout_above_the_rpc_deadline_exits_64() {
    let out = Command::new(env!("CARGO_BIN_EXE_photos-catalog"))
        .env(
            "PHOTOS__DATABASE__URL",
            "postgres://postgres@127.0.0.1:5432/photos",
        )
        .env("PHOTOS__DATABASE__ACQUIRE_TIMEOUT_MS", "999999")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(64),
        "acquire timeout above the RPC deadline is refused"
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("database.acquire_timeout_ms"));
}

#[test]
fn a_redis_cache_without_its_url_exits_64_naming_the_key() {
    let out = Command::new(env!("CARGO_BIN_EXE_photos-catalog"))
        .env(
            "PHOTOS__DATABASE__URL",
            "postgres://postgres@127.0.0.1:5432/photos",
        )
        .env("PHOTOS__CACHE__BACKEND", "redis")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cache.url"));
}
