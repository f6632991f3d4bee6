//! The tonic service: translates proto <-> domain and observes each call's SQL statements
//! (counted by the runtime's per-call tracking scope, which returns them in
//! `x-db-query-count`). The cached reads produce encoded
//! responses, served by `encoded` in front of the generated server.

use std::future::Future;

use photos_cache::policy;

use photos_proto::catalog::v1::catalog_service_server::CatalogService;
use photos_proto::catalog::v1::*;
use photos_runtime::metrics::MethodLabels;
use photos_runtime::tracking;
use prost_types::{FieldMask, Timestamp};
use tonic::codegen::BoxStream;
use tonic::{Request, Response, Status};

use crate::cache::{Encoded, Freshness, family};
use crate::catalog::{Catalog, parse_id};
use crate::error::CatalogError;
use crate::model::*;

pub struct CatalogGrpc {
    pub(crate) catalog: Catalog,
}

fn timestamp(micros: i64) -> Timestamp {
    Timestamp {
        seconds: micros.div_euclid(1_000_000),
        nanos: (micros.rem_euclid(1_000_000) * 1_000) as i32,
    }
}

fn micros(t: &Timestamp) -> i64 {
    t.seconds
        .saturating_mul(1_000_000)
        .saturating_add(i64::from(t.nanos) / 1_000)
}

fn clamp_u32(v: i64) -> u32 {
    u32::try_from(v.max(0)).unwrap_or(u32::MAX)
}

fn variant(v: VariantRow) -> Variant {
    Variant {
        preset: v.preset,
        format: v.format,
        object_key: v.object_key,
        width: clamp_u32(v.width),
        height: clamp_u32(v.height),
        bytes: v.bytes.max(0) as u64,
    }
}

fn album(a: AlbumRow) -> Album {
    Album {
        id: a.id.to_string(),
        title: a.title,
        description: a.description,
        owner_id: a.owner_id,
        is_published: a.is_published,
        order: a.order as i32,
        cover_photo_id: a.cover_photo_id.map(|c| c.to_string()).unwrap_or_default(),
        photo_count: a.photo_count,
        previews: a
            .previews
            .into_iter()
            .map(|p| PhotoPreview {
                id: p.id.to_string(),
                order: p.order as i32,
                thumbnail: p.thumbnail.map(variant),
                dominant_color: p.dominant_color,
                blur_placeholder: p.blur_placeholder,
            })
            .collect(),
        create_time: Some(timestamp(a.created_at)),
        update_time: Some(timestamp(a.updated_at)),
    }
}

fn photo(p: PhotoRow) -> Photo {
    Photo {
        id: p.id.to_string(),
        album_id: p.album_id.to_string(),
        title: p.title,
        caption: p.caption,
        order: p.order as i32,
        original_key: p.original_key,
        content_sha256: p.content_sha256,
        width: clamp_u32(p.width),
        height: clamp_u32(p.height),
        bytes: p.bytes.max(0) as u64,
        format: p.format,
        taken_time: p.taken_at.map(timestamp),
        placeholders: Some(Placeholders {
            dominant_color: p.dominant_color,
            blur_data_uri: p.blur_placeholder,
            blurhash: p.blurhash,
            thumbhash: p.thumbhash,
        }),
        status: p.status,
        failure_reason: p.failure_reason,
        variants: p.variants.into_iter().map(variant).collect(),
        create_time: Some(timestamp(p.created_at)),
        update_time: Some(timestamp(p.updated_at)),
    }
}

fn photos(rows: Vec<PhotoRow>) -> Vec<Photo> {
    rows.into_iter().map(photo).collect()
}

/// `x-cache-refresh: 1` (sent by cache warming) recomputes and refills instead of answering
/// from the cache.
fn freshness<T>(request: &Request<T>) -> Freshness {
    match request.metadata().get(photos_cache::REFRESH_METADATA) {
        Some(v) if v.as_bytes() == b"1" => Freshness::Refresh,
        _ => Freshness::Cached,
    }
}

fn mask_paths(mask: Option<FieldMask>, allowed: &[&str]) -> Result<Vec<String>, CatalogError> {
    let paths = mask.map(|m| m.paths).unwrap_or_default();
    if paths.is_empty() {
        return Err(CatalogError::invalid(format!(
            "update_mask must name at least one of {}",
            allowed.join(", ")
        )));
    }
    for p in &paths {
        if !allowed.contains(&p.as_str()) {
            return Err(CatalogError::invalid(format!(
                "update_mask path {p:?} cannot be updated; use {}",
                allowed.join(", ")
            )));
        }
    }
    Ok(paths)
}

