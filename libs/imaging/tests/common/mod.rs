//! Real images made by the tests themselves: encoded with the `image` crate, EXIF written with
//! kamadak-exif's writer, ICC profiles built byte by byte.
#![allow(dead_code)]

use image::{ExtendedColorType, ImageEncoder, RgbImage, RgbaImage};

pub fn jpeg(img: &RgbImage, quality: u8) -> Vec<u8> {
    let mut out = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, quality)
        .encode(
            img.as_raw(),
            img.width(),
            img.height(),
            ExtendedColorType::Rgb8,
        )
        .unwrap();
    out
}

pub fn png_rgba(img: &RgbaImage) -> Vec<u8> {
    let mut out = Vec::new();
    image::codecs::png::PngEncoder::new(&mut out)
        .write_image(
            img.as_raw(),
            img.width(),
            img.height(),
            ExtendedColorType::Rgba8,
        )
        .unwrap();
    out
}

pub fn png_rgb(img: &RgbImage) -> Vec<u8> {
    let mut out = Vec::new();
    image::codecs::png::PngEncoder::new(&mut out)
        .write_image(
            img.as_raw(),
            img.width(),
            img.height(),
            ExtendedColorType::Rgb8,
        )
        .unwrap();
    out
}

/// A photo-like test card: smooth gradients plus deterministic texture.
pub fn card(w: u32, h: u32) -> RgbImage {
    RgbImage::from_fn(w, h, |x, y| {
        let n = (x.wrapping_mul(2_654_435_761) ^ y.wrapping_mul(40_503)) % 23;
        image::Rgb([
            ((x * 255 / w.max(1)) as u8).saturating_add(n as u8),
            ((y * 255 / h.max(1)) as u8).saturating_add(n as u8),
            (((x + y) * 127 / (w + h).max(1)) as u8).saturating_add(n as u8),
        ])
    })
}

/// An EXIF (TIFF) block with the given fields.
pub fn exif_tiff(fields: &[exif::Field]) -> Vec<u8> {
    let mut w = exif::experimental::Writer::new();
    for f in fields {
        w.push_field(f);
    }
    let mut buf = std::io::Cursor::new(Vec::new());
    w.write(&mut buf, false).unwrap();
    buf.into_inner()
}

pub fn field(tag: exif::Tag, value: exif::Value) -> exif::Field {
    exif::Field {
        tag,
        ifd_num: exif::In::PRIMARY,
        value,
    }
}

pub fn ascii(s: &str) -> exif::Value {
    exif::Value::Ascii(vec![s.as_bytes().to_vec()])
}

pub fn orientation_field(o: u16) -> exif::Field {
    field(exif::Tag::Orientation, exif::Value::Short(vec![o]))
}

pub fn gps_fields() -> Vec<exif::Field> {
    let r = |n: u32| exif::Rational { num: n, denom: 1 };
    vec![
        field(exif::Tag::GPSLatitudeRef, ascii("N")),
        field(
            exif::Tag::GPSLatitude,
            exif::Value::Rational(vec![r(48), r(51), r(29)]),
        ),
        field(exif::Tag::GPSLongitudeRef, ascii("E")),
        field(
            exif::Tag::GPSLongitude,
            exif::Value::Rational(vec![r(2), r(17), r(40)]),
        ),
        field(exif::Tag::BodySerialNumber, ascii("SN-1234567")),
    ]
}

/// Inserts an APPn segment right after SOI.
pub fn insert_segment(jpeg: &[u8], marker: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(jpeg.len() + payload.len() + 4);
    out.extend_from_slice(&jpeg[..2]);
    out.extend_from_slice(&[0xFF, marker]);
    out.extend_from_slice(&((payload.len() + 2) as u16).to_be_bytes());
    out.extend_from_slice(payload);
    out.extend_from_slice(&jpeg[2..]);
    out
}

pub fn with_exif(jpeg: &[u8], fields: &[exif::Field]) -> Vec<u8> {
    let mut payload = b"Exif\0\0".to_vec();
    payload.extend_from_slice(&exif_tiff(fields));
    insert_segment(jpeg, 0xE1, &payload)
}

pub fn with_icc(jpeg: &[u8], icc: &[u8]) -> Vec<u8> {
    let chunks: Vec<&[u8]> = icc.chunks(60_000).collect();
    let mut out = jpeg.to_vec();
    // Inserted in reverse so they end up in sequence order after SOI.
    for (i, c) in chunks.iter().enumerate().rev() {
        let mut payload = b"ICC_PROFILE\0".to_vec();
        payload.push((i + 1) as u8);
        payload.push(chunks.len() as u8);
        payload.extend_from_slice(c);
        out = insert_segment(&out, 0xE2, &payload);
    }
    out
}

pub fn crc32(data: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

fn png_chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    let mut c = kind.to_vec();
    c.extend_from_slice(data);
    out.extend_from_slice(&c);
    out.extend_from_slice(&crc32(&c).to_be_bytes());
}

