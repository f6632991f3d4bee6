//! The tonic service: translates proto <-> the cache library, validates input.

use std::pin::Pin;

use futures::Stream;
use photos_cache::{Cache, CacheName};
use photos_proto::cache_admin::v1::cache_admin_service_server::CacheAdminService;
use photos_proto::cache_admin::v1::{
    CacheStats, GetCacheStatsRequest, GetCacheStatsResponse, InvalidateRequest, InvalidateResponse,
    WarmCacheRequest, WarmCacheResponse,
};
use photos_proto::catalog::v1::catalog_service_client::CatalogServiceClient;
use photos_runtime::client::Channel;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use crate::CacheAdminError;
use crate::warm::{self, WarmPlan};

const MAX_KEYS: usize = 10_000;
const MAX_PATTERNS: usize = 100;
const MAX_ALBUM_IDS: usize = 10_000;
const MAX_PATTERN_LEN: usize = 1024;

pub(crate) struct CacheAdminGrpc {
    pub catalog: CatalogServiceClient<Channel>,
    pub cache: Cache,
}

fn invalid(msg: impl Into<String>) -> Status {
    CacheAdminError::InvalidArgument(msg.into()).into()
}

impl CacheAdminGrpc {
    fn validate(&self, req: &InvalidateRequest) -> Result<(), Status> {
        if req.keys.is_empty() && req.patterns.is_empty() && req.album_ids.is_empty() {
            return Err(invalid(
                "nothing to invalidate: set keys, patterns or album_ids",
            ));
        }
        if req.keys.len() > MAX_KEYS {
            return Err(invalid(format!("keys: at most {MAX_KEYS} per request")));
        }
        if req.patterns.len() > MAX_PATTERNS {
            return Err(invalid(format!(
                "patterns: at most {MAX_PATTERNS} per request"
            )));
        }
        if req.album_ids.len() > MAX_ALBUM_IDS {
            return Err(invalid(format!(
                "album_ids: at most {MAX_ALBUM_IDS} per request"
            )));
        }
        // Patterns may only reach this cache's own keys, never the rest of a shared Redis.
        let prefix = format!("{}:", self.cache.key_space().prefix);
        for p in &req.patterns {
            if !p.starts_with(&prefix) || p.len() > MAX_PATTERN_LEN {
                return Err(invalid(format!(
                    "patterns: {p:?} must start with {prefix:?} and be at most {MAX_PATTERN_LEN} bytes, e.g. \"{}:v{}:default:album:*\"",
                    self.cache.key_space().prefix,
                    self.cache.key_space().version
                )));
            }
        }
        if let Some(k) = req.keys.iter().find(|k| !k.starts_with(&prefix)) {
            return Err(invalid(format!("keys: {k:?} must start with {prefix:?}")));
        }
        if req.album_ids.iter().any(|a| a.is_empty()) {
            return Err(invalid("album_ids: ids must not be empty"));
        }
        Ok(())
    }
}

type WarmStream = Pin<Box<dyn Stream<Item = Result<WarmCacheResponse, Status>> + Send>>;

#[tonic::async_trait]
impl CacheAdminService for CacheAdminGrpc {
    async fn warm_cache(
        &self,
        request: Request<WarmCacheRequest>,
    ) -> Result<Response<WarmStream>, Status> {
        let req = request.into_inner();
        let plan = WarmPlan {
            album_id: req.album_id,
            published_only: req.published_only,
            force: req.force,
        };
        let (tx, rx) = mpsc::channel(64);
        // The warming task outlives this handler; it keeps the call's span so its catalog
        // calls stay in the caller's trace.
        tokio::spawn(tracing::Instrument::in_current_span(warm::run(
            self.catalog.clone(),
            plan,
            tx,
        )));
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn invalidate(
        &self,
        request: Request<InvalidateRequest>,
    ) -> Result<Response<InvalidateResponse>, Status> {
        let req = request.into_inner();
        self.validate(&req)?;
        let mut removed = 0;
        if !req.keys.is_empty() {
            removed += self.cache.invalidate_keys(&req.keys).await.keys;
        }
        for p in &req.patterns {
            removed += self.cache.invalidate_pattern(p).await.keys;
        }
        for album in &req.album_ids {
            self.cache.invalidate_album(album).await;
        }
        Ok(Response::new(InvalidateResponse {
            removed,
            albums_invalidated: req.album_ids.len() as u64,
        }))
    }

    async fn get_cache_stats(
        &self,
        _: Request<GetCacheStatsRequest>,
    ) -> Result<Response<GetCacheStatsResponse>, Status> {
        let (stats, aggregated) = match self.cache.aggregated_stats().await {
            Ok(s) => (s, true),
            Err(_) => (self.cache.stats(), false),
        };
        let info = self.cache.backend_info().await.unwrap_or_default();
        let mut caches = Vec::new();
        for s in stats {
            // Keys and memory as the shared tier reports them (memory measured with Redis
            // MEMORY USAGE on a sample, in-process: the bytes held); 0 when it cannot answer.
            let usage = match CacheName::parse(&s.cache) {
                Some(name) => self.cache.usage(name).await.unwrap_or_default(),
                None => Default::default(),
            };
            caches.push(CacheStats {
                cache_name: s.cache.clone(),
                hits: s.hits,
                misses: s.misses,
                errors: s.errors,
                fallbacks: s.fallbacks,
                hit_rate: s.hit_rate(),
                keys: usage.keys,
                memory_bytes: usage.memory_bytes,
                l1_hits: s.l1_hits,
                loads: s.loads,
            });
        }
        Ok(Response::new(GetCacheStatsResponse {
            caches,
            backend: self.cache.backend_kind().as_str().into(),
            total_keys: info.keys,
            total_memory_bytes: info.memory_bytes,
            aggregated,
        }))
    }
}
