//! List-albums benchmark: seeds 1,000 albums × 50 photos (each with a thumbnail) in a fresh
//! Postgres database, then at a fixed concurrency measures, side by side in one run:
//!
//! - `grpc empty`: grpc.health.v1.Health/Check on the same tonic server (the gRPC floor),
//! - `sql direct`: the exact list-albums statement (20 per page) run through sqlx (the
//!   database floor),
//! - `grpc list miss`: CatalogService/ListAlbums, 20 per page, with `x-cache-refresh: 1`: the
//!   page is recomputed (one statement) and the cache refilled, what a miss costs,
//! - `grpc list hit`: the same RPC answered from the cache, cycling over all 50 pages,
//! - `grpc list hit, bytes`: the same, with a client that keeps the response bytes instead of
//!   decoding them. Client and server share the machine's cores, and decoding a 20-album page
//!   costs the client several times what the server spends answering it from the cache; this
//!   line shows what the server can serve when its clients run elsewhere (as the gateway does).
//!
//! The machine is usually shared (builds, other benches) and its load moves within seconds: run
//! one after the other, two scenarios see different machines and their ratio is mostly noise
//! (run so, the same binary gave hit / empty anywhere from 0.34 to 0.68 on 2026-12-01). So the
//! scenarios compared with each other run interleaved, in 1 s rounds taken in turn, after a 1 s
//! warm-up each, and their figures add up over the rounds: direct SQL and miss first (the
//! misses fill every page the hits read), then empty, hit and hit bytes. Each line also gives
//! this process's CPU time per call (client and server both run here, Postgres does not),
//! which the neighbours' load moves much less than throughput.
//!
//! Run: `cargo run --release -p photos-catalog --bin photos-catalog-bench` (env: BENCH_SECONDS,
//! the 1 s rounds per scenario, default 10; BENCH_CONCURRENCY, default 16;
//! PHOTOS_TEST_POSTGRES_URL, the admin database URL, default
//! postgres://postgres@127.0.0.1:5432/postgres; BENCH_CACHE=memory (the default) or redis, with
//! BENCH_REDIS_URL, default redis://127.0.0.1:6379, so hits come from the in-process L1 in front
//! of Redis). It creates and drops its own database.
#![allow(clippy::print_stdout)] // a bench binary's output is its report

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use photos_catalog::CatalogConfig;
use photos_catalog::catalog::Catalog;
use photos_catalog::config::CacheBackend;
use photos_catalog::model::AlbumQuery;
use photos_catalog::store::{Arg, Store};
use photos_catalog::token::{Position, TokenKey};
use photos_proto::catalog::v1::catalog_service_client::CatalogServiceClient;
use photos_proto::catalog::v1::{ListAlbumsRequest, ListAlbumsResponse};
use photos_runtime::Secret;
use prost::Message;
use sqlx::{AssertSqlSafe, Connection};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

// The allocator the catalog binary runs (src/main.rs says why).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const ALBUMS: i64 = 1_000;
const PHOTOS_PER_ALBUM: i64 = 50;
const PAGE: i32 = 20;

struct Figures {
    name: &'static str,
    calls: usize,
    elapsed: Duration,
    /// This process's CPU time (user + system) while the calls ran.
    cpu: Duration,
    latencies: Vec<Duration>,
}

impl Figures {
    fn throughput(&self) -> f64 {
        self.calls as f64 / self.elapsed.as_secs_f64()
    }

    fn cpu_per_call(&self) -> Duration {
        self.cpu / u32::try_from(self.calls.max(1)).unwrap_or(u32::MAX)
    }

    fn quantile(&self, q: f64) -> Duration {
        let mut all = self.latencies.clone();
        all.sort();
        all[((all.len() as f64 * q) as usize).min(all.len() - 1)]
    }
}

/// A client codec that encodes the request with prost and keeps the response's bytes.
struct KeepBytes;

struct RawDecoder;

impl tonic::codec::Decoder for RawDecoder {
    type Item = bytes::Bytes;
    type Error = tonic::Status;

    fn decode(
        &mut self,
        buf: &mut tonic::codec::DecodeBuf<'_>,
    ) -> Result<Option<bytes::Bytes>, tonic::Status> {
        use bytes::Buf;
        Ok(Some(buf.copy_to_bytes(buf.remaining())))
    }
}

