//! `warm-cache`: one item per album, each warmed through cache-admin's WarmCache (which reads
//! through the catalog's own RPCs, so entries are built by the normal read path).

use async_trait::async_trait;
use photos_jobs::{ExecError, Executor, Item, Job, NewItem, Outcome};
use photos_proto::cache_admin::v1::WarmCacheRequest;
use serde::Deserialize;

use super::{Upstreams, WarmCacheParams, failed_call, params, plan_error};
use crate::catalog::{Catalog, parse_id};
use crate::store::{Arg, Statement};

pub(crate) struct WarmCache {
    pub catalog: Catalog,
    pub upstreams: Upstreams,
}

#[derive(Deserialize)]
struct AlbumId {
    id: i64,
}

#[async_trait]
impl Executor for WarmCache {
    async fn plan(&self, job: &Job) -> Result<Vec<NewItem>, ExecError> {
        let p: WarmCacheParams = params(job)?;
        let store = self.catalog.store();
        let mut s = Statement::new();
        let mut sql = format!(
            "SELECT {} FROM albums a WHERE 1 = 1",
            store
                .dialect()
                .as_text(&store.dialect().object(&[("id", "a.id")]))
        );
        if !p.album_id.is_empty() {
            let id = parse_id("album", &p.album_id).map_err(plan_error)?;
            sql.push_str(&format!(" AND a.id = {}", s.arg(Arg::I64(id))));
        }
        if p.published_only {
            sql.push_str(&format!(" AND a.is_published = {}", s.arg(Arg::Bool(true))));
        }
        sql.push_str(" ORDER BY a.id");
        s.push(&sql);
        let rows = store.rows(&s).await.map_err(|e| plan_error(e.into()))?;
        if !p.album_id.is_empty() && rows.is_empty() {
            return Err(ExecError::permanent(format!(
                "album {} not found",
                p.album_id
            )));
        }
        rows.iter()
            .map(|r| {
                let a: AlbumId = serde_json::from_str(r)
                    .map_err(|e| ExecError::permanent(format!("unreadable album row: {e}")))?;
                Ok(NewItem {
                    key: a.id.to_string(),
                    ..Default::default()
                })
            })
            .collect()
    }

    async fn run(&self, job: &Job, items: &[Item]) -> Vec<Outcome> {
        let force = params::<WarmCacheParams>(job).is_ok_and(|p| p.force);
        let mut outcomes = Vec::with_capacity(items.len());
        for item in items {
            outcomes.push(self.warm(&item.key, force).await);
        }
        outcomes
    }
}

impl WarmCache {
    async fn warm(&self, album_id: &str, force: bool) -> Outcome {
        let mut client = self.upstreams.cache_admin.clone();
        let request = WarmCacheRequest {
            album_id: album_id.to_owned(),
            published_only: false,
            force,
        };
        let mut stream = match client.warm_cache(request).await {
            Ok(r) => r.into_inner(),
            Err(status) if status.code() == tonic::Code::NotFound => {
                // Deleted since the job listed it: nothing left to warm.
                return Outcome::Done;
            }
            Err(status) => return failed_call("cache-admin WarmCache", &status),
        };
        let mut failed = 0;
        loop {
            match stream.message().await {
                Ok(Some(progress)) => failed = progress.failed,
                Ok(None) => break,
                Err(status) if status.code() == tonic::Code::NotFound => return Outcome::Done,
                Err(status) => return failed_call("cache-admin WarmCache", &status),
            }
        }
        if failed > 0 {
            Outcome::Retry(format!("cache-admin could not warm album {album_id}"))
        } else {
            Outcome::Done
        }
    }
}
