//! The v1 JSON API: translation between HTTP and the services' gRPC contracts, plus the
//! visibility rules (anonymous and viewers see published albums; owners also their own;
//! admins everything). Hidden albums answer 404, not 403, so ids do not leak.

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use photos_proto::cache_admin::v1 as cache_pb;
use photos_proto::catalog::v1 as pb;
use photos_proto::metrics::v1 as metrics_pb;
use photos_proto::storage::v1 as storage_pb;
use prost::Message;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Instant;

use crate::AppState;
use crate::auth::Principal;
use crate::error::GatewayError;
use crate::rendered::{self, ListingKey};
use crate::sources::{Access, Urls};

type ApiResult<T> = Result<T, GatewayError>;

/// The gateway's own refusal of a body it cannot take (syntax, unknown field, content type,
/// size), with the status axum determined.
fn body<T>(payload: Result<Json<T>, JsonRejection>) -> ApiResult<T> {
    payload
        .map(|Json(v)| v)
        .map_err(|r| GatewayError::Rejected {
            status: r.status().as_u16(),
            message: r.body_text(),
        })
}

fn ts(t: &Option<prost_types::Timestamp>) -> Option<String> {
    t.as_ref().map(ToString::to_string)
}

fn format_name(f: i32) -> &'static str {
    match pb::ImageFormat::try_from(f).unwrap_or(pb::ImageFormat::Unspecified) {
        pb::ImageFormat::Jpeg => "jpeg",
        pb::ImageFormat::Png => "png",
        pb::ImageFormat::Webp => "webp",
        pb::ImageFormat::Gif => "gif",
        pb::ImageFormat::Unspecified => "unknown",
    }
}

#[derive(Debug, Serialize)]
pub struct VariantJson {
    preset: String,
    format: &'static str,
    width: u32,
    height: u32,
    bytes: u64,
    url: String,
}

impl VariantJson {
    fn new(v: pb::Variant, urls: &Urls) -> Self {
        Self {
            url: urls.get(&v.object_key),
            preset: v.preset,
            format: format_name(v.format),
            width: v.width,
            height: v.height,
            bytes: v.bytes,
        }
    }
}

#[derive(Debug, Serialize)]
pub struct PreviewJson {
    id: String,
    order: i32,
    dominant_color: String,
    blur_placeholder: String,
    thumbnail: Option<VariantJson>,
}

#[derive(Debug, Serialize)]
pub struct AlbumJson {
    id: String,
    title: String,
    description: String,
    owner_id: String,
    is_published: bool,
    order: i32,
    cover_photo_id: String,
    photo_count: i64,
    previews: Vec<PreviewJson>,
    created_at: Option<String>,
    updated_at: Option<String>,
}

impl AlbumJson {
    fn new(a: pb::Album, urls: &Urls) -> Self {
        Self {
            created_at: ts(&a.create_time),
            updated_at: ts(&a.update_time),
            id: a.id,
            title: a.title,
            description: a.description,
            owner_id: a.owner_id,
            is_published: a.is_published,
            order: a.order,
            cover_photo_id: a.cover_photo_id,
            photo_count: a.photo_count,
            previews: a
                .previews
                .into_iter()
                .map(|p| PreviewJson {
                    id: p.id,
                    order: p.order,
                    dominant_color: p.dominant_color,
                    blur_placeholder: p.blur_placeholder,
                    thumbnail: p.thumbnail.map(|v| VariantJson::new(v, urls)),
                })
                .collect(),
        }
    }
}

pub(crate) fn access(album: &pb::Album) -> Access {
    if album.is_published {
        Access::Public
    } else {
        Access::Private
    }
}

/// The URLs of albums' preview thumbnails (CDN or signed by publication state).
async fn album_urls(state: &AppState, albums: &[pb::Album]) -> ApiResult<Urls> {
    let wanted: Vec<_> = albums
        .iter()
        .flat_map(|a| {
            a.previews
                .iter()
                .filter_map(|p| p.thumbnail.as_ref())
                .map(move |t| (t.object_key.as_str(), access(a)))
        })
        .collect();
    state.sources.urls(&state.storage, &wanted).await
}

