use std::time::Duration;

use crate::codec::Codec;

/// Cache settings. Empty `redis_url` and `cluster_nodes` select the in-process backend.
#[derive(Debug, Clone)]
pub struct CacheConfig {
    /// `redis://[:password@]host:port/db` of a standalone server.
    pub redis_url: String,
    /// Seed nodes of a Redis Cluster; the rest are discovered.
    pub cluster_nodes: Vec<String>,
    /// First key segment; tests use a unique one so they can share a server.
    pub prefix: String,
    /// Bump when a cached type's shape changes: old entries are then never read.
    pub version: u32,
    pub max_key_len: usize,
    /// Standalone pool size.
    pub max_connections: usize,
    /// Per-command budget before a call counts as a failure.
    pub op_timeout: Duration,
    /// Consecutive failures that open the breaker.
    pub breaker_failures: u32,
    /// How long the breaker stays open before a recovery probe.
    pub breaker_cooldown: Duration,
    /// Bytes (keys and values) the in-process tier holds: the L1, or the whole in-process
    /// backend. Values are held uncompressed there, so a hit decompresses nothing.
    pub l1_max_bytes: u64,
    /// Upper bound on an L1 entry's life (coherence is by pub/sub; this bounds the damage of a
    /// lost message).
    pub l1_ttl: Duration,
    /// Invalidations queued while Redis is down; past this, the global generation is bumped
    /// on recovery instead (everything is orphaned, nothing stale).
    pub replay_limit: usize,
    /// How often per-process stats are added to the cross-process totals in Redis.
    pub stats_flush_interval: Duration,
    /// How long an invalidation waits for every live peer to confirm it has applied it to
    /// its L1 (see the crate docs); a peer that does not answer in time is logged and skipped.
    pub sync_timeout: Duration,
    /// How often a subscribed process renews its entry in the peer set; an entry not renewed
    /// for three periods is no longer waited for.
    pub peer_heartbeat: Duration,
    pub codec: Codec,
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            redis_url: String::new(),
            cluster_nodes: Vec::new(),
            prefix: "photos".into(),
            version: 1,
            max_key_len: 200,
            max_connections: 50,
            op_timeout: Duration::from_millis(250),
            breaker_failures: 3,
            breaker_cooldown: Duration::from_millis(500),
            l1_max_bytes: 256 * 1024 * 1024,
            l1_ttl: Duration::from_secs(60),
            replay_limit: 10_000,
            stats_flush_interval: Duration::from_secs(5),
            sync_timeout: Duration::from_millis(250),
            peer_heartbeat: Duration::from_secs(1),
            codec: Codec::default(),
        }
    }
}

impl CacheConfig {
    pub fn redis(url: impl Into<String>) -> Self {
        Self {
            redis_url: url.into(),
            ..Self::default()
        }
    }

    pub fn cluster(nodes: Vec<String>) -> Self {
        Self {
            cluster_nodes: nodes,
            ..Self::default()
        }
    }

    pub fn with_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }
}