impl tonic::codec::Codec for KeepBytes {
    type Encode = ListAlbumsRequest;
    type Decode = bytes::Bytes;
    type Encoder = tonic_prost::ProstEncoder<ListAlbumsRequest>;
    type Decoder = RawDecoder;

    fn encoder(&mut self) -> Self::Encoder {
        tonic_prost::ProstEncoder::default()
    }

    fn decoder(&mut self) -> RawDecoder {
        RawDecoder
    }
}

fn statements_run<T>(response: &tonic::Response<T>) -> u32 {
    response
        .metadata()
        .get("x-db-query-count")
        .and_then(|v| v.to_str().ok()?.parse().ok())
        .unwrap_or(u32::MAX)
}

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// One call of a scenario, made by worker `w`.
type Op = Arc<dyn Fn(usize) -> BoxFuture<'static, anyhow::Result<()>> + Send + Sync>;

fn op<F, Fut>(f: F) -> Op
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
{
    Arc::new(move |w| Box::pin(f(w)))
}

/// CPU time this process has used so far (all threads, user + system), from /proc/self/stat
/// in clock ticks (USER_HZ, 100 on Linux).
fn process_cpu() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which ends at the last ')'): utime and stime are the
    // 12th and 13th.
    let ticks: u64 = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .unwrap_or("")
        .split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|v| v.parse::<u64>().ok())
        .sum();
    Duration::from_millis(ticks * 10)
}

/// Runs `op` from `concurrency` tasks for `warmup + length`; returns the latencies of the
/// calls started after the warm-up and the process's CPU time over that window.
async fn round(
    op: &Op,
    concurrency: usize,
    warmup: Duration,
    length: Duration,
) -> anyhow::Result<(Vec<Duration>, Duration)> {
    let started = Instant::now();
    let measure_from = started + warmup;
    let until = measure_from + length;
    let mut tasks = Vec::new();
    for worker in 0..concurrency {
        let op = op.clone();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            loop {
                let t = Instant::now();
                if t >= until {
                    return anyhow::Ok(latencies);
                }
                op(worker).await?;
                if t >= measure_from {
                    latencies.push(t.elapsed());
                }
            }
        }));
    }
    tokio::time::sleep_until(measure_from.into()).await;
    let cpu_from = process_cpu();
    tokio::time::sleep_until(until.into()).await;
    let cpu = process_cpu().saturating_sub(cpu_from);
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await??);
    }
    Ok((all, cpu))
}

/// Runs the scenarios interleaved: a 1 s warm-up each, then `seconds` rounds of 1 s each in
/// turn (the first scenario of a pass rotating), so that they share the machine's load.
async fn interleaved(
    scenarios: Vec<(&'static str, Op)>,
    concurrency: usize,
    seconds: u64,
) -> anyhow::Result<Vec<Figures>> {
    let mut figures: Vec<Figures> = scenarios
        .iter()
        .map(|(name, _)| Figures {
            name,
            calls: 0,
            elapsed: Duration::ZERO,
            cpu: Duration::ZERO,
            latencies: Vec::new(),
        })
        .collect();
    for (_, op) in &scenarios {
        round(op, concurrency, Duration::ZERO, Duration::from_secs(1)).await?;
    }
    let settle = Duration::from_millis(100);
    for pass in 0..seconds as usize {
        for i in 0..scenarios.len() {
            let at = (pass + i) % scenarios.len();
            let (latencies, cpu) = round(
                &scenarios[at].1,
                concurrency,
                settle,
                Duration::from_secs(1),
            )
            .await?;
            let f = &mut figures[at];
            f.calls += latencies.len();
            f.elapsed += Duration::from_secs(1);
            f.cpu += cpu;
            f.latencies.extend(latencies);
        }
    }
    Ok(figures)
}

/// A throwaway database, dropped at the end of the run.
struct BenchDatabase {
    admin_url: String,
    name: String,
    url: String,
}

impl BenchDatabase {
    async fn create() -> anyhow::Result<Self> {
        let admin_url = std::env::var("PHOTOS_TEST_POSTGRES_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
        let name = format!("photos_bench_{}", uuid::Uuid::new_v4().simple());
        let mut admin = sqlx::PgConnection::connect(&admin_url).await?;
        sqlx::raw_sql(AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
            .execute(&mut admin)
            .await?;
        let (base, _) = admin_url
            .rsplit_once('/')
            .ok_or_else(|| anyhow::anyhow!("the admin URL must end with /<database>"))?;
        let url = format!("{base}/{name}");
        Ok(Self {
            admin_url,
            name,
            url,
        })
    }

    async fn drop_database(self) -> anyhow::Result<()> {
        let mut admin = sqlx::PgConnection::connect(&self.admin_url).await?;
        sqlx::raw_sql(AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)",
            self.name
        )))
        .execute(&mut admin)
        .await?;
        Ok(())
    }
}

