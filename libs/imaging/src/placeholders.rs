//! Tiny stand-ins shown while a variant loads: dominant colour, a blurred data URI, BlurHash and
//! ThumbHash. All computed from one small raster.

use base64::Engine;

use crate::encode::{WebpOptions, encode_webp};
use crate::geometry::{Fit, plan};
use crate::resize::{Window, resize};
use crate::{ImagingError, Raster};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placeholders {
    /// `#rrggbb`.
    pub dominant_color: String,
    /// `data:image/webp;base64,...`, at most [`MAX_BLUR_URI_BYTES`].
    pub blur_data_uri: String,
    pub blurhash: String,
    /// Base64 (standard alphabet) of the ThumbHash bytes.
    pub thumbhash: String,
}

pub const MAX_BLUR_URI_BYTES: usize = 1024;

pub fn placeholders(src: &Raster) -> Result<Placeholders, ImagingError> {
    let small = shrink(src, 64);
    let dominant_color = dominant_color(&small);
    let rgba = small.to_rgba();
    let blurhash = blurhash::encode(4, 3, small.width, small.height, &rgba).map_err(|e| {
        ImagingError::Encode {
            format: "blurhash",
            reason: e.to_string(),
        }
    })?;
    let thumb = shrink(&small, 100);
    let thumbhash =
        base64::engine::general_purpose::STANDARD.encode(thumbhash::rgba_to_thumb_hash(
            thumb.width as usize,
            thumb.height as usize,
            &thumb.to_rgba(),
        ));
    let mut side = 16;
    let blur_data_uri = loop {
        let tiny = shrink(src, side);
        let bytes = encode_webp(
            &tiny,
            40,
            WebpOptions {
                method: 4,
                lossless: false,
            },
        )?;
        let uri = format!(
            "data:image/webp;base64,{}",
            base64::engine::general_purpose::STANDARD.encode(bytes)
        );
        if uri.len() <= MAX_BLUR_URI_BYTES || side <= 4 {
            break uri;
        }
        side /= 2;
    };
    Ok(Placeholders {
        dominant_color,
        blur_data_uri,
        blurhash,
        thumbhash,
    })
}

fn shrink(src: &Raster, longest: u32) -> Raster {
    let p = plan(src.width, src.height, longest, longest, Fit::Inside);
    resize(
        src,
        Window {
            left: 0.0,
            top: 0.0,
            width: f64::from(src.width),
            height: f64::from(src.height),
        },
        p.out_w,
        p.out_h,
    )
}

/// The mean colour of the most populated cell of a 4-bit-per-channel histogram: the colour a
/// viewer would name, not the muddy average of everything. Transparent pixels do not vote.
pub fn dominant_color(src: &Raster) -> String {
    let mut counts = vec![0u32; 4096];
    let mut sums = vec![[0u64; 3]; 4096];
    let c = src.channels();
    for px in src.pixels.chunks_exact(c) {
        if c == 4 && px[3] < 128 {
            continue;
        }
        let bin = (usize::from(px[0] >> 4) << 8)
            | (usize::from(px[1] >> 4) << 4)
            | usize::from(px[2] >> 4);
        counts[bin] += 1;
        for k in 0..3 {
            sums[bin][k] += u64::from(px[k]);
        }
    }
    let (bin, &n) = counts
        .iter()
        .enumerate()
        .max_by_key(|(_, n)| **n)
        .unwrap_or((0, &0));
    if n == 0 {
        return "#ffffff".to_string();
    }
    let n = u64::from(n);
    let [r, g, b] = sums[bin].map(|s| ((s + n / 2) / n) as u8);
    format!("#{r:02x}{g:02x}{b:02x}")
}
