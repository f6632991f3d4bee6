//! Input colour models and formats the issue lists: CMYK JPEG (from ImageMagick and from
//! libjpeg-turbo), palette PNG with and without transparency, 16-bit PNG with alpha, and
//! wide-gamut sources (Adobe RGB, Display P3) in JPEG and PNG converted to sRGB.

mod common;

use common::*;
use image::{Rgb, RgbImage, Rgba};
use photos_imaging::*;

fn small_only() -> ProcessOptions {
    ProcessOptions {
        presets: vec![Preset::new("small", 640, 480, Fit::Inside, 95)],
        ..ProcessOptions::default()
    }
}

fn variant(p: &Processed, format: OutputFormat) -> &Variant {
    p.variants
        .iter()
        .find(|v| v.format == format)
        .unwrap_or_else(|| panic!("no {format:?}"))
}

fn rgba_of(v: &Variant) -> image::RgbaImage {
    image::load_from_memory(&v.bytes).unwrap().into_rgba8()
}

#[test]
fn cmyk_jpeg_written_by_imagemagick_decodes_to_its_colours() {
    // See tests/fixtures/README.md for how it was made.
    let src = include_bytes!("fixtures/cmyk-imagemagick.jpg");
    let p = process(src, &small_only()).unwrap();
    assert_eq!(p.info.format, Format::Jpeg);
    assert_eq!((p.info.width, p.info.height), (64, 32));
    for format in [OutputFormat::Jpeg, OutputFormat::WebP] {
        let out = decode_rgb(&variant(&p, format).bytes);
        assert_eq!(out.dimensions(), (64, 32));
        let (left, right) = (out.get_pixel(8, 16).0, out.get_pixel(56, 16).0);
        assert!(close(&left, &[220, 30, 30], 10), "{format:?} left {left:?}");
        assert!(
            close(&right, &[30, 60, 200], 10),
            "{format:?} right {right:?}"
        );
    }
}

/// A YCCK JPEG from libjpeg-turbo's own CMYK path (`TJPF_CMYK`), with Adobe's inverted
/// convention: a stored 255 is no ink.
fn cmyk_jpeg(w: usize, h: usize, ink: impl Fn(usize, usize) -> [u8; 4]) -> Vec<u8> {
    let mut pixels = Vec::with_capacity(w * h * 4);
    for y in 0..h {
        for x in 0..w {
            pixels.extend(ink(x, y).map(|v| 255 - v));
        }
    }
    let mut c = turbojpeg::Compressor::new().unwrap();
    c.set_quality(95).unwrap();
    c.set_subsamp(turbojpeg::Subsamp::None).unwrap();
    c.compress_to_vec(turbojpeg::Image {
        pixels: pixels.as_slice(),
        width: w,
        pitch: w * 4,
        height: h,
        format: turbojpeg::PixelFormat::CMYK,
    })
    .unwrap()
}

#[test]
fn cmyk_jpeg_from_libjpeg_turbo_decodes_to_rgb_with_orientation() {
    // Ink: cyan on the left, magenta + yellow (red) on the right, 50 % black at the bottom.
    let (w, h) = (96, 64);
    let src = cmyk_jpeg(w, h, |x, y| {
        let k = if y >= 48 { 128 } else { 0 };
        if x < 48 {
            [255, 0, 0, k]
        } else {
            [0, 255, 255, k]
        }
    });
    let header = turbojpeg::read_header(&src).unwrap();
    assert_eq!(
        header.colorspace,
        turbojpeg::Colorspace::YCCK,
        "fixture is YCCK"
    );
    // Rotated 90° clockwise for display (orientation 6): the CMYK path must orient too.
    let src = with_exif(&src, &[orientation_field(6)]);
    let p = process(&src, &small_only()).unwrap();
    assert_eq!((p.info.width, p.info.height), (64, 96));
    for format in [OutputFormat::Jpeg, OutputFormat::WebP] {
        let out = decode_rgb(&variant(&p, format).bytes);
        assert_eq!(out.dimensions(), (64, 96), "{format:?}");
        // Stored top-left (cyan) is displayed top-right; stored bottom (black) is displayed left.
        let at = |x, y| out.get_pixel(x, y).0;
        assert!(
            close(&at(60, 4), &[0, 255, 255], 12),
            "{format:?} cyan {:?}",
            at(60, 4)
        );
        assert!(
            close(&at(60, 92), &[255, 0, 0], 12),
            "{format:?} red {:?}",
            at(60, 92)
        );
        assert!(
            close(&at(4, 4), &[0, 127, 127], 12),
            "{format:?} cyan at 50% black {:?}",
            at(4, 4)
        );
    }
}

