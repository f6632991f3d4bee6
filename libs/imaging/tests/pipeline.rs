mod common;

use std::io::Cursor;

use common::*;
use image::{Rgb, RgbImage, Rgba, RgbaImage};
use photos_imaging::*;

fn opts(presets: Vec<Preset>) -> ProcessOptions {
    ProcessOptions {
        presets,
        ..ProcessOptions::default()
    }
}

fn variant<'a>(p: &'a Processed, preset: &str, format: OutputFormat) -> &'a Variant {
    p.variants
        .iter()
        .find(|v| v.preset == preset && v.format == format)
        .unwrap_or_else(|| panic!("no {preset} {format:?}"))
}

#[test]
fn every_seed_variant_has_the_expected_size_in_both_formats() {
    let src = jpeg(&card(3000, 2000), 90);
    let p = process(&src, &ProcessOptions::default()).unwrap();
    assert_eq!(p.variants.len(), 10);
    let expected = [
        ("thumbnail", 400, 400),
        ("small", 640, 427),
        ("medium", 1024, 683),
        ("large", 1620, 1080),
        ("xlarge", 2160, 1440),
    ];
    for (name, w, h) in expected {
        for format in [OutputFormat::Jpeg, OutputFormat::WebP] {
            let v = variant(&p, name, format);
            assert_eq!((v.width, v.height), (w, h), "{name} {format:?}");
            let decoded = image::load_from_memory(&v.bytes).unwrap();
            assert_eq!(
                (decoded.width(), decoded.height()),
                (w, h),
                "{name} {format:?} decoded"
            );
            let sniffed = sniff(&v.bytes).unwrap();
            let want = if format == OutputFormat::Jpeg {
                Format::Jpeg
            } else {
                Format::WebP
            };
            assert_eq!(sniffed, want);
        }
        let jpeg_header =
            turbojpeg::read_header(&variant(&p, name, OutputFormat::Jpeg).bytes).unwrap();
        assert!(jpeg_header.is_progressive, "{name} jpeg is progressive");
    }
    assert_eq!((p.info.width, p.info.height), (3000, 2000));
    assert_eq!(p.info.orientation, 1);
    assert_eq!(p.info.sha256, content_sha256(&src));
}

#[test]
fn small_sources_are_never_upscaled() {
    let src = jpeg(&card(300, 200), 90);
    let p = process(&src, &ProcessOptions::default()).unwrap();
    for v in &p.variants {
        assert!(
            v.width <= 300 && v.height <= 200,
            "{} {}x{}",
            v.preset,
            v.width,
            v.height
        );
    }
    assert_eq!(
        (
            variant(&p, "xlarge", OutputFormat::Jpeg).width,
            variant(&p, "xlarge", OutputFormat::Jpeg).height
        ),
        (300, 200)
    );
    // Cover on a source smaller than the box keeps the short side and crops the long one.
    let t = variant(&p, "thumbnail", OutputFormat::WebP);
    assert_eq!((t.width, t.height), (300, 200));
}

#[test]
fn portrait_thumbnail_is_cut_from_a_source_large_enough() {
    // small (640x480 box) of a 2:3 portrait is 320x480: too narrow for a 400x400 cover, so the
    // cascade must take a larger source rather than upscale.
    let src = jpeg(&card(2000, 3000), 90);
    let p = process(&src, &ProcessOptions::default()).unwrap();
    let t = variant(&p, "thumbnail", OutputFormat::Jpeg);
    assert_eq!((t.width, t.height), (400, 400));
    let small = variant(&p, "small", OutputFormat::Jpeg);
    assert_eq!((small.width, small.height), (320, 480));
}

