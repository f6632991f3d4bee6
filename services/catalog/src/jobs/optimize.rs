//! `optimize-images`: one item per photo, re-derived from its original by media's
//! ProcessStoredImage (every responsive preset, or the presets it already has; WebP beside JPEG
//! on request), recorded with fresh metadata and placeholders; then, on request, the original
//! moved to a cheaper storage class.

use async_trait::async_trait;
use photos_jobs::{ExecError, Executor, Item, Job, NewItem, Outcome};
use photos_proto::media::v1::{ImageFormat, ProcessOptions, ProcessStoredImageRequest};
use photos_proto::storage::v1::{SetStorageClassRequest, StorageClass};

use super::{
    OptimizeImagesParams, THUMBNAIL, Upstreams, catalog_outcome, failed_call, params, photo_items,
    record, variant_rows,
};
use crate::catalog::Catalog;
use crate::model::MediaResult;

const PHOTO_STATUS_READY: i32 = 2;

pub(crate) struct OptimizeImages {
    pub catalog: Catalog,
    pub upstreams: Upstreams,
}

/// The storage class named in the params (`STANDARD_IA`, ...), if any.
pub(crate) fn storage_class(name: &str) -> Option<StorageClass> {
    (!name.is_empty())
        .then(|| StorageClass::from_str_name(&format!("STORAGE_CLASS_{name}")))
        .flatten()
}

#[async_trait]
impl Executor for OptimizeImages {
    async fn plan(&self, job: &Job) -> Result<Vec<NewItem>, ExecError> {
        let p: OptimizeImagesParams = params(job)?;
        photo_items(&self.catalog, &p.album_id, false).await
    }

    async fn run(&self, job: &Job, items: &[Item]) -> Vec<Outcome> {
        let p: OptimizeImagesParams = match params(job) {
            Ok(p) => p,
            Err(e) => return vec![Outcome::Failed(e.message); items.len()],
        };
        let mut outcomes = Vec::with_capacity(items.len());
        for item in items {
            outcomes.push(self.optimize(&p, item).await);
        }
        outcomes
    }
}

impl OptimizeImages {
    async fn optimize(&self, p: &OptimizeImagesParams, item: &Item) -> Outcome {
        let photo = match self.catalog.get_photo(&item.key).await {
            Ok(photo) => photo,
            Err(crate::CatalogError::NotFound { .. }) => return Outcome::Done,
            Err(e) => return catalog_outcome(e),
        };
        let presets = if p.responsive {
            // Empty: every configured preset.
            Vec::new()
        } else {
            let mut names: Vec<String> = photo.variants.iter().map(|v| v.preset.clone()).collect();
            names.sort();
            names.dedup();
            if names.is_empty() {
                names.push(THUMBNAIL.into());
            }
            names
        };
        let mut formats = vec![ImageFormat::Jpeg as i32];
        if p.generate_webp {
            formats.push(ImageFormat::Webp as i32);
        }
        let request = ProcessStoredImageRequest {
            source_key: photo.original_key.clone(),
            options: Some(ProcessOptions {
                presets,
                formats,
                ..Default::default()
            }),
        };
        let derived = match self
            .upstreams
            .media
            .clone()
            .process_stored_image(request)
            .await
        {
            Ok(r) => r.into_inner(),
            Err(status) => return failed_call("media ProcessStoredImage", &status),
        };
        let metadata = derived.metadata.unwrap_or_default();
        let placeholders = derived.placeholders.unwrap_or_default();
        let result = MediaResult {
            photo_id: item.key.clone(),
            status: PHOTO_STATUS_READY,
            failure_reason: String::new(),
            width: metadata.width,
            height: metadata.height,
            taken_at: metadata
                .taken_time
                .map(|t| t.seconds.saturating_mul(1_000_000) + i64::from(t.nanos) / 1_000)
                .or(photo.taken_at),
            dominant_color: placeholders.dominant_color,
            blur_placeholder: placeholders.blur_data_uri,
            blurhash: placeholders.blurhash,
            thumbhash: placeholders.thumbhash,
            variants: Vec::new(),
        };
        let outcome = record(
            &self.catalog,
            &item.key,
            variant_rows(derived.variants),
            Some(result),
        )
        .await;
        if outcome != Outcome::Done {
            return outcome;
        }
        let Some(class) = storage_class(&p.storage_class) else {
            return Outcome::Done;
        };
        let request = SetStorageClassRequest {
            keys: vec![photo.original_key.clone()],
            storage_class: class as i32,
        };
        match self
            .upstreams
            .storage
            .clone()
            .set_storage_class(request)
            .await
        {
            Ok(r) => match r.into_inner().errors.into_iter().next() {
                None => Outcome::Done,
                Some(e) => Outcome::Failed(format!(
                    "storage class of {}: {} {}",
                    e.key, e.code, e.message
                )),
            },
            Err(status) => failed_call("storage SetStorageClass", &status),
        }
    }
}
