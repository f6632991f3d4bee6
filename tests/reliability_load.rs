//! A bounded mixed load through the gateway against the whole in-process mesh: readers on
//! keep-alive connections (album list, album page, photo page, photo, recent feed) and one
//! uploader, for a warm-up of 10 s and then 20 s measured (60 s with `PHOTOS_LONG_TESTS=1`). It
//! prints requests, errors and latency percentiles per kind, and asserts that nothing failed and
//! that memory is flat: the resident set of the process (the whole mesh), sampled every 250 ms,
//! averaged over the first and the last 10 s of the measured run, may differ by no more than
//! `FLAT_BOUND`. No latency is asserted: the machine is shared.
// The figures (statuses, memory, latency) are the report: printed for `--no-capture` runs.
#![allow(clippy::print_stdout)]

mod common;
mod memory;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::*;
use memory::{MIB, mib, rss};
use photos_gateway::auth::Role;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

/// Allowed growth of the mean resident set from the first measured window to the last.
const FLAT_BOUND: u64 = FLAT_BOUND_MIB * MIB;
const FLAT_BOUND_MIB: u64 = 8;
/// Load before measuring: connections, pools, caches of fixed size and the allocator's arenas
/// reach their working size.
const WARM_UP: Duration = Duration::from_secs(10);
/// The windows compared, at the start and at the end of the measured run.
const WINDOW: Duration = Duration::from_secs(10);
/// Reader tasks, each on its own keep-alive connection.
const READERS: usize = 6;
/// A ceiling on requests per task, so the loop is bounded in count as well as in time.
const MAX_REQUESTS_PER_TASK: usize = 200_000;

/// One HTTP/1.1 keep-alive connection: GETs in sequence, answers read by Content-Length or
/// chunked framing.
struct KeepAlive {
    reader: BufReader<tokio::net::tcp::OwnedReadHalf>,
    writer: tokio::net::tcp::OwnedWriteHalf,
}

impl KeepAlive {
    async fn connect(addr: SocketAddr) -> Self {
        let (r, w) = tokio::net::TcpStream::connect(addr)
            .await
            .unwrap()
            .into_split();
        Self {
            reader: BufReader::new(r),
            writer: w,
        }
    }

    async fn get(&mut self, path: &str, token: &str) -> std::io::Result<(u16, Vec<u8>)> {
        let request =
            format!("GET {path} HTTP/1.1\r\nHost: test\r\nAuthorization: {token}\r\n\r\n");
        self.writer.write_all(request.as_bytes()).await?;
        let mut status_line = String::new();
        self.reader.read_line(&mut status_line).await?;
        let status: u16 = status_line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| std::io::Error::other(format!("bad status line {status_line:?}")))?;
        let (mut length, mut chunked) = (None, false);
        loop {
            let mut line = String::new();
            self.reader.read_line(&mut line).await?;
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            let (k, v) = line.split_once(':').unwrap_or((line, ""));
            if k.eq_ignore_ascii_case("content-length") {
                length = v.trim().parse::<usize>().ok();
            } else if k.eq_ignore_ascii_case("transfer-encoding") {
                chunked = v.to_ascii_lowercase().contains("chunked");
            }
        }
        let mut body = Vec::new();
        if chunked {
            loop {
                let mut size = String::new();
                self.reader.read_line(&mut size).await?;
                let n = usize::from_str_radix(size.trim(), 16).map_err(std::io::Error::other)?;
                let mut chunk = vec![0; n + 2];
                self.reader.read_exact(&mut chunk).await?;
                if n == 0 {
                    break;
                }
                body.extend_from_slice(&chunk[..n]);
            }
        } else if let Some(n) = length {
            body.resize(n, 0);
            self.reader.read_exact(&mut body).await?;
        }
        Ok((status, body))
    }
}

#[derive(Default)]
struct Tally {
    latencies_us: BTreeMap<&'static str, Vec<u64>>,
    errors: BTreeMap<&'static str, Vec<String>>,
}

impl Tally {
    fn record(&mut self, kind: &'static str, started: Instant, ok: Result<(), String>) {
        self.latencies_us
            .entry(kind)
            .or_default()
            .push(started.elapsed().as_micros() as u64);
        if let Err(e) = ok {
            self.errors.entry(kind).or_default().push(e);
        }
    }

