//! The two-tier cache: an in-process L1 (moka) in front of a remote backend, coherent through
//! pub/sub invalidation messages, with a breaker, a replay queue for invalidations issued while
//! the remote is down, generation scopes for O(1) cascades, and per-key single-flight.

use std::collections::{HashMap, HashSet, VecDeque};
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use futures::StreamExt;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::task::JoinHandle;

use crate::backend::{
    Backend, BackendInfo, BackendKind, ClusterBackend, MemoryBackend, PatternUsage,
    StandaloneBackend,
};
use crate::config::CacheConfig;
use crate::keys::{ALBUM_LISTS_SCOPE, CacheKey, KeyBuilder, KeySpace, album_scope, glob_match};
use crate::policy::{CacheName, Policy};
use crate::stats::{Counters, Stats, StatsSnapshot};
use crate::{CacheError, Codec};

/// Generations made up locally while the remote is down carry this bit, so they can never
/// equal a generation the remote handed out before the outage.
const LOCAL_GENERATION: u64 = 1 << 63;
const HEADER: usize = 8;
/// Generation scopes a process keeps in memory (each a short string and a u64).
const GENERATIONS_HELD: u64 = 100_000;
/// Keys whose memory `Cache::usage` measures (the rest is extrapolated).
pub const USAGE_SAMPLES: usize = 1_000;

/// An in-process entry's weight against `l1_max_bytes`.
pub(crate) fn weight(key: &str, value: &[u8]) -> u32 {
    u32::try_from(key.len() + value.len()).unwrap_or(u32::MAX)
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Stored bytes: 8 bytes of absolute expiry (unix ms, LE) then the codec's bytes. The expiry
/// lets any reader (in any process) decide on early refresh. In process (L1, the in-process
/// backend) the codec's bytes are never compressed, so a hit only decodes; they are
/// compressed on their way to Redis (above the threshold) and decompressed once on the way
/// back, into L1.
#[derive(Clone)]
struct Envelope(Bytes);

impl Envelope {
    fn new(
        codec: &Codec,
        value: &(impl Serialize + ?Sized),
        ttl: Duration,
    ) -> Result<Self, CacheError> {
        let mut buf = Vec::with_capacity(64);
        buf.extend_from_slice(&(now_ms() + ttl.as_millis() as u64).to_le_bytes());
        codec.encode_raw_into(value, &mut buf)?;
        Ok(Envelope(Bytes::from(buf)))
    }

    /// What a remote server stores: compressed above the codec's threshold.
    fn to_wire(&self, codec: &Codec) -> Result<Bytes, CacheError> {
        match codec.compress(self.payload())? {
            Some(compressed) => {
                let mut buf = Vec::with_capacity(HEADER + compressed.len());
                buf.extend_from_slice(&self.0[..HEADER]);
                buf.extend_from_slice(&compressed);
                Ok(Bytes::from(buf))
            }
            None => Ok(self.0.clone()),
        }
    }

    /// An entry read from a remote server, decompressed.
    fn from_wire(bytes: Bytes, codec: &Codec) -> Result<Option<Envelope>, CacheError> {
        if bytes.len() <= HEADER {
            return Ok(None);
        }
        match codec.decompress(&bytes[HEADER..])? {
            Some(raw) => {
                let mut buf = Vec::with_capacity(HEADER + raw.len());
                buf.extend_from_slice(&bytes[..HEADER]);
                buf.extend_from_slice(&raw);
                Ok(Some(Envelope(Bytes::from(buf))))
            }
            None => Ok(Some(Envelope(bytes))),
        }
    }

    fn expires_ms(&self) -> u64 {
        let mut b = [0u8; HEADER];
        b.copy_from_slice(&self.0[..HEADER]);
        u64::from_le_bytes(b)
    }

    fn remaining(&self) -> Duration {
        Duration::from_millis(self.expires_ms().saturating_sub(now_ms()))
    }

    fn payload(&self) -> &[u8] {
        &self.0[HEADER..]
    }
}

#[derive(Clone)]
struct L1Entry {
    envelope: Envelope,
    expires: Instant,
}

struct L1Expiry;

impl moka::Expiry<String, L1Entry> for L1Expiry {
    fn expire_after_create(&self, _: &String, v: &L1Entry, now: Instant) -> Option<Duration> {
        Some(v.expires.saturating_duration_since(now))
    }
}

/// Invalidations that could not reach the remote; replayed on recovery.
#[derive(Debug, Clone, PartialEq)]
enum Pending {
    Key(String),
    Pattern(String),
    Scope(String),
}

#[derive(Default)]
struct PendingQueue {
    items: VecDeque<Pending>,
    /// The queue overflowed: bump the global generation on recovery instead.
    overflowed: bool,
}

/// An invalidation waiting for its peers' confirmations.
struct Waiter {
    remaining: HashSet<String>,
    done: Option<tokio::sync::oneshot::Sender<()>>,
}

/// Consecutive-failure breaker. Open = every call skips the remote at once (no timeout paid);
/// the recovery task probes, replays, then closes it.
struct Breaker {
    open: AtomicBool,
    failures: AtomicU32,
    threshold: u32,
    opened: Arc<tokio::sync::Notify>,
}

impl Breaker {
    fn is_open(&self) -> bool {
        self.open.load(Ordering::Acquire)
    }

    fn success(&self) {
        self.failures.store(0, Ordering::Relaxed);
    }

    fn failure(&self) {
        if self.failures.fetch_add(1, Ordering::AcqRel) + 1 >= self.threshold
            && !self.open.swap(true, Ordering::AcqRel)
        {
            tracing::warn!("cache backend unreachable; serving from the in-process tier");
            self.opened.notify_one();
        }
    }

    fn close(&self) {
        self.failures.store(0, Ordering::Relaxed);
        self.open.store(false, Ordering::Release);
    }
}

struct Inner {
    origin: String,
    config: CacheConfig,
    space: KeySpace,
    remote: Arc<dyn Backend>,
    /// None with the in-process backend (it already is in-process).
    l1: Option<moka::future::Cache<String, L1Entry>>,
    gens: moka::future::Cache<String, u64>,
    /// Bumped whenever `gens` is dropped wholesale, so a generation fetched before that is
    /// not cached after it.
    gens_epoch: AtomicU64,
    global: AtomicU64,
    local_gen: AtomicU64,
    breaker: Breaker,
    /// The invalidation subscription is live, so L1 entries are trustworthy.
    subscribed: AtomicBool,
    pending: tokio::sync::Mutex<PendingQueue>,
    flights: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    sync_seq: AtomicU64,
    waiters: Mutex<HashMap<u64, Waiter>>,
    sync_timeouts: AtomicU64,
    stats: Stats,
    flushed: Mutex<HashMap<(String, String), StatsSnapshot>>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        for t in self.tasks.lock().expect("tasks lock").drain(..) {
            t.abort();
        }
        // Leave the peer set now rather than make writers wait for this process until its
        // liveness key expires. Best effort: there may be no runtime left to run it on.
        if self.l1.is_some()
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            let remote = self.remote.clone();
            let (set, origin) = (self.space.peers(), self.origin.clone());
            let timeout = self.config.op_timeout;
            runtime.spawn(async move {
                let _ = tokio::time::timeout(timeout, remote.remove_member(&set, &origin)).await;
            });
        }
    }
}

