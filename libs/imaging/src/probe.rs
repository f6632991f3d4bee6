//! Everything known from the header alone: format, dimensions, orientation, capture time, ICC.
//! Limits are enforced here, before a single pixel buffer exists.

use std::io::Cursor;

use image::ImageDecoder;
use sha2::{Digest, Sha256};

use crate::{Format, ImagingError, jpeg_segments, sniff};

/// Bounds on what the pipeline will decode. The defaults keep one decode under ~200 MB even at
/// the worst case (50 MP RGBA).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_bytes: u64,
    pub max_pixels: u64,
    pub max_dimension: u32,
    pub max_icc_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_bytes: 64 * 1024 * 1024,
            max_pixels: 50_000_000,
            max_dimension: 20_000,
            max_icc_bytes: 1024 * 1024,
        }
    }
}

impl Limits {
    pub fn check_bytes(&self, bytes: u64) -> Result<(), ImagingError> {
        if bytes > self.max_bytes {
            return Err(ImagingError::TooManyBytes {
                bytes,
                max: self.max_bytes,
            });
        }
        Ok(())
    }

    pub fn check_dimensions(&self, width: u32, height: u32) -> Result<(), ImagingError> {
        if width > self.max_dimension || height > self.max_dimension {
            return Err(ImagingError::DimensionTooLarge {
                width,
                height,
                max: self.max_dimension,
            });
        }
        let pixels = u64::from(width) * u64::from(height);
        if pixels > self.max_pixels {
            return Err(ImagingError::TooManyPixels {
                width,
                height,
                pixels,
                max: self.max_pixels,
            });
        }
        if width == 0 || height == 0 {
            return Err(ImagingError::Corrupt {
                format: "image",
                reason: "zero width or height".into(),
            });
        }
        Ok(())
    }

    /// The same bounds handed to the `image` decoders as a second line of defence.
    pub(crate) fn image_limits(&self) -> image::Limits {
        let mut l = image::Limits::default();
        l.max_image_width = Some(self.max_dimension);
        l.max_image_height = Some(self.max_dimension);
        // RGBA16 worst case plus decoder scratch.
        l.max_alloc = Some(self.max_pixels.saturating_mul(8).saturating_add(64 << 20));
        l
    }
}

/// Capture time from EXIF DateTimeOriginal; the offset is known only when the camera wrote
/// OffsetTimeOriginal, otherwise the wall-clock time is reported as if it were UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TakenAt {
    pub unix_seconds: i64,
    pub utc_offset_minutes: Option<i16>,
}

#[derive(Debug, Clone)]
pub struct ImageInfo {
    pub format: Format,
    /// Dimensions as stored, before orientation.
    pub stored_width: u32,
    pub stored_height: u32,
    /// EXIF orientation 1..=8 (1 when absent or invalid).
    pub orientation: u8,
    /// Dimensions as displayed, after orientation.
    pub width: u32,
    pub height: u32,
    pub has_alpha: bool,
    pub taken_at: Option<TakenAt>,
    pub icc_profile: Option<Vec<u8>>,
    pub icc_description: Option<String>,
    pub copyright: Option<String>,
    pub bytes: u64,
    pub sha256: String,
    /// CMYK/YCCK JPEGs take the slower full decoder (libjpeg-turbo's fast path outputs CMYK only).
    pub(crate) jpeg_cmyk: bool,
}

