//! The catalog's read-through cache: which reads are cached under which key and policy, and
//! which generation scopes each write bumps.
//!
//! Keys depend on generation scopes (see photos-cache): an album's detail and photo pages on
//! `album:{id}`; album list pages, the recent-photos feed and the stats on `albums`. Every
//! write bumps `album:{id}` for each album it touched plus `albums`, right after its commit
//! and before the call returns, and the cache library waits until every other replica has
//! applied the bump: so no read after a successful write returns stale data, here or on any
//! replica. Keys are resolved (generations read) before the loader's SQL runs, so a load that
//! raced a write is stored under the superseded generation, where nobody looks.

use std::future::Future;

use bytes::Bytes;
use photos_cache::{Cache, CacheConfig, CacheError, CacheKey, NamedCache, Policy, album_scope};
use serde::de::{DeserializeOwned, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::config::{CacheBackend, CacheSettings};
use crate::error::CatalogError;

/// How a read treats the cache.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Freshness {
    /// Answer from the cache; on a miss load once (per key and process) and fill.
    #[default]
    Cached,
    /// Recompute and refill (the `x-cache-refresh: 1` request flag, used by cache warming).
    Refresh,
}

/// A response in protobuf wire format: what the cache holds for a read, and what a hit sends
/// as it is (see `encoded`), decoding and encoding nothing.
#[derive(Clone, Debug, PartialEq)]
pub struct Encoded(pub Bytes);

impl Encoded {
    pub fn of(message: &impl prost::Message) -> Encoded {
        Encoded(Bytes::from(message.encode_to_vec()))
    }
}

/// As one byte string (postcard: length + the bytes, copied in one go).
impl Serialize for Encoded {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(&self.0)
    }
}

impl<'de> Deserialize<'de> for Encoded {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Raw;
        impl Visitor<'_> for Raw {
            type Value = Encoded;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an encoded protobuf message")
            }
            fn visit_bytes<E>(self, v: &[u8]) -> Result<Encoded, E> {
                Ok(Encoded(Bytes::copy_from_slice(v)))
            }
            fn visit_byte_buf<E>(self, v: Vec<u8>) -> Result<Encoded, E> {
                Ok(Encoded(Bytes::from(v)))
            }
        }
        d.deserialize_byte_buf(Raw)
    }
}

/// Key families (the unit of the cache's stats and of pattern invalidation).
pub mod family {
    pub const ALBUM_LIST: &str = "album-list";
    pub const ALBUM: &str = "album";
    pub const PHOTO_PAGE: &str = "photo-page";
    pub const RECENT: &str = "recent-photos";
    pub const PHOTO: &str = "photo";
    /// A photo's album, to find the generation its detail depends on.
    pub const PHOTO_ALBUM: &str = "photo-album";
    pub const STATS: &str = "stats";
}

/// The catalog's handle on the shared cache; `None` when caching is off.
#[derive(Clone, Default)]
pub struct CatalogCache {
    cache: Option<Cache>,
    named: Option<NamedCache>,
}

impl std::fmt::Debug for CatalogCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CatalogCache")
            .field("backend", &self.cache.as_ref().map(|c| c.backend_kind()))
            .finish()
    }
}

/// The cache library's settings for the configured backend (`None`: no caching).
pub fn cache_config(settings: &CacheSettings) -> Option<CacheConfig> {
    let base = CacheConfig {
        prefix: settings.prefix.clone(),
        max_connections: settings.max_connections,
        sync_timeout: std::time::Duration::from_millis(settings.sync_timeout_ms),
        l1_max_bytes: settings.l1_max_bytes,
        ..CacheConfig::default()
    };
    match settings.backend {
        CacheBackend::None => None,
        CacheBackend::Memory => Some(base),
        CacheBackend::Redis => Some(CacheConfig {
            redis_url: settings.url.expose().to_owned(),
            ..base
        }),
        CacheBackend::Cluster => Some(CacheConfig {
            cluster_nodes: settings
                .cluster_nodes
                .iter()
                .map(|n| n.expose().to_owned())
                .collect(),
            ..base
        }),
    }
}

impl CatalogCache {
    /// Connects the configured backend. A standalone Redis that is down is not an error (the
    /// cache falls back to its in-process tier and recovers); a cluster must answer once.
    pub async fn connect(settings: &CacheSettings) -> Result<CatalogCache, CacheError> {
        match cache_config(settings) {
            None => Ok(CatalogCache::default()),
            Some(config) => Ok(CatalogCache::new(Cache::connect(config).await?)),
        }
    }

    pub fn new(cache: Cache) -> CatalogCache {
        CatalogCache {
            named: Some(cache.named(photos_cache::CacheName::Default)),
            cache: Some(cache),
        }
    }

    pub fn cache(&self) -> Option<&Cache> {
        self.cache.as_ref()
    }

    pub(crate) fn named(&self) -> Option<&NamedCache> {
        self.named.as_ref()
    }

    /// Read-through: `key` names the entry, `load` computes it (its errors are returned and
    /// nothing is cached).
    pub(crate) async fn read<T, F, Fut>(
        &self,
        key: impl FnOnce(&NamedCache) -> CacheKey,
        policy: Policy,
        freshness: Freshness,
        load: F,
    ) -> Result<T, CatalogError>
    where
        T: Serialize + DeserializeOwned,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, CatalogError>>,
    {
        let Some(named) = &self.named else {
            return load().await;
        };
        let key = key(named);
        let mut loaded = false;
        let load = || {
            loaded = true;
            load()
        };
        let result = match freshness {
            Freshness::Cached => named.get_or_load(&key, policy, load).await,
            Freshness::Refresh => named.refresh(&key, policy, load).await,
        };
        // Into the call's sample for the performance report. A caller that waited on another
        // caller's load counts as a hit: it ran nothing.
        photos_runtime::tracking::cache_lookup(!loaded);
        result
    }

    /// Lets the runtime's reporter send this process's cache counters (per cache name) to the
    /// metrics service with every report.
    pub fn report_to(&self, reporter: &photos_runtime::tracking::Reporter) {
        let Some(cache) = self.cache.clone() else {
            return;
        };
        reporter.set_cache_source(move || {
            cache
                .stats()
                .into_iter()
                .map(|s| {
                    let counters = photos_runtime::tracking::CacheCounters {
                        hits: s.hits,
                        misses: s.misses,
                        errors: s.errors,
                        fallbacks: s.fallbacks,
                    };
                    (s.cache, counters)
                })
                .collect()
        });
    }

    /// Bumps `album:{id}` for every album id given, and `albums` (every list page, the recent
    /// feed, the stats). Returns once every replica has applied it.
    pub(crate) async fn albums_changed(&self, album_ids: impl IntoIterator<Item = i64>) {
        let Some(cache) = &self.cache else { return };
        let mut scopes: Vec<String> = album_ids
            .into_iter()
            .map(|id| album_scope(&id.to_string()))
            .collect();
        scopes.push(photos_cache::keys::ALBUM_LISTS_SCOPE.to_owned());
        cache.invalidate_scopes(&scopes).await;
    }
}
