//! The remote tier behind one trait: in-process memory, Redis standalone, Redis Cluster.

mod cluster;
mod memory;
mod standalone;

use std::time::Duration;

use bytes::Bytes;
use futures::stream::BoxStream;

pub use cluster::ClusterBackend;
pub use memory::MemoryBackend;
pub use standalone::StandaloneBackend;

use crate::CacheError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendKind {
    Memory,
    Redis,
    RedisCluster,
}

impl BackendKind {
    pub fn as_str(self) -> &'static str {
        match self {
            BackendKind::Memory => "memory",
            BackendKind::Redis => "redis",
            BackendKind::RedisCluster => "redis-cluster",
        }
    }
}

/// Keys matching a pattern and the memory they take, as the server reports it (Redis
/// `MEMORY USAGE`, measured on an even sample of at most `samples` keys and scaled to all).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PatternUsage {
    pub keys: u64,
    pub memory_bytes: u64,
}

/// An even spread of at most `n` of `keys`.
pub(crate) fn sample(keys: &[String], n: usize) -> Vec<&String> {
    let step = keys.len().div_ceil(n.max(1)).max(1);
    keys.iter().step_by(step).collect()
}

/// Scales the memory of `sampled` keys to `total` keys.
pub(crate) fn estimate(total: usize, sampled: usize, sampled_bytes: u64) -> PatternUsage {
    let memory_bytes = if sampled == 0 {
        0
    } else {
        (sampled_bytes as u128 * total as u128 / sampled as u128) as u64
    };
    PatternUsage {
        keys: total as u64,
        memory_bytes,
    }
}

/// What the server reports about itself (summed over masters in a cluster).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BackendInfo {
    pub keys: u64,
    pub memory_bytes: u64,
}

/// The remote tier. Every method may fail when the server is unreachable; the cache decides
/// what to do about it (fallback, breaker).
#[async_trait::async_trait]
pub trait Backend: Send + Sync + 'static {
    fn kind(&self) -> BackendKind;
    async fn get(&self, key: &str) -> Result<Option<Bytes>, CacheError>;
    async fn set(&self, key: &str, value: Bytes, ttl: Duration) -> Result<(), CacheError>;
    /// Removes keys; returns how many existed.
    async fn delete(&self, keys: &[String]) -> Result<u64, CacheError>;
    /// Atomically stores `value` for `ttl` unless `key` holds a value; returns the value it
    /// holds (`None`: stored). One round trip (a script on Redis).
    async fn set_if_absent(
        &self,
        key: &str,
        value: Bytes,
        ttl: Duration,
    ) -> Result<Option<Bytes>, CacheError>;
    /// Atomically removes `key` if it holds exactly `expected`; returns whether it did.
    async fn delete_if_equal(&self, key: &str, expected: Bytes) -> Result<bool, CacheError>;
    /// Removes every key matching a glob (SCAN on every master, UNLINK in batches).
    async fn delete_pattern(&self, pattern: &str) -> Result<u64, CacheError>;
    /// Counts keys matching a glob (SCAN on every master) and the memory they use, measured
    /// on at most `samples` of them.
    async fn pattern_usage(
        &self,
        pattern: &str,
        samples: usize,
    ) -> Result<PatternUsage, CacheError>;
    /// Reads a counter (absent = 0).
    async fn get_counter(&self, key: &str) -> Result<u64, CacheError>;
    /// Atomically increments a counter, returning the new value.
    async fn incr(&self, key: &str, by: u64) -> Result<u64, CacheError>;
    /// Adds to fields of a hash (cross-process stats).
    async fn hincr(&self, key: &str, fields: &[(&str, u64)]) -> Result<(), CacheError>;
    async fn hgetall(&self, key: &str) -> Result<Vec<(String, u64)>, CacheError>;
    async fn publish(&self, channel: &str, message: String) -> Result<(), CacheError>;
    /// Adds `member` to the set `set` and (re)arms its liveness key `{set}:{member}` for
    /// `ttl` (a peer's heartbeat). Liveness rides on the server's expiry, so no two processes'
    /// clocks are ever compared.
    async fn touch_member(&self, set: &str, member: &str, ttl: Duration) -> Result<(), CacheError>;
    /// Members of `set` whose liveness key has not expired; the expired ones are removed.
    async fn live_members(&self, set: &str) -> Result<Vec<String>, CacheError>;
    async fn remove_member(&self, set: &str, member: &str) -> Result<(), CacheError>;
    /// Subscribes to a channel; `None` when the backend is in-process (nothing to hear).
    /// The stream ends when the connection drops.
    async fn subscribe(
        &self,
        channel: &str,
    ) -> Result<Option<BoxStream<'static, String>>, CacheError>;
    /// A cheap round-trip that proves the data path works.
    async fn ping(&self) -> Result<(), CacheError>;
    async fn info(&self) -> Result<BackendInfo, CacheError>;
}

/// `set_if_absent` on Redis: GET then SET PX in one script (SET NX GET needs Redis 7).
pub(crate) const SET_IF_ABSENT: &str = "local v = redis.call('GET', KEYS[1]) \
    if v then return v end \
    redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) return false";

/// `delete_if_equal` on Redis.
pub(crate) const DELETE_IF_EQUAL: &str = "if redis.call('GET', KEYS[1]) == ARGV[1] then \
    return redis.call('DEL', KEYS[1]) end return 0";

/// The EVAL of one of the scripts above on one key.
pub(crate) fn eval(script: &str, key: &str, args: &[&[u8]]) -> redis::Cmd {
    let mut cmd = redis::cmd("EVAL");
    cmd.arg(script).arg(1).arg(key);
    for a in args {
        cmd.arg(*a);
    }
    cmd
}

/// Parses `used_memory:` from INFO memory.
pub(crate) fn used_memory(info: &str) -> u64 {
    info.lines()
        .find_map(|l| l.strip_prefix("used_memory:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

/// The liveness key of one member of a peer set (same hash slot as the set when the set's
/// name carries a hash tag).
pub(crate) fn member_key(set: &str, member: &str) -> String {
    format!("{set}:{member}")
}

/// Splits members by whether their liveness key (in the same order) is still there.
pub(crate) fn split_live(members: Vec<String>, alive: &[Option<u8>]) -> (Vec<String>, Vec<String>) {
    let mut live = Vec::new();
    let mut dead = Vec::new();
    for (m, a) in members.into_iter().zip(alive) {
        if a.is_some() {
            live.push(m)
        } else {
            dead.push(m)
        }
    }
    (live, dead)
}

/// Keys per UNLINK / SCAN COUNT batch.
pub(crate) const BATCH: usize = 500;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_spread_evenly_and_scale_to_the_whole() {
        let keys: Vec<String> = (0..10).map(|i| i.to_string()).collect();
        assert_eq!(sample(&keys, 100).len(), 10, "all of them when few");
        let picked: Vec<&str> = sample(&keys, 3).iter().map(|s| s.as_str()).collect();
        assert_eq!(picked, ["0", "4", "8"]);
        assert_eq!(
            estimate(10, 3, 300),
            PatternUsage {
                keys: 10,
                memory_bytes: 1000
            }
        );
        assert_eq!(estimate(0, 0, 0), PatternUsage::default());
    }
}
