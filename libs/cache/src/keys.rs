//! The one key builder. A logical [`CacheKey`] names the cache, the key family, optional user
//! scope, the parts, and the generation scopes it depends on; the cache turns it into a physical
//! Redis key `{prefix}:{version}:{cache}:{family}:g{global}.{dep gens}:{user/parts}` at use
//! time, so bumping a scope's generation orphans every dependent key in O(1).

use std::fmt::Write as _;

use crate::policy::CacheName;

/// Generation scope bumped for every album-list page when any album changes.
pub const ALBUM_LISTS_SCOPE: &str = "albums";

/// The generation scope of one album (its detail and photo pages depend on it).
pub fn album_scope(album_id: &str) -> String {
    format!("album:{}", escape(album_id))
}

/// Escapes `:` (the separator), `%` and glob metacharacters so distinct parts never collide
/// and admin glob patterns stay meaningful.
pub(crate) fn escape(part: &str) -> String {
    let mut out = String::with_capacity(part.len());
    for c in part.chars() {
        match c {
            ':' | '%' | '*' | '?' | '[' | ']' | '\\' | ' ' => {
                let _ = write!(out, "%{:02X}", c as u32);
            }
            c => out.push(c),
        }
    }
    out
}

/// A logical cache key; see the module docs for its physical form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheKey {
    pub(crate) cache: CacheName,
    pub(crate) family: &'static str,
    /// `u={user}:{parts}` or just `{parts}`, escaped.
    pub(crate) tail: String,
    pub(crate) deps: Vec<String>,
}

impl CacheKey {
    pub fn cache(&self) -> CacheName {
        self.cache
    }

    /// The key family (e.g. `album`, `album-list`): the unit of stats and pattern invalidation.
    pub fn family(&self) -> &'static str {
        self.family
    }

    pub fn deps(&self) -> &[String] {
        &self.deps
    }
}

/// Builds a [`CacheKey`]: `KeyBuilder::new(CacheName::Default, "album").part(id).album(id).build()`.
#[derive(Debug, Clone)]
pub struct KeyBuilder {
    key: CacheKey,
    user: Option<String>,
    parts: Vec<String>,
}

impl KeyBuilder {
    pub fn new(cache: CacheName, family: &'static str) -> KeyBuilder {
        KeyBuilder {
            key: CacheKey {
                cache,
                family,
                tail: String::new(),
                deps: Vec::new(),
            },
            user: None,
            parts: Vec::new(),
        }
    }

    pub fn part(mut self, part: impl std::fmt::Display) -> Self {
        self.parts.push(escape(&part.to_string()));
        self
    }

    /// Scopes the key to one user (e.g. a page that depends on the viewer's permissions).
    pub fn user(mut self, user_id: impl std::fmt::Display) -> Self {
        self.user = Some(escape(&user_id.to_string()));
        self
    }

    /// Makes the key depend on a generation scope: bumping it orphans this key.
    pub fn scope(mut self, scope: impl Into<String>) -> Self {
        self.key.deps.push(scope.into());
        self
    }

    /// Depends on one album's generation (its detail, its photo pages).
    pub fn album(self, album_id: &str) -> Self {
        self.scope(album_scope(album_id))
    }

    /// Depends on the generation shared by every album list page.
    pub fn album_lists(self) -> Self {
        self.scope(ALBUM_LISTS_SCOPE)
    }

    pub fn build(mut self) -> CacheKey {
        let mut tail = String::new();
        if let Some(user) = &self.user {
            tail.push_str("u=");
            tail.push_str(user);
        }
        for part in &self.parts {
            if !tail.is_empty() {
                tail.push(':');
            }
            tail.push_str(part);
        }
        self.key.tail = tail;
        self.key
    }
}

/// Physical-key layout shared by every backend.
#[derive(Debug, Clone)]
pub struct KeySpace {
    pub prefix: String,
    pub version: u32,
    /// Keys longer than this have their user/parts tail replaced by a blake3 hash.
    pub max_key_len: usize,
}

impl KeySpace {
    pub fn physical(&self, key: &CacheKey, gens: &[u64], global: u64) -> String {
        let mut out = String::with_capacity(64 + key.tail.len());
        let _ = write!(
            out,
            "{}:v{}:{}:{}:g{}",
            self.prefix,
            self.version,
            key.cache.as_str(),
            key.family,
            global
        );
        for g in gens {
            let _ = write!(out, ".{g}");
        }
        out.push(':');
        if out.len() + key.tail.len() > self.max_key_len {
            out.push_str("h=");
            out.push_str(blake3::hash(key.tail.as_bytes()).to_hex().as_str());
        } else {
            out.push_str(&key.tail);
        }
        out
    }

    /// Key of a generation counter.
    pub fn generation(&self, scope: &str) -> String {
        format!("{}:v{}:gen:{}", self.prefix, self.version, scope)
    }

    pub fn global_generation(&self) -> String {
        self.generation("_global")
    }

    /// Pub/sub channel of invalidation messages.
    pub fn channel(&self) -> String {
        format!("{}:v{}:invalidate", self.prefix, self.version)
    }

    /// Set of processes sharing this cache (each with a liveness key next to it): the peers
    /// an invalidation waits for. The hash tag keeps the set and the liveness keys in one
    /// cluster slot.
    pub fn peers(&self) -> String {
        format!("{}:v{}:{{peers}}", self.prefix, self.version)
    }