/// One per process (cheap to clone). See the crate docs for the model.
#[derive(Clone)]
pub struct Cache {
    inner: Arc<Inner>,
}

/// A handle on one named cache.
#[derive(Clone)]
pub struct NamedCache {
    cache: Cache,
    name: CacheName,
}

/// What an invalidation removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Removed {
    /// Keys deleted from the remote tier (0 while it is down: the deletion is queued).
    pub keys: u64,
    /// Generation scopes bumped.
    pub scopes: u64,
}

impl Cache {
    /// Picks the backend from the config: cluster nodes, else a Redis URL, else in-process.
    /// A standalone Redis that is down at start is not an error (the cache falls back and
    /// recovers); a cluster must answer once to learn its slot map.
    pub async fn connect(config: CacheConfig) -> Result<Cache, CacheError> {
        let remote: Arc<dyn Backend> = if !config.cluster_nodes.is_empty() {
            Arc::new(ClusterBackend::connect(&config.cluster_nodes, config.op_timeout).await?)
        } else if !config.redis_url.is_empty() {
            Arc::new(StandaloneBackend::new(
                &config.redis_url,
                config.max_connections,
                config.op_timeout,
            )?)
        } else {
            Arc::new(MemoryBackend::new(config.l1_max_bytes))
        };
        Ok(Cache::with_backend(config, remote).await)
    }

    /// The in-process cache (the embedded default).
    pub async fn memory() -> Cache {
        Cache::with_backend(
            CacheConfig::default(),
            Arc::new(MemoryBackend::new(CacheConfig::default().l1_max_bytes)),
        )
        .await
    }

    pub async fn with_backend(config: CacheConfig, remote: Arc<dyn Backend>) -> Cache {
        let in_process = remote.kind() == BackendKind::Memory;
        let l1 = (!in_process).then(|| {
            moka::future::Cache::builder()
                .max_capacity(config.l1_max_bytes)
                .weigher(|k: &String, v: &L1Entry| weight(k, &v.envelope.0))
                .expire_after(L1Expiry)
                .support_invalidation_closures()
                .build()
        });
        // In-process, this map is the only copy of the generations: it must not expire.
        let gens = if in_process {
            moka::future::Cache::builder().build()
        } else {
            moka::future::Cache::builder()
                .max_capacity(GENERATIONS_HELD)
                .time_to_live(config.l1_ttl)
                .build()
        };
        let space = KeySpace {
            prefix: config.prefix.clone(),
            version: config.version,
            max_key_len: config.max_key_len,
        };
        let inner = Arc::new(Inner {
            origin: format!("{:016x}", rand_u64()),
            breaker: Breaker {
                open: AtomicBool::new(false),
                failures: AtomicU32::new(0),
                threshold: config.breaker_failures.max(1),
                opened: Arc::new(tokio::sync::Notify::new()),
            },
            config,
            space,
            remote,
            l1,
            gens,
            gens_epoch: AtomicU64::new(0),
            global: AtomicU64::new(0),
            local_gen: AtomicU64::new(0),
            subscribed: AtomicBool::new(in_process),
            pending: tokio::sync::Mutex::new(PendingQueue::default()),
            flights: Mutex::new(HashMap::new()),
            sync_seq: AtomicU64::new(0),
            waiters: Mutex::new(HashMap::new()),
            sync_timeouts: AtomicU64::new(0),
            stats: Stats::default(),
            flushed: Mutex::new(HashMap::new()),
            tasks: Mutex::new(Vec::new()),
        });
        let cache = Cache { inner };
        if !in_process {
            match cache
                .remote_call(
                    cache
                        .inner
                        .remote
                        .get_counter(&cache.inner.space.global_generation()),
                )
                .await
            {
                Ok(g) => cache.inner.global.store(g, Ordering::Release),
                Err(_) => {
                    // Make sure the recovery task runs at once rather than after N failures.
                    for _ in 0..cache.inner.breaker.threshold {
                        cache.inner.breaker.failure();
                    }
                }
            }
            let weak = Arc::downgrade(&cache.inner);
            let tasks = vec![
                tokio::spawn(recovery_task(weak.clone())),
                tokio::spawn(subscriber_task(weak.clone())),
                tokio::spawn(heartbeat_task(weak.clone())),
                tokio::spawn(stats_task(weak)),
            ];
            cache.inner.tasks.lock().expect("tasks lock").extend(tasks);
        }
        cache
    }

