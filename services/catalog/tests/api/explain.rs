//! Postgres only: over a seeded catalog (≥ 10k photos, statistics analysed) the list queries
//! use the seed's indexes, never a sequential scan of photos or albums.

use photos_catalog::CatalogConfig;
use photos_catalog::catalog::Catalog;
use photos_catalog::model::AlbumQuery;
use photos_catalog::store::Store;
use photos_catalog::token::{Position, TokenKey};
use photos_runtime::Secret;

use crate::helpers::{Backend, spawn_app};

const SEED_PHOTO_INDEXES: [&str; 3] = [
    "photos_album_order_created_idx",
    "photos_album_created_idx",
    "photos_album_order_idx",
];

/// No sequential scan of photos or albums, and at least one of `expected` in the plan.
fn assert_indexed(name: &str, plan: &str, expected: &[&str]) {
    eprintln!("{name}:\n{plan}\n");
    for table in ["photos", "albums"] {
        assert!(
            !plan.contains(&format!("Seq Scan on {table}")),
            "{name}: sequential scan on {table}:\n{plan}"
        );
    }
    assert!(
        expected.iter().any(|index| plan.contains(index)),
        "{name}: expected one of {expected:?}:\n{plan}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_list_queries_use_the_seed_indexes() {
    let app = spawn_app(Backend::Postgres).await;
    app.seed(250, 48).await; // 12,000 photos
    let mut config = CatalogConfig::default().database;
    config.url = Secret::new(app.url.clone());
    let store = Store::connect_lazy(&config).unwrap();
    let catalog = Catalog::new(store.clone(), TokenKey::new(b"explain"));
    let mid = Some(Position {
        order: 1,
        created_at: 1_000_000_000_100,
        id: 100,
    });
    for (published_only, index) in [
        (true, "albums_published_order_created_idx"),
        (false, "albums_order_idx"),
    ] {
        for after in [None, mid] {
            let q = AlbumQuery {
                published_only,
                preview_count: 4,
                ..Default::default()
            };
            let plan = store
                .explain(&catalog.list_albums_statement(&q, after, 21))
                .await
                .unwrap();
            let name = format!("list albums published={published_only} after={after:?}");
            assert_indexed(&name, &plan, &[index]);
            // Previews and counts come from the photos (album, ...) indexes.
            assert_indexed(&name, &plan, &SEED_PHOTO_INDEXES);
        }
    }
    for after in [None, mid] {
        let plan = store
            .explain(&catalog.list_photos_statement(100, after, 51))
            .await
            .unwrap();
        assert_indexed("list photos", &plan, &SEED_PHOTO_INDEXES);
    }
    let plan = store
        .explain(&catalog.list_recent_statement(true, None, 51))
        .await
        .unwrap();
    assert_indexed("recent photos", &plan, &["photos_created_idx"]);
}