    /// Hash of cross-process stats for one cache name.
    pub fn stats(&self, cache: CacheName) -> String {
        format!("{}:v{}:stats:{}", self.prefix, self.version, cache.as_str())
    }

    /// Glob matching every data key of one cache name.
    pub fn cache_pattern(&self, cache: CacheName) -> String {
        format!("{}:v{}:{}:*", self.prefix, self.version, cache.as_str())
    }
}

/// Redis-style glob match (`*`, `?`, `[abc]`, `[a-z]`, `[^a]`, `\x`), used to apply pattern
/// invalidations to the in-process tier exactly as SCAN MATCH applies them in Redis.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    // Iterative matcher with backtracking to the last `*`: linear-ish, no recursion blow-up.
    let (mut pi, mut ti) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() {
            match p[pi] {
                '*' => {
                    star = Some((pi, ti));
                    pi += 1;
                    continue;
                }
                '?' => {
                    pi += 1;
                    ti += 1;
                    continue;
                }
                '[' => {
                    if let Some((matched, next)) = class_match(&p, pi, t[ti])
                        && matched
                    {
                        pi = next;
                        ti += 1;
                        continue;
                    }
                }
                '\\' if pi + 1 < p.len() => {
                    if p[pi + 1] == t[ti] {
                        pi += 2;
                        ti += 1;
                        continue;
                    }
                }
                c => {
                    if c == t[ti] {
                        pi += 1;
                        ti += 1;
                        continue;
                    }
                }
            }
        }
        match star {
            Some((sp, st)) => {
                pi = sp + 1;
                ti = st + 1;
                star = Some((sp, st + 1));
            }
            None => return false,
        }
    }
    while pi < p.len() && p[pi] == '*' {
        pi += 1;
    }
    pi == p.len()
}

/// Matches `c` against the class starting at `p[start] == '['`; returns (matched, index after `]`).
fn class_match(p: &[char], start: usize, c: char) -> Option<(bool, usize)> {
    let mut i = start + 1;
    let negate = i < p.len() && p[i] == '^';
    if negate {
        i += 1;
    }
    let mut matched = false;
    while i < p.len() && p[i] != ']' {
        if p[i] == '\\' && i + 1 < p.len() {
            i += 1;
            matched |= p[i] == c;
            i += 1;
        } else if i + 2 < p.len() && p[i + 1] == '-' && p[i + 2] != ']' {
            let (lo, hi) = if p[i] <= p[i + 2] {
                (p[i], p[i + 2])
            } else {
                (p[i + 2], p[i])
            };
            matched |= lo <= c && c <= hi;
            i += 3;
        } else {
            matched |= p[i] == c;
            i += 1;
        }
    }
    if i >= p.len() {
        return None;
    }
    Some((matched != negate, i + 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn space() -> KeySpace {
        KeySpace {
            prefix: "photos".into(),
            version: 1,
            max_key_len: 120,
        }
    }

    #[test]
    fn physical_key_has_every_segment() {
        let key = KeyBuilder::new(CacheName::Default, "album")
            .part("42")
            .album("42")
            .build();
        assert_eq!(
            space().physical(&key, &[7], 3),
            "photos:v1:default:album:g3.7:42"
        );
        let user = KeyBuilder::new(CacheName::Sessions, "me")
            .user("u1")
            .part(5)
            .build();
        assert_eq!(
            space().physical(&user, &[], 0),
            "photos:v1:sessions:me:g0:u=u1:5"
        );
    }

    #[test]
    fn separators_in_parts_cannot_collide() {
        let a = KeyBuilder::new(CacheName::Default, "f")
            .part("a:b")
            .part("c")
            .build();
        let b = KeyBuilder::new(CacheName::Default, "f")
            .part("a")
            .part("b:c")
            .build();
        assert_ne!(space().physical(&a, &[], 0), space().physical(&b, &[], 0));
        let star = KeyBuilder::new(CacheName::Default, "f").part("*").build();
        assert_eq!(
            space().physical(&star, &[], 0),
            "photos:v1:default:f:g0:%2A"
        );
    }

    #[test]
    fn long_keys_are_hashed_and_stay_distinct() {
        let long_a = KeyBuilder::new(CacheName::Default, "search")
            .part("a".repeat(300))
            .build();
        let long_b = KeyBuilder::new(CacheName::Default, "search")
            .part("b".repeat(300))
            .build();
        let pa = space().physical(&long_a, &[], 0);
        let pb = space().physical(&long_b, &[], 0);
        assert!(pa.len() <= 120, "{pa}");
        assert!(pa.starts_with("photos:v1:default:search:g0:h="));
        assert_ne!(pa, pb);
        assert_eq!(pa, space().physical(&long_a, &[], 0));
    }

    #[test]
    fn glob_matches_like_redis() {
        assert!(glob_match("photos:*", "photos:v1:a"));
        assert!(glob_match("*:album:*", "photos:v1:default:album:g0:1"));
        assert!(!glob_match("*:album:*", "photos:v1:default:albums:g0:1"));
        assert!(glob_match("a?c", "abc"));
        assert!(!glob_match("a?c", "ac"));
        assert!(glob_match("a[bx]c", "axc"));
        assert!(!glob_match("a[^bx]c", "axc"));
        assert!(glob_match("a[a-c]d", "abd"));
        assert!(glob_match("a\\*b", "a*b"));
        assert!(!glob_match("a\\*b", "axb"));
        assert!(glob_match("*", ""));
        assert!(glob_match("**a**b", "xxaxxb"));
        assert!(!glob_match("abc", "abcd"));
    }
}