#[test]
fn jpeg_is_decoded_with_dct_scaling_when_the_targets_allow() {
    let src = jpeg(&card(3000, 2000), 90);
    let info = probe(&src, &Limits::default()).unwrap();
    let quarter = decode(&src, &info, 700, 467, &Limits::default()).unwrap();
    assert_eq!((quarter.width, quarter.height), (750, 500));
    let eighth = decode(&src, &info, 300, 200, &Limits::default()).unwrap();
    assert_eq!((eighth.width, eighth.height), (375, 250));
    // Any n/8, not only powers of two: 6/8 still covers the xlarge box's 2160x1440.
    let six_eighths = decode(&src, &info, 2160, 1440, &Limits::default()).unwrap();
    assert_eq!((six_eighths.width, six_eighths.height), (2250, 1500));
    let full = decode(&src, &info, 2900, 1950, &Limits::default()).unwrap();
    assert_eq!((full.width, full.height), (3000, 2000));
}

const RED: [u8; 3] = [230, 20, 20];
const GREEN: [u8; 3] = [20, 200, 40];
const GRAY: [u8; 3] = [128, 128, 128];

#[derive(Clone, Copy)]
enum Corner {
    Tl,
    Tr,
    Bl,
    Br,
}

/// Where the displayed top-left (red) and top-right (green) corners sit in the stored pixels,
/// from the EXIF 2.3 definitions of the 0th row and 0th column for each orientation.
fn stored_corners(o: u16) -> (Corner, Corner) {
    use Corner::*;
    match o {
        1 => (Tl, Tr),
        2 => (Tr, Tl),
        3 => (Br, Bl),
        4 => (Bl, Br),
        5 => (Tl, Bl),
        6 => (Bl, Tl),
        7 => (Br, Tr),
        8 => (Tr, Br),
        _ => unreachable!(),
    }
}

fn paint(img: &mut RgbImage, corner: Corner, color: [u8; 3]) {
    let (w, h) = img.dimensions();
    let s = 48;
    let (x0, y0) = match corner {
        Corner::Tl => (0, 0),
        Corner::Tr => (w - s, 0),
        Corner::Bl => (0, h - s),
        Corner::Br => (w - s, h - s),
    };
    for y in y0..y0 + s {
        for x in x0..x0 + s {
            img.put_pixel(x, y, Rgb(color));
        }
    }
}

#[test]
fn all_eight_exif_orientations_come_out_upright() {
    for o in 1..=8u16 {
        let mut stored = RgbImage::from_pixel(240, 160, Rgb(GRAY));
        let (red, green) = stored_corners(o);
        paint(&mut stored, red, RED);
        paint(&mut stored, green, GREEN);
        let src = with_exif(&jpeg(&stored, 95), &[orientation_field(o)]);
        let p = process(
            &src,
            &opts(vec![Preset::new("small", 640, 480, Fit::Inside, 95)]),
        )
        .unwrap();
        assert_eq!(p.info.orientation, o as u8);
        let (dw, dh) = if o >= 5 { (160, 240) } else { (240, 160) };
        assert_eq!((p.info.width, p.info.height), (dw, dh), "orientation {o}");
        for v in &p.variants {
            let img = decode_rgb(&v.bytes);
            assert_eq!(img.dimensions(), (dw, dh), "orientation {o} {:?}", v.format);
            let at = |x: u32, y: u32| img.get_pixel(x, y).0;
            assert!(
                close(&at(10, 10), &RED, 30),
                "orientation {o} {:?}: top-left {:?}",
                v.format,
                at(10, 10)
            );
            assert!(
                close(&at(dw - 11, 10), &GREEN, 30),
                "orientation {o} {:?}: top-right {:?}",
                v.format,
                at(dw - 11, 10)
            );
            assert!(
                close(&at(dw - 11, dh - 11), &GRAY, 30),
                "orientation {o} {:?}: bottom-right",
                v.format
            );
            assert!(
                close(&at(10, dh - 11), &GRAY, 30),
                "orientation {o} {:?}: bottom-left",
                v.format
            );
        }
    }
}

fn exif_of(bytes: &[u8]) -> Option<exif::Exif> {
    exif::Reader::new()
        .read_from_container(&mut Cursor::new(bytes))
        .ok()
}

