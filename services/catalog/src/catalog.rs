//! The catalog's operations and their SQL. Reads are one statement per page (counts, previews
//! and variants are nested in the row as JSON); the gRPC layer caches their responses (see
//! `cache`). Writes that read before they write run in a transaction so a failure leaves
//! nothing half-written, and bump the cache scopes they affect right after they commit.

use std::collections::HashSet;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::de::DeserializeOwned;

use crate::cache::CatalogCache;
use crate::error::CatalogError;
use crate::model::*;
use crate::store::{Arg, Dialect, Statement, Store, Tx};
use crate::token::{Position, TokenKey};

pub const MAX_TITLE_CHARS: usize = 200;
pub const MAX_TEXT_CHARS: usize = 5_000;
pub const MAX_KEY_BYTES: usize = 1_024;
pub const DEFAULT_ALBUM_PAGE: i32 = 20;
pub const DEFAULT_PHOTO_PAGE: i32 = 50;
pub const MAX_PAGE: i32 = 100;
pub const MAX_PREVIEWS: i32 = 4;
/// Bounds the statement size (and the IN list) of batch writes.
pub const MAX_BATCH_IDS: usize = 1_000;
pub const MAX_VARIANTS: usize = 32;
/// Headroom over the contract's 1 KiB blur placeholder, so an encoder's rounding is not fatal.
pub const MAX_PLACEHOLDER_BYTES: usize = 4_096;
const STATUS_PENDING: i32 = 1;
const STATUS_FAILED: i32 = 3;
const KEYS_PAGE: i64 = 500;
const STATS_ALBUMS: i64 = 1_000;

type Result<T> = std::result::Result<T, CatalogError>;

fn now_micros() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0)
}

fn parse<T: DeserializeOwned>(row: &str) -> Result<T> {
    Ok(serde_json::from_str(row)?)
}

fn parse_all<T: DeserializeOwned>(rows: &[String]) -> Result<Vec<T>> {
    rows.iter().map(|r| parse(r)).collect()
}

/// Ids are positive integers in decimal; anything else cannot name a row.
pub fn parse_id(what: &'static str, id: &str) -> Result<i64> {
    if id.is_empty() {
        return Err(CatalogError::invalid(format!("{what} id is required")));
    }
    id.parse::<i64>()
        .ok()
        .filter(|v| *v > 0)
        .ok_or_else(|| CatalogError::not_found(what, id.chars().take(64).collect::<String>()))
}

fn check_title(field: &str, title: &str, required: bool) -> Result<()> {
    if required && title.trim().is_empty() {
        return Err(CatalogError::invalid(format!("{field} must not be empty")));
    }
    check_len(field, title, MAX_TITLE_CHARS)
}

fn check_len(field: &str, value: &str, max: usize) -> Result<()> {
    let n = value.chars().count();
    if n > max {
        return Err(CatalogError::invalid(format!(
            "{field} is {n} characters; the limit is {max}"
        )));
    }
    Ok(())
}

fn check_order(field: &str, order: i32) -> Result<()> {
    if order < 0 {
        return Err(CatalogError::invalid(format!(
            "{field} must be 0 or greater, got {order}"
        )));
    }
    Ok(())
}

fn page_size(requested: i32, default: i32) -> Result<i64> {
    match requested {
        n if n < 0 => Err(CatalogError::invalid(format!(
            "page_size must be 0 (server default) or positive, got {n}"
        ))),
        0 => Ok(default.into()),
        n => Ok(n.min(MAX_PAGE).into()),
    }
}

/// An object key the catalog records: storage decides which prefixes it manages, but a key that
/// could climb out of its folder (or is not a key at all) is refused here too, so no row ever
/// points at something storage would refuse to touch.
fn check_key(field: &str, key: &str) -> Result<()> {
    if key.is_empty() || key.len() > MAX_KEY_BYTES {
        return Err(CatalogError::invalid(format!(
            "{field} must be 1 to {MAX_KEY_BYTES} bytes"
        )));
    }
    let problem = if key.starts_with('/') || key.starts_with('\\') {
        Some("is absolute")
    } else if key.chars().any(char::is_control) {
        Some("contains a control character")
    } else if key.split(['/', '\\']).any(|s| s == "." || s == "..") {
        Some("contains a '.' or '..' path segment")
    } else if key.contains("//") {
        Some("contains an empty path segment")
    } else {
        None
    };
    match problem {
        Some(p) => Err(CatalogError::invalid(format!(
            "{field} {:?} {p}",
            key.chars().take(64).collect::<String>()
        ))),
        None => Ok(()),
    }
}

fn check_ids(field: &str, ids: &[String]) -> Result<Vec<i64>> {
    if ids.is_empty() {
        return Err(CatalogError::invalid(format!("{field} must not be empty")));
    }
    if ids.len() > MAX_BATCH_IDS {
        return Err(CatalogError::invalid(format!(
            "{field} has {} ids; the limit per call is {MAX_BATCH_IDS}",
            ids.len()
        )));
    }
    let mut seen = HashSet::new();
    let mut parsed = Vec::with_capacity(ids.len());
    for id in ids {
        let n = parse_id("album", id)?;
        if !seen.insert(n) {
            return Err(CatalogError::invalid(format!("{field} lists {id} twice")));
        }
        parsed.push(n);
    }
    Ok(parsed)
}

