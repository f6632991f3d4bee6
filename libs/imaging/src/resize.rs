//! Lanczos3 resampling (fast_image_resize, SIMD) and the saliency-driven crop for cover fits.

use fast_image_resize::images::{Image, ImageRef};
use fast_image_resize::{FilterType, PixelType, ResizeAlg, ResizeOptions, Resizer};

use crate::Raster;

/// A crop window in the source raster's pixel coordinates.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Window {
    pub left: f64,
    pub top: f64,
    pub width: f64,
    pub height: f64,
}

pub fn resize(src: &Raster, window: Window, out_w: u32, out_h: u32) -> Raster {
    let pixel_type = if src.alpha {
        PixelType::U8x4
    } else {
        PixelType::U8x3
    };
    let full = window.left == 0.0
        && window.top == 0.0
        && window.width == f64::from(src.width)
        && window.height == f64::from(src.height);
    if full && out_w == src.width && out_h == src.height {
        return src.clone();
    }
    let view = ImageRef::new(src.width, src.height, &src.pixels, pixel_type)
        .expect("raster buffer matches its dimensions");
    let mut dst = Image::new(out_w, out_h, pixel_type);
    let options = ResizeOptions::new()
        .resize_alg(ResizeAlg::Convolution(FilterType::Lanczos3))
        .crop(window.left, window.top, window.width, window.height);
    Resizer::new()
        .resize(&view, &mut dst, &options)
        .expect("pixel types of source and destination match");
    Raster {
        width: out_w,
        height: out_h,
        alpha: src.alpha,
        pixels: dst.into_vec(),
    }
}

/// Places a `crop_w`×`crop_h` window over the most salient part of `src`.
///
/// A cover crop only ever removes along one axis, so saliency is reduced to a 1-D profile along
/// that axis: per column (or row), local contrast (luma gradient) plus colourfulness. The window
/// with the largest sum wins; ties go to the one nearest the centre. This is the same signal
/// smartcrop-style tools use, without the face detector.
pub fn smart_window(src: &Raster, crop_w: f64, crop_h: f64) -> Window {
    let (w, h) = (src.width as usize, src.height as usize);
    let crop_w = crop_w.min(w as f64);
    let crop_h = crop_h.min(h as f64);
    let slack_x = w as f64 - crop_w;
    let slack_y = h as f64 - crop_h;
    if slack_x < 1.0 && slack_y < 1.0 {
        return Window {
            left: slack_x / 2.0,
            top: slack_y / 2.0,
            width: crop_w,
            height: crop_h,
        };
    }
    let horizontal = slack_x >= slack_y;
    let energy = axis_energy(src, horizontal);
    let (len, win) = if horizontal {
        (w, crop_w.round() as usize)
    } else {
        (h, crop_h.round() as usize)
    };
    let start = best_window(&energy, win.clamp(1, len));
    if horizontal {
        Window {
            left: (start as f64).min(slack_x),
            top: slack_y / 2.0,
            width: crop_w,
            height: crop_h,
        }
    } else {
        Window {
            left: slack_x / 2.0,
            top: (start as f64).min(slack_y),
            width: crop_w,
            height: crop_h,
        }
    }
}

fn axis_energy(src: &Raster, per_column: bool) -> Vec<u64> {
    let (w, h) = (src.width as usize, src.height as usize);
    let c = src.channels();
    let luma = |x: usize, y: usize| -> i32 {
        let i = (y * w + x) * c;
        let p = &src.pixels[i..i + 3];
        (i32::from(p[0]) * 77 + i32::from(p[1]) * 150 + i32::from(p[2]) * 29) >> 8
    };
    let mut energy = vec![0u64; if per_column { w } else { h }];
    // Every other row/column is enough signal and quarters the cost; the gradient spans two
    // pixels so an edge between the skipped ones is still seen.
    for y in (0..h.saturating_sub(2)).step_by(2) {
        for x in (0..w.saturating_sub(2)).step_by(2) {
            let l = luma(x, y);
            let grad = (l - luma(x + 2, y)).unsigned_abs() + (l - luma(x, y + 2)).unsigned_abs();
            let i = (y * w + x) * c;
            let p = &src.pixels[i..i + 3];
            let max = p.iter().max().copied().unwrap_or(0);
            let min = p.iter().min().copied().unwrap_or(0);
            let sat = u32::from(max - min) / 4;
            let e = u64::from(grad + sat);
            if per_column {
                energy[x] += e;
                energy[x + 1] += e;
            } else {
                energy[y] += e;
                energy[y + 1] += e;
            }
        }
    }
    energy
}

/// Start of the length-`win` window with the largest sum; ties broken towards the centre.
pub fn best_window(energy: &[u64], win: usize) -> usize {
    let len = energy.len();
    if win >= len {
        return 0;
    }
    let centre = (len - win) / 2;
    let mut sum: u64 = energy[..win].iter().sum();
    let (mut best, mut best_sum) = (0usize, sum);
    for start in 1..=len - win {
        sum = sum + energy[start + win - 1] - energy[start - 1];
        if sum > best_sum || (sum == best_sum && start.abs_diff(centre) < best.abs_diff(centre)) {
            best = start;
            best_sum = sum;
        }
    }
    best
}