impl CatalogGrpc {
    /// Runs one call and observes its SQL statements per method. The count itself comes from
    /// the runtime's per-call tracking scope, which also puts it in `x-db-query-count` (with
    /// whatever upstreams reported) on success and error alike.
    async fn call<T>(
        &self,
        method: &'static str,
        future: impl Future<Output = Result<T, CatalogError>>,
    ) -> Result<Response<T>, Status> {
        let before = tracking::statements_so_far();
        let result = future.await;
        let statements = tracking::statements_so_far().saturating_sub(before);
        self.catalog
            .store()
            .metrics
            .statements_per_call
            .get_or_create(&MethodLabels {
                service: "photos.catalog.v1.CatalogService".into(),
                method: method.into(),
            })
            .observe(f64::from(statements));
        result.map(Response::new).map_err(Status::from)
    }
}

/// The cached reads. Each answers with its response encoded, from the cache or computed and
/// stored there: a hit decodes and encodes nothing.
impl CatalogGrpc {
    pub(crate) async fn list_albums(
        &self,
        request: Request<ListAlbumsRequest>,
    ) -> Result<Response<Encoded>, Status> {
        let fresh = freshness(&request);
        let r = request.into_inner();
        self.call("ListAlbums", async {
            self.catalog
                .cache()
                .read(
                    |c| {
                        c.key(family::ALBUM_LIST)
                            .part(r.published_only)
                            .part(&r.owner_id)
                            .part(r.page_size)
                            .part(r.preview_count)
                            .part(&r.page_token)
                            .album_lists()
                            .build()
                    },
                    policy::ALBUM_LIST,
                    fresh,
                    || async {
                        let page = self
                            .catalog
                            .list_albums(AlbumQuery {
                                published_only: r.published_only,
                                owner_id: r.owner_id.clone(),
                                page_size: r.page_size,
                                page_token: r.page_token.clone(),
                                preview_count: r.preview_count,
                            })
                            .await?;
                        Ok(Encoded::of(&ListAlbumsResponse {
                            albums: page.items.into_iter().map(album).collect(),
                            next_page_token: page.next_page_token,
                        }))
                    },
                )
                .await
        })
        .await
    }

    pub(crate) async fn get_album(
        &self,
        request: Request<GetAlbumRequest>,
    ) -> Result<Response<Encoded>, Status> {
        let fresh = freshness(&request);
        let r = request.into_inner();
        self.call("GetAlbum", async {
            let id = parse_id("album", &r.id)?;
            self.catalog
                .cache()
                .read(
                    |c| {
                        c.key(family::ALBUM)
                            .part(id)
                            .part(r.photo_page_size)
                            .album(&id.to_string())
                            .build()
                    },
                    policy::ALBUM_DETAIL,
                    fresh,
                    || async {
                        let (a, page) = self.catalog.get_album(&r.id, r.photo_page_size).await?;
                        Ok(Encoded::of(&GetAlbumResponse {
                            album: Some(album(a)),
                            photos: photos(page.items),
                            next_photo_page_token: page.next_page_token,
                        }))
                    },
                )
                .await
        })
        .await
    }

    pub(crate) async fn list_photos(
        &self,
        request: Request<ListPhotosRequest>,
    ) -> Result<Response<Encoded>, Status> {
        let fresh = freshness(&request);
        let r = request.into_inner();
        self.call("ListPhotos", async {
            let album_id = parse_id("album", &r.album_id)?;
            self.catalog
                .cache()
                .read(
                    |c| {
                        c.key(family::PHOTO_PAGE)
                            .part(album_id)
                            .part(r.page_size)
                            .part(&r.page_token)
                            .album(&album_id.to_string())
                            .build()
                    },
                    policy::PHOTOS,
                    fresh,
                    || async {
                        let page = self
                            .catalog
                            .list_photos(&r.album_id, r.page_size, &r.page_token)
                            .await?;
                        Ok(Encoded::of(&ListPhotosResponse {
                            photos: photos(page.items),
                            next_page_token: page.next_page_token,
                        }))
                    },
                )
                .await
        })
        .await
    }

