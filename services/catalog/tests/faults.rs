//! The catalog when its backends misbehave, against real servers: PostgreSQL stopped and
//! restarted under calls (a private cluster of its own, so stopping it disturbs no other test),
//! the pool exhausted, a statement cancelled by `statement_timeout`, and Redis frozen with
//! SIGSTOP. Every loop is bounded in count and time; nothing asserts on wall-clock durations.
//! Figures are printed (`--nocapture`) for docs/reliability.md.

#[path = "api/helpers.rs"]
mod helpers;

use std::time::Duration;

use helpers::{Backend, Client, TestApp, sha, spawn_app_with};
use photos_catalog::config::CacheBackend;
use photos_proto::catalog::v1::*;
use photos_proto::metrics::v1::GetCacheStatsRequest;
use photos_proto::metrics::v1::metrics_service_client::MetricsServiceClient;
use photos_runtime::Secret;
use photos_testkit::postgres::{PrivatePostgres, wait_blocked_on_lock};
use photos_testkit::redis::RedisServer;
use photos_testkit::wait;
use prost_types::FieldMask;
use sqlx::{Connection, PgConnection};
use tonic::Code;

async fn pg(url: &str) -> PgConnection {
    PgConnection::connect(url)
        .await
        .expect("connect to postgres")
}

async fn scalar_i64(url: &str, sql: &str) -> i64 {
    let mut c = pg(url).await;
    sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_owned()))
        .fetch_one(&mut c)
        .await
        .unwrap()
}

fn new_photo(album_id: &str, n: u64) -> CreatePhotoRequest {
    CreatePhotoRequest {
        album_id: album_id.into(),
        title: format!("photo {n}"),
        original_key: format!("originals/{album_id}/{n}"),
        content_sha256: sha(n),
        bytes: 1000 + n,
        format: ImageFormat::Jpeg as i32,
        ..Default::default()
    }
}

fn media_result(photo_id: &str) -> RecordMediaResultRequest {
    RecordMediaResultRequest {
        photo_id: photo_id.into(),
        status: PhotoStatus::Ready as i32,
        width: 4000,
        height: 3000,
        variants: vec![Variant {
            preset: "thumbnail".into(),
            format: ImageFormat::Webp as i32,
            object_key: format!("variants/{photo_id}/thumbnail.webp"),
            width: 400,
            height: 300,
            bytes: 5000,
        }],
        ..Default::default()
    }
}

