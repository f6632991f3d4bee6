//! The read-through cache: after every write RPC, every cached read (on every replica) equals
//! the same read recomputed from the database; hits run no SQL; `x-cache-refresh: 1`
//! recomputes and refills. The in-process cache runs in the suite (`main.rs`, both databases);
//! Redis, a Redis Cluster and two replicas run here.

use std::fmt::Debug;

use photos_catalog::CatalogConfig;
use photos_catalog::config::CacheBackend;
use photos_proto::catalog::v1::*;
use photos_runtime::Secret;
use photos_testkit::redis::{RedisCluster, RedisServer};
use prost_types::FieldMask;
use tonic::{Response, Status};

use crate::helpers::*;

/// Every album and photo id the scenario ever made, deleted ones included: a cached detail of
/// a deleted row must not outlive it.
#[derive(Default)]
struct World {
    albums: Vec<String>,
    photos: Vec<String>,
}

/// The outcome of one read (message or error) for comparison; adds the statements a
/// successful read ran (errors are never cached, so they always run theirs).
fn record<T: Debug>(
    out: &mut Vec<String>,
    statements_run: &mut u32,
    result: Result<Response<T>, Status>,
) -> Option<T> {
    match result {
        Ok(r) => {
            *statements_run += statements(&r);
            let message = r.into_inner();
            out.push(format!("{message:?}"));
            Some(message)
        }
        Err(status) => {
            out.push(format!("{:?}: {}", status.code(), status.message()));
            None
        }
    }
}

fn request<T>(message: T, recompute: bool) -> tonic::Request<T> {
    if recompute {
        refresh(message)
    } else {
        tonic::Request::new(message)
    }
}

/// Every cached read of the catalog over `world`, paging small so page tokens are involved;
/// `recompute` sends `x-cache-refresh: 1` (the database's answer). Returns the answers and
/// the statements the successful ones ran.
async fn views(c: &mut Client, world: &World, recompute: bool) -> (Vec<String>, u32) {
    let (mut out, mut n) = (Vec::new(), 0);
    for published_only in [false, true] {
        let mut token = String::new();
        loop {
            let r = c
                .list_albums(request(
                    ListAlbumsRequest {
                        published_only,
                        page_size: 2,
                        page_token: token.clone(),
                        ..Default::default()
                    },
                    recompute,
                ))
                .await;
            match record(&mut out, &mut n, r) {
                Some(page) if !page.next_page_token.is_empty() => token = page.next_page_token,
                _ => break,
            }
        }
        let mut token = String::new();
        loop {
            let r = c
                .list_recent_photos(request(
                    ListRecentPhotosRequest {
                        published_only,
                        page_size: 3,
                        page_token: token.clone(),
                    },
                    recompute,
                ))
                .await;
            match record(&mut out, &mut n, r) {
                Some(page) if !page.next_page_token.is_empty() => token = page.next_page_token,
                _ => break,
            }
        }
    }
    for id in &world.albums {
        let r = c
            .get_album(request(
                GetAlbumRequest {
                    id: id.clone(),
                    photo_page_size: 2,
                },
                recompute,
            ))
            .await;
        record(&mut out, &mut n, r);
        let mut token = String::new();
        loop {
            let r = c
                .list_photos(request(
                    ListPhotosRequest {
                        album_id: id.clone(),
                        page_size: 2,
                        page_token: token.clone(),
                    },
                    recompute,
                ))
                .await;
            match record(&mut out, &mut n, r) {
                Some(page) if !page.next_page_token.is_empty() => token = page.next_page_token,
                _ => break,
            }
        }
    }
    for id in &world.photos {
        let r = c
            .get_photo(request(GetPhotoRequest { id: id.clone() }, recompute))
            .await;
        record(&mut out, &mut n, r);
    }
    let r = c
        .get_catalog_stats(request(GetCatalogStatsRequest::default(), recompute))
        .await;
    record(&mut out, &mut n, r);
    (out, n)
}

/// Fills every reader's cache until no successful read of a full pass runs SQL (so the
/// check that follows a write really reads cached entries).
async fn prime(readers: &mut [Client], world: &World) {
    for (i, reader) in readers.iter_mut().enumerate() {
        let mut passes = 0;
        loop {
            let (_, ran) = views(reader, world, false).await;
            if ran == 0 {
                break;
            }
            passes += 1;
            // A miss fills; a photo's detail needs its album cached first: at most 3 passes.
            assert!(
                passes < 3,
                "reader {i} still runs {ran} statements after {passes} passes"
            );
        }
    }
}

/// After `what`, every reader's cached answers equal the database's.
async fn assert_fresh(readers: &mut [Client], world: &World, what: &str) {
    for (i, reader) in readers.iter_mut().enumerate() {
        let (cached, _) = views(reader, world, false).await;
        let (truth, _) = views(reader, world, true).await;
        assert_eq!(cached.len(), truth.len(), "reader {i} after {what}");
        for (c, t) in cached.iter().zip(&truth) {
            assert_eq!(c, t, "reader {i} served stale data after {what}");
        }
    }
}