    pub fn named(&self, name: CacheName) -> NamedCache {
        NamedCache {
            cache: self.clone(),
            name,
        }
    }

    pub fn backend_kind(&self) -> BackendKind {
        self.inner.remote.kind()
    }

    pub fn key_space(&self) -> &KeySpace {
        &self.inner.space
    }

    /// Whether the remote tier is in use (breaker closed).
    pub fn is_remote_healthy(&self) -> bool {
        !self.inner.breaker.is_open()
    }

    /// Whether this process's L1 is kept coherent (subscribed to invalidations).
    pub fn is_coherent(&self) -> bool {
        self.inner.subscribed.load(Ordering::Acquire)
    }

    /// Invalidations that returned before every live peer confirmed them (a peer died or was
    /// cut off from Redis).
    pub fn sync_timeouts(&self) -> u64 {
        self.inner.sync_timeouts.load(Ordering::Relaxed)
    }

    /// The processes an invalidation currently waits for (this one included when subscribed).
    pub async fn peers(&self) -> Result<Vec<String>, CacheError> {
        self.remote_call(self.inner.remote.live_members(&self.inner.space.peers()))
            .await
    }

    /// Invalidations waiting for the remote to come back.
    pub async fn pending_invalidations(&self) -> usize {
        self.inner.pending.lock().await.items.len()
    }

    /// This process's counters, one total per cache name.
    pub fn stats(&self) -> Vec<StatsSnapshot> {
        self.inner.stats.per_cache()
    }

    /// This process's counters per cache name and key family.
    pub fn family_stats(&self) -> Vec<StatsSnapshot> {
        self.inner.stats.families()
    }

    /// Totals across every process sharing the remote (each process adds its deltas every
    /// `stats_flush_interval`; this one flushes first).
    pub async fn aggregated_stats(&self) -> Result<Vec<StatsSnapshot>, CacheError> {
        self.flush_stats().await?;
        let mut out = Vec::new();
        for name in CacheName::ALL {
            let fields = self
                .remote_call(self.inner.remote.hgetall(&self.inner.space.stats(name)))
                .await?;
            let mut s = StatsSnapshot {
                cache: name.as_str().into(),
                ..Default::default()
            };
            for (f, v) in fields {
                s.set_field(&f, v);
            }
            out.push(s);
        }
        Ok(out)
    }

    /// Adds this process's counters since the last flush to the shared totals.
    pub async fn flush_stats(&self) -> Result<(), CacheError> {
        let families = self.inner.stats.families();
        let mut per_name: HashMap<String, StatsSnapshot> = HashMap::new();
        {
            let flushed = self.inner.flushed.lock().expect("flushed lock");
            for f in &families {
                let before = flushed
                    .get(&(f.cache.clone(), f.family.clone()))
                    .cloned()
                    .unwrap_or_default();
                let delta = f.minus(&before);
                let e = per_name.entry(f.cache.clone()).or_default();
                for (field, v) in delta.fields() {
                    add_field(e, field, v);
                }
            }
        }
        for (name, delta) in &per_name {
            let Some(name) = CacheName::parse(name) else {
                continue;
            };
            let fields: Vec<(&str, u64)> =
                delta.fields().into_iter().filter(|(_, v)| *v > 0).collect();
            if fields.is_empty() {
                continue;
            }
            self.remote_call(
                self.inner
                    .remote
                    .hincr(&self.inner.space.stats(name), &fields),
            )
            .await?;
        }
        let mut flushed = self.inner.flushed.lock().expect("flushed lock");
        for f in families {
            flushed.insert((f.cache.clone(), f.family.clone()), f);
        }
        Ok(())
    }

    /// Keys and memory as the remote reports them (summed over masters).
    pub async fn backend_info(&self) -> Result<BackendInfo, CacheError> {
        self.remote_call(self.inner.remote.info()).await
    }

    /// Keys of one cache name in the shared tier (SCAN on every master) and the memory they
    /// use (Redis `MEMORY USAGE` on an even sample of `USAGE_SAMPLES` keys, scaled).
    pub async fn usage(&self, name: CacheName) -> Result<PatternUsage, CacheError> {
        let pattern = self.inner.space.cache_pattern(name);
        // A full SCAN (and a thousand MEMORY USAGE) may take longer than one command.
        let call = self.inner.remote.pattern_usage(&pattern, USAGE_SAMPLES);
        match tokio::time::timeout(self.inner.config.op_timeout * 20, call).await {
            Ok(r) => r,
            Err(_) => Err(CacheError::Timeout(self.inner.config.op_timeout * 20)),
        }
    }

    /// Deletes physical keys everywhere. Never fails: while the remote is down the deletion is
    /// queued and replayed on recovery. Returns once every live peer has dropped the keys from
    /// its L1 (see [`Cache::invalidate_scopes`]).
    pub async fn invalidate_keys(&self, keys: &[String]) -> Removed {
        let removed = self.remove_keys(keys).await;
        self.sync_peers().await;
        removed
    }

    /// Deletes every physical key matching a Redis glob (SCAN + UNLINK on every master).
    pub async fn invalidate_pattern(&self, pattern: &str) -> Removed {
        self.invalidate_l1_pattern(pattern);
        let removed = match self
            .remote_call(self.inner.remote.delete_pattern(pattern))
            .await
        {
            Ok(n) => {
                self.publish('p', pattern).await;
                Removed { keys: n, scopes: 0 }
            }
            Err(_) => {
                self.queue([Pending::Pattern(pattern.to_owned())]).await;
                Removed::default()
            }
        };
        self.sync_peers().await;
        removed
    }

