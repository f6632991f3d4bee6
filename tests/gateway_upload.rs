//! Uploads through the gateway against the real mesh: a generated JPEG streamed to storage,
//! processed by media and recorded by the catalog; duplicates, bad files, oversize files and
//! `Idempotency-Key` replays; and the links (signed or CDN) in every photo response.

mod common;

use common::*;
use photos_gateway::auth::Role;
use photos_proto::catalog::v1 as catalog_pb;
use photos_proto::catalog::v1::catalog_service_client::CatalogServiceClient;
use photos_proto::storage::v1 as storage_pb;
use photos_proto::storage::v1::storage_service_client::StorageServiceClient;

impl Env {
    async fn photo_count(&self, album: &str, token: &str) -> i64 {
        let (status, _, detail) = self
            .call("GET", &format!("/api/v1/albums/{album}"), Some(token), None)
            .await;
        assert_eq!(status, 200, "{detail}");
        detail["album"]["photo_count"].as_i64().unwrap()
    }

    /// Originals stored for an album, straight from storage.
    async fn originals(&self, album: &str) -> Vec<storage_pb::ObjectInfo> {
        let mut storage = StorageServiceClient::new(channel(self.mesh.addresses.storage).await);
        let mut pages = storage
            .list_objects(storage_pb::ListObjectsRequest {
                prefix: format!("originals/{album}/"),
                older_than_days: 0,
            })
            .await
            .unwrap()
            .into_inner();
        let mut objects = Vec::new();
        while let Some(page) = pages.message().await.unwrap() {
            objects.extend(page.objects);
        }
        objects
    }

