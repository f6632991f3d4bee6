use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use redis::cluster::ClusterClientBuilder;
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{Route, RoutingInfo, SingleNodeRoutingInfo, SlotAddr};

use super::{
    BATCH, Backend, BackendInfo, BackendKind, PatternUsage, estimate, member_key, sample,
    split_live, used_memory,
};
use crate::CacheError;

/// Redis Cluster through redis-rs cluster-async: one multiplexed connection per node, slot map
/// refreshed on MOVED/ASK and after failover.
pub struct ClusterBackend {
    conn: ClusterConnection,
    node_urls: Vec<String>,
    next_subscriber: AtomicUsize,
}

impl ClusterBackend {
    pub async fn connect(node_urls: &[String], timeout: Duration) -> Result<Self, CacheError> {
        let client = ClusterClientBuilder::new(node_urls.to_vec())
            .connection_timeout(timeout)
            .response_timeout(timeout)
            .retries(2)
            .min_retry_wait(20)
            .max_retry_wait(200)
            .build()?;
        let conn = client.get_async_connection().await?;
        Ok(ClusterBackend {
            conn,
            node_urls: node_urls.to_vec(),
            next_subscriber: AtomicUsize::new(0),
        })
    }

    /// One slot owned by each master that serves slots. Routing by slot (rather than by
    /// address) uses the client's own slot map, so it follows failovers.
    async fn masters(&self) -> Result<Vec<u16>, CacheError> {
        let mut conn = self.conn.clone();
        let nodes: String = redis::cmd("CLUSTER")
            .arg("NODES")
            .query_async(&mut conn)
            .await?;
        Ok(nodes
            .lines()
            .filter_map(|line| {
                let fields: Vec<&str> = line.split_whitespace().collect();
                let flags = fields.get(2)?;
                if !flags.contains("master") || flags.contains("fail") {
                    return None;
                }
                // Slot ranges start at field 8 ("0-5460" or "42"); importing/migrating
                // markers start with '['.
                let first = fields.get(8).filter(|f| !f.starts_with('['))?;
                first.split('-').next()?.parse().ok()
            })
            .collect())
    }

    async fn on_node<T: redis::FromRedisValue>(
        &self,
        cmd: redis::Cmd,
        slot: u16,
    ) -> Result<T, CacheError> {
        let mut conn = self.conn.clone();
        let v = conn
            .route_command(
                cmd,
                RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(Route::new(
                    slot,
                    SlotAddr::Master,
                ))),
            )
            .await?;
        redis::from_redis_value(v).map_err(|e| CacheError::Decode(e.to_string()))
    }

    /// SCAN on every master (never KEYS).
    async fn scan(&self, pattern: &str) -> Result<Vec<String>, CacheError> {
        let mut keys = Vec::new();
        for slot in self.masters().await? {
            let mut cursor: u64 = 0;
            loop {
                let mut cmd = redis::cmd("SCAN");
                cmd.arg(cursor)
                    .arg("MATCH")
                    .arg(pattern)
                    .arg("COUNT")
                    .arg(BATCH);
                let (next, batch): (u64, Vec<String>) = self.on_node(cmd, slot).await?;
                keys.extend(batch);
                cursor = next;
                if cursor == 0 {
                    break;
                }
            }
        }
        Ok(keys)
    }
}

#[async_trait::async_trait]
impl Backend for ClusterBackend {
    fn kind(&self) -> BackendKind {
        BackendKind::RedisCluster
    }

    async fn get(&self, key: &str) -> Result<Option<Bytes>, CacheError> {
        let mut conn = self.conn.clone();
        let v: Option<Vec<u8>> = redis::cmd("GET").arg(key).query_async(&mut conn).await?;
        Ok(v.map(Bytes::from))
    }

    async fn set(&self, key: &str, value: Bytes, ttl: Duration) -> Result<(), CacheError> {
        let mut conn = self.conn.clone();
        let () = redis::cmd("SET")
            .arg(key)
            .arg(value.as_ref())
            .arg("PX")
            .arg(ttl.as_millis().max(1) as u64)
            .query_async(&mut conn)
            .await?;
        Ok(())
    }

    async fn delete(&self, keys: &[String]) -> Result<u64, CacheError> {
        let mut conn = self.conn.clone();
        let mut n = 0;
        // The client splits a multi-slot UNLINK per node and sums the replies.
        for chunk in keys.chunks(BATCH) {
            n += redis::cmd("UNLINK")
                .arg(chunk)
                .query_async::<u64>(&mut conn)
                .await?;
        }
        Ok(n)
    }

    async fn set_if_absent(
        &self,
        key: &str,
        value: Bytes,
        ttl: Duration,
    ) -> Result<Option<Bytes>, CacheError> {
        let mut conn = self.conn.clone();
        let ttl = (ttl.as_millis().max(1) as u64).to_string();
        // EVAL is routed by its key to the slot's master.
        let held: Option<Vec<u8>> =
            super::eval(super::SET_IF_ABSENT, key, &[value.as_ref(), ttl.as_bytes()])
                .query_async(&mut conn)
                .await?;
        Ok(held.map(Bytes::from))
    }

    async fn delete_if_equal(&self, key: &str, expected: Bytes) -> Result<bool, CacheError> {
        let mut conn = self.conn.clone();
        let n: u64 = super::eval(super::DELETE_IF_EQUAL, key, &[expected.as_ref()])
            .query_async(&mut conn)
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
        // Each routed to its key's master by the client.
        let usage = futures::future::try_join_all(picked.iter().map(|k| {
            let mut conn = self.conn.clone();
            async move {
                redis::cmd("MEMORY")
                    .arg("USAGE")
                    .arg(k.as_str())
                    .query_async::<Option<u64>>(&mut conn)
                    .await
            }
        }))
        .await?;
        Ok(estimate(
            keys.len(),
            picked.len(),
            usage.into_iter().flatten().sum(),
        ))
    }