#[test]
fn palette_png_with_and_without_transparency() {
    let palette = [[200, 30, 40], [20, 160, 60], [30, 60, 220], [250, 250, 250]];
    // 80x40: four vertical bands, one per palette entry.
    let index = |x: u32, _y: u32| (x / 20) as u8;
    let opaque = png_palette(80, 40, &palette, None, index);
    let p = process(&opaque, &small_only()).unwrap();
    assert!(!p.info.has_alpha);
    for format in [OutputFormat::Jpeg, OutputFormat::WebP] {
        let out = decode_rgb(&variant(&p, format).bytes);
        assert_eq!(out.dimensions(), (80, 40));
        for (band, colour) in palette.iter().enumerate() {
            let px = out.get_pixel(band as u32 * 20 + 10, 20).0;
            assert!(close(&px, colour, 8), "{format:?} band {band}: {px:?}");
        }
    }

    // tRNS: entry 1 half transparent, entry 3 fully transparent.
    let with_alpha = png_palette(80, 40, &palette, Some(&[255, 128, 255, 0]), index);
    let p = process(&with_alpha, &small_only()).unwrap();
    assert!(p.info.has_alpha);
    let webp = rgba_of(variant(&p, OutputFormat::WebP));
    let a = |x| webp.get_pixel(x, 20).0[3];
    assert_eq!(a(10), 255, "opaque entry stays opaque in WebP");
    assert!((120..=136).contains(&a(30)), "half transparent: {}", a(30));
    assert_eq!(a(70), 0, "transparent entry stays transparent in WebP");
    // JPEG: flattened on white.
    let jpeg = decode_rgb(&variant(&p, OutputFormat::Jpeg).bytes);
    let half = jpeg.get_pixel(30, 20).0;
    assert!(
        close(&half, &[137, 207, 157], 10),
        "green over white: {half:?}"
    );
    assert!(close(&jpeg.get_pixel(70, 20).0, &[255, 255, 255], 6));
    assert!(close(&jpeg.get_pixel(10, 20).0, &palette[0], 8));
}

#[test]
fn png_16_bit_with_alpha_keeps_colour_and_transparency() {
    let img = image::ImageBuffer::<Rgba<u16>, Vec<u16>>::from_fn(120, 80, |x, _| {
        if x < 60 {
            Rgba([65535, 32768, 0, 65535])
        } else {
            Rgba([0, 0, 65535, 0])
        }
    });
    let mut png = Vec::new();
    image::DynamicImage::ImageRgba16(img)
        .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
        .unwrap();
    let p = process(&png, &small_only()).unwrap();
    assert!(p.info.has_alpha);
    let webp = rgba_of(variant(&p, OutputFormat::WebP));
    let opaque = webp.get_pixel(20, 40).0;
    assert!(close(&opaque, &[255, 128, 0, 255], 8), "{opaque:?}");
    assert_eq!(webp.get_pixel(100, 40).0[3], 0);
    let jpeg = decode_rgb(&variant(&p, OutputFormat::Jpeg).bytes);
    assert!(close(&jpeg.get_pixel(20, 40).0, &[255, 128, 0], 8));
    assert!(close(&jpeg.get_pixel(100, 40).0, &[255, 255, 255], 6));
}