/// Polls a cheap read until the pool hands out working connections again; returns how many
/// calls failed meanwhile.
async fn until_recovered(client: &Client, album_id: &str) -> u32 {
    let mut failed = 0u32;
    for _ in 0..400 {
        match client
            .clone()
            .get_album(GetAlbumRequest {
                id: album_id.into(),
                photo_page_size: 0,
            })
            .await
        {
            Ok(_) => return failed,
            Err(status) => {
                assert_eq!(status.code(), Code::Unavailable, "{status:?}");
                failed += 1;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    panic!("the catalog never recovered after PostgreSQL came back");
}

async fn rows_with_hash(url: &str, album_id: &str, n: u64) -> i64 {
    scalar_i64(
        url,
        &format!(
            "SELECT count(*) FROM photos WHERE album_id = {album_id} AND content_sha256 = '{}'",
            sha(n)
        ),
    )
    .await
}

/// PostgreSQL stopped twice under calls: once (`-m fast`, sessions ended with 57P01) while a
/// `CreatePhoto` waits inside its INSERT, once (`-m immediate`, a crash) while
/// `RecordMediaResult` is inside its transaction, between its UPDATE and its variant upsert.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_restarted_under_calls_answers_unavailable_recovers_and_keeps_one_row() {
    let server = PrivatePostgres::start()
        .await
        .expect("a private PostgreSQL");
    let url = server.url();
    let app: TestApp = spawn_app_with(Backend::Postgres, |c| {
        c.database.url = Secret::new(url.clone());
        c.database.acquire_timeout_ms = 500;
        c.database.max_connections = 4;
        c.cache.backend = CacheBackend::None;
        c.jobs.run_workers = false;
    })
    .await;
    let client = app.client();
    let album = app.create_album("restart", false, 0).await.id;

    // 1. A CreatePhoto in flight (its INSERT waits on a lock) when the server stops.
    let mut locker = pg(&url).await;
    sqlx::raw_sql("BEGIN; LOCK TABLE photos IN SHARE MODE")
        .execute(&mut locker)
        .await
        .unwrap();
    let in_flight = tokio::spawn({
        let mut c = client.clone();
        let req = new_photo(&album, 1);
        async move { c.create_photo(req).await }
    });
    wait_blocked_on_lock(&url, 1, false).await;
    tokio::task::block_in_place(|| server.stop_server("fast")).unwrap();
    let err = in_flight.await.unwrap().expect_err("the server went away");
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");
    drop(locker);

    // While it is down, every call is UNAVAILABLE (the pool cannot connect within the acquire
    // timeout), never INTERNAL and never a hang.
    let mut down_errors = 0;
    for n in 2..7 {
        let err = client
            .clone()
            .create_photo(new_photo(&album, n))
            .await
            .expect_err("postgres is down");
        assert_eq!(err.code(), Code::Unavailable, "{err:?}");
        down_errors += 1;
    }

    server.start_server().await.unwrap();
    let failed_while_recovering = until_recovered(&client, &album).await;

    // The retried creates: one row per content hash, whether or not the first attempt landed.
    for n in 1..7 {
        let first = client
            .clone()
            .create_photo(new_photo(&album, n))
            .await
            .unwrap()
            .into_inner();
        let again = client
            .clone()
            .create_photo(new_photo(&album, n))
            .await
            .unwrap()
            .into_inner();
        assert!(!again.created, "photo {n}: a second retry finds the row");
        assert_eq!(first.photo.unwrap().id, again.photo.unwrap().id);
        assert_eq!(rows_with_hash(&url, &album, n).await, 1, "photo {n}");
    }

    // 2. A crash inside RecordMediaResult's transaction: after its UPDATE of the photo, while
    //    its variant upsert waits on a lock.
    let photo = client
        .clone()
        .create_photo(new_photo(&album, 100))
        .await
        .unwrap()
        .into_inner()
        .photo
        .unwrap();
    let mut locker = pg(&url).await;
    sqlx::raw_sql("BEGIN; LOCK TABLE photo_variants IN ACCESS EXCLUSIVE MODE")
        .execute(&mut locker)
        .await
        .unwrap();
    let in_flight = tokio::spawn({
        let mut c = client.clone();
        let req = media_result(&photo.id);
        async move { c.record_media_result(req).await }
    });
    wait_blocked_on_lock(&url, 1, true).await;
    tokio::task::block_in_place(|| server.stop_server("immediate")).unwrap();
    let err = in_flight.await.unwrap().expect_err("the server crashed");
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");
    drop(locker);
    server.start_server().await.unwrap();
    let failed_after_crash = until_recovered(&client, &album).await;

    // Nothing of the interrupted transaction survived: still pending, no variant.
    let stored = client
        .clone()
        .get_photo(GetPhotoRequest {
            id: photo.id.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .photo
        .unwrap();
    assert_eq!(stored.status, PhotoStatus::Pending as i32);
    assert!(stored.variants.is_empty(), "{:?}", stored.variants);
    // The retry applies it once.
    let recorded = client
        .clone()
        .record_media_result(media_result(&photo.id))
        .await
        .unwrap()
        .into_inner()
        .photo
        .unwrap();
    assert_eq!(recorded.status, PhotoStatus::Ready as i32);
    assert_eq!(
        scalar_i64(
            &url,
            &format!(
                "SELECT count(*) FROM photo_variants WHERE photo_id = {}",
                photo.id
            )
        )
        .await,
        1
    );
    eprintln!(
        "postgres restart: in-flight calls failed UNAVAILABLE 2/2; calls while down {down_errors} \
         (all UNAVAILABLE); failed reads while the pool recovered: {failed_while_recovering} \
         after the fast stop, {failed_after_crash} after the crash; rows per retried hash: 1 \
         (6 hashes); half-written rows: 0"
    );
}

/// Two calls hold the pool's two connections (blocked on a lock); a third cannot get one and
/// fails with UNAVAILABLE once the acquire timeout passes; the held calls then complete.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exhausted_pool_fails_calls_with_unavailable_and_recovers() {
    let app = spawn_app_with(Backend::Postgres, |c| {
        c.database.max_connections = 2;
        c.database.acquire_timeout_ms = 300;
        c.cache.backend = CacheBackend::None;
        c.jobs.run_workers = false;
    })
    .await;
    let client = app.client();
    let album = app.create_album("pool", false, 0).await.id;
    let read = |client: &Client, id: &str| {
        let mut c = client.clone();
        let req = GetAlbumRequest {
            id: id.to_owned(),
            photo_page_size: 0,
        };
        async move { c.get_album(req).await }
    };
    let mut locker = pg(&app.url).await;
    sqlx::raw_sql("BEGIN; LOCK TABLE albums IN ACCESS EXCLUSIVE MODE")
        .execute(&mut locker)
        .await
        .unwrap();
    let held: Vec<_> = (0..2)
        .map(|_| tokio::spawn(read(&client, &album)))
        .collect();
    wait_blocked_on_lock(&app.url, 2, false).await;

    let mut refused = 0;
    for _ in 0..3 {
        let err = read(&client, &album).await.expect_err("no connection left");
        assert_eq!(err.code(), Code::Unavailable, "{err:?}");
        assert!(err.message().contains("pool timed out"), "{err:?}");
        refused += 1;
    }
    sqlx::raw_sql("COMMIT").execute(&mut locker).await.unwrap();
    for call in held {
        call.await.unwrap().expect("a held call completes");
    }
    read(&client, &album).await.expect("the pool serves again");
    eprintln!(
        "pool exhaustion: {refused} of 3 calls over the limit refused UNAVAILABLE; 2 of 2 held calls completed"
    );
}

/// The catalog's client backends on its database, by pid (this query's own session and the
/// `exclude`d test sessions left out).
async fn catalog_backends(url: &str, exclude: &[i32]) -> Vec<i32> {
    let mut c = pg(url).await;
    let pids: Vec<i32> = sqlx::query_scalar(
        "SELECT pid FROM pg_stat_activity WHERE datname = current_database() \
         AND backend_type = 'client backend' AND pid <> pg_backend_pid() ORDER BY pid",
    )
    .fetch_all(&mut c)
    .await
    .unwrap();
    let _ = c.close().await;
    pids.into_iter().filter(|p| !exclude.contains(p)).collect()
}

/// A statement stuck past `statement_timeout` is cancelled by the server (DEADLINE_EXCEEDED to
/// the caller) and the same connection serves the next call.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statement_timeout_cancels_a_stuck_statement_and_the_connection_is_reused() {
    let app = spawn_app_with(Backend::Postgres, |c| {
        c.database.max_connections = 1;
        c.database.statement_timeout_ms = 300;
        c.cache.backend = CacheBackend::None;
        c.jobs.run_workers = false;
    })
    .await;
    let mut client = app.client();
    let album = app.create_album("slow", false, 0).await.id;
    let get = GetAlbumRequest {
        id: album.clone(),
        photo_page_size: 0,
    };
    client.get_album(get.clone()).await.unwrap();
    let before = catalog_backends(&app.url, &[]).await;
    assert_eq!(before.len(), 1, "one pooled connection: {before:?}");

    let mut locker = pg(&app.url).await;
    let locker_pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
        .fetch_one(&mut locker)
        .await
        .unwrap();
    sqlx::raw_sql("BEGIN; LOCK TABLE albums IN ACCESS EXCLUSIVE MODE")
        .execute(&mut locker)
        .await
        .unwrap();
    let err = client
        .get_album(get.clone())
        .await
        .expect_err("cancelled by statement_timeout");
    assert_eq!(err.code(), Code::DeadlineExceeded, "{err:?}");
    assert!(err.message().contains("statement timeout"), "{err:?}");
    sqlx::raw_sql("ROLLBACK")
        .execute(&mut locker)
        .await
        .unwrap();
    drop(locker);

    let album_now = client.get_album(get).await.unwrap().into_inner();
    assert_eq!(album_now.album.unwrap().id, album);
    let after = catalog_backends(&app.url, &[locker_pid]).await;
    assert_eq!(
        before, after,
        "the cancelled statement's connection was reused"
    );
}

fn mask(paths: &[&str]) -> Option<FieldMask> {
    Some(FieldMask {
        paths: paths.iter().map(|p| p.to_string()).collect(),
    })
}

async fn title(client: &Client, id: &str) -> String {
    client
        .clone()
        .get_album(GetAlbumRequest {
            id: id.into(),
            photo_page_size: 0,
        })
        .await
        .expect("reads keep succeeding")
        .into_inner()
        .album
        .unwrap()
        .title
}

/// Redis frozen (SIGSTOP) under a catalog that caches in it: reads keep succeeding from the
/// database, the breaker opens (fallbacks counted, errors stop growing: no timeout paid per
/// call), a write made meanwhile is never read stale, neither while Redis is frozen nor after
/// SIGCONT, nor by a replica that starts afterwards with an empty L1 (the old entry is still in
/// Redis: the write's invalidation must have been replayed).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_frozen_by_sigstop_falls_back_to_the_database_and_nothing_stale_after() {
    let redis = RedisServer::start().await.unwrap();
    let mut metrics_config = photos_metrics::MetricsConfig::default();
    metrics_config.server.grpc_port = 0;
    metrics_config.server.admin_port = 0;
    let metrics = photos_metrics::build(metrics_config).await.unwrap();
    let metrics_addr = metrics.grpc_addr();
    let (_stop_metrics, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(metrics.run_until_stopped(async {
        let _ = stopped.await;
    }));
    let prefix = format!("sigstop{}", std::process::id());
    let cache = |c: &mut photos_catalog::CatalogConfig| {
        c.cache.backend = CacheBackend::Redis;
        c.cache.url = Secret::new(redis.url());
        c.cache.prefix = prefix.clone();
        c.page_tokens.secret = Secret::new("a shared page-token secret for both replicas");
        c.jobs.run_workers = false;
    };
    let app = spawn_app_with(Backend::Postgres, |c| {
        cache(c);
        c.server.metrics_service = format!("http://{metrics_addr}");
        c.server.report_interval_ms = 50;
    })
    .await;
    let client = app.client();
    let albums: Vec<String> = {
        let mut ids = Vec::new();
        for i in 0..21 {
            ids.push(app.create_album(&format!("album {i}"), true, 0).await.id);
        }
        ids
    };
    let (hot, cold) = (albums[0].clone(), &albums[1..]);
    assert_eq!(title(&client, &hot).await, "album 0");
    assert_eq!(
        title(&client, &hot).await,
        "album 0",
        "now cached (L1 and Redis)"
    );
    let gen_key = format!("{prefix}:v1:gen:album:{hot}");
    let raw = redis::Client::open(redis.url()).unwrap();
    let mut raw = raw.get_multiplexed_async_connection().await.unwrap();
    let gen_before: Option<i64> = redis::cmd("GET")
        .arg(&gen_key)
        .query_async(&mut raw)
        .await
        .unwrap();

    redis.pause().unwrap();

    // A write while Redis is frozen succeeds (the invalidation is queued)...
    client
        .clone()
        .update_album(UpdateAlbumRequest {
            album: Some(Album {
                id: hot.clone(),
                title: "renamed while redis was frozen".into(),
                ..Default::default()
            }),
            update_mask: mask(&["title"]),
        })
        .await
        .expect("writes go to the database");
    // ... and reads keep succeeding, fresh, from the database: 20 albums never read before.
    let mut served = 0;
    for (i, id) in cold.iter().enumerate() {
        assert_eq!(title(&client, id).await, format!("album {}", i + 1));
        assert_eq!(title(&client, &hot).await, "renamed while redis was frozen");
        served += 2;
    }

    // The breaker opened: the misses fell back, and failed Redis calls (timeouts paid) stopped
    // counting after the first few. Without the breaker every miss would pay a timeout and
    // count an error (two: the lookup and the fill).
    let stats = MetricsServiceClient::new(helpers_channel(metrics_addr).await);
    let (errors, fallbacks) = wait::until(
        "the frozen period's counters in the metrics report",
        Duration::from_secs(20),
        Duration::from_millis(50),
        || {
            let mut stats = stats.clone();
            async move {
                let caches = stats
                    .get_cache_stats(GetCacheStatsRequest {})
                    .await
                    .map_err(|e| e.to_string())?
                    .into_inner()
                    .caches;
                let c = caches
                    .iter()
                    .find(|c| c.service == "catalog" && c.cache_name == "default")
                    .ok_or_else(|| format!("no catalog cache stats yet: {caches:?}"))?;
                if c.fallbacks >= cold.len() as u64 {
                    Ok((c.errors, c.fallbacks))
                } else {
                    Err(format!("{} fallbacks so far", c.fallbacks))
                }
            }
        },
    )
    .await
    .unwrap();
    assert!(
        errors <= 6,
        "{errors} Redis errors for {} misses: the breaker did not open",
        cold.len()
    );

    redis.resume().unwrap();
    // Reads across the recovery are never stale.
    for _ in 0..20 {
        assert_eq!(title(&client, &hot).await, "renamed while redis was frozen");
        tokio::time::sleep(Duration::from_millis(25)).await;
        served += 1;
    }
    // The queued invalidation reaches Redis ...
    wait::until(
        "the queued invalidation replayed to Redis",
        Duration::from_secs(20),
        Duration::from_millis(50),
        || {
            let mut raw = raw.clone();
            let gen_key = gen_key.clone();
            async move {
                let now: Option<i64> = redis::cmd("GET")
                    .arg(&gen_key)
                    .query_async(&mut raw)
                    .await
                    .map_err(|e| e.to_string())?;
                if now != gen_before {
                    Ok(())
                } else {
                    Err(format!("generation still {now:?}"))
                }
            }
        },
    )
    .await
    .unwrap();
    // ... so a replica with an empty L1 reading through Redis, where the old entry still sits,
    // does not get it.
    let replica = app.spawn_replica(cache).await;
    assert_eq!(
        title(&replica.client(), &hot).await,
        "renamed while redis was frozen"
    );
    assert_eq!(title(&client, &hot).await, "renamed while redis was frozen");
    eprintln!(
        "redis SIGSTOP: {served} reads served (0 failed, 0 stale); 1 write accepted; cache \
         errors {errors} (breaker opened), fallbacks {fallbacks}; stale reads after SIGCONT: 0"
    );
}

async fn helpers_channel(addr: std::net::SocketAddr) -> tonic::transport::Channel {
    tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap()
}
