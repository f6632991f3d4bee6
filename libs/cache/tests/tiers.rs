//! Two tiers across processes, fallback while Redis is down, recovery without stale reads, and
//! cluster failover. "Processes" are separate `Cache` instances with their own connections that
//! only talk through Redis.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use photos_cache::policy;
use photos_cache::{Cache, CacheConfig, CacheName};
use photos_testkit::redis::{RedisCluster, RedisServer};
use photos_testkit::wait;

fn config(url: &str, prefix: &str) -> CacheConfig {
    let mut c = CacheConfig::redis(url).with_prefix(prefix);
    c.op_timeout = Duration::from_millis(200);
    c.breaker_cooldown = Duration::from_millis(100);
    c
}

async fn coherent(cache: &Cache) {
    wait::until(
        "subscribed",
        Duration::from_secs(10),
        Duration::from_millis(10),
        || async {
            if cache.is_coherent() {
                Ok(())
            } else {
                Err("not yet")
            }
        },
    )
    .await
    .unwrap();
}

async fn eventually<F, Fut>(what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    wait::until(
        what,
        Duration::from_secs(20),
        Duration::from_millis(20),
        || {
            let fut = f();
            async move { if fut.await { Ok(()) } else { Err("not yet") } }
        },
    )
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_in_one_process_invalidates_the_l1_of_another() {
    let server = RedisServer::start().await.unwrap();
    let a = Cache::connect(config(&server.url(), "coh")).await.unwrap();
    let b = Cache::connect(config(&server.url(), "coh")).await.unwrap();
    coherent(&a).await;
    coherent(&b).await;
    let (ca, cb) = (a.named(CacheName::Default), b.named(CacheName::Default));
    let key = ca.key("album").part("1").album("1").build();
    ca.set(&key, &"v1").await.unwrap();

    // B reads through Redis once, then from its L1.
    assert_eq!(cb.get::<String>(&key).await.as_deref(), Some("v1"));
    assert_eq!(cb.get::<String>(&key).await.as_deref(), Some("v1"));
    let l1 = b
        .family_stats()
        .iter()
        .find(|s| s.family == "album")
        .unwrap()
        .l1_hits;
    assert_eq!(l1, 1);

    // A write in A reaches B's L1.
    ca.set(&key, &"v2").await.unwrap();
    eventually("B sees v2", || async {
        cb.get::<String>(&key).await.as_deref() == Some("v2")
    })
    .await;

    // A cascade in A reaches B (the generation message), without touching the key itself.
    a.invalidate_album("1").await;
    eventually("B misses after cascade", || async {
        cb.get::<String>(&key).await.is_none()
    })
    .await;

    // A pattern invalidation in A reaches B.
    let other = cb.key("photo").part("x").build();
    cb.set(&other, &5u8).await.unwrap();
    assert_eq!(cb.get::<u8>(&other).await, Some(5));
    let removed = a.invalidate_pattern("coh:v1:default:photo:*").await;
    assert_eq!(removed.keys, 1);
    eventually("B misses after pattern", || async {
        cb.get::<u8>(&other).await.is_none()
    })
    .await;
}

fn l1_hits(cache: &Cache) -> u64 {
    cache.stats().iter().map(|s| s.l1_hits).sum()
}

/// Invalidations are synchronous across processes: when one returns, every other process
/// has already dropped what it invalidated, so a read right after it (no waiting, no retry)
/// is fresh. `b` and `c` hold the value in their L1 each round.
async fn invalidations_reach_every_peer_before_returning(a: Cache, b: Cache, c: Cache) {
    for cache in [&a, &b, &c] {
        coherent(cache).await;
    }
    eventually("three peers", || async {
        a.peers().await.map(|p| p.len()).ok() == Some(3)
    })
    .await;
    let (ca, cb, cc) = (
        a.named(CacheName::Default),
        b.named(CacheName::Default),
        c.named(CacheName::Default),
    );
    let in_album = ca.key("album").part("7").album("7").build();
    let plain = ca.key("photo").part("7").build();
    for round in 0..30u32 {
        ca.set(&in_album, &round).await.unwrap();
        ca.set(&plain, &round).await.unwrap();
        for (cache, reader) in [(&b, &cb), (&c, &cc)] {
            // Until the reader answers this round's values from its L1 (the set's own
            // message may lag: sets are not synchronous, invalidations are).
            eventually("reader serves the round from L1", || async {
                let before = l1_hits(cache);
                reader.get::<u32>(&in_album).await == Some(round)
                    && reader.get::<u32>(&plain).await == Some(round)
                    && l1_hits(cache) == before + 2
            })
            .await;
        }
        match round % 3 {
            0 => {
                a.invalidate_album("7").await;
                for reader in [&cb, &cc] {
                    assert_eq!(reader.get::<u32>(&in_album).await, None, "round {round}");
                }
            }
            1 => {
                ca.delete(&plain).await;
                for reader in [&cb, &cc] {
                    assert_eq!(reader.get::<u32>(&plain).await, None, "round {round}");
                }
            }
            _ => {
                let prefix = &a.key_space().prefix;
                a.invalidate_pattern(&format!("{prefix}:v1:default:photo:*"))
                    .await;
                for reader in [&cb, &cc] {
                    assert_eq!(reader.get::<u32>(&plain).await, None, "round {round}");
                }
            }
        }
    }
    assert_eq!(a.sync_timeouts(), 0, "every peer confirmed in time");

    // A process that goes away leaves the peer set, and is no longer waited for.
    drop((cc, c));
    eventually("c left", || async {
        a.peers().await.map(|p| p.len()).ok() == Some(2)
    })
    .await;
    a.invalidate_album("7").await;
    assert_eq!(a.sync_timeouts(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalidations_are_synchronous_across_processes_on_redis() {
    let server = RedisServer::start().await.unwrap();
    let connect = || Cache::connect(config(&server.url(), "sync"));
    let (a, b, c) = (
        connect().await.unwrap(),
        connect().await.unwrap(),
        connect().await.unwrap(),
    );
    invalidations_reach_every_peer_before_returning(a, b, c).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalidations_are_synchronous_across_processes_on_a_cluster() {
    let cluster = RedisCluster::start().await.unwrap();
    let connect = || {
        let mut cfg = CacheConfig::cluster(cluster.node_urls()).with_prefix("sync");
        cfg.op_timeout = Duration::from_millis(300);
        Cache::connect(cfg)
    };
    let (a, b, c) = (
        connect().await.unwrap(),
        connect().await.unwrap(),
        connect().await.unwrap(),
    );
    invalidations_reach_every_peer_before_returning(a, b, c).await;
}

/// A peer that stops answering (its process hangs, or its link to Redis is cut) delays an
/// invalidation by at most `sync_timeout`, which is counted; it never fails the call.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_peer_is_waited_for_at_most_the_sync_timeout() {
    let server = RedisServer::start().await.unwrap();
    let mut cfg = config(&server.url(), "silent");
    cfg.sync_timeout = Duration::from_millis(50);
    let a = Cache::connect(cfg).await.unwrap();
    coherent(&a).await;
    // A member that registered and then went silent (killed without leaving).
    let raw = redis::Client::open(server.url()).unwrap();
    let mut raw = raw.get_multiplexed_async_connection().await.unwrap();
    let set = a.key_space().peers();
    let _: () = redis::pipe()
        .cmd("SADD")
        .arg(&set)
        .arg("ghost")
        .ignore()
        .cmd("SET")
        .arg(format!("{set}:ghost"))
        .arg(1)
        .arg("PX")
        .arg(60_000)
        .ignore()
        .query_async(&mut raw)
        .await
        .unwrap();
    a.invalidate_album("1").await;
    assert_eq!(a.sync_timeouts(), 1);
    // Once its liveness key expires it is forgotten.
    let _: () = redis::cmd("DEL")
        .arg(format!("{set}:ghost"))
        .query_async(&mut raw)
        .await
        .unwrap();
    a.invalidate_album("1").await;
    assert_eq!(a.sync_timeouts(), 1);
    let peers = a.peers().await.unwrap();
    assert_eq!(peers.len(), 1, "only a itself is left: {peers:?}");
    assert!(!peers.contains(&"ghost".to_string()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_outage_falls_back_and_nothing_stale_is_served_after_recovery() {
    let mut server = RedisServer::start().await.unwrap();
    let a = Cache::connect(config(&server.url(), "out")).await.unwrap();
    let b = Cache::connect(config(&server.url(), "out")).await.unwrap();
    coherent(&a).await;
    coherent(&b).await;
    let (ca, cb) = (a.named(CacheName::Default), b.named(CacheName::Default));
    let detail = ca.key("album").part("7").album("7").build();
    let plain = ca.key("photo").part("p").build();
    ca.set(&detail, &"old").await.unwrap();
    ca.set(&plain, &"old").await.unwrap();
    assert_eq!(cb.get::<String>(&detail).await.as_deref(), Some("old"));

    server.kill();

    // No request fails while Redis is down: reads/writes and loads are served locally.
    let loads = AtomicUsize::new(0);
    for i in 0..50 {
        let k = ca.key("photo").part(format!("down{i}")).build();
        let v: u32 = ca
            .get_or_load(&k, policy::PHOTOS, || async {
                loads.fetch_add(1, Ordering::SeqCst);
                Ok::<u32, String>(i)
            })
            .await
            .unwrap();
        assert_eq!(v, i);
        assert_eq!(ca.get::<u32>(&k).await, Some(i));
    }
    assert_eq!(loads.load(Ordering::SeqCst), 50);
    assert!(!a.is_remote_healthy(), "breaker should be open");
    let fallbacks: u64 = a.stats().iter().map(|s| s.fallbacks).sum();
    assert!(fallbacks > 0);
    // With the breaker open, failures no longer count as errors (no timeout paid per call).
    let errors_before: u64 = a.stats().iter().map(|s| s.errors).sum();
    for _ in 0..20 {
        let _ = ca.get::<u32>(&plain).await;
    }
    let errors_after: u64 = a.stats().iter().map(|s| s.errors).sum();
    assert_eq!(errors_before, errors_after);

    // Invalidations during the outage are queued.
    a.invalidate_album("7").await;
    ca.delete(&plain).await;
    assert!(a.pending_invalidations().await >= 3);

    // Redis comes back empty (a crash); B had "old" in its L1 and missed every message.
    server.restart().await.unwrap();
    eventually("A uses redis again", || async { a.is_remote_healthy() }).await;
    eventually("B uses redis again", || async {
        b.is_remote_healthy() && b.is_coherent()
    })
    .await;
    assert_eq!(a.pending_invalidations().await, 0);

    // Nothing stale, in either process.
    assert_eq!(ca.get::<String>(&detail).await, None);
    assert_eq!(ca.get::<String>(&plain).await, None);
    assert_eq!(cb.get::<String>(&detail).await, None);
    assert_eq!(cb.get::<String>(&plain).await, None);

    // Writes reach Redis again and B sees them.
    ca.set(&plain, &"new").await.unwrap();
    assert_eq!(cb.get::<String>(&plain).await.as_deref(), Some("new"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cache_started_while_redis_is_down_serves_and_then_recovers() {
    let mut server = RedisServer::start().await.unwrap();
    server.kill();
    let a = Cache::connect(config(&server.url(), "late")).await.unwrap();
    let c = a.named(CacheName::Default);
    let key = c.key("album").part(1).build();
    let v: u32 = c
        .get_or_load(&key, policy::ALBUM_DETAIL, || async { Ok::<_, String>(1) })
        .await
        .unwrap();
    assert_eq!(v, 1);
    server.restart().await.unwrap();
    eventually("recovered", || async { a.is_remote_healthy() }).await;
    c.set(&key, &2u32).await.unwrap();
    let raw = redis::Client::open(server.url()).unwrap();
    let mut raw = raw.get_multiplexed_async_connection().await.unwrap();
    let n: u64 = redis::cmd("DBSIZE").query_async(&mut raw).await.unwrap();
    assert!(n >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operations_recover_after_a_cluster_master_fails_over() {
    let mut cluster = RedisCluster::start().await.unwrap();
    let mut cfg = CacheConfig::cluster(cluster.node_urls()).with_prefix("fo");
    cfg.op_timeout = Duration::from_millis(300);
    cfg.breaker_cooldown = Duration::from_millis(100);
    let cache = Cache::connect(cfg).await.unwrap();
    let c = cache.named(CacheName::Default);
    // Enough keys to cover every master's slots.
    let keys: Vec<_> = (0..60).map(|i| c.key("photo").part(i).build()).collect();
    for (i, k) in keys.iter().enumerate() {
        c.set(k, &(i as u32)).await.unwrap();
    }
    let masters = cluster.masters().await.unwrap();
    assert_eq!(masters.len(), 3);
    cluster.replicas_in_sync(&masters).await.unwrap();
    cluster.kill(masters[0]);

    // Every call answers during failover (from L1 if needed) ...
    for (i, k) in keys.iter().enumerate() {
        let v: u32 = c
            .get_or_load(k, policy::PHOTOS, || async { Ok::<_, String>(i as u32) })
            .await
            .unwrap();
        assert_eq!(v, i as u32);
    }
    // ... and once a replica is promoted, writes and reads go through Redis on every slot.
    let check = fresh_reader(&cluster);
    wait::until(
        "failover",
        Duration::from_secs(30),
        Duration::from_millis(100),
        || async {
            if !cache.is_remote_healthy() {
                return Err("breaker open".to_string());
            }
            for (i, k) in keys.iter().enumerate() {
                c.set(k, &(1000 + i as u32))
                    .await
                    .map_err(|e| e.to_string())?;
            }
            if !cache.is_remote_healthy() {
                return Err("write fell back".to_string());
            }
            let reader = Cache::connect(check.clone())
                .await
                .map_err(|e| e.to_string())?;
            let rc = reader.named(CacheName::Default);
            for (i, k) in keys.iter().enumerate() {
                if rc.get::<u32>(k).await != Some(1000 + i as u32) {
                    return Err(format!("key {i} not readable through redis yet"));
                }
            }
            Ok(())
        },
    )
    .await
    .unwrap();
    assert_eq!(
        cluster.masters().await.unwrap().len(),
        3,
        "a replica was promoted"
    );
}

fn fresh_reader(cluster: &RedisCluster) -> CacheConfig {
    let mut cfg = CacheConfig::cluster(cluster.node_urls()).with_prefix("fo");
    cfg.op_timeout = Duration::from_millis(300);
    cfg
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_aggregate_across_processes() {
    let server = RedisServer::start().await.unwrap();
    let a = Cache::connect(config(&server.url(), "agg")).await.unwrap();
    let b = Cache::connect(config(&server.url(), "agg")).await.unwrap();
    for cache in [&a, &b] {
        let c = cache.named(CacheName::Default);
        let k = c.key("album").part("x").build();
        let _ = c.get::<u32>(&k).await;
        c.set(&k, &1u32).await.unwrap();
        let _ = c.get::<u32>(&k).await;
    }
    a.flush_stats().await.unwrap();
    b.flush_stats().await.unwrap();
    let agg = a.aggregated_stats().await.unwrap();
    let d = agg.iter().find(|s| s.cache == "default").unwrap();
    // A: miss, hit. B: hit (A's value), hit.
    assert_eq!((d.hits, d.misses), (3, 1));
    // Flushing again adds nothing twice.
    a.flush_stats().await.unwrap();
    let agg = a.aggregated_stats().await.unwrap();
    assert_eq!(agg.iter().find(|s| s.cache == "default").unwrap().hits, 3);
    let _ = Arc::new(());
}

/// A partition rather than a crash: Redis keeps its data but does not answer for a while
/// (CLIENT PAUSE). Invalidations issued meanwhile must reach Redis and the other process.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalidations_during_a_partition_are_replayed_and_nothing_stale_survives() {
    let server = RedisServer::start().await.unwrap();
    let a = Cache::connect(config(&server.url(), "part")).await.unwrap();
    let b = Cache::connect(config(&server.url(), "part")).await.unwrap();
    coherent(&a).await;
    coherent(&b).await;
    let (ca, cb) = (a.named(CacheName::Default), b.named(CacheName::Default));
    let detail = ca.key("album").part("7").album("7").build();
    let list = ca.key("album-list").part(1).album_lists().build();
    let plain = ca.key("photo").part("p").build();
    for k in [&detail, &list, &plain] {
        ca.set(k, &"old").await.unwrap();
        assert_eq!(cb.get::<String>(k).await.as_deref(), Some("old"));
    }
    let plain_physical = ca.physical_key(&plain).await;

    let raw = redis::Client::open(server.url()).unwrap();
    let mut raw = raw.get_multiplexed_async_connection().await.unwrap();
    let () = redis::cmd("CLIENT")
        .arg("PAUSE")
        .arg(3000)
        .arg("ALL")
        .query_async(&mut raw)
        .await
        .unwrap();

    // Calls keep answering; the breaker opens after a few timeouts.
    let mut i = 0u32;
    while a.is_remote_healthy() {
        let k = ca.key("photo").part(format!("p{i}")).build();
        let v: u32 = ca
            .get_or_load(&k, policy::PHOTOS, || async { Ok::<_, String>(i) })
            .await
            .unwrap();
        assert_eq!(v, i);
        i += 1;
        assert!(i < 100, "breaker never opened");
    }
    a.invalidate_album("7").await;
    ca.delete(&plain).await;
    // Plus any write that failed while the breaker was opening (its remote copy is deleted).
    assert!(a.pending_invalidations().await >= 3);

    eventually("A uses redis again", || async { a.is_remote_healthy() }).await;
    assert_eq!(a.pending_invalidations().await, 0);
    let exists: u64 = redis::cmd("EXISTS")
        .arg(&plain_physical)
        .query_async(&mut raw)
        .await
        .unwrap();
    assert_eq!(exists, 0, "the queued delete reached redis");
    for k in [&detail, &list, &plain] {
        assert_eq!(ca.get::<String>(k).await, None);
        eventually("B drops the stale entry", || async {
            cb.get::<String>(k).await.is_none()
        })
        .await;
    }
}

/// Large values cross the network compressed (zlib above the threshold) but sit uncompressed
/// in L1, so an L1 hit decompresses nothing; a second process decompresses once on its way in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn values_travel_compressed_and_sit_in_l1_uncompressed() {
    let server = RedisServer::start().await.unwrap();
    let a = Cache::connect(config(&server.url(), "zip")).await.unwrap();
    let b = Cache::connect(config(&server.url(), "zip")).await.unwrap();
    coherent(&a).await;
    coherent(&b).await;
    let (ca, cb) = (a.named(CacheName::Default), b.named(CacheName::Default));
    let key = ca.key("album-list").part("big").build();
    let value = vec!["a fairly repetitive album title".to_string(); 500];
    ca.set(&key, &value).await.unwrap();

    let physical = ca.physical_key(&key).await;
    let raw = redis::Client::open(server.url()).unwrap();
    let mut raw = raw.get_multiplexed_async_connection().await.unwrap();
    let stored: Vec<u8> = redis::cmd("GET")
        .arg(&physical)
        .query_async(&mut raw)
        .await
        .unwrap();
    let encoded = photos_cache::Codec::default().encode(&value).unwrap();
    assert!(photos_cache::Codec::is_compressed(&stored[8..]));
    assert_eq!(
        stored.len(),
        8 + encoded.len(),
        "the codec's compressed form"
    );
    assert!(stored.len() < 500 * 31 / 10);

    // B reads it through Redis once, then from its L1, and gets the same value.
    assert_eq!(cb.get::<Vec<String>>(&key).await, Some(value.clone()));
    assert_eq!(cb.get::<Vec<String>>(&key).await, Some(value));
    assert_eq!(l1_hits(&b), 1);
}

/// Commands share a connection until it has a pipeline's worth in flight: one task uses one
/// connection; many concurrent tasks make the pool grow, never past its cap.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pool_pipelines_over_few_connections_and_grows_under_load() {
    use photos_cache::backend::{Backend, StandaloneBackend};
    let server = RedisServer::start().await.unwrap();
    let clients = || async {
        let raw = redis::Client::open(server.url()).unwrap();
        let mut raw = raw.get_multiplexed_async_connection().await.unwrap();
        let list: String = redis::cmd("CLIENT")
            .arg("LIST")
            .query_async(&mut raw)
            .await
            .unwrap();
        // Not counting the connection asking.
        list.lines().count() - 1
    };
    let pool = Arc::new(StandaloneBackend::new(&server.url(), 8, Duration::from_secs(2)).unwrap());
    pool.set(
        "k",
        bytes::Bytes::from_static(b"v"),
        Duration::from_secs(60),
    )
    .await
    .unwrap();
    for _ in 0..200 {
        assert!(pool.get("k").await.unwrap().is_some());
    }
    assert_eq!(pool.connections(), 1);
    assert_eq!(clients().await, 1);

    let tasks: Vec<_> = (0..200)
        .map(|_| {
            let pool = pool.clone();
            tokio::spawn(async move {
                for _ in 0..50 {
                    assert!(pool.get("k").await.unwrap().is_some());
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let open = pool.connections();
    assert!((2..=8).contains(&open), "{open} connections");
    assert_eq!(clients().await, open);
}
