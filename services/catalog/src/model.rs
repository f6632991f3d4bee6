//! Rows as the database returns them (JSON built in SQL, see `store`), and the inputs of writes.
//! Rows are also what the read-through cache stores (postcard, see `cache`).

use serde::{Deserialize, Deserializer, Serialize};

/// SQLite has no boolean type: JSON built there carries 0/1 where Postgres has true/false.
/// The cache's binary format is not self-describing (and always holds a real bool).
fn flexible_bool<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    if !d.is_human_readable() {
        return bool::deserialize(d);
    }
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum B {
        Bool(bool),
        Int(i64),
    }
    Ok(match B::deserialize(d)? {
        B::Bool(b) => b,
        B::Int(i) => i != 0,
    })
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct VariantRow {
    pub preset: String,
    pub format: i32,
    pub object_key: String,
    pub width: i64,
    pub height: i64,
    pub bytes: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PreviewRow {
    pub id: i64,
    pub order: i64,
    pub created_at: i64,
    pub dominant_color: String,
    pub blur_placeholder: String,
    pub thumbnail: Option<VariantRow>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AlbumRow {
    pub id: i64,
    pub title: String,
    pub description: String,
    pub owner_id: String,
    #[serde(deserialize_with = "flexible_bool")]
    pub is_published: bool,
    pub order: i64,
    pub cover_photo_id: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
    pub photo_count: i64,
    pub previews: Vec<PreviewRow>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PhotoRow {
    pub id: i64,
    pub album_id: i64,
    pub title: String,
    pub caption: String,
    pub order: i64,
    pub original_key: String,
    pub content_sha256: String,
    pub width: i64,
    pub height: i64,
    pub bytes: i64,
    pub format: i32,
    pub taken_at: Option<i64>,
    pub dominant_color: String,
    pub blur_placeholder: String,
    pub blurhash: String,
    pub thumbhash: String,
    pub status: i32,
    pub failure_reason: String,
    pub created_at: i64,
    pub updated_at: i64,
    pub variants: Vec<VariantRow>,
}

/// The object keys one photo references (original and variants).
#[derive(Debug, Clone, Deserialize)]
pub struct PhotoKeys {
    pub id: i64,
    pub album_id: i64,
    pub original: String,
    pub variants: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Totals {
    pub album_count: i64,
    pub published_album_count: i64,
    pub photo_count: i64,
    pub pending_photo_count: i64,
    pub failed_photo_count: i64,
    pub original_bytes: i64,
    pub variant_bytes: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AlbumStatsRow {
    pub album_id: i64,
    pub title: String,
    pub photo_count: i64,
    pub original_bytes: i64,
    pub variant_bytes: i64,
}

#[derive(Debug, Clone, Default)]
pub struct NewAlbum {
    pub title: String,
    pub description: String,
    pub owner_id: String,
    pub is_published: bool,
    pub order: i32,
}

#[derive(Debug, Clone, Default)]
pub struct AlbumPatch {
    pub title: Option<String>,
    pub description: Option<String>,
    pub is_published: Option<bool>,
    pub order: Option<i32>,
    /// `Some(None)` clears the cover.
    pub cover_photo_id: Option<Option<String>>,
}

#[derive(Debug, Clone, Default)]
pub struct NewPhoto {
    pub album_id: String,
    pub title: String,
    pub caption: String,
    pub original_key: String,
    pub content_sha256: String,
    pub bytes: u64,
    pub format: i32,
}

#[derive(Debug, Clone, Default)]
pub struct PhotoPatch {
    pub title: Option<String>,
    pub caption: Option<String>,
    pub order: Option<i32>,
}

#[derive(Debug, Clone, Default)]
pub struct MediaResult {
    pub photo_id: String,
    pub status: i32,
    pub failure_reason: String,
    pub width: u32,
    pub height: u32,
    pub taken_at: Option<i64>,
    pub dominant_color: String,
    pub blur_placeholder: String,
    pub blurhash: String,
    pub thumbhash: String,
    pub variants: Vec<VariantRow>,
}

#[derive(Debug, Clone, Default)]
pub struct AlbumQuery {
    pub published_only: bool,
    pub owner_id: String,
    pub page_size: i32,
    pub page_token: String,
    pub preview_count: i32,
}

/// One page and the token of the next (empty on the last page).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_page_token: String,
}