pub fn content_sha256(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    let mut s = String::with_capacity(64);
    for b in digest {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

pub fn probe(bytes: &[u8], limits: &Limits) -> Result<ImageInfo, ImagingError> {
    limits.check_bytes(bytes.len() as u64)?;
    let format = sniff(bytes)?;
    let corrupt = |reason: String| ImagingError::Corrupt {
        format: format.name(),
        reason,
    };
    let (w, h, has_alpha, icc, exif, jpeg_cmyk) = match format {
        Format::Jpeg => {
            let header = turbojpeg::read_header(bytes).map_err(|e| corrupt(e.to_string()))?;
            let w = u32::try_from(header.width).map_err(|_| corrupt("width".into()))?;
            let h = u32::try_from(header.height).map_err(|_| corrupt("height".into()))?;
            limits.check_dimensions(w, h)?;
            let segs = jpeg_segments::read(bytes, limits.max_icc_bytes)?;
            let cmyk = matches!(
                header.colorspace,
                turbojpeg::Colorspace::CMYK | turbojpeg::Colorspace::YCCK
            );
            (w, h, false, segs.icc, segs.exif, cmyk)
        }
        Format::Png | Format::WebP | Format::Gif => {
            // Read the declared size straight from the header so the error names it, before
            // any decoder (and its buffers) exists.
            if let Some((w, h)) = declared_size(bytes, format) {
                limits.check_dimensions(w.max(1), h.max(1))?;
            }
            let mut decoder = header_decoder(bytes, format, limits)?;
            let (w, h) = decoder.dimensions();
            limits.check_dimensions(w, h)?;
            let has_alpha = decoder.color_type().has_alpha();
            let icc = decoder.icc_profile().ok().flatten();
            if let Some(icc) = &icc
                && icc.len() > limits.max_icc_bytes
            {
                return Err(ImagingError::IccTooLarge {
                    bytes: icc.len(),
                    max: limits.max_icc_bytes,
                });
            }
            let exif = decoder.exif_metadata().ok().flatten();
            (w, h, has_alpha, icc, exif, false)
        }
    };
    let parsed = exif.and_then(|raw| exif::Reader::new().read_raw(raw).ok());
    let orientation = parsed
        .as_ref()
        .and_then(|e| e.get_field(exif::Tag::Orientation, exif::In::PRIMARY))
        .and_then(|f| f.value.get_uint(0))
        .filter(|o| (1..=8).contains(o))
        .map_or(1, |o| o as u8);
    let taken_at = parsed.as_ref().and_then(taken_at);
    let copyright = parsed
        .as_ref()
        .and_then(|e| e.get_field(exif::Tag::Copyright, exif::In::PRIMARY))
        .and_then(|f| match &f.value {
            exif::Value::Ascii(v) => v
                .first()
                .map(|s| String::from_utf8_lossy(s).trim().to_string()),
            _ => None,
        })
        .filter(|s| !s.is_empty());
    let (width, height) = if orientation >= 5 { (h, w) } else { (w, h) };
    let icc_description = icc.as_deref().and_then(icc_description);
    Ok(ImageInfo {
        format,
        stored_width: w,
        stored_height: h,
        orientation,
        width,
        height,
        has_alpha,
        taken_at,
        icc_profile: icc,
        icc_description,
        copyright,
        bytes: bytes.len() as u64,
        sha256: content_sha256(bytes),
        jpeg_cmyk,
    })
}

/// A decoder that has parsed only the header. Callers check dimensions before reading pixels.
pub(crate) fn header_decoder<'a>(
    bytes: &'a [u8],
    format: Format,
    limits: &Limits,
) -> Result<Box<dyn ImageDecoder + 'a>, ImagingError> {
    let map = |e: image::ImageError| match e {
        image::ImageError::Limits(e) => ImagingError::DecoderLimit {
            reason: e.to_string(),
        },
        other => ImagingError::Corrupt {
            format: format.name(),
            reason: other.to_string(),
        },
    };
    let cursor = Cursor::new(bytes);
    let mut decoder: Box<dyn ImageDecoder + 'a> = match format {
        Format::Png => Box::new(
            image::codecs::png::PngDecoder::with_limits(cursor, limits.image_limits())
                .map_err(map)?,
        ),
        Format::WebP => Box::new(image::codecs::webp::WebPDecoder::new(cursor).map_err(map)?),
        Format::Gif => Box::new(image::codecs::gif::GifDecoder::new(cursor).map_err(map)?),
        Format::Jpeg => Box::new(image::codecs::jpeg::JpegDecoder::new(cursor).map_err(map)?),
    };
    decoder.set_limits(limits.image_limits()).map_err(map)?;
    Ok(decoder)
}

