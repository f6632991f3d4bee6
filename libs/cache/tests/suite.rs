//! One shared suite, instantiated per backend: in-process memory, Redis standalone, Redis
//! Cluster (3 masters + 3 replicas). Each test starts its own server.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use photos_cache::policy::{self, Policy};
use photos_cache::{BackendKind, Cache, CacheConfig, CacheName};
use photos_testkit::redis::{RedisCluster, RedisServer};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Album {
    id: String,
    title: String,
    photo_ids: Vec<u64>,
}

fn album(id: &str, photos: usize) -> Album {
    Album {
        id: id.into(),
        title: format!("album {id}"),
        photo_ids: (0..photos as u64).collect(),
    }
}

/// Keeps the server alive as long as the cache.
pub struct Fixture {
    cache: Cache,
    _redis: Option<RedisServer>,
    _cluster: Option<RedisCluster>,
}

/// Until its invalidation subscription is up a process reads every generation from Redis
/// (it may have missed a bump); the suite measures the steady state.
async fn coherent(cache: Cache) -> Cache {
    photos_testkit::wait::until(
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
    cache
}

fn unique_prefix() -> String {
    format!("t{}", uuid::Uuid::new_v4().simple())
}

async fn memory() -> Fixture {
    let cache = Cache::connect(CacheConfig::default().with_prefix(unique_prefix()))
        .await
        .unwrap();
    assert_eq!(cache.backend_kind(), BackendKind::Memory);
    Fixture {
        cache,
        _redis: None,
        _cluster: None,
    }
}

async fn redis() -> Fixture {
    let server = RedisServer::start().await.unwrap();
    let cache = Cache::connect(CacheConfig::redis(server.url()).with_prefix(unique_prefix()))
        .await
        .unwrap();
    let cache = coherent(cache).await;
    assert_eq!(cache.backend_kind(), BackendKind::Redis);
    Fixture {
        cache,
        _redis: Some(server),
        _cluster: None,
    }
}

async fn cluster() -> Fixture {
    let cluster = RedisCluster::start().await.unwrap();
    let cache =
        Cache::connect(CacheConfig::cluster(cluster.node_urls()).with_prefix(unique_prefix()))
            .await
            .unwrap();
    let cache = coherent(cache).await;
    assert_eq!(cache.backend_kind(), BackendKind::RedisCluster);
    Fixture {
        cache,
        _redis: None,
        _cluster: Some(cluster),
    }
}

mod cases {
    use super::*;

    pub async fn typed_round_trip(cache: &Cache) {
        let albums = cache.named(CacheName::Default);
        let key = albums.key("album").part("a1").build();
        assert_eq!(albums.get::<Album>(&key).await, None);
        let small = album("a1", 3);
        albums.set(&key, &small).await.unwrap();
        assert_eq!(albums.get::<Album>(&key).await, Some(small));

        // Large enough to be compressed.
        let big_key = albums.key("album").part("big").build();
        let big = album("big", 5000);
        albums.set(&big_key, &big).await.unwrap();
        assert_eq!(albums.get::<Album>(&big_key).await, Some(big));

        // A value of another shape under the key is a miss, not a panic.
        let other_key = albums.key("album").part("shape").build();
        albums.set(&other_key, &"just a string").await.unwrap();
        assert_eq!(albums.get::<Vec<Album>>(&other_key).await, None);
    }

    pub async fn named_caches_do_not_share_keys(cache: &Cache) {
        let default = cache.named(CacheName::Default);
        let sessions = cache.named(CacheName::Sessions);
        let k1 = default.key("x").part(1).build();
        let k2 = sessions.key("x").part(1).build();
        default.set(&k1, &1u32).await.unwrap();
        sessions.set(&k2, &2u32).await.unwrap();
        assert_eq!(default.get::<u32>(&k1).await, Some(1));
        assert_eq!(sessions.get::<u32>(&k2).await, Some(2));
        // Per-user scoping separates otherwise equal keys.
        let a = sessions.key("me").user("alice").build();
        let b = sessions.key("me").user("bob").build();
        sessions.set(&a, &"alice").await.unwrap();
        assert_eq!(sessions.get::<String>(&b).await, None);
        assert_eq!(sessions.get::<String>(&a).await.as_deref(), Some("alice"));
    }

    pub async fn concurrent_misses_load_once(cache: &Cache) {
        let albums = cache.named(CacheName::Default);
        let key = albums.key("album").part("hot").album("hot").build();
        let loads = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for _ in 0..500 {
            let albums = albums.clone();
            let key = key.clone();
            let loads = loads.clone();
            tasks.push(tokio::spawn(async move {
                albums
                    .get_or_load(&key, policy::ALBUM_DETAIL, || async {
                        loads.fetch_add(1, Ordering::SeqCst);
                        // Hold the flight long enough that every task arrives while it is open.
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        Ok::<_, std::io::Error>(album("hot", 10))
                    })
                    .await
                    .unwrap()
            }));
        }
        for t in tasks {
            assert_eq!(t.await.unwrap(), album("hot", 10));
        }
        assert_eq!(loads.load(Ordering::SeqCst), 1);
        let stats = cache.family_stats();
        let s = stats.iter().find(|s| s.family == "album").unwrap();
        assert_eq!(s.loads, 1);
        // A task scheduled after the flight ended (a loaded machine) finds the value: a hit.
        assert_eq!(s.misses + s.hits, 500, "{s:?}");
        assert!(s.misses >= 1);
    }

    pub async fn loader_errors_are_returned_and_not_cached(cache: &Cache) {
        let albums = cache.named(CacheName::Default);
        let key = albums.key("album").part("broken").build();
        let r: Result<Album, String> = albums
            .get_or_load(&key, policy::ALBUM_DETAIL, || async {
                Err("db down".to_string())
            })
            .await;
        assert_eq!(r.unwrap_err(), "db down");
        let r: Result<Album, String> = albums
            .get_or_load(&key, policy::ALBUM_DETAIL, || async {
                Ok(album("broken", 1))
            })
            .await;
        assert_eq!(r.unwrap(), album("broken", 1));
        assert_eq!(albums.get::<Album>(&key).await, Some(album("broken", 1)));
    }

    pub async fn album_cascade_orphans_dependent_keys(cache: &Cache) {
        let c = cache.named(CacheName::Default);
        let detail = c.key("album").part("a").album("a").build();
        let page = c.key("photo-page").part("a").part(1).album("a").build();
        let list = c.key("album-list").part("page1").album_lists().build();
        let other = c.key("album").part("b").album("b").build();
        let loads = AtomicUsize::new(0);
        let load = |v: u32| {
            loads.fetch_add(1, Ordering::SeqCst);
            async move { Ok::<u32, String>(v) }
        };
        for (k, v) in [(&detail, 1), (&page, 2), (&list, 3), (&other, 4)] {
            assert_eq!(
                c.get_or_load(k, policy::PHOTOS, || load(v)).await.unwrap(),
                v
            );
        }
        assert_eq!(loads.load(Ordering::SeqCst), 4);
        // Hits: no loads.
        for (k, v) in [(&detail, 1), (&page, 2), (&list, 3), (&other, 4)] {
            assert_eq!(
                c.get_or_load(k, policy::PHOTOS, || load(v + 10))
                    .await
                    .unwrap(),
                v
            );
        }
        assert_eq!(loads.load(Ordering::SeqCst), 4);
        let removed = cache.invalidate_album("a").await;
        assert_eq!(removed.scopes, 2);
        // The album's detail, its pages and the list reload; album b does not.
        for (k, v, expect) in [
            (&detail, 11, 11),
            (&page, 12, 12),
            (&list, 13, 13),
            (&other, 14, 4),
        ] {
            assert_eq!(
                c.get_or_load(k, policy::PHOTOS, || load(v)).await.unwrap(),
                expect
            );
        }
        assert_eq!(loads.load(Ordering::SeqCst), 7);
    }

    pub async fn delete_and_pattern_invalidation(cache: &Cache) {
        let c = cache.named(CacheName::Default);
        for i in 0..20 {
            c.set(&c.key("photo").part(i).build(), &i).await.unwrap();
        }
        for i in 0..5 {
            c.set(&c.key("album").part(i).build(), &i).await.unwrap();
        }
        let one = c.key("album").part(0).build();
        assert_eq!(c.delete(&one).await.keys, 1);
        assert_eq!(c.get::<i32>(&one).await, None);

        let space = cache.key_space();
        let pattern = format!("{}:v{}:default:photo:*", space.prefix, space.version);
        let removed = cache.invalidate_pattern(&pattern).await;
        assert_eq!(removed.keys, 20);
        for i in 0..20 {
            assert_eq!(c.get::<i32>(&c.key("photo").part(i).build()).await, None);
        }
        for i in 1..5 {
            assert_eq!(c.get::<i32>(&c.key("album").part(i).build()).await, Some(i));
        }
        let usage = cache.usage(CacheName::Default).await.unwrap();
        assert_eq!(usage.keys, 4);
        // Each entry holds at least its key and its 8-byte expiry; the server (or the
        // in-process tier) reports more, never less.
        assert!(usage.memory_bytes >= 4 * 40, "{usage:?}");
        let sessions = cache.usage(CacheName::Sessions).await.unwrap();
        assert_eq!(sessions, photos_cache::PatternUsage::default());
        // 20 kB that do not compress: the reported memory covers them.
        let thumbs = cache.named(CacheName::Thumbnails);
        let mut x: u32 = 1;
        let noise: Vec<u8> = (0..20_000)
            .map(|_| {
                x = x.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                (x >> 24) as u8
            })
            .collect();
        thumbs
            .set(&thumbs.key("blob").part(1).build(), &noise)
            .await
            .unwrap();
        let usage = cache.usage(CacheName::Thumbnails).await.unwrap();
        assert_eq!(usage.keys, 1);
        assert!(usage.memory_bytes >= 20_000, "{usage:?}");
    }

    pub async fn hot_key_is_refreshed_before_expiry(cache: &Cache) {
        let c = cache.named(CacheName::Default);
        let key = c.key("stats").part("global").build();
        // Stored with 20 s left, read under a policy that refreshes within 60 s of expiry.
        c.set_with(&key, &1u32, Duration::from_secs(20))
            .await
            .unwrap();
        let policy =
            Policy::new(Duration::from_secs(600)).with_refresh_ahead(Duration::from_secs(60));
        let loads = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for _ in 0..50 {
            let c = c.clone();
            let key = key.clone();
            let loads = loads.clone();
            tasks.push(tokio::spawn(async move {
                c.get_or_load(&key, policy, || async {
                    loads.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    Ok::<u32, String>(2)
                })
                .await
                .unwrap()
            }));
        }
        for t in tasks {
            let v = t.await.unwrap();
            assert!(v == 1 || v == 2, "{v}");
        }
        assert_eq!(loads.load(Ordering::SeqCst), 1);
        // The refreshed entry has a full TTL again: no further loads.
        for _ in 0..10 {
            assert_eq!(
                c.get_or_load(&key, policy, || async { Ok::<u32, String>(3) })
                    .await
                    .unwrap(),
                2
            );
        }
        assert_eq!(loads.load(Ordering::SeqCst), 1);
    }

    pub async fn stats_count_hits_and_misses(cache: &Cache) {
        let c = cache.named(CacheName::Thumbnails);
        let key = c.key("thumb").part("p1").build();
        assert_eq!(c.get::<u32>(&key).await, None);
        c.set(&key, &7u32).await.unwrap();
        for _ in 0..3 {
            assert_eq!(c.get::<u32>(&key).await, Some(7));
        }
        let thumbs = cache
            .stats()
            .into_iter()
            .find(|s| s.cache == "thumbnails")
            .unwrap();
        assert_eq!((thumbs.hits, thumbs.misses, thumbs.errors), (3, 1, 0));
        assert!((thumbs.hit_rate() - 0.75).abs() < 1e-9);
        let agg = cache.aggregated_stats().await.unwrap();
        let thumbs = agg.iter().find(|s| s.cache == "thumbnails").unwrap();
        assert_eq!((thumbs.hits, thumbs.misses), (3, 1));
        assert_eq!(cache.stats().len(), 3);
    }

    pub async fn records_are_claimed_once_and_released_only_by_their_holder(cache: &Cache) {
        let c = cache.named(CacheName::Sessions);
        let key = c.key("claim").part("k1").build();
        // 20 contenders at once: exactly one stores its record, the rest see that record.
        let mut tasks = Vec::new();
        for i in 0..20u32 {
            let (c, key) = (c.clone(), key.clone());
            tasks.push(tokio::spawn(async move {
                (
                    i,
                    c.put_record_if_absent(&key, &i, Duration::from_secs(30))
                        .await
                        .unwrap(),
                )
            }));
        }
        let mut winners = Vec::new();
        let mut seen = Vec::new();
        for t in tasks {
            match t.await.unwrap() {
                (i, None) => winners.push(i),
                (_, Some(held)) => seen.push(held),
            }
        }
        assert_eq!(winners.len(), 1, "one claim wins: {winners:?}");
        assert!(
            seen.iter().all(|h| *h == winners[0]),
            "{seen:?} vs {winners:?}"
        );
        // Only the holder's value releases it.
        let other = winners[0] + 100;
        assert!(!c.delete_record_if(&key, &other).await.unwrap());
        assert_eq!(
            c.put_record_if_absent(&key, &other, Duration::from_secs(30))
                .await
                .unwrap(),
            Some(winners[0])
        );
        assert!(c.delete_record_if(&key, &winners[0]).await.unwrap());
        assert!(
            !c.delete_record_if(&key, &winners[0]).await.unwrap(),
            "gone"
        );
        // Replaced records read back; short-lived ones expire.
        assert_eq!(
            c.put_record_if_absent(&key, &7u32, Duration::from_millis(300))
                .await
                .unwrap(),
            None
        );
        c.put_record(&key, &8u32, Duration::from_millis(1500))
            .await
            .unwrap();
        assert_eq!(
            c.put_record_if_absent(&key, &9u32, Duration::from_secs(30))
                .await
                .unwrap(),
            Some(8)
        );
        photos_testkit::wait::until(
            "record expiry",
            Duration::from_secs(10),
            Duration::from_millis(50),
            || {
                let (c, key) = (c.clone(), key.clone());
                async move {
                    match c
                        .put_record_if_absent(&key, &10u32, Duration::from_secs(30))
                        .await
                    {
                        Ok(None) => Ok(()),
                        _ => Err("still held"),
                    }
                }
            },
        )
        .await
        .unwrap();
    }

    pub async fn entries_expire(cache: &Cache) {
        let c = cache.named(CacheName::Sessions);
        let key = c.key("token").part("t").build();
        c.set_with(&key, &"v", Duration::from_millis(300))
            .await
            .unwrap();
        assert_eq!(c.get::<String>(&key).await.as_deref(), Some("v"));
        photos_testkit::wait::until(
            "entry expiry",
            Duration::from_secs(10),
            Duration::from_millis(50),
            || {
                let c = c.clone();
                let key = key.clone();
                async move {
                    match c.get::<String>(&key).await {
                        None => Ok(()),
                        Some(_) => Err("still there"),
                    }
                }
            },
        )
        .await
        .unwrap();
    }
}

macro_rules! backend_suite {
    ($backend:ident) => {
        mod $backend {
            use super::*;

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn typed_round_trip() {
                cases::typed_round_trip(&super::$backend().await.cache).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn named_caches_do_not_share_keys() {
                cases::named_caches_do_not_share_keys(&super::$backend().await.cache).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn concurrent_misses_load_once() {
                cases::concurrent_misses_load_once(&super::$backend().await.cache).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn loader_errors_are_returned_and_not_cached() {
                cases::loader_errors_are_returned_and_not_cached(&super::$backend().await.cache)
                    .await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn album_cascade_orphans_dependent_keys() {
                cases::album_cascade_orphans_dependent_keys(&super::$backend().await.cache).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn delete_and_pattern_invalidation() {
                cases::delete_and_pattern_invalidation(&super::$backend().await.cache).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn hot_key_is_refreshed_before_expiry() {
                cases::hot_key_is_refreshed_before_expiry(&super::$backend().await.cache).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn stats_count_hits_and_misses() {
                cases::stats_count_hits_and_misses(&super::$backend().await.cache).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn records_are_claimed_once_and_released_only_by_their_holder() {
                cases::records_are_claimed_once_and_released_only_by_their_holder(
                    &super::$backend().await.cache,
                )
                .await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn entries_expire() {
                cases::entries_expire(&super::$backend().await.cache).await;
            }
        }
    };
}

backend_suite!(memory);
backend_suite!(redis);
backend_suite!(cluster);
