//! The real `photos-metrics` binary: configuration errors exit 64 naming the key, and SIGTERM
//! drains and exits cleanly.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_photos-metrics");

fn run_with(vars: &[(&str, &str)]) -> std::process::Output {
    let mut cmd = Command::new(BIN);
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default());
    for (k, v) in vars {
        cmd.env(k, v);
    }
    // Keep it from binding the real default ports should the config unexpectedly load.
    cmd.env("PHOTOS__SERVER__ADMIN_PORT", "0");
    cmd.stdin(Stdio::null())
        .output()
        .expect("run photos-metrics")
}

#[test]
fn a_malformed_env_value_exits_64_naming_the_key_and_variable() {
    let out = run_with(&[("PHOTOS__SERVER__GRPC_PORT", "not-a-port")]);
    assert_eq!(out.status.code(), Some(64));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("server.grpc_port"), "{stderr}");
    assert!(stderr.contains("PHOTOS__SERVER__GRPC_PORT"), "{stderr}");
}

#[test]
fn an_out_of_range_value_exits_64_naming_the_key() {
    let out = run_with(&[("PHOTOS__TELEMETRY__SAMPLE_RATIO", "2.5")]);
    assert_eq!(out.status.code(), Some(64));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("telemetry.sample_ratio"), "{stderr}");
}

#[test]
fn a_bad_config_file_value_exits_64_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("metrics.toml");
    std::fs::write(&path, "[server]\nconcurrency_limit = 0\n").unwrap();
    let out = run_with(&[("PHOTOS_CONFIG", path.to_str().unwrap())]);
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("server.concurrency_limit"));
}

#[test]
fn sigterm_drains_and_exits_zero() {
    let mut child = Command::new(BIN)
        .env("PHOTOS__SERVER__GRPC_PORT", "0")
        .env("PHOTOS__SERVER__ADMIN_PORT", "0")
        .env("PHOTOS__SERVER__DRAIN_GRACE_MS", "5000")
        .env("PHOTOS__TELEMETRY__LOG_FORMAT", "json")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    // Wait for the structured "serving" log line, which comes after health turns SERVING.
    let serving = lines
        .by_ref()
        .map_while(Result::ok)
        .find(|l| l.contains("\"serving\""))
        .expect("photos-metrics logged that it is serving");
    assert!(serving.contains("127.0.0.1:"), "{serving}");

    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    let exit = loop {
        if let Some(exit) = child.try_wait().unwrap() {
            break exit;
        }
        assert!(
            Instant::now() < deadline,
            "photos-metrics did not exit after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(exit.code(), Some(0));
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    assert!(
        rest.iter().any(|l| l.contains("SIGTERM received")),
        "{rest:#?}"
    );
    assert!(rest.iter().any(|l| l.contains("drained")), "{rest:#?}");
}
