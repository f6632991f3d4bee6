//! URLs for objects: public CDN URLs, and CloudFront canned-policy signed URLs.
//! (S3 presigned GETs come from the SDK's presigner in the service.)

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use rsa::pkcs1::DecodeRsaPrivateKey;
use rsa::pkcs8::DecodePrivateKey;
use rsa::{Pkcs1v15Sign, RsaPrivateKey};
use sha1::{Digest, Sha1};

use crate::config::UrlsConfig;
use crate::error::StorageError;

pub fn parse_private_key(pem: &str) -> Result<RsaPrivateKey, StorageError> {
    RsaPrivateKey::from_pkcs1_pem(pem)
        .or_else(|_| RsaPrivateKey::from_pkcs8_pem(pem))
        .map_err(|_| {
            StorageError::invalid(
                "cloudfront private key",
                "not an RSA private key in PKCS#1 (BEGIN RSA PRIVATE KEY) or PKCS#8 (BEGIN PRIVATE KEY) PEM",
            )
        })
}

/// Percent-encodes a validated key for a URL path, keeping `/` as the separator.
pub fn encode_path(key: &str) -> String {
    let mut out = String::with_capacity(key.len());
    for b in key.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

pub fn public_url(config: &UrlsConfig, key: &str) -> Result<String, StorageError> {
    if config.cdn_domain.is_empty() {
        return Err(StorageError::FailedPrecondition(
            "no CDN configured: set urls.cdn_domain".to_owned(),
        ));
    }
    Ok(format!(
        "{}://{}/{}",
        config.cdn_scheme,
        config.cdn_domain,
        encode_path(key)
    ))
}

/// Resolves a requested lifetime: 0 means the configured default; above the maximum is refused.
pub fn expiry(config: &UrlsConfig, requested: u32) -> Result<Duration, StorageError> {
    let secs = if requested == 0 {
        config.default_expiry_seconds
    } else {
        requested
    };
    if secs > config.max_expiry_seconds {
        return Err(StorageError::invalid(
            "expires_in_seconds",
            format!(
                "{secs} is over the maximum of {} (urls.max_expiry_seconds)",
                config.max_expiry_seconds
            ),
        ));
    }
    Ok(Duration::from_secs(u64::from(secs)))
}

/// CloudFront's URL-safe base64: standard alphabet with `+`→`-`, `=`→`_`, `/`→`~`.
pub fn cloudfront_base64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD
        .encode(bytes)
        .chars()
        .map(|c| match c {
            '+' => '-',
            '=' => '_',
            '/' => '~',
            c => c,
        })
        .collect()
}

/// The canned policy CloudFront rebuilds from `Expires` and the URL to check a signature.
pub fn canned_policy(resource: &str, expires_epoch: u64) -> String {
    format!(
        r#"{{"Statement":[{{"Resource":"{resource}","Condition":{{"DateLessThan":{{"AWS:EpochTime":{expires_epoch}}}}}}}]}}"#
    )
}

pub struct CloudFrontSigner {
    key_pair_id: String,
    key: RsaPrivateKey,
}

impl CloudFrontSigner {
    pub fn from_config(config: &UrlsConfig) -> Result<Option<Self>, StorageError> {
        if config.cloudfront_key_pair_id.is_empty() {
            return Ok(None);
        }
        Ok(Some(CloudFrontSigner {
            key_pair_id: config.cloudfront_key_pair_id.clone(),
            key: parse_private_key(config.cloudfront_private_key_pem.expose())?,
        }))
    }

    /// A canned-policy signed URL for `resource` (a full URL without query) valid for `ttl`.
    pub fn sign(
        &self,
        resource: &str,
        ttl: Duration,
    ) -> Result<(String, SystemTime), StorageError> {
        let expires = SystemTime::now() + ttl;
        let epoch = expires
            .duration_since(UNIX_EPOCH)
            .map_err(|e| StorageError::Internal(e.to_string()))?
            .as_secs();
        let policy = canned_policy(resource, epoch);
        let digest = Sha1::digest(policy.as_bytes());
        let signature = self
            .key
            .sign(Pkcs1v15Sign::new::<Sha1>(), &digest)
            .map_err(|e| StorageError::Internal(format!("cloudfront signing failed: {e}")))?;
        let url = format!(
            "{resource}?Expires={epoch}&Signature={}&Key-Pair-Id={}",
            cloudfront_base64(&signature),
            self.key_pair_id
        );
        Ok((url, UNIX_EPOCH + Duration::from_secs(epoch)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cloudfront_base64_replaces_the_three_characters() {
        // 0xfb 0xff encodes to "+/8=" in standard base64.
        assert_eq!(cloudfront_base64(&[0xfb, 0xff]), "-~8_");
    }

    #[test]
    fn paths_are_percent_encoded() {
        assert_eq!(
            encode_path("originals/a b+c.jpg"),
            "originals/a%20b%2Bc.jpg"
        );
    }

    #[test]
    fn expiry_is_bounded() {
        let c = UrlsConfig::default();
        assert_eq!(expiry(&c, 0).unwrap(), Duration::from_secs(900));
        assert!(expiry(&c, c.max_expiry_seconds + 1).is_err());
    }
}