/// A valid-looking PNG that claims `w`×`h` RGB pixels in ~100 bytes: a decompression bomb.
pub fn png_bomb(w: u32, h: u32) -> Vec<u8> {
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&w.to_be_bytes());
    ihdr.extend_from_slice(&h.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
    png_chunk(&mut out, b"IHDR", &ihdr);
    // A zlib stream of zeros: would inflate to the full frame if anyone let it.
    png_chunk(
        &mut out,
        b"IDAT",
        &[
            0x78, 0x9c, 0x63, 0x60, 0x18, 0x05, 0xa3, 0x60, 0x14, 0x0c, 0x00, 0x00,
        ],
    );
    png_chunk(&mut out, b"IEND", &[]);
    out
}

/// An ICC v2 RGB display profile: given D50 primaries, a pure-gamma TRC, and a description.
pub fn icc_profile(desc: &str, primaries: [[f64; 3]; 3], gamma: f64) -> Vec<u8> {
    let s15 = |v: f64| ((v * 65536.0).round() as i32).to_be_bytes();
    let xyz = |v: [f64; 3]| {
        let mut t = b"XYZ \0\0\0\0".to_vec();
        for c in v {
            t.extend_from_slice(&s15(c));
        }
        t
    };
    let mut curv = b"curv\0\0\0\0".to_vec();
    curv.extend_from_slice(&1u32.to_be_bytes());
    curv.extend_from_slice(&((gamma * 256.0).round() as u16).to_be_bytes());
    curv.extend_from_slice(&[0, 0]);
    let mut desc_tag = b"desc\0\0\0\0".to_vec();
    desc_tag.extend_from_slice(&((desc.len() + 1) as u32).to_be_bytes());
    desc_tag.extend_from_slice(desc.as_bytes());
    desc_tag.push(0);
    desc_tag.extend_from_slice(&[0u8; 4 + 4 + 2 + 1 + 67]);
    while !desc_tag.len().is_multiple_of(4) {
        desc_tag.push(0);
    }
    let d50 = [0.9642, 1.0, 0.8249];
    let tags: Vec<(&[u8; 4], Vec<u8>)> = vec![
        (b"desc", desc_tag),
        (b"wtpt", xyz(d50)),
        (b"rXYZ", xyz(primaries[0])),
        (b"gXYZ", xyz(primaries[1])),
        (b"bXYZ", xyz(primaries[2])),
        (b"rTRC", curv.clone()),
        (b"gTRC", curv.clone()),
        (b"bTRC", curv),
    ];
    let table_len = 4 + tags.len() * 12;
    let mut offset = 128 + table_len;
    let mut table = (tags.len() as u32).to_be_bytes().to_vec();
    let mut data = Vec::new();
    for (sig, body) in &tags {
        table.extend_from_slice(*sig);
        table.extend_from_slice(&(offset as u32).to_be_bytes());
        table.extend_from_slice(&(body.len() as u32).to_be_bytes());
        data.extend_from_slice(body);
        offset += body.len();
    }
    let total = 128 + table.len() + data.len();
    let mut h = vec![0u8; 128];
    h[0..4].copy_from_slice(&(total as u32).to_be_bytes());
    h[8..12].copy_from_slice(&0x0210_0000u32.to_be_bytes());
    h[12..16].copy_from_slice(b"mntr");
    h[16..20].copy_from_slice(b"RGB ");
    h[20..24].copy_from_slice(b"XYZ ");
    h[36..40].copy_from_slice(b"acsp");
    h[68..72].copy_from_slice(&s15(d50[0]));
    h[72..76].copy_from_slice(&s15(d50[1]));
    h[76..80].copy_from_slice(&s15(d50[2]));
    let mut out = h;
    out.extend_from_slice(&table);
    out.extend_from_slice(&data);
    out
}

/// Display P3 primaries adapted to D50 (as in Apple's "Display P3" profile).
pub const P3_D50: [[f64; 3]; 3] = [
    [0.5151, 0.2412, -0.0011],
    [0.2919, 0.6922, 0.0419],
    [0.1571, 0.0666, 0.7841],
];
/// sRGB primaries adapted to D50 (as in the ICC sRGB profiles).
pub const SRGB_D50: [[f64; 3]; 3] = [
    [0.4361, 0.2225, 0.0139],
    [0.3851, 0.7169, 0.0971],
    [0.1431, 0.0606, 0.7141],
];

pub fn decode_rgb(bytes: &[u8]) -> RgbImage {
    image::load_from_memory(bytes).unwrap().into_rgb8()
}

pub fn close(a: &[u8], b: &[u8], tol: i32) -> bool {
    a.iter()
        .zip(b)
        .all(|(x, y)| (i32::from(*x) - i32::from(*y)).abs() <= tol)
}