#[test]
fn derivatives_carry_no_gps_serial_or_other_exif() {
    let mut fields = gps_fields();
    fields.push(field(
        exif::Tag::DateTimeOriginal,
        ascii("2021:06:15 14:30:05"),
    ));
    fields.push(field(exif::Tag::OffsetTimeOriginal, ascii("+02:00")));
    fields.push(field(exif::Tag::Copyright, ascii("(c) Ada Lovelace")));
    let src = with_exif(&jpeg(&card(800, 600), 90), &fields);
    // The fixture really carries GPS, or the test proves nothing.
    let source_exif = exif_of(&src).expect("source has exif");
    assert!(
        source_exif
            .get_field(exif::Tag::GPSLatitude, exif::In::PRIMARY)
            .is_some()
    );

    let p = process(&src, &ProcessOptions::default()).unwrap();
    assert_eq!(
        p.info.taken_at,
        Some(TakenAt {
            unix_seconds: 1_623_760_205,
            utc_offset_minutes: Some(120)
        })
    );
    for v in &p.variants {
        assert!(
            exif_of(&v.bytes).is_none(),
            "{} {:?} has exif",
            v.preset,
            v.format
        );
        let hay = &v.bytes;
        assert!(
            !hay.windows(4).any(|w| w == b"Exif"),
            "{} {:?}",
            v.preset,
            v.format
        );
        assert!(!hay.windows(10).any(|w| w == b"SN-1234567"));
    }

    let keep = ProcessOptions {
        keep_copyright: true,
        ..ProcessOptions::default()
    };
    let p = process(&src, &keep).unwrap();
    for v in p.variants.iter().filter(|v| v.format == OutputFormat::Jpeg) {
        let e = exif_of(&v.bytes).expect("copyright kept");
        let c = e
            .get_field(exif::Tag::Copyright, exif::In::PRIMARY)
            .unwrap();
        assert_eq!(c.display_value().to_string(), "\"(c) Ada Lovelace\"");
        assert!(
            e.get_field(exif::Tag::GPSLatitude, exif::In::PRIMARY)
                .is_none()
        );
        assert!(
            e.get_field(exif::Tag::BodySerialNumber, exif::In::PRIMARY)
                .is_none()
        );
        assert!(
            e.get_field(exif::Tag::DateTimeOriginal, exif::In::PRIMARY)
                .is_none()
        );
        image::load_from_memory(&v.bytes).unwrap();
    }
}

#[test]
fn alpha_is_flattened_on_white_for_jpeg_and_kept_for_webp() {
    let img = RgbaImage::from_fn(300, 200, |x, _| {
        if x < 150 {
            Rgba([255, 0, 0, 255])
        } else {
            Rgba([0, 0, 255, 0])
        }
    });
    let p = process(
        &png_rgba(&img),
        &opts(vec![Preset::new("small", 640, 480, Fit::Inside, 90)]),
    )
    .unwrap();
    assert!(p.info.has_alpha);
    assert_eq!(p.info.format, Format::Png);
    let j = decode_rgb(&variant(&p, "small", OutputFormat::Jpeg).bytes);
    assert!(close(&j.get_pixel(50, 100).0, &[255, 0, 0], 12));
    assert!(
        close(&j.get_pixel(250, 100).0, &[255, 255, 255], 6),
        "{:?}",
        j.get_pixel(250, 100)
    );
    let w = image::load_from_memory(&variant(&p, "small", OutputFormat::WebP).bytes)
        .unwrap()
        .into_rgba8();
    assert_eq!(
        w.get_pixel(250, 100).0[3],
        0,
        "transparent stays transparent"
    );
    assert_eq!(w.get_pixel(50, 100).0[3], 255);
    assert!(close(&w.get_pixel(50, 100).0[..3], &[255, 0, 0], 12));
}

