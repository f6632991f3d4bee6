//! Responsive sources: a URL a browser can load for every variant. Variants of published
//! albums go through the CDN as plain URLs (cacheable by anyone); everything else, and
//! everything when no CDN is configured, gets a short-lived signed URL from the storage service.
//! A signed URL is reused while at least half of its lifetime is left, so repeated reads return
//! the same body (and ETag) and a page of photos costs storage calls only for new keys.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use photos_proto::storage::v1 as storage_pb;
use photos_proto::storage::v1::storage_service_client::StorageServiceClient;
use photos_runtime::client::Channel;

use crate::config::{SignedUrlKind, SourcesConfig};
use crate::error::GatewayError;

/// Signing calls in flight at once for one response.
const SIGN_CONCURRENCY: usize = 16;

#[derive(Clone)]
pub struct Sources {
    cdn_base_url: Option<Arc<str>>,
    kind: storage_pb::UrlKind,
    ttl_seconds: u32,
    /// How long a signed URL is handed out again: half its lifetime.
    reuse: Duration,
    signed: moka::sync::Cache<String, Signed>,
}

/// A signed URL and the moment it stops being handed out (its cache entry's expiry).
#[derive(Clone)]
struct Signed {
    url: Arc<str>,
    reuse_until: Instant,
}

/// Who may see an object: anyone (published album) or only the caller it was shown to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Public,
    Private,
}

/// The URLs of one response's objects, by key.
#[derive(Debug, Default)]
pub struct Urls {
    by_key: HashMap<String, Arc<str>>,
    reuse_until: Option<Instant>,
}

impl Urls {
    pub fn get(&self, key: &str) -> String {
        self.by_key
            .get(key)
            .map(|u| u.to_string())
            .unwrap_or_default()
    }

    /// Until when these same URLs would be handed out again: the earliest moment one of the
    /// signed URLs among them is due for re-signing. None: no signed URL (CDN URLs never change).
    pub fn reuse_until(&self) -> Option<Instant> {
        self.reuse_until
    }
}

impl Sources {
    pub fn new(config: &SourcesConfig) -> Self {
        Self {
            cdn_base_url: (!config.cdn_base_url.is_empty())
                .then(|| Arc::from(config.cdn_base_url.as_str())),
            kind: match config.signed_url_kind {
                SignedUrlKind::S3Presigned => storage_pb::UrlKind::S3Presigned,
                SignedUrlKind::CdnSigned => storage_pb::UrlKind::CdnSigned,
            },
            ttl_seconds: config.signed_url_ttl_seconds,
            reuse: reuse(config),
            signed: moka::sync::Cache::builder()
                .max_capacity(config.signed_url_cache_entries)
                .time_to_live(reuse(config))
                .build(),
        }
    }

    /// URLs for `wanted` (key, access) pairs; signs what is not cached, a few keys at a time.
    pub async fn urls(
        &self,
        storage: &StorageServiceClient<Channel>,
        wanted: &[(&str, Access)],
    ) -> Result<Urls, GatewayError> {
        let mut urls = HashMap::new();
        let mut reuse_until: Option<Instant> = None;
        let now = Instant::now();
        let mut to_sign = Vec::new();
        for &(key, access) in wanted {
            if key.is_empty() || urls.contains_key(key) {
                continue;
            }
            match (&self.cdn_base_url, access) {
                (Some(base), Access::Public) => {
                    urls.insert(
                        key.to_owned(),
                        Arc::from(format!("{base}/{}", encode_path(key))),
                    );
                }
                // moka may hand out an entry up to its expiry instant; the check keeps a URL's
                // reuse window exactly the half lifetime it was signed for.
                _ => match self.signed.get(key).filter(|s| s.reuse_until > now) {
                    Some(s) => {
                        reuse_until =
                            Some(reuse_until.map_or(s.reuse_until, |t| t.min(s.reuse_until)));
                        urls.insert(key.to_owned(), s.url);
                    }
                    None if !to_sign.iter().any(|k| k == key) => to_sign.push(key.to_owned()),
                    None => {}
                },
            }
        }
        // Owned futures only: a stream of futures borrowing from here trips rustc's
        // higher-ranked `Send` check in the axum handlers above.
        let (kind, expires_in_seconds) = (self.kind as i32, self.ttl_seconds);
        let signed: Vec<(String, Arc<str>)> = futures::stream::iter(to_sign)
            .map(|key: String| {
                let mut storage = storage.clone();
                async move {
                    let url = storage
                        .get_object_url(storage_pb::GetObjectUrlRequest {
                            key: key.clone(),
                            kind,
                            expires_in_seconds,
                        })
                        .await?
                        .into_inner()
                        .url;
                    Ok::<_, GatewayError>((key, Arc::from(url)))
                }
            })
            .buffer_unordered(SIGN_CONCURRENCY)
            .try_collect()
            .await?;
        if !signed.is_empty() {
            // From before the calls: never later than the moment storage signed them.
            let until = now + self.reuse;
            reuse_until = Some(reuse_until.map_or(until, |t| t.min(until)));
            for (key, url) in signed {
                let entry = Signed {
                    url: url.clone(),
                    reuse_until: until,
                };
                self.signed.insert(key.clone(), entry);
                urls.insert(key, url);
            }
        }
        Ok(Urls {
            by_key: urls,
            reuse_until,
        })
    }
}

fn reuse(config: &SourcesConfig) -> Duration {
    Duration::from_secs(u64::from(config.signed_url_ttl_seconds / 2))
}

/// Percent-encodes an object key for a URL path, keeping `/` as the separator.
fn encode_path(key: &str) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_percent_encoded_except_separators() {
        assert_eq!(
            encode_path("variants/ab/c d+e/x.webp"),
            "variants/ab/c%20d%2Be/x.webp"
        );
    }
}