/// A zlib stream of stored (uncompressed) deflate blocks: valid for PNG IDAT and iCCP.
pub fn zlib_stored(data: &[u8]) -> Vec<u8> {
    let mut out = vec![0x78, 0x01];
    let blocks: Vec<&[u8]> = if data.is_empty() {
        vec![&[]]
    } else {
        data.chunks(65_535).collect()
    };
    for (i, block) in blocks.iter().enumerate() {
        out.push(u8::from(i + 1 == blocks.len()));
        let len = block.len() as u16;
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&(!len).to_le_bytes());
        out.extend_from_slice(block);
    }
    let (mut a, mut b) = (1u32, 0u32);
    for &byte in data {
        a = (a + u32::from(byte)) % 65_521;
        b = (b + a) % 65_521;
    }
    out.extend_from_slice(&((b << 16) | a).to_be_bytes());
    out
}

/// An 8-bit palette PNG (colour type 3), with a tRNS chunk when `alpha` is given.
pub fn png_palette(
    w: u32,
    h: u32,
    palette: &[[u8; 3]],
    alpha: Option<&[u8]>,
    index: impl Fn(u32, u32) -> u8,
) -> Vec<u8> {
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&w.to_be_bytes());
    ihdr.extend_from_slice(&h.to_be_bytes());
    ihdr.extend_from_slice(&[8, 3, 0, 0, 0]);
    png_chunk(&mut out, b"IHDR", &ihdr);
    png_chunk(&mut out, b"PLTE", &palette.concat());
    if let Some(alpha) = alpha {
        png_chunk(&mut out, b"tRNS", alpha);
    }
    let mut raw = Vec::with_capacity(((w + 1) * h) as usize);
    for y in 0..h {
        raw.push(0);
        raw.extend((0..w).map(|x| index(x, y)));
    }
    png_chunk(&mut out, b"IDAT", &zlib_stored(&raw));
    png_chunk(&mut out, b"IEND", &[]);
    out
}

/// An RGB PNG carrying an ICC profile (iCCP chunk, before IDAT as the format requires).
pub fn png_with_icc(img: &RgbImage, name: &str, icc: &[u8]) -> Vec<u8> {
    let plain = png_rgb(img);
    // Signature (8) + IHDR (4 + 4 + 13 + 4).
    let (head, rest) = plain.split_at(8 + 25);
    let mut iccp = name.as_bytes().to_vec();
    iccp.extend_from_slice(&[0, 0]);
    iccp.extend_from_slice(&zlib_stored(icc));
    let mut out = head.to_vec();
    png_chunk(&mut out, b"iCCP", &iccp);
    out.extend_from_slice(rest);
    out
}

fn srgb_encode(v: f64) -> f64 {
    let v = v.clamp(0.0, 1.0);
    let e = if v <= 0.003_130_8 {
        12.92 * v
    } else {
        1.055 * v.powf(1.0 / 2.4) - 0.055
    };
    e * 255.0
}

fn invert(m: [[f64; 3]; 3]) -> [[f64; 3]; 3] {
    let det = m[0][0] * (m[1][1] * m[2][2] - m[1][2] * m[2][1])
        - m[0][1] * (m[1][0] * m[2][2] - m[1][2] * m[2][0])
        + m[0][2] * (m[1][0] * m[2][1] - m[1][1] * m[2][0]);
    // Adjugate over determinant, written with cyclic indices.
    std::array::from_fn(|i| {
        std::array::from_fn(|j| {
            let (a, b) = ((j + 1) % 3, (j + 2) % 3);
            let (c, d) = ((i + 1) % 3, (i + 2) % 3);
            (m[a][c] * m[b][d] - m[a][d] * m[b][c]) / det
        })
    })
}

/// The sRGB numbers of `colour` in an RGB space with these D50 primaries and the pure-gamma
/// TRC that [`icc_profile`] writes for 2.2, computed independently of any CMS:
/// linear → XYZ (D50) → linear sRGB → sRGB encoded.
pub fn expected_srgb(colour: [u8; 3], primaries: [[f64; 3]; 3]) -> [u8; 3] {
    let gamma = 563.0 / 256.0; // what a u8Fixed8 of 2.2 stores
    let lin = colour.map(|c| (f64::from(c) / 255.0).powf(gamma));
    let xyz: Vec<f64> = (0..3)
        .map(|k| (0..3).map(|c| primaries[c][k] * lin[c]).sum())
        .collect();
    // Columns of SRGB_D50 are the primaries: XYZ = S · rgb, so rgb = S⁻¹ · XYZ.
    let s = [
        [SRGB_D50[0][0], SRGB_D50[1][0], SRGB_D50[2][0]],
        [SRGB_D50[0][1], SRGB_D50[1][1], SRGB_D50[2][1]],
        [SRGB_D50[0][2], SRGB_D50[1][2], SRGB_D50[2][2]],
    ];
    let si = invert(s);
    std::array::from_fn(|r| srgb_encode((0..3).map(|k| si[r][k] * xyz[k]).sum()).round() as u8)
}
