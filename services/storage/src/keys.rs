//! Object keys: every key the service touches lives under a managed prefix and cannot name
//! anything outside it, whatever a caller sends.

use crate::config::KeysConfig;
use crate::error::StorageError;

pub fn validate_key(config: &KeysConfig, key: &str) -> Result<(), StorageError> {
    validate(config, key, "key", false)
}

/// A listing prefix: like a key, but it may be a managed prefix itself (or a folder under one).
pub fn validate_prefix(config: &KeysConfig, prefix: &str) -> Result<(), StorageError> {
    validate(config, prefix, "prefix", true)
}

fn validate(
    config: &KeysConfig,
    key: &str,
    field: &'static str,
    allow_bare_prefix: bool,
) -> Result<(), StorageError> {
    if key.is_empty() {
        return Err(StorageError::invalid(field, "must not be empty"));
    }
    if key.len() > config.max_key_bytes {
        return Err(StorageError::invalid(
            field,
            format!(
                "{} bytes is over the limit of {}",
                key.len(),
                config.max_key_bytes
            ),
        ));
    }
    if key.starts_with('/') || key.starts_with('\\') {
        return Err(StorageError::invalid(
            field,
            format!("{key:?} is absolute: drop the leading slash"),
        ));
    }
    if let Some(c) = key.chars().find(|c| c.is_control()) {
        return Err(StorageError::invalid(
            field,
            format!("{key:?} contains the control character U+{:04X}", c as u32),
        ));
    }
    if key
        .split(['/', '\\'])
        .any(|segment| segment == ".." || segment == ".")
    {
        return Err(StorageError::invalid(
            field,
            format!("{key:?} contains a '.' or '..' path segment"),
        ));
    }
    if key.contains("//") {
        return Err(StorageError::invalid(
            field,
            format!("{key:?} contains an empty path segment"),
        ));
    }
    let managed = config.managed_prefixes.iter().any(|p| {
        key.strip_prefix(p.as_str())
            .is_some_and(|rest| allow_bare_prefix || !rest.is_empty())
    });
    if !managed {
        return Err(StorageError::invalid(
            field,
            format!(
                "{key:?} is outside the managed prefixes ({})",
                config.managed_prefixes.join(", ")
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(key: &str) -> bool {
        validate_key(&KeysConfig::default(), key).is_ok()
    }

    #[test]
    fn managed_keys_pass() {
        assert!(ok("originals/ab/cd/abcdef.jpg"));
        assert!(ok("variants/x/1920.webp"));
        assert!(ok("tmp/upload-1"));
        assert!(
            ok("originals/a..b.jpg"),
            "'..' inside a name is not traversal"
        );
    }

    #[test]
    fn traversal_and_junk_fail() {
        for key in [
            "",
            "/originals/a",
            "originals/../secrets",
            "originals/..",
            "originals/./a",
            "originals/a\\..\\b",
            "originals//a",
            "originals/a\nb",
            "originals/a\u{7f}",
            "other/a",
            "originals/",
            "originalsx/a",
            "../originals/a",
        ] {
            assert!(!ok(key), "{key:?} should be rejected");
        }
        let long = format!("originals/{}", "a".repeat(1100));
        assert!(!ok(&long));
    }

    #[test]
    fn prefixes_may_be_bare() {
        let c = KeysConfig::default();
        assert!(validate_prefix(&c, "originals/").is_ok());
        assert!(validate_prefix(&c, "tmp/batch-").is_ok());
        assert!(validate_prefix(&c, "").is_err());
        assert!(validate_prefix(&c, "x/").is_err());
    }
}
