//! `Idempotency-Key` for uploads, after draft-ietf-httpapi-idempotency-key-header: a retry with
//! the same key and the same request gets the first outcome again (the same photo and status,
//! with fresh links); the same key with a different request is refused with 422; a retry while
//! the first request is still running gets 409.
//!
//! Keys live in this replica's memory. A retry that reaches another replica still ends on the
//! same photo through the catalog's uniqueness on (album, content hash), answered 200 instead
//! of 201; what only this store adds is the 422 for a reused key with a different body.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use moka::ops::compute::Op;

use crate::error::GatewayError;

/// A key is scoped to the user who sent it: two users' keys never collide.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Scope {
    user: String,
    key: String,
}

#[derive(Debug, Clone)]
enum Entry {
    Running(u64),
    Done(Arc<Outcome>),
}

/// What a completed request produced, enough to answer a replay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// SHA-256 over what identifies the request (album, form fields, file bytes).
    pub fingerprint: [u8; 32],
    pub status: u16,
    pub photo_id: String,
}

#[derive(Clone)]
pub struct Idempotency {
    entries: moka::sync::Cache<Scope, Entry>,
    tickets: Arc<AtomicU64>,
}

pub enum Claim {
    /// First use of the key: run the request, then `complete` the ticket.
    Fresh(Ticket),
    Running,
    Done(Arc<Outcome>),
}

/// The right to run the request for a key. Dropped without `complete` (the request failed or
/// its client went away), it frees the key so a retry can run.
pub struct Ticket {
    entries: moka::sync::Cache<Scope, Entry>,
    scope: Scope,
    id: u64,
    completed: bool,
}

impl Ticket {
    pub fn complete(mut self, outcome: Outcome) {
        self.entries
            .insert(self.scope.clone(), Entry::Done(Arc::new(outcome)));
        self.completed = true;
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if self.completed {
            return;
        }
        let id = self.id;
        self.entries
            .entry(self.scope.clone())
            .and_compute_with(|current| match current.map(|e| e.into_value()) {
                Some(Entry::Running(running)) if running == id => Op::Remove,
                _ => Op::Nop,
            });
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

impl Idempotency {
    pub fn new(ttl: Duration, max_keys: u64) -> Self {
        Self {
            entries: moka::sync::Cache::builder()
                .max_capacity(max_keys)
                .time_to_live(ttl)
                .build(),
            tickets: Arc::new(AtomicU64::new(0)),
        }
    }

    pub fn claim(&self, user: &str, key: String) -> Claim {
        let scope = Scope {
            user: user.to_owned(),
            key,
        };
        let id = self.tickets.fetch_add(1, Ordering::Relaxed);
        let entry = self
            .entries
            .entry(scope.clone())
            .or_insert_with(|| Entry::Running(id));
        if entry.is_fresh() {
            return Claim::Fresh(Ticket {
                entries: self.entries.clone(),
                scope,
                id,
                completed: false,
            });
        }
        match entry.into_value() {
            Entry::Running(_) => Claim::Running,
            Entry::Done(outcome) => Claim::Done(outcome),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(photo: &str) -> Outcome {
        Outcome {
            fingerprint: [7; 32],
            status: 201,
            photo_id: photo.to_owned(),
        }
    }

    #[test]
    fn a_key_runs_once_then_replays_its_outcome() {
        let store = Idempotency::new(Duration::from_secs(60), 100);
        let Claim::Fresh(ticket) = store.claim("alice", "k1".into()) else {
            panic!("first claim must be fresh");
        };
        assert!(matches!(store.claim("alice", "k1".into()), Claim::Running));
        // Another user's identical key is a different key.
        assert!(matches!(store.claim("bob", "k1".into()), Claim::Fresh(_)));
        ticket.complete(outcome("42"));
        match store.claim("alice", "k1".into()) {
            Claim::Done(o) => assert_eq!(*o, outcome("42")),
            _ => panic!("completed key must replay"),
        }
    }

    #[test]
    fn an_abandoned_ticket_frees_its_key() {
        let store = Idempotency::new(Duration::from_secs(60), 100);
        let Claim::Fresh(ticket) = store.claim("alice", "k".into()) else {
            panic!("fresh");
        };
        drop(ticket);
        assert!(matches!(store.claim("alice", "k".into()), Claim::Fresh(_)));
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
