//! Opaque keyset page tokens: `base64url(position) . base64url(HMAC-SHA256(scope, position))`
//! truncated to 16 bytes. The MAC covers the listing's scope (kind and filters), so a token is
//! refused if it was edited or if it is replayed against a different listing.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::Mac;

type HmacSha256 = hmac::Hmac<sha2::Sha256>;

const TAG_BYTES: usize = 16;
/// Tokens are tiny; anything longer is not one of ours and is refused before decoding.
const MAX_TOKEN_CHARS: usize = 256;

/// The last row of a page: the next page starts strictly after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    pub order: i64,
    pub created_at: i64,
    pub id: i64,
}

#[derive(Debug, Clone)]
pub struct TokenKey(std::sync::Arc<[u8]>);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("page_token is malformed or was not issued for this listing; start again without it")]
pub struct BadToken;

impl TokenKey {
    pub fn new(secret: &[u8]) -> Self {
        TokenKey(secret.into())
    }

    fn mac(&self, scope: &str, payload: &[u8]) -> HmacSha256 {
        let mut mac = HmacSha256::new_from_slice(&self.0).expect("HMAC accepts any key length");
        mac.update(scope.as_bytes());
        mac.update(b"\n");
        mac.update(payload);
        mac
    }

    pub fn encode(&self, scope: &str, position: Position) -> String {
        let payload = format!("{}|{}|{}", position.order, position.created_at, position.id);
        let tag = self.mac(scope, payload.as_bytes()).finalize().into_bytes();
        format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(payload),
            URL_SAFE_NO_PAD.encode(&tag[..TAG_BYTES])
        )
    }

    /// `None` for an empty token (the first page).
    pub fn decode(&self, scope: &str, token: &str) -> Result<Option<Position>, BadToken> {
        if token.is_empty() {
            return Ok(None);
        }
        if token.len() > MAX_TOKEN_CHARS {
            return Err(BadToken);
        }
        let (payload, tag) = token.split_once('.').ok_or(BadToken)?;
        let payload = URL_SAFE_NO_PAD.decode(payload).map_err(|_| BadToken)?;
        let tag = URL_SAFE_NO_PAD.decode(tag).map_err(|_| BadToken)?;
        if tag.len() != TAG_BYTES {
            return Err(BadToken);
        }
        self.mac(scope, &payload)
            .verify_truncated_left(&tag)
            .map_err(|_| BadToken)?;
        let text = std::str::from_utf8(&payload).map_err(|_| BadToken)?;
        let mut parts = text.split('|').map(|p| p.parse::<i64>());
        match (parts.next(), parts.next(), parts.next(), parts.next()) {
            (Some(Ok(order)), Some(Ok(created_at)), Some(Ok(id)), None) => Ok(Some(Position {
                order,
                created_at,
                id,
            })),
            _ => Err(BadToken),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: Position = Position {
        order: 3,
        created_at: 1_700_000_000_000_000,
        id: 42,
    };

    #[test]
    fn round_trips_within_its_scope() {
        let key = TokenKey::new(b"k");
        let token = key.encode("albums|all", P);
        assert_eq!(key.decode("albums|all", &token), Ok(Some(P)));
        assert_eq!(key.decode("albums|all", ""), Ok(None));
    }

    #[test]
    fn refuses_other_scopes_keys_and_edits() {
        let key = TokenKey::new(b"k");
        let token = key.encode("albums|all", P);
        assert_eq!(key.decode("albums|published", &token), Err(BadToken));
        assert_eq!(
            TokenKey::new(b"other").decode("albums|all", &token),
            Err(BadToken)
        );
        let (payload, tag) = token.split_once('.').unwrap();
        let forged = URL_SAFE_NO_PAD.encode("0|0|1");
        assert_eq!(
            key.decode("albums|all", &format!("{forged}.{tag}")),
            Err(BadToken)
        );
        assert_eq!(key.decode("albums|all", payload), Err(BadToken));
        assert_eq!(key.decode("albums|all", "!!.??"), Err(BadToken));
        assert_eq!(key.decode("albums|all", &"a".repeat(1000)), Err(BadToken));
    }
}
