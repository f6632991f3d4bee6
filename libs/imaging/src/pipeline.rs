//! One photo in, every variant out: probe → decode once → cascade of resizes → parallel encodes.

use std::sync::{Arc, Condvar, Mutex};

use crate::decode::decode;
use crate::encode::{OutputFormat, WebpOptions, encode_jpeg, encode_webp_threads};
use crate::geometry::{Fit, Plan, plan};
use crate::placeholders::{Placeholders, placeholders};
use crate::probe::{ImageInfo, Limits, probe};
use crate::resize::{Window, resize, smart_window};
use crate::{ImagingError, Raster};

/// Bumped whenever the pixels a preset produces change (filter, crop, encoder settings), so new
/// keys are written rather than stale variants reused.
pub const TRANSFORM_VERSION: u32 = 1;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Preset {
    pub name: String,
    pub width: u32,
    pub height: u32,
    pub fit: Fit,
    pub jpeg_quality: u8,
    pub webp_quality: u8,
}

impl Preset {
    pub fn new(name: &str, width: u32, height: u32, fit: Fit, jpeg_quality: u8) -> Self {
        Self {
            name: name.to_string(),
            width,
            height,
            fit,
            jpeg_quality,
            webp_quality: 85,
        }
    }

    pub fn validate(&self) -> Result<(), ImagingError> {
        let bad = |m: String| Err(ImagingError::InvalidOption(m));
        if self.name.is_empty()
            || !self
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return bad(format!(
                "preset name {:?} must be non-empty ascii letters, digits, '-' or '_'",
                self.name
            ));
        }
        if !(1..=10_000).contains(&self.width) || !(1..=10_000).contains(&self.height) {
            return bad(format!(
                "preset {} size {}x{} must be within 1..=10000 on each side",
                self.name, self.width, self.height
            ));
        }
        if !(1..=100).contains(&self.jpeg_quality) || !(1..=100).contains(&self.webp_quality) {
            return bad(format!(
                "preset {} quality must be within 1..=100",
                self.name
            ));
        }
        Ok(())
    }
}

/// The seed's table. Smaller sizes get a slightly lower JPEG quality: artefacts are less visible
/// once downscaled, and thumbnails dominate page weight.
pub fn default_presets() -> Vec<Preset> {
    vec![
        Preset::new("thumbnail", 400, 400, Fit::Cover, 80),
        Preset::new("small", 640, 480, Fit::Inside, 82),
        Preset::new("medium", 1024, 768, Fit::Inside, 84),
        Preset::new("large", 1920, 1080, Fit::Inside, 85),
        Preset::new("xlarge", 2560, 1440, Fit::Inside, 85),
    ]
}

#[derive(Debug, Clone)]
pub struct ProcessOptions {
    pub presets: Vec<Preset>,
    pub formats: Vec<OutputFormat>,
    pub webp: WebpOptions,
    /// Copy the EXIF Copyright tag (only) into JPEG derivatives.
    pub keep_copyright: bool,
    pub limits: Limits,
    /// Encoder threads for one photo.
    pub threads: usize,
}

