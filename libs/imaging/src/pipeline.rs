//! One photo in, every variant out: probe → decode once → cascade of resizes → parallel encodes.

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::decode::decode;
use crate::encode::{OutputFormat, WebpOptions, encode_jpeg, encode_webp};
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
        decode(bytes, &info, need_w, need_h, &options.limits)?
    };

    // Largest first, so each output can be cut from the smallest bigger one already made.
    let mut order: Vec<usize> = (0..plans.len()).collect();
    order.sort_by_key(|&i| {
        let (nw, nh) = plans[i].needed_frame(w, h);
        std::cmp::Reverse(u64::from(nw) * u64::from(nh))
    });
    // Outputs are resize sources for the smaller presets only when they are full frames (cover
    // crops are not); referenced by index so no raster is ever copied.
    let mut rasters: Vec<Option<Raster>> = vec![None; plans.len()];
    let mut frames: Vec<usize> = vec![];
    for &i in &order {
        let p = &plans[i];
        let (nw, nh) = p.needed_frame(w, h);
        let src = frames
            .iter()
            .filter_map(|&f| rasters[f].as_ref())
            .filter(|f| f.width >= nw && f.height >= nh)
            .min_by_key(|f| u64::from(f.width) * u64::from(f.height))
            .unwrap_or(&base);
        let sx = f64::from(src.width) / f64::from(w);
        let sy = f64::from(src.height) / f64::from(h);
        let window = match options.presets[i].fit {
            Fit::Inside => Window {
                left: 0.0,
                top: 0.0,
                width: f64::from(src.width),
                height: f64::from(src.height),
            },
            Fit::Cover => smart_window(src, p.crop_w * sx, p.crop_h * sy),
        };
        let out = {
            let _span = tracing::info_span!(
                "image.resize",
                image.preset = %options.presets[i].name,
                image.width = p.out_w,
                image.height = p.out_h,
            )
            .entered();
            resize(src, window, p.out_w, p.out_h)
        };
        rasters[i] = Some(out);
        if options.presets[i].fit == Fit::Inside {
            frames.push(i);
        }
    }
    let placeholders = {
        let src = frames
            .iter()
            .filter_map(|&f| rasters[f].as_ref())
            .filter(|f| f.width >= 64 || f.height >= 64 || (f.width == w && f.height == h))
            .min_by_key(|f| u64::from(f.width) * u64::from(f.height))
            .unwrap_or(&base);
        let _span = tracing::info_span!("image.placeholders").entered();
        placeholders(src)?
    };
    // The decoded frame is the biggest buffer: free it before the encoders allocate theirs.
    drop(base);

    let copyright_exif = if options.keep_copyright {
        info.copyright.as_deref().and_then(copyright_tiff)
    } else {
        None
    };
    let mut jobs: Vec<(usize, OutputFormat)> = Vec::new();
    for &i in &order {
        for &f in &options.formats {
            jobs.push((i, f));
        }
    }
    // Biggest (slowest) encodes start first so the tail is short.
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<EncodeResult>>> =
        Mutex::new((0..jobs.len()).map(|_| None).collect());
    let workers = options.threads.clamp(1, jobs.len().max(1));
    // Encoder threads do not inherit the caller's span; their spans name it as parent.
    let parent = tracing::Span::current();
    std::thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| {
                loop {
                    let j = next.fetch_add(1, Ordering::Relaxed);
                    let Some(&(i, format)) = jobs.get(j) else {
                        break;
                    };
                    let raster = rasters[i].as_ref().expect("every preset was resized");
                    let preset = &options.presets[i];
                    let span = tracing::info_span!(
                        parent: &parent,
                        "image.encode",
                        image.preset = %preset.name,
                        image.format = ?format,
                        image.bytes = tracing::field::Empty,
                    )
                    .entered();
                    let out = match format {
                        OutputFormat::Jpeg => {
                            encode_jpeg(raster, preset.jpeg_quality).map(
                                |b| match &copyright_exif {
                                    Some(tiff) => crate::jpeg_segments::insert_exif(&b, tiff),
                                    None => b,
                                },
                            )
                        }
                        OutputFormat::WebP => {
                            encode_webp(raster, preset.webp_quality, options.webp)
                        }
                    };
                    if let Ok(b) = &out {
                        span.record("image.bytes", b.len());
                    }
                    drop(span);
                    results.lock().expect("no panics while holding the lock")[j] = Some(out);
                }
            });
        }
    });
    let results = results.into_inner().expect("workers finished");
    let mut variants = Vec::with_capacity(jobs.len());
    for ((i, format), result) in jobs.into_iter().zip(results) {
        let bytes = result.expect("every job ran")?;
        let preset = &options.presets[i];
        let raster = rasters[i].as_ref().expect("every preset was resized");
        variants.push(Variant {
            preset: preset.name.clone(),
            format,
            width: raster.width,
            height: raster.height,
            key: variant_key(&info.sha256, preset, format, options.webp),
            bytes,
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