    /// Bumps a generation scope: every key depending on it is orphaned in O(1).
    pub async fn invalidate_scope(&self, scope: &str) -> Removed {
        self.invalidate_scopes(&[scope.to_owned()]).await
    }

    /// Bumps several generation scopes at once, then waits until every live peer (every
    /// process subscribed to this cache's invalidations) has confirmed it applied them, up to
    /// `sync_timeout`. So once this returns, no process serves a key depending on these
    /// scopes from before the call: a read anywhere after a write that invalidated is fresh.
    pub async fn invalidate_scopes(&self, scopes: &[String]) -> Removed {
        futures::future::join_all(scopes.iter().map(|s| self.bump_scope(s))).await;
        self.sync_peers().await;
        Removed {
            keys: 0,
            scopes: scopes.len() as u64,
        }
    }

    /// Cascade for one album: its detail, its photo pages and every album list page.
    pub async fn invalidate_album(&self, album_id: &str) -> Removed {
        self.invalidate_scopes(&[album_scope(album_id), ALBUM_LISTS_SCOPE.to_owned()])
            .await
    }

    /// Orphans everything (bumps the global generation).
    pub async fn invalidate_all(&self) -> Removed {
        self.bump_scope("_global").await;
        if let Some(g) = self.inner.gens.get("_global").await {
            self.inner.global.store(g, Ordering::Release);
        }
        if let Some(l1) = &self.inner.l1 {
            l1.invalidate_all();
        }
        self.sync_peers().await;
        Removed { keys: 0, scopes: 1 }
    }

    async fn remove_keys(&self, keys: &[String]) -> Removed {
        if let Some(l1) = &self.inner.l1 {
            for k in keys {
                l1.invalidate(k).await;
            }
        }
        match self.remote_call(self.inner.remote.delete(keys)).await {
            Ok(n) => {
                for k in keys {
                    self.publish('k', k).await;
                }
                Removed { keys: n, scopes: 0 }
            }
            Err(_) => {
                self.queue(keys.iter().cloned().map(Pending::Key)).await;
                Removed::default()
            }
        }
    }

    async fn bump_scope(&self, scope: &str) {
        let key = self.inner.space.generation(scope);
        match self.remote_call(self.inner.remote.incr(&key, 1)).await {
            Ok(g) => {
                raise_generation(&self.inner, scope, g).await;
                self.publish('g', &format!("{g}\t{scope}")).await;
            }
            Err(_) => {
                let g = self.local_generation();
                self.inner.gens.insert(scope.to_owned(), g).await;
                self.queue([Pending::Scope(scope.to_owned())]).await;
            }
        }
    }

    /// Waits until every live peer has applied this process's invalidations published so far.
    /// Messages from one publisher reach every subscriber in order, and each peer handles its
    /// messages in order, so a peer's confirmation of this request covers all of them.
    async fn sync_peers(&self) {
        let inner = &self.inner;
        // In-process: nobody else to tell. Unsubscribed or cut off: this process cannot hear
        // confirmations, and the queued invalidations are replayed (and peers resync) later.
        if inner.l1.is_none() || !self.is_coherent() || inner.breaker.is_open() {
            return;
        }
        let Ok(peers) = self
            .remote_call(inner.remote.live_members(&inner.space.peers()))
            .await
        else {
            return;
        };
        let remaining: HashSet<String> = peers.into_iter().filter(|p| *p != inner.origin).collect();
        if remaining.is_empty() {
            return;
        }
        let seq = inner.sync_seq.fetch_add(1, Ordering::Relaxed);
        let (done, confirmed) = tokio::sync::oneshot::channel();
        inner.waiters.lock().expect("waiters lock").insert(
            seq,
            Waiter {
                remaining,
                done: Some(done),
            },
        );
        self.publish('y', &seq.to_string()).await;
        let on_time = tokio::time::timeout(inner.config.sync_timeout, confirmed)
            .await
            .is_ok();
        let waiter = inner.waiters.lock().expect("waiters lock").remove(&seq);
        if !on_time {
            inner.sync_timeouts.fetch_add(1, Ordering::Relaxed);
            let missing: Vec<String> = waiter
                .map(|w| w.remaining.into_iter().collect())
                .unwrap_or_default();
            tracing::warn!(
                ?missing,
                timeout = ?inner.config.sync_timeout,
                "peers did not confirm an invalidation in time"
            );
        }
    }

    fn invalidate_l1_pattern(&self, pattern: &str) {
        if let Some(l1) = &self.inner.l1 {
            let pattern = pattern.to_owned();
            if l1
                .invalidate_entries_if(move |k, _| glob_match(&pattern, k))
                .is_err()
            {
                l1.invalidate_all();
            }
        }
    }

    fn local_generation(&self) -> u64 {
        LOCAL_GENERATION | self.inner.local_gen.fetch_add(1, Ordering::Relaxed)
    }

    async fn queue(&self, items: impl IntoIterator<Item = Pending>) {
        let mut q = self.inner.pending.lock().await;
        for item in items {
            if q.items.len() >= self.inner.config.replay_limit {
                q.items.clear();
                q.overflowed = true;
            }
            if !q.overflowed {
                q.items.push_back(item);
            }
        }
        drop(q);
        // The remote may have recovered between our failure and the queueing.
        if !self.inner.breaker.is_open() {
            let _ = replay(&self.inner).await;
        }
    }

    async fn publish(&self, kind: char, payload: &str) {
        if self.inner.l1.is_none() {
            return;
        }
        let msg = format!("{}|{}|{}", self.inner.origin, kind, payload);
        let channel = self.inner.space.channel();
        let _ = self
            .remote_call(self.inner.remote.publish(&channel, msg))
            .await;
    }

    /// Runs a remote call through the breaker and the timeout.
    async fn remote_call<T>(
        &self,
        call: impl Future<Output = Result<T, CacheError>>,
    ) -> Result<T, CacheError> {
        remote_call(&self.inner, call).await
    }