    /// Cached under the `albums` scope, which every write bumps.
    pub(crate) async fn list_recent_photos(
        &self,
        request: Request<ListRecentPhotosRequest>,
    ) -> Result<Response<Encoded>, Status> {
        let fresh = freshness(&request);
        let r = request.into_inner();
        self.call("ListRecentPhotos", async {
            self.catalog
                .cache()
                .read(
                    |c| {
                        c.key(family::RECENT)
                            .part(r.published_only)
                            .part(r.page_size)
                            .part(&r.page_token)
                            .album_lists()
                            .build()
                    },
                    policy::PHOTOS,
                    fresh,
                    || async {
                        let page = self
                            .catalog
                            .list_recent_photos(r.page_size, &r.page_token, r.published_only)
                            .await?;
                        Ok(Encoded::of(&ListRecentPhotosResponse {
                            photos: photos(page.items),
                            next_page_token: page.next_page_token,
                        }))
                    },
                )
                .await
        })
        .await
    }

    /// A photo's cached detail depends on its album's generation (every photo write bumps
    /// it), found through a cached photo → album entry; the entry is checked against the row
    /// loaded through it, since SQLite may hand a deleted photo's id to a new photo.
    pub(crate) async fn get_photo(
        &self,
        request: Request<GetPhotoRequest>,
    ) -> Result<Response<Encoded>, Status> {
        let fresh = freshness(&request);
        let r = request.into_inner();
        self.call("GetPhoto", async {
            let id = parse_id("photo", &r.id)?;
            let encode = |p: PhotoRow| {
                Encoded::of(&GetPhotoResponse {
                    photo: Some(photo(p)),
                })
            };
            let Some(named) = self.catalog.cache().named() else {
                return Ok(encode(self.catalog.get_photo(&r.id).await?));
            };
            let album_key = named.key(family::PHOTO_ALBUM).part(id).build();
            let album = match fresh {
                Freshness::Cached => named.get::<i64>(&album_key).await,
                Freshness::Refresh => None,
            };
            /// The loaded photo is not in the album the lookup assumed: not cached there.
            enum Load {
                Failed(CatalogError),
                Elsewhere(Box<PhotoRow>),
            }
            let found = match album {
                Some(album) => {
                    let key = named
                        .key(family::PHOTO)
                        .part(id)
                        .album(&album.to_string())
                        .build();
                    let mut loaded = false;
                    let load = || {
                        loaded = true;
                        async {
                            let p = self.catalog.get_photo(&r.id).await.map_err(Load::Failed)?;
                            if p.album_id == album {
                                Ok(encode(p))
                            } else {
                                Err(Load::Elsewhere(Box::new(p)))
                            }
                        }
                    };
                    let result = named.get_or_load(&key, policy::PHOTOS, load).await;
                    photos_runtime::tracking::cache_lookup(!loaded);
                    match result {
                        Ok(encoded) => return Ok(encoded),
                        Err(Load::Failed(e)) => return Err(e),
                        Err(Load::Elsewhere(p)) => *p,
                    }
                }
                // The detail's key needs the album, known only after this load: the album is
                // cached now, the detail on the next read (a key is resolved before its load).
                None => {
                    photos_runtime::tracking::cache_lookup(false);
                    self.catalog.get_photo(&r.id).await?
                }
            };
            let _ = named
                .set_with(&album_key, &found.album_id, policy::PHOTOS.ttl)
                .await;
            Ok(encode(found))
        })
        .await
    }

    /// Cached under the `albums` scope, which every write bumps.
    pub(crate) async fn get_catalog_stats(
        &self,
        request: Request<GetCatalogStatsRequest>,
    ) -> Result<Response<Encoded>, Status> {
        let fresh = freshness(&request);
        self.call("GetCatalogStats", async {
            self.catalog
                .cache()
                .read(
                    |c| c.key(family::STATS).album_lists().build(),
                    policy::STATS,
                    fresh,
                    || async {
                        let (t, albums) = self.catalog.stats().await?;
                        let unsigned = |v: i64| v.max(0) as u64;
                        Ok(Encoded::of(&GetCatalogStatsResponse {
                            album_count: t.album_count,
                            published_album_count: t.published_album_count,
                            photo_count: t.photo_count,
                            pending_photo_count: t.pending_photo_count,
                            failed_photo_count: t.failed_photo_count,
                            original_bytes: unsigned(t.original_bytes),
                            variant_bytes: unsigned(t.variant_bytes),
                            albums: albums
                                .into_iter()
                                .map(|a| AlbumStats {
                                    album_id: a.album_id.to_string(),
                                    title: a.title,
                                    photo_count: a.photo_count,
                                    original_bytes: unsigned(a.original_bytes),
                                    variant_bytes: unsigned(a.variant_bytes),
                                })
                                .collect(),
                        }))
                    },
                )
                .await
        })
        .await
    }
}