fn mask(paths: &[&str]) -> Option<FieldMask> {
    Some(FieldMask {
        paths: paths.iter().map(|p| p.to_string()).collect(),
    })
}

/// Every write RPC, each followed by the freshness check on every reader. `writer` is the
/// replica the writes go through.
async fn every_write_leaves_nothing_stale(writer: &TestApp, readers: &mut [Client]) {
    let mut w = writer.client();
    let mut world = World::default();
    let a = writer.create_album("a", true, 0).await;
    let b = writer.create_album("b", false, 1).await;
    world.albums.extend([a.id.clone(), b.id.clone()]);
    let mut photos = Vec::new();
    for (album, n) in [(&a, 1), (&a, 2), (&b, 3)] {
        let p = writer.create_photo(&album.id, n).await.photo.unwrap();
        writer.add_thumbnail(&p.id).await;
        world.photos.push(p.id.clone());
        photos.push(p);
    }
    let (p1, p2, p3) = (
        photos[0].id.clone(),
        photos[1].id.clone(),
        photos[2].id.clone(),
    );

    macro_rules! step {
        ($what:expr, $write:expr) => {{
            prime(readers, &world).await;
            let out = $write;
            assert_fresh(readers, &world, $what).await;
            out
        }};
    }

    let c = step!("CreateAlbum", writer.create_album("c", true, 2).await);
    world.albums.push(c.id.clone());
    step!(
        "UpdateAlbum title, description",
        w.update_album(UpdateAlbumRequest {
            album: Some(Album {
                id: a.id.clone(),
                title: "a2".into(),
                description: "renamed".into(),
                ..Default::default()
            }),
            update_mask: mask(&["title", "description"]),
        })
        .await
        .unwrap()
    );
    step!(
        "UpdateAlbum is_published",
        w.update_album(UpdateAlbumRequest {
            album: Some(Album {
                id: b.id.clone(),
                is_published: true,
                ..Default::default()
            }),
            update_mask: mask(&["is_published"]),
        })
        .await
        .unwrap()
    );
    step!(
        "UpdateAlbum order, cover_photo_id",
        w.update_album(UpdateAlbumRequest {
            album: Some(Album {
                id: a.id.clone(),
                order: 5,
                cover_photo_id: p2.clone(),
                ..Default::default()
            }),
            update_mask: mask(&["order", "cover_photo_id"]),
        })
        .await
        .unwrap()
    );
    step!(
        "ReorderAlbums",
        w.reorder_albums(ReorderAlbumsRequest {
            album_ids: vec![c.id.clone(), b.id.clone(), a.id.clone()],
        })
        .await
        .unwrap()
    );
    step!(
        "SetAlbumsPublished",
        w.set_albums_published(SetAlbumsPublishedRequest {
            album_ids: vec![a.id.clone(), c.id.clone()],
            published: false,
        })
        .await
        .unwrap()
    );
    let p4 = step!("CreatePhoto", writer.create_photo(&c.id, 4).await);
    assert!(p4.created);
    let p4 = p4.photo.unwrap().id;
    world.photos.push(p4.clone());
    let again = step!(
        "CreatePhoto (the same bytes again)",
        writer.create_photo(&c.id, 4).await
    );
    assert!(!again.created);
    step!(
        "UpdatePhoto",
        w.update_photo(UpdatePhotoRequest {
            photo: Some(Photo {
                id: p1.clone(),
                title: "first".into(),
                caption: "captioned".into(),
                order: 9,
                ..Default::default()
            }),
            update_mask: mask(&["title", "caption", "order"]),
        })
        .await
        .unwrap()
    );
    step!("RecordMediaResult", writer.add_thumbnail(&p4).await);
    step!(
        "ReorderPhotos",
        w.reorder_photos(ReorderPhotosRequest {
            album_id: a.id.clone(),
            photo_ids: vec![p1.clone(), p2.clone()],
        })
        .await
        .unwrap()
    );
    step!(
        "DeletePhoto",
        w.delete_photo(DeletePhotoRequest { id: p2.clone() })
            .await
            .unwrap()
    );
    step!(
        "DeleteAlbum",
        w.delete_album(DeleteAlbumRequest { id: b.id.clone() })
            .await
            .unwrap()
    );
    // The deleted album's photo is gone too, from every cached view.
    let gone = w.get_photo(GetPhotoRequest { id: p3 }).await.unwrap_err();
    assert_eq!(gone.code(), tonic::Code::NotFound);
}

/// The in-process cache (the default), one instance: run by the suite for both databases.
pub async fn no_read_after_a_write_is_stale(backend: Backend) {
    let app = spawn_app(backend).await;
    let mut readers = [app.client()];
    every_write_leaves_nothing_stale(&app, &mut readers).await;
}

