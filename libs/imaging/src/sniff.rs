use crate::ImagingError;

/// The input formats the pipeline accepts, decided by magic bytes only: a file name or a
/// client-declared content type is never trusted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    Jpeg,
    Png,
    WebP,
    Gif,
}

impl Format {
    pub fn name(self) -> &'static str {
        match self {
            Format::Jpeg => "jpeg",
            Format::Png => "png",
            Format::WebP => "webp",
            Format::Gif => "gif",
        }
    }
}

pub fn sniff(bytes: &[u8]) -> Result<Format, ImagingError> {
    if bytes.is_empty() {
        return Err(ImagingError::Empty);
    }
    if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        return Ok(Format::Jpeg);
    }
    if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        return Ok(Format::Png);
    }
    if bytes.starts_with(b"GIF87a") || bytes.starts_with(b"GIF89a") {
        return Ok(Format::Gif);
    }
    if bytes.len() >= 12 && &bytes[0..4] == b"RIFF" && &bytes[8..12] == b"WEBP" {
        return Ok(Format::WebP);
    }
    Err(ImagingError::UnsupportedFormat {
        detected: describe_unknown(bytes),
    })
}

/// A hint for the error message: a markup file renamed to .jpg is the common case.
fn describe_unknown(bytes: &[u8]) -> &'static str {
    let head = &bytes[..bytes.len().min(512)];
    let text = String::from_utf8_lossy(head).to_ascii_lowercase();
    let trimmed = text.trim_start_matches('\u{feff}').trim_start();
    if trimmed.contains("<svg") {
        "svg markup"
    } else if trimmed.starts_with("<!doctype html") || trimmed.contains("<html") {
        "html markup"
    } else if trimmed.starts_with('<') {
        "xml or markup text"
    } else if bytes.len() >= 12 && &bytes[4..8] == b"ftyp" {
        "heif/avif or mp4 container"
    } else if bytes.starts_with(b"BM") {
        "bmp"
    } else if bytes.starts_with(b"II*\0") || bytes.starts_with(b"MM\0*") {
        "tiff"
    } else {
        "unknown bytes"
    }
}