    async fn get_counter(&self, key: &str) -> Result<u64, CacheError> {
        let mut conn = self.conn.clone();
        let v: Option<u64> = redis::cmd("GET").arg(key).query_async(&mut conn).await?;
        Ok(v.unwrap_or(0))
    }

    async fn incr(&self, key: &str, by: u64) -> Result<u64, CacheError> {
        let mut conn = self.conn.clone();
        Ok(redis::cmd("INCRBY")
            .arg(key)
            .arg(by)
            .query_async(&mut conn)
            .await?)
    }

    async fn hincr(&self, key: &str, fields: &[(&str, u64)]) -> Result<(), CacheError> {
        let mut conn = self.conn.clone();
        let mut pipe = redis::pipe();
        for (f, by) in fields {
            pipe.cmd("HINCRBY").arg(key).arg(*f).arg(*by).ignore();
        }
        let () = pipe.query_async(&mut conn).await?;
        Ok(())
    }

    async fn hgetall(&self, key: &str) -> Result<Vec<(String, u64)>, CacheError> {
        let mut conn = self.conn.clone();
        Ok(redis::cmd("HGETALL")
            .arg(key)
            .query_async(&mut conn)
            .await?)
    }

    async fn publish(&self, channel: &str, message: String) -> Result<(), CacheError> {
        // Classic pub/sub is broadcast across the whole cluster bus, so any node will do.
        let mut conn = self.conn.clone();
        let _: u64 = redis::cmd("PUBLISH")
            .arg(channel)
            .arg(message)
            .query_async(&mut conn)
            .await?;
        Ok(())
    }

    async fn touch_member(&self, set: &str, member: &str, ttl: Duration) -> Result<(), CacheError> {
        let mut conn = self.conn.clone();
        let _: u64 = redis::cmd("SADD")
            .arg(set)
            .arg(member)
            .query_async(&mut conn)
            .await?;
        let () = redis::cmd("SET")
            .arg(member_key(set, member))
            .arg(1)
            .arg("PX")
            .arg(ttl.as_millis().max(1) as u64)
            .query_async(&mut conn)
            .await?;
        Ok(())
    }

    async fn live_members(&self, set: &str) -> Result<Vec<String>, CacheError> {
        let mut conn = self.conn.clone();
        let members: Vec<String> = redis::cmd("SMEMBERS")
            .arg(set)
            .query_async(&mut conn)
            .await?;
        if members.is_empty() {
            return Ok(members);
        }
        let keys: Vec<String> = members.iter().map(|m| member_key(set, m)).collect();
        // The set's name carries a hash tag, so the MGET stays on one node.
        let alive: Vec<Option<u8>> = redis::cmd("MGET").arg(&keys).query_async(&mut conn).await?;
        let (live, dead) = split_live(members, &alive);
        if !dead.is_empty() {
            let _: u64 = redis::cmd("SREM")
                .arg(set)
                .arg(&dead)
                .query_async(&mut conn)
                .await?;
        }
        Ok(live)
    }

    async fn remove_member(&self, set: &str, member: &str) -> Result<(), CacheError> {
        let mut conn = self.conn.clone();
        let _: u64 = redis::cmd("SREM")
            .arg(set)
            .arg(member)
            .query_async(&mut conn)
            .await?;
        let _: u64 = redis::cmd("DEL")
            .arg(member_key(set, member))
            .query_async(&mut conn)
            .await?;
        Ok(())
    }

    async fn subscribe(
        &self,
        channel: &str,
    ) -> Result<Option<BoxStream<'static, String>>, CacheError> {
        // Rotate through the seed nodes so a dead node does not stop resubscription.
        let mut last = None;
        for _ in 0..self.node_urls.len() {
            let i = self.next_subscriber.fetch_add(1, Ordering::Relaxed) % self.node_urls.len();
            let attempt = async {
                let client = redis::Client::open(self.node_urls[i].as_str())?;
                let mut pubsub = client.get_async_pubsub().await?;
                pubsub.subscribe(channel).await?;
                Ok::<_, CacheError>(pubsub)
            };
            match attempt.await {
                Ok(pubsub) => {
                    return Ok(Some(
                        pubsub
                            .into_on_message()
                            .filter_map(|m| async move { m.get_payload::<String>().ok() })
                            .boxed(),
                    ));
                }
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or(CacheError::Unavailable))
    }

    async fn ping(&self) -> Result<(), CacheError> {
        // A keyed read exercises the slot map (PING would only reach one node).
        let mut conn = self.conn.clone();
        let _: Option<Vec<u8>> = redis::cmd("GET")
            .arg("photos-cache-ping")
            .query_async(&mut conn)
            .await?;
        Ok(())
    }

    async fn info(&self) -> Result<BackendInfo, CacheError> {
        let mut total = BackendInfo::default();
        for slot in self.masters().await? {
            total.keys += self.on_node::<u64>(redis::cmd("DBSIZE"), slot).await?;
            let mut cmd = redis::cmd("INFO");
            cmd.arg("memory");
            let info: String = self.on_node(cmd, slot).await?;
            total.memory_bytes += used_memory(&info);
        }
        Ok(total)
    }
}