/// `$a, $b, ...` for an IN list.
fn in_list(stmt: &mut Statement, ids: &[i64]) -> String {
    ids.iter()
        .map(|id| stmt.arg(Arg::I64(*id)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// SQL fragments shared by the queries of one dialect.
struct Json(Dialect);

impl Json {
    fn variant(&self) -> String {
        self.0.object(&[
            ("preset", "v.preset"),
            ("format", "v.format"),
            ("object_key", "v.object_key"),
            ("width", "v.width"),
            ("height", "v.height"),
            ("bytes", "v.bytes"),
        ])
    }

    /// A photo (alias `p`) with all its variants.
    fn photo(&self) -> String {
        let d = self.0;
        let variants = d.json_subquery(&format!(
            "SELECT {} FROM photo_variants v WHERE v.photo_id = p.id",
            d.array_agg(&self.variant(), "v.preset, v.format")
        ));
        d.object(&[
            ("id", "p.id"),
            ("album_id", "p.album_id"),
            ("title", "p.title"),
            ("caption", "p.caption"),
            ("order", "p.\"order\""),
            ("original_key", "p.original_key"),
            ("content_sha256", "p.content_sha256"),
            ("width", "p.width"),
            ("height", "p.height"),
            ("bytes", "p.bytes"),
            ("format", "p.format"),
            ("taken_at", "p.taken_at"),
            ("dominant_color", "p.dominant_color"),
            ("blur_placeholder", "p.blur_placeholder"),
            ("blurhash", "p.blurhash"),
            ("thumbhash", "p.thumbhash"),
            ("status", "p.status"),
            ("failure_reason", "p.failure_reason"),
            ("created_at", "p.created_at"),
            ("updated_at", "p.updated_at"),
            ("variants", &variants),
        ])
    }

    /// An album (alias `a`) with its photo count and first `previews` photos, each with its
    /// thumbnail: correlated subqueries, so the whole page stays one statement and each album
    /// costs index lookups on photos (album_id, ...) and photo_variants' primary key.
    fn album(&self, previews: &str) -> String {
        let d = self.0;
        let thumbnail = d.json_subquery(&format!(
            "SELECT {} FROM photo_variants v WHERE v.photo_id = pp.id AND v.preset = 'thumbnail' \
             ORDER BY v.format LIMIT 1",
            self.variant()
        ));
        let preview = d.object(&[
            ("id", "pp.id"),
            ("order", "pp.\"order\""),
            ("created_at", "pp.created_at"),
            ("dominant_color", "pp.dominant_color"),
            ("blur_placeholder", "pp.blur_placeholder"),
            ("thumbnail", &thumbnail),
        ]);
        let previews = d.json_subquery(&format!(
            "SELECT {} FROM (SELECT p2.id, p2.\"order\", p2.created_at, p2.dominant_color, \
             p2.blur_placeholder FROM photos p2 WHERE p2.album_id = a.id \
             ORDER BY p2.\"order\", p2.created_at DESC, p2.id DESC LIMIT {previews}) pp",
            d.array_agg(&preview, "pp.\"order\", pp.created_at DESC, pp.id DESC")
        ));
        d.object(&[
            ("id", "a.id"),
            ("title", "a.title"),
            ("description", "a.description"),
            ("owner_id", "a.owner_id"),
            ("is_published", "a.is_published"),
            ("order", "a.\"order\""),
            ("cover_photo_id", "a.cover_photo_id"),
            ("created_at", "a.created_at"),
            ("updated_at", "a.updated_at"),
            (
                "photo_count",
                "(SELECT count(*) FROM photos c WHERE c.album_id = a.id)",
            ),
            ("previews", &previews),
        ])
    }

    fn keys(&self) -> String {
        let d = self.0;
        let variants = d.json_subquery(&format!(
            "SELECT {} FROM photo_variants v WHERE v.photo_id = p.id",
            d.array_agg("v.object_key", "v.preset, v.format")
        ));
        d.object(&[
            ("id", "p.id"),
            ("album_id", "p.album_id"),
            ("original", "p.original_key"),
            ("variants", &variants),
        ])
    }
}

/// Losing the connection while a write was in flight (an I/O error, or the server ending the
/// session as it stops) leaves unknown whether it committed.
fn may_have_committed(e: &sqlx::Error) -> bool {
    !matches!(e, sqlx::Error::PoolTimedOut) && crate::error::lost_database(e)
}

/// `col_order >= o AND (col_order > o OR created < c OR (created = c AND id < i))`: rows after
/// `pos` in (order ASC, created_at DESC, id DESC). The leading `>=` is redundant logically but
/// lets the planner turn it into an index range instead of a filter.
fn after_ordered(stmt: &mut Statement, alias: &str, pos: Position) {
    let o = stmt.arg(Arg::I64(pos.order));
    let c = stmt.arg(Arg::I64(pos.created_at));
    let i = stmt.arg(Arg::I64(pos.id));
    stmt.push(&format!(
        " AND {alias}.\"order\" >= {o} AND ({alias}.\"order\" > {o} OR {alias}.created_at < {c} \
         OR ({alias}.created_at = {c} AND {alias}.id < {i}))"
    ));
}

#[derive(Clone, Debug)]
pub struct Catalog {
    store: Store,
    tokens: TokenKey,
    cache: CatalogCache,
}

impl Catalog {
    /// A catalog without caching; see [`Catalog::with_cache`].
    pub fn new(store: Store, tokens: TokenKey) -> Self {
        Self {
            store,
            tokens,
            cache: CatalogCache::default(),
        }
    }

    pub fn with_cache(self, cache: CatalogCache) -> Self {
        Self { cache, ..self }
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn cache(&self) -> &CatalogCache {
        &self.cache
    }

    /// Called with the outcome of a write's committing statement: bumps the cache scopes of
    /// `albums` (and of every list) when it committed, or may have (an I/O error while
    /// committing leaves that unknown), before the write returns.
    async fn after_commit<T>(
        &self,
        albums: &[i64],
        outcome: std::result::Result<T, sqlx::Error>,
    ) -> std::result::Result<T, sqlx::Error> {
        if outcome.as_ref().err().is_none_or(may_have_committed) {
            self.cache.albums_changed(albums.iter().copied()).await;
        }
        outcome
    }

    fn json(&self) -> Json {
        Json(self.store.dialect())
    }

    fn as_text(&self, expr: &str) -> String {
        self.store.dialect().as_text(expr)
    }

    // ---- albums ----

    pub async fn create_album(&self, new: NewAlbum) -> Result<AlbumRow> {
        check_title("title", &new.title, true)?;
        check_len("description", &new.description, MAX_TEXT_CHARS)?;
        check_len("owner_id", &new.owner_id, MAX_TITLE_CHARS)?;
        check_order("order", new.order)?;
        let now = now_micros();
        let mut s = Statement::new();
        let values = [
            s.arg(Arg::Text(new.title)),
            s.arg(Arg::Text(new.description)),
            s.arg(Arg::Text(new.owner_id)),
            s.arg(Arg::Bool(new.is_published)),
            s.arg(Arg::I64(new.order.into())),
            s.arg(Arg::I64(now)),
        ];
        let d = self.store.dialect();
        // A new album has no photos: the row is built without the count/preview subqueries.
        let row = d.object(&[
            ("id", "id"),
            ("title", "title"),
            ("description", "description"),
            ("owner_id", "owner_id"),
            ("is_published", "is_published"),
            ("order", "\"order\""),
            ("cover_photo_id", "cover_photo_id"),
            ("created_at", "created_at"),
            ("updated_at", "updated_at"),
            ("photo_count", "0"),
            (
                "previews",
                if d == Dialect::Postgres {
                    "'[]'::json"
                } else {
                    "json('[]')"
                },
            ),
        ]);
        s.push(&format!(
            "INSERT INTO albums (title, description, owner_id, is_published, \"order\", created_at, \
             updated_at) VALUES ({}, {}, {}, {}, {}, {}, {}) RETURNING {}",
            values[0], values[1], values[2], values[3], values[4], values[5], values[5],
            self.as_text(&row)
        ));
        let row = self
            .after_commit(&[], self.store.optional(&s).await)
            .await?;
        parse(&row.ok_or_else(|| CatalogError::invalid("album was not created"))?)
    }

    fn album_statement(&self, id: i64, previews: i32) -> Statement {
        let mut s = Statement::new();
        let id = s.arg(Arg::I64(id));
        let album = self.json().album(&previews.to_string());
        s.push(&format!(
            "SELECT {} FROM albums a WHERE a.id = {id}",
            self.as_text(&album)
        ));
        s
    }

    async fn fetch_album(&self, id: i64) -> Result<AlbumRow> {
        let row = self
            .store
            .optional(&self.album_statement(id, MAX_PREVIEWS))
            .await?;
        parse(&row.ok_or_else(|| CatalogError::not_found("album", id))?)
    }

    /// The album (count, previews) and the first page of its photos: two statements.
    pub async fn get_album(
        &self,
        id: &str,
        photo_page_size: i32,
    ) -> Result<(AlbumRow, Page<PhotoRow>)> {
        let id = parse_id("album", id)?;
        let size = page_size(photo_page_size, DEFAULT_PHOTO_PAGE)?;
        let album = self.fetch_album(id).await?;
        let photos = self.photo_page(id, size, None).await?;
        Ok((album, photos))
    }

    pub async fn update_album(&self, id: &str, patch: AlbumPatch) -> Result<AlbumRow> {
        let id = parse_id("album", id)?;
        let mut s = Statement::new();
        let mut sets = Vec::new();
        if let Some(title) = patch.title {
            check_title("title", &title, true)?;
            sets.push(format!("title = {}", s.arg(Arg::Text(title))));
        }
        if let Some(description) = patch.description {
            check_len("description", &description, MAX_TEXT_CHARS)?;
            sets.push(format!("description = {}", s.arg(Arg::Text(description))));
        }
        if let Some(published) = patch.is_published {
            sets.push(format!("is_published = {}", s.arg(Arg::Bool(published))));
        }
        if let Some(order) = patch.order {
            check_order("order", order)?;
            sets.push(format!("\"order\" = {}", s.arg(Arg::I64(order.into()))));
        }
        let mut cover = None;
        match patch.cover_photo_id {
            Some(Some(photo)) => {
                let photo_id = parse_id("photo", &photo)?;
                cover = Some(photo_id);
                sets.push(format!("cover_photo_id = {}", s.arg(Arg::I64(photo_id))));
            }
            Some(None) => sets.push("cover_photo_id = NULL".into()),
            None => {}
        }
        if sets.is_empty() {
            return Err(CatalogError::invalid(
                "update_mask must name at least one of title, description, is_published, order, cover_photo_id",
            ));
        }
        sets.push(format!("updated_at = {}", s.arg(Arg::I64(now_micros()))));
        let id_arg = s.arg(Arg::I64(id));
        s.push(&format!(
            "UPDATE albums SET {} WHERE id = {id_arg}",
            sets.join(", ")
        ));
        if let Some(photo_id) = cover {
            // The cover must be one of the album's own photos.
            let p = s.arg(Arg::I64(photo_id));
            s.push(&format!(
                " AND EXISTS (SELECT 1 FROM photos cp WHERE cp.id = {p} AND cp.album_id = {id_arg})"
            ));
        }
        if self
            .after_commit(&[id], self.store.execute(&s).await)
            .await?
            == 0
        {
            let album = self.fetch_album(id).await?;
            if let Some(photo_id) = cover {
                return Err(CatalogError::invalid(format!(
                    "cover_photo_id {photo_id} is not a photo of album {}",
                    album.id
                )));
            }
            return Err(CatalogError::not_found("album", id));
        }
        self.fetch_album(id).await
    }

    /// Deletes the album and (by cascade) its photos and variants; returns every object key
    /// they referenced, for the caller to delete from storage.
    pub async fn delete_album(&self, id: &str) -> Result<Vec<String>> {
        let id = parse_id("album", id)?;
        let for_update = self.store.dialect().for_update();
        let mut tx = self.store.begin().await?;
        // Lock the album so a concurrent CreatePhoto (its foreign-key check needs a share lock
        // on this row) waits, and no photo appears whose keys we did not collect.
        let mut lock = Statement::new();
        let a = lock.arg(Arg::I64(id));
        lock.push(&format!(
            "SELECT CAST(id AS TEXT) FROM albums WHERE id = {a}{for_update}"
        ));
        if tx.optional(&lock).await?.is_none() {
            return Err(CatalogError::not_found("album", id));
        }
        let mut keys = Statement::new();
        let a = keys.arg(Arg::I64(id));
        keys.push(&format!(
            "SELECT {} FROM photos p WHERE p.album_id = {a}{for_update}",
            self.as_text(&self.json().keys())
        ));
        let photos: Vec<PhotoKeys> = parse_all(&tx.rows(&keys).await?)?;
        let mut delete = Statement::new();
        let a = delete.arg(Arg::I64(id));
        delete.push(&format!("DELETE FROM albums WHERE id = {a}"));
        tx.execute(&delete).await?;
        let keys: Vec<String> = photos
            .into_iter()
            .flat_map(|p| std::iter::once(p.original).chain(p.variants))
            .collect();
        let keys = Self::unreferenced(&mut tx, keys).await?;
        self.after_commit(&[id], tx.commit().await).await?;
        Ok(keys)
    }

    /// Of `keys` (just released by a delete in `tx`), those no remaining photo references:
    /// variants are content-addressed, so the same bytes in another album share their keys,
    /// and deleting those objects would break that album's photo.
    async fn unreferenced(tx: &mut Tx<'_>, mut keys: Vec<String>) -> Result<Vec<String>> {
        keys.sort();
        keys.dedup();
        let mut kept = std::collections::HashSet::new();
        // Bounded parameter lists (Postgres allows 65,535 per statement, SQLite 32,766).
        for chunk in keys.chunks(4_000) {
            let mut s = Statement::new();
            let params: Vec<String> = chunk.iter().map(|k| s.arg(Arg::Text(k.clone()))).collect();
            let list = params.join(", ");
            s.push(&format!(
                "SELECT object_key FROM photo_variants WHERE object_key IN ({list}) \
                 UNION SELECT original_key FROM photos WHERE original_key IN ({list})"
            ));
            kept.extend(tx.rows(&s).await?);
        }
        keys.retain(|k| !kept.contains(k));
        Ok(keys)
    }

    fn album_scope(q: &AlbumQuery) -> String {
        format!("albums|{}|{}", q.published_only, q.owner_id)
    }

    /// The list-albums statement for a page: exposed for the EXPLAIN test and the benchmark's
    /// direct-SQL baseline, so both run exactly what the RPC runs.
    pub fn list_albums_statement(
        &self,
        q: &AlbumQuery,
        after: Option<Position>,
        limit: i64,
    ) -> Statement {
        let previews = q.preview_count.clamp(0, MAX_PREVIEWS);
        let mut s = Statement::new();
        s.push(&format!(
            "SELECT {} FROM albums a WHERE TRUE",
            self.as_text(&self.json().album(&previews.to_string()))
        ));
        if q.published_only {
            let p = s.arg(Arg::Bool(true));
            s.push(&format!(" AND a.is_published = {p}"));
        }
        if !q.owner_id.is_empty() {
            let o = s.arg(Arg::Text(q.owner_id.clone()));
            s.push(&format!(" AND a.owner_id = {o}"));
        }
        if let Some(pos) = after {
            after_ordered(&mut s, "a", pos);
        }
        let l = s.arg(Arg::I64(limit));
        s.push(&format!(
            " ORDER BY a.\"order\", a.created_at DESC, a.id DESC LIMIT {l}"
        ));
        s
    }

    /// A page of albums, ordered by `order` then newest first: one statement.
    pub async fn list_albums(&self, mut q: AlbumQuery) -> Result<Page<AlbumRow>> {
        let size = page_size(q.page_size, DEFAULT_ALBUM_PAGE)?;
        if q.preview_count < 0 {
            return Err(CatalogError::invalid(format!(
                "preview_count must be between 0 and {MAX_PREVIEWS}, got {}",
                q.preview_count
            )));
        }
        if q.preview_count == 0 {
            q.preview_count = MAX_PREVIEWS;
        }
        let scope = Self::album_scope(&q);
        let after = self.tokens.decode(&scope, &q.page_token)?;
        // One extra row tells whether a next page exists without a second statement.
        let rows = self
            .store
            .rows(&self.list_albums_statement(&q, after, size + 1))
            .await?;
        let mut albums: Vec<AlbumRow> = parse_all(&rows)?;
        let next_page_token = if albums.len() as i64 > size {
            albums.truncate(size as usize);
            let last = albums.last().expect("page is not empty");
            self.tokens.encode(
                &scope,
                Position {
                    order: last.order,
                    created_at: last.created_at,
                    id: last.id,
                },
            )
        } else {
            String::new()
        };
        Ok(Page {
            items: albums,
            next_page_token,
        })
    }

    /// Sets each album's `order` to its position in `ids`; all or nothing.
    pub async fn reorder_albums(&self, ids: &[String]) -> Result<i32> {
        let ids = check_ids("album_ids", ids)?;
        let mut s = Statement::new();
        let cases = ids
            .iter()
            .enumerate()
            .map(|(pos, id)| {
                let id = s.arg(Arg::I64(*id));
                format!("WHEN {id} THEN {pos}")
            })
            .collect::<Vec<_>>()
            .join(" ");
        let now = s.arg(Arg::I64(now_micros()));
        let list = in_list(&mut s, &ids);
        s.push(&format!(
            "UPDATE albums SET \"order\" = CASE id {cases} END, updated_at = {now} WHERE id IN ({list})"
        ));
        let mut tx = self.store.begin().await?;
        let updated = tx.execute(&s).await?;
        if updated != ids.len() as u64 {
            drop(tx);
            return Err(self.missing_albums(&ids).await);
        }
        self.after_commit(&ids, tx.commit().await).await?;
        Ok(updated as i32)
    }

    async fn missing_albums(&self, ids: &[i64]) -> CatalogError {
        let mut s = Statement::new();
        let list = in_list(&mut s, ids);
        s.push(&format!(
            "SELECT CAST(id AS TEXT) FROM albums WHERE id IN ({list})"
        ));
        match self.store.rows(&s).await {
            Ok(found) => {
                let found: HashSet<String> = found.into_iter().collect();
                let missing: Vec<String> = ids
                    .iter()
                    .map(|i| i.to_string())
                    .filter(|i| !found.contains(i))
                    .collect();
                CatalogError::not_found("album", missing.join(", "))
            }
            Err(e) => e.into(),
        }
    }

    /// Publishes or unpublishes many albums in one statement; unknown ids are reported back.
    pub async fn set_albums_published(
        &self,
        ids: &[String],
        published: bool,
    ) -> Result<(i32, Vec<String>)> {
        let parsed = check_ids("album_ids", ids)?;
        let mut s = Statement::new();
        let p = s.arg(Arg::Bool(published));
        let now = s.arg(Arg::I64(now_micros()));
        let list = in_list(&mut s, &parsed);
        s.push(&format!(
            "UPDATE albums SET is_published = {p}, updated_at = {now} WHERE id IN ({list}) \
             RETURNING CAST(id AS TEXT)"
        ));
        let updated: HashSet<String> = self
            .after_commit(&parsed, self.store.rows(&s).await)
            .await?
            .into_iter()
            .collect();
        let not_found = parsed
            .iter()
            .map(|i| i.to_string())
            .filter(|i| !updated.contains(i))
            .collect();
        Ok((updated.len() as i32, not_found))
    }

    // ---- photos ----

    /// Idempotent on (album, content hash): a re-upload returns the existing photo with
    /// `created == false`. Concurrent duplicates race on the unique constraint; exactly one
    /// inserts and the others read its row.
    pub async fn create_photo(&self, new: NewPhoto) -> Result<(PhotoRow, bool)> {
        let album_id = parse_id("album", &new.album_id)?;
        check_title("title", &new.title, false)?;
        check_len("caption", &new.caption, MAX_TEXT_CHARS)?;
        check_key("original_key", &new.original_key)?;
        let sha = new.content_sha256.to_ascii_lowercase();
        if sha.len() != 64 || !sha.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(CatalogError::invalid(
                "content_sha256 must be 64 hex digits (the SHA-256 of the original bytes)",
            ));
        }
        let bytes = i64::try_from(new.bytes)
            .map_err(|_| CatalogError::invalid("bytes is larger than any stored object"))?;
        let mut s = Statement::new();
        let a = s.arg(Arg::I64(album_id));
        let title = s.arg(Arg::Text(new.title));
        let caption = s.arg(Arg::Text(new.caption));
        let key = s.arg(Arg::Text(new.original_key));
        let hash = s.arg(Arg::Text(sha.clone()));
        let b = s.arg(Arg::I64(bytes));
        let format = s.arg(Arg::I64(new.format.into()));
        let now = s.arg(Arg::I64(now_micros()));
        // The next order is computed in the same statement; MAX("order") + 1 past i32::MAX
        // fails the range check (SQLite) or integer arithmetic (Postgres): OrderOverflow.
        s.push(&format!(
            "INSERT INTO photos (album_id, title, caption, \"order\", original_key, content_sha256, \
             bytes, format, status, created_at, updated_at) \
             SELECT a.id, {title}, {caption}, \
             (SELECT COALESCE(MAX(x.\"order\"), -1) + 1 FROM photos x WHERE x.album_id = a.id), \
             {key}, {hash}, {b}, {format}, {STATUS_PENDING}, {now}, {now} \
             FROM albums a WHERE a.id = {a} \
             ON CONFLICT (album_id, content_sha256) DO NOTHING RETURNING CAST(id AS TEXT)"
        ));
        let inserted = match self
            .after_commit(&[album_id], self.store.optional(&s).await)
            .await
        {
            Ok(row) => row,
            Err(sqlx::Error::Database(e)) if e.is_foreign_key_violation() => {
                // The album was deleted between our read of it and the insert.
                return Err(CatalogError::not_found("album", album_id));
            }
            Err(sqlx::Error::Database(e))
                if e.is_check_violation() || e.code().as_deref() == Some("22003") =>
            {
                return Err(CatalogError::OrderOverflow { album_id });
            }
            Err(e) => return Err(e.into()),
        };
        let mut get = Statement::new();
        let a = get.arg(Arg::I64(album_id));
        let h = get.arg(Arg::Text(sha));
        get.push(&format!(
            "SELECT {} FROM photos p WHERE p.album_id = {a} AND p.content_sha256 = {h}",
            self.as_text(&self.json().photo())
        ));
        match self.store.optional(&get).await? {
            Some(row) => Ok((parse(&row)?, inserted.is_some())),
            // Nothing inserted and nothing there: the album does not exist.
            None => Err(CatalogError::not_found("album", album_id)),
        }
    }

    fn photo_statement(&self, id: i64) -> Statement {
        let mut s = Statement::new();
        let id = s.arg(Arg::I64(id));
        s.push(&format!(
            "SELECT {} FROM photos p WHERE p.id = {id}",
            self.as_text(&self.json().photo())
        ));
        s
    }

    async fn fetch_photo(&self, id: i64) -> Result<PhotoRow> {
        let row = self.store.optional(&self.photo_statement(id)).await?;
        parse(&row.ok_or_else(|| CatalogError::not_found("photo", id))?)
    }

    pub async fn get_photo(&self, id: &str) -> Result<PhotoRow> {
        self.fetch_photo(parse_id("photo", id)?).await
    }

    pub async fn update_photo(&self, id: &str, patch: PhotoPatch) -> Result<PhotoRow> {
        let id = parse_id("photo", id)?;
        let mut s = Statement::new();
        let mut sets = Vec::new();
        if let Some(title) = patch.title {
            check_title("title", &title, false)?;
            sets.push(format!("title = {}", s.arg(Arg::Text(title))));
        }
        if let Some(caption) = patch.caption {
            check_len("caption", &caption, MAX_TEXT_CHARS)?;
            sets.push(format!("caption = {}", s.arg(Arg::Text(caption))));
        }
        if let Some(order) = patch.order {
            check_order("order", order)?;
            sets.push(format!("\"order\" = {}", s.arg(Arg::I64(order.into()))));
        }
        if sets.is_empty() {
            return Err(CatalogError::invalid(
                "update_mask must name at least one of title, caption, order",
            ));
        }
        sets.push(format!("updated_at = {}", s.arg(Arg::I64(now_micros()))));
        let i = s.arg(Arg::I64(id));
        s.push(&format!(
            "UPDATE photos SET {} WHERE id = {i} RETURNING CAST(album_id AS TEXT)",
            sets.join(", ")
        ));
        let album = match self.store.optional(&s).await {
            Ok(Some(album)) => album.parse::<i64>().ok(),
            Ok(None) => return Err(CatalogError::not_found("photo", id)),
            Err(e) => {
                if may_have_committed(&e) {
                    // Its album is unknown here: the lists at least.
                    self.cache.albums_changed([]).await;
                }
                return Err(e.into());
            }
        };
        self.cache.albums_changed(album).await;
        self.fetch_photo(id).await
    }

    /// Deletes the photo and its variants; returns the object keys to delete from storage.
    pub async fn delete_photo(&self, id: &str) -> Result<Vec<String>> {
        let id = parse_id("photo", id)?;
        let mut tx = self.store.begin().await?;
        // Locked so a concurrent RecordMediaResult cannot add a variant whose key we miss.
        let mut keys = Statement::new();
        let i = keys.arg(Arg::I64(id));
        keys.push(&format!(
            "SELECT {} FROM photos p WHERE p.id = {i}{}",
            self.as_text(&self.json().keys()),
            self.store.dialect().for_update()
        ));
        let Some(row) = tx.optional(&keys).await? else {
            return Err(CatalogError::not_found("photo", id));
        };
        let photo: PhotoKeys = parse(&row)?;
        let mut delete = Statement::new();
        let i = delete.arg(Arg::I64(id));
        delete.push(&format!("DELETE FROM photos WHERE id = {i}"));
        tx.execute(&delete).await?;
        let keys = Self::unreferenced(
            &mut tx,
            std::iter::once(photo.original)
                .chain(photo.variants)
                .collect(),
        )
        .await?;
        self.after_commit(&[photo.album_id], tx.commit().await)
            .await?;
        Ok(keys)
    }

    pub fn list_photos_statement(
        &self,
        album_id: i64,
        after: Option<Position>,
        limit: i64,
    ) -> Statement {
        let mut s = Statement::new();
        let a = s.arg(Arg::I64(album_id));
        s.push(&format!(
            "SELECT {} FROM photos p WHERE p.album_id = {a}",
            self.as_text(&self.json().photo())
        ));
        if let Some(pos) = after {
            after_ordered(&mut s, "p", pos);
        }
        let l = s.arg(Arg::I64(limit));
        s.push(&format!(
            " ORDER BY p.\"order\", p.created_at DESC, p.id DESC LIMIT {l}"
        ));
        s
    }

    fn finish_page(
        &self,
        scope: &str,
        mut photos: Vec<PhotoRow>,
        size: i64,
        by_order: bool,
    ) -> Page<PhotoRow> {
        let next_page_token = if photos.len() as i64 > size {
            photos.truncate(size as usize);
            let last = photos.last().expect("page is not empty");
            self.tokens.encode(
                scope,
                Position {
                    order: if by_order { last.order } else { 0 },
                    created_at: last.created_at,
                    id: last.id,
                },
            )
        } else {
            String::new()
        };
        Page {
            items: photos,
            next_page_token,
        }
    }

    async fn photo_page(
        &self,
        album_id: i64,
        size: i64,
        after: Option<Position>,
    ) -> Result<Page<PhotoRow>> {
        let rows = self
            .store
            .rows(&self.list_photos_statement(album_id, after, size + 1))
            .await?;
        Ok(self.finish_page(&format!("photos|{album_id}"), parse_all(&rows)?, size, true))
    }

    /// A page of an album's photos in album order; NOT_FOUND for an unknown album (checked
    /// with a second statement only when the first page comes back empty).
    pub async fn list_photos(
        &self,
        album_id: &str,
        page_size_req: i32,
        token: &str,
    ) -> Result<Page<PhotoRow>> {
        let album_id = parse_id("album", album_id)?;
        let size = page_size(page_size_req, DEFAULT_PHOTO_PAGE)?;
        let after = self.tokens.decode(&format!("photos|{album_id}"), token)?;
        let page = self.photo_page(album_id, size, after).await?;
        if page.items.is_empty() && after.is_none() {
            let mut s = Statement::new();
            let a = s.arg(Arg::I64(album_id));
            s.push(&format!(
                "SELECT CAST(id AS TEXT) FROM albums WHERE id = {a}"
            ));
            if self.store.optional(&s).await?.is_none() {
                return Err(CatalogError::not_found("album", album_id));
            }
        }
        Ok(page)
    }

    pub fn list_recent_statement(
        &self,
        published_only: bool,
        after: Option<Position>,
        limit: i64,
    ) -> Statement {
        let mut s = Statement::new();
        s.push(&format!(
            "SELECT {} FROM photos p",
            self.as_text(&self.json().photo())
        ));
        if published_only {
            let t = s.arg(Arg::Bool(true));
            s.push(&format!(
                " JOIN albums pa ON pa.id = p.album_id AND pa.is_published = {t}"
            ));
        }
        s.push(" WHERE TRUE");
        if let Some(pos) = after {
            let c = s.arg(Arg::I64(pos.created_at));
            let i = s.arg(Arg::I64(pos.id));
            s.push(&format!(
                " AND p.created_at <= {c} AND (p.created_at < {c} OR p.id < {i})"
            ));
        }
        let l = s.arg(Arg::I64(limit));
        s.push(&format!(" ORDER BY p.created_at DESC, p.id DESC LIMIT {l}"));
        s
    }

    /// Newest photos across albums.
    pub async fn list_recent_photos(
        &self,
        page_size_req: i32,
        token: &str,
        published_only: bool,
    ) -> Result<Page<PhotoRow>> {
        let size = page_size(page_size_req, DEFAULT_PHOTO_PAGE)?;
        let scope = format!("recent|{published_only}");
        let after = self.tokens.decode(&scope, token)?;
        let rows = self
            .store
            .rows(&self.list_recent_statement(published_only, after, size + 1))
            .await?;
        Ok(self.finish_page(&scope, parse_all(&rows)?, size, false))
    }

    /// Sets each photo's `order` to its position in `photo_ids`; every id must be a photo of
    /// the album; all or nothing.
    pub async fn reorder_photos(&self, album_id: &str, photo_ids: &[String]) -> Result<i32> {
        let album = parse_id("album", album_id)?;
        if photo_ids.is_empty() || photo_ids.len() > MAX_BATCH_IDS {
            return Err(CatalogError::invalid(format!(
                "photo_ids must list 1 to {MAX_BATCH_IDS} photos"
            )));
        }
        let mut seen = HashSet::new();
        let mut ids = Vec::with_capacity(photo_ids.len());
        for id in photo_ids {
            let n = parse_id("photo", id)?;
            if !seen.insert(n) {
                return Err(CatalogError::invalid(format!("photo_ids lists {id} twice")));
            }
            ids.push(n);
        }
        let mut s = Statement::new();
        let cases = ids
            .iter()
            .enumerate()
            .map(|(pos, id)| format!("WHEN {} THEN {pos}", s.arg(Arg::I64(*id))))
            .collect::<Vec<_>>()
            .join(" ");
        let now = s.arg(Arg::I64(now_micros()));
        let a = s.arg(Arg::I64(album));
        let list = in_list(&mut s, &ids);
        s.push(&format!(
            "UPDATE photos SET \"order\" = CASE id {cases} END, updated_at = {now} \
             WHERE album_id = {a} AND id IN ({list})"
        ));
        let mut tx = self.store.begin().await?;
        let updated = tx.execute(&s).await?;
        if updated != ids.len() as u64 {
            drop(tx);
            self.fetch_album(album).await?;
            return Err(CatalogError::invalid(format!(
                "{} of the photo_ids are not photos of album {album}",
                ids.len() as u64 - updated
            )));
        }
        self.after_commit(&[album], tx.commit().await).await?;
        Ok(updated as i32)
    }

    /// Records what the media service derived: status, dimensions, placeholders, and variants
    /// (upserted by preset and format). One transaction.
    pub async fn record_media_result(&self, r: MediaResult) -> Result<PhotoRow> {
        let id = parse_id("photo", &r.photo_id)?;
        if !(1..=3).contains(&r.status) {
            return Err(CatalogError::invalid(
                "status must be PHOTO_STATUS_PENDING, PHOTO_STATUS_READY or PHOTO_STATUS_FAILED",
            ));
        }
        check_len("failure_reason", &r.failure_reason, MAX_TEXT_CHARS)?;
        let color_ok = r.dominant_color.is_empty()
            || (r.dominant_color.len() == 7
                && r.dominant_color.starts_with('#')
                && r.dominant_color[1..].bytes().all(|b| b.is_ascii_hexdigit()));
        if !color_ok {
            return Err(CatalogError::invalid(
                "placeholders.dominant_color must be #rrggbb",
            ));
        }
        for (field, value) in [
            ("placeholders.blur_data_uri", &r.blur_placeholder),
            ("placeholders.blurhash", &r.blurhash),
            ("placeholders.thumbhash", &r.thumbhash),
        ] {
            if value.len() > MAX_PLACEHOLDER_BYTES {
                return Err(CatalogError::invalid(format!(
                    "{field} is {} bytes; the limit is {MAX_PLACEHOLDER_BYTES}",
                    value.len()
                )));
            }
        }
        if r.variants.len() > MAX_VARIANTS {
            return Err(CatalogError::invalid(format!(
                "{} variants; the limit per call is {MAX_VARIANTS}",
                r.variants.len()
            )));
        }
        let mut seen = HashSet::new();
        for v in &r.variants {
            if v.preset.is_empty() || v.preset.len() > 64 {
                return Err(CatalogError::invalid(
                    "variant preset must be 1 to 64 bytes",
                ));
            }
            check_key("variant object_key", &v.object_key)?;
            if !seen.insert((v.preset.as_str(), v.format)) {
                return Err(CatalogError::invalid(format!(
                    "variant {} format {} is listed twice",
                    v.preset, v.format
                )));
            }
        }
        let now = now_micros();
        let mut update = Statement::new();
        let sets = [
            format!("status = {}", update.arg(Arg::I64(r.status.into()))),
            format!(
                "failure_reason = {}",
                update.arg(Arg::Text(r.failure_reason))
            ),
            format!("width = {}", update.arg(Arg::I64(r.width.into()))),
            format!("height = {}", update.arg(Arg::I64(r.height.into()))),
            format!(
                "taken_at = {}",
                update.arg(r.taken_at.map_or(Arg::NullI64, Arg::I64))
            ),
            format!(
                "dominant_color = {}",
                update.arg(Arg::Text(r.dominant_color))
            ),
            format!(
                "blur_placeholder = {}",
                update.arg(Arg::Text(r.blur_placeholder))
            ),
            format!("blurhash = {}", update.arg(Arg::Text(r.blurhash))),
            format!("thumbhash = {}", update.arg(Arg::Text(r.thumbhash))),
            format!("updated_at = {}", update.arg(Arg::I64(now))),
        ];
        let i = update.arg(Arg::I64(id));
        update.push(&format!(
            "UPDATE photos SET {} WHERE id = {i}",
            sets.join(", ")
        ));
        let mut tx = self.store.begin().await?;
        if tx.execute(&update).await? == 0 {
            return Err(CatalogError::not_found("photo", id));
        }
        if !r.variants.is_empty() {
            let mut upsert = Statement::new();
            let rows = r
                .variants
                .iter()
                .map(|v| {
                    format!(
                        "({}, {}, {}, {}, {}, {}, {})",
                        upsert.arg(Arg::I64(id)),
                        upsert.arg(Arg::Text(v.preset.clone())),
                        upsert.arg(Arg::I64(v.format.into())),
                        upsert.arg(Arg::Text(v.object_key.clone())),
                        upsert.arg(Arg::I64(v.width)),
                        upsert.arg(Arg::I64(v.height)),
                        upsert.arg(Arg::I64(v.bytes)),
                    )
                })
                .collect::<Vec<_>>()
                .join(", ");
            upsert.push(&format!(
                "INSERT INTO photo_variants (photo_id, preset, format, object_key, width, height, bytes) \
                 VALUES {rows} ON CONFLICT (photo_id, preset, format) DO UPDATE SET \
                 object_key = excluded.object_key, width = excluded.width, \
                 height = excluded.height, bytes = excluded.bytes"
            ));
            tx.execute(&upsert).await?;
        }
        let row = tx.optional(&self.photo_statement(id)).await?;
        let photo: PhotoRow = parse(&row.ok_or_else(|| CatalogError::not_found("photo", id))?)?;
        self.after_commit(&[photo.album_id], tx.commit().await)
            .await?;
        Ok(photo)
    }

    /// Photos (not failed) lacking the (preset, format) variant, by id.
    pub async fn list_photos_missing_variant(
        &self,
        preset: &str,
        format: i32,
        album_id: &str,
        page_size_req: i32,
        token: &str,
    ) -> Result<Page<PhotoRow>> {
        if preset.is_empty() {
            return Err(CatalogError::invalid("preset is required, e.g. thumbnail"));
        }
        let album = if album_id.is_empty() {
            None
        } else {
            Some(parse_id("album", album_id)?)
        };
        let size = page_size(page_size_req, DEFAULT_PHOTO_PAGE)?;
        let scope = format!("missing|{preset}|{format}|{album_id}");
        let after = self.tokens.decode(&scope, token)?;
        let mut s = Statement::new();
        let p = s.arg(Arg::Text(preset.to_owned()));
        let f = s.arg(Arg::I64(format.into()));
        s.push(&format!(
            "SELECT {} FROM photos p WHERE p.status <> {STATUS_FAILED} AND NOT EXISTS \
             (SELECT 1 FROM photo_variants mv WHERE mv.photo_id = p.id AND mv.preset = {p} \
             AND mv.format = {f})",
            self.as_text(&self.json().photo())
        ));
        if let Some(album) = album {
            let a = s.arg(Arg::I64(album));
            s.push(&format!(" AND p.album_id = {a}"));
        }
        if let Some(pos) = after {
            let i = s.arg(Arg::I64(pos.id));
            s.push(&format!(" AND p.id > {i}"));
        }
        let l = s.arg(Arg::I64(size + 1));
        s.push(&format!(" ORDER BY p.id LIMIT {l}"));
        let photos: Vec<PhotoRow> = parse_all(&self.store.rows(&s).await?)?;
        Ok(self.finish_page(&scope, photos, size, false))
    }

    /// One batch of object keys: photos with id > `after`, in id order. Returns the keys and
    /// the last photo id (None when done).
    pub async fn object_keys_after(&self, after: i64) -> Result<(Vec<String>, Option<i64>)> {
        let mut s = Statement::new();
        let a = s.arg(Arg::I64(after));
        let l = s.arg(Arg::I64(KEYS_PAGE));
        s.push(&format!(
            "SELECT {} FROM photos p WHERE p.id > {a} ORDER BY p.id LIMIT {l}",
            self.as_text(&self.json().keys())
        ));
        let photos: Vec<PhotoKeys> = parse_all(&self.store.rows(&s).await?)?;
        let last = (photos.len() as i64 == KEYS_PAGE)
            .then(|| photos.last().map(|p| p.id))
            .flatten();
        let keys = photos
            .into_iter()
            .flat_map(|p| std::iter::once(p.original).chain(p.variants))
            .collect();
        Ok((keys, last))
    }

    /// Totals (one statement) and per-album figures for the largest albums (one statement).
    pub async fn stats(&self) -> Result<(Totals, Vec<AlbumStatsRow>)> {
        let d = self.store.dialect();
        let published = if d == Dialect::Postgres {
            "is_published"
        } else {
            "is_published = 1"
        };
        let totals = d.object(&[
            ("album_count", "(SELECT count(*) FROM albums)"),
            (
                "published_album_count",
                &format!("(SELECT count(*) FROM albums WHERE {published})"),
            ),
            ("photo_count", "(SELECT count(*) FROM photos)"),
            (
                "pending_photo_count",
                &format!("(SELECT count(*) FROM photos WHERE status = {STATUS_PENDING})"),
            ),
            (
                "failed_photo_count",
                &format!("(SELECT count(*) FROM photos WHERE status = {STATUS_FAILED})"),
            ),
            (
                "original_bytes",
                "(SELECT COALESCE(SUM(bytes), 0) FROM photos)",
            ),
            (
                "variant_bytes",
                "(SELECT COALESCE(SUM(bytes), 0) FROM photo_variants)",
            ),
        ]);
        let mut t = Statement::new();
        t.push(&format!("SELECT {}", self.as_text(&totals)));
        let totals: Totals = parse(
            &self
                .store
                .optional(&t)
                .await?
                .ok_or_else(|| CatalogError::invalid("no totals"))?,
        )?;
        let per_album = d.object(&[
            ("album_id", "a.id"),
            ("title", "a.title"),
            ("photo_count", "COALESCE(s.photos, 0)"),
            ("original_bytes", "COALESCE(s.bytes, 0)"),
            (
                "variant_bytes",
                "(SELECT COALESCE(SUM(v.bytes), 0) FROM photo_variants v \
                 JOIN photos vp ON vp.id = v.photo_id WHERE vp.album_id = a.id)",
            ),
        ]);
        let mut s = Statement::new();
        let l = s.arg(Arg::I64(STATS_ALBUMS));
        s.push(&format!(
            "SELECT {} FROM albums a LEFT JOIN (SELECT album_id, count(*) AS photos, \
             SUM(bytes) AS bytes FROM photos GROUP BY album_id) s ON s.album_id = a.id \
             ORDER BY COALESCE(s.photos, 0) DESC, a.id LIMIT {l}",
            self.as_text(&per_album)
        ));
        let albums = parse_all(&self.store.rows(&s).await?)?;
        Ok((totals, albums))
    }
}

#[cfg(test)]
mod tests {
    use super::check_key;

    #[test]
    fn recorded_keys_cannot_climb_out_of_their_folder() {
        for ok in [
            "originals/1/abc",
            "variants/ab/x-1x1-t1.webp",
            "k",
            "a..b/c.jpg",
        ] {
            assert!(check_key("original_key", ok).is_ok(), "{ok:?}");
        }
        for bad in [
            "",
            "../originals/a.jpg",
            "originals/../../etc/passwd",
            "/originals/a.jpg",
            "\\originals\\a.jpg",
            "originals/a\\..\\..\\b",
            "originals/./a.jpg",
            "originals//a.jpg",
            "originals/a\u{0}.jpg",
            "originals/a\r\nb",
        ] {
            let e = check_key("original_key", bad).unwrap_err().to_string();
            assert!(e.starts_with("original_key"), "{bad:?}: {e}");
        }
        assert!(check_key("k", &"a".repeat(super::MAX_KEY_BYTES + 1)).is_err());
    }
}