/// Albums as JSON, their preview thumbnails linked.
async fn render_albums(state: &AppState, albums: Vec<pb::Album>) -> ApiResult<Vec<AlbumJson>> {
    let urls = album_urls(state, &albums).await?;
    Ok(albums
        .into_iter()
        .map(|a| AlbumJson::new(a, &urls))
        .collect())
}

/// Photos as JSON with every variant linked; `access` is their album's.
pub(crate) async fn render_photos(
    state: &AppState,
    photos: Vec<pb::Photo>,
    access: Access,
) -> ApiResult<Vec<PhotoJson>> {
    let wanted: Vec<_> = photos
        .iter()
        .flat_map(|p| p.variants.iter().map(|v| (v.object_key.as_str(), access)))
        .collect();
    let urls = state.sources.urls(&state.storage, &wanted).await?;
    Ok(photos
        .into_iter()
        .map(|p| PhotoJson::new(p, &urls))
        .collect())
}

#[derive(Debug, Serialize, Default)]
pub struct PlaceholdersJson {
    dominant_color: String,
    blur_data_uri: String,
    blurhash: String,
    thumbhash: String,
}

#[derive(Debug, Serialize)]
pub struct PhotoJson {
    id: String,
    album_id: String,
    title: String,
    caption: String,
    order: i32,
    width: u32,
    height: u32,
    bytes: u64,
    format: &'static str,
    status: &'static str,
    taken_at: Option<String>,
    placeholders: PlaceholdersJson,
    sources: Vec<VariantJson>,
    /// Per output format, a `srcset` of the variants with the photo's own aspect ratio (cropped
    /// presets such as the square thumbnail are left out), narrowest first.
    srcset: BTreeMap<&'static str, String>,
    created_at: Option<String>,
}

impl PhotoJson {
    fn new(p: pb::Photo, urls: &Urls) -> Self {
        let status =
            match pb::PhotoStatus::try_from(p.status).unwrap_or(pb::PhotoStatus::Unspecified) {
                pb::PhotoStatus::Pending => "pending",
                pb::PhotoStatus::Ready => "ready",
                pb::PhotoStatus::Failed => "failed",
                pb::PhotoStatus::Unspecified => "unknown",
            };
        let mut sources: Vec<VariantJson> = p
            .variants
            .into_iter()
            .map(|v| VariantJson::new(v, urls))
            .collect();
        sources.sort_by(|a, b| (a.format, a.width).cmp(&(b.format, b.width)));
        Self {
            srcset: srcset(&sources, p.width, p.height),
            taken_at: ts(&p.taken_time),
            created_at: ts(&p.create_time),
            format: format_name(p.format),
            status,
            placeholders: p
                .placeholders
                .map(|x| PlaceholdersJson {
                    dominant_color: x.dominant_color,
                    blur_data_uri: x.blur_data_uri,
                    blurhash: x.blurhash,
                    thumbhash: x.thumbhash,
                })
                .unwrap_or_default(),
            sources,
            id: p.id,
            album_id: p.album_id,
            title: p.title,
            caption: p.caption,
            order: p.order,
            width: p.width,
            height: p.height,
            bytes: p.bytes,
        }
    }
}

/// `sources` must be sorted by (format, width).
fn srcset(sources: &[VariantJson], width: u32, height: u32) -> BTreeMap<&'static str, String> {
    let mut sets: BTreeMap<&'static str, String> = BTreeMap::new();
    if width == 0 || height == 0 {
        return sets;
    }
    // Same aspect ratio within 1% (resizes round each side to whole pixels).
    let same_shape = |v: &VariantJson| {
        let (a, b) = (
            u64::from(v.width) * u64::from(height),
            u64::from(v.height) * u64::from(width),
        );
        a.abs_diff(b) * 100 <= a.max(b)
    };
    for v in sources
        .iter()
        .filter(|v| !v.url.is_empty() && same_shape(v))
    {
        let set = sets.entry(v.format).or_default();
        if !set.is_empty() {
            set.push_str(", ");
        }
        set.push_str(&format!("{} {}w", v.url, v.width));
    }
    sets
}