    async fn resolve(&self, key: &CacheKey) -> String {
        // Without a live subscription, cached generations may have missed a bump: read them
        // (and the global one) from the remote until the subscription is back.
        let trusted = self.l1_usable();
        let mut gens = Vec::with_capacity(key.deps.len());
        for scope in &key.deps {
            gens.push(self.generation(scope, trusted).await);
        }
        let global = if trusted {
            self.inner.global.load(Ordering::Acquire)
        } else {
            self.remote_call(
                self.inner
                    .remote
                    .get_counter(&self.inner.space.global_generation()),
            )
            .await
            .unwrap_or_else(|_| self.inner.global.load(Ordering::Acquire))
        };
        self.inner.space.physical(key, &gens, global)
    }

    async fn generation(&self, scope: &str, trusted: bool) -> u64 {
        if trusted && let Some(g) = self.inner.gens.get(scope).await {
            return g;
        }
        let epoch = self.inner.gens_epoch.load(Ordering::Acquire);
        match self
            .remote_call(
                self.inner
                    .remote
                    .get_counter(&self.inner.space.generation(scope)),
            )
            .await
        {
            Ok(g) => {
                if trusted && self.inner.gens_epoch.load(Ordering::Acquire) == epoch {
                    raise_generation(&self.inner, scope, g).await;
                }
                g
            }
            Err(_) => match self.inner.gens.get(scope).await {
                Some(g) => g,
                None => {
                    let g = self.local_generation();
                    self.inner.gens.insert(scope.to_owned(), g).await;
                    g
                }
            },
        }
    }

    fn l1_usable(&self) -> bool {
        self.inner.subscribed.load(Ordering::Acquire) || self.inner.breaker.is_open()
    }

    async fn lookup(&self, pk: &str, c: &Counters) -> Option<Envelope> {
        if let Some(l1) = &self.inner.l1
            && self.l1_usable()
            && let Some(e) = l1.get(pk).await
        {
            Counters::inc(&c.l1_hits);
            return Some(e.envelope);
        }
        if self.inner.breaker.is_open() {
            Counters::inc(&c.fallbacks);
            return None;
        }
        match remote_call(&self.inner, self.inner.remote.get(pk)).await {
            Ok(Some(bytes)) => match Envelope::from_wire(bytes, &self.inner.config.codec) {
                Ok(Some(env)) => {
                    self.fill_l1(pk, &env).await;
                    Some(env)
                }
                Ok(None) => None,
                Err(e) => {
                    // Corrupt: drop it and treat as a miss.
                    Counters::inc(&c.errors);
                    tracing::warn!(error = %e, key = pk, "dropping undecodable cache entry");
                    self.remove_keys(&[pk.to_owned()]).await;
                    None
                }
            },
            Ok(None) => None,
            Err(_) => {
                Counters::inc(&c.errors);
                Counters::inc(&c.fallbacks);
                match &self.inner.l1 {
                    Some(l1) => l1.get(pk).await.map(|e| e.envelope),
                    None => None,
                }
            }
        }
    }

    async fn fill_l1(&self, pk: &str, env: &Envelope) {
        if let Some(l1) = &self.inner.l1 {
            let life = env.remaining().min(self.inner.config.l1_ttl);
            l1.insert(
                pk.to_owned(),
                L1Entry {
                    envelope: env.clone(),
                    expires: Instant::now() + life,
                },
            )
            .await;
        }
    }

    async fn store(&self, pk: &str, env: &Envelope, ttl: Duration, c: &Counters) {
        self.fill_l1(pk, env).await;
        let stored = if self.inner.remote.kind() == BackendKind::Memory {
            env.0.clone()
        } else {
            // Compression cannot fail on an in-memory buffer; stored raw if it ever did.
            env.to_wire(&self.inner.config.codec)
                .unwrap_or_else(|_| env.0.clone())
        };
        match remote_call(&self.inner, self.inner.remote.set(pk, stored, ttl)).await {
            Ok(()) => self.publish('s', pk).await,
            Err(_) => {
                Counters::inc(&c.fallbacks);
                // The remote (and other processes) may still hold an older value for this key.
                self.queue([Pending::Key(pk.to_owned())]).await;
            }
        }
    }

    fn flight(&self, pk: &str) -> Arc<tokio::sync::Mutex<()>> {
        self.inner
            .flights
            .lock()
            .expect("flights lock")
            .entry(pk.to_owned())
            .or_default()
            .clone()
    }

    fn end_flight(&self, pk: &str, flight: Arc<tokio::sync::Mutex<()>>) {
        let mut flights = self.inner.flights.lock().expect("flights lock");
        // Only the map and this handle left: nobody else waits, so the entry can go.
        if Arc::strong_count(&flight) == 2 {
            flights.remove(pk);
        }
    }
}

/// Caches a generation learnt from the remote without ever lowering it: a slow read of the
/// counter must not undo a newer value a message brought in the meantime.
async fn raise_generation(inner: &Inner, scope: &str, g: u64) {
    inner
        .gens
        .entry(scope.to_owned())
        .and_upsert_with(|old| std::future::ready(old.map_or(g, |e| e.into_value().max(g))))
        .await;
}

fn add_field(s: &mut StatsSnapshot, field: &str, v: u64) {
    match field {
        "hits" => s.hits += v,
        "l1_hits" => s.l1_hits += v,
        "misses" => s.misses += v,
        "errors" => s.errors += v,
        "fallbacks" => s.fallbacks += v,
        "loads" => s.loads += v,
        _ => {}
    }
}

fn rand_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    h.finish()
}

