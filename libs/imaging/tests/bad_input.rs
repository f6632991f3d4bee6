mod common;

use common::*;
use image::{Rgb, RgbImage, Rgba, RgbaImage};
use photos_imaging::*;

fn run(bytes: &[u8]) -> Result<Processed, ImagingError> {
    process(bytes, &ProcessOptions::default())
}

#[test]
fn empty_body_is_rejected() {
    assert!(matches!(run(&[]), Err(ImagingError::Empty)));
    assert!(matches!(
        probe(&[], &Limits::default()),
        Err(ImagingError::Empty)
    ));
}

#[test]
fn svg_and_html_named_jpg_are_rejected_by_content() {
    let svg = br#"<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"><script>alert(1)</script></svg>"#;
    let err = run(svg).unwrap_err();
    assert!(
        matches!(
            err,
            ImagingError::UnsupportedFormat {
                detected: "svg markup"
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("send a JPEG, PNG, WebP or GIF"));
    let html = b"<!DOCTYPE html><html><body><img src=x onerror=alert(1)></body></html>";
    assert!(matches!(
        run(html),
        Err(ImagingError::UnsupportedFormat {
            detected: "html markup"
        })
    ));
    assert!(matches!(
        run(b"just some text"),
        Err(ImagingError::UnsupportedFormat { .. })
    ));
}

#[test]
fn truncated_inputs_of_every_format_are_rejected_without_panic() {
    let jpg = jpeg(&card(400, 300), 90);
    let png = png_rgb(&card(400, 300));
    let webp = encode_webp(
        &Raster {
            width: 400,
            height: 300,
            alpha: false,
            pixels: card(400, 300).into_raw(),
        },
        85,
        WebpOptions::default(),
    )
    .unwrap();
    for (name, bytes) in [("jpeg", &jpg), ("png", &png), ("webp", &webp)] {
        for cut in [
            4usize,
            20,
            100,
            bytes.len() / 3,
            bytes.len() / 2,
            bytes.len() - 10,
        ] {
            let r = run(&bytes[..cut]);
            let err = r.expect_err(&format!("{name} cut at {cut} of {}", bytes.len()));
            assert!(
                !err.is_limit() && !err.is_internal(),
                "{name} cut at {cut}: {err}"
            );
        }
    }
}

#[test]
fn corrupt_bodies_behind_valid_magic_are_rejected() {
    let mut jpg = jpeg(&card(200, 150), 90);
    // Overwrite the entropy-coded data with garbage markers.
    let n = jpg.len();
    for b in &mut jpg[n / 2..n - 2] {
        *b = 0xFF;
    }
    let err = run(&jpg).expect_err("garbage scan data");
    assert!(
        matches!(err, ImagingError::Corrupt { format: "jpeg", .. }),
        "{err}"
    );

    let mut png = png_rgb(&card(200, 150));
    let n = png.len();
    for b in &mut png[60..n - 20] {
        *b ^= 0x5A;
    }
    assert!(matches!(
        run(&png),
        Err(ImagingError::Corrupt { format: "png", .. })
    ));

    let mut riff = b"RIFF\x20\0\0\0WEBPVP8 ".to_vec();
    riff.extend_from_slice(&[0xAB; 24]);
    assert!(matches!(
        run(&riff),
        Err(ImagingError::Corrupt { format: "webp", .. })
    ));
}

#[test]
fn decompression_bomb_png_is_rejected_from_its_header() {
    let bomb = png_bomb(65_535, 65_535);
    assert!(bomb.len() < 120, "bomb is {} bytes", bomb.len());
    let err = run(&bomb).unwrap_err();
    assert!(err.is_limit(), "{err}");
    assert!(
        matches!(
            err,
            ImagingError::DimensionTooLarge {
                width: 65_535,
                height: 65_535,
                ..
            }
        ),
        "{err}"
    );
    // Within the side limit but above the pixel budget.
    let err = run(&png_bomb(10_000, 10_000)).unwrap_err();
    assert!(
        matches!(
            err,
            ImagingError::TooManyPixels {
                pixels: 100_000_000,
                max: 50_000_000,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("above the limit"));
}

#[test]
fn jpeg_header_claiming_huge_dimensions_is_rejected_before_decoding() {
    let mut jpg = jpeg(&card(64, 48), 90);
    // Rewrite the SOF0 frame size to 30000x30000.
    let sof = jpg
        .windows(2)
        .position(|w| w == [0xFF, 0xC0])
        .expect("baseline SOF0");
    jpg[sof + 5..sof + 7].copy_from_slice(&30_000u16.to_be_bytes());
    jpg[sof + 7..sof + 9].copy_from_slice(&30_000u16.to_be_bytes());
    let err = run(&jpg).unwrap_err();
    assert!(
        matches!(
            err,
            ImagingError::DimensionTooLarge {
                width: 30_000,
                height: 30_000,
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn byte_limit_is_enforced() {
    let jpg = jpeg(&card(400, 300), 90);
    let options = ProcessOptions {
        limits: Limits {
            max_bytes: 1000,
            ..Limits::default()
        },
        ..ProcessOptions::default()
    };
    let err = process(&jpg, &options).unwrap_err();
    assert!(
        matches!(err, ImagingError::TooManyBytes { max: 1000, .. }),
        "{err}"
    );
    assert!(err.is_limit());
}

#[test]
fn huge_icc_profile_is_rejected() {
    let icc = vec![0x42u8; 1_300_000];
    let src = with_icc(&jpeg(&card(64, 48), 90), &icc);
    let err = run(&src).unwrap_err();
    assert!(matches!(err, ImagingError::IccTooLarge { .. }), "{err}");
    assert!(err.is_limit());
}

#[test]
fn garbage_icc_profile_is_ignored_not_fatal() {
    let src = with_icc(
        &jpeg(&RgbImage::from_pixel(64, 48, Rgb([90, 140, 200])), 95),
        &[7u8; 300],
    );
    let p = run(&src).unwrap();
    let px = decode_rgb(&p.variants[0].bytes).get_pixel(10, 10).0;
    assert!(close(&px, &[90, 140, 200], 5), "{px:?}");
}

#[test]
fn gif_with_thousands_of_frames_costs_one_frame() {
    let mut out = Vec::new();
    {
        let mut enc = image::codecs::gif::GifEncoder::new(&mut out);
        let first = image::Frame::new(RgbaImage::from_pixel(16, 16, Rgba([250, 10, 10, 255])));
        enc.encode_frame(first).unwrap();
        let other = RgbaImage::from_pixel(16, 16, Rgba([10, 10, 250, 255]));
        for _ in 0..3000 {
            enc.encode_frame(image::Frame::new(other.clone())).unwrap();
        }
    }
    let p = run(&out).unwrap();
    assert_eq!(p.info.format, Format::Gif);
    let v = p
        .variants
        .iter()
        .find(|v| v.format == OutputFormat::Jpeg)
        .unwrap();
    assert_eq!((v.width, v.height), (16, 16));
    let px = decode_rgb(&v.bytes).get_pixel(8, 8).0;
    assert!(close(&px, &[250, 10, 10], 20), "first frame only: {px:?}");
}

#[test]
fn invalid_options_are_rejected() {
    let jpg = jpeg(&card(64, 48), 90);
    let bad = ProcessOptions {
        presets: vec![Preset::new("../evil", 100, 100, Fit::Inside, 80)],
        ..ProcessOptions::default()
    };
    assert!(matches!(
        process(&jpg, &bad),
        Err(ImagingError::InvalidOption(_))
    ));
    let zero = ProcessOptions {
        presets: vec![Preset::new("zero", 0, 100, Fit::Inside, 80)],
        ..ProcessOptions::default()
    };
    assert!(matches!(
        process(&jpg, &zero),
        Err(ImagingError::InvalidOption(_))
    ));
    let none = ProcessOptions {
        formats: vec![],
        ..ProcessOptions::default()
    };
    assert!(matches!(
        process(&jpg, &none),
        Err(ImagingError::InvalidOption(_))
    ));
}