#[derive(Debug, Deserialize)]
pub struct PageQuery {
    page_size: Option<i32>,
    page_token: Option<String>,
    /// Owners: list their own albums, published or not.
    #[serde(default)]
    mine: bool,
}

#[derive(Debug, Serialize)]
pub struct AlbumPage {
    albums: Vec<AlbumJson>,
    next_page_token: String,
}

#[derive(Debug, Serialize)]
pub struct PhotoPage {
    photos: Vec<PhotoJson>,
    next_page_token: String,
}

pub async fn list_albums(
    State(state): State<AppState>,
    principal: Principal,
    Query(query): Query<PageQuery>,
) -> ApiResult<Response> {
    let (published_only, owner_id) = match (&principal, query.mine) {
        (Principal::User { id, .. }, true) => (false, id.clone()),
        (Principal::Anonymous, true) => {
            return Err(GatewayError::Unauthenticated(
                "sign in to list your own albums".into(),
            ));
        }
        _ => (true, String::new()),
    };
    let key = ListingKey {
        published_only,
        owner_id,
        // As the catalog reads it (0 -> its default of 20, above 100 -> 100), so sizes that
        // name the same page share one stored page instead of filling the store with copies.
        page_size: match query.page_size.unwrap_or(20) {
            0 => 20,
            n => n.min(100),
        },
        page_token: query.page_token.unwrap_or_default(),
        preview_count: 4,
    };
    let answer = rendered::list_albums(
        state.catalog_channel.clone(),
        pb::ListAlbumsRequest {
            published_only: key.published_only,
            page_size: key.page_size,
            page_token: key.page_token.clone(),
            preview_count: key.preview_count,
            owner_id: key.owner_id.clone(),
        },
    )
    .await?;
    let page = match state.album_pages.get(&key, &answer, Instant::now()) {
        Some(page) => page,
        None => {
            // What tonic answers when prost cannot decode a message.
            let response = pb::ListAlbumsResponse::decode(answer.clone())
                .map_err(|e| tonic::Status::internal(e.to_string()))?;
            let urls = album_urls(&state, &response.albums).await?;
            let body = serde_json::to_vec(&AlbumPage {
                albums: response
                    .albums
                    .into_iter()
                    .map(|a| AlbumJson::new(a, &urls))
                    .collect(),
                next_page_token: response.next_page_token,
            })
            .map_err(GatewayError::Render)?;
            state.album_pages.insert(
                key,
                // Boxed first: the store weighs `len`, so no spare capacity may ride along.
                rendered::Page::new(answer, urls.reuse_until(), body.into_boxed_slice().into()),
            )
        }
    };
    Ok((
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            ),
            (header::ETAG, page.etag.clone()),
        ],
        page.body.clone(),
    )
        .into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateAlbum {
    title: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    is_published: bool,
    #[serde(default)]
    order: i32,
}

pub async fn create_album(
    State(mut state): State<AppState>,
    principal: Principal,
    payload: Result<Json<CreateAlbum>, JsonRejection>,
) -> ApiResult<Response> {
    let owner = principal.require_owner()?.to_owned();
    let new = body(payload)?;
    let album = state
        .catalog
        .create_album(pb::CreateAlbumRequest {
            title: new.title,
            description: new.description,
            owner_id: owner,
            is_published: new.is_published,
            order: new.order,
        })
        .await?
        .into_inner()
        .album
        .ok_or(GatewayError::Missing("album"))?;
    let location = format!("/api/v1/albums/{}", album.id);
    Ok((
        StatusCode::CREATED,
        [(axum::http::header::LOCATION, location)],
        Json(AlbumJson::new(album, &Urls::default())),
    )
        .into_response())
}

/// The album if `principal` may see it; hidden albums are reported as missing.
async fn visible_album(
    state: &mut AppState,
    principal: &Principal,
    id: &str,
    photo_page_size: i32,
) -> ApiResult<pb::GetAlbumResponse> {
    let response = state
        .catalog
        .get_album(pb::GetAlbumRequest {
            id: id.to_owned(),
            photo_page_size,
        })
        .await?
        .into_inner();
    let album = response
        .album
        .as_ref()
        .ok_or(GatewayError::Missing("album"))?;
    if album.is_published || principal.may_manage(&album.owner_id) {
        Ok(response)
    } else {
        Err(GatewayError::Missing("album"))
    }
}

