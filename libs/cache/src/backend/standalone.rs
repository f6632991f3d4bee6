use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use redis::AsyncConnectionConfig;
use redis::aio::MultiplexedConnection;

use super::{
    BATCH, Backend, BackendInfo, BackendKind, PatternUsage, estimate, member_key, sample,
    split_live, used_memory,
};
use crate::CacheError;

/// Redis standalone through a pool of up to `max_connections` (50 by default) multiplexed
/// connections. A command goes to the open connection with the fewest commands in flight; a
/// new connection is opened only when every open one already has `PIPELINE_DEPTH` in flight.
/// So a few connections carry many concurrent commands, pipelined (one write and one read
/// syscall per batch, on both sides: fifty tasks over two or three connections measured
/// well ahead of fifty connections with one command each, which is how `redis-benchmark -c
/// 50` drives the server), and the pool still grows to `max_connections` under heavy load or
/// behind slow replies. A checkout costs nothing: unlike a check-out/check-in pool
/// (deadpool-redis PINGs on every recycle, doubling the round-trips), a broken connection is
/// detected by the command that fails and replaced on next use.
pub struct StandaloneBackend {
    client: redis::Client,
    slots: Vec<Slot>,
    /// Slots in use (the first `open` of `slots`); only grows.
    open: AtomicUsize,
    timeout: Duration,
}

/// Commands in flight on every open connection before another one is opened.
const PIPELINE_DEPTH: usize = 16;

#[derive(Default)]
struct Slot {
    conn: Mutex<Option<MultiplexedConnection>>,
    in_flight: AtomicUsize,
}

/// A pooled connection; dropped from its slot when a command on it fails at the I/O level.
pub(crate) struct Conn<'a> {
    conn: MultiplexedConnection,
    slot: InFlight<'a>,
}

/// Counts one user of a slot for as long as it lives (connecting included).
struct InFlight<'a>(&'a Slot);

impl<'a> InFlight<'a> {
    fn new(slot: &'a Slot) -> Self {
        slot.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(slot)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

impl std::ops::Deref for Conn<'_> {
    type Target = MultiplexedConnection;
    fn deref(&self) -> &MultiplexedConnection {
        &self.conn
    }
}

impl std::ops::DerefMut for Conn<'_> {
    fn deref_mut(&mut self) -> &mut MultiplexedConnection {
        &mut self.conn
    }
}

impl Conn<'_> {
    fn check<T>(&self, r: redis::RedisResult<T>) -> Result<T, CacheError> {
        if let Err(e) = &r
            && (e.is_io_error() || e.is_connection_dropped() || e.is_timeout())
        {
            *self.slot.0.conn.lock().expect("pool slot") = None;
        }
        Ok(r?)
    }
}

impl StandaloneBackend {
    /// Lazy: no connection is made until the first command, so a process starts while Redis
    /// is down and falls back until it returns.
    pub fn new(url: &str, max_connections: usize, timeout: Duration) -> Result<Self, CacheError> {
        let client = redis::Client::open(url)?;
        Ok(StandaloneBackend {
            client,
            slots: (0..max_connections.max(1))
                .map(|_| Slot::default())
                .collect(),
            open: AtomicUsize::new(0),
            timeout,
        })
    }

    /// Connections opened so far.
    pub fn connections(&self) -> usize {
        self.open.load(Ordering::Relaxed).min(self.slots.len())
    }

    /// The least busy open slot, or a new one when every open slot is `PIPELINE_DEPTH` deep.
    fn pick(&self) -> &Slot {
        let open = self.connections();
        let least = self.slots[..open]
            .iter()
            .min_by_key(|s| s.in_flight.load(Ordering::Relaxed));
        match least {
            Some(slot) if slot.in_flight.load(Ordering::Relaxed) < PIPELINE_DEPTH => slot,
            _ if open < self.slots.len() => {
                let i = self.open.fetch_add(1, Ordering::Relaxed);
                // Racing openers may overshoot the cap: they share the last slot instead.
                &self.slots[i.min(self.slots.len() - 1)]
            }
            Some(slot) => slot,
            None => &self.slots[0],
        }
    }

