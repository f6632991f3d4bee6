//! The store/API suite; every function runs once per backend (see `main.rs`).

use std::collections::HashSet;

use photos_proto::catalog::v1::*;
use prost_types::FieldMask;
use tonic::Code;

pub use crate::cache::{
    no_read_after_a_write_is_stale, the_refresh_flag_recomputes_and_refills,
    with_the_cache_off_every_read_runs_its_sql,
};
use crate::helpers::*;

fn mask(paths: &[&str]) -> Option<FieldMask> {
    Some(FieldMask {
        paths: paths.iter().map(|p| p.to_string()).collect(),
    })
}

fn ids(albums: &[Album]) -> Vec<String> {
    albums.iter().map(|a| a.id.clone()).collect()
}

async fn list_all(client: &mut Client, published_only: bool, page_size: i32) -> Vec<Album> {
    let mut all = Vec::new();
    let mut token = String::new();
    loop {
        let page = client
            .list_albums(ListAlbumsRequest {
                published_only,
                page_size,
                page_token: token.clone(),
                ..Default::default()
            })
            .await
            .expect("list albums");
        assert!(
            statements(&page) <= 1,
            "every page is one statement (none from the cache)"
        );
        let page = page.into_inner();
        assert!(page.albums.len() <= page_size as usize);
        all.extend(page.albums);
        if page.next_page_token.is_empty() {
            return all;
        }
        token = page.next_page_token;
    }
}

