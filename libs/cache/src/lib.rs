//! photos-cache: a two-tier cache for the photos services.
//!
//! - [`Cache`] (one per process) holds an in-process L1 (moka) in front of a remote backend:
//!   Redis standalone (pooled), Redis Cluster, or nothing but memory (the embedded default).
//! - [`NamedCache`] (`default`, `thumbnails`, `sessions`) offers typed `get`/`set`, and
//!   `get_or_load` with single-flight per key and early refresh of hot keys.
//! - Keys come from one [`KeyBuilder`]; keys may depend on generation scopes (an album, the
//!   album lists) so a cascade is one INCR.
//! - While Redis is down every call is answered from L1 (a breaker avoids paying a timeout per
//!   call); invalidations are queued and replayed on recovery, and L1 is resynchronised, so
//!   nothing stale is served afterwards.

pub mod backend;
mod cache;
mod codec;
mod config;
mod error;
pub mod keys;
pub mod policy;
mod stats;

pub use backend::{Backend, BackendInfo, BackendKind, PatternUsage};
pub use cache::{Cache, NamedCache, Removed};
pub use codec::Codec;
pub use config::CacheConfig;
pub use error::CacheError;
pub use keys::{CacheKey, KeyBuilder, album_scope};
pub use policy::{CacheName, Policy};
pub use stats::StatsSnapshot;

/// Request metadata asking a service to recompute a cached read and refill the cache (value
/// `1`), as cache warming does.
pub const REFRESH_METADATA: &str = "x-cache-refresh";