impl Default for ProcessOptions {
    fn default() -> Self {
        Self {
            presets: default_presets(),
            formats: vec![OutputFormat::Jpeg, OutputFormat::WebP],
            webp: WebpOptions::default(),
            keep_copyright: false,
            limits: Limits::default(),
            threads: std::thread::available_parallelism().map_or(2, |n| n.get()),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Variant {
    pub preset: String,
    pub format: OutputFormat,
    pub width: u32,
    pub height: u32,
    pub key: String,
    pub bytes: Vec<u8>,
}

#[derive(Debug, Clone)]
pub struct Processed {
    pub info: ImageInfo,
    pub placeholders: Placeholders,
    pub variants: Vec<Variant>,
}

/// The storage key of a variant: derived only from the source content and the transform, so
/// reprocessing is idempotent and duplicates share their variants.
pub fn variant_key(
    source_sha256: &str,
    preset: &Preset,
    format: OutputFormat,
    webp: WebpOptions,
) -> String {
    let fit = match preset.fit {
        Fit::Inside => "inside",
        Fit::Cover => "cover",
    };
    let q = match format {
        OutputFormat::Jpeg => format!("q{}", preset.jpeg_quality),
        OutputFormat::WebP if webp.lossless => format!("lossless-m{}", webp.method),
        OutputFormat::WebP => format!("q{}-m{}", preset.webp_quality, webp.method),
    };
    // The first two characters shard the prefix (by character, not byte: the function is
    // public and must not panic on a non-hex argument; found by fuzzing).
    let shard: String = source_sha256.chars().take(2).collect();
    format!(
        "variants/{}/{}/{}/{}-{}x{}-{}-{}-t{}.{}",
        shard,
        source_sha256,
        preset.name,
        preset.name,
        preset.width,
        preset.height,
        fit,
        q,
        TRANSFORM_VERSION,
        format.extension()
    )
}

pub fn process(bytes: &[u8], options: &ProcessOptions) -> Result<Processed, ImagingError> {
    if options.formats.is_empty() {
        return Err(ImagingError::InvalidOption(
            "no output format requested".into(),
        ));
    }
    for p in &options.presets {
        p.validate()?;
    }
    let info = probe(bytes, &options.limits)?;
    let (w, h) = (info.width, info.height);
    let plans: Vec<Plan> = options
        .presets
        .iter()
        .map(|p| plan(w, h, p.width, p.height, p.fit))
        .collect();
    // Placeholders come from a ≥64 px frame; make sure decode keeps at least that much.
    let (mut need_w, mut need_h) = plan(w, h, 64, 64, Fit::Inside).needed_frame(w, h);
    for p in &plans {
        let (nw, nh) = p.needed_frame(w, h);
        need_w = need_w.max(nw);
        need_h = need_h.max(nh);
    }
    let base = {
        let _span = tracing::info_span!(
            "image.decode",
            image.format = ?info.format,
            image.width = w,
            image.height = h,
            image.bytes = bytes.len(),
        )
        .entered();
        Arc::new(decode(bytes, &info, need_w, need_h, &options.limits)?)
    };

    // Largest first, so each output can be cut from the smallest bigger one already made.
    let mut order: Vec<usize> = (0..plans.len()).collect();
    order.sort_by_key(|&i| {
        let (nw, nh) = plans[i].needed_frame(w, h);
        std::cmp::Reverse(u64::from(nw) * u64::from(nh))
    });
    let copyright_exif = if options.keep_copyright {
        info.copyright.as_deref().and_then(copyright_tiff)
    } else {
        None
    };
    let encoder = Encoder {
        options,
        copyright_exif: copyright_exif.as_deref(),
        // Encoder threads do not inherit the caller's span; their spans name it as parent.
        parent: tracing::Span::current(),
    };
    let queue = JobQueue::default();
    let workers = options.threads.max(1);
    // The caller's thread decodes and resizes, then encodes too; `threads - 1` more encode from
    // the moment the first (biggest) output exists, so the slowest encode starts first and the
    // encodes overlap the rest of the cascade.
    let placeholders = std::thread::scope(|s| {
        for _ in 1..workers {
            s.spawn(|| queue.work(&encoder));
        }
        // Closed on every way out (an error or a panic too), so the workers always stop.
        let closing = CloseOnDrop(&queue);
        let placeholders = cascade(base, w, h, &plans, &order, options, &queue);
        drop(closing);
        queue.work(&encoder);
        placeholders
    })?;

    let mut variants = Vec::with_capacity(order.len() * options.formats.len());
    for done in queue.into_results() {
        let preset = &options.presets[done.preset];
        variants.push(Variant {
            preset: preset.name.clone(),
            format: done.format,
            width: done.width,
            height: done.height,
            key: variant_key(&info.sha256, preset, done.format, options.webp),
            bytes: done.bytes?,
        });
    }
    // Stable order for callers: presets as configured, formats as requested.
    variants.sort_by_key(|v| {
        (
            options.presets.iter().position(|p| p.name == v.preset),
            options.formats.iter().position(|f| *f == v.format),
        )
    });
    Ok(Processed {
        info,
        placeholders,
        variants,
    })
}

/// Resizes every preset, largest first, each from the smallest full frame already made that is
/// big enough, and queues its encodes as soon as it exists. The decoded frame is released as
/// soon as no remaining preset needs it; every other raster when its last encode is done (jobs
/// hold them by `Arc`, nothing is copied).
fn cascade(
    base: Arc<Raster>,
    w: u32,
    h: u32,
    plans: &[Plan],
    order: &[usize],
    options: &ProcessOptions,
    queue: &JobQueue,
) -> Result<Placeholders, ImagingError> {
    let mut base = Some(base);
    // Full-frame outputs, largest first: the resize sources of the smaller presets (cover crops
    // are not full frames).
    let mut frames: Vec<Arc<Raster>> = vec![];
    let fits = |f: &Raster, (nw, nh): (u32, u32)| f.width >= nw && f.height >= nh;
    let placeholder_need = plan(w, h, 64, 64, Fit::Inside).needed_frame(w, h);
    for (k, &i) in order.iter().enumerate() {
        let p = &plans[i];
        let need = p.needed_frame(w, h);
        let src: Arc<Raster> = match frames.iter().rev().find(|f| fits(f, need)) {
            Some(f) => f.clone(),
            None => base
                .clone()
                .expect("the decoded frame is kept while a preset needs it"),
        };
        let window = match options.presets[i].fit {
            Fit::Inside => Window {
                left: 0.0,
                top: 0.0,
                width: f64::from(src.width),
                height: f64::from(src.height),
            },
            Fit::Cover => {
                let sx = f64::from(src.width) / f64::from(w);
                let sy = f64::from(src.height) / f64::from(h);
                smart_window(&src, p.crop_w * sx, p.crop_h * sy)
            }
        };
        let out = if options.presets[i].fit == Fit::Inside
            && (p.out_w, p.out_h) == (src.width, src.height)
        {
            // Same size (a small source): share the frame instead of copying it.
            src
        } else {
            let _span = tracing::info_span!(
                "image.resize",
                image.preset = %options.presets[i].name,
                image.width = p.out_w,
                image.height = p.out_h,
            )
            .entered();
            Arc::new(resize(&src, window, p.out_w, p.out_h))
        };
        for &format in &options.formats {
            queue.push(Job {
                preset: i,
                format,
                cost: cost(&out, format, options.webp),
                // The biggest WebP sets the photo's wall time: give it libwebp's second thread.
                split: k == 0 && options.threads > 1,
                raster: out.clone(),
            });
        }
        if options.presets[i].fit == Fit::Inside {
            frames.push(out);
        }
        let rest_served = order[k + 1..]
            .iter()
            .map(|&j| plans[j].needed_frame(w, h))
            .chain([placeholder_need])
            .all(|need| frames.iter().any(|f| fits(f, need)));
        if rest_served {
            // The decoded frame is the biggest buffer: free it before the encoders allocate.
            base = None;
        }
    }
    let src = frames
        .iter()
        .rev()
        .find(|f| fits(f, placeholder_need))
        .or(base.as_ref())
        .expect("the decoded frame is kept while the placeholders need it");
    let _span = tracing::info_span!("image.placeholders").entered();
    placeholders(src)
}

/// Relative CPU cost of an encode, for longest-job-first scheduling: per pixel, a lossy WebP at
/// method 6 costs about 10 progressive JPEGs (measured by `imaging-bench --stages`).
fn cost(raster: &Raster, format: OutputFormat, webp: WebpOptions) -> u64 {
    let pixels = u64::from(raster.width) * u64::from(raster.height);
    match format {
        OutputFormat::Jpeg => pixels,
        OutputFormat::WebP if webp.lossless => pixels * 20,
        OutputFormat::WebP => pixels * (2 + u64::from(webp.method.min(6)) * 3 / 2),
    }
}

struct Job {
    preset: usize,
    format: OutputFormat,
    cost: u64,
    split: bool,
    raster: Arc<Raster>,
}

struct Done {
    preset: usize,
    format: OutputFormat,
    width: u32,
    height: u32,
    bytes: EncodeResult,
}

#[derive(Default)]
struct QueueState {
    pending: Vec<Job>,
    closed: bool,
    done: Vec<Done>,
}

/// Encodes waiting for a thread; the costliest is taken first.
#[derive(Default)]
struct JobQueue {
    state: Mutex<QueueState>,
    ready: Condvar,
}

impl JobQueue {
    fn lock(&self) -> std::sync::MutexGuard<'_, QueueState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn push(&self, job: Job) {
        self.lock().pending.push(job);
        self.ready.notify_one();
    }

    fn close(&self) {
        self.lock().closed = true;
        self.ready.notify_all();
    }

    fn next(&self) -> Option<Job> {
        let mut state = self.lock();
        loop {
            if let Some(k) = (0..state.pending.len()).max_by_key(|&k| state.pending[k].cost) {
                return Some(state.pending.swap_remove(k));
            }
            if state.closed {
                return None;
            }
            state = self.ready.wait(state).unwrap_or_else(|e| e.into_inner());
        }
    }

    fn work(&self, encoder: &Encoder<'_>) {
        while let Some(job) = self.next() {
            let done = Done {
                preset: job.preset,
                format: job.format,
                width: job.raster.width,
                height: job.raster.height,
                bytes: encoder.encode(&job),
            };
            // The raster is released here when this was its last encode.
            drop(job);
            self.lock().done.push(done);
        }
    }

    fn into_results(self) -> Vec<Done> {
        self.state
            .into_inner()
            .unwrap_or_else(|e| e.into_inner())
            .done
    }
}

struct CloseOnDrop<'a>(&'a JobQueue);

impl Drop for CloseOnDrop<'_> {
    fn drop(&mut self) {
        self.0.close();
    }
}

