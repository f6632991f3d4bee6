//! Pure resize arithmetic: output sizes and crop windows. No pixels here, so it is property-tested.

/// How a preset maps the source into its box.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Fit {
    /// Fit inside the box, keep the aspect ratio, never upscale.
    Inside,
    /// Fill the box and crop the overflow (the crop position is chosen by saliency).
    Cover,
}

/// Where a preset's output comes from, in the coordinates of a full-frame source of
/// `src_w`×`src_h`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Plan {
    pub out_w: u32,
    pub out_h: u32,
    /// Size of the source window that is scaled to the output (the whole frame for `Inside`).
    pub crop_w: f64,
    pub crop_h: f64,
    /// Scale from source to output (≤ 1: never upscale).
    pub scale: f64,
}

impl Plan {
    /// The full-frame size a source must have, at least, to produce this output without upscaling.
    pub fn needed_frame(&self, src_w: u32, src_h: u32) -> (u32, u32) {
        let w = (f64::from(src_w) * self.scale).round().max(1.0) as u32;
        let h = (f64::from(src_h) * self.scale).round().max(1.0) as u32;
        (
            w.min(src_w).max(self.out_w.min(src_w)),
            h.min(src_h).max(self.out_h.min(src_h)),
        )
    }
}

pub fn plan(src_w: u32, src_h: u32, box_w: u32, box_h: u32, fit: Fit) -> Plan {
    let (sw, sh) = (f64::from(src_w.max(1)), f64::from(src_h.max(1)));
    let (bw, bh) = (f64::from(box_w.max(1)), f64::from(box_h.max(1)));
    match fit {
        Fit::Inside => {
            let scale = (bw / sw).min(bh / sh).min(1.0);
            let out_w = ((sw * scale).round() as u32)
                .clamp(1, box_w.max(1))
                .min(src_w.max(1));
            let out_h = ((sh * scale).round() as u32)
                .clamp(1, box_h.max(1))
                .min(src_h.max(1));
            Plan {
                out_w,
                out_h,
                crop_w: sw,
                crop_h: sh,
                scale,
            }
        }
        Fit::Cover => {
            let scale = (bw / sw).max(bh / sh).min(1.0);
            // When the source is smaller than the box on a side, that side keeps its size: a
            // small source gives a smaller thumbnail rather than an upscaled one.
            let out_w = box_w.max(1).min(src_w.max(1));
            let out_h = box_h.max(1).min(src_h.max(1));
            let crop_w = (f64::from(out_w) / scale).min(sw);
            let crop_h = (f64::from(out_h) / scale).min(sh);
            Plan {
                out_w,
                out_h,
                crop_w,
                crop_h,
                scale,
            }
        }
    }
}

/// Picks the DCT scaling of a JPEG decode, in eighths (libjpeg-turbo scales by n/8 for n in
/// 1..=8): the largest reduction whose decoded size still covers `need_w`×`need_h`.
/// libjpeg-turbo rounds scaled sides up.
pub fn jpeg_scale_eighths(src_w: u32, src_h: u32, need_w: u32, need_h: u32) -> u32 {
    let scaled = |side: u32, n: u32| (u64::from(side) * u64::from(n)).div_ceil(8);
    (1u32..=8)
        .find(|&n| scaled(src_w, n) >= u64::from(need_w) && scaled(src_h, n) >= u64::from(need_h))
        .unwrap_or(8)
}
