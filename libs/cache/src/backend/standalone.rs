use std::time::Duration;

use bytes::Bytes;
use deadpool_redis::{Pool, PoolConfig, Runtime, Timeouts};
use futures::StreamExt;
use futures::stream::BoxStream;

use super::{BATCH, Backend, BackendInfo, BackendKind, used_memory};
use crate::CacheError;

/// Redis standalone through a deadpool of multiplexed connections (max 50 by default).
pub struct StandaloneBackend {
    pool: Pool,
    client: redis::Client,
}

impl StandaloneBackend {
    /// Lazy: no connection is made until the first command, so a process starts while Redis
    /// is down and falls back until it returns.
    pub fn new(url: &str, max_connections: usize, timeout: Duration) -> Result<Self, CacheError> {
        let client = redis::Client::open(url)?;
        let mut config = deadpool_redis::Config::from_url(url);
        config.pool = Some(PoolConfig {
            max_size: max_connections,
            timeouts: Timeouts {
                wait: Some(timeout),
                create: Some(timeout),
                recycle: Some(timeout),
            },
            ..PoolConfig::default()
        });
        let pool = config
            .create_pool(Some(Runtime::Tokio1))
            .map_err(|e| CacheError::Config {
                key: "redis.url",
                message: e.to_string(),
            })?;
        Ok(StandaloneBackend { pool, client })
    }

    async fn conn(&self) -> Result<deadpool_redis::Connection, CacheError> {
        self.pool
            .get()
            .await
            .map_err(|e| CacheError::Pool(e.to_string()))
    }

    async fn scan(&self, pattern: &str) -> Result<Vec<String>, CacheError> {
        let mut conn = self.conn().await?;
        let mut cursor: u64 = 0;
        let mut keys = Vec::new();
        loop {
            let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(pattern)
                .arg("COUNT")
                .arg(BATCH)
                .query_async(&mut *conn)
                .await?;
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
        let mut conn = self.conn().await?;
        let v: Option<Vec<u8>> = redis::cmd("GET").arg(key).query_async(&mut *conn).await?;
        Ok(v.map(Bytes::from))
    }

    async fn set(&self, key: &str, value: Bytes, ttl: Duration) -> Result<(), CacheError> {
        let mut conn = self.conn().await?;
        let () = redis::cmd("SET")
            .arg(key)
            .arg(value.as_ref())
            .arg("PX")
            .arg(ttl.as_millis().max(1) as u64)
            .query_async(&mut *conn)
            .await?;
        Ok(())
    }

    async fn delete(&self, keys: &[String]) -> Result<u64, CacheError> {
        let mut conn = self.conn().await?;
        let mut n = 0;
        for chunk in keys.chunks(BATCH) {
            n += redis::cmd("UNLINK")
                .arg(chunk)
                .query_async::<u64>(&mut *conn)
                .await?;
        }
        Ok(n)
    }

    async fn delete_pattern(&self, pattern: &str) -> Result<u64, CacheError> {
        let keys = self.scan(pattern).await?;
        self.delete(&keys).await
    }

    async fn count_pattern(&self, pattern: &str) -> Result<u64, CacheError> {
        Ok(self.scan(pattern).await?.len() as u64)
    }

    async fn get_counter(&self, key: &str) -> Result<u64, CacheError> {
        let mut conn = self.conn().await?;
        let v: Option<u64> = redis::cmd("GET").arg(key).query_async(&mut *conn).await?;
        Ok(v.unwrap_or(0))
    }

    async fn incr(&self, key: &str, by: u64) -> Result<u64, CacheError> {
        let mut conn = self.conn().await?;
        Ok(redis::cmd("INCRBY")
            .arg(key)
            .arg(by)
            .query_async(&mut *conn)
            .await?)
    }

    async fn hincr(&self, key: &str, fields: &[(&str, u64)]) -> Result<(), CacheError> {
        let mut conn = self.conn().await?;
        let mut pipe = redis::pipe();
        for (f, by) in fields {
            pipe.cmd("HINCRBY").arg(key).arg(*f).arg(*by).ignore();
        }
        let () = pipe.query_async(&mut *conn).await?;
        Ok(())
    }

    async fn hgetall(&self, key: &str) -> Result<Vec<(String, u64)>, CacheError> {
        let mut conn = self.conn().await?;
        Ok(redis::cmd("HGETALL")
            .arg(key)
            .query_async(&mut *conn)
            .await?)
    }

    async fn publish(&self, channel: &str, message: String) -> Result<(), CacheError> {
        let mut conn = self.conn().await?;
        let _: u64 = redis::cmd("PUBLISH")
            .arg(channel)
            .arg(message)
            .query_async(&mut *conn)
            .await?;
        Ok(())
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
        let mut conn = self.conn().await?;
        let _: String = redis::cmd("PING").query_async(&mut *conn).await?;
        Ok(())
    }

    async fn info(&self) -> Result<BackendInfo, CacheError> {
        let mut conn = self.conn().await?;
        let keys: u64 = redis::cmd("DBSIZE").query_async(&mut *conn).await?;
        let info: String = redis::cmd("INFO")
            .arg("memory")
            .query_async(&mut *conn)
            .await?;
        Ok(BackendInfo {
            keys,
            memory_bytes: used_memory(&info),
        })
    }
}
