//! Side-by-side latency/throughput of the cache tiers against `redis-benchmark -t get` on the
//! same server at the same concurrency, and a Zipf(1.0) read mix over 10k keys.
//! Starts its own redis-server processes on free ports; bounded run time (~1 minute).
#![allow(clippy::print_stdout)]

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use photos_cache::backend::{Backend, ClusterBackend, StandaloneBackend};
use photos_cache::{Cache, CacheConfig, CacheName, Policy};

const CONCURRENCY: usize = 50;
const PHASE: Duration = Duration::from_secs(3);
const VALUE_BYTES: usize = 100;

struct Servers(Vec<Child>, Option<std::path::PathBuf>);

impl Drop for Servers {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
        if let Some(dir) = &self.1 {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

fn redis_server(port: u16, extra: &[&str]) -> Child {
    Command::new("redis-server")
        .args([
            "--bind",
            "127.0.0.1",
            "--port",
            &port.to_string(),
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("redis-server must be installed (apt-get install redis-server)")
}

async fn wait_ping(port: u16) {
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}/")).unwrap();
    for _ in 0..500 {
        if let Ok(mut c) = client.get_multiplexed_async_connection().await
            && redis::cmd("PING")
                .query_async::<String>(&mut c)
                .await
                .is_ok()
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("redis on {port} did not start");
}

async fn start_cluster() -> (Servers, Vec<String>) {
    let dir = std::env::temp_dir().join(format!("cache-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ports: Vec<u16> = (0..6).map(|_| free_port()).collect();
    let mut children = Vec::new();
    for p in &ports {
        let conf = dir.join(format!("nodes-{p}.conf"));
        children.push(redis_server(
            *p,
            &[
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                conf.to_str().unwrap(),
                "--dir",
                dir.to_str().unwrap(),
            ],
        ));
    }
    for p in &ports {
        wait_ping(*p).await;
    }
    let addrs: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
    let out = Command::new("redis-cli")
        .args(["--cluster", "create"])
        .args(&addrs)
        .args(["--cluster-replicas", "1", "--cluster-yes"])
        .output()
        .expect("redis-cli");
    assert!(out.status.success(), "cluster create failed");
    let client = redis::Client::open(format!("redis://127.0.0.1:{}/", ports[0])).unwrap();
    let mut c = client.get_multiplexed_async_connection().await.unwrap();
    for _ in 0..300 {
        let info: String = redis::cmd("CLUSTER")
            .arg("INFO")
            .query_async(&mut c)
            .await
            .unwrap();
        if info.contains("cluster_state:ok") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let urls = ports
        .iter()
        .map(|p| format!("redis://127.0.0.1:{p}/"))
        .collect();
    (Servers(children, Some(dir)), urls)
}

struct Figures {
    ops_per_sec: f64,
    mean_us: f64,
    p50_us: f64,
    p99_us: f64,
}

fn figures(mut samples: Vec<u32>, elapsed: Duration) -> Figures {
    samples.sort_unstable();
    let n = samples.len().max(1);
    let pct = |p: f64| samples[((n as f64 * p) as usize).min(n - 1)] as f64 / 1000.0;
    Figures {
        ops_per_sec: samples.len() as f64 / elapsed.as_secs_f64(),
        mean_us: samples.iter().map(|s| *s as f64).sum::<f64>() / n as f64 / 1000.0,
        p50_us: pct(0.5),
        p99_us: pct(0.99),
    }
}

/// Runs `op` from `concurrency` tasks for PHASE; per-op latency in ns.
async fn drive<F, Fut>(concurrency: usize, op: F) -> Figures
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let op = Arc::new(op);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let op = op.clone();
        tasks.push(tokio::spawn(async move {
            let mut samples = Vec::with_capacity(200_000);
            while start.elapsed() < PHASE {
                let t = Instant::now();
                op().await;
                samples.push(t.elapsed().as_nanos().min(u32::MAX as u128) as u32);
            }
            samples
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    figures(all, start.elapsed())
}

fn row(name: &str, f: &Figures) {
    println!(
        "{name:<38} {:>12.0} ops/s  mean {:>8.2} µs  p50 {:>8.2} µs  p99 {:>8.2} µs",
        f.ops_per_sec, f.mean_us, f.p50_us, f.p99_us
    );
}

/// `redis-benchmark -t get` at the same concurrency; returns (rps, avg latency µs).
fn redis_benchmark(port: u16, concurrency: usize, cluster: bool) -> Option<(f64, f64)> {
    let mut cmd = Command::new("redis-benchmark");
    cmd.args([
        "-p",
        &port.to_string(),
        "-t",
        "get",
        "-c",
        &concurrency.to_string(),
        "-n",
        "300000",
        "-d",
    ])
    .arg(VALUE_BYTES.to_string())
    .args(["--csv", "--precision", "3"]);
    if cluster {
        cmd.arg("--cluster");
    }
    let out = cmd.output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    // "test","rps","avg_latency_ms",...
    let line = text.lines().find(|l| l.starts_with("\"GET\""))?;
    let cols: Vec<f64> = line
        .split(',')
        .skip(1)
        .filter_map(|c| c.trim_matches('"').parse().ok())
        .collect();
    Some((*cols.first()?, cols.get(1)? * 1000.0))
}

struct Zipf {
    cdf: Vec<f64>,
    state: u64,
}

impl Zipf {
    fn new(n: usize, s: f64, seed: u64) -> Zipf {
        let weights: Vec<f64> = (1..=n).map(|k| 1.0 / (k as f64).powf(s)).collect();
        let total: f64 = weights.iter().sum();
        let mut acc = 0.0;
        let cdf = weights
            .iter()
            .map(|w| {
                acc += w / total;
                acc
            })
            .collect();
        Zipf {
            cdf,
            state: seed | 1,
        }
    }

    fn next(&mut self) -> usize {
        // xorshift64*: deterministic, dependency-free.
        self.state ^= self.state >> 12;
        self.state ^= self.state << 25;
        self.state ^= self.state >> 27;
        let u = (self.state.wrapping_mul(0x2545F4914F6CDD1D) >> 11) as f64 / (1u64 << 53) as f64;
        self.cdf.partition_point(|c| *c < u).min(self.cdf.len() - 1)
    }
}

async fn zipf_mix(url: &str, l1_entries: u64) -> (f64, f64, u64) {
    let mut config = CacheConfig::redis(url).with_prefix(format!("zipf{l1_entries}"));
    // Room for `l1_entries` of these entries (key, expiry header, encoded value).
    config.l1_max_bytes = l1_entries * (64 + VALUE_BYTES as u64);
    let cache = Cache::connect(config).await.unwrap();
    let c = cache.named(CacheName::Default);
    let policy = Policy::new(Duration::from_secs(3600));
    let keys: Vec<_> = (0..10_000)
        .map(|i| c.key("photo").part(i).build())
        .collect();
    let loads = AtomicU64::new(0);
    let mut zipf = Zipf::new(10_000, 1.0, 42);
    let value = vec![7u8; VALUE_BYTES];
    let read = |n: usize, zipf: &mut Zipf| {
        let picks: Vec<usize> = (0..n).map(|_| zipf.next()).collect();
        picks
    };
    // Warm-up: 100k reads fill the tiers the way traffic would.
    for i in read(100_000, &mut zipf) {
        let _: Vec<u8> = c
            .get_or_load(&keys[i], policy, || async { Ok::<_, ()>(value.clone()) })
            .await
            .unwrap();
    }
    let before = cache
        .stats()
        .into_iter()
        .find(|s| s.cache == "default")
        .unwrap();
    for i in read(200_000, &mut zipf) {
        let _: Vec<u8> = c
            .get_or_load(&keys[i], policy, || async {
                loads.fetch_add(1, Ordering::Relaxed);
                Ok::<_, ()>(value.clone())
            })
            .await
            .unwrap();
    }
    let after = cache
        .stats()
        .into_iter()
        .find(|s| s.cache == "default")
        .unwrap();
    let hits = after.hits - before.hits;
    let misses = after.misses - before.misses;
    let l1 = after.l1_hits - before.l1_hits;
    (
        hits as f64 / (hits + misses) as f64,
        l1 as f64 / (hits + misses) as f64,
        loads.load(Ordering::Relaxed),
    )
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let port = free_port();
    let _standalone = Servers(vec![redis_server(port, &[])], None);
    wait_ping(port).await;
    let url = format!("redis://127.0.0.1:{port}/");
    let (_cluster, cluster_urls) = start_cluster().await;
    let value = Bytes::from(vec![b'x'; VALUE_BYTES]);

    println!(
        "cache-bench: value {VALUE_BYTES} B, concurrency {CONCURRENCY}, {PHASE:?} per phase, release build expected"
    );
    println!();

    // L1 hit: the in-process tier in front of Redis.
    let cache = Cache::connect(CacheConfig::redis(&url).with_prefix("bench"))
        .await
        .unwrap();
    while !cache.is_coherent() {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let named = cache.named(CacheName::Default);
    let key = named.key("photo").part(1).build();
    named.set(&key, &vec![b'x'; VALUE_BYTES]).await.unwrap();
    let l1_1 = {
        let (named, key) = (named.clone(), key.clone());
        drive(1, move || {
            let (named, key) = (named.clone(), key.clone());
            async move {
                let v: Option<Vec<u8>> = named.get(&key).await;
                assert!(v.is_some());
            }
        })
        .await
    };
    let l1_c = {
        let (named, key) = (named.clone(), key.clone());
        drive(CONCURRENCY, move || {
            let (named, key) = (named.clone(), key.clone());
            async move {
                let v: Option<Vec<u8>> = named.get(&key).await;
                assert!(v.is_some());
            }
        })
        .await
    };
    let l1_stats = cache
        .stats()
        .into_iter()
        .find(|s| s.cache == "default")
        .unwrap();

    // Redis tier: the pooled standalone backend (what an L1 miss pays).
    let standalone = Arc::new(StandaloneBackend::new(&url, 50, Duration::from_secs(2)).unwrap());
    standalone
        .set("bench:raw", value.clone(), Duration::from_secs(600))
        .await
        .unwrap();
    let redis_1 = {
        let b = standalone.clone();
        drive(1, move || {
            let b = b.clone();
            async move {
                assert!(b.get("bench:raw").await.unwrap().is_some());
            }
        })
        .await
    };
    let redis_c = {
        let b = standalone.clone();
        drive(CONCURRENCY, move || {
            let b = b.clone();
            async move {
                assert!(b.get("bench:raw").await.unwrap().is_some());
            }
        })
        .await
    };
    let rb_1 = redis_benchmark(port, 1, false);
    let rb_c = redis_benchmark(port, CONCURRENCY, false);

    // Cluster tier.
    let cluster = Arc::new(
        ClusterBackend::connect(&cluster_urls, Duration::from_secs(2))
            .await
            .unwrap(),
    );
    cluster
        .set("bench:raw", value.clone(), Duration::from_secs(600))
        .await
        .unwrap();
    let cluster_c = {
        let b = cluster.clone();
        drive(CONCURRENCY, move || {
            let b = b.clone();
            async move {
                assert!(b.get("bench:raw").await.unwrap().is_some());
            }
        })
        .await
    };
    let cluster_port: u16 = cluster_urls[0]
        .trim_start_matches("redis://127.0.0.1:")
        .trim_end_matches('/')
        .parse()
        .unwrap();
    let rb_cluster = redis_benchmark(cluster_port, CONCURRENCY, true);

    row("L1 hit (Cache::get), 1 task", &l1_1);
    row(&format!("L1 hit (Cache::get), {CONCURRENCY} tasks"), &l1_c);
    println!(
        "  (L1 answered {} of {} gets)",
        l1_stats.l1_hits, l1_stats.hits
    );
    row("Redis GET via pool, 1 task", &redis_1);
    row(
        &format!("Redis GET via pool, {CONCURRENCY} tasks"),
        &redis_c,
    );
    if let Some((rps, avg)) = rb_1 {
        println!(
            "{:<38} {rps:>12.0} ops/s  mean {avg:>8.2} µs",
            "redis-benchmark -t get -c 1"
        );
    }
    if let Some((rps, avg)) = rb_c {
        println!(
            "{:<38} {rps:>12.0} ops/s  mean {avg:>8.2} µs",
            format!("redis-benchmark -t get -c {CONCURRENCY}")
        );
    }
    row(&format!("Cluster GET, {CONCURRENCY} tasks"), &cluster_c);
    if let Some((rps, avg)) = rb_cluster {
        println!(
            "{:<38} {rps:>12.0} ops/s  mean {avg:>8.2} µs",
            format!("redis-benchmark --cluster -c {CONCURRENCY}")
        );
    }
    println!();
    println!("ratios:");
    println!(
        "  L1 hit mean (1 task): {:.3} µs (target < 2 µs)",
        l1_1.mean_us
    );
    if let Some((_, avg)) = rb_1 {
        println!(
            "  Redis-tier / redis-benchmark mean latency, c=1:  {:.2}x (target <= 1.3x)",
            redis_1.mean_us / avg
        );
    }
    if let Some((rps, avg)) = rb_c {
        println!(
            "  Redis-tier / redis-benchmark mean latency, c={CONCURRENCY}: {:.2}x (target <= 1.3x); throughput {:.2}x",
            redis_c.mean_us / avg,
            redis_c.ops_per_sec / rps
        );
    }
    if let Some((rps, avg)) = rb_cluster {
        println!(
            "  Cluster-tier / redis-benchmark --cluster mean latency, c={CONCURRENCY}: {:.2}x; throughput {:.2}x",
            cluster_c.mean_us / avg,
            cluster_c.ops_per_sec / rps
        );
    }
    println!(
        "  Redis-tier / L1 mean latency (1 task): {:.0}x",
        redis_1.mean_us / l1_1.mean_us
    );

    println!();
    for l1 in [100_000u64, 1_000] {
        let (hit, l1_rate, loads) = zipf_mix(&url, l1).await;
        println!(
            "Zipf(1.0) over 10k keys, 200k reads after 100k warm-up, L1 capacity {l1:>6}: hit rate {:.2}% (L1 {:.2}%), loader runs {loads} (target >= 90%)",
            hit * 100.0,
            l1_rate * 100.0
        );
    }
}
