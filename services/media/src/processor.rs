//! Runs the imaging library off the async runtime: one blocking task per photo, behind a
//! semaphore sized to the cores so a burst of uploads queues instead of multiplying memory.

use std::sync::Arc;

use photos_imaging::{
    ImageInfo, Limits, OutputFormat, Preset, ProcessOptions, Processed, WebpOptions,
};
use tokio::sync::Semaphore;

use crate::MediaError;
use crate::config::PipelineConfig;

pub struct Processor {
    permits: Arc<Semaphore>,
    limits: Limits,
    presets: Vec<Preset>,
    webp: WebpOptions,
    encode_threads: usize,
}

/// What a caller may vary per request.
#[derive(Debug, Clone, Default)]
pub struct Request {
    /// Empty: every configured preset.
    pub presets: Vec<String>,
    /// Replaces the named presets (RegenerateVariants with a custom size).
    pub custom: Option<Preset>,
    pub formats: Vec<OutputFormat>,
    pub webp_lossless: bool,
    pub keep_copyright: bool,
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get())
}

impl Processor {
    pub fn new(config: &PipelineConfig) -> Self {
        let concurrent = if config.max_concurrent == 0 {
            cores()
        } else {
            config.max_concurrent
        };
        Self {
            permits: Arc::new(Semaphore::new(concurrent)),
            limits: Limits {
                max_bytes: config.max_bytes,
                max_pixels: config.max_pixels,
                max_dimension: config.max_dimension,
                max_icc_bytes: config.max_icc_bytes,
            },
            presets: config.presets.iter().map(|p| p.to_preset()).collect(),
            webp: WebpOptions {
                method: config.webp_method,
                lossless: config.webp_lossless,
            },
            encode_threads: if config.encode_threads == 0 {
                cores()
            } else {
                config.encode_threads
            },
        }
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    pub fn presets(&self) -> &[Preset] {
        &self.presets
    }

    pub fn options(&self, req: &Request) -> Result<ProcessOptions, MediaError> {
        let presets = if let Some(custom) = &req.custom {
            vec![custom.clone()]
        } else if req.presets.is_empty() {
            self.presets.clone()
        } else {
            let mut out = Vec::with_capacity(req.presets.len());
            for name in &req.presets {
                let p = self
                    .presets
                    .iter()
                    .find(|p| &p.name == name)
                    .ok_or_else(|| {
                        MediaError::InvalidArgument(format!(
                            "unknown preset {name:?}: use one of {}",
                            self.presets
                                .iter()
                                .map(|p| p.name.as_str())
                                .collect::<Vec<_>>()
                                .join(", ")
                        ))
                    })?;
                if !out.contains(p) {
                    out.push(p.clone());
                }
            }
            out
        };
        let formats = if req.formats.is_empty() {
            vec![OutputFormat::Jpeg, OutputFormat::WebP]
        } else {
            req.formats.clone()
        };
        Ok(ProcessOptions {
            presets,
            formats,
            webp: WebpOptions {
                method: self.webp.method,
                lossless: self.webp.lossless || req.webp_lossless,
            },
            keep_copyright: req.keep_copyright,
            limits: self.limits,
            threads: self.encode_threads,
        })
    }

    pub async fn process(
        &self,
        bytes: Arc<Vec<u8>>,
        options: ProcessOptions,
    ) -> Result<Processed, MediaError> {
        self.blocking(move || photos_imaging::process(&bytes, &options).map_err(MediaError::from))
            .await
    }

    pub async fn probe(&self, bytes: Arc<Vec<u8>>) -> Result<ImageInfo, MediaError> {
        let limits = self.limits;
        self.blocking(move || photos_imaging::probe(&bytes, &limits).map_err(MediaError::from))
            .await
    }

    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> Result<T, MediaError> + Send + 'static,
    ) -> Result<T, MediaError> {
        let _permit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|e| MediaError::Worker(e.to_string()))?;
        // The blocking pool does not inherit the caller's span; the image stages belong to it.
        let span = tracing::Span::current();
        tokio::task::spawn_blocking(move || span.in_scope(f))
            .await
            .map_err(|e| MediaError::Worker(e.to_string()))?
    }
}