    async fn conn(&self) -> Result<Conn<'_>, CacheError> {
        let slot = InFlight::new(self.pick());
        let existing = slot.0.conn.lock().expect("pool slot").clone();
        let conn = match existing {
            Some(conn) => conn,
            None => {
                let config = AsyncConnectionConfig::new()
                    .set_connection_timeout(Some(self.timeout))
                    .set_response_timeout(Some(self.timeout));
                let conn = self
                    .client
                    .get_multiplexed_async_connection_with_config(&config)
                    .await?;
                *slot.0.conn.lock().expect("pool slot") = Some(conn.clone());
                conn
            }
        };
        Ok(Conn { conn, slot })
    }

    async fn run<T: redis::FromRedisValue>(&self, cmd: &redis::Cmd) -> Result<T, CacheError> {
        let mut conn = self.conn().await?;
        let r = cmd.query_async(&mut *conn).await;
        conn.check(r)
    }

    async fn scan(&self, pattern: &str) -> Result<Vec<String>, CacheError> {
        let mut conn = self.conn().await?;
        let mut cursor: u64 = 0;
        let mut keys = Vec::new();
        loop {
            let r = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(pattern)
                .arg("COUNT")
                .arg(BATCH)
                .query_async::<(u64, Vec<String>)>(&mut *conn)
                .await;
            let (next, batch) = conn.check(r)?;
            keys.extend(batch);
            cursor = next;
            if cursor == 0 {
                return Ok(keys);
            }
        }
    }
}

#[async_trait::async_trait]
impl Backend for StandaloneBackend {
    fn kind(&self) -> BackendKind {
        BackendKind::Redis
    }

    async fn get(&self, key: &str) -> Result<Option<Bytes>, CacheError> {
        let v: Option<Vec<u8>> = self.run(redis::cmd("GET").arg(key)).await?;
        Ok(v.map(Bytes::from))
    }

    async fn set(&self, key: &str, value: Bytes, ttl: Duration) -> Result<(), CacheError> {
        self.run(
            redis::cmd("SET")
                .arg(key)
                .arg(value.as_ref())
                .arg("PX")
                .arg(ttl.as_millis().max(1) as u64),
        )
        .await
    }

    async fn delete(&self, keys: &[String]) -> Result<u64, CacheError> {
        let mut n = 0;
        for chunk in keys.chunks(BATCH) {
            n += self.run::<u64>(redis::cmd("UNLINK").arg(chunk)).await?;
        }
        Ok(n)
    }

    async fn set_if_absent(
        &self,
        key: &str,
        value: Bytes,
        ttl: Duration,
    ) -> Result<Option<Bytes>, CacheError> {
        let ttl = (ttl.as_millis().max(1) as u64).to_string();
        let held: Option<Vec<u8>> = self
            .run(&super::eval(
                super::SET_IF_ABSENT,
                key,
                &[value.as_ref(), ttl.as_bytes()],
            ))
            .await?;
        Ok(held.map(Bytes::from))
    }

    async fn delete_if_equal(&self, key: &str, expected: Bytes) -> Result<bool, CacheError> {
        let n: u64 = self
            .run(&super::eval(
                super::DELETE_IF_EQUAL,
                key,
                &[expected.as_ref()],
            ))
            .await?;
        Ok(n > 0)
    }

    async fn delete_pattern(&self, pattern: &str) -> Result<u64, CacheError> {
        let keys = self.scan(pattern).await?;
        self.delete(&keys).await
    }

    async fn pattern_usage(
        &self,
        pattern: &str,
        samples: usize,
    ) -> Result<PatternUsage, CacheError> {
        let keys = self.scan(pattern).await?;
        let picked = sample(&keys, samples);
        let mut pipe = redis::pipe();
        for k in &picked {
            pipe.cmd("MEMORY").arg("USAGE").arg(k.as_str());
        }
        let bytes: Vec<Option<u64>> = if picked.is_empty() {
            Vec::new()
        } else {
            let mut conn = self.conn().await?;
            let r = pipe.query_async(&mut *conn).await;
            conn.check(r)?
        };
        Ok(estimate(
            keys.len(),
            picked.len(),
            bytes.into_iter().flatten().sum(),
        ))
    }