fn redis(url: String) -> impl FnOnce(&mut CatalogConfig) {
    move |c| {
        c.cache.backend = CacheBackend::Redis;
        c.cache.url = Secret::new(url);
        c.cache.prefix = format!("t{}", uuid::Uuid::new_v4().simple());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_redis_no_read_after_a_write_is_stale() {
    let server = RedisServer::start().await.unwrap();
    let app = spawn_app_with(Backend::Postgres, redis(server.url())).await;
    let mut readers = [app.client()];
    every_write_leaves_nothing_stale(&app, &mut readers).await;
}

/// Two replicas sharing the database and the cache: writes go through the first; the second
/// (whose in-process L1 holds every entry) and the first must both read fresh data at once.
async fn replicas(shared: impl Fn(&mut CatalogConfig) + Clone) {
    let secret = uuid::Uuid::new_v4().simple().to_string();
    let configure = |c: &mut CatalogConfig| {
        shared(c);
        // Replicas share the token key, as deployment requires.
        c.page_tokens.secret = Secret::new(secret.clone());
    };
    let one = spawn_app_with(Backend::Postgres, configure).await;
    let two = one.spawn_replica(configure).await;
    let mut readers = [two.client(), one.client()];
    every_write_leaves_nothing_stale(&one, &mut readers).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_through_one_replica_is_not_served_stale_by_another() {
    let server = RedisServer::start().await.unwrap();
    let prefix = format!("t{}", uuid::Uuid::new_v4().simple());
    let url = server.url();
    replicas(move |c: &mut CatalogConfig| {
        c.cache.backend = CacheBackend::Redis;
        c.cache.url = Secret::new(url.clone());
        c.cache.prefix = prefix.clone();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_on_a_redis_cluster_never_read_stale_data() {
    let cluster = RedisCluster::start().await.unwrap();
    let nodes: Vec<Secret> = cluster.node_urls().into_iter().map(Secret::new).collect();
    let prefix = format!("t{}", uuid::Uuid::new_v4().simple());
    replicas(move |c: &mut CatalogConfig| {
        c.cache.backend = CacheBackend::Cluster;
        c.cache.cluster_nodes = nodes.clone();
        c.cache.prefix = prefix.clone();
    })
    .await;
}

/// Hits run no SQL on Redis as in memory; 50 albums of 50 photos cost what 1 album does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_redis_a_list_page_is_one_statement_on_a_miss_and_none_on_a_hit() {
    let server = RedisServer::start().await.unwrap();
    for (albums, photos) in [(1, 0), (50, 50)] {
        let app = spawn_app_with(Backend::Postgres, redis(server.url())).await;
        app.seed(albums, photos).await;
        let list = || {
            let mut c = app.client();
            async move {
                c.list_albums(ListAlbumsRequest {
                    page_size: 50,
                    ..Default::default()
                })
                .await
                .unwrap()
            }
        };
        let miss = list().await;
        assert_eq!(statements(&miss), 1, "{albums} albums: a miss");
        let hit = list().await;
        assert_eq!(statements(&hit), 0, "{albums} albums: a hit");
        let page = hit.into_inner();
        assert_eq!(page.albums.len(), albums);
        assert!(page.albums.iter().all(|a| a.photo_count == photos as i64));
        assert_eq!(miss.into_inner(), page);
    }
}

/// `x-cache-refresh: 1` recomputes and refills: shown with a change made behind the
/// catalog's back (raw SQL), which only a recompute can see.
pub async fn the_refresh_flag_recomputes_and_refills(backend: Backend) {
    let app = spawn_app(backend).await;
    let album = app.create_album("before", true, 0).await;
    let mut c = app.client();
    let get = |recompute: bool| {
        request(
            GetAlbumRequest {
                id: album.id.clone(),
                photo_page_size: 0,
            },
            recompute,
        )
    };
    assert_eq!(statements(&c.get_album(get(false)).await.unwrap()), 2);
    app.sql(&format!(
        "UPDATE albums SET title = 'after' WHERE id = {}",
        album.id
    ))
    .await;
    let cached = c.get_album(get(false)).await.unwrap();
    assert_eq!(statements(&cached), 0);
    assert_eq!(cached.into_inner().album.unwrap().title, "before");
    let recomputed = c.get_album(get(true)).await.unwrap();
    assert_eq!(statements(&recomputed), 2);
    assert_eq!(recomputed.into_inner().album.unwrap().title, "after");
    // Refilled: the next plain read is a hit with the new value.
    let hit = c.get_album(get(false)).await.unwrap();
    assert_eq!(statements(&hit), 0);
    assert_eq!(hit.into_inner().album.unwrap().title, "after");
}

/// `cache.backend = none`: every read runs its SQL.
pub async fn with_the_cache_off_every_read_runs_its_sql(backend: Backend) {
    let app = spawn_app_with(backend, |c| c.cache.backend = CacheBackend::None).await;
    app.create_album("x", true, 0).await;
    for _ in 0..2 {
        let r = app
            .client()
            .list_albums(ListAlbumsRequest::default())
            .await
            .unwrap();
        assert_eq!(statements(&r), 1);
    }
}
