//! Bearer JWT verification with a pinned algorithm (HS256 here; RS256/EdDSA via JWKS is part
//! of the remaining gateway work), `exp`, `iss` and `aud` always checked. A request without a
//! token is anonymous; a request with a bad token is refused, never downgraded to anonymous.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::config::AuthConfig;
use crate::error::GatewayError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Reads published albums.
    Viewer,
    /// Also creates albums and manages its own, published or not.
    Owner,
    /// Everything, including the admin endpoints.
    Admin,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct Claims {
    pub sub: String,
    pub role: Role,
    pub exp: u64,
    pub iss: String,
    pub aud: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    Anonymous,
    User { id: String, role: Role },
}

impl Principal {
    pub fn user_id(&self) -> Option<&str> {
        match self {
            Principal::User { id, .. } => Some(id),
            Principal::Anonymous => None,
        }
    }

    pub fn is_admin(&self) -> bool {
        matches!(
            self,
            Principal::User {
                role: Role::Admin,
                ..
            }
        )
    }

    /// Admins, or the owner of the resource.
    pub fn may_manage(&self, owner_id: &str) -> bool {
        self.is_admin() || self.user_id().is_some_and(|id| id == owner_id)
    }

    pub fn require_admin(&self) -> Result<(), GatewayError> {
        match self {
            Principal::Anonymous => Err(GatewayError::Unauthenticated(
                "this endpoint needs an admin bearer token".into(),
            )),
            p if p.is_admin() => Ok(()),
            _ => Err(GatewayError::Forbidden("this endpoint is for admins")),
        }
    }

    pub fn require_owner(&self) -> Result<&str, GatewayError> {
        match self {
            Principal::Anonymous => Err(GatewayError::Unauthenticated(
                "sign in to create albums".into(),
            )),
            Principal::User {
                role: Role::Viewer, ..
            } => Err(GatewayError::Forbidden("viewers cannot create albums")),
            Principal::User { id, .. } => Ok(id),
        }
    }
}

/// Verifies tokens; cheap to clone.
#[derive(Clone)]
pub struct Verifier {
    /// No secret configured: every token is refused (an empty HMAC key would accept forgeries).
    enabled: bool,
    key: DecodingKey,
    validation: Validation,
}

impl Verifier {
    pub fn new(config: &AuthConfig) -> Self {
        // Pinned: a token naming another algorithm (including "none") fails validation.
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_issuer(&[&config.issuer]);
        validation.set_audience(&[&config.audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.leeway = 30;
        let enabled = !config.hs256_secret.is_empty();
        // With no secret the key is never used (every token is refused before decoding).
        let secret = if enabled {
            config.hs256_secret.expose().as_bytes()
        } else {
            b"unused"
        };
        Self {
            enabled,
            key: DecodingKey::from_secret(secret).expect("a non-empty HMAC secret is a valid key"),
            validation,
        }
    }

    pub fn principal(&self, authorization: Option<&str>) -> Result<Principal, GatewayError> {
        let Some(value) = authorization else {
            return Ok(Principal::Anonymous);
        };
        let token = value.strip_prefix("Bearer ").ok_or_else(|| {
            GatewayError::Unauthenticated(
                "the Authorization header must be `Bearer <token>`".into(),
            )
        })?;
        if !self.enabled {
            return Err(GatewayError::Unauthenticated(
                "bearer tokens are not accepted: auth.hs256_secret is not configured".into(),
            ));
        }
        let data = jsonwebtoken::decode::<Claims>(token.trim(), &self.key, &self.validation)
            .map_err(|e| GatewayError::Unauthenticated(format!("invalid bearer token: {e}")))?;
        Ok(Principal::User {
            id: data.claims.sub,
            role: data.claims.role,
        })
    }
}

/// Issues an HS256 token (the embedded run prints one for local use; tests mint their own).
pub fn issue(
    config: &AuthConfig,
    sub: &str,
    role: Role,
    ttl_secs: u64,
) -> Result<String, jsonwebtoken::errors::Error> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    let claims = Claims {
        sub: sub.to_owned(),
        role,
        exp: now + ttl_secs,
        iss: config.issuer.clone(),
        aud: config.audience.clone(),
    };
    let key = EncodingKey::from_secret(config.hs256_secret.expose().as_bytes())?;
    jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &key)
}

impl<S> FromRequestParts<S> for Principal
where
    S: Send + Sync,
    Verifier: axum::extract::FromRef<S>,
{
    type Rejection = GatewayError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let verifier = <Verifier as axum::extract::FromRef<S>>::from_ref(state);
        let header = match parts.headers.get(axum::http::header::AUTHORIZATION) {
            Some(v) => Some(v.to_str().map_err(|_| {
                GatewayError::Unauthenticated("the Authorization header is not valid text".into())
            })?),
            None => None,
        };
        verifier.principal(header)
    }
}