    /// GETs a URL from the photo response (the embedded object store listens on loopback).
    async fn fetch(&self, url: &str) -> (u16, Vec<u8>) {
        fetch(url).await
    }
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_is_stored_processed_recorded_and_linked() {
    let env = Env::start().await;
    let alice = env.token("alice", Role::Owner);
    let album = env.create_album(&alice, false).await;
    let original = jpeg(1200, 800, 1);

    let (status, head, photo) = env
        .upload(
            &album,
            Some(&alice),
            &[],
            &form(
                &[("title", "Lake"), ("caption", "at dawn")],
                Some(&original),
            ),
        )
        .await;
    assert_eq!(status, 201, "{photo}");
    let id = photo["id"].as_str().unwrap();
    assert_eq!(
        header(&head, "location"),
        Some(format!("/api/v1/photos/{id}").as_str())
    );
    assert_eq!(photo["status"], "ready");
    assert_eq!(photo["title"], "Lake");
    assert_eq!(photo["caption"], "at dawn");
    assert_eq!(
        (photo["width"].as_u64(), photo["height"].as_u64()),
        (Some(1200), Some(800))
    );
    assert_eq!(photo["format"], "jpeg");
    assert_eq!(photo["bytes"].as_u64(), Some(original.len() as u64));

    // Every variant, in both formats, each with a signed link (the album is not published).
    let sources = photo["sources"].as_array().unwrap();
    for format in ["jpeg", "webp"] {
        let presets: Vec<&str> = sources
            .iter()
            .filter(|s| s["format"] == format)
            .map(|s| s["preset"].as_str().unwrap())
            .collect();
        // 1200×800 is below large/xlarge, which are never upscaled but still produced at the
        // source size; thumbnail, small and medium are always there.
        for preset in ["thumbnail", "small", "medium"] {
            assert!(
                presets.contains(&preset),
                "{format} {preset} missing: {presets:?}"
            );
        }
    }
    for s in sources {
        let url = s["url"].as_str().unwrap();
        assert!(
            url.contains("X-Amz-Signature="),
            "signed link expected: {url}"
        );
        assert!(s["width"].as_u64().unwrap() > 0 && s["bytes"].as_u64().unwrap() > 0);
    }
    let color = photo["placeholders"]["dominant_color"].as_str().unwrap();
    assert!(color.len() == 7 && color.starts_with('#'), "{color}");
    assert!(
        photo["placeholders"]["blur_data_uri"]
            .as_str()
            .unwrap()
            .starts_with("data:image/")
    );
    assert!(
        !photo["placeholders"]["blurhash"]
            .as_str()
            .unwrap()
            .is_empty()
    );
    let webp_set = photo["srcset"]["webp"].as_str().unwrap();
    assert!(
        webp_set.contains(" 640w") && webp_set.contains(" 1024w"),
        "{webp_set}"
    );
    assert!(
        !webp_set.contains(" 400w"),
        "the square thumbnail is not in the srcset: {webp_set}"
    );

    // The signed links work and serve what they say.
    let small_webp = sources
        .iter()
        .find(|s| s["preset"] == "small" && s["format"] == "webp")
        .unwrap();
    let (status, bytes) = env.fetch(small_webp["url"].as_str().unwrap()).await;
    assert_eq!(status, 200);
    assert_eq!(bytes.len() as u64, small_webp["bytes"].as_u64().unwrap());
    assert!(bytes.starts_with(b"RIFF") && &bytes[8..12] == b"WEBP");

    // The catalog recorded it with the original's hash, and the original is in storage.
    let mut catalog = CatalogServiceClient::new(channel(env.mesh.addresses.catalog).await);
    let recorded = catalog
        .get_photo(catalog_pb::GetPhotoRequest { id: id.to_owned() })
        .await
        .unwrap()
        .into_inner()
        .photo
        .unwrap();
    assert_eq!(recorded.content_sha256, sha256_hex(&original));
    let originals = env.originals(&album).await;
    assert_eq!(originals.len(), 1);
    assert_eq!(originals[0].key, recorded.original_key);
    assert_eq!(originals[0].size, original.len() as u64);
    assert_eq!(env.photo_count(&album, &alice).await, 1);

    // Reads of the photo link the same way, and repeated reads are byte-identical (the signed
    // URLs are reused), so conditional GETs keep working.
    let (s1, h1, again) = env
        .call("GET", &format!("/api/v1/photos/{id}"), Some(&alice), None)
        .await;
    let (_, h2, _) = env
        .call("GET", &format!("/api/v1/photos/{id}"), Some(&alice), None)
        .await;
    assert_eq!(s1, 200);
    assert_eq!(again["sources"], photo["sources"]);
    assert_eq!(header(&h1, "etag"), header(&h2, "etag"));
    env.mesh.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_bytes_again_return_the_existing_photo() {
    let env = Env::start().await;
    let alice = env.token("alice", Role::Owner);
    let album = env.create_album(&alice, false).await;
    let body = form(&[], Some(&jpeg(640, 480, 2)));
    let (first, _, a) = env.upload(&album, Some(&alice), &[], &body).await;
    let (second, _, b) = env.upload(&album, Some(&alice), &[], &body).await;
    assert_eq!((first, second), (201, 200), "{a} {b}");
    assert_eq!(a["id"], b["id"]);
    assert_eq!(env.photo_count(&album, &alice).await, 1);
    // The second copy was dropped: one original in storage.
    assert_eq!(env.originals(&album).await.len(), 1);

    // Another album takes the same bytes as a photo of its own.
    let other = env.create_album(&alice, false).await;
    let (status, _, c) = env.upload(&other, Some(&alice), &[], &body).await;
    assert_eq!(status, 201);
    assert_ne!(c["id"], a["id"]);
    env.mesh.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_that_are_not_images_leave_nothing_behind() {
    let env = Env::start().await;
    let alice = env.token("alice", Role::Owner);
    let album = env.create_album(&alice, false).await;
    let mut truncated = jpeg(800, 600, 3);
    truncated.truncate(truncated.len() / 3);
    let cases: [(&str, Vec<u8>); 3] = [
        ("text", b"hello, this is not a photo".to_vec()),
        (
            "html renamed .jpg",
            b"<html><body>hi</body></html>".to_vec(),
        ),
        ("truncated jpeg", truncated),
    ];
    for (what, bytes) in cases {
        let (status, head, problem) = env
            .upload(&album, Some(&alice), &[], &form(&[], Some(&bytes)))
            .await;
        assert_eq!(status, 422, "{what}: {problem}");
        assert_eq!(
            header(&head, "content-type"),
            Some("application/problem+json")
        );
        assert_eq!(problem["kind"], "unprocessable", "{what}");
    }
    let (status, _, problem) = env
        .upload(&album, Some(&alice), &[], &form(&[], Some(b"")))
        .await;
    assert_eq!(status, 422, "empty file: {problem}");
    assert_eq!(env.photo_count(&album, &alice).await, 0);
    assert!(
        env.originals(&album).await.is_empty(),
        "every original was deleted"
    );
    env.mesh.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_forms_and_callers_without_rights_are_refused() {
    let env = Env::start().await;
    let (alice, bob) = (
        env.token("alice", Role::Owner),
        env.token("bob", Role::Owner),
    );
    let viewer = env.token("vera", Role::Viewer);
    let private = env.create_album(&alice, false).await;
    let public = env.create_album(&alice, true).await;
    let image = jpeg(320, 240, 4);
    let body = form(&[], Some(&image));

    // (what, album, token, form, expected status)
    type Case<'a> = (&'a str, &'a str, Option<&'a str>, Vec<u8>, u16);
    let cases: [Case<'_>; 7] = [
        ("anonymous", &private, None, body.clone(), 401),
        (
            "viewer, published album",
            &public,
            Some(&viewer),
            body.clone(),
            403,
        ),
        (
            "another owner's hidden album",
            &private,
            Some(&bob),
            body.clone(),
            404,
        ),
        (
            "another owner's published album",
            &public,
            Some(&bob),
            body.clone(),
            403,
        ),
        ("unknown album", "987654", Some(&alice), body.clone(), 404),
        (
            "no file field",
            &private,
            Some(&alice),
            form(&[("title", "x")], None),
            400,
        ),
        (
            "unknown field",
            &private,
            Some(&alice),
            form(&[("owner_id", "mallory")], Some(&image)),
            400,
        ),
    ];
    for (what, album, token, body, expected) in cases {
        let (status, _, problem) = env.upload(album, token, &[], &body).await;
        assert_eq!(status, expected, "{what}: {problem}");
        assert!(problem["detail"].is_string(), "{what}: {problem}");
    }
    // Not multipart at all.
    let (status, _, problem) = env
        .call(
            "POST",
            &format!("/api/v1/albums/{private}/photos"),
            Some(&alice),
            Some(r#"{"file":"x"}"#),
        )
        .await;
    assert!(status == 400 || status == 415, "{status} {problem}");
    assert_eq!(env.photo_count(&private, &alice).await, 0);
    assert!(env.originals(&private).await.is_empty());
    assert!(env.originals(&public).await.is_empty());
    env.mesh.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversize_files_get_413_and_leave_nothing_behind() {
    let env = Env::start_with(|c| {
        c.gateway.upload.max_bytes = 40 * 1024;
        c.gateway.upload.chunk_bytes = 8 * 1024;
    })
    .await;
    let alice = env.token("alice", Role::Owner);
    let album = env.create_album(&alice, false).await;
    // Below the limit plus the form allowance, so it is only caught while streaming, after
    // several chunks already went to storage.
    let streamed = vec![0xAB; 90 * 1024];
    // Above it: refused from Content-Length before anything is read.
    let declared = vec![0xAB; 200 * 1024];
    for (what, bytes) in [("while streaming", streamed), ("declared", declared)] {
        let (status, _, problem) = env
            .upload(&album, Some(&alice), &[], &form(&[], Some(&bytes)))
            .await;
        assert_eq!(status, 413, "{what}: {problem}");
        assert_eq!(problem["kind"], "too_large", "{what}");
    }
    // A file within the limit still goes through.
    let small = jpeg(64, 48, 5);
    assert!(small.len() < 40 * 1024);
    let (status, _, photo) = env
        .upload(&album, Some(&alice), &[], &form(&[], Some(&small)))
        .await;
    assert_eq!(status, 201, "{photo}");
    assert_eq!(env.photo_count(&album, &alice).await, 1);
    assert_eq!(
        env.originals(&album).await.len(),
        1,
        "the aborted uploads left no object"
    );
    env.mesh.shutdown().await.unwrap();
}

/// Storage refusing an upload while the gateway is still feeding it (here: each chunk message is
/// above storage's message limit, so storage answers after the first one). The gateway used to
/// poll the finished PutObject call a second time on that path: the handler task panicked and
/// the client saw its connection dropped instead of an answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn storage_refusing_mid_body_gets_a_problem_document_and_leaves_nothing() {
    let env = Env::start_with(|c| {
        c.storage.server.max_message_bytes = 64 * 1024;
        c.storage.transfer.read_chunk_bytes = 16 * 1024;
        c.gateway.upload.chunk_bytes = 1024 * 1024;
    })
    .await;
    let alice = env.token("alice", Role::Owner);
    let album = env.create_album(&alice, false).await;
    // Many chunks: the body is still being fed when storage's refusal of the first arrives.
    let big = vec![0xAB; 12 * 1024 * 1024];
    for attempt in 0..3 {
        let (status, head, problem) = env
            .upload(&album, Some(&alice), &[], &form(&[], Some(&big)))
            .await;
        assert_eq!(status, 413, "attempt {attempt}: {head}\n{problem}");
        assert_eq!(problem["kind"], "too_large", "attempt {attempt}: {problem}");
    }
    assert_eq!(env.photo_count(&album, &alice).await, 0);
    assert!(env.originals(&album).await.is_empty(), "nothing stored");
    env.mesh.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idempotency_key_replays_the_first_outcome() {
    let env = Env::start().await;
    let (alice, bob) = (
        env.token("alice", Role::Owner),
        env.token("bob", Role::Owner),
    );
    let album = env.create_album(&alice, false).await;
    let body = form(&[("title", "one")], Some(&jpeg(320, 240, 6)));
    let key = [("Idempotency-Key", "upload-7f3a")];

    let (first, h1, a) = env.upload(&album, Some(&alice), &key, &body).await;
    assert_eq!(first, 201, "{a}");
    assert_eq!(header(&h1, "idempotent-replayed"), None);
    let (again, h2, b) = env.upload(&album, Some(&alice), &key, &body).await;
    assert_eq!(again, 201, "a replay answers like the first request: {b}");
    assert_eq!(header(&h2, "idempotent-replayed"), Some("true"));
    assert_eq!(a["id"], b["id"]);

    // Same key, different upload: refused, and nothing new stored.
    let other = form(&[("title", "one")], Some(&jpeg(320, 240, 7)));
    let (status, _, problem) = env.upload(&album, Some(&alice), &key, &other).await;
    assert_eq!(status, 422, "{problem}");
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("Idempotency-Key")
    );
    // Same key, same file, different title: a different request too.
    let retitled = form(&[("title", "two")], Some(&jpeg(320, 240, 6)));
    let (status, _, _) = env.upload(&album, Some(&alice), &key, &retitled).await;
    assert_eq!(status, 422);
    assert_eq!(env.photo_count(&album, &alice).await, 1);
    assert_eq!(env.originals(&album).await.len(), 1);

    // Keys belong to their user: bob's identical key is his own (and he may not upload here).
    let (status, _, _) = env.upload(&album, Some(&bob), &key, &body).await;
    assert_eq!(status, 404);
    // A malformed key is refused before anything is read.
    let (status, _, _) = env
        .upload(
            &album,
            Some(&alice),
            &[("Idempotency-Key", "two words")],
            &body,
        )
        .await;
    assert_eq!(status, 400);
    env.mesh.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn published_albums_link_through_the_cdn_and_others_are_signed() {
    let env = Env::start_with(|c| {
        c.gateway.sources.cdn_base_url = "https://cdn.photos.test".into();
    })
    .await;
    let alice = env.token("alice", Role::Owner);
    let public = env.create_album(&alice, true).await;
    let private = env.create_album(&alice, false).await;
    let image = form(&[], Some(&jpeg(800, 600, 8)));
    let (s1, _, p) = env.upload(&public, Some(&alice), &[], &image).await;
    let (s2, _, q) = env.upload(&private, Some(&alice), &[], &image).await;
    assert_eq!((s1, s2), (201, 201));
    for s in p["sources"].as_array().unwrap() {
        let url = s["url"].as_str().unwrap();
        assert!(
            url.starts_with("https://cdn.photos.test/variants/"),
            "{url}"
        );
        assert!(!url.contains('?'), "CDN links are plain: {url}");
    }
    for s in q["sources"].as_array().unwrap() {
        let url = s["url"].as_str().unwrap();
        assert!(url.contains("X-Amz-Signature="), "{url}");
        assert!(!url.starts_with("https://cdn.photos.test"), "{url}");
    }
    // Anonymous readers of the published album get the CDN links, previews included.
    let (status, _, listing) = env.call("GET", "/api/v1/albums", None, None).await;
    assert_eq!(status, 200);
    let thumb = &listing["albums"][0]["previews"][0]["thumbnail"];
    assert!(
        thumb["url"]
            .as_str()
            .unwrap()
            .starts_with("https://cdn.photos.test/variants/"),
        "{listing}"
    );
    // Unpublishing turns the same photo's links into signed ones.
    let admin = env.token("root", Role::Admin);
    let (status, _, _) = env
        .call(
            "POST",
            "/api/v1/admin/albums/unpublish",
            Some(&admin),
            Some(&format!(r#"{{"album_ids":["{public}"]}}"#)),
        )
        .await;
    assert_eq!(status, 200);
    let (_, _, now) = env
        .call(
            "GET",
            &format!("/api/v1/photos/{}", p["id"].as_str().unwrap()),
            Some(&alice),
            None,
        )
        .await;
    assert!(
        now["sources"][0]["url"]
            .as_str()
            .unwrap()
            .contains("X-Amz-Signature=")
    );
    env.mesh.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_owner_reorders_the_photos_of_an_album() {
    let env = Env::start().await;
    let alice = env.token("alice", Role::Owner);
    let album = env.create_album(&alice, false).await;
    let mut ids = Vec::new();
    for seed in 10..13 {
        let (status, _, photo) = env
            .upload(
                &album,
                Some(&alice),
                &[],
                &form(&[], Some(&jpeg(160, 120, seed))),
            )
            .await;
        assert_eq!(status, 201, "{photo}");
        ids.push(photo["id"].as_str().unwrap().to_owned());
    }
    let listed = |page: serde_json::Value| -> Vec<String> {
        page["photos"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["id"].as_str().unwrap().to_owned())
            .collect()
    };
    let path = format!("/api/v1/albums/{album}/photos");
    let (_, _, page) = env.call("GET", &path, Some(&alice), None).await;
    assert_eq!(listed(page), ids, "upload order first");
    let reversed: Vec<String> = ids.iter().rev().cloned().collect();
    let body = serde_json::json!({ "photo_ids": reversed }).to_string();
    let (status, _, r) = env
        .call("PUT", &format!("{path}/order"), Some(&alice), Some(&body))
        .await;
    assert_eq!((status, r["updated"].as_i64()), (200, Some(3)), "{r}");
    let (_, _, page) = env.call("GET", &path, Some(&alice), None).await;
    assert_eq!(listed(page), reversed);
    env.mesh.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_shorter_than_its_content_length_stores_nothing() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let env = Env::start_with(|c| c.gateway.upload.chunk_bytes = 4 * 1024).await;
    let alice = env.token("alice", Role::Owner);
    let album = env.create_album(&alice, false).await;
    let body = form(&[], Some(&jpeg(1024, 768, 9)));
    // Claims the whole form, sends a third of it (several chunks reach storage), then stops.
    let mut stream = tokio::net::TcpStream::connect(env.mesh.addresses.gateway)
        .await
        .unwrap();
    let head = format!(
        "POST /api/v1/albums/{album}/photos HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\
         Authorization: {alice}\r\nContent-Type: multipart/form-data; boundary={BOUNDARY}\r\n\
         Content-Length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(&body[..body.len() / 3]).await.unwrap();
    stream.shutdown().await.unwrap();
    let mut raw = Vec::new();
    let _ = stream.read_to_end(&mut raw).await;
    let answer = String::from_utf8_lossy(&raw);
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert_eq!(env.photo_count(&album, &alice).await, 0);
    assert!(
        env.originals(&album).await.is_empty(),
        "the cut upload was not stored"
    );
    env.mesh.shutdown().await.unwrap();
}
