//! Named caches and the TTL policies the seed used, as constants.

use std::time::Duration;

/// The three named caches. Each has its own key segment and default TTL.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CacheName {
    Default,
    Thumbnails,
    Sessions,
}

impl CacheName {
    pub const ALL: [CacheName; 3] = [
        CacheName::Default,
        CacheName::Thumbnails,
        CacheName::Sessions,
    ];

    /// The key segment (and the name reported in stats).
    pub fn as_str(self) -> &'static str {
        match self {
            CacheName::Default => "default",
            CacheName::Thumbnails => "thumbnails",
            CacheName::Sessions => "sessions",
        }
    }

    pub fn parse(s: &str) -> Option<CacheName> {
        CacheName::ALL.into_iter().find(|n| n.as_str() == s)
    }

    /// TTL when a caller does not name a policy.
    pub fn default_policy(self) -> Policy {
        match self {
            CacheName::Default => Policy::new(Duration::from_secs(5 * 60)),
            CacheName::Thumbnails => THUMBNAILS,
            CacheName::Sessions => Policy::new(Duration::from_secs(24 * 3600)),
        }
    }
}

/// How long an entry lives and how early a hot entry is refreshed before it expires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    pub ttl: Duration,
    /// A read within this window before expiry reloads the entry (one reader per process does
    /// so; the others keep getting the current value), so a hot key never expires under load.
    pub refresh_ahead: Duration,
}

impl Policy {
    /// `refresh_ahead` defaults to a tenth of the TTL.
    pub const fn new(ttl: Duration) -> Policy {
        Policy {
            ttl,
            refresh_ahead: Duration::from_millis(ttl.as_millis() as u64 / 10),
        }
    }

    pub const fn with_refresh_ahead(self, refresh_ahead: Duration) -> Policy {
        Policy {
            ttl: self.ttl,
            refresh_ahead,
        }
    }
}

/// Album list pages: 30 minutes (seed).
pub const ALBUM_LIST: Policy = Policy::new(Duration::from_secs(30 * 60));
/// One album's detail: 15 minutes (seed).
pub const ALBUM_DETAIL: Policy = Policy::new(Duration::from_secs(15 * 60));
/// Photo pages and photo detail: 1 hour (seed).
pub const PHOTOS: Policy = Policy::new(Duration::from_secs(3600));
/// Thumbnail metadata: 24 hours (seed).
pub const THUMBNAILS: Policy = Policy::new(Duration::from_secs(24 * 3600));
/// Statistics: 5 minutes (seed).
pub const STATS: Policy = Policy::new(Duration::from_secs(5 * 60));
