//! `cleanup-s3`: objects under the managed prefixes that no photo references and that are older
//! than the given age are deleted with batch deletes (or moved to GLACIER with `archive`).
//!
//! Never deleting a referenced object: the plan lists storage against every key the catalog
//! references at that moment, and each batch is checked against the database again right
//! before it is deleted, so an object that became referenced in between (e.g. an upload
//! finishing) is kept and reported.

use std::collections::HashSet;

use async_trait::async_trait;
use photos_jobs::{ExecError, Executor, Item, Job, NewItem, Outcome};
use photos_proto::storage::v1::{
    DeleteObjectsRequest, KeyError, ListObjectsRequest, SetStorageClassRequest, StorageClass,
};

use super::{CleanupS3Params, Upstreams, failed_call, params, plan_error, plan_status};
use crate::catalog::Catalog;
use crate::store::{Arg, Statement};

/// Keys per DeleteObjects / SetStorageClass call (S3 allows 1000 per delete request).
const BATCH: usize = 500;

pub(crate) struct CleanupS3 {
    pub catalog: Catalog,
    pub upstreams: Upstreams,
    pub prefixes: Vec<String>,
}

#[async_trait]
impl Executor for CleanupS3 {
    async fn plan(&self, job: &Job) -> Result<Vec<NewItem>, ExecError> {
        let p: CleanupS3Params = params(job)?;
        let referenced = self.referenced().await?;
        let mut items = Vec::new();
        for prefix in &self.prefixes {
            let request = ListObjectsRequest {
                prefix: prefix.clone(),
                older_than_days: p.older_than_days,
            };
            let mut pages = self
                .upstreams
                .storage
                .clone()
                .list_objects(request)
                .await
                .map_err(|s| plan_status("storage ListObjects", &s))?
                .into_inner();
            while let Some(page) = pages
                .message()
                .await
                .map_err(|s| plan_status("storage ListObjects", &s))?
            {
                for object in page.objects {
                    let archived = object.storage_class == StorageClass::Glacier as i32;
                    if referenced.contains(&object.key) || (p.archive && archived) {
                        continue;
                    }
                    items.push(NewItem {
                        key: object.key,
                        detail: String::new(),
                        bytes: object.size,
                    });
                }
            }
        }
        Ok(items)
    }

    fn batch_size(&self, _job: &Job) -> usize {
        BATCH
    }

    async fn run(&self, job: &Job, items: &[Item]) -> Vec<Outcome> {
        let p: CleanupS3Params = match params(job) {
            Ok(p) => p,
            Err(e) => return vec![Outcome::Failed(e.message); items.len()],
        };
        if p.dry_run {
            return vec![Outcome::Done; items.len()];
        }
        let keys: Vec<String> = items.iter().map(|i| i.key.clone()).collect();
        let referenced_now = match self.still_referenced(&keys).await {
            Ok(r) => r,
            Err(e) => return vec![super::catalog_outcome(e); items.len()],
        };
        let unreferenced: Vec<String> = keys
            .iter()
            .filter(|k| !referenced_now.contains(*k))
            .cloned()
            .collect();
        let errors = if unreferenced.is_empty() {
            Vec::new()
        } else if p.archive {
            let request = SetStorageClassRequest {
                keys: unreferenced,
                storage_class: StorageClass::Glacier as i32,
            };
            match self
                .upstreams
                .storage
                .clone()
                .set_storage_class(request)
                .await
            {
                Ok(r) => r.into_inner().errors,
                Err(s) => return vec![failed_call("storage SetStorageClass", &s); items.len()],
            }
        } else {
            let request = DeleteObjectsRequest { keys: unreferenced };
            match self.upstreams.storage.clone().delete_objects(request).await {
                Ok(r) => r.into_inner().errors,
                Err(s) => return vec![failed_call("storage DeleteObjects", &s); items.len()],
            }
        };
        items
            .iter()
            .map(|item| {
                if referenced_now.contains(&item.key) {
                    return Outcome::Failed(
                        "referenced by the catalog since the job listed it; kept".into(),
                    );
                }
                match errors.iter().find(|e| e.key == item.key) {
                    Some(KeyError { code, message, .. }) => {
                        Outcome::Failed(format!("{code}: {message}"))
                    }
                    None => Outcome::Done,
                }
            })
            .collect()
    }
}

impl CleanupS3 {
    /// Every object key the catalog references (originals and variants).
    async fn referenced(&self) -> Result<HashSet<String>, ExecError> {
        let mut keys = HashSet::new();
        let mut after = 0;
        loop {
            let (batch, last) = self
                .catalog
                .object_keys_after(after)
                .await
                .map_err(plan_error)?;
            keys.extend(batch);
            match last {
                Some(id) => after = id,
                None => return Ok(keys),
            }
        }
    }

    /// Which of `keys` the catalog references now.
    async fn still_referenced(
        &self,
        keys: &[String],
    ) -> Result<HashSet<String>, crate::CatalogError> {
        let mut s = Statement::new();
        let list = keys
            .iter()
            .map(|k| s.arg(Arg::Text(k.clone())))
            .collect::<Vec<_>>()
            .join(", ");
        s.push(&format!(
            "SELECT p.original_key FROM photos p WHERE p.original_key IN ({list}) \
             UNION SELECT v.object_key FROM photo_variants v WHERE v.object_key IN ({list})"
        ));
        Ok(self.catalog.store().rows(&s).await?.into_iter().collect())
    }
}