/// Adobe RGB (1998) primaries adapted to D50, as in Adobe's profile.
const ADOBE_D50: [[f64; 3]; 3] = [
    [0.6097, 0.3111, 0.0195],
    [0.2053, 0.6257, 0.0609],
    [0.1492, 0.0632, 0.7446],
];

fn chroma(px: &[u8]) -> i32 {
    let max = px.iter().take(3).copied().max().unwrap();
    let min = px.iter().take(3).copied().min().unwrap();
    i32::from(max) - i32::from(min)
}

/// A wide-gamut colour must come out as the sRGB numbers of the same colour (computed here
/// independently of qcms), which are further apart than the source numbers: kept as they were
/// (what a pipeline that ignores the profile does) the photo looks dull.
fn assert_wide_gamut_converted(src: &[u8], source_colour: [u8; 3], primaries: [[f64; 3]; 3]) {
    let expected = expected_srgb(source_colour, primaries);
    assert!(
        chroma(&expected) > chroma(&source_colour) + 15,
        "the fixture colour must be visibly more saturated in sRGB: {expected:?}"
    );
    let p = process(src, &small_only()).unwrap();
    for format in [OutputFormat::Jpeg, OutputFormat::WebP] {
        let out = decode_rgb(&variant(&p, format).bytes);
        let px = out.get_pixel(32, 32).0;
        assert!(
            close(&px, &expected, 6),
            "{format:?}: got {px:?}, want {expected:?} (source numbers {source_colour:?})"
        );
        assert!(
            chroma(&px) > chroma(&source_colour) + 10,
            "{format:?} dull: {px:?}"
        );
    }
}

#[test]
fn adobe_rgb_jpeg_is_converted_to_srgb_not_left_dull() {
    let colour = [70, 160, 90];
    let icc = icc_profile("Test Adobe RGB (1998)", ADOBE_D50, 2.2);
    let src = with_icc(&jpeg(&RgbImage::from_pixel(64, 64, Rgb(colour)), 98), &icc);
    assert_wide_gamut_converted(&src, colour, ADOBE_D50);
    let info = probe(&src, &Limits::default()).unwrap();
    assert_eq!(
        info.icc_description.as_deref(),
        Some("Test Adobe RGB (1998)")
    );
}

#[test]
fn adobe_rgb_and_display_p3_pngs_are_converted_to_srgb() {
    for (name, primaries, colour) in [
        ("Test Adobe RGB (1998)", ADOBE_D50, [70u8, 160, 90]),
        ("Test Display P3", P3_D50, [200, 70, 60]),
    ] {
        let icc = icc_profile(name, primaries, 2.2);
        let src = png_with_icc(&RgbImage::from_pixel(64, 64, Rgb(colour)), name, &icc);
        let info = probe(&src, &Limits::default()).unwrap();
        assert_eq!(info.icc_description.as_deref(), Some(name));
        assert_wide_gamut_converted(&src, colour, primaries);
    }
}

#[test]
fn display_p3_jpeg_decoded_with_dct_scaling_is_converted_too() {
    // 2400x1600 → small (640x427) decodes at 1/2: the profile must still be applied.
    let colour = [200, 70, 60];
    let icc = icc_profile("Test Display P3", P3_D50, 2.2);
    let src = with_icc(
        &jpeg(&RgbImage::from_pixel(2400, 1600, Rgb(colour)), 98),
        &icc,
    );
    let expected = expected_srgb(colour, P3_D50);
    let p = process(&src, &small_only()).unwrap();
    for format in [OutputFormat::Jpeg, OutputFormat::WebP] {
        let out = decode_rgb(&variant(&p, format).bytes);
        assert_eq!(out.dimensions(), (640, 427));
        let px = out.get_pixel(320, 200).0;
        assert!(
            close(&px, &expected, 6),
            "{format:?}: {px:?} want {expected:?}"
        );
    }
}
