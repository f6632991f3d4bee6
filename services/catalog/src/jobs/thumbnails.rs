//! `generate-thumbnails`: one item per photo, the thumbnail (JPEG and WebP) re-derived from the
//! original by media's RegenerateVariants and recorded on the photo.

use async_trait::async_trait;
use photos_jobs::{ExecError, Executor, Item, Job, NewItem, Outcome};
use photos_proto::media::v1::{FitMode, ImageFormat, Preset, RegenerateVariantsRequest};

use super::{
    GenerateThumbnailsParams, THUMBNAIL, Upstreams, failed_call, params, photo_items, record,
    variant_rows,
};
use crate::catalog::Catalog;

pub(crate) struct GenerateThumbnails {
    pub catalog: Catalog,
    pub upstreams: Upstreams,
}

#[async_trait]
impl Executor for GenerateThumbnails {
    async fn plan(&self, job: &Job) -> Result<Vec<NewItem>, ExecError> {
        let p: GenerateThumbnailsParams = params(job)?;
        photo_items(&self.catalog, &p.album_id, p.missing_only).await
    }

    async fn run(&self, job: &Job, items: &[Item]) -> Vec<Outcome> {
        let p: GenerateThumbnailsParams = match params(job) {
            Ok(p) => p,
            Err(e) => return vec![Outcome::Failed(e.message); items.len()],
        };
        let mut outcomes = Vec::with_capacity(items.len());
        for item in items {
            outcomes.push(self.thumbnail(&p, item).await);
        }
        outcomes
    }
}

impl GenerateThumbnails {
    async fn thumbnail(&self, p: &GenerateThumbnailsParams, item: &Item) -> Outcome {
        let custom = (p.width > 0).then(|| Preset {
            // The custom size replaces the thumbnail: pages keep finding it by name.
            name: THUMBNAIL.into(),
            width: p.width,
            height: p.height,
            fit: FitMode::Cover as i32,
            jpeg_quality: p.quality,
            webp_quality: p.quality,
        });
        let request = RegenerateVariantsRequest {
            source_key: item.detail.clone(),
            preset: if custom.is_some() {
                String::new()
            } else {
                THUMBNAIL.into()
            },
            custom,
            formats: vec![ImageFormat::Jpeg as i32, ImageFormat::Webp as i32],
        };
        let variants = match self
            .upstreams
            .media
            .clone()
            .regenerate_variants(request)
            .await
        {
            Ok(r) => r.into_inner().variants,
            Err(status) => return failed_call("media RegenerateVariants", &status),
        };
        record(&self.catalog, &item.key, variant_rows(variants), None).await
    }
}
