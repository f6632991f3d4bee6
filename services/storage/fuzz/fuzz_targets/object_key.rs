#![no_main]
//! Object keys on hostile input: storage's validation (`photos_storage::keys`), its URL path
//! encoding, and the media pipeline's key builder (`photos_imaging::variant_key`).
//!
//! - Validation never panics, and whatever it accepts is confined: relative, under a managed
//!   prefix, no `.`/`..`/empty segment (with `/` or `\` as separator), no control character,
//!   within the length limit. So no accepted key can name anything outside the bucket's folders.
//! - An accepted key's URL path uses only unreserved characters, `/` and `%XX`, and decodes back
//!   to the key (no second meaning for a CDN or S3 to find).
//! - Building a variant key never panics, and for a real content hash (64 hex digits) and a
//!   valid preset the key always passes storage's validation.

use libfuzzer_sys::fuzz_target;
use photos_imaging::{Fit, OutputFormat, Preset, WebpOptions, variant_key};
use photos_storage::config::KeysConfig;
use photos_storage::keys::{validate_key, validate_prefix};
use photos_storage::urls::encode_path;

fn confined(config: &KeysConfig, key: &str, bare_prefix_ok: bool) {
    assert!(
        !key.is_empty() && key.len() <= config.max_key_bytes,
        "{key:?}"
    );
    assert!(!key.starts_with('/') && !key.starts_with('\\'), "{key:?}");
    assert!(!key.chars().any(char::is_control), "{key:?}");
    assert!(
        !key.split(['/', '\\']).any(|s| s == "." || s == ".."),
        "{key:?} has a traversal segment"
    );
    assert!(!key.contains("//"), "{key:?}");
    assert!(
        config.managed_prefixes.iter().any(|p| key
            .strip_prefix(p.as_str())
            .is_some_and(|rest| bare_prefix_ok || !rest.is_empty())),
        "{key:?} is outside the managed prefixes"
    );
}

fn percent_decode(path: &str) -> Vec<u8> {
    let bytes = path.as_bytes();
    let (mut out, mut i) = (Vec::new(), 0);
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap();
            out.push(u8::from_str_radix(hex, 16).unwrap());
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let config = KeysConfig::default();
    let text = String::from_utf8_lossy(data);

    if validate_key(&config, &text).is_ok() {
        confined(&config, &text, false);
        let path = encode_path(&text);
        assert!(
            path.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.~/%".contains(&b)),
            "{path:?}"
        );
        assert_eq!(percent_decode(&path), text.as_bytes(), "{path:?}");
    }
    if validate_prefix(&config, &text).is_ok() {
        confined(&config, &text, true);
    }

    // Key building: a preset and a source hash from the input.
    if data.len() < 8 {
        return;
    }
    let (head, rest) = data.split_at(8);
    let name: String = String::from_utf8_lossy(&rest[..rest.len().min(24)]).into_owned();
    let mut preset = Preset::new(
        &name,
        u32::from(u16::from_le_bytes([head[0], head[1]])),
        u32::from(u16::from_le_bytes([head[2], head[3]])),
        if head[4] & 1 == 0 {
            Fit::Inside
        } else {
            Fit::Cover
        },
        head[5],
    );
    preset.webp_quality = head[6];
    let format = if head[7] & 1 == 0 {
        OutputFormat::Jpeg
    } else {
        OutputFormat::WebP
    };
    let webp = WebpOptions {
        method: head[7] >> 1 & 7,
        lossless: head[7] & 16 != 0,
    };
    // Any string as the "hash": must not panic (callers pass a hex digest, but the function is
    // public and a slice on a character boundary would be a crash).
    let _ = variant_key(&text, &preset, format, webp);
    if preset.validate().is_ok() {
        let sha: String = data
            .iter()
            .cycle()
            .take(32)
            .map(|b| format!("{b:02x}"))
            .collect();
        let key = variant_key(&sha, &preset, format, webp);
        if let Err(e) = validate_key(&config, &key) {
            panic!("built key {key:?} is refused by storage: {e}");
        }
    }
});
