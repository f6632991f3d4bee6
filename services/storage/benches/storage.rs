//! Side-by-side benchmark against one local SeaweedFS server (the in-process s3s-fs server if
//! `weed` is missing): a 200 MB upload through the storage RPC vs `aws s3 cp`, and deleting
//! 10,000 objects through ListObjects + DeleteObjects vs `aws s3 rm --recursive`.
//!
//! Run: `cargo bench -p photos-storage --bench storage` (needs `aws` from PyPI `awscli`).
//! Sizes: STORAGE_BENCH_MB (200), STORAGE_BENCH_OBJECTS (10000).
#![allow(clippy::print_stdout)]

use std::process::Command;
use std::time::{Duration, Instant};

use futures::StreamExt;
use photos_proto::storage::v1 as pb;
use photos_proto::storage::v1::storage_service_client::StorageServiceClient;
use photos_runtime::Secret;
use photos_storage::StorageConfig;
use photos_testkit::s3;
use tokio::io::AsyncReadExt;

const LIMIT: Duration = Duration::from_secs(300);

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn aws(endpoint: &str, args: &[&str]) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let out = Command::new("aws")
        .args(["--endpoint-url", endpoint, "--region", s3::REGION])
        .args(args)
        .env("AWS_ACCESS_KEY_ID", s3::ACCESS_KEY)
        .env("AWS_SECRET_ACCESS_KEY", s3::SECRET_KEY)
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
        .output()?;
    let elapsed = started.elapsed();
    anyhow::ensure!(
        out.status.success(),
        "aws {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(elapsed)
}

async fn seed(client: &aws_sdk_s3::Client, prefix: &str, n: usize) -> anyhow::Result<()> {
    let results: Vec<_> = futures::stream::iter(0..n)
        .map(|i| {
            let client = client.clone();
            let key = format!("{prefix}{i:05}");
            async move {
                client
                    .put_object()
                    .bucket(s3::BUCKET)
                    .key(key)
                    .body(aws_sdk_s3::primitives::ByteStream::from_static(b"x"))
                    .send()
                    .await
            }
        })
        .buffer_unordered(64)
        .collect()
        .await;
    for r in results {
        r.map_err(|e| anyhow::anyhow!("{}", aws_sdk_s3::error::DisplayErrorContext(e)))?;
    }
    Ok(())
}

async fn count(client: &aws_sdk_s3::Client, prefix: &str) -> anyhow::Result<usize> {
    let mut pages = client
        .list_objects_v2()
        .bucket(s3::BUCKET)
        .prefix(prefix)
        .into_paginator()
        .send();
    let mut n = 0;
    while let Some(page) = pages.next().await {
        n += page?.contents().len();
    }
    Ok(n)
}

fn main() -> anyhow::Result<()> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(async { tokio::time::timeout(Duration::from_secs(900), run()).await? })
}