/// The writes and the uncached reads. The cached reads (`ListAlbums`, `GetAlbum`,
/// `ListPhotos`, `ListRecentPhotos`, `GetPhoto`, `GetCatalogStats`) never reach this impl:
/// `encoded::CatalogService` answers them with the methods above.
#[tonic::async_trait]
impl CatalogService for CatalogGrpc {
    async fn create_album(
        &self,
        request: Request<CreateAlbumRequest>,
    ) -> Result<Response<CreateAlbumResponse>, Status> {
        let r = request.into_inner();
        self.call("CreateAlbum", async {
            let a = self
                .catalog
                .create_album(NewAlbum {
                    title: r.title,
                    description: r.description,
                    owner_id: r.owner_id,
                    is_published: r.is_published,
                    order: r.order,
                })
                .await?;
            Ok(CreateAlbumResponse {
                album: Some(album(a)),
            })
        })
        .await
    }

    async fn update_album(
        &self,
        request: Request<UpdateAlbumRequest>,
    ) -> Result<Response<UpdateAlbumResponse>, Status> {
        let r = request.into_inner();
        self.call("UpdateAlbum", async {
            let a = r
                .album
                .ok_or_else(|| CatalogError::invalid("album is required"))?;
            let paths = mask_paths(
                r.update_mask,
                &[
                    "title",
                    "description",
                    "is_published",
                    "order",
                    "cover_photo_id",
                ],
            )?;
            let has = |p: &str| paths.iter().any(|x| x == p);
            let patch = AlbumPatch {
                title: has("title").then(|| a.title.clone()),
                description: has("description").then(|| a.description.clone()),
                is_published: has("is_published").then_some(a.is_published),
                order: has("order").then_some(a.order),
                cover_photo_id: has("cover_photo_id")
                    .then(|| (!a.cover_photo_id.is_empty()).then(|| a.cover_photo_id.clone())),
            };
            let updated = self.catalog.update_album(&a.id, patch).await?;
            Ok(UpdateAlbumResponse {
                album: Some(album(updated)),
            })
        })
        .await
    }

    async fn delete_album(
        &self,
        request: Request<DeleteAlbumRequest>,
    ) -> Result<Response<DeleteAlbumResponse>, Status> {
        let r = request.into_inner();
        self.call("DeleteAlbum", async {
            Ok(DeleteAlbumResponse {
                deleted_object_keys: self.catalog.delete_album(&r.id).await?,
            })
        })
        .await
    }

    async fn reorder_albums(
        &self,
        request: Request<ReorderAlbumsRequest>,
    ) -> Result<Response<ReorderAlbumsResponse>, Status> {
        let r = request.into_inner();
        self.call("ReorderAlbums", async {
            Ok(ReorderAlbumsResponse {
                updated: self.catalog.reorder_albums(&r.album_ids).await?,
            })
        })
        .await
    }

    async fn set_albums_published(
        &self,
        request: Request<SetAlbumsPublishedRequest>,
    ) -> Result<Response<SetAlbumsPublishedResponse>, Status> {
        let r = request.into_inner();
        self.call("SetAlbumsPublished", async {
            let (updated, not_found_ids) = self
                .catalog
                .set_albums_published(&r.album_ids, r.published)
                .await?;
            Ok(SetAlbumsPublishedResponse {
                updated,
                not_found_ids,
            })
        })
        .await
    }

    async fn create_photo(
        &self,
        request: Request<CreatePhotoRequest>,
    ) -> Result<Response<CreatePhotoResponse>, Status> {
        let r = request.into_inner();
        self.call("CreatePhoto", async {
            let (p, created) = self
                .catalog
                .create_photo(NewPhoto {
                    album_id: r.album_id,
                    title: r.title,
                    caption: r.caption,
                    original_key: r.original_key,
                    content_sha256: r.content_sha256,
                    bytes: r.bytes,
                    format: r.format,
                })
                .await?;
            Ok(CreatePhotoResponse {
                photo: Some(photo(p)),
                created,
            })
        })
        .await
    }

