//! Pixels from bytes, once per photo: DCT-scaled JPEG decode, ICC → sRGB, orientation applied.

use image::{DynamicImage, ImageDecoder};

use crate::probe::{ImageInfo, Limits, header_decoder};
use crate::{Format, ImagingError};

/// An 8-bit sRGB raster, RGB or (when the source has real transparency) RGBA.
#[derive(Debug, Clone)]
pub struct Raster {
    pub width: u32,
    pub height: u32,
    pub alpha: bool,
    pub pixels: Vec<u8>,
}

impl Raster {
    pub fn channels(&self) -> usize {
        if self.alpha { 4 } else { 3 }
    }

    pub fn pixel(&self, x: u32, y: u32) -> &[u8] {
        let c = self.channels();
        let i = (y as usize * self.width as usize + x as usize) * c;
        &self.pixels[i..i + c]
    }

    /// Composites over white: JPEG has no alpha channel.
    pub fn flattened(&self) -> Raster {
        if !self.alpha {
            return self.clone();
        }
        let mut out = Vec::with_capacity(self.pixels.len() / 4 * 3);
        for px in self.pixels.chunks_exact(4) {
            let a = u32::from(px[3]);
            for &c in &px[..3] {
                out.push(((u32::from(c) * a + 255 * (255 - a) + 127) / 255) as u8);
            }
        }
        Raster {
            width: self.width,
            height: self.height,
            alpha: false,
            pixels: out,
        }
    }

    pub fn to_rgba(&self) -> Vec<u8> {
        if self.alpha {
            return self.pixels.clone();
        }
        let mut out = Vec::with_capacity(self.pixels.len() / 3 * 4);
        for px in self.pixels.chunks_exact(3) {
            out.extend_from_slice(px);
            out.push(255);
        }
        out
    }
}

/// Decodes the whole image, scaled down in the DCT domain (JPEG) as far as `need_w`×`need_h`
/// (displayed orientation) allows, then converts to sRGB and applies the orientation.
pub fn decode(
    bytes: &[u8],
    info: &ImageInfo,
    need_w: u32,
    need_h: u32,
    limits: &Limits,
) -> Result<Raster, ImagingError> {
    // The limits were checked by `probe`; re-check in case the caller built `info` by hand.
    limits.check_dimensions(info.stored_width, info.stored_height)?;
    let (need_sw, need_sh) = if info.orientation >= 5 {
        (need_h, need_w)
    } else {
        (need_w, need_h)
    };
    let mut raster = match info.format {
        Format::Jpeg if !info.jpeg_cmyk => decode_jpeg_scaled(bytes, info, need_sw, need_sh)?,
        format => decode_generic(bytes, format, info, limits)?,
    };
    if let Some(icc) = &info.icc_profile {
        to_srgb(&mut raster, icc);
    }
    Ok(orient(raster, info.orientation))
}

fn decode_jpeg_scaled(
    bytes: &[u8],
    info: &ImageInfo,
    need_w: u32,
    need_h: u32,
) -> Result<Raster, ImagingError> {
    let corrupt = |e: turbojpeg::Error| ImagingError::Corrupt {
        format: "jpeg",
        reason: e.to_string(),
    };
    let eighths =
        crate::geometry::jpeg_scale_eighths(info.stored_width, info.stored_height, need_w, need_h);
    let mut d = turbojpeg::Decompressor::new().map_err(corrupt)?;
    let header = d.read_header(bytes).map_err(corrupt)?;
    let factor = turbojpeg::ScalingFactor::new(eighths as usize, 8);
    d.set_scaling_factor(factor).map_err(corrupt)?;
    let scaled = header.scaled(factor);
    let format = turbojpeg::PixelFormat::RGB;
    let pitch = scaled.width * format.size();
    let mut pixels = vec![0u8; pitch * scaled.height];
    d.decompress(
        bytes,
        turbojpeg::Image {
            pixels: pixels.as_mut_slice(),
            width: scaled.width,
            pitch,
            height: scaled.height,
            format,
        },
    )
    .map_err(corrupt)?;
    Ok(Raster {
        width: scaled.width as u32,
        height: scaled.height as u32,
        alpha: false,
        pixels,
    })
}

fn decode_generic(
    bytes: &[u8],
    format: Format,
    info: &ImageInfo,
    limits: &Limits,
) -> Result<Raster, ImagingError> {
    let decoder = header_decoder(bytes, format, limits)?;
    let (w, h) = decoder.dimensions();
    limits.check_dimensions(w, h)?;
    let has_alpha = decoder.color_type().has_alpha() && info.has_alpha;
    // For GIF this reads the first frame only: an animation of thousands of frames costs one.
    let image = DynamicImage::from_decoder(decoder).map_err(|e| ImagingError::Corrupt {
        format: format.name(),
        reason: e.to_string(),
    })?;
    let raster = if has_alpha {
        let rgba = image.into_rgba8();
        let opaque = rgba.pixels().all(|p| p.0[3] == 255);
        let r = Raster {
            width: w,
            height: h,
            alpha: true,
            pixels: rgba.into_raw(),
        };
        // Fully opaque "RGBA" is RGB: cheaper to resize and no flattening surprises.
        if opaque { r.flattened() } else { r }
    } else {
        Raster {
            width: w,
            height: h,
            alpha: false,
            pixels: image.into_rgb8().into_raw(),
        }
    };
    Ok(raster)
}

/// Converts from the embedded profile to sRGB in place. Unparseable or non-RGB profiles are
/// ignored (the pixels are then taken as sRGB, as browsers do).
fn to_srgb(raster: &mut Raster, icc: &[u8]) {
    let Some(input) = qcms::Profile::new_from_slice(icc, false) else {
        return;
    };
    if input.is_sRGB() {
        return;
    }
    let output = qcms::Profile::new_sRGB();
    let ty = if raster.alpha {
        qcms::DataType::RGBA8
    } else {
        qcms::DataType::RGB8
    };
    if let Some(t) = qcms::Transform::new(&input, &output, ty, qcms::Intent::Perceptual) {
        t.apply(&mut raster.pixels);
    }
}

pub(crate) fn orient(raster: Raster, orientation: u8) -> Raster {
    if orientation <= 1 {
        return raster;
    }
    let Some(o) = image::metadata::Orientation::from_exif(orientation) else {
        return raster;
    };
    let Raster {
        width,
        height,
        alpha,
        pixels,
    } = raster;
    let mut img = if alpha {
        DynamicImage::ImageRgba8(
            image::RgbaImage::from_raw(width, height, pixels).expect("buffer matches dimensions"),
        )
    } else {
        DynamicImage::ImageRgb8(
            image::RgbImage::from_raw(width, height, pixels).expect("buffer matches dimensions"),
        )
    };
    img.apply_orientation(o);
    let (width, height) = (img.width(), img.height());
    let pixels = if alpha {
        img.into_rgba8().into_raw()
    } else {
        img.into_rgb8().into_raw()
    };
    Raster {
        width,
        height,
        alpha,
        pixels,
    }
}
