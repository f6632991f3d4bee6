//! The real cache-admin against a real Redis and a real catalog (SQLite file per test).

use std::net::SocketAddr;
use std::time::Duration;

use futures::StreamExt;
use photos_cache::{Cache, CacheConfig, CacheName, policy};
use photos_cache_admin::CacheAdminConfig;
use photos_proto::cache_admin::v1::cache_admin_service_client::CacheAdminServiceClient;
use photos_proto::cache_admin::v1::{
    GetCacheStatsRequest, InvalidateRequest, WarmCacheRequest, WarmCacheResponse,
};
use photos_proto::catalog::v1::catalog_service_client::CatalogServiceClient;
use photos_proto::catalog::v1::{CreateAlbumRequest, GetAlbumRequest, ListAlbumsRequest};
use photos_runtime::{Secret, UpstreamConfig};
use photos_testkit::redis::RedisServer;
use photos_testkit::wait;
use sqlx::Connection;
use tonic::transport::Channel;

struct Catalog {
    addr: SocketAddr,
    client: CatalogServiceClient<Channel>,
    _stop: tokio::sync::oneshot::Sender<()>,
    _dir: tempfile::TempDir,
}

async fn channel(addr: SocketAddr) -> Channel {
    tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap()
}

async fn spawn_catalog() -> Catalog {
    spawn_catalog_with(tempfile::tempdir().unwrap(), |_| {}).await
}

/// A catalog on the SQLite database in `dir` (a second one on the same `dir` is a replica).
async fn spawn_catalog_with(
    dir: tempfile::TempDir,
    configure: impl FnOnce(&mut photos_catalog::CatalogConfig),
) -> Catalog {
    let mut config = photos_catalog::CatalogConfig::default();
    config.server.grpc_port = 0;
    config.server.admin_port = 0;
    config.server.drain_delay_ms = 0;
    config.database.url = Secret::new(format!(
        "sqlite://{}",
        dir.path().join("catalog.db").display()
    ));
    configure(&mut config);
    let app = photos_catalog::build(config).await.unwrap();
    let addr = app.grpc_addr();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        let _ = app
            .run_until_stopped(async {
                let _ = stopped.await;
            })
            .await;
    });
    let client = CatalogServiceClient::new(channel(addr).await);
    // Migrations run before the first answer.
    wait::until(
        "catalog",
        Duration::from_secs(30),
        Duration::from_millis(20),
        || {
            let mut c = client.clone();
            async move { c.list_albums(ListAlbumsRequest::default()).await }
        },
    )
    .await
    .unwrap();
    Catalog {
        addr,
        client,
        _stop: stop,
        _dir: dir,
    }
}

struct Admin {
    client: CacheAdminServiceClient<Channel>,
    _stop: tokio::sync::oneshot::Sender<()>,
}

async fn spawn_admin(redis_url: Option<&str>, catalog: SocketAddr) -> Admin {
    spawn_admin_with(redis_url, catalog, |_| {}).await
}

async fn spawn_admin_with(
    redis_url: Option<&str>,
    catalog: SocketAddr,
    configure: impl FnOnce(&mut CacheAdminConfig),
) -> Admin {
    let mut config = CacheAdminConfig::default();
    config.server.grpc_port = 0;
    config.server.admin_port = 0;
    config.server.drain_delay_ms = 0;
    if let Some(url) = redis_url {
        config.redis.url = Secret::new(url.to_owned());
    }
    config.catalog = UpstreamConfig::new(format!("http://{catalog}"));
    configure(&mut config);
    let app = photos_cache_admin::build(config).await.unwrap();
    let addr = app.grpc_addr();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        let _ = app
            .run_until_stopped(async {
                let _ = stopped.await;
            })
            .await;
    });
    Admin {
        client: CacheAdminServiceClient::new(channel(addr).await),
        _stop: stop,
    }
}