async fn run() -> anyhow::Result<()> {
    let mb = env_usize("STORAGE_BENCH_MB", 200);
    let objects = env_usize("STORAGE_BENCH_OBJECTS", 10_000);
    anyhow::ensure!(
        Command::new("aws").arg("--version").output().is_ok(),
        "the AWS CLI is missing: pip install awscli"
    );
    let (_seaweed, _local, endpoint, server) = if s3::SeaweedFs::available() {
        let s = s3::SeaweedFs::start().await?;
        let e = s.endpoint();
        (Some(s), None, e, "SeaweedFS")
    } else {
        let s = s3::TestS3::start().await?;
        let e = s.endpoint();
        (None, Some(s), e, "in-process s3s-fs")
    };
    let direct = s3::client(&endpoint);

    let mut config = StorageConfig::default();
    config.server.grpc_port = 0;
    config.server.admin_port = 0;
    config.server.request_timeout_ms = LIMIT.as_millis() as u64;
    config.s3.endpoint = endpoint.clone();
    config.s3.bucket = s3::BUCKET.to_owned();
    config.s3.access_key = Secret::new(s3::ACCESS_KEY);
    config.s3.secret_key = Secret::new(s3::SECRET_KEY);
    config.s3.force_path_style = true;
    let app = photos_storage::build(config).await?;
    let addr = app.grpc_addr();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server_task = tokio::spawn(app.run_until_stopped(async {
        let _ = stopped.await;
    }));
    let mut client = StorageServiceClient::connect(format!("http://{addr}")).await?;

    println!("storage bench against {server} at {endpoint}");

    // Upload: both sides read the same file from disk.
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("upload.bin");
    let mut data = vec![0u8; mb * 1024 * 1024];
    let mut x: u64 = 0x9e3779b97f4a7c15;
    for chunk in data.chunks_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        chunk.copy_from_slice(&x.to_le_bytes()[..chunk.len()]);
    }
    std::fs::write(&file, &data)?;
    drop(data);

    let started = Instant::now();
    let path = file.clone();
    let (tx, rx) = tokio::sync::mpsc::channel(8);
    let reader = tokio::spawn(async move {
        let header = pb::PutObjectRequest {
            part: Some(pb::put_object_request::Part::Header(pb::PutObjectHeader {
                key: "originals/bench-rpc.bin".into(),
                content_type: "application/octet-stream".into(),
                content_addressed: false,
                expected_size: (mb * 1024 * 1024) as u64,
                sha256: String::new(),
            })),
        };
        tx.send(header).await?;
        let mut f = tokio::fs::File::open(path).await?;
        loop {
            let mut buf = vec![0u8; 1024 * 1024];
            let n = f.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            buf.truncate(n);
            tx.send(pb::PutObjectRequest {
                part: Some(pb::put_object_request::Part::Chunk(buf)),
            })
            .await?;
        }
        anyhow::Ok(())
    });
    let put = tokio::time::timeout(
        LIMIT,
        client.put_object(tokio_stream::wrappers::ReceiverStream::new(rx)),
    )
    .await??
    .into_inner();
    let rpc_upload = started.elapsed();
    reader.await??;
    anyhow::ensure!(put.object.unwrap().size == (mb * 1024 * 1024) as u64);

    let cli_upload = aws(
        &endpoint,
        &[
            "s3",
            "cp",
            "--only-show-errors",
            file.to_str().unwrap(),
            &format!("s3://{}/originals/bench-cli.bin", s3::BUCKET),
        ],
    )?;

    // Delete: the same number of objects under two prefixes.
    seed(&direct, "tmp/bench-rpc/", objects).await?;
    seed(&direct, "tmp/bench-cli/", objects).await?;

    let started = Instant::now();
    let mut keys = Vec::with_capacity(objects);
    let mut pages = client
        .list_objects(pb::ListObjectsRequest {
            prefix: "tmp/bench-rpc/".into(),
            older_than_days: 0,
        })
        .await?
        .into_inner();
    while let Some(page) = pages.next().await {
        keys.extend(page?.objects.into_iter().map(|o| o.key));
    }
    let deleted = client
        .delete_objects(pb::DeleteObjectsRequest { keys })
        .await?
        .into_inner();
    let rpc_delete = started.elapsed();
    anyhow::ensure!(deleted.deleted as usize == objects && deleted.errors.is_empty());
    anyhow::ensure!(count(&direct, "tmp/bench-rpc/").await? == 0);

    let cli_delete = aws(
        &endpoint,
        &[
            "s3",
            "rm",
            "--recursive",
            "--only-show-errors",
            &format!("s3://{}/tmp/bench-cli/", s3::BUCKET),
        ],
    )?;
    anyhow::ensure!(count(&direct, "tmp/bench-cli/").await? == 0);

    let mbs = |d: Duration| mb as f64 / d.as_secs_f64();
    let ops = |d: Duration| objects as f64 / d.as_secs_f64();
    println!();
    println!("{:<34} {:>10} {:>14}", "", "seconds", "throughput");
    println!(
        "{:<34} {:>10.2} {:>10.1} MB/s",
        format!("upload {mb} MB, storage RPC ({} parts)", put.parts),
        rpc_upload.as_secs_f64(),
        mbs(rpc_upload)
    );
    println!(
        "{:<34} {:>10.2} {:>10.1} MB/s",
        format!("upload {mb} MB, aws s3 cp"),
        cli_upload.as_secs_f64(),
        mbs(cli_upload)
    );
    println!(
        "{:<34} {:>10.2} {:>10.0} obj/s",
        format!("delete {objects}, storage RPC ({} req)", deleted.requests),
        rpc_delete.as_secs_f64(),
        ops(rpc_delete)
    );
    println!(
        "{:<34} {:>10.2} {:>10.0} obj/s",
        format!("delete {objects}, aws s3 rm --recursive"),
        cli_delete.as_secs_f64(),
        ops(cli_delete)
    );
    println!();
    println!(
        "ratio upload (RPC throughput / CLI throughput): {:.2}x (target >= 1.0x)",
        cli_upload.as_secs_f64() / rpc_upload.as_secs_f64()
    );
    println!(
        "ratio delete (RPC throughput / CLI throughput): {:.2}x (target >= 1.0x)",
        cli_delete.as_secs_f64() / rpc_delete.as_secs_f64()
    );
    println!("(CLI times include the Python interpreter's start-up, as a user running it pays it)");

    let _ = stop.send(());
    let _ = server_task.await;
    Ok(())
}
