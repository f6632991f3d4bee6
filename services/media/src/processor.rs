//! Runs the imaging library off the async runtime: one blocking task per photo, behind a
//! semaphore sized to the cores so a burst of uploads queues instead of multiplying memory.

use std::sync::Arc;

use photos_imaging::{
    ImageInfo, Limits, OutputFormat, Preset, ProcessOptions, Processed, WebpOptions,
};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use tokio::sync::Semaphore;

use crate::MediaError;
use crate::config::PipelineConfig;

pub struct Processor {
    permits: Arc<Semaphore>,
    metrics: PipelineMetrics,
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
            metrics: PipelineMetrics::default(),
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
        let input = bytes.len() as u64;
        let started = std::time::Instant::now();
        let result = self
            .blocking(move || photos_imaging::process(&bytes, &options).map_err(MediaError::from))
            .await;
        self.metrics.record(input, started.elapsed(), &result);
        result
    }

    pub fn register_metrics(&self, registry: &mut Registry) {
        self.metrics.register(registry);
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
        self.metrics.waiting.inc();
        let permit = self.permits.clone().acquire_owned().await;
        self.metrics.waiting.dec();
        let _permit = permit.map_err(|e| MediaError::Worker(e.to_string()))?;
        // The blocking pool does not inherit the caller's span; the image stages belong to it.
        let span = tracing::Span::current();
        tokio::task::spawn_blocking(move || span.in_scope(f))
            .await
            .map_err(|e| MediaError::Worker(e.to_string()))?
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FormatLabels {
    format: &'static str,
}

/// Pipeline throughput for the dashboards: photos per outcome, time per photo (queueing for a
/// decode slot included, as callers see it), bytes in and out, and the queue in front of the
/// decode slots.
#[derive(Clone)]
struct PipelineMetrics {
    photos: Family<OutcomeLabels, Counter>,
    duration: Histogram,
    input_bytes: Counter,
    output_bytes: Family<FormatLabels, Counter>,
    waiting: Gauge,
}

impl Default for PipelineMetrics {
    fn default() -> Self {
        Self {
            photos: Family::default(),
            // 10 ms .. ~80 s.
            duration: Histogram::new(exponential_buckets(0.01, 2.0, 14)),
            input_bytes: Counter::default(),
            output_bytes: Family::default(),
            waiting: Gauge::default(),
        }
    }
}

impl PipelineMetrics {
    fn record(
        &self,
        input: u64,
        elapsed: std::time::Duration,
        result: &Result<Processed, MediaError>,
    ) {
        let outcome = if result.is_ok() { "ok" } else { "error" };
        self.photos.get_or_create(&OutcomeLabels { outcome }).inc();
        self.duration.observe(elapsed.as_secs_f64());
        self.input_bytes.inc_by(input);
        if let Ok(processed) = result {
            for v in &processed.variants {
                let format = match v.format {
                    OutputFormat::Jpeg => "jpeg",
                    OutputFormat::WebP => "webp",
                };
                self.output_bytes
                    .get_or_create(&FormatLabels { format })
                    .inc_by(v.bytes.len() as u64);
            }
        }
    }

    fn register(&self, registry: &mut Registry) {
        registry.register(
            "media_photos",
            "Photos run through the pipeline, by outcome",
            self.photos.clone(),
        );
        registry.register(
            "media_process_duration_seconds",
            "Time to derive every variant of one photo, including the wait for a decode slot",
            self.duration.clone(),
        );
        registry.register(
            "media_input_bytes",
            "Bytes of originals processed",
            self.input_bytes.clone(),
        );
        registry.register(
            "media_output_bytes",
            "Bytes of variants produced, by format",
            self.output_bytes.clone(),
        );
        registry.register(
            "media_decode_waiting",
            "Photos waiting for a decode slot",
            self.waiting.clone(),
        );
    }
}