/// PNG IHDR or GIF logical screen size; WebP is left to its decoder (three chunk layouts).
fn declared_size(bytes: &[u8], format: Format) -> Option<(u32, u32)> {
    match format {
        Format::Png if bytes.get(12..16)? == b"IHDR" => {
            let w = u32::from_be_bytes(bytes.get(16..20)?.try_into().ok()?);
            let h = u32::from_be_bytes(bytes.get(20..24)?.try_into().ok()?);
            Some((w, h))
        }
        Format::Gif => {
            let w = u16::from_le_bytes(bytes.get(6..8)?.try_into().ok()?);
            let h = u16::from_le_bytes(bytes.get(8..10)?.try_into().ok()?);
            Some((u32::from(w), u32::from(h)))
        }
        _ => None,
    }
}

fn taken_at(exif: &exif::Exif) -> Option<TakenAt> {
    let field = exif.get_field(exif::Tag::DateTimeOriginal, exif::In::PRIMARY)?;
    let exif::Value::Ascii(v) = &field.value else {
        return None;
    };
    let mut dt = exif::DateTime::from_ascii(v.first()?).ok()?;
    if let Some(off) = exif.get_field(exif::Tag::OffsetTimeOriginal, exif::In::PRIMARY)
        && let exif::Value::Ascii(v) = &off.value
        && let Some(first) = v.first()
    {
        let _ = dt.parse_offset(first);
    }
    if !(1..=12).contains(&dt.month) || !(1..=31).contains(&dt.day) || dt.hour > 23 {
        return None;
    }
    let days = days_from_civil(i64::from(dt.year), u32::from(dt.month), u32::from(dt.day));
    let local = days * 86_400
        + i64::from(dt.hour) * 3600
        + i64::from(dt.minute) * 60
        + i64::from(dt.second.min(59));
    let offset = dt.offset;
    Some(TakenAt {
        unix_seconds: local - i64::from(offset.unwrap_or(0)) * 60,
        utc_offset_minutes: offset,
    })
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
pub(crate) fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let m = i64::from(m);
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The profile's human-readable name from its `desc` tag (v2 `desc` or v4 `mluc`).
fn icc_description(icc: &[u8]) -> Option<String> {
    let be32 = |at: usize| -> Option<usize> {
        icc.get(at..at + 4)
            .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize)
    };
    let count = be32(128)?.min(256);
    for i in 0..count {
        let entry = 132 + i * 12;
        if icc.get(entry..entry + 4)? != b"desc" {
            continue;
        }
        let off = be32(entry + 4)?;
        let size = be32(entry + 8)?;
        let tag = icc.get(off..off.checked_add(size)?)?;
        if tag.starts_with(b"desc") {
            let n = u32::from_be_bytes(tag.get(8..12)?.try_into().ok()?) as usize;
            let text = tag.get(12..12 + n.min(tag.len().saturating_sub(12)))?;
            return Some(
                String::from_utf8_lossy(text)
                    .trim_end_matches('\0')
                    .to_string(),
            );
        }
        if tag.starts_with(b"mluc") {
            // First record: language, country, then length and offset of its UTF-16BE text.
            let len = u32::from_be_bytes(tag.get(20..24)?.try_into().ok()?) as usize;
            let start = u32::from_be_bytes(tag.get(24..28)?.try_into().ok()?) as usize;
            let text = tag.get(start..start.checked_add(len)?.min(tag.len()))?;
            let units: Vec<u16> = text
                .chunks_exact(2)
                .map(|c| u16::from_be_bytes([c[0], c[1]]))
                .collect();
            return Some(
                String::from_utf16_lossy(&units)
                    .trim_end_matches('\0')
                    .to_string(),
            );
        }
    }
    None
}
