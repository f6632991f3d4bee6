use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use crate::policy::CacheName;

#[derive(Default)]
pub(crate) struct Counters {
    pub hits: AtomicU64,
    pub l1_hits: AtomicU64,
    pub misses: AtomicU64,
    pub errors: AtomicU64,
    pub fallbacks: AtomicU64,
    pub loads: AtomicU64,
}

impl Counters {
    pub fn inc(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// A snapshot of counters for one cache name (and optionally one key family).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StatsSnapshot {
    pub cache: String,
    /// Empty for the per-cache-name total.
    pub family: String,
    pub hits: u64,
    /// Hits answered by the in-process tier (no network hop).
    pub l1_hits: u64,
    pub misses: u64,
    pub errors: u64,
    pub fallbacks: u64,
    /// Loader runs.
    pub loads: u64,
}

impl StatsSnapshot {
    pub fn hit_rate(&self) -> f64 {
        let total = self.hits + self.misses;
        if total == 0 {
            0.0
        } else {
            self.hits as f64 / total as f64
        }
    }

    pub(crate) fn fields(&self) -> [(&'static str, u64); 6] {
        [
            ("hits", self.hits),
            ("l1_hits", self.l1_hits),
            ("misses", self.misses),
            ("errors", self.errors),
            ("fallbacks", self.fallbacks),
            ("loads", self.loads),
        ]
    }

    pub(crate) fn set_field(&mut self, name: &str, v: u64) {
        match name {
            "hits" => self.hits = v,
            "l1_hits" => self.l1_hits = v,
            "misses" => self.misses = v,
            "errors" => self.errors = v,
            "fallbacks" => self.fallbacks = v,
            "loads" => self.loads = v,
            _ => {}
        }
    }

    fn add(&mut self, o: &StatsSnapshot) {
        self.hits += o.hits;
        self.l1_hits += o.l1_hits;
        self.misses += o.misses;
        self.errors += o.errors;
        self.fallbacks += o.fallbacks;
        self.loads += o.loads;
    }

    pub(crate) fn minus(&self, o: &StatsSnapshot) -> StatsSnapshot {
        StatsSnapshot {
            cache: self.cache.clone(),
            family: self.family.clone(),
            hits: self.hits - o.hits,
            l1_hits: self.l1_hits - o.l1_hits,
            misses: self.misses - o.misses,
            errors: self.errors - o.errors,
            fallbacks: self.fallbacks - o.fallbacks,
            loads: self.loads - o.loads,
        }
    }
}

/// Per (cache name, key family) counters of this process.
#[derive(Default)]
pub(crate) struct Stats {
    by_family: RwLock<HashMap<(CacheName, &'static str), Arc<Counters>>>,
}

impl Stats {
    pub fn counters(&self, cache: CacheName, family: &'static str) -> Arc<Counters> {
        if let Some(c) = self
            .by_family
            .read()
            .expect("stats lock")
            .get(&(cache, family))
        {
            return c.clone();
        }
        self.by_family
            .write()
            .expect("stats lock")
            .entry((cache, family))
            .or_default()
            .clone()
    }

    /// Per family, sorted by cache name then family.
    pub fn families(&self) -> Vec<StatsSnapshot> {
        let map = self.by_family.read().expect("stats lock");
        let mut out: Vec<StatsSnapshot> = map
            .iter()
            .map(|((cache, family), c)| StatsSnapshot {
                cache: cache.as_str().into(),
                family: (*family).into(),
                hits: c.hits.load(Ordering::Relaxed),
                l1_hits: c.l1_hits.load(Ordering::Relaxed),
                misses: c.misses.load(Ordering::Relaxed),
                errors: c.errors.load(Ordering::Relaxed),
                fallbacks: c.fallbacks.load(Ordering::Relaxed),
                loads: c.loads.load(Ordering::Relaxed),
            })
            .collect();
        out.sort_by(|a, b| (&a.cache, &a.family).cmp(&(&b.cache, &b.family)));
        out
    }

    /// One total per cache name (every name listed, even if unused).
    pub fn per_cache(&self) -> Vec<StatsSnapshot> {
        CacheName::ALL
            .iter()
            .map(|name| {
                let mut total = StatsSnapshot {
                    cache: name.as_str().into(),
                    ..Default::default()
                };
                for f in self.families().iter().filter(|f| f.cache == name.as_str()) {
                    total.add(f);
                }
                total
            })
            .collect()
    }
}