#[test]
fn display_p3_source_is_converted_to_srgb_not_left_dull() {
    let icc = icc_profile("Test Display P3", P3_D50, 2.2);
    let colour = [60u8, 170, 80];
    let src = with_icc(&jpeg(&RgbImage::from_pixel(64, 64, Rgb(colour)), 98), &icc);
    // Expected: P3 linear -> XYZ(D50) -> sRGB linear -> sRGB encoded, computed independently.
    let expected = expected_srgb(colour, P3_D50);
    assert!(
        !close(&expected, &colour, 10),
        "the fixture colour must change visibly under conversion: {expected:?}"
    );

    let p = process(
        &src,
        &opts(vec![Preset::new("small", 640, 480, Fit::Inside, 98)]),
    )
    .unwrap();
    assert_eq!(p.info.icc_description.as_deref(), Some("Test Display P3"));
    for v in &p.variants {
        let out = decode_rgb(&v.bytes);
        let px = out.get_pixel(32, 32).0;
        assert!(
            close(&px, &expected, 6),
            "{:?}: got {px:?}, want {expected:?}",
            v.format
        );
    }
    // Without the profile the same pixels pass through unchanged.
    let plain = process(
        &jpeg(&RgbImage::from_pixel(64, 64, Rgb(colour)), 98),
        &opts(vec![Preset::new("small", 640, 480, Fit::Inside, 98)]),
    )
    .unwrap();
    let px = decode_rgb(&variant(&plain, "small", OutputFormat::Jpeg).bytes)
        .get_pixel(32, 32)
        .0;
    assert!(close(&px, &colour, 4), "{px:?}");
}

#[test]
fn placeholders_are_small_and_decodable() {
    let img = RgbImage::from_fn(400, 300, |x, _| {
        if x < 280 {
            Rgb([30, 120, 200])
        } else {
            Rgb([240, 200, 10])
        }
    });
    let p = process(&jpeg(&img, 95), &ProcessOptions::default()).unwrap();
    let ph = &p.placeholders;
    let hex = |s: &str| u8::from_str_radix(s, 16).unwrap();
    let d = &ph.dominant_color;
    assert_eq!(d.len(), 7);
    assert!(
        close(
            &[hex(&d[1..3]), hex(&d[3..5]), hex(&d[5..7])],
            &[30, 120, 200],
            8
        ),
        "{d}"
    );
    assert!(
        ph.blur_data_uri.len() <= MAX_BLUR_URI_BYTES,
        "{}",
        ph.blur_data_uri.len()
    );
    let b64 = ph
        .blur_data_uri
        .strip_prefix("data:image/webp;base64,")
        .unwrap();
    use base64::Engine;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .unwrap();
    let tiny = image::load_from_memory(&bytes).unwrap();
    assert!(tiny.width() <= 16 && tiny.height() <= 16);
    assert_eq!(ph.blurhash.len(), 28, "4x3 components");
    let decoded = blurhash::decode(&ph.blurhash, 8, 6, 1.0).unwrap();
    assert_eq!(decoded.len(), 8 * 6 * 4);
    let th = base64::engine::general_purpose::STANDARD
        .decode(&ph.thumbhash)
        .unwrap();
    let (w, h, _) = thumbhash::thumb_hash_to_rgba(&th).unwrap();
    assert!(w > h, "thumbhash keeps the landscape aspect: {w}x{h}");
}

#[test]
fn keys_are_deterministic_and_content_addressed() {
    let src = jpeg(&card(900, 600), 90);
    let a = process(&src, &ProcessOptions::default()).unwrap();
    let b = process(&src, &ProcessOptions::default()).unwrap();
    let keys = |p: &Processed| p.variants.iter().map(|v| v.key.clone()).collect::<Vec<_>>();
    assert_eq!(keys(&a), keys(&b));
    let unique: std::collections::HashSet<_> = keys(&a).into_iter().collect();
    assert_eq!(unique.len(), 10);
    for v in &a.variants {
        assert!(v.key.contains(&a.info.sha256));
        assert!(v.key.contains(&format!("t{TRANSFORM_VERSION}")));
        assert!(v.key.ends_with(v.format.extension()));
    }
    // Same pixels, identical bytes: same outputs (the encoders are deterministic).
    for (x, y) in a.variants.iter().zip(&b.variants) {
        assert_eq!(x.bytes, y.bytes, "{} {:?}", x.preset, x.format);
    }
    let other = process(&jpeg(&card(900, 601), 90), &ProcessOptions::default()).unwrap();
    assert_ne!(keys(&a), keys(&other));
    let mut p = default_presets()[1].clone();
    let k1 = variant_key(
        &a.info.sha256,
        &p,
        OutputFormat::Jpeg,
        WebpOptions::default(),
    );
    p.jpeg_quality = 70;
    let k2 = variant_key(
        &a.info.sha256,
        &p,
        OutputFormat::Jpeg,
        WebpOptions::default(),
    );
    assert_ne!(k1, k2);
}