    async fn get_counter(&self, key: &str) -> Result<u64, CacheError> {
        let v: Option<u64> = self.run(redis::cmd("GET").arg(key)).await?;
        Ok(v.unwrap_or(0))
    }

    async fn incr(&self, key: &str, by: u64) -> Result<u64, CacheError> {
        self.run(redis::cmd("INCRBY").arg(key).arg(by)).await
    }

    async fn hincr(&self, key: &str, fields: &[(&str, u64)]) -> Result<(), CacheError> {
        let mut pipe = redis::pipe();
        for (f, by) in fields {
            pipe.cmd("HINCRBY").arg(key).arg(*f).arg(*by).ignore();
        }
        let mut conn = self.conn().await?;
        let r = pipe.query_async::<()>(&mut *conn).await;
        conn.check(r)
    }

    async fn hgetall(&self, key: &str) -> Result<Vec<(String, u64)>, CacheError> {
        self.run(redis::cmd("HGETALL").arg(key)).await
    }

    async fn publish(&self, channel: &str, message: String) -> Result<(), CacheError> {
        let _: u64 = self
            .run(redis::cmd("PUBLISH").arg(channel).arg(message))
            .await?;
        Ok(())
    }

    async fn touch_member(&self, set: &str, member: &str, ttl: Duration) -> Result<(), CacheError> {
        let mut pipe = redis::pipe();
        pipe.cmd("SADD").arg(set).arg(member).ignore();
        pipe.cmd("SET")
            .arg(member_key(set, member))
            .arg(1)
            .arg("PX")
            .arg(ttl.as_millis().max(1) as u64)
            .ignore();
        let mut conn = self.conn().await?;
        let r = pipe.query_async::<()>(&mut *conn).await;
        conn.check(r)
    }

    async fn live_members(&self, set: &str) -> Result<Vec<String>, CacheError> {
        let members: Vec<String> = self.run(redis::cmd("SMEMBERS").arg(set)).await?;
        if members.is_empty() {
            return Ok(members);
        }
        let keys: Vec<String> = members.iter().map(|m| member_key(set, m)).collect();
        let alive: Vec<Option<u8>> = self.run(redis::cmd("MGET").arg(&keys)).await?;
        let (live, dead) = split_live(members, &alive);
        if !dead.is_empty() {
            let _: u64 = self.run(redis::cmd("SREM").arg(set).arg(&dead)).await?;
        }
        Ok(live)
    }

    async fn remove_member(&self, set: &str, member: &str) -> Result<(), CacheError> {
        let mut pipe = redis::pipe();
        pipe.cmd("SREM").arg(set).arg(member).ignore();
        pipe.cmd("DEL").arg(member_key(set, member)).ignore();
        let mut conn = self.conn().await?;
        let r = pipe.query_async::<()>(&mut *conn).await;
        conn.check(r)
    }

    async fn subscribe(
        &self,
        channel: &str,
    ) -> Result<Option<BoxStream<'static, String>>, CacheError> {
        let mut pubsub = self.client.get_async_pubsub().await?;
        pubsub.subscribe(channel).await?;
        Ok(Some(
            pubsub
                .into_on_message()
                .filter_map(|m| async move { m.get_payload::<String>().ok() })
                .boxed(),
        ))
    }

    async fn ping(&self) -> Result<(), CacheError> {
        let _: String = self.run(&redis::cmd("PING")).await?;
        Ok(())
    }

    async fn info(&self) -> Result<BackendInfo, CacheError> {
        let keys: u64 = self.run(&redis::cmd("DBSIZE")).await?;
        let info: String = self.run(redis::cmd("INFO").arg("memory")).await?;
        Ok(BackendInfo {
            keys,
            memory_bytes: used_memory(&info),
        })
    }
}