async fn seed(url: &str) -> anyhow::Result<()> {
    let mut c = sqlx::PgConnection::connect(url).await?;
    let sql = format!(
        "INSERT INTO albums (title, description, owner_id, is_published, \"order\", created_at, updated_at) \
         SELECT 'album ' || i, '', 'owner', i % 2 = 0, i % 10, 1000000000000 + i, 1000000000000 + i \
         FROM generate_series(1, {ALBUMS}) i;
         INSERT INTO photos (album_id, title, \"order\", original_key, content_sha256, bytes, format, \
         status, dominant_color, created_at, updated_at) \
         SELECT a.id, 'p' || j, j, 'originals/' || a.id || '/' || j, lpad(to_hex(a.id * 1000 + j), 64, '0'), \
         100000, 1, 2, '#336699', a.created_at + j, a.created_at + j \
         FROM albums a CROSS JOIN generate_series(0, {last}) j;
         INSERT INTO photo_variants (photo_id, preset, format, object_key, width, height, bytes) \
         SELECT id, 'thumbnail', 3, 'variants/' || id || '/thumbnail.webp', 400, 300, 5000 FROM photos;
         ANALYZE;",
        last = PHOTOS_PER_ALBUM - 1
    );
    sqlx::raw_sql(AssertSqlSafe(sql)).execute(&mut c).await?;
    Ok(())
}

fn bind<'q>(
    mut q: sqlx::query::QueryScalar<'q, sqlx::Postgres, String, sqlx::postgres::PgArguments>,
    args: &[Arg],
) -> sqlx::query::QueryScalar<'q, sqlx::Postgres, String, sqlx::postgres::PgArguments> {
    for a in args {
        q = match a {
            Arg::I64(v) => q.bind(*v),
            Arg::Text(v) => q.bind(v.clone()),
            Arg::Bool(v) => q.bind(*v),
            Arg::NullI64 => q.bind(None::<i64>),
        };
    }
    q
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let seconds = env("BENCH_SECONDS", 10);
    let concurrency = env("BENCH_CONCURRENCY", 16) as usize;
    let cache = std::env::var("BENCH_CACHE").unwrap_or_else(|_| "memory".into());
    let db = BenchDatabase::create().await?;

    let mut config = CatalogConfig::default();
    config.server.grpc_port = 0;
    config.server.admin_port = 0;
    config.server.drain_delay_ms = 0;
    config.server.concurrency_limit = concurrency * 4;
    config.database.url = Secret::new(db.url.clone());
    config.database.max_connections = concurrency as u32;
    match cache.as_str() {
        "memory" => config.cache.backend = CacheBackend::Memory,
        "redis" => {
            config.cache.backend = CacheBackend::Redis;
            config.cache.url = Secret::new(
                std::env::var("BENCH_REDIS_URL")
                    .unwrap_or_else(|_| "redis://127.0.0.1:6379".into()),
            );
            // Its own key space on a shared server.
            config.cache.prefix = format!("bench{}", uuid::Uuid::new_v4().simple());
        }
        other => anyhow::bail!("BENCH_CACHE must be memory or redis, not {other:?}"),
    }
    let pool_config = config.database.clone();
    let app = photos_catalog::build(config).await?;
    let grpc = app.grpc_addr();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until_stopped(async {
        let _ = stopped.await;
    }));
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{grpc}"))?
        .connect()
        .await?;
    // SERVING = migrations applied; then seed.
    let mut health = HealthClient::new(channel.clone());
    loop {
        let status = health
            .check(HealthCheckRequest {
                service: String::new(),
            })
            .await
            .map(|r| r.into_inner().status);
        if status.ok() == Some(1) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let seeding = Instant::now();
    seed(&db.url).await?;
    println!(
        "seeded {ALBUMS} albums x {PHOTOS_PER_ALBUM} photos (+ thumbnails) in {:.1} s; \
         concurrency {concurrency}, {seconds} interleaved 1 s rounds per scenario after 1 s warm-up; cache {cache}\n",
        seeding.elapsed().as_secs_f64()
    );

    // One HTTP/2 connection per 4 workers, as a client-side pool would.
    let mut channels = Vec::new();
    for _ in 0..concurrency.div_ceil(4) {
        channels.push(
            tonic::transport::Endpoint::from_shared(format!("http://{grpc}"))?
                .connect()
                .await?,
        );
    }

    // Every page of the listing: its token for the RPC scenarios and, for the direct-SQL
    // one, the statement the RPC runs for it (taken from the catalog itself). Every scenario
    // cycles over the same 50 pages, so concurrent calls rarely share a key.
    let store = Store::connect_lazy(&pool_config)?;
    let catalog = Catalog::new(store, TokenKey::new(b"bench"));
    let query = AlbumQuery {
        preview_count: 4,
        ..Default::default()
    };
    let mut tokens = vec![String::new()];
    let mut statements = vec![catalog.list_albums_statement(&query, None, i64::from(PAGE) + 1)];
    let mut client = CatalogServiceClient::new(channels[0].clone());
    let mut first_page = None;
    loop {
        let page = client
            .list_albums(ListAlbumsRequest {
                page_size: PAGE,
                page_token: tokens.last().cloned().unwrap_or_default(),
                ..Default::default()
            })
            .await?
            .into_inner();
        first_page.get_or_insert_with(|| page.encode_to_vec());
        if page.next_page_token.is_empty() {
            break;
        }
        let last = page.albums.last().expect("a full page");
        let created = last.create_time.expect("create_time");
        let after = Position {
            order: i64::from(last.order),
            created_at: created.seconds * 1_000_000 + i64::from(created.nanos / 1_000),
            id: last.id.parse()?,
        };
        statements.push(catalog.list_albums_statement(&query, Some(after), i64::from(PAGE) + 1));
        tokens.push(page.next_page_token);
    }
    // What a hit costs the client alone: decoding the page (prost, one thread). It explains
    // the gap between the decoding and the bytes-keeping hit scenarios.
    let first_page = first_page.expect("at least one page");
    let decodes = 2_000u32;
    let decoding = Instant::now();
    for _ in 0..decodes {
        std::hint::black_box(ListAlbumsResponse::decode(first_page.as_slice())?);
    }
    println!(
        "{} pages of {PAGE}; a page is {} bytes; decoding one costs the client {:.1} us\n",
        tokens.len(),
        first_page.len(),
        decoding.elapsed().as_secs_f64() * 1e6 / f64::from(decodes)
    );
    let tokens = Arc::new(tokens);
    let statements = Arc::new(statements);
    // Round-robin over the pages across all workers.
    let next_page = {
        let counter = Arc::new(AtomicUsize::new(0));
        let pages = tokens.len();
        move || counter.fetch_add(1, Ordering::Relaxed) % pages
    };

    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(concurrency as u32)
        .connect(&db.url)
        .await?;

    let empty = {
        let channels = channels.clone();
        op(move |w| {
            let mut client = HealthClient::new(channels[w / 4].clone());
            async move {
                client
                    .check(HealthCheckRequest {
                        service: String::new(),
                    })
                    .await?;
                Ok(())
            }
        })
    };
    let sql = {
        let pool = pool.clone();
        let statements = statements.clone();
        let next_page = next_page.clone();
        op(move |_| {
            let pool = pool.clone();
            let statement = statements[next_page()].clone();
            async move {
                let rows = bind(
                    sqlx::query_scalar::<_, String>(AssertSqlSafe(statement.sql.clone())),
                    &statement.args,
                )
                .fetch_all(&pool)
                .await?;
                // A full page, plus the probe row on every page but the last.
                anyhow::ensure!(rows.len() >= PAGE as usize);
                Ok(())
            }
        })
    };
    let miss = {
        let channels = channels.clone();
        let tokens = tokens.clone();
        let next_page = next_page.clone();
        op(move |w| {
            let mut client = CatalogServiceClient::new(channels[w / 4].clone());
            let page_token = tokens[next_page()].clone();
            async move {
                let mut request = tonic::Request::new(ListAlbumsRequest {
                    page_size: PAGE,
                    page_token,
                    ..Default::default()
                });
                request
                    .metadata_mut()
                    .insert(photos_cache::REFRESH_METADATA, "1".parse()?);
                let page = client.list_albums(request).await?;
                anyhow::ensure!(statements_run(&page) == 1, "a miss runs one statement");
                anyhow::ensure!(page.into_inner().albums.len() == PAGE as usize);
                Ok(())
            }
        })
    };
    let hit = {
        let channels = channels.clone();
        let tokens = tokens.clone();
        let next_page = next_page.clone();
        op(move |w| {
            let mut client = CatalogServiceClient::new(channels[w / 4].clone());
            let page_token = tokens[next_page()].clone();
            async move {
                let page = client
                    .list_albums(ListAlbumsRequest {
                        page_size: PAGE,
                        page_token,
                        ..Default::default()
                    })
                    .await?;
                // The miss scenario filled every page.
                anyhow::ensure!(statements_run(&page) == 0, "a hit runs no statement");
                anyhow::ensure!(page.into_inner().albums.len() == PAGE as usize);
                Ok(())
            }
        })
    };
    let hit_bytes = {
        let channels = channels.clone();
        let path = tonic::codegen::http::uri::PathAndQuery::from_static(
            "/photos.catalog.v1.CatalogService/ListAlbums",
        );
        op(move |w| {
            let mut grpc = tonic::client::Grpc::new(channels[w / 4].clone());
            let page_token = tokens[next_page()].clone();
            let path = path.clone();
            async move {
                grpc.ready().await?;
                let request = tonic::Request::new(ListAlbumsRequest {
                    page_size: PAGE,
                    page_token,
                    ..Default::default()
                });
                let page = grpc.unary(request, path, KeepBytes).await?;
                anyhow::ensure!(statements_run(&page) == 0, "a hit runs no statement");
                anyhow::ensure!(page.into_inner().len() > 1_000, "a full page");
                Ok(())
            }
        })
    };

    // The misses first: they fill every page the hits then read.
    let mut results = interleaved(
        vec![("sql direct (sqlx)", sql), ("grpc list miss", miss)],
        concurrency,
        seconds,
    )
    .await?;
    results.extend(
        interleaved(
            vec![
                ("grpc empty (health)", empty),
                ("grpc list hit", hit),
                ("grpc list hit, bytes", hit_bytes),
            ],
            concurrency,
            seconds,
        )
        .await?,
    );

    println!(
        "{:<22} {:>10} {:>12} {:>10} {:>10} {:>14}",
        "scenario", "calls", "calls/s", "p50 ms", "p99 ms", "cpu us/call"
    );
    for r in &results {
        println!(
            "{:<22} {:>10} {:>12.0} {:>10.3} {:>10.3} {:>14.1}",
            r.name,
            r.calls,
            r.throughput(),
            r.quantile(0.50).as_secs_f64() * 1e3,
            r.quantile(0.99).as_secs_f64() * 1e3,
            r.cpu_per_call().as_secs_f64() * 1e6,
        );
    }
    let (sql, miss, empty, hit, bytes) = (
        &results[0],
        &results[1],
        &results[2],
        &results[3],
        &results[4],
    );
    let cpu_ratio =
        |a: &Figures, b: &Figures| a.cpu_per_call().as_secs_f64() / b.cpu_per_call().as_secs_f64();
    println!(
        "\nratio grpc list miss / sql direct (throughput): {:.2}  (target >= 0.70)",
        miss.throughput() / sql.throughput()
    );
    println!(
        "ratio grpc list hit / grpc empty  (throughput): {:.2}  (target >= 0.60); \
         cpu per call: {:.2}",
        hit.throughput() / empty.throughput(),
        cpu_ratio(empty, hit)
    );
    println!(
        "ratio grpc list hit, bytes / grpc empty (throughput): {:.2}  (client not decoding); \
         cpu per call: {:.2}",
        bytes.throughput() / empty.throughput(),
        cpu_ratio(empty, bytes)
    );

    let _ = stop.send(());
    let _ = server.await;
    pool.close().await;
    db.drop_database().await
}