#[test]
fn cover_crop_follows_the_detailed_region() {
    // Flat grey with a checkerboard on the right: a centre crop would keep only 100 of its 300
    // columns.
    let img = RgbImage::from_fn(800, 400, |x, y| {
        if x >= 500 && ((x / 8 + y / 8) % 2 == 0) {
            Rgb([250, 250, 250])
        } else if x >= 500 {
            Rgb([10, 10, 10])
        } else {
            Rgb([120, 120, 120])
        }
    });
    let p = process(
        &png_rgb(&img),
        &opts(vec![Preset::new("thumbnail", 400, 400, Fit::Cover, 90)]),
    )
    .unwrap();
    let t = image::load_from_memory(&variant(&p, "thumbnail", OutputFormat::WebP).bytes)
        .unwrap()
        .into_rgb8();
    assert_eq!(t.dimensions(), (400, 400));
    let column: Vec<u8> = (0..400).map(|y| t.get_pixel(150, y).0[0]).collect();
    assert!(
        column.iter().any(|&v| v > 200) && column.iter().any(|&v| v < 50),
        "column 150 is checkered"
    );
    assert!(close(&t.get_pixel(20, 200).0, &[120, 120, 120], 10));
}

#[test]
fn webp_method_and_lossless_are_honoured() {
    let src = png_rgb(&card(320, 240));
    let presets = vec![Preset::new("small", 640, 480, Fit::Inside, 85)];
    let lossless = ProcessOptions {
        presets: presets.clone(),
        formats: vec![OutputFormat::WebP],
        webp: WebpOptions {
            method: 4,
            lossless: true,
        },
        ..ProcessOptions::default()
    };
    let p = process(&src, &lossless).unwrap();
    assert_eq!(p.variants.len(), 1);
    let out = image::load_from_memory(&p.variants[0].bytes)
        .unwrap()
        .into_rgb8();
    assert_eq!(out, card(320, 240), "lossless round-trips exactly");
    assert!(p.variants[0].key.contains("lossless-m4"));
}

#[test]
fn png_16_bit_and_webp_inputs_are_accepted() {
    let img16 =
        image::ImageBuffer::<Rgb<u16>, Vec<u16>>::from_pixel(120, 80, Rgb([65535, 0, 32768]));
    let mut png16 = Vec::new();
    image::DynamicImage::ImageRgb16(img16)
        .write_to(&mut Cursor::new(&mut png16), image::ImageFormat::Png)
        .unwrap();
    let p = process(
        &png16,
        &opts(vec![Preset::new("small", 640, 480, Fit::Inside, 95)]),
    )
    .unwrap();
    let px = decode_rgb(&variant(&p, "small", OutputFormat::Jpeg).bytes)
        .get_pixel(60, 40)
        .0;
    assert!(close(&px, &[255, 0, 128], 8), "{px:?}");

    let webp = encode_webp(
        &Raster {
            width: 50,
            height: 40,
            alpha: false,
            pixels: vec![200; 50 * 40 * 3],
        },
        90,
        WebpOptions::default(),
    )
    .unwrap();
    let p = process(
        &webp,
        &opts(vec![Preset::new("small", 640, 480, Fit::Inside, 95)]),
    )
    .unwrap();
    assert_eq!(p.info.format, Format::WebP);
    assert_eq!((p.variants[0].width, p.variants[0].height), (50, 40));
}