pub(crate) async fn managed_album(
    state: &mut AppState,
    principal: &Principal,
    id: &str,
) -> ApiResult<pb::Album> {
    if principal == &Principal::Anonymous {
        return Err(GatewayError::Unauthenticated(
            "sign in to change albums".into(),
        ));
    }
    let album = visible_album(state, principal, id, 1)
        .await?
        .album
        .ok_or(GatewayError::Missing("album"))?;
    if principal.may_manage(&album.owner_id) {
        Ok(album)
    } else {
        Err(GatewayError::Forbidden(
            "only the album's owner or an admin can change it",
        ))
    }
}

#[derive(Debug, Serialize)]
pub struct AlbumDetail {
    album: AlbumJson,
    photos: Vec<PhotoJson>,
    next_photo_page_token: String,
}

#[derive(Debug, Deserialize)]
pub struct DetailQuery {
    photo_page_size: Option<i32>,
}

pub async fn get_album(
    State(mut state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
    Query(query): Query<DetailQuery>,
) -> ApiResult<Json<AlbumDetail>> {
    let response = visible_album(
        &mut state,
        &principal,
        &id,
        query.photo_page_size.unwrap_or(0),
    )
    .await?;
    let album = response.album.ok_or(GatewayError::Missing("album"))?;
    let photos = render_photos(&state, response.photos, access(&album)).await?;
    Ok(Json(AlbumDetail {
        album: render_albums(&state, vec![album])
            .await?
            .pop()
            .ok_or(GatewayError::Missing("album"))?,
        photos,
        next_photo_page_token: response.next_photo_page_token,
    }))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateAlbum {
    title: Option<String>,
    description: Option<String>,
    is_published: Option<bool>,
    order: Option<i32>,
    cover_photo_id: Option<String>,
}

pub async fn update_album(
    State(mut state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
    payload: Result<Json<UpdateAlbum>, JsonRejection>,
) -> ApiResult<Json<AlbumJson>> {
    let change = body(payload)?;
    managed_album(&mut state, &principal, &id).await?;
    let mut paths = Vec::new();
    let mut album = pb::Album {
        id: id.clone(),
        ..Default::default()
    };
    if let Some(v) = change.title {
        album.title = v;
        paths.push("title".to_owned());
    }
    if let Some(v) = change.description {
        album.description = v;
        paths.push("description".to_owned());
    }
    if let Some(v) = change.is_published {
        album.is_published = v;
        paths.push("is_published".to_owned());
    }
    if let Some(v) = change.order {
        album.order = v;
        paths.push("order".to_owned());
    }
    if let Some(v) = change.cover_photo_id {
        album.cover_photo_id = v;
        paths.push("cover_photo_id".to_owned());
    }
    if paths.is_empty() {
        return Err(GatewayError::Rejected {
            status: 400,
            message: "nothing to update: send at least one of title, description, is_published, order, cover_photo_id".into(),
        });
    }
    let updated = state
        .catalog
        .update_album(pb::UpdateAlbumRequest {
            album: Some(album),
            update_mask: Some(prost_types::FieldMask { paths }),
        })
        .await?
        .into_inner()
        .album
        .ok_or(GatewayError::Missing("album"))?;
    Ok(Json(
        render_albums(&state, vec![updated])
            .await?
            .pop()
            .ok_or(GatewayError::Missing("album"))?,
    ))
}

/// Removes the bytes of deleted albums/photos. Best effort: the catalog rows are gone already,
/// and anything left behind is an orphan that `cleanup-s3` collects.
async fn delete_objects(state: &mut AppState, keys: Vec<String>) {
    if keys.is_empty() {
        return;
    }
    let count = keys.len();
    if let Err(e) = state
        .storage
        .delete_objects(storage_pb::DeleteObjectsRequest { keys })
        .await
    {
        tracing::warn!(objects = count, error = %e.message(), "could not delete objects; left for cleanup-s3");
    }
}

pub async fn delete_album(
    State(mut state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    managed_album(&mut state, &principal, &id).await?;
    let keys = state
        .catalog
        .delete_album(pb::DeleteAlbumRequest { id })
        .await?
        .into_inner()
        .deleted_object_keys;
    delete_objects(&mut state, keys).await;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn list_album_photos(
    State(mut state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
    Query(query): Query<PageQuery>,
) -> ApiResult<Json<PhotoPage>> {
    let album = visible_album(&mut state, &principal, &id, 1)
        .await?
        .album
        .ok_or(GatewayError::Missing("album"))?;
    let response = state
        .catalog
        .list_photos(pb::ListPhotosRequest {
            album_id: id,
            page_size: query.page_size.unwrap_or(50),
            page_token: query.page_token.unwrap_or_default(),
        })
        .await?
        .into_inner();
    Ok(Json(PhotoPage {
        photos: render_photos(&state, response.photos, access(&album)).await?,
        next_page_token: response.next_page_token,
    }))
}

pub async fn recent_photos(
    State(mut state): State<AppState>,
    principal: Principal,
    Query(query): Query<PageQuery>,
) -> ApiResult<Json<PhotoPage>> {
    let response = state
        .catalog
        .list_recent_photos(pb::ListRecentPhotosRequest {
            page_size: query.page_size.unwrap_or(50),
            page_token: query.page_token.unwrap_or_default(),
            published_only: !principal.is_admin(),
        })
        .await?
        .into_inner();
    // Admins also see unpublished albums' photos here, and the listing does not say which
    // album is which: their links are all signed.
    let access = if principal.is_admin() {
        Access::Private
    } else {
        Access::Public
    };
    Ok(Json(PhotoPage {
        photos: render_photos(&state, response.photos, access).await?,
        next_page_token: response.next_page_token,
    }))
}

async fn visible_photo(
    state: &mut AppState,
    principal: &Principal,
    id: &str,
) -> ApiResult<(pb::Photo, pb::Album)> {
    let photo = state
        .catalog
        .get_photo(pb::GetPhotoRequest { id: id.to_owned() })
        .await?
        .into_inner()
        .photo
        .ok_or(GatewayError::Missing("photo"))?;
    let album = match visible_album(state, principal, &photo.album_id, 1).await {
        Ok(r) => r.album.ok_or(GatewayError::Missing("photo"))?,
        // A hidden album hides its photos the same way.
        Err(GatewayError::Missing(_)) => return Err(GatewayError::Missing("photo")),
        Err(e) => return Err(e),
    };
    Ok((photo, album))
}

pub async fn get_photo(
    State(mut state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> ApiResult<Json<PhotoJson>> {
    let (photo, album) = visible_photo(&mut state, &principal, &id).await?;
    let mut rendered = render_photos(&state, vec![photo], access(&album)).await?;
    Ok(Json(rendered.pop().ok_or(GatewayError::Missing("photo"))?))
}

pub async fn delete_photo(
    State(mut state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    if principal == Principal::Anonymous {
        return Err(GatewayError::Unauthenticated(
            "sign in to delete photos".into(),
        ));
    }
    let (_, album) = visible_photo(&mut state, &principal, &id).await?;
    if !principal.may_manage(&album.owner_id) {
        return Err(GatewayError::Forbidden(
            "only the album's owner or an admin can delete its photos",
        ));
    }
    let keys = state
        .catalog
        .delete_photo(pb::DeletePhotoRequest { id })
        .await?
        .into_inner()
        .deleted_object_keys;
    delete_objects(&mut state, keys).await;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlbumIds {
    album_ids: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct PublishResult {
    updated: i32,
    not_found_ids: Vec<String>,
}

async fn set_published(
    mut state: AppState,
    principal: Principal,
    payload: Result<Json<AlbumIds>, JsonRejection>,
    published: bool,
) -> ApiResult<Json<PublishResult>> {
    principal.require_admin()?;
    let ids = body(payload)?;
    let r = state
        .catalog
        .set_albums_published(pb::SetAlbumsPublishedRequest {
            album_ids: ids.album_ids,
            published,
        })
        .await?
        .into_inner();
    Ok(Json(PublishResult {
        updated: r.updated,
        not_found_ids: r.not_found_ids,
    }))
}

pub async fn publish(
    State(state): State<AppState>,
    principal: Principal,
    payload: Result<Json<AlbumIds>, JsonRejection>,
) -> ApiResult<Json<PublishResult>> {
    set_published(state, principal, payload, true).await
}

pub async fn unpublish(
    State(state): State<AppState>,
    principal: Principal,
    payload: Result<Json<AlbumIds>, JsonRejection>,
) -> ApiResult<Json<PublishResult>> {
    set_published(state, principal, payload, false).await
}

pub async fn cache_stats(
    State(mut state): State<AppState>,
    principal: Principal,
) -> ApiResult<Json<serde_json::Value>> {
    principal.require_admin()?;
    let r = state
        .cache_admin
        .get_cache_stats(cache_pb::GetCacheStatsRequest {})
        .await?
        .into_inner();
    Ok(Json(serde_json::json!({
        "backend": r.backend,
        "caches": r.caches.into_iter().map(|c| serde_json::json!({
            "cache_name": c.cache_name, "hits": c.hits, "misses": c.misses, "errors": c.errors,
            "fallbacks": c.fallbacks, "hit_rate": c.hit_rate, "keys": c.keys, "memory_bytes": c.memory_bytes,
        })).collect::<Vec<_>>(),
    })))
}

fn millis(d: &Option<prost_types::Duration>) -> f64 {
    d.as_ref()
        .and_then(|d| std::time::Duration::try_from(*d).ok())
        .map(|d| d.as_secs_f64() * 1000.0)
        .unwrap_or(0.0)
}

pub async fn performance(
    State(mut state): State<AppState>,
    principal: Principal,
) -> ApiResult<Json<serde_json::Value>> {
    principal.require_admin()?;
    let r = state
        .metrics
        .get_performance_report(metrics_pb::GetPerformanceReportRequest::default())
        .await?
        .into_inner();
    Ok(Json(serde_json::json!({
        "rpcs": r.rpcs.iter().map(|x| serde_json::json!({
            "service": x.service, "rpc": x.rpc, "count": x.count, "error_rate": x.error_rate,
            "p50_ms": millis(&x.p50), "p95_ms": millis(&x.p95), "p99_ms": millis(&x.p99),
            "mean_db_statements": x.mean_db_statements, "cache_hit_rate": x.cache_hit_rate,
        })).collect::<Vec<_>>(),
        "slowest_requests": r.slowest_requests.iter().map(|x| serde_json::json!({
            "service": x.service, "rpc": x.rpc, "duration_ms": millis(&x.duration), "trace_id": x.trace_id,
        })).collect::<Vec<_>>(),
        "slowest_statements": r.slowest_statements.iter().map(|x| serde_json::json!({
            "statement": x.statement, "duration_ms": millis(&x.duration), "trace_id": x.trace_id,
            "plan_note": x.plan_note,
        })).collect::<Vec<_>>(),
        "suggestions": r.suggestions,
    })))
}

#[derive(Debug, Serialize)]
pub struct Reordered {
    updated: i32,
}

/// Album order is one sequence across every owner (the published listing follows it), so
/// only admins set it.
pub async fn reorder_albums(
    State(mut state): State<AppState>,
    principal: Principal,
    payload: Result<Json<AlbumIds>, JsonRejection>,
) -> ApiResult<Json<Reordered>> {
    principal.require_admin()?;
    let ids = body(payload)?;
    let updated = state
        .catalog
        .reorder_albums(pb::ReorderAlbumsRequest {
            album_ids: ids.album_ids,
        })
        .await?
        .into_inner()
        .updated;
    Ok(Json(Reordered { updated }))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PhotoIds {
    photo_ids: Vec<String>,
}

pub async fn reorder_photos(
    State(mut state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
    payload: Result<Json<PhotoIds>, JsonRejection>,
) -> ApiResult<Json<Reordered>> {
    let ids = body(payload)?;
    managed_album(&mut state, &principal, &id).await?;
    let updated = state
        .catalog
        .reorder_photos(pb::ReorderPhotosRequest {
            album_id: id,
            photo_ids: ids.photo_ids,
        })
        .await?
        .into_inner()
        .updated;
    Ok(Json(Reordered { updated }))
}
