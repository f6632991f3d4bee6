//! `stats`: the catalog's totals, the cache's counters and the job queue, in one view.

use photos_proto::cache_admin::v1 as cache_pb;
use photos_proto::cache_admin::v1::cache_admin_service_client::CacheAdminServiceClient;
use photos_proto::catalog::v1 as catalog_pb;
use photos_proto::catalog::v1::catalog_service_client::CatalogServiceClient;
use photos_proto::jobs::v1 as jobs_pb;
use photos_runtime::client::Channel;
use serde_json::{Value, json};

use crate::error::{CtlError, exit};
use crate::jobs::Client as JobsClient;
use crate::output::{self, Output};

pub async fn run(
    catalog: CatalogServiceClient<Channel>,
    cache_admin: CacheAdminServiceClient<Channel>,
    jobs: JobsClient,
    out: Output,
) -> Result<u8, CtlError> {
    let stats = catalog
        .clone()
        .get_catalog_stats(catalog_pb::GetCatalogStatsRequest {})
        .await
        .map_err(|s| CtlError::call("catalog", &s))?
        .into_inner();
    // The cache is optional to this view: report it missing rather than fail the command.
    let cache = cache_admin
        .clone()
        .get_cache_stats(cache_pb::GetCacheStatsRequest {})
        .await
        .map(tonic::Response::into_inner);
    let active = jobs
        .clone()
        .list_jobs(jobs_pb::ListJobsRequest {
            page_size: 100,
            states: vec![
                jobs_pb::JobState::Queued as i32,
                jobs_pb::JobState::Running as i32,
            ],
            ..Default::default()
        })
        .await
        .map_err(|s| CtlError::call("catalog", &s))?
        .into_inner()
        .jobs;

    let cache_json = match &cache {
        Ok(c) => json!({
            "backend": c.backend,
            "aggregated": c.aggregated,
            "total_keys": c.total_keys,
            "total_memory_bytes": c.total_memory_bytes,
            "caches": c.caches.iter().map(|s| json!({
                "name": s.cache_name, "hits": s.hits, "misses": s.misses,
                "hit_rate": s.hit_rate, "keys": s.keys, "errors": s.errors,
            })).collect::<Vec<_>>(),
        }),
        Err(s) => json!({ "error": s.message() }),
    };
    out.document(&json!({
        "catalog": {
            "album_count": stats.album_count,
            "published_album_count": stats.published_album_count,
            "photo_count": stats.photo_count,
            "pending_photo_count": stats.pending_photo_count,
            "failed_photo_count": stats.failed_photo_count,
            "original_bytes": stats.original_bytes,
            "variant_bytes": stats.variant_bytes,
            "albums": stats.albums.iter().map(|a| json!({
                "album_id": a.album_id, "title": a.title, "photo_count": a.photo_count,
                "original_bytes": a.original_bytes, "variant_bytes": a.variant_bytes,
            })).collect::<Vec<_>>(),
        },
        "cache": cache_json,
        "active_jobs": active.iter().map(output::job_json).collect::<Vec<Value>>(),
    }));

    out.line(format!(
        "albums   {} ({} published)",
        stats.album_count, stats.published_album_count
    ));
    out.line(format!(
        "photos   {} ({} pending, {} failed)",
        stats.photo_count, stats.pending_photo_count, stats.failed_photo_count
    ));
    out.line(format!(
        "bytes    {} originals, {} variants",
        output::bytes(stats.original_bytes),
        output::bytes(stats.variant_bytes)
    ));
    match &cache {
        Ok(c) => {
            out.line(format!(
                "cache    {} backend, {} keys, {}",
                c.backend,
                c.total_keys,
                output::bytes(c.total_memory_bytes)
            ));
            for s in &c.caches {
                out.line(format!(
                    "  {:<16} {:>5.1}% hit rate ({} hits, {} misses)",
                    s.cache_name,
                    s.hit_rate * 100.0,
                    s.hits,
                    s.misses
                ));
            }
        }
        Err(s) => out.line(format!("cache    unavailable: {}", s.message())),
    }
    out.line(format!("jobs     {} queued or running", active.len()));
    for job in &active {
        out.line(format!(
            "  {:>6} {:<20} {:<8} {}/{}",
            job.id,
            output::kind_name(job.kind),
            output::state_name(job.state),
            job.done,
            job.total
        ));
    }
    Ok(exit::OK)
}
