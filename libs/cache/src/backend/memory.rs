use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::stream::BoxStream;

use super::{Backend, BackendInfo, BackendKind, PatternUsage};
use crate::CacheError;
use crate::keys::glob_match;

#[derive(Clone)]
struct Entry {
    value: Bytes,
    expires: Instant,
}

struct PerEntryTtl;

impl moka::Expiry<String, Entry> for PerEntryTtl {
    fn expire_after_create(&self, _: &String, v: &Entry, now: Instant) -> Option<Duration> {
        Some(v.expires.saturating_duration_since(now))
    }
}

/// The in-process backend (the embedded default): a bounded moka cache. Used alone it is the
/// whole cache; it is also the L1 of the two-tier setup.
pub struct MemoryBackend {
    data: moka::future::Cache<String, Entry>,
    counters: Mutex<HashMap<String, u64>>,
    hashes: Mutex<HashMap<String, HashMap<String, u64>>>,
}

impl MemoryBackend {
    /// Holds up to `max_bytes` of keys and values.
    pub fn new(max_bytes: u64) -> MemoryBackend {
        MemoryBackend {
            data: moka::future::Cache::builder()
                .max_capacity(max_bytes)
                .weigher(|k: &String, e: &Entry| crate::cache::weight(k, &e.value))
                .expire_after(PerEntryTtl)
                .build(),
            counters: Mutex::new(HashMap::new()),
            hashes: Mutex::new(HashMap::new()),
        }
    }

    fn matching(&self, pattern: &str) -> Vec<String> {
        self.data
            .iter()
            .filter(|(k, e)| e.expires > Instant::now() && glob_match(pattern, k))
            .map(|(k, _)| (*k).clone())
            .collect()
    }
}

#[async_trait::async_trait]
impl Backend for MemoryBackend {
    fn kind(&self) -> BackendKind {
        BackendKind::Memory
    }

    async fn get(&self, key: &str) -> Result<Option<Bytes>, CacheError> {
        Ok(self
            .data
            .get(key)
            .await
            .filter(|e| e.expires > Instant::now())
            .map(|e| e.value))
    }

    async fn set(&self, key: &str, value: Bytes, ttl: Duration) -> Result<(), CacheError> {
        self.data
            .insert(
                key.to_owned(),
                Entry {
                    value,
                    expires: Instant::now() + ttl,
                },
            )
            .await;
        Ok(())
    }

    async fn delete(&self, keys: &[String]) -> Result<u64, CacheError> {
        let mut n = 0;
        for k in keys {
            if self
                .data
                .remove(k)
                .await
                .is_some_and(|e| e.expires > Instant::now())
            {
                n += 1;
            }
        }
        Ok(n)
    }

    async fn set_if_absent(
        &self,
        key: &str,
        value: Bytes,
        ttl: Duration,
    ) -> Result<Option<Bytes>, CacheError> {
        use moka::ops::compute::Op;
        let mut held = None;
        self.data
            .entry(key.to_owned())
            .and_compute_with(|current| {
                let now = Instant::now();
                let op = match current.map(|e| e.into_value()) {
                    Some(e) if e.expires > now => {
                        held = Some(e.value);
                        Op::Nop
                    }
                    _ => Op::Put(Entry {
                        value,
                        expires: now + ttl,
                    }),
                };
                std::future::ready(op)
            })
            .await;
        Ok(held)
    }

    async fn delete_if_equal(&self, key: &str, expected: Bytes) -> Result<bool, CacheError> {
        use moka::ops::compute::Op;
        let mut removed = false;
        self.data
            .entry(key.to_owned())
            .and_compute_with(|current| {
                let op = match current.map(|e| e.into_value()) {
                    Some(e) if e.expires > Instant::now() && e.value == expected => {
                        removed = true;
                        Op::Remove
                    }
                    _ => Op::Nop,
                };
                std::future::ready(op)
            })
            .await;
        Ok(removed)
    }

    async fn delete_pattern(&self, pattern: &str) -> Result<u64, CacheError> {
        let keys = self.matching(pattern);
        self.delete(&keys).await
    }

    /// Exact: the bytes of keys and values held (what `l1_max_bytes` bounds).
    async fn pattern_usage(&self, pattern: &str, _: usize) -> Result<PatternUsage, CacheError> {
        let now = Instant::now();
        let mut usage = PatternUsage::default();
        for (k, e) in self.data.iter() {
            if e.expires > now && glob_match(pattern, &k) {
                usage.keys += 1;
                usage.memory_bytes += u64::from(crate::cache::weight(&k, &e.value));
            }
        }
        Ok(usage)
    }

    async fn get_counter(&self, key: &str) -> Result<u64, CacheError> {
        Ok(*self
            .counters
            .lock()
            .expect("counter lock")
            .get(key)
            .unwrap_or(&0))
    }

    async fn incr(&self, key: &str, by: u64) -> Result<u64, CacheError> {
        let mut counters = self.counters.lock().expect("counter lock");
        let v = counters.entry(key.to_owned()).or_insert(0);
        *v += by;
        Ok(*v)
    }

    async fn hincr(&self, key: &str, fields: &[(&str, u64)]) -> Result<(), CacheError> {
        let mut hashes = self.hashes.lock().expect("hash lock");
        let h = hashes.entry(key.to_owned()).or_default();
        for (f, by) in fields {
            *h.entry((*f).to_owned()).or_insert(0) += by;
        }
        Ok(())
    }

    async fn hgetall(&self, key: &str) -> Result<Vec<(String, u64)>, CacheError> {
        Ok(self
            .hashes
            .lock()
            .expect("hash lock")
            .get(key)
            .map(|h| h.iter().map(|(k, v)| (k.clone(), *v)).collect())
            .unwrap_or_default())
    }

    async fn publish(&self, _: &str, _: String) -> Result<(), CacheError> {
        Ok(())
    }

    // One process, nothing to hear from: no peers to wait for.
    async fn touch_member(&self, _: &str, _: &str, _: Duration) -> Result<(), CacheError> {
        Ok(())
    }

    async fn live_members(&self, _: &str) -> Result<Vec<String>, CacheError> {
        Ok(Vec::new())
    }

    async fn remove_member(&self, _: &str, _: &str) -> Result<(), CacheError> {
        Ok(())
    }

    async fn subscribe(&self, _: &str) -> Result<Option<BoxStream<'static, String>>, CacheError> {
        Ok(None)
    }

    async fn ping(&self) -> Result<(), CacheError> {
        Ok(())
    }

    async fn info(&self) -> Result<BackendInfo, CacheError> {
        self.data.run_pending_tasks().await;
        Ok(BackendInfo {
            keys: self.data.entry_count(),
            memory_bytes: self
                .data
                .iter()
                .map(|(k, e)| (k.len() + e.value.len()) as u64)
                .sum(),
        })
    }
}