async fn remote_call<T>(
    inner: &Inner,
    call: impl Future<Output = Result<T, CacheError>>,
) -> Result<T, CacheError> {
    if inner.breaker.is_open() {
        return Err(CacheError::Unavailable);
    }
    let result = match tokio::time::timeout(inner.config.op_timeout, call).await {
        Ok(r) => r,
        Err(_) => Err(CacheError::Timeout(inner.config.op_timeout)),
    };
    match &result {
        Ok(_) => inner.breaker.success(),
        Err(e) if e.is_backend_failure() => inner.breaker.failure(),
        Err(_) => {}
    }
    result
}

/// Sends queued invalidations to the remote. Holds the queue lock throughout so that nothing
/// queued concurrently is lost.
async fn replay(inner: &Inner) -> Result<(), CacheError> {
    let mut q = inner.pending.lock().await;
    let channel = inner.space.channel();
    if q.overflowed {
        let g = inner
            .remote
            .incr(&inner.space.global_generation(), 1)
            .await?;
        inner.global.store(g, Ordering::Release);
        let _ = inner
            .remote
            .publish(&channel, format!("{}|G|{g}", inner.origin))
            .await;
        q.overflowed = false;
        q.items.clear();
    }
    while let Some(item) = q.items.front().cloned() {
        let msg = match &item {
            Pending::Key(k) => {
                inner.remote.delete(std::slice::from_ref(k)).await?;
                format!("{}|k|{k}", inner.origin)
            }
            Pending::Pattern(p) => {
                inner.remote.delete_pattern(p).await?;
                format!("{}|p|{p}", inner.origin)
            }
            Pending::Scope(s) => {
                let g = inner.remote.incr(&inner.space.generation(s), 1).await?;
                format!("{}|g|{g}\t{s}", inner.origin)
            }
        };
        let _ = inner.remote.publish(&channel, msg).await;
        q.items.pop_front();
    }
    Ok(())
}

/// Forgets everything this process holds locally (L1 and generations) and reloads the global
/// generation: done whenever invalidation messages may have been missed.
async fn resync(inner: &Inner) -> Result<(), CacheError> {
    let g = inner
        .remote
        .get_counter(&inner.space.global_generation())
        .await?;
    inner.global.store(g, Ordering::Release);
    inner.gens_epoch.fetch_add(1, Ordering::AcqRel);
    inner.gens.invalidate_all();
    if let Some(l1) = &inner.l1 {
        l1.invalidate_all();
    }
    Ok(())
}

async fn recovery_task(weak: Weak<Inner>) {
    loop {
        let Some(inner) = weak.upgrade() else { return };
        if !inner.breaker.is_open() {
            let opened = inner.breaker.opened.clone();
            let notified = opened.notified();
            tokio::pin!(notified);
            // Registered before re-checking, so an opening in between is not missed.
            notified.as_mut().enable();
            if !inner.breaker.is_open() {
                drop(inner);
                notified.await;
                continue;
            }
        }
        let cooldown = inner.config.breaker_cooldown;
        drop(inner);
        tokio::time::sleep(cooldown).await;
        let Some(inner) = weak.upgrade() else { return };
        let timeout = inner.config.op_timeout * 4;
        let attempt = async {
            inner.remote.ping().await?;
            replay(&inner).await?;
            resync(&inner).await?;
            // Close while holding the queue lock, so a fallback that queues right now either
            // lands before this (and was replayed) or sees the breaker closed and replays.
            let q = inner.pending.lock().await;
            let nothing_left = q.items.is_empty() && !q.overflowed;
            if nothing_left {
                inner.breaker.close();
            }
            drop(q);
            Ok::<bool, CacheError>(nothing_left)
        };
        if let Ok(Ok(true)) = tokio::time::timeout(timeout, attempt).await {
            tracing::info!("cache backend reachable again; queued invalidations replayed");
        }
    }
}

async fn subscriber_task(weak: Weak<Inner>) {
    loop {
        let Some(inner) = weak.upgrade() else { return };
        let channel = inner.space.channel();
        let remote = inner.remote.clone();
        let backoff = inner.config.breaker_cooldown;
        drop(inner);
        let stream = tokio::time::timeout(backoff * 4, remote.subscribe(&channel)).await;
        match stream {
            Ok(Ok(Some(mut stream))) => {
                {
                    let Some(inner) = weak.upgrade() else { return };
                    // Order matters. Joining the peer set first means every invalidation from
                    // here on waits for our confirmation (we already hear its messages);
                    // whatever was published before, the resync covers. Only then is L1
                    // trusted.
                    let ready = async {
                        join_peers(&inner).await?;
                        resync(&inner).await
                    };
                    if tokio::time::timeout(inner.config.op_timeout * 4, ready)
                        .await
                        .map_or(true, |r| r.is_err())
                    {
                        drop(inner);
                        tokio::time::sleep(backoff).await;
                        continue;
                    }
                    inner.subscribed.store(true, Ordering::Release);
                }
                while let Some(msg) = stream.next().await {
                    let Some(inner) = weak.upgrade() else { return };
                    apply_message(&inner, &msg).await;
                }
                let Some(inner) = weak.upgrade() else { return };
                inner.subscribed.store(false, Ordering::Release);
                // Writers need not wait for a process that cannot hear them (it no longer
                // trusts its L1). If Redis is down this fails and the liveness key expires.
                let _ = remote_call(
                    &inner,
                    inner
                        .remote
                        .remove_member(&inner.space.peers(), &inner.origin),
                )
                .await;
            }
            Ok(Ok(None)) => return,
            Ok(Err(_)) | Err(_) => tokio::time::sleep(backoff).await,
        }
    }
}

/// A peer's liveness key lives for three heartbeats.
fn peer_ttl(inner: &Inner) -> Duration {
    inner.config.peer_heartbeat * 3
}

async fn join_peers(inner: &Inner) -> Result<(), CacheError> {
    inner
        .remote
        .touch_member(&inner.space.peers(), &inner.origin, peer_ttl(inner))
        .await
}

