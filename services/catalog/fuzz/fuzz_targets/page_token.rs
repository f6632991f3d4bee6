#![no_main]
//! Keyset page tokens (`photos_catalog::token`) on hostile input. Two properties:
//!
//! 1. Decoding arbitrary bytes as a token never panics, and every refusal is `BadToken`, which
//!    the catalog answers as INVALID_ARGUMENT.
//! 2. A genuine token edited by the fuzzer (bytes flipped, inserted, cut) never decodes to a
//!    position other than the one it was issued for, nor under another listing's scope: the
//!    HMAC, not the parser, decides what is accepted.

use libfuzzer_sys::fuzz_target;
use photos_catalog::CatalogError;
use photos_catalog::token::{Position, TokenKey};

fn i64_at(data: &[u8], at: usize) -> i64 {
    let mut b = [0u8; 8];
    for (i, v) in b.iter_mut().enumerate() {
        *v = data.get(at + i).copied().unwrap_or(0);
    }
    i64::from_le_bytes(b)
}

fuzz_target!(|data: &[u8]| {
    let key = TokenKey::new(b"fuzz-secret");
    let scope = "albums|all";

    // 1. The raw input as a token.
    if let Ok(text) = std::str::from_utf8(data) {
        match key.decode(scope, text) {
            Ok(None) => assert!(text.is_empty(), "only the empty token is the first page"),
            Ok(Some(p)) => {
                // Only possible by finding a valid HMAC: re-encoding must give the same token.
                assert_eq!(
                    key.encode(scope, p),
                    text,
                    "accepted a token it never issued"
                );
            }
            Err(bad) => {
                let status = tonic::Status::from(CatalogError::from(bad));
                assert_eq!(status.code(), tonic::Code::InvalidArgument);
            }
        }
    }

    // 2. A genuine token, edited.
    if data.len() < 25 {
        return;
    }
    let issued = Position {
        order: i64_at(data, 0),
        created_at: i64_at(data, 8),
        id: i64_at(data, 16),
    };
    let token = key.encode(scope, issued);
    assert_eq!(key.decode(scope, &token), Ok(Some(issued)), "round trip");
    assert!(
        key.decode("albums|published", &token).is_err(),
        "a token is bound to its listing"
    );
    let mut edited = token.clone().into_bytes();
    for op in data[24..].chunks(3) {
        let (kind, at, value) = (
            op[0] % 3,
            op.get(1).copied().unwrap_or(0),
            op.get(2).copied(),
        );
        let at = usize::from(at) % (edited.len() + 1);
        match (kind, value) {
            (0, Some(v)) if at < edited.len() => edited[at] ^= v.max(1),
            (1, Some(v)) => edited.insert(at, v),
            (2, _) if at < edited.len() => {
                edited.remove(at);
            }
            _ => {}
        }
    }
    let Ok(edited) = String::from_utf8(edited) else {
        return;
    };
    match key.decode(scope, &edited) {
        Ok(Some(p)) => assert_eq!(p, issued, "an edited token {edited:?} moved the page"),
        Ok(None) => assert!(edited.is_empty()),
        Err(_) => {}
    }
});