struct Encoder<'a> {
    options: &'a ProcessOptions,
    copyright_exif: Option<&'a [u8]>,
    parent: tracing::Span,
}

impl Encoder<'_> {
    fn encode(&self, job: &Job) -> EncodeResult {
        let preset = &self.options.presets[job.preset];
        let span = tracing::info_span!(
            parent: &self.parent,
            "image.encode",
            image.preset = %preset.name,
            image.format = ?job.format,
            image.bytes = tracing::field::Empty,
        )
        .entered();
        let out = match job.format {
            OutputFormat::Jpeg => {
                encode_jpeg(&job.raster, preset.jpeg_quality).map(|b| match self.copyright_exif {
                    Some(tiff) => crate::jpeg_segments::insert_exif(&b, tiff),
                    None => b,
                })
            }
            OutputFormat::WebP => encode_webp_threads(
                &job.raster,
                preset.webp_quality,
                self.options.webp,
                job.split,
            ),
        };
        if let Ok(b) = &out {
            span.record("image.bytes", b.len());
        }
        out
    }
}

type EncodeResult = Result<Vec<u8>, ImagingError>;

/// A TIFF/EXIF block holding only the Copyright tag.
fn copyright_tiff(copyright: &str) -> Option<Vec<u8>> {
    let field = exif::Field {
        tag: exif::Tag::Copyright,
        ifd_num: exif::In::PRIMARY,
        value: exif::Value::Ascii(vec![copyright.as_bytes().to_vec()]),
    };
    let mut writer = exif::experimental::Writer::new();
    writer.push_field(&field);
    let mut buf = std::io::Cursor::new(Vec::new());
    writer.write(&mut buf, false).ok()?;
    Some(buf.into_inner())
}

#[cfg(test)]
mod fuzz_regressions {
    use super::*;

    /// services/storage/fuzz `object_key`: a multi-byte character across byte 2 of the hash
    /// panicked on a byte slice. Hex hashes are unchanged.
    #[test]
    fn variant_key_takes_characters_not_bytes() {
        let preset = Preset::new("small", 640, 480, Fit::Inside, 82);
        let webp = WebpOptions {
            method: 4,
            lossless: false,
        };
        let odd = "o\u{FFFD}\u{FFFD}..\\b";
        let key = variant_key(odd, &preset, OutputFormat::Jpeg, webp);
        assert!(key.starts_with("variants/o\u{FFFD}/"), "{key}");
        let hex = "ab".repeat(32);
        let key = variant_key(&hex, &preset, OutputFormat::WebP, webp);
        assert!(
            key.starts_with(&format!("variants/ab/{hex}/small/")),
            "{key}"
        );
        assert_eq!(
            variant_key("", &preset, OutputFormat::Jpeg, webp)
                .split('/')
                .nth(1),
            Some("")
        );
    }
}
