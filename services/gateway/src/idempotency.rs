//! `Idempotency-Key` for uploads, after draft-ietf-httpapi-idempotency-key-header: a retry with
//! the same key and the same request gets the first outcome again (the same photo and status,
//! with fresh links); the same key with a different request is refused with 422; a retry while
//! the first request is still running gets 409.
//!
//! Keys are records in the shared cache (`photos-cache`, `put_record_if_absent`: atomic across
//! processes, never held in a replica's L1): with `cache.url` (Redis) or `cache.cluster_nodes`
//! every gateway replica sees every key; without, the store is this process's memory. If Redis
//! cannot be reached the upload runs without the key's protection (logged): a retry still ends
//! on the same photo through the catalog's uniqueness on (album, content hash), answered 200
//! instead of 201, but a reused key with a different body is not caught.

use std::time::Duration;

use photos_cache::{CacheKey, NamedCache};
use serde::{Deserialize, Serialize};

use crate::error::GatewayError;

/// How long a claim of a running request holds its key if its replica dies before finishing
/// or releasing it (a finished request's outcome is kept for `idempotency_ttl_seconds`).
const RUNNING_TTL: Duration = Duration::from_secs(15 * 60);

/// Key family in the shared cache; keys are scoped to the user, so two users' keys never
/// collide.
const FAMILY: &str = "idempotency";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
enum Record {
    /// A request holds the key; `claim` is its random id, so only it releases the key.
    Running {
        claim: u128,
    },
    Done(Outcome),
}

/// What a completed request produced, enough to answer a replay.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outcome {
    /// SHA-256 over what identifies the request (album, form fields, file bytes).
    pub fingerprint: [u8; 32],
    pub status: u16,
    pub photo_id: String,
}

#[derive(Clone)]
pub struct Idempotency {
    records: NamedCache,
    ttl: Duration,
}

pub enum Claim {
    /// First use of the key: run the request, then `complete` the ticket.
    Fresh(Ticket),
    Running,
    Done(Outcome),
    /// The shared store cannot be reached: run the request unprotected.
    Unavailable,
}

/// The right to run the request for a key. Dropped without `complete` (the request failed or
/// its client went away), it frees the key so a retry can run.
pub struct Ticket {
    records: NamedCache,
    key: CacheKey,
    claim: u128,
    ttl: Duration,
    completed: bool,
}

impl Ticket {
    pub async fn complete(mut self, outcome: Outcome) {
        self.completed = true;
        if let Err(e) = self
            .records
            .put_record(&self.key, &Record::Done(outcome), self.ttl)
            .await
        {
            // The claim expires by itself (RUNNING_TTL); until then a retry gets 409.
            tracing::warn!(error = %e, "could not record an idempotent upload's outcome");
        }
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if self.completed {
            return;
        }
        let (records, key) = (self.records.clone(), self.key.clone());
        let mine = Record::Running { claim: self.claim };
        // Drop cannot wait; the release is one atomic compare-and-delete, so it cannot remove
        // a successor's claim. Without a runtime (shutdown) the claim expires instead.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                if let Err(e) = records.delete_record_if(&key, &mine).await {
                    tracing::warn!(error = %e, "could not release an idempotency key; it expires by itself");
                }
            });
        }
    }
}

/// The header's value: 1 to 255 visible ASCII characters, optionally as a quoted string
/// (the draft defines it as a structured-field string; most clients send it bare).
pub fn parse_key(value: &axum::http::HeaderValue) -> Result<String, GatewayError> {
    let invalid = || GatewayError::Rejected {
        status: 400,
        message: "the Idempotency-Key header must be 1 to 255 visible ASCII characters".into(),
    };
    let text = value.to_str().map_err(|_| invalid())?.trim();
    let key = text
        .strip_prefix('"')
        .and_then(|t| t.strip_suffix('"'))
        .unwrap_or(text);
    if key.is_empty() || key.len() > 255 || !key.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(invalid());
    }
    Ok(key.to_owned())
}

fn random_claim() -> u128 {
    uuid::Uuid::new_v4().as_u128()
}

impl Idempotency {
    /// `records`: the shared cache's session cache; `ttl`: how long an outcome is replayed.
    pub fn new(records: NamedCache, ttl: Duration) -> Self {
        Self { records, ttl }
    }

    pub async fn claim(&self, user: &str, key: &str) -> Claim {
        let cache_key = self.records.key(FAMILY).user(user).part(key).build();
        let claim = random_claim();
        match self
            .records
            .put_record_if_absent(&cache_key, &Record::Running { claim }, RUNNING_TTL)
            .await
        {
            Ok(None) => Claim::Fresh(Ticket {
                records: self.records.clone(),
                key: cache_key,
                claim,
                ttl: self.ttl,
                completed: false,
            }),
            Ok(Some(Record::Running { .. })) => Claim::Running,
            Ok(Some(Record::Done(outcome))) => Claim::Done(outcome),
            Err(e) => {
                tracing::warn!(error = %e, "idempotency store unavailable; the upload runs without its key's protection");
                Claim::Unavailable
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use photos_cache::{Cache, CacheName};

    fn outcome(photo: &str) -> Outcome {
        Outcome {
            fingerprint: [7; 32],
            status: 201,
            photo_id: photo.to_owned(),
        }
    }

    async fn store() -> Idempotency {
        Idempotency::new(
            Cache::memory().await.named(CacheName::Sessions),
            Duration::from_secs(60),
        )
    }

    #[tokio::test]
    async fn a_key_runs_once_then_replays_its_outcome() {
        let store = store().await;
        let Claim::Fresh(ticket) = store.claim("alice", "k1").await else {
            panic!("first claim must be fresh");
        };
        assert!(matches!(store.claim("alice", "k1").await, Claim::Running));
        // Another user's identical key is a different key.
        assert!(matches!(store.claim("bob", "k1").await, Claim::Fresh(_)));
        ticket.complete(outcome("42")).await;
        match store.claim("alice", "k1").await {
            Claim::Done(o) => assert_eq!(o, outcome("42")),
            _ => panic!("completed key must replay"),
        }
    }

    #[tokio::test]
    async fn an_abandoned_ticket_frees_its_key() {
        let store = store().await;
        let Claim::Fresh(ticket) = store.claim("alice", "k").await else {
            panic!("fresh");
        };
        drop(ticket);
        // The release runs on the runtime; it is one compare-and-delete.
        for _ in 0..100 {
            if matches!(store.claim("alice", "k").await, Claim::Fresh(_)) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("the abandoned key was never freed");
    }

    #[test]
    fn keys_are_visible_ascii_optionally_quoted() {
        let parse = |v: &str| parse_key(&axum::http::HeaderValue::from_str(v).unwrap());
        assert_eq!(parse("abc-123").unwrap(), "abc-123");
        assert_eq!(parse("\"8e03978e-40d5\"").unwrap(), "8e03978e-40d5");
        assert!(parse("").is_err());
        assert!(parse("two words").is_err());
        assert!(parse(&"x".repeat(256)).is_err());
    }
}
