//! Output encoders: progressive JPEG (libjpeg-turbo) and WebP (libwebp). Both write no metadata.

use crate::{ImagingError, Raster};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OutputFormat {
    Jpeg,
    WebP,
}

impl OutputFormat {
    pub fn extension(self) -> &'static str {
        match self {
            OutputFormat::Jpeg => "jpg",
            OutputFormat::WebP => "webp",
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            OutputFormat::Jpeg => "image/jpeg",
            OutputFormat::WebP => "image/webp",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WebpOptions {
    /// libwebp effort 0..=6; 6 is the smallest output and about twice the time of 4.
    pub method: u8,
    pub lossless: bool,
}

impl Default for WebpOptions {
    fn default() -> Self {
        Self {
            method: 6,
            lossless: false,
        }
    }
}

/// Progressive, 4:2:0, optimised Huffman tables. Alpha must already be flattened.
pub fn encode_jpeg(raster: &Raster, quality: u8) -> Result<Vec<u8>, ImagingError> {
    let err = |e: turbojpeg::Error| ImagingError::Encode {
        format: "jpeg",
        reason: e.to_string(),
    };
    let flat;
    let rgb = if raster.alpha {
        flat = raster.flattened();
        &flat
    } else {
        raster
    };
    let mut c = turbojpeg::Compressor::new().map_err(err)?;
    c.set_quality(i32::from(quality.clamp(1, 100)))
        .map_err(err)?;
    c.set_subsamp(turbojpeg::Subsamp::Sub2x2).map_err(err)?;
    c.set_progressive(true).map_err(err)?;
    c.set_optimize(true).map_err(err)?;
    c.compress_to_vec(turbojpeg::Image {
        pixels: rgb.pixels.as_slice(),
        width: rgb.width as usize,
        pitch: rgb.width as usize * 3,
        height: rgb.height as usize,
        format: turbojpeg::PixelFormat::RGB,
    })
    .map_err(err)
}

/// Lossy (or lossless) WebP; alpha is kept.
pub fn encode_webp(
    raster: &Raster,
    quality: u8,
    options: WebpOptions,
) -> Result<Vec<u8>, ImagingError> {
    encode_webp_threads(raster, quality, options, false)
}

/// As [`encode_webp`], with libwebp's second thread (`thread_level = 1`): its analysis pass and
/// the alpha plane run beside the main encode. Same output, same CPU, a shorter wall when a core
/// is free: the pipeline uses it for its biggest encode, the one that sets the photo's wall time.
pub fn encode_webp_threads(
    raster: &Raster,
    quality: u8,
    options: WebpOptions,
    threads: bool,
) -> Result<Vec<u8>, ImagingError> {
    let err = |reason: String| ImagingError::Encode {
        format: "webp",
        reason,
    };
    let mut config = libwebp_sys::WebPConfig::new().map_err(|()| err("config init".into()))?;
    config.quality = f32::from(quality.min(100));
    config.method = i32::from(options.method.min(6));
    config.lossless = i32::from(options.lossless);
    config.thread_level = i32::from(threads);
    if options.lossless {
        // For lossless, `quality` is effort; keep it high for small files.
        config.quality = 75.0;
    }
    crate::webp_ffi::encode(
        &raster.pixels,
        raster.width,
        raster.height,
        raster.alpha,
        &config,
    )
    .map_err(err)
}