async fn create_albums(catalog: &Catalog, published: usize, drafts: usize) -> Vec<String> {
    let mut ids = Vec::new();
    for i in 0..published + drafts {
        let album = catalog
            .client
            .clone()
            .create_album(CreateAlbumRequest {
                title: format!("album {i}"),
                owner_id: "owner".into(),
                is_published: i < published,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .album
            .unwrap();
        ids.push(album.id);
    }
    ids
}

async fn warm(
    admin: &Admin,
    req: WarmCacheRequest,
) -> Result<Vec<WarmCacheResponse>, tonic::Status> {
    let mut stream = admin.client.clone().warm_cache(req).await?.into_inner();
    let mut out = Vec::new();
    while let Some(msg) = stream.next().await {
        out.push(msg?);
    }
    Ok(out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warm_cache_streams_progress_over_the_catalog_read_rpcs() {
    let catalog = spawn_catalog().await;
    let redis = RedisServer::start().await.unwrap();
    let admin = spawn_admin(Some(&redis.url()), catalog.addr).await;
    let ids = create_albums(&catalog, 3, 2).await;

    let all = warm(
        &admin,
        WarmCacheRequest {
            force: true,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(all.len(), 5);
    let last = all.last().unwrap();
    assert_eq!((last.done, last.total, last.failed), (5, 5, 0));
    let mut seen: Vec<_> = all.iter().map(|m| m.current.clone()).collect();
    seen.sort();
    let mut expected = ids.clone();
    expected.sort();
    assert_eq!(seen, expected);
    assert!(all.windows(2).all(|w| w[0].done < w[1].done));

    let published = warm(
        &admin,
        WarmCacheRequest {
            published_only: true,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let last = published.last().unwrap();
    assert_eq!((last.done, last.total, last.failed), (3, 3, 0));

    let one = warm(
        &admin,
        WarmCacheRequest {
            album_id: ids[4].clone(),
            force: true,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(one.len(), 1);
    assert_eq!(
        (one[0].done, one[0].total, one[0].current.as_str()),
        (1, 1, ids[4].as_str())
    );

    let missing = warm(
        &admin,
        WarmCacheRequest {
            album_id: uuid::Uuid::new_v4().to_string(),
            ..Default::default()
        },
    )
    .await
    .unwrap_err();
    assert_eq!(missing.code(), tonic::Code::NotFound, "{missing:?}");
}

fn statements<T>(response: &tonic::Response<T>) -> u32 {
    response
        .metadata()
        .get("x-db-query-count")
        .and_then(|v| v.to_str().ok()?.parse().ok())
        .expect("x-db-query-count")
}

/// Warming builds the entries normal reads use: after it, the reads it made (the list pages
/// and each album's detail) are hits that run no SQL, on another catalog replica too (the
/// entries are in the shared Redis); `force` recomputes entries already cached.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warming_fills_the_entries_later_reads_hit() {
    let redis = RedisServer::start().await.unwrap();
    let prefix = format!("t{}", uuid::Uuid::new_v4().simple());
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().to_owned();
    let shared = |c: &mut photos_catalog::CatalogConfig| {
        c.cache.backend = photos_catalog::config::CacheBackend::Redis;
        c.cache.url = Secret::new(redis.url());
        c.cache.prefix = prefix.clone();
        c.page_tokens.secret = Secret::new("shared by the replicas");
    };
    let catalog = spawn_catalog_with(dir, shared).await;
    // Its own (unused) directory; the database is the first one's.
    let replica = spawn_catalog_with(tempfile::tempdir().unwrap(), |c| {
        shared(c);
        c.database.url = Secret::new(format!("sqlite://{}", db.join("catalog.db").display()));
    })
    .await;
    let admin = spawn_admin_with(Some(&redis.url()), catalog.addr, |c| {
        c.redis.prefix = prefix.clone();
    })
    .await;
    let ids = create_albums(&catalog, 2, 1).await;

    let reads = |c: &Catalog| {
        let mut client = c.client.clone();
        let ids = ids.clone();
        async move {
            // The very requests warming sends: 100 albums per list page, default detail.
            let list = client
                .list_albums(ListAlbumsRequest {
                    page_size: 100,
                    ..Default::default()
                })
                .await
                .unwrap();
            let mut ran = statements(&list);
            let mut titles = Vec::new();
            for id in &ids {
                let detail = client
                    .get_album(GetAlbumRequest {
                        id: id.clone(),
                        photo_page_size: 0,
                    })
                    .await
                    .unwrap();
                ran += statements(&detail);
                titles.push(detail.into_inner().album.unwrap().title);
            }
            (ran, titles)
        }
    };
    let done = warm(&admin, WarmCacheRequest::default()).await.unwrap();
    assert_eq!(done.last().map(|m| (m.done, m.failed)), Some((3, 0)));
    for (name, c) in [("the warmed catalog", &catalog), ("its replica", &replica)] {
        let (ran, _) = reads(c).await;
        assert_eq!(ran, 0, "{name}: every warmed read is a hit");
    }

    // Changed behind the catalog's back: only a forced warm recomputes it.
    let mut db_conn =
        sqlx::SqliteConnection::connect(&format!("sqlite://{}", db.join("catalog.db").display()))
            .await
            .unwrap();
    sqlx::query("UPDATE albums SET title = 'renamed'")
        .execute(&mut db_conn)
        .await
        .unwrap();
    warm(&admin, WarmCacheRequest::default()).await.unwrap();
    let (_, titles) = reads(&replica).await;
    assert!(titles.iter().all(|t| t != "renamed"), "not forced: kept");
    warm(
        &admin,
        WarmCacheRequest {
            force: true,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let (ran, titles) = reads(&replica).await;
    assert_eq!(ran, 0, "a forced warm refills");
    assert_eq!(titles, vec!["renamed"; 3]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warm_cache_reports_an_unreachable_catalog() {
    let port = photos_testkit::ports::free_port(None);
    let admin = spawn_admin(None, format!("127.0.0.1:{port}").parse().unwrap()).await;
    let err = warm(&admin, WarmCacheRequest::default()).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unavailable, "{err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalidate_removes_keys_patterns_and_cascades_albums_in_other_processes() {
    let catalog = spawn_catalog().await;
    let redis = RedisServer::start().await.unwrap();
    let admin = spawn_admin(Some(&redis.url()), catalog.addr).await;
    // A process filling the cache as the catalog would.
    let filler = Cache::connect(CacheConfig::redis(redis.url()))
        .await
        .unwrap();
    let c = filler.named(CacheName::Default);
    let detail = c.key("album").part("a1").album("a1").build();
    let list = c.key("album-list").part(1).album_lists().build();
    let other = c.key("album").part("a2").album("a2").build();
    for k in [&detail, &list, &other] {
        let _: u32 = c
            .get_or_load(k, policy::ALBUM_DETAIL, || async { Ok::<_, String>(1) })
            .await
            .unwrap();
    }
    for i in 0..7 {
        c.set(&c.key("photo").part(i).build(), &i).await.unwrap();
    }
    let single = c.key("thumb").part("x").build();
    c.set(&single, &1u8).await.unwrap();
    let single_physical = c.physical_key(&single).await;

    let resp = admin
        .client
        .clone()
        .invalidate(InvalidateRequest {
            keys: vec![single_physical, "photos:v1:default:nope:g0:1".into()],
            patterns: vec!["photos:v1:default:photo:*".into()],
            album_ids: vec!["a1".into()],
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(resp.removed, 8);
    assert_eq!(resp.albums_invalidated, 1);

    // The filler process sees the cascade through Redis (its L1 hears the generation bump).
    wait::until(
        "cascade seen",
        Duration::from_secs(10),
        Duration::from_millis(20),
        || async {
            if c.get::<u32>(&detail).await.is_none() && c.get::<u32>(&list).await.is_none() {
                Ok(())
            } else {
                Err("still cached")
            }
        },
    )
    .await
    .unwrap();
    assert_eq!(c.get::<u32>(&other).await, Some(1));
    assert_eq!(c.get::<u8>(&single).await, None);
    assert_eq!(c.get::<i32>(&c.key("photo").part(3).build()).await, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalidate_rejects_bad_input_with_actionable_messages() {
    let port = photos_testkit::ports::free_port(None);
    let admin = spawn_admin(None, format!("127.0.0.1:{port}").parse().unwrap()).await;
    let mut client = admin.client.clone();
    for (req, needle) in [
        (InvalidateRequest::default(), "nothing to invalidate"),
        (
            InvalidateRequest {
                patterns: vec!["*".into()],
                ..Default::default()
            },
            "must start with \"photos:\"",
        ),
        (
            InvalidateRequest {
                keys: vec!["session:1".into()],
                ..Default::default()
            },
            "keys",
        ),
        (
            InvalidateRequest {
                album_ids: vec![String::new()],
                ..Default::default()
            },
            "album_ids",
        ),
        (
            InvalidateRequest {
                keys: vec!["photos:x".into(); 10_001],
                ..Default::default()
            },
            "at most",
        ),
    ] {
        let err = client.invalidate(req).await.unwrap_err();
        assert_eq!(err.code(), tonic::Code::InvalidArgument);
        assert!(err.message().contains(needle), "{}", err.message());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_are_aggregated_across_processes_per_cache_name() {
    let redis = RedisServer::start().await.unwrap();
    let port = photos_testkit::ports::free_port(None);
    let admin = spawn_admin(
        Some(&redis.url()),
        format!("127.0.0.1:{port}").parse().unwrap(),
    )
    .await;
    for _ in 0..2 {
        let process = Cache::connect(CacheConfig::redis(redis.url()))
            .await
            .unwrap();
        let t = process.named(CacheName::Thumbnails);
        let k = t.key("thumb").part(uuid::Uuid::new_v4()).build();
        let _ = t.get::<u8>(&k).await;
        t.set(&k, &1u8).await.unwrap();
        let _ = t.get::<u8>(&k).await;
        let _ = t.get::<u8>(&k).await;
        process.flush_stats().await.unwrap();
    }
    let stats = admin
        .client
        .clone()
        .get_cache_stats(GetCacheStatsRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(stats.backend, "redis");
    assert!(stats.aggregated);
    let names: Vec<_> = stats.caches.iter().map(|c| c.cache_name.as_str()).collect();
    assert_eq!(names, ["default", "thumbnails", "sessions"]);
    let thumbs = &stats.caches[1];
    assert_eq!((thumbs.hits, thumbs.misses, thumbs.keys), (4, 2, 2));
    assert!((thumbs.hit_rate - 4.0 / 6.0).abs() < 1e-9);
    // Redis's MEMORY USAGE of those two keys: each at least its key name and value.
    assert!(thumbs.memory_bytes >= 2 * 50, "{thumbs:?}");
    assert!(thumbs.memory_bytes <= stats.total_memory_bytes);
    assert_eq!((stats.caches[2].keys, stats.caches[2].memory_bytes), (0, 0));
    assert!(stats.total_keys >= 2);
    assert!(stats.total_memory_bytes > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_in_process_backend_is_the_default() {
    let port = photos_testkit::ports::free_port(None);
    let admin = spawn_admin(None, format!("127.0.0.1:{port}").parse().unwrap()).await;
    let stats = admin
        .client
        .clone()
        .get_cache_stats(GetCacheStatsRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(stats.backend, "memory");
    assert_eq!(stats.caches.len(), 3);
    let resp = admin
        .client
        .clone()
        .invalidate(InvalidateRequest {
            album_ids: vec!["a".into()],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(resp.albums_invalidated, 1);
}