    fn merge(&mut self, other: Tally) {
        for (k, v) in other.latencies_us {
            self.latencies_us.entry(k).or_default().extend(v);
        }
        for (k, v) in other.errors {
            self.errors.entry(k).or_default().extend(v);
        }
    }
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i] as f64 / 1000.0
}

/// A small JPEG that differs for every `n` (size and pattern), so each upload is a new photo.
fn distinct_jpeg(n: usize) -> Vec<u8> {
    jpeg(320 + (n % 97) as u32, 240 + (n / 97 % 89) as u32, n as u8)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mixed_read_and_upload_load_has_no_errors_and_flat_memory() {
    let long = std::env::var("PHOTOS_LONG_TESTS").is_ok_and(|v| v == "1");
    let measured = if long {
        Duration::from_secs(60)
    } else {
        Duration::from_secs(20)
    };
    // Caches and aggregates that are bounded by configuration fill as the data set grows (each
    // upload orphans the catalog's cached album pages under the old generation, until their TTL
    // or the size bound; every signed URL is cached; the metrics service adds a histogram per
    // RPC each minute, for `retention_minutes`). At their defaults (256 MiB, 100 000 URLs, an
    // hour) they would still be filling at the end of any bounded run, so they are set small
    // here, to fill during the warm-up: what grows after that is growth past a bound.
    let env = Arc::new(
        Env::start_with(|c| {
            c.catalog.cache.l1_max_bytes = MIB;
            c.gateway.sources.signed_url_cache_entries = 2_000;
            c.metrics.report.retention_minutes = 1;
        })
        .await,
    );
    let alice = env.token("alice", Role::Owner);
    let public = env.create_album(&alice, true).await;
    let private = env.create_album(&alice, false).await;
    let mut photo_ids = Vec::new();
    for (i, album) in [&public, &public, &public, &private]
        .into_iter()
        .enumerate()
    {
        let (status, _, photo) = env
            .upload(
                album,
                Some(&alice),
                &[],
                &form(&[], Some(&distinct_jpeg(100_000 + i))),
            )
            .await;
        assert_eq!(status, 201, "{photo}");
        photo_ids.push(photo["id"].as_str().unwrap().to_owned());
    }
    let reads: Arc<Vec<(&'static str, String)>> = Arc::new(vec![
        ("list albums", "/api/v1/albums".to_owned()),
        ("album page", format!("/api/v1/albums/{public}")),
        ("album photos", format!("/api/v1/albums/{public}/photos")),
        (
            "private album photos",
            format!("/api/v1/albums/{private}/photos"),
        ),
        ("photo", format!("/api/v1/photos/{}", photo_ids[0])),
        ("private photo", format!("/api/v1/photos/{}", photo_ids[3])),
        ("recent", "/api/v1/photos/recent".to_owned()),
    ]);

    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    // Memory: one sample every 250 ms for the whole run.
    let sampler = {
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut samples = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                samples.push((started.elapsed(), rss()));
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            samples
        })
    };
    let mut tasks = Vec::new();
    for r in 0..READERS {
        let (env, stop, reads, token) = (env.clone(), stop.clone(), reads.clone(), alice.clone());
        tasks.push(tokio::spawn(async move {
            let mut tally = Tally::default();
            let mut conn = KeepAlive::connect(env.mesh.addresses.gateway).await;
            for n in 0..MAX_REQUESTS_PER_TASK {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let (kind, path) = &reads[(n + r) % reads.len()];
                let t = Instant::now();
                let result = match conn.get(path, &token).await {
                    Ok((200, _)) => Ok(()),
                    Ok((status, body)) => {
                        Err(format!("{status} {}", String::from_utf8_lossy(&body)))
                    }
                    Err(e) => {
                        // Count it and carry on with a new connection.
                        conn = KeepAlive::connect(env.mesh.addresses.gateway).await;
                        Err(e.to_string())
                    }
                };
                tally.record(kind, t, result);
            }
            tally
        }));
    }
    {
        let (env, stop, album, token) = (env.clone(), stop.clone(), public.clone(), alice.clone());
        tasks.push(tokio::spawn(async move {
            let mut tally = Tally::default();
            for n in 0..MAX_REQUESTS_PER_TASK {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let body = form(&[], Some(&distinct_jpeg(n)));
                let t = Instant::now();
                let (status, _, photo) = env.upload(&album, Some(&token), &[], &body).await;
                let result = if status == 201 {
                    Ok(())
                } else {
                    Err(format!("{status} {photo}"))
                };
                tally.record("upload", t, result);
            }
            tally
        }));
    }
    tokio::time::sleep(WARM_UP + measured).await;
    stop.store(true, Ordering::Relaxed);
    let mut tally = Tally::default();
    for t in tasks {
        tally.merge(t.await.unwrap());
    }
    let elapsed = started.elapsed();
    let samples = sampler.await.unwrap();

    let mut total = 0;
    println!(
        "load: {:.1} s, {READERS} keep-alive readers + 1 uploader",
        elapsed.as_secs_f64()
    );
    println!(
        "{:<22} {:>8} {:>7} {:>9} {:>9} {:>9}",
        "kind", "requests", "errors", "p50 ms", "p99 ms", "max ms"
    );
    for (kind, lat) in &mut tally.latencies_us {
        lat.sort_unstable();
        let errors = tally.errors.get(kind).map_or(0, Vec::len);
        total += lat.len();
        println!(
            "{kind:<22} {:>8} {errors:>7} {:>9.2} {:>9.2} {:>9.2}",
            lat.len(),
            percentile(lat, 0.50),
            percentile(lat, 0.99),
            percentile(lat, 1.0),
        );
    }
    println!(
        "total {total} requests, {:.0}/s",
        total as f64 / elapsed.as_secs_f64()
    );
    // (mean, max) of the samples in [from, to).
    let window_stats = |from: Duration, to: Duration| {
        let in_window: Vec<u64> = samples
            .iter()
            .filter(|(t, _)| *t >= from && *t < to)
            .map(|(_, rss)| *rss)
            .collect();
        assert!(!in_window.is_empty(), "samples in the window");
        let mean = in_window.iter().sum::<u64>() / in_window.len() as u64;
        (mean, *in_window.iter().max().unwrap())
    };
    let end = WARM_UP + measured;
    let (first, first_max) = window_stats(WARM_UP, WARM_UP + WINDOW);
    let (last, last_max) = window_stats(end - WINDOW, end);
    let growth = last as f64 / MIB as f64 - first as f64 / MIB as f64;
    println!(
        "resident set after {} s of warm-up: first {} s window mean {:.1} MiB (max {:.1}), last {} s window mean {:.1} MiB (max {:.1}); growth {growth:+.1} MiB over {} s; {} samples",
        WARM_UP.as_secs(),
        WINDOW.as_secs(),
        mib(first),
        mib(first_max),
        WINDOW.as_secs(),
        mib(last),
        mib(last_max),
        (measured - WINDOW).as_secs(),
        samples.len()
    );
    let per_second: Vec<String> = samples
        .iter()
        .filter(|(t, _)| t.subsec_millis() < 250)
        .map(|(t, rss)| format!("{}s {:.1}", t.as_secs(), mib(*rss)))
        .collect();
    println!("resident set by second (MiB): {}", per_second.join(", "));

    let uploads = tally.latencies_us.get("upload").map_or(0, Vec::len);
    assert!(uploads > 0, "the uploader made progress");
    assert!(total > uploads, "the readers made progress");
    let errors: Vec<_> = tally.errors.iter().filter(|(_, e)| !e.is_empty()).collect();
    assert!(errors.is_empty(), "failed requests: {errors:?}");
    assert!(
        last.saturating_sub(first) <= FLAT_BOUND,
        "the mean resident set grew {growth:.1} MiB from the first {} s window to the last, above {FLAT_BOUND_MIB} MiB",
        WINDOW.as_secs()
    );
    let (status, _, detail) = env
        .call(
            "GET",
            &format!("/api/v1/albums/{public}"),
            Some(&alice),
            None,
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        detail["album"]["photo_count"].as_i64(),
        Some(3 + uploads as i64),
        "every acknowledged upload is in the album"
    );
    match Arc::try_unwrap(env) {
        Ok(env) => env.mesh.shutdown().await.unwrap(),
        Err(_) => panic!("a task still holds the mesh"),
    }
}
