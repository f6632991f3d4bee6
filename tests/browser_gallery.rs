//! The gallery, album and admin pages in headless Chromium (Playwright) against the real mesh:
//! the gallery renders, images below the fold wait for scrolling, WebP is chosen, placeholders
//! show until images load, keyset "load more", and an upload through the admin page appears
//! in the album. The assertions live in tests/browser/gallery.mjs; screenshots are kept.
//!
//! Needs node, npm `playwright-core` (PHOTOS_PLAYWRIGHT_DIR, default the test tools directory
//! scripts/test installs it into) and Debian's chromium (PHOTOS_CHROMIUM, default
//! /usr/bin/chromium). Missing ones fail the test: a browser test that did not run did not pass.
// Where the screenshots are and what the browser did are this test's report.
#![allow(clippy::print_stdout)]

mod common;

use std::path::{Path, PathBuf};

use common::*;
use photos_gateway::auth::Role;

/// Photos seeded: more than a page (24) so "load more" has work, and enough that the end of
/// the first page is far below the fold of a phone-sized viewport.
const PHOTOS: u8 = 30;
const TITLE: &str = "Browser test album";

fn playwright_dir() -> PathBuf {
    std::env::var_os("PHOTOS_PLAYWRIGHT_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let cache = std::env::var_os("XDG_CACHE_HOME")
                .map(PathBuf::from)
                .unwrap_or_else(|| {
                    PathBuf::from(std::env::var_os("HOME").expect("HOME is set")).join(".cache")
                });
            cache.join("photos/tools")
        })
}

/// Everything the browser run needs, or a panic saying how to get it.
fn prerequisites() -> (PathBuf, PathBuf) {
    let node = std::process::Command::new("node").arg("--version").output();
    assert!(
        node.is_ok_and(|o| o.status.success()),
        "node is not installed: the browser test cannot run (scripts/test installs it; or apt-get install nodejs npm)"
    );
    let dir = playwright_dir();
    assert!(
        dir.join("node_modules/playwright-core/package.json")
            .is_file(),
        "playwright-core is not installed in {}: run scripts/test, or `npm install playwright-core` there, or set PHOTOS_PLAYWRIGHT_DIR",
        dir.display()
    );
    let chromium = std::env::var_os("PHOTOS_CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"));
    assert!(
        chromium.is_file(),
        "{} is missing: apt-get install chromium (scripts/test does), or set PHOTOS_CHROMIUM",
        chromium.display()
    );
    (dir, chromium)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gallery_album_and_admin_pages_in_chromium() {
    let (playwright, chromium) = prerequisites();
    let env = Env::start().await;
    let owner = env.token("olga", Role::Owner);
    let (status, _, album) = env
        .call(
            "POST",
            "/api/v1/albums",
            Some(&owner),
            Some(&format!(r#"{{"title":"{TITLE}","is_published":true}}"#)),
        )
        .await;
    assert_eq!(status, 201, "{album}");
    let album = album["id"].as_str().unwrap().to_owned();
    for seed in 0..PHOTOS {
        let (status, _, photo) = env
            .upload(
                &album,
                Some(&owner),
                &[],
                &form(&[], Some(&jpeg(640, 480, seed))),
            )
            .await;
        assert_eq!(status, 201, "photo {seed}: {photo}");
    }

    let upload = env.dir.path().join("from-admin.jpg");
    std::fs::write(&upload, jpeg(800, 600, 201)).unwrap();
    let artifacts = Path::new(env!("CARGO_TARGET_TMPDIR")).join("browser");
    std::fs::create_dir_all(&artifacts).unwrap();
    println!("screenshots go to {}", artifacts.display());

    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("browser/gallery.mjs");
    let mut command = std::process::Command::new("node");
    command
        .arg(script)
        .env(
            "PHOTOS_GATEWAY",
            format!("http://{}", env.mesh.addresses.gateway),
        )
        .env("PHOTOS_ALBUM_ID", &album)
        .env("PHOTOS_ALBUM_TITLE", TITLE)
        .env("PHOTOS_ADMIN_TOKEN", env.token("root", Role::Admin))
        .env("PHOTOS_UPLOAD_FILE", &upload)
        .env("PHOTOS_ARTIFACTS", &artifacts)
        .env("PHOTOS_PLAYWRIGHT_DIR", &playwright)
        .env("PHOTOS_CHROMIUM", &chromium);
    // The mesh serves from this runtime's workers, so the browser run waits off them.
    let output = tokio::task::spawn_blocking(move || command.output())
        .await
        .unwrap()
        .expect("run node");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!("{stdout}");
    eprintln!("{stderr}");
    assert!(output.status.success(), "the browser run failed:\n{stderr}");
    for shot in ["gallery.png", "album.png", "admin.png"] {
        assert!(artifacts.join(shot).is_file(), "{shot} was not saved");
    }
    // The admin upload went through the API: the album now has one more photo.
    let (status, _, detail) = env
        .call("GET", &format!("/api/v1/albums/{album}"), None, None)
        .await;
    assert_eq!(status, 200);
    assert_eq!(detail["album"]["photo_count"], i64::from(PHOTOS) + 1);
}