/// Renews this process's liveness key while it is subscribed.
async fn heartbeat_task(weak: Weak<Inner>) {
    loop {
        let Some(inner) = weak.upgrade() else { return };
        let every = inner.config.peer_heartbeat;
        if inner.subscribed.load(Ordering::Acquire) {
            let _ = remote_call(&inner, join_peers(&inner)).await;
        }
        drop(inner);
        tokio::time::sleep(every).await;
    }
}

async fn apply_message(inner: &Inner, msg: &str) {
    let mut parts = msg.splitn(3, '|');
    let (Some(origin), Some(kind), Some(payload)) = (parts.next(), parts.next(), parts.next())
    else {
        return;
    };
    if origin == inner.origin {
        return;
    }
    let Some(l1) = &inner.l1 else { return };
    match kind {
        "k" | "s" => l1.invalidate(payload).await,
        "p" => {
            let pattern = payload.to_owned();
            if l1
                .invalidate_entries_if(move |k, _| glob_match(&pattern, k))
                .is_err()
            {
                l1.invalidate_all();
            }
        }
        "g" => {
            if let Some((g, scope)) = payload.split_once('\t')
                && let Ok(g) = g.parse::<u64>()
            {
                if scope == "_global" {
                    inner.global.fetch_max(g, Ordering::AcqRel);
                }
                raise_generation(inner, scope, g).await;
            }
        }
        "G" => {
            if let Ok(g) = payload.parse::<u64>() {
                inner.global.fetch_max(g, Ordering::AcqRel);
                inner.gens_epoch.fetch_add(1, Ordering::AcqRel);
                inner.gens.invalidate_all();
            }
        }
        // A peer asks for confirmation that everything it published before has been applied
        // here: it has (messages are handled in order).
        "y" => {
            let ack = format!("{}|a|{origin}:{payload}", inner.origin);
            let _ = remote_call(inner, inner.remote.publish(&inner.space.channel(), ack)).await;
        }
        "a" => {
            if let Some((to, seq)) = payload.split_once(':')
                && to == inner.origin
                && let Ok(seq) = seq.parse::<u64>()
            {
                let mut waiters = inner.waiters.lock().expect("waiters lock");
                if let Some(w) = waiters.get_mut(&seq) {
                    w.remaining.remove(origin);
                    if w.remaining.is_empty()
                        && let Some(done) = w.done.take()
                    {
                        let _ = done.send(());
                    }
                }
            }
        }
        _ => {}
    }
}

async fn stats_task(weak: Weak<Inner>) {
    loop {
        let Some(inner) = weak.upgrade() else { return };
        let every = inner.config.stats_flush_interval;
        drop(inner);
        tokio::time::sleep(every).await;
        let Some(inner) = weak.upgrade() else { return };
        let _ = Cache { inner }.flush_stats().await;
    }
}

impl NamedCache {
    pub fn name(&self) -> CacheName {
        self.name
    }

    /// Starts a key of this cache in `family` (a short constant such as `album`).
    pub fn key(&self, family: &'static str) -> KeyBuilder {
        KeyBuilder::new(self.name, family)
    }

    /// The physical key a logical key maps to right now (for admin tools and tests).
    pub async fn physical_key(&self, key: &CacheKey) -> String {
        self.cache.resolve(key).await
    }

    pub async fn get<T: DeserializeOwned>(&self, key: &CacheKey) -> Option<T> {
        let c = self.cache.inner.stats.counters(self.name, key.family);
        let pk = self.cache.resolve(key).await;
        match self.cache.lookup(&pk, &c).await {
            Some(env) => match self.decode(&env, &pk, &c).await {
                Some(v) => {
                    Counters::inc(&c.hits);
                    Some(v)
                }
                None => {
                    Counters::inc(&c.misses);
                    None
                }
            },
            None => {
                Counters::inc(&c.misses);
                None
            }
        }
    }

    /// Stores with the cache name's default TTL.
    pub async fn set<T: Serialize + ?Sized>(
        &self,
        key: &CacheKey,
        value: &T,
    ) -> Result<(), CacheError> {
        self.set_with(key, value, self.name.default_policy().ttl)
            .await
    }

    /// Stores; never fails because the remote is down (the in-process tier keeps it and the
    /// remote copy is deleted on recovery). Fails only if the value cannot be encoded.
    pub async fn set_with<T: Serialize + ?Sized>(
        &self,
        key: &CacheKey,
        value: &T,
        ttl: Duration,
    ) -> Result<(), CacheError> {
        let c = self.cache.inner.stats.counters(self.name, key.family);
        let env = Envelope::new(&self.cache.inner.config.codec, value, ttl)?;
        let pk = self.cache.resolve(key).await;
        self.cache.store(&pk, &env, ttl, &c).await;
        Ok(())
    }

    pub async fn delete(&self, key: &CacheKey) -> Removed {
        let pk = self.cache.resolve(key).await;
        self.cache.invalidate_keys(&[pk]).await
    }

    // ---- Shared records: coordination between processes, not caching ----
    //
    // Records live in the remote tier only (Redis; the process's own memory when the cache is
    // in-process) and never in the L1, so every process sees the same record and the
    // operations are atomic across processes. Unlike the read-through methods they fail when
    // Redis is unreachable (`CacheError::Unavailable` while the breaker is open): a caller
    // that needs the record decides what to do without it. Read them only with these methods.

    /// Stores `value` under `key` for `ttl` unless a record is there; returns the record that
    /// is there (`None`: this call stored `value`). Atomic across processes.
    pub async fn put_record_if_absent<T: Serialize + DeserializeOwned>(
        &self,
        key: &CacheKey,
        value: &T,
        ttl: Duration,
    ) -> Result<Option<T>, CacheError> {
        let codec = &self.cache.inner.config.codec;
        let bytes = Bytes::from(codec.encode(value)?);
        let pk = self.cache.resolve(key).await;
        let held = self
            .cache
            .remote_call(self.cache.inner.remote.set_if_absent(&pk, bytes, ttl))
            .await?;
        held.map(|b| codec.decode(&b)).transpose()
    }

