//! Every photosctl command against the real mesh on its embedded backends, through the real
//! binary: exit codes, JSON output, and what changed in the catalog and in storage.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use common::*;
use serde_json::Value;

fn jobs_of(run: &Run) -> Vec<Value> {
    run.json()["jobs"].as_array().cloned().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_reports_a_corrupt_file_imports_the_rest_and_skips_them_next_time() {
    let t = start_mesh().await;
    let a = t.mesh.addresses.clone();
    let album = create_album(a.catalog, "import").await;
    let folder = t.dir.path().join("photos");
    write_photos(&folder, 3, 100);
    std::fs::create_dir_all(folder.join("nested")).unwrap();
    std::fs::write(folder.join("nested/deep.JPG"), photo(200, 320, 240)).unwrap();
    // A JPEG cut after its first bytes: the header parses, the picture does not decode.
    let good = photo(300, 320, 240);
    std::fs::write(folder.join("corrupt.jpg"), &good[..good.len() / 8]).unwrap();
    std::fs::write(folder.join("notes.txt"), "not an image").unwrap();
    std::fs::write(folder.join(".hidden.jpg"), "ignored").unwrap();
    let dir = folder.to_str().unwrap();

    let run = photosctl(&a, &["--json", "import", dir, "--album", &album]).await;
    assert_eq!(run.code, 3, "some files failed: {run:#?}");
    let report = run.json();
    let imported = report["imported"].as_array().unwrap();
    assert_eq!(imported.len(), 4, "{report:#}");
    let failed = report["failed"].as_array().unwrap();
    assert_eq!(failed.len(), 1, "{report:#}");
    assert!(failed[0]["file"].as_str().unwrap().ends_with("corrupt.jpg"));
    assert!(!failed[0]["error"].as_str().unwrap().is_empty());
    assert_eq!(report["ignored"].as_array().unwrap().len(), 1, "notes.txt");

    let photos = album_photos(a.catalog, &album).await;
    assert_eq!(photos.len(), 4);
    for p in &photos {
        assert_eq!(p.status, 2, "ready: {p:?}");
        assert!(p.variants.iter().any(|v| v.preset == "thumbnail"));
    }
    // The corrupt file left nothing behind: every original in storage belongs to a photo.
    let originals: BTreeSet<String> = objects(a.storage)
        .await
        .into_keys()
        .filter(|k| k.starts_with(&format!("originals/{album}/")))
        .collect();
    let referenced: BTreeSet<String> = photos.iter().map(|p| p.original_key.clone()).collect();
    assert_eq!(originals, referenced);

    // A second run uploads nothing: every good file is known by its content hash.
    let again = photosctl(&a, &["--json", "import", dir, "--album", &album]).await;
    assert_eq!(again.code, 3, "the corrupt file still fails: {again:#?}");
    let report = again.json();
    assert_eq!(report["imported"].as_array().unwrap().len(), 0);
    assert_eq!(report["skipped"].as_array().unwrap().len(), 4);
    assert_eq!(album_photos(a.catalog, &album).await.len(), 4);

    // Text mode names the failed file too; an unknown album is refused before any upload.
    let text = photosctl(&a, &["import", dir, "--album", &album]).await;
    assert!(text.stdout.contains("corrupt.jpg"), "{text:#?}");
    let unknown = photosctl(&a, &["import", dir, "--album", "999999"]).await;
    assert_eq!(unknown.code, 65, "{unknown:#?}");
    t.mesh.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generate_thumbnails_fills_missing_ones_and_custom_sizes_replace_them() {
    let t = start_mesh().await;
    let a = t.mesh.addresses.clone();
    let album = create_album(a.catalog, "thumbs").await;
    let other = create_album(a.catalog, "other").await;
    let mut bare = Vec::new();
    for seed in 0..5 {
        bare.push(bare_photo(a.catalog, a.storage, &album, seed).await);
    }
    let elsewhere = bare_photo(a.catalog, a.storage, &other, 50).await;

    let run = photosctl(
        &a,
        &[
            "--json",
            "generate-thumbnails",
            "--missing-only",
            "--album",
            &album,
        ],
    )
    .await;
    assert_eq!(run.code, 0, "{run:#?}");
    let job = &run.json()["job"];
    assert_eq!(job["state"], "succeeded");
    assert_eq!(
        (
            job["total"].as_u64(),
            job["done"].as_u64(),
            job["failed"].as_u64()
        ),
        (Some(5), Some(5), Some(0))
    );
    for p in album_photos(a.catalog, &album).await {
        let thumbs: Vec<_> = p
            .variants
            .iter()
            .filter(|v| v.preset == "thumbnail")
            .collect();
        assert_eq!(thumbs.len(), 2, "JPEG and WebP thumbnail for {}", p.id);
        assert!(thumbs.iter().all(|v| v.width <= 400 && v.height <= 400));
    }
    let untouched = album_photos(a.catalog, &other).await;
    assert!(
        untouched[0].variants.is_empty(),
        "{elsewhere} is in another album"
    );

    // Nothing is missing any more in that album.
    let none = photosctl(
        &a,
        &[
            "--json",
            "generate-thumbnails",
            "--missing-only",
            "--album",
            &album,
        ],
    )
    .await;
    assert_eq!(none.code, 0);
    assert_eq!(none.json()["job"]["total"], 0);

    // A custom size replaces every thumbnail of the album, at that size.
    let custom = photosctl(
        &a,
        &[
            "--json",
            "generate-thumbnails",
            "--size",
            "96x64",
            "--quality",
            "70",
            "--album",
            &album,
            "--workers",
            "2",
        ],
    )
    .await;
    assert_eq!(custom.code, 0, "{custom:#?}");
    assert_eq!(custom.json()["job"]["done"], 5);
    for p in album_photos(a.catalog, &album).await {
        let jpeg = p
            .variants
            .iter()
            .find(|v| v.preset == "thumbnail" && v.format == 1)
            .unwrap();
        assert_eq!((jpeg.width, jpeg.height), (96, 64), "cover crop to the box");
    }

    // Bad input: the CLI refuses a malformed size (usage), the server an unknown album.
    let bad = photosctl(&a, &["generate-thumbnails", "--size", "big"]).await;
    assert_eq!(bad.code, 2, "{bad:#?}");
    let unknown = photosctl(&a, &["--json", "generate-thumbnails", "--album", "424242"]).await;
    assert_eq!(unknown.code, 65, "{unknown:#?}");
    assert!(
        unknown.stderr.contains("album 424242 not found"),
        "{unknown:#?}"
    );
    t.mesh.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cleanup_s3_lists_then_deletes_only_unreferenced_objects() {
    let t = start_mesh().await;
    let a = t.mesh.addresses.clone();
    let album = create_album(a.catalog, "keep").await;
    let folder = t.dir.path().join("photos");
    write_photos(&folder, 3, 10);
    let run = photosctl(&a, &["import", folder.to_str().unwrap(), "--album", &album]).await;
    assert_eq!(run.code, 0, "{run:#?}");
    let referenced: BTreeSet<String> = referenced(a.catalog).await.into_iter().collect();
    assert!(
        referenced.len() >= 3 * 5,
        "originals and variants: {referenced:?}"
    );

    // Orphans under every managed prefix, of known sizes.
    let orphans: BTreeMap<&str, Vec<u8>> = [
        ("originals/lost/abandoned.jpg", photo(90, 64, 48)),
        ("variants/lost/old-1920.webp", vec![7u8; 1_234]),
        ("tmp/upload-3f2a", vec![1u8; 777]),
    ]
    .into_iter()
    .collect();
    for (key, bytes) in &orphans {
        put_object(a.storage, key, bytes).await;
    }
    let before = objects(a.storage).await;
    assert!(
        referenced.iter().all(|k| before.contains_key(k)),
        "every referenced key is stored"
    );

    let dry = photosctl(
        &a,
        &[
            "--json",
            "cleanup-s3",
            "--older-than-days",
            "0",
            "--dry-run",
        ],
    )
    .await;
    assert_eq!(dry.code, 0, "{dry:#?}");
    let report = dry.json();
    let listed: BTreeMap<String, u64> = report["orphans"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| {
            (
                o["key"].as_str().unwrap().to_owned(),
                o["bytes"].as_u64().unwrap(),
            )
        })
        .collect();
    let expected: BTreeMap<String, u64> = orphans
        .iter()
        .map(|(k, v)| (k.to_string(), v.len() as u64))
        .collect();
    assert_eq!(listed, expected, "exactly the orphans, with their sizes");
    let total: u64 = expected.values().sum();
    assert_eq!(report["total_bytes"].as_u64(), Some(total));
    assert_eq!(report["job"]["total_bytes"].as_u64(), Some(total));
    assert_eq!(
        objects(a.storage).await,
        before,
        "a dry run changes nothing"
    );
    let text = photosctl(&a, &["cleanup-s3", "--older-than-days", "0", "--dry-run"]).await;
    assert!(text.stdout.contains("3 orphaned objects"), "{text:#?}");
    assert!(
        text.stdout
            .contains(&format!("({total} bytes) would be deleted")),
        "{text:#?}"
    );

    // The age filter: nothing here is 30 days old.
    let aged = photosctl(&a, &["--json", "cleanup-s3", "--dry-run"]).await;
    assert_eq!(aged.json()["orphans"].as_array().unwrap().len(), 0);

    let real = photosctl(&a, &["--json", "cleanup-s3", "--older-than-days", "0"]).await;
    assert_eq!(real.code, 0, "{real:#?}");
    let job = &real.json()["job"];
    assert_eq!(
        (job["done"].as_u64(), job["failed"].as_u64()),
        (Some(3), Some(0))
    );
    assert_eq!(job["done_bytes"].as_u64(), Some(total));
    let after = objects(a.storage).await;
    let mut expected_after = before.clone();
    for key in orphans.keys() {
        expected_after.remove(*key);
    }
    assert_eq!(after, expected_after, "only the orphans went");
    for key in &referenced {
        assert!(after.contains_key(key), "referenced {key} survived");
    }
    // Every photo still serves its variants.
    assert_eq!(album_photos(a.catalog, &album).await.len(), 3);
    let nothing = photosctl(
        &a,
        &[
            "--json",
            "cleanup-s3",
            "--older-than-days",
            "0",
            "--dry-run",
        ],
    )
    .await;
    assert_eq!(nothing.json()["orphans"].as_array().unwrap().len(), 0);
    t.mesh.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warm_cache_stats_and_the_jobs_commands() {
    let t = start_mesh().await;
    let a = t.mesh.addresses.clone();
    let mut albums = Vec::new();
    for i in 0..3 {
        albums.push(create_album(a.catalog, &format!("album {i}")).await);
    }
    bare_photo(a.catalog, a.storage, &albums[0], 1).await;

    let warm = photosctl(&a, &["--json", "warm-cache", "--force"]).await;
    assert_eq!(warm.code, 0, "{warm:#?}");
    let job = warm.json()["job"].clone();
    assert_eq!(
        (
            job["total"].as_u64(),
            job["done"].as_u64(),
            job["failed"].as_u64()
        ),
        (Some(3), Some(3), Some(0))
    );
    let one = photosctl(&a, &["--json", "warm-cache", "--album", &albums[1]]).await;
    assert_eq!(one.code, 0);
    assert_eq!(one.json()["job"]["total"], 1);
    let missing = photosctl(&a, &["warm-cache", "--album", "31337"]).await;
    assert_eq!(missing.code, 65, "{missing:#?}");

    let stats = photosctl(&a, &["--json", "stats"]).await;
    assert_eq!(stats.code, 0, "{stats:#?}");
    let s = stats.json();
    assert_eq!(s["catalog"]["album_count"], 3);
    assert_eq!(s["catalog"]["photo_count"], 1);
    assert_eq!(s["active_jobs"].as_array().unwrap().len(), 0);
    let text = photosctl(&a, &["stats"]).await;
    assert!(text.stdout.contains("albums   3"), "{text:#?}");

    // jobs list: newest first, filterable.
    let list = photosctl(&a, &["--json", "jobs", "list"]).await;
    assert_eq!(list.code, 0);
    let listed = jobs_of(&list);
    assert_eq!(
        listed.len(),
        2,
        "the failed start never became a job: {listed:#?}"
    );
    assert_eq!(listed[0]["params"]["album_id"], albums[1].as_str());
    let first_id = listed[1]["id"].as_str().unwrap().to_owned();
    let filtered = photosctl(&a, &["--json", "jobs", "list", "--kind", "cleanup-s3"]).await;
    assert!(jobs_of(&filtered).is_empty());
    let succeeded = photosctl(
        &a,
        &[
            "--json",
            "jobs",
            "list",
            "--state",
            "succeeded",
            "--limit",
            "1",
        ],
    )
    .await;
    assert_eq!(jobs_of(&succeeded).len(), 1);

    // jobs show with items; the items are the albums.
    let show = photosctl(&a, &["--json", "jobs", "show", &first_id, "--items"]).await;
    assert_eq!(show.code, 0);
    let keys: BTreeSet<String> = show.json()["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["key"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(keys, albums.iter().cloned().collect());
    let text = photosctl(&a, &["jobs", "show", &first_id]).await;
    assert!(
        text.stdout
            .contains(&format!("job {first_id} warm-cache succeeded: 3/3 done")),
        "{text:#?}"
    );

    // Cancelling a finished job is refused; a queued one is cancelled at once.
    let refused = photosctl(&a, &["jobs", "cancel", &first_id]).await;
    assert_eq!(refused.code, 65, "{refused:#?}");
    assert!(refused.stderr.contains("already succeeded"), "{refused:#?}");
    let unknown = photosctl(&a, &["jobs", "show", "987654"]).await;
    assert_eq!(unknown.code, 65);

    // --no-wait prints the id; jobs watch follows it to the end.
    let started = photosctl(&a, &["warm-cache", "--no-wait"]).await;
    assert_eq!(started.code, 0, "{started:#?}");
    let id = started.stdout.trim().to_owned();
    let watched = photosctl(&a, &["--json", "jobs", "watch", &id]).await;
    assert_eq!(watched.code, 0, "{watched:#?}");
    assert_eq!(watched.json()["job"]["state"], "succeeded");
    t.mesh.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn optimize_images_adds_webp_and_responsive_sizes() {
    let t = start_mesh().await;
    let a = t.mesh.addresses.clone();
    let album = create_album(a.catalog, "optimize").await;
    let photo_id = bare_photo(a.catalog, a.storage, &album, 7).await;
    let run = photosctl(
        &a,
        &[
            "--json",
            "optimize-images",
            "--generate-webp",
            "--responsive",
            "--workers",
            "1",
        ],
    )
    .await;
    assert_eq!(run.code, 0, "{run:#?}");
    assert_eq!(run.json()["job"]["done"], 1);
    let p = album_photos(a.catalog, &album).await.remove(0);
    assert_eq!(p.id, photo_id);
    assert_eq!(p.status, 2, "recorded ready with its metadata");
    assert_eq!((p.width, p.height), (320, 240));
    let formats: BTreeSet<i32> = p.variants.iter().map(|v| v.format).collect();
    assert_eq!(formats, BTreeSet::from([1, 3]), "JPEG and WebP");
    assert!(
        p.variants.iter().filter(|v| v.format == 1).count() >= 2,
        "{:?}",
        p.variants
    );
    t.mesh.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn helm_command_lines_parse() {
    // The chart's CronJobs and migration Job run these exact argument lists.
    for args in [
        vec!["warm-cache", "--help"],
        vec!["cleanup-s3", "--help"],
        vec!["optimize-images", "--help"],
        vec!["migrate", "--help"],
    ] {
        let run = photosctl_at(&[], &args).await;
        assert_eq!(run.code, 0, "{args:?}: {run:#?}");
    }
    // An invalid configuration exits 64 naming the key.
    let mut command = photosctl_command(&[], &["stats"]);
    command.env("PHOTOS__CATALOG__ADDRESS", "catalog:50051");
    let output = command.output().await.unwrap();
    assert_eq!(output.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&output.stderr).contains("catalog.address"));
    // Nothing listening: unavailable, not a crash.
    let port = photos_testkit::ports::free_port(None);
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let mut command = photosctl_command(&[("--catalog", addr)], &["jobs", "list"]);
    command.env("PHOTOS__CATALOG__REQUEST_TIMEOUT_MS", "500");
    let output = command.output().await.unwrap();
    assert_eq!(output.status.code(), Some(69), "{output:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_applies_the_catalog_and_job_schemas_once() {
    let db = photos_testkit::postgres::TestDatabase::create()
        .await
        .unwrap();
    for _ in 0..2 {
        let mut command = photosctl_command(&[], &["--json", "migrate"]);
        command.env("PHOTOS__DATABASE__URL", db.url());
        let output = command.output().await.unwrap();
        assert_eq!(output.status.code(), Some(0), "{output:?}");
        let report: Value = serde_json::from_slice(&output.stdout).unwrap();
        assert_eq!(report["backend"], "postgres");
    }
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect(db.url()).await.unwrap();
    for table in ["albums", "photos", "photo_variants", "jobs", "job_items"] {
        let found: Option<(String,)> = sqlx::query_as(
            "SELECT table_name::text FROM information_schema.tables WHERE table_name = $1",
        )
        .bind(table)
        .fetch_optional(&mut conn)
        .await
        .unwrap();
        assert!(found.is_some(), "{table} exists");
    }
    let _ = conn.close().await;
    // An unreachable database is a failed run, not a hang or a crash.
    let mut command = photosctl_command(&[], &["migrate"]);
    let port = photos_testkit::ports::free_port(None);
    command.env(
        "PHOTOS__DATABASE__URL",
        format!("postgres://postgres@127.0.0.1:{port}/nowhere"),
    );
    let output = command.output().await.unwrap();
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    assert!(String::from_utf8_lossy(&output.stderr).contains("migration failed"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cleanup_s3_archive_keeps_orphans_instead_of_deleting_them() {
    // The embedded object store (s3s-fs) accepts storage-class changes but does not keep them,
    // so the class itself is not observable here; storage's own tests check GLACIER on moto and
    // SeaweedFS. What is checked: archiving goes through without deleting anything.
    let t = start_mesh().await;
    let a = t.mesh.addresses.clone();
    let album = create_album(a.catalog, "keep").await;
    bare_photo(a.catalog, a.storage, &album, 1).await;
    put_object(a.storage, "originals/lost/old.jpg", &photo(2, 64, 48)).await;
    let before = objects(a.storage).await;
    let run = photosctl(
        &a,
        &[
            "--json",
            "cleanup-s3",
            "--older-than-days",
            "0",
            "--archive",
        ],
    )
    .await;
    assert_eq!(run.code, 0, "{run:#?}");
    let job = &run.json()["job"];
    assert_eq!(
        (job["done"].as_u64(), job["failed"].as_u64()),
        (Some(1), Some(0))
    );
    assert_eq!(job["params"]["archive"], true);
    let after = objects(a.storage).await;
    assert_eq!(
        after.keys().collect::<Vec<_>>(),
        before.keys().collect::<Vec<_>>(),
        "nothing deleted"
    );
    t.mesh.shutdown().await.unwrap();
}
