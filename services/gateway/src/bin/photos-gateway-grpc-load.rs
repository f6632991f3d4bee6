//! The gRPC half of the gateway benchmark (bench/albums.sh): the catalog's ListAlbums exactly
//! as the gateway's `GET /api/v1/albums` makes it, from N concurrent callers for a fixed time,
//! through the same client channel the gateway uses. Prints throughput and latency percentiles
//! in a `key value` form the script reads.
#![allow(clippy::print_stdout)] // the figures are this tool's output

use std::time::{Duration, Instant};

use photos_proto::catalog::v1 as pb;
use photos_proto::catalog::v1::catalog_service_client::CatalogServiceClient;
use photos_runtime::client::Channel;
use photos_runtime::config::UpstreamConfig;

fn arg(name: &str, default: &str) -> String {
    let flag = format!("--{name}");
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| *a == flag)
        .and_then(|i| args.get(i + 1).cloned())
        .unwrap_or_else(|| default.to_owned())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let address = arg("address", "http://127.0.0.1:50051");
    let concurrency: usize = arg("concurrency", "16").parse()?;
    let duration = Duration::from_secs(arg("duration", "10").parse()?);
    let channel = Channel::connect_lazy(&UpstreamConfig::new(address))?;
    let request = pb::ListAlbumsRequest {
        published_only: true,
        page_size: 20,
        page_token: String::new(),
        preview_count: 4,
        owner_id: String::new(),
    };
    // One warm-up call: connects and fills the catalog's cache, like the gateway's warm-up.
    CatalogServiceClient::new(channel.clone())
        .list_albums(request.clone())
        .await?;
    let started = Instant::now();
    let deadline = started + duration;
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..concurrency {
        let mut client = CatalogServiceClient::new(channel.clone());
        let request = request.clone();
        workers.spawn(async move {
            let (mut latencies, mut errors) = (Vec::new(), 0u64);
            while Instant::now() < deadline {
                let t = Instant::now();
                match client.list_albums(request.clone()).await {
                    Ok(_) => latencies.push(t.elapsed()),
                    Err(_) => errors += 1,
                }
            }
            (latencies, errors)
        });
    }
    let (mut latencies, mut errors) = (Vec::new(), 0);
    while let Some(done) = workers.join_next().await {
        let (l, e) = done?;
        latencies.extend(l);
        errors += e;
    }
    let elapsed = started.elapsed().as_secs_f64();
    latencies.sort();
    let pct = |p: f64| {
        latencies
            .get(((latencies.len() as f64 * p).ceil() as usize).saturating_sub(1))
            .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
    };
    println!("requests {}", latencies.len());
    println!("errors {errors}");
    println!("rps {:.1}", latencies.len() as f64 / elapsed);
    println!("p50_ms {:.3}", pct(0.50));
    println!("p99_ms {:.3}", pct(0.99));
    Ok(())
}