    /// Stores (or replaces) a record for `ttl`.
    pub async fn put_record<T: Serialize + ?Sized>(
        &self,
        key: &CacheKey,
        value: &T,
        ttl: Duration,
    ) -> Result<(), CacheError> {
        let bytes = Bytes::from(self.cache.inner.config.codec.encode(value)?);
        let pk = self.cache.resolve(key).await;
        self.cache
            .remote_call(self.cache.inner.remote.set(&pk, bytes, ttl))
            .await
    }

    /// Removes the record under `key` if it is still `expected` (e.g. a claim this process
    /// made, not a successor's); returns whether it did. Atomic across processes.
    pub async fn delete_record_if<T: Serialize + ?Sized>(
        &self,
        key: &CacheKey,
        expected: &T,
    ) -> Result<bool, CacheError> {
        let bytes = Bytes::from(self.cache.inner.config.codec.encode(expected)?);
        let pk = self.cache.resolve(key).await;
        self.cache
            .remote_call(self.cache.inner.remote.delete_if_equal(&pk, bytes))
            .await
    }

    /// Read-through: returns the cached value, or runs `load` once per key per process however
    /// many callers miss at the same time, stores the result and returns it. A hit within
    /// `policy.refresh_ahead` of expiry reloads the entry (one caller; the others get the
    /// current value). Loader errors are returned and nothing is cached.
    pub async fn get_or_load<T, E, F, Fut>(
        &self,
        key: &CacheKey,
        policy: Policy,
        load: F,
    ) -> Result<T, E>
    where
        T: Serialize + DeserializeOwned,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let c = self.cache.inner.stats.counters(self.name, key.family);
        // The lookup is a span of its own (hit or miss); a loader's work on a miss is not in it.
        let span = tracing::info_span!(
            "cache.get",
            cache.name = self.name.as_str(),
            cache.family = key.family,
            cache.hit = tracing::field::Empty,
        );
        let found = tracing::Instrument::instrument(
            async {
                let pk = self.cache.resolve(key).await;
                let found = match self.cache.lookup(&pk, &c).await {
                    Some(env) => self.decode::<T>(&env, &pk, &c).await.map(|v| (env, v)),
                    None => None,
                };
                (pk, found)
            },
            span.clone(),
        )
        .await;
        span.record("cache.hit", found.1.is_some());
        drop(span);
        let (pk, found) = found;
        if let Some((env, v)) = found {
            Counters::inc(&c.hits);
            if env.remaining() >= policy.refresh_ahead {
                return Ok(v);
            }
            let flight = self.cache.flight(&pk);
            let Ok(guard) = flight.try_lock() else {
                drop(flight);
                return Ok(v);
            };
            // Someone may have refreshed it while we looked.
            let fresh = match self.cache.lookup(&pk, &c).await {
                Some(env) => env.remaining() >= policy.refresh_ahead,
                None => false,
            };
            let result = if fresh {
                Ok(v)
            } else {
                self.load_and_store(&pk, policy, load, &c).await
            };
            drop(guard);
            self.cache.end_flight(&pk, flight);
            return result;
        }
        Counters::inc(&c.misses);
        let flight = self.cache.flight(&pk);
        let guard = flight.lock().await;
        // The previous holder of the flight has most likely filled it.
        let result = match self.cache.lookup(&pk, &c).await {
            Some(env) => match self.decode::<T>(&env, &pk, &c).await {
                Some(v) => Ok(v),
                None => self.load_and_store(&pk, policy, load, &c).await,
            },
            None => self.load_and_store(&pk, policy, load, &c).await,
        };
        drop(guard);
        self.cache.end_flight(&pk, flight);
        result
    }

    /// Reloads and stores regardless of what is cached (the `x-cache-refresh: 1` path).
    pub async fn refresh<T, E, F, Fut>(
        &self,
        key: &CacheKey,
        policy: Policy,
        load: F,
    ) -> Result<T, E>
    where
        T: Serialize + DeserializeOwned,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let c = self.cache.inner.stats.counters(self.name, key.family);
        let pk = self.cache.resolve(key).await;
        let flight = self.cache.flight(&pk);
        let guard = flight.lock().await;
        let result = self.load_and_store(&pk, policy, load, &c).await;
        drop(guard);
        self.cache.end_flight(&pk, flight);
        result
    }

    async fn load_and_store<T, E, F, Fut>(
        &self,
        pk: &str,
        policy: Policy,
        load: F,
        c: &Counters,
    ) -> Result<T, E>
    where
        T: Serialize,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        Counters::inc(&c.loads);
        let v = load().await?;
        match Envelope::new(&self.cache.inner.config.codec, &v, policy.ttl) {
            Ok(env) => self.cache.store(pk, &env, policy.ttl, c).await,
            Err(e) => {
                Counters::inc(&c.errors);
                tracing::warn!(error = %e, "value not cached");
            }
        }
        Ok(v)
    }

    async fn decode<T: DeserializeOwned>(
        &self,
        env: &Envelope,
        pk: &str,
        c: &Counters,
    ) -> Option<T> {
        match self.cache.inner.config.codec.decode(env.payload()) {
            Ok(v) => Some(v),
            Err(e) => {
                // A corrupt or differently-shaped entry: drop it and treat as a miss.
                Counters::inc(&c.errors);
                tracing::warn!(error = %e, key = pk, "dropping undecodable cache entry");
                self.cache.remove_keys(&[pk.to_owned()]).await;
                None
            }
        }
    }
}
