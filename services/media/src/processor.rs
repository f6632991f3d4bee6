//! Runs the imaging library off the async runtime: one blocking task per photo, behind a
//! semaphore sized to the cores so a burst of uploads queues instead of multiplying memory.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

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
    in_flight: Arc<InFlight>,
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
            in_flight: Arc::default(),
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
        let in_flight = self.in_flight.clone();
        let gauge = self.metrics.decoding.clone();
        tokio::task::spawn_blocking(move || {
            let _running = in_flight.enter(&gauge);
            span.in_scope(f)
        })
        .await
        .map_err(|e| MediaError::Worker(e.to_string()))?
    }

    /// The most photos that were ever being decoded or encoded at once (the semaphore's bound).
    #[cfg(test)]
    fn peak_in_flight(&self) -> usize {
        self.in_flight.peak.load(Ordering::SeqCst)
    }
}

/// Work running in the blocking pool, counted where it runs (inside the pool, not at the
/// semaphore), so a counting test sees what actually overlaps.
#[derive(Default)]
struct InFlight {
    now: AtomicUsize,
    peak: AtomicUsize,
}

impl InFlight {
    fn enter<'a>(&'a self, gauge: &'a Gauge) -> impl Drop + 'a {
        let now = self.now.fetch_add(1, Ordering::SeqCst) + 1;
        self.peak.fetch_max(now, Ordering::SeqCst);
        gauge.inc();
        Leave(self, gauge)
    }
}

struct Leave<'a>(&'a InFlight, &'a Gauge);

impl Drop for Leave<'_> {
    fn drop(&mut self) {
        self.0.now.fetch_sub(1, Ordering::SeqCst);
        self.1.dec();
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
    decoding: Gauge,
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
            decoding: Gauge::default(),
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
        registry.register(
            "media_decoding",
            "Photos holding a decode slot (decoding, resizing or encoding) now",
            self.decoding.clone(),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A real photo: gradients plus noise, big enough that each decode takes a while.
    fn photo() -> Vec<u8> {
        let (w, h) = (1200u32, 900u32);
        let mut x = 0x9E37_79B9u32;
        let mut pixels = Vec::with_capacity((w * h * 3) as usize);
        for py in 0..h {
            for px in 0..w {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                pixels.extend([
                    (px * 200 / w + x % 40) as u8,
                    (py * 200 / h + x % 30) as u8,
                    90,
                ]);
            }
        }
        photos_imaging::encode_jpeg(
            &photos_imaging::Raster {
                width: w,
                height: h,
                alpha: false,
                pixels,
            },
            90,
        )
        .unwrap()
    }

    async fn peak_with(slots: usize, photos: usize, bytes: &Arc<Vec<u8>>) -> usize {
        let processor = Arc::new(Processor::new(&PipelineConfig {
            max_concurrent: slots,
            encode_threads: 1,
            ..PipelineConfig::default()
        }));
        let options = processor
            .options(&Request {
                presets: vec!["large".into(), "medium".into(), "thumbnail".into()],
                formats: vec![OutputFormat::Jpeg],
                ..Request::default()
            })
            .unwrap();
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..photos {
            let (processor, options) = (processor.clone(), options.clone());
            let bytes = bytes.clone();
            tasks.spawn(async move { processor.process(bytes, options).await.map(|_| ()) });
        }
        while let Some(done) = tasks.join_next().await {
            done.unwrap().unwrap();
        }
        assert_eq!(processor.in_flight.now.load(Ordering::SeqCst), 0);
        processor.peak_in_flight()
    }

    // Counting, not timing: however the photos interleave, no more than `slots` are ever in
    // the blocking pool at once, and with more photos than slots the bound is reached.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn the_decode_semaphore_bounds_concurrent_decodes_to_its_size() {
        let bytes = Arc::new(photo());
        assert_eq!(peak_with(2, 6, &bytes).await, 2);
        assert_eq!(peak_with(1, 3, &bytes).await, 1);
    }
}