pub async fn album_crud_round_trips(backend: Backend) {
    let app = spawn_app(backend).await;
    let mut c = app.client();
    let created = c
        .create_album(CreateAlbumRequest {
            title: "Holidays".into(),
            description: "sea".into(),
            owner_id: "ann".into(),
            is_published: false,
            order: 3,
        })
        .await
        .unwrap();
    assert_eq!(statements(&created), 1);
    let album = created.into_inner().album.unwrap();
    assert_eq!(
        (
            album.title.as_str(),
            album.description.as_str(),
            album.owner_id.as_str()
        ),
        ("Holidays", "sea", "ann")
    );
    assert_eq!(
        (album.order, album.is_published, album.photo_count),
        (3, false, 0)
    );
    assert!(album.create_time.is_some());

    let p = app.create_photo(&album.id, 1).await.photo.unwrap();
    let updated = c
        .update_album(UpdateAlbumRequest {
            album: Some(Album {
                id: album.id.clone(),
                title: "Summer".into(),
                description: "ignored: not in the mask".into(),
                is_published: true,
                order: 7,
                cover_photo_id: p.id.clone(),
                ..Default::default()
            }),
            update_mask: mask(&["title", "is_published", "order", "cover_photo_id"]),
        })
        .await
        .unwrap()
        .into_inner()
        .album
        .unwrap();
    assert_eq!(updated.title, "Summer");
    assert_eq!(updated.description, "sea");
    assert_eq!((updated.is_published, updated.order), (true, 7));
    assert_eq!(updated.cover_photo_id, p.id);
    assert_eq!(updated.photo_count, 1);

    let got = c
        .get_album(GetAlbumRequest {
            id: album.id.clone(),
            photo_page_size: 0,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got.album.unwrap().title, "Summer");
    assert_eq!(got.photos.len(), 1);

    let deleted = c
        .delete_album(DeleteAlbumRequest {
            id: album.id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(deleted.deleted_object_keys, vec![p.original_key.clone()]);
    for code in [
        c.get_album(GetAlbumRequest {
            id: album.id.clone(),
            photo_page_size: 0,
        })
        .await
        .unwrap_err()
        .code(),
        c.delete_album(DeleteAlbumRequest {
            id: album.id.clone(),
        })
        .await
        .unwrap_err()
        .code(),
        c.get_photo(GetPhotoRequest { id: p.id.clone() })
            .await
            .unwrap_err()
            .code(),
    ] {
        assert_eq!(code, Code::NotFound);
    }
}

pub async fn list_albums_is_one_statement_with_counts_and_previews(backend: Backend) {
    let app = spawn_app(backend).await;
    let album = app.create_album("one", true, 0).await;
    let mut photo_ids = Vec::new();
    for n in 0..6 {
        let p = app.create_photo(&album.id, n).await.photo.unwrap();
        if n < 5 {
            app.add_thumbnail(&p.id).await;
        }
        photo_ids.push(p.id);
    }
    let response = app
        .client()
        .list_albums(ListAlbumsRequest {
            published_only: true,
            page_size: 20,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(statements(&response), 1);
    let albums = response.into_inner().albums;
    let hit = app
        .client()
        .list_albums(ListAlbumsRequest {
            published_only: true,
            page_size: 20,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(statements(&hit), 0, "the same page again: from the cache");
    assert_eq!(hit.into_inner().albums, albums);
    assert_eq!(albums.len(), 1);
    let a = &albums[0];
    assert_eq!(a.photo_count, 6);
    // Photos get order 0, 1, 2, ... as they arrive; previews are the first four by order.
    assert_eq!(
        a.previews.iter().map(|p| p.id.clone()).collect::<Vec<_>>(),
        photo_ids[..4].to_vec()
    );
    for p in &a.previews {
        let thumb = p.thumbnail.as_ref().expect("thumbnail in the preview");
        assert_eq!(thumb.preset, "thumbnail");
        assert_eq!(
            thumb.object_key,
            format!("variants/{}/thumbnail.webp", p.id)
        );
        assert_eq!((thumb.width, thumb.height), (400, 300));
        assert_eq!(p.dominant_color, "#112233");
    }
    // Fewer previews on request.
    let two = app
        .client()
        .list_albums(ListAlbumsRequest {
            preview_count: 2,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(two.albums[0].previews.len(), 2);
}

pub async fn list_albums_stays_one_statement_with_50_albums_of_50_photos(backend: Backend) {
    let app = spawn_app(backend).await;
    app.seed(50, 50).await;
    let response = app
        .client()
        .list_albums(ListAlbumsRequest {
            page_size: 50,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        statements(&response),
        1,
        "no N+1: one statement for 50 albums"
    );
    let page = response.into_inner();
    let hit = app
        .client()
        .list_albums(ListAlbumsRequest {
            page_size: 50,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(statements(&hit), 0, "the same page again: from the cache");
    assert_eq!(hit.into_inner(), page);
    assert_eq!(page.albums.len(), 50);
    assert!(page.next_page_token.is_empty());
    for a in &page.albums {
        assert_eq!(a.photo_count, 50);
        assert_eq!(a.previews.len(), 4);
        assert_eq!(
            a.previews.iter().map(|p| p.order).collect::<Vec<_>>(),
            vec![0, 1, 2, 3]
        );
        assert!(a.previews.iter().all(|p| p.thumbnail.is_some()));
    }
}

pub async fn keyset_pages_have_no_duplicates_or_gaps(backend: Backend) {
    let app = spawn_app(backend).await;
    app.seed(47, 0).await;
    // Ties on (order, created_at) are broken by id.
    app.sql("UPDATE albums SET created_at = 5 WHERE id % 5 = 0")
        .await;
    let mut c = app.client();
    let one_page = list_all(&mut c, false, 100).await;
    assert_eq!(one_page.len(), 47);
    for size in [1, 7, 10, 46] {
        let paged = list_all(&mut c, false, size).await;
        assert_eq!(ids(&paged), ids(&one_page), "page size {size}");
    }
    let unique: HashSet<_> = ids(&one_page).into_iter().collect();
    assert_eq!(unique.len(), 47);
    // The single page is in (order asc, created desc, id desc) order.
    let key = |a: &Album| {
        let t = a.create_time.unwrap();
        (
            a.order,
            -(t.seconds * 1_000_000 + i64::from(t.nanos / 1000)),
            -a.id.parse::<i64>().unwrap(),
        )
    };
    assert!(one_page.windows(2).all(|w| key(&w[0]) < key(&w[1])));
    // Published listing pages the same way.
    let published = list_all(&mut c, true, 5).await;
    assert_eq!(published.len(), 24);
    assert!(published.iter().all(|a| a.is_published));
}

pub async fn published_filter_and_order_then_newest(backend: Backend) {
    let app = spawn_app(backend).await;
    let old_first = app.create_album("order1 old", true, 1).await;
    let draft = app.create_album("draft", false, 0).await;
    let new_first = app.create_album("order1 new", true, 1).await;
    let zero = app.create_album("order0", true, 0).await;
    let mut c = app.client();
    let published = list_all(&mut c, true, 10).await;
    assert_eq!(
        ids(&published),
        vec![zero.id.clone(), new_first.id.clone(), old_first.id.clone()]
    );
    let all = list_all(&mut c, false, 10).await;
    assert_eq!(
        ids(&all),
        vec![zero.id, draft.id, new_first.id, old_first.id]
    );
}

pub async fn reupload_of_the_same_bytes_returns_the_existing_photo(backend: Backend) {
    let app = spawn_app(backend).await;
    let a = app.create_album("a", false, 0).await;
    let b = app.create_album("b", false, 0).await;
    let first = app.create_photo(&a.id, 0xabcdef).await;
    assert!(first.created);
    let again = app.create_photo(&a.id, 0xabcdef).await;
    assert!(!again.created);
    assert_eq!(again.photo.unwrap().id, first.photo.as_ref().unwrap().id);
    // Uppercase hex is the same hash.
    let upper = app
        .client()
        .create_photo(CreatePhotoRequest {
            album_id: a.id.clone(),
            original_key: "elsewhere".into(),
            content_sha256: sha(0xabcdef).to_uppercase(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!upper.created);
    // The same bytes in another album are another photo.
    let other = app.create_photo(&b.id, 0xabcdef).await;
    assert!(other.created);
    let count = app
        .column("SELECT CAST(count(*) AS TEXT) FROM photos")
        .await;
    assert_eq!(count, vec!["2"]);
}

pub async fn concurrent_duplicate_uploads_make_exactly_one_row(backend: Backend) {
    let app = spawn_app(backend).await;
    let album = app.create_album("race", false, 0).await;
    let calls = (0..16).map(|_| {
        let mut c = app.client();
        let album_id = album.id.clone();
        tokio::spawn(async move {
            c.create_photo(CreatePhotoRequest {
                album_id,
                original_key: "originals/race".into(),
                content_sha256: sha(77),
                ..Default::default()
            })
            .await
            .map(|r| r.into_inner())
        })
    });
    let results: Vec<_> = futures::future::join_all(calls).await;
    let responses: Vec<CreatePhotoResponse> = results
        .into_iter()
        .map(|r| r.unwrap().expect("every duplicate upload succeeds"))
        .collect();
    assert_eq!(responses.iter().filter(|r| r.created).count(), 1);
    let ids: HashSet<_> = responses
        .iter()
        .map(|r| r.photo.as_ref().unwrap().id.clone())
        .collect();
    assert_eq!(ids.len(), 1);
    assert_eq!(
        app.column("SELECT CAST(count(*) AS TEXT) FROM photos")
            .await,
        vec!["1"]
    );
}

/// The same bytes in two albums share their content-addressed variant keys: deleting one
/// album's photo (or the album) must not hand the shared variants to storage for deletion.
pub async fn deletes_keep_keys_another_photo_still_references(backend: Backend) {
    let app = spawn_app(backend).await;
    let a = app.create_album("a", false, 0).await;
    let b = app.create_album("b", false, 0).await;
    let pa = app.create_photo(&a.id, 7).await.photo.unwrap();
    let pb = app.create_photo(&b.id, 7).await.photo.unwrap();
    let shared = Variant {
        preset: "small".into(),
        format: ImageFormat::Webp as i32,
        object_key: format!("variants/{}/small.webp", sha(7)),
        width: 640,
        height: 480,
        bytes: 9000,
    };
    for id in [&pa.id, &pb.id] {
        app.client()
            .record_media_result(RecordMediaResultRequest {
                photo_id: id.clone(),
                status: PhotoStatus::Ready as i32,
                width: 4000,
                height: 3000,
                variants: vec![shared.clone()],
                ..Default::default()
            })
            .await
            .unwrap();
    }
    let mut c = app.client();
    let keys = c
        .delete_photo(DeletePhotoRequest { id: pa.id.clone() })
        .await
        .unwrap()
        .into_inner()
        .deleted_object_keys;
    assert_eq!(
        keys,
        vec![pa.original_key.clone()],
        "album b still shows the variant"
    );
    let mut keys = c
        .delete_album(DeleteAlbumRequest { id: b.id.clone() })
        .await
        .unwrap()
        .into_inner()
        .deleted_object_keys;
    keys.sort();
    assert_eq!(
        keys,
        vec![pb.original_key.clone(), shared.object_key.clone()],
        "the last reference is gone: everything goes"
    );
}

pub async fn deletes_return_every_object_key(backend: Backend) {
    let app = spawn_app(backend).await;
    let album = app.create_album("keys", false, 0).await;
    let p1 = app.create_photo(&album.id, 1).await.photo.unwrap();
    let p2 = app.create_photo(&album.id, 2).await.photo.unwrap();
    app.add_thumbnail(&p1.id).await;
    app.add_thumbnail(&p2.id).await;
    let mut c = app.client();
    let mut keys = c
        .delete_photo(DeletePhotoRequest { id: p1.id.clone() })
        .await
        .unwrap()
        .into_inner()
        .deleted_object_keys;
    keys.sort();
    assert_eq!(
        keys,
        vec![
            p1.original_key.clone(),
            format!("variants/{}/thumbnail.webp", p1.id)
        ]
    );
    assert_eq!(
        c.delete_photo(DeletePhotoRequest { id: p1.id.clone() })
            .await
            .unwrap_err()
            .code(),
        Code::NotFound
    );
    let mut keys = c
        .delete_album(DeleteAlbumRequest {
            id: album.id.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .deleted_object_keys;
    keys.sort();
    assert_eq!(
        keys,
        vec![
            p2.original_key.clone(),
            format!("variants/{}/thumbnail.webp", p2.id)
        ]
    );
    assert_eq!(
        app.column("SELECT CAST(count(*) AS TEXT) FROM photo_variants")
            .await,
        vec!["0"]
    );
}

pub async fn bad_input_gets_the_right_code_and_writes_nothing(backend: Backend) {
    let app = spawn_app(backend).await;
    let mut c = app.client();
    let album = app.create_album("kept", false, 0).await;
    let bad_albums = [("", 0), ("   ", 0), (&"x".repeat(201)[..], 0), ("ok", -1)];
    for (title, order) in bad_albums {
        let e = c
            .create_album(CreateAlbumRequest {
                title: title.into(),
                order,
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{title:?}/{order}: {e:?}");
        assert!(!e.message().is_empty());
    }
    // 200 characters (multi-byte) is fine.
    app.create_album(&"é".repeat(200), false, 0).await;
    let e = c
        .update_album(UpdateAlbumRequest {
            album: Some(Album {
                id: album.id.clone(),
                title: String::new(),
                ..Default::default()
            }),
            update_mask: mask(&["title"]),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    let e = c
        .update_album(UpdateAlbumRequest {
            album: Some(Album {
                id: album.id.clone(),
                ..Default::default()
            }),
            update_mask: mask(&["owner_id"]),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().contains("owner_id"), "{}", e.message());
    // A cover must be one of the album's own photos.
    let other = app.create_album("other", false, 0).await;
    let foreign = app.create_photo(&other.id, 5).await.photo.unwrap();
    let e = c
        .update_album(UpdateAlbumRequest {
            album: Some(Album {
                id: album.id.clone(),
                cover_photo_id: foreign.id.clone(),
                ..Default::default()
            }),
            update_mask: mask(&["cover_photo_id"]),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    c.delete_album(DeleteAlbumRequest {
        id: other.id.clone(),
    })
    .await
    .unwrap();
    for bad_sha in ["", "abc", &"g".repeat(64)] {
        let e = c
            .create_photo(CreatePhotoRequest {
                album_id: album.id.clone(),
                original_key: "k".into(),
                content_sha256: bad_sha.into(),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument);
    }
    for unknown in ["999999", "not-a-number", "-4"] {
        assert_eq!(
            c.get_album(GetAlbumRequest {
                id: unknown.into(),
                photo_page_size: 0
            })
            .await
            .unwrap_err()
            .code(),
            Code::NotFound
        );
        assert_eq!(
            c.get_photo(GetPhotoRequest { id: unknown.into() })
                .await
                .unwrap_err()
                .code(),
            Code::NotFound
        );
        assert_eq!(
            c.list_photos(ListPhotosRequest {
                album_id: unknown.into(),
                ..Default::default()
            })
            .await
            .unwrap_err()
            .code(),
            Code::NotFound
        );
    }
    assert_eq!(
        c.get_album(GetAlbumRequest::default())
            .await
            .unwrap_err()
            .code(),
        Code::InvalidArgument
    );
    // Nothing was half-written: the kept album and the 200-char one only, unchanged.
    let all = list_all(&mut c, false, 10).await;
    assert_eq!(all.len(), 2);
    assert!(all.iter().any(|a| a.id == album.id && a.title == "kept"));
    assert_eq!(
        app.column("SELECT CAST(count(*) AS TEXT) FROM photos")
            .await,
        vec!["0"]
    );
}

pub async fn tampered_or_foreign_page_tokens_are_invalid_argument(backend: Backend) {
    let app = spawn_app(backend).await;
    app.seed(5, 0).await;
    let mut c = app.client();
    let token = c
        .list_albums(ListAlbumsRequest {
            page_size: 2,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .next_page_token;
    assert!(!token.is_empty());
    let mut tampered = token.clone().into_bytes();
    tampered[1] = if tampered[1] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).unwrap();
    for (bad, published_only) in [
        ("garbage".to_owned(), false),
        ("a.b.c".to_owned(), false),
        (tampered, false),
        // A token of the unfiltered listing replayed on the published one.
        (token.clone(), true),
    ] {
        let e = c
            .list_albums(ListAlbumsRequest {
                page_size: 2,
                page_token: bad.clone(),
                published_only,
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{bad}");
        assert!(e.message().contains("page_token"), "{}", e.message());
    }
    let e = c
        .list_recent_photos(ListRecentPhotosRequest {
            page_token: token,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
}

pub async fn photo_for_a_deleted_album_is_not_found(backend: Backend) {
    let app = spawn_app(backend).await;
    let album = app.create_album("gone", false, 0).await;
    let mut c = app.client();
    c.delete_album(DeleteAlbumRequest {
        id: album.id.clone(),
    })
    .await
    .unwrap();
    let e = c
        .create_photo(CreatePhotoRequest {
            album_id: album.id.clone(),
            original_key: "k".into(),
            content_sha256: sha(1),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    assert!(e.message().contains(&album.id), "{}", e.message());
    assert_eq!(
        app.column("SELECT CAST(count(*) AS TEXT) FROM photos")
            .await,
        vec!["0"]
    );
}

pub async fn order_overflow_is_refused(backend: Backend) {
    let app = spawn_app(backend).await;
    let album = app.create_album("full", false, 0).await;
    let p = app.create_photo(&album.id, 1).await.photo.unwrap();
    let mut c = app.client();
    c.update_photo(UpdatePhotoRequest {
        photo: Some(Photo {
            id: p.id.clone(),
            order: i32::MAX,
            ..Default::default()
        }),
        update_mask: mask(&["order"]),
    })
    .await
    .unwrap();
    let e = c
        .create_photo(CreatePhotoRequest {
            album_id: album.id.clone(),
            original_key: "k2".into(),
            content_sha256: sha(2),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");
    assert!(e.message().contains("reorder"), "{}", e.message());
    let e = c
        .update_photo(UpdatePhotoRequest {
            photo: Some(Photo {
                id: p.id.clone(),
                order: -1,
                ..Default::default()
            }),
            update_mask: mask(&["order"]),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert_eq!(
        app.column("SELECT CAST(count(*) AS TEXT) FROM photos")
            .await,
        vec!["1"]
    );
    // Reordering makes room again.
    c.reorder_photos(ReorderPhotosRequest {
        album_id: album.id.clone(),
        photo_ids: vec![p.id.clone()],
    })
    .await
    .unwrap();
    assert!(app.create_photo(&album.id, 2).await.created);
}

pub async fn album_detail_is_at_most_two_statements(backend: Backend) {
    let app = spawn_app(backend).await;
    let album = app.create_album("detail", false, 0).await;
    for n in 0..7 {
        let p = app.create_photo(&album.id, n).await.photo.unwrap();
        app.add_thumbnail(&p.id).await;
    }
    let mut c = app.client();
    let response = c
        .get_album(GetAlbumRequest {
            id: album.id.clone(),
            photo_page_size: 3,
        })
        .await
        .unwrap();
    assert!(statements(&response) <= 2, "{}", statements(&response));
    let detail = response.into_inner();
    let hit = c
        .get_album(GetAlbumRequest {
            id: album.id.clone(),
            photo_page_size: 3,
        })
        .await
        .unwrap();
    assert_eq!(statements(&hit), 0, "the same detail again: from the cache");
    assert_eq!(hit.into_inner(), detail);
    assert_eq!(detail.album.unwrap().photo_count, 7);
    assert_eq!(detail.photos.len(), 3);
    assert!(detail.photos.iter().all(|p| p.variants.len() == 1));
    // The token continues where the detail page stopped.
    let mut seen: Vec<String> = detail.photos.iter().map(|p| p.id.clone()).collect();
    let mut token = detail.next_photo_page_token;
    while !token.is_empty() {
        let page = c
            .list_photos(ListPhotosRequest {
                album_id: album.id.clone(),
                page_size: 3,
                page_token: token,
            })
            .await
            .unwrap();
        assert_eq!(statements(&page), 1);
        let page = page.into_inner();
        seen.extend(page.photos.iter().map(|p| p.id.clone()));
        token = page.next_page_token;
    }
    let all = c
        .list_photos(ListPhotosRequest {
            album_id: album.id.clone(),
            page_size: 100,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .photos;
    assert_eq!(seen, all.iter().map(|p| p.id.clone()).collect::<Vec<_>>());
    assert_eq!(
        all.iter().map(|p| p.order).collect::<Vec<_>>(),
        (0..7).collect::<Vec<_>>()
    );
}

pub async fn media_results_upsert_variants_and_feed_missing_variant_lists(backend: Backend) {
    let app = spawn_app(backend).await;
    let album = app.create_album("media", false, 0).await;
    let p1 = app.create_photo(&album.id, 1).await.photo.unwrap();
    let p2 = app.create_photo(&album.id, 2).await.photo.unwrap();
    assert_eq!(p1.status, PhotoStatus::Pending as i32);
    let first = app.add_thumbnail(&p1.id).await;
    assert_eq!(first.status, PhotoStatus::Ready as i32);
    assert_eq!((first.width, first.height), (4000, 3000));
    assert_eq!(first.placeholders.unwrap().dominant_color, "#112233");
    // Same (preset, format) replaces; another preset adds.
    let mut c = app.client();
    let second = c
        .record_media_result(RecordMediaResultRequest {
            photo_id: p1.id.clone(),
            status: PhotoStatus::Ready as i32,
            taken_time: Some(prost_types::Timestamp {
                seconds: 1_600_000_000,
                nanos: 0,
            }),
            variants: vec![
                Variant {
                    preset: "thumbnail".into(),
                    format: ImageFormat::Webp as i32,
                    object_key: "replaced".into(),
                    width: 401,
                    height: 301,
                    bytes: 1,
                },
                Variant {
                    preset: "large".into(),
                    format: ImageFormat::Jpeg as i32,
                    object_key: "large.jpg".into(),
                    width: 1920,
                    height: 1080,
                    bytes: 2,
                },
            ],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .photo
        .unwrap();
    assert_eq!(second.variants.len(), 2);
    assert!(
        second
            .variants
            .iter()
            .any(|v| v.object_key == "replaced" && v.width == 401)
    );
    assert_eq!(second.taken_time.unwrap().seconds, 1_600_000_000);
    let missing = c
        .list_photos_missing_variant(ListPhotosMissingVariantRequest {
            preset: "thumbnail".into(),
            format: ImageFormat::Webp as i32,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        missing
            .photos
            .iter()
            .map(|p| p.id.clone())
            .collect::<Vec<_>>(),
        vec![p2.id.clone()]
    );
    let e = c
        .record_media_result(RecordMediaResultRequest {
            photo_id: p2.id.clone(),
            status: 0,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    let e = c
        .record_media_result(RecordMediaResultRequest {
            photo_id: "424242".into(),
            status: PhotoStatus::Failed as i32,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
}

pub async fn reorder_and_batch_publish(backend: Backend) {
    let app = spawn_app(backend).await;
    let a = app.create_album("a", false, 0).await;
    let b = app.create_album("b", false, 0).await;
    let cc = app.create_album("c", false, 0).await;
    let mut c = app.client();
    let updated = c
        .reorder_albums(ReorderAlbumsRequest {
            album_ids: vec![cc.id.clone(), a.id.clone(), b.id.clone()],
        })
        .await
        .unwrap()
        .into_inner()
        .updated;
    assert_eq!(updated, 3);
    assert_eq!(
        ids(&list_all(&mut c, false, 10).await),
        vec![cc.id.clone(), a.id.clone(), b.id.clone()]
    );
    // An unknown id: NOT_FOUND and the order is unchanged.
    let e = c
        .reorder_albums(ReorderAlbumsRequest {
            album_ids: vec![b.id.clone(), "999999".into()],
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    assert!(e.message().contains("999999"));
    assert_eq!(
        ids(&list_all(&mut c, false, 10).await),
        vec![cc.id.clone(), a.id.clone(), b.id.clone()]
    );
    let published = c
        .set_albums_published(SetAlbumsPublishedRequest {
            album_ids: vec![a.id.clone(), b.id.clone(), "999999".into()],
            published: true,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(published.updated, 2);
    assert_eq!(published.not_found_ids, vec!["999999".to_owned()]);
    assert_eq!(
        ids(&list_all(&mut c, true, 10).await),
        vec![a.id.clone(), b.id.clone()]
    );
    // Photos: a foreign photo id refuses the whole reorder.
    let p1 = app.create_photo(&a.id, 1).await.photo.unwrap();
    let p2 = app.create_photo(&a.id, 2).await.photo.unwrap();
    let foreign = app.create_photo(&b.id, 3).await.photo.unwrap();
    let e = c
        .reorder_photos(ReorderPhotosRequest {
            album_id: a.id.clone(),
            photo_ids: vec![p2.id.clone(), foreign.id.clone()],
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    c.reorder_photos(ReorderPhotosRequest {
        album_id: a.id.clone(),
        photo_ids: vec![p2.id.clone(), p1.id.clone()],
    })
    .await
    .unwrap();
    let photos = c
        .list_photos(ListPhotosRequest {
            album_id: a.id.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .photos;
    assert_eq!(
        photos.iter().map(|p| p.id.clone()).collect::<Vec<_>>(),
        vec![p2.id, p1.id]
    );
}

pub async fn recent_photos_page_newest_first(backend: Backend) {
    let app = spawn_app(backend).await;
    app.seed(4, 5).await;
    let mut c = app.client();
    let mut seen = Vec::new();
    let mut token = String::new();
    loop {
        let page = c
            .list_recent_photos(ListRecentPhotosRequest {
                page_size: 3,
                page_token: token,
                published_only: true,
            })
            .await
            .unwrap();
        assert_eq!(statements(&page), 1);
        let page = page.into_inner();
        seen.extend(page.photos);
        token = page.next_page_token;
        if token.is_empty() {
            break;
        }
    }
    // Albums 0 and 2 are published: 10 photos, newest first, no duplicates.
    assert_eq!(seen.len(), 10);
    let times: Vec<i64> = seen
        .iter()
        .map(|p| {
            p.create_time.unwrap().seconds * 1_000_000
                + i64::from(p.create_time.unwrap().nanos / 1000)
        })
        .collect();
    assert!(times.windows(2).all(|w| w[0] > w[1]));
}

pub async fn stats_and_object_key_stream(backend: Backend) {
    let app = spawn_app(backend).await;
    app.seed(3, 400).await;
    let mut c = app.client();
    let stats = c
        .get_catalog_stats(GetCatalogStatsRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(stats.album_count, 3);
    assert_eq!(stats.published_album_count, 2);
    assert_eq!(stats.photo_count, 1200);
    assert_eq!(stats.pending_photo_count, 0);
    assert_eq!(stats.original_bytes, 1200 * 1000);
    assert_eq!(stats.variant_bytes, 1200 * 5000);
    assert_eq!(stats.albums.len(), 3);
    assert!(
        stats
            .albums
            .iter()
            .all(|a| a.photo_count == 400 && a.variant_bytes == 400 * 5000)
    );
    let mut stream = c
        .stream_object_keys(StreamObjectKeysRequest {})
        .await
        .unwrap()
        .into_inner();
    let mut keys = Vec::new();
    let mut batches = 0;
    while let Some(batch) = stream.message().await.unwrap() {
        batches += 1;
        keys.extend(batch.object_keys);
    }
    // 1200 originals + 1200 thumbnails, in more than one batch, each once.
    assert_eq!(keys.len(), 2400);
    assert!(batches > 1);
    assert_eq!(keys.iter().collect::<HashSet<_>>().len(), 2400);
}

pub async fn slow_statements_are_counted_over_the_threshold(backend: Backend) {
    // A threshold of 0 ms makes every statement "slow": the detector must see each one.
    let app = spawn_app_with(backend, |c| c.database.slow_statement_ms = 0).await;
    let album = app.create_album("slow", false, 0).await;
    let before = metric(
        &metrics_text(app.admin).await,
        "photos_catalog_db_slow_statements_total",
    );
    let mut c = app.client();
    let mut ran = 0;
    for _ in 0..3 {
        // Recomputed every time (a cache hit would run nothing).
        let r = c
            .get_album(refresh(GetAlbumRequest {
                id: album.id.clone(),
                photo_page_size: 0,
            }))
            .await
            .unwrap();
        ran += statements(&r);
    }
    let text = metrics_text(app.admin).await;
    let after = metric(&text, "photos_catalog_db_slow_statements_total");
    assert_eq!(after - before, f64::from(ran));
    assert_eq!(ran, 6, "two statements per recomputed detail");
    assert!(metric(&text, "photos_catalog_db_statements_total") >= f64::from(ran));
    // The per-call histogram, by method: 3 GetAlbum calls with `ran` statements in all.
    let line = |suffix: &str| {
        text.lines()
            .find(|l| {
                l.starts_with(&format!("photos_catalog_db_statements_per_call_{suffix}"))
                    && l.contains("method=\"GetAlbum\"")
            })
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or_else(|| panic!("no GetAlbum {suffix} in:\n{text}"))
    };
    assert_eq!(line("count"), 3.0);
    assert_eq!(line("sum"), f64::from(ran));
    // Pool saturation: connections open, idle, and the configured ceiling.
    let max = metric(&text, "photos_catalog_db_pool_max");
    let open = metric(&text, "photos_catalog_db_pool_connections");
    let idle = metric(&text, "photos_catalog_db_pool_idle");
    assert!(max >= 1.0, "{max}");
    assert!((1.0..=max).contains(&open), "open {open} of {max}");
    assert!(idle <= open, "idle {idle} of {open}");
}
