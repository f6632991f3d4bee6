//! Warming goes through the catalog's own read RPCs (with `x-cache-refresh: 1` when forced),
//! so entries are built by exactly the code path of normal reads.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use futures::StreamExt;
use photos_proto::cache_admin::v1::WarmCacheResponse;
use photos_proto::catalog::v1::catalog_service_client::CatalogServiceClient;
use photos_proto::catalog::v1::{GetAlbumRequest, ListAlbumsRequest};
use photos_runtime::client::Channel;
use tokio::sync::mpsc;
use tonic::Status;

const LIST_PAGE_SIZE: i32 = 100;
/// Albums warmed at once: enough to overlap round-trips without flooding the catalog.
const CONCURRENCY: usize = 8;
/// Bounds the id list held in memory for an "all albums" warm.
pub const MAX_ALBUMS: usize = 100_000;

#[derive(Debug, Clone)]
pub struct WarmPlan {
    pub album_id: String,
    pub published_only: bool,
    pub force: bool,
}

fn request<T>(msg: T, force: bool) -> tonic::Request<T> {
    let mut req = tonic::Request::new(msg);
    if force {
        req.metadata_mut().insert(
            photos_cache::REFRESH_METADATA,
            tonic::metadata::MetadataValue::from_static("1"),
        );
    }
    req
}

/// Runs the plan, sending progress after every album. Ends with an error status only when the
/// catalog cannot list albums (or the one requested album does not exist); a failing album is
/// counted in `failed` and warming goes on.
pub async fn run(
    catalog: CatalogServiceClient<Channel>,
    plan: WarmPlan,
    progress: mpsc::Sender<Result<WarmCacheResponse, Status>>,
) {
    let ids = if plan.album_id.is_empty() {
        match list_album_ids(catalog.clone(), &plan, &progress).await {
            Ok(ids) => ids,
            Err(status) => {
                let _ = progress.send(Err(status)).await;
                return;
            }
        }
    } else {
        let mut client = catalog.clone();
        let req = GetAlbumRequest {
            id: plan.album_id.clone(),
            ..Default::default()
        };
        if let Err(status) = client.get_album(request(req, plan.force)).await {
            let _ = progress.send(Err(status)).await;
            return;
        }
        let _ = progress
            .send(Ok(WarmCacheResponse {
                done: 1,
                total: 1,
                failed: 0,
                current: plan.album_id.clone(),
            }))
            .await;
        return;
    };

    let total = ids.len() as u64;
    if total == 0 {
        let _ = progress.send(Ok(WarmCacheResponse::default())).await;
        return;
    }
    let done = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    futures::stream::iter(ids)
        .map(|id| {
            let mut client = catalog.clone();
            let force = plan.force;
            async move {
                let req = GetAlbumRequest {
                    id: id.clone(),
                    ..Default::default()
                };
                let ok = client.get_album(request(req, force)).await.is_ok();
                (id, ok)
            }
        })
        .buffer_unordered(CONCURRENCY)
        .for_each(|(id, ok)| {
            let progress = progress.clone();
            let done = done.clone();
            let failed = failed.clone();
            async move {
                if !ok {
                    failed.fetch_add(1, Ordering::Relaxed);
                }
                let d = done.fetch_add(1, Ordering::Relaxed) + 1;
                let _ = progress
                    .send(Ok(WarmCacheResponse {
                        done: d,
                        total,
                        failed: failed.load(Ordering::Relaxed),
                        current: id,
                    }))
                    .await;
            }
        })
        .await;
}

/// Pages through ListAlbums (which warms the list pages themselves).
async fn list_album_ids(
    mut catalog: CatalogServiceClient<Channel>,
    plan: &WarmPlan,
    progress: &mpsc::Sender<Result<WarmCacheResponse, Status>>,
) -> Result<Vec<String>, Status> {
    let mut ids = Vec::new();
    let mut token = String::new();
    loop {
        if progress.is_closed() {
            return Err(Status::cancelled("warm cancelled by the caller"));
        }
        let req = ListAlbumsRequest {
            published_only: plan.published_only,
            page_size: LIST_PAGE_SIZE,
            page_token: token.clone(),
            ..Default::default()
        };
        let page = catalog
            .list_albums(request(req, plan.force))
            .await?
            .into_inner();
        ids.extend(page.albums.into_iter().map(|a| a.id));
        if ids.len() > MAX_ALBUMS {
            return Err(Status::resource_exhausted(format!(
                "more than {MAX_ALBUMS} albums: warm them by album_id"
            )));
        }
        if page.next_page_token.is_empty() {
            return Ok(ids);
        }
        token = page.next_page_token;
    }
}