    async fn update_photo(
        &self,
        request: Request<UpdatePhotoRequest>,
    ) -> Result<Response<UpdatePhotoResponse>, Status> {
        let r = request.into_inner();
        self.call("UpdatePhoto", async {
            let p = r
                .photo
                .ok_or_else(|| CatalogError::invalid("photo is required"))?;
            let paths = mask_paths(r.update_mask, &["title", "caption", "order"])?;
            let has = |x: &str| paths.iter().any(|p| p == x);
            let patch = PhotoPatch {
                title: has("title").then(|| p.title.clone()),
                caption: has("caption").then(|| p.caption.clone()),
                order: has("order").then_some(p.order),
            };
            Ok(UpdatePhotoResponse {
                photo: Some(photo(self.catalog.update_photo(&p.id, patch).await?)),
            })
        })
        .await
    }

    async fn delete_photo(
        &self,
        request: Request<DeletePhotoRequest>,
    ) -> Result<Response<DeletePhotoResponse>, Status> {
        let r = request.into_inner();
        self.call("DeletePhoto", async {
            Ok(DeletePhotoResponse {
                deleted_object_keys: self.catalog.delete_photo(&r.id).await?,
            })
        })
        .await
    }

    async fn reorder_photos(
        &self,
        request: Request<ReorderPhotosRequest>,
    ) -> Result<Response<ReorderPhotosResponse>, Status> {
        let r = request.into_inner();
        self.call("ReorderPhotos", async {
            Ok(ReorderPhotosResponse {
                updated: self
                    .catalog
                    .reorder_photos(&r.album_id, &r.photo_ids)
                    .await?,
            })
        })
        .await
    }

    async fn record_media_result(
        &self,
        request: Request<RecordMediaResultRequest>,
    ) -> Result<Response<RecordMediaResultResponse>, Status> {
        let r = request.into_inner();
        self.call("RecordMediaResult", async {
            let placeholders = r.placeholders.unwrap_or_default();
            let p = self
                .catalog
                .record_media_result(MediaResult {
                    photo_id: r.photo_id,
                    status: r.status,
                    failure_reason: r.failure_reason,
                    width: r.width,
                    height: r.height,
                    taken_at: r.taken_time.as_ref().map(micros),
                    dominant_color: placeholders.dominant_color,
                    blur_placeholder: placeholders.blur_data_uri,
                    blurhash: placeholders.blurhash,
                    thumbhash: placeholders.thumbhash,
                    variants: r
                        .variants
                        .into_iter()
                        .map(|v| VariantRow {
                            preset: v.preset,
                            format: v.format,
                            object_key: v.object_key,
                            width: v.width.into(),
                            height: v.height.into(),
                            bytes: i64::try_from(v.bytes).unwrap_or(i64::MAX),
                        })
                        .collect(),
                })
                .await?;
            Ok(RecordMediaResultResponse {
                photo: Some(photo(p)),
            })
        })
        .await
    }

    async fn list_photos_missing_variant(
        &self,
        request: Request<ListPhotosMissingVariantRequest>,
    ) -> Result<Response<ListPhotosMissingVariantResponse>, Status> {
        let r = request.into_inner();
        self.call("ListPhotosMissingVariant", async {
            let page = self
                .catalog
                .list_photos_missing_variant(
                    &r.preset,
                    r.format,
                    &r.album_id,
                    r.page_size,
                    &r.page_token,
                )
                .await?;
            Ok(ListPhotosMissingVariantResponse {
                photos: photos(page.items),
                next_page_token: page.next_page_token,
            })
        })
        .await
    }

    /// Streams keys in batches of one page of photos each; memory stays bounded by the channel
    /// (4 batches) however large the catalog. The stream's statements run after the response
    /// headers, so this call carries no `x-db-query-count`.
    async fn stream_object_keys(
        &self,
        _request: Request<StreamObjectKeysRequest>,
    ) -> Result<Response<BoxStream<StreamObjectKeysResponse>>, Status> {
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        let catalog = self.catalog.clone();
        tokio::spawn(async move {
            let mut after = 0;
            loop {
                match catalog.object_keys_after(after).await {
                    Ok((object_keys, next)) => {
                        if !object_keys.is_empty()
                            && tx
                                .send(Ok(StreamObjectKeysResponse { object_keys }))
                                .await
                                .is_err()
                        {
                            return; // the caller went away
                        }
                        match next {
                            Some(last) => after = last,
                            None => return,
                        }
                    }
                    Err(e) => {
                        let _ = tx.send(Err(Status::from(e))).await;
                        return;
                    }
                }
            }
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }
}
