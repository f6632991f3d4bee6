#![no_main]
//! The decode path on arbitrary bytes: sniff, header probe and limits, decode (DCT-scaled JPEG,
//! PNG, WebP, GIF), ICC, orientation, one small resize and encode. Any panic or crash is a bug;
//! errors are expected.

use libfuzzer_sys::fuzz_target;
use photos_imaging::{Fit, Limits, OutputFormat, Preset, ProcessOptions, WebpOptions};

fuzz_target!(|data: &[u8]| {
    // Small limits keep each input fast and bounded in memory; limit checks are exercised too.
    let limits = Limits {
        max_bytes: 4 * 1024 * 1024,
        max_pixels: 4_000_000,
        max_dimension: 4096,
        max_icc_bytes: 256 * 1024,
    };
    let _ = photos_imaging::probe(data, &limits);
    let options = ProcessOptions {
        presets: vec![Preset::new("t", 64, 64, Fit::Cover, 70)],
        formats: vec![OutputFormat::Jpeg],
        webp: WebpOptions { method: 0, lossless: false },
        keep_copyright: true,
        limits,
        threads: 1,
    };
    let _ = photos_imaging::process(data, &options);
});
