//! Bearer JWT verification with jsonwebtoken: HS256 with a shared secret and RS256/EdDSA with
//! the keys of a JWKS file, each key pinned to one algorithm; `exp`, `iss`, `aud` and `sub`
//! always checked. A request without a token is anonymous; a request with a bad token is
//! refused, never downgraded to anonymous.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use jsonwebtoken::jwk::{
    AlgorithmParameters, EllipticCurve, Jwk, JwkSet, KeyAlgorithm, PublicKeyUse,
};
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

/// A verification key from the JWKS file, pinned to one algorithm.
struct SetKey {
    kid: Option<String>,
    algorithm: Algorithm,
    key: DecodingKey,
}

struct Keys {
    /// None: HS256 tokens are refused (an empty HMAC key would accept forgeries).
    hmac: Option<DecodingKey>,
    set: Vec<SetKey>,
    validation: Validation,
}

/// Verifies tokens; cheap to clone.
#[derive(Clone)]
pub struct Verifier {
    keys: std::sync::Arc<Keys>,
}

/// The algorithm a JWK may verify: its own `alg` if it names one, else the only one this
/// gateway accepts for its key type. Anything else is refused when the file is loaded.
fn pinned_algorithm(jwk: &Jwk) -> Result<Algorithm, String> {
    let kid = jwk.common.key_id.as_deref().unwrap_or("(no kid)");
    let by_type = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => Algorithm::RS256,
        AlgorithmParameters::OctetKeyPair(p) if p.curve == EllipticCurve::Ed25519 => {
            Algorithm::EdDSA
        }
        _ => {
            return Err(format!(
                "key {kid}: only RSA (RS256) and Ed25519 (EdDSA) keys are accepted"
            ));
        }
    };
    match jwk.common.key_algorithm {
        None => Ok(by_type),
        Some(KeyAlgorithm::RS256) if by_type == Algorithm::RS256 => Ok(by_type),
        Some(KeyAlgorithm::EdDSA) if by_type == Algorithm::EdDSA => Ok(by_type),
        Some(other) => Err(format!(
            "key {kid}: alg {other:?} is not accepted for this key type (RS256 for RSA, EdDSA for Ed25519)"
        )),
    }
}

/// Reads a JWK set (RFC 7517 JSON) of RS256 and EdDSA verification keys.
fn load_set(path: &str) -> Result<Vec<SetKey>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {path}: {e}"))?;
    let set: JwkSet =
        serde_json::from_str(&text).map_err(|e| format!("{path} is not a JWK set: {e}"))?;
    let mut keys = Vec::new();
    for jwk in &set.keys {
        if jwk.common.public_key_use == Some(PublicKeyUse::Encryption) {
            continue;
        }
        let algorithm = pinned_algorithm(jwk)?;
        let key = DecodingKey::from_jwk(jwk).map_err(|e| {
            format!(
                "key {}: {e}",
                jwk.common.key_id.as_deref().unwrap_or("(no kid)")
            )
        })?;
        keys.push(SetKey {
            kid: jwk.common.key_id.clone(),
            algorithm,
            key,
        });
    }
    if keys.is_empty() {
        return Err(format!("{path} holds no signature verification key"));
    }
    Ok(keys)
}

impl Verifier {
    /// Fails (naming the problem) when `auth.jwks_path` is set but unusable.
    pub fn new(config: &AuthConfig) -> Result<Self, String> {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_issuer(&[&config.issuer]);
        validation.set_audience(&[&config.audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.leeway = 30;
        let hmac = if config.hs256_secret.is_empty() {
            None
        } else {
            Some(
                DecodingKey::from_secret(config.hs256_secret.expose().as_bytes())
                    .map_err(|e| format!("auth.hs256_secret: {e}"))?,
            )
        };
        let set = if config.jwks_path.is_empty() {
            Vec::new()
        } else {
            load_set(&config.jwks_path)?
        };
        Ok(Self {
            keys: std::sync::Arc::new(Keys {
                hmac,
                set,
                validation,
            }),
        })
    }

    /// The key for a token's header. The algorithm comes from the key, never from the token:
    /// a token naming another algorithm than its key's (including `none`) is refused.
    fn key_for(&self, header: &Header) -> Result<(&DecodingKey, Algorithm), GatewayError> {
        let refuse = |m: String| GatewayError::Unauthenticated(m);
        match header.alg {
            Algorithm::HS256 => match &self.keys.hmac {
                Some(key) => Ok((key, Algorithm::HS256)),
                None => Err(refuse(
                    "HS256 bearer tokens are not accepted: auth.hs256_secret is not configured"
                        .into(),
                )),
            },
            alg @ (Algorithm::RS256 | Algorithm::EdDSA) => {
                let mut candidates = self.keys.set.iter().filter(|k| {
                    k.algorithm == alg
                        && (header.kid.is_none() || k.kid.as_deref() == header.kid.as_deref())
                });
                match (candidates.next(), candidates.next()) {
                    (Some(k), None) => Ok((&k.key, alg)),
                    (Some(_), Some(_)) => Err(refuse(format!(
                        "the token has no kid and the key set holds several {alg:?} keys"
                    ))),
                    (None, _) => Err(refuse(match &header.kid {
                        Some(kid) => format!("no {alg:?} key with kid {kid:?} in the key set"),
                        None => format!("no {alg:?} key in the key set"),
                    })),
                }
            }
            other => Err(refuse(format!(
                "tokens signed with {other:?} are not accepted: use HS256, RS256 or EdDSA"
            ))),
        }
    }

    pub fn principal(&self, authorization: Option<&str>) -> Result<Principal, GatewayError> {
        let Some(value) = authorization else {
            return Ok(Principal::Anonymous);
        };
        let token = value
            .strip_prefix("Bearer ")
            .ok_or_else(|| {
                GatewayError::Unauthenticated(
                    "the Authorization header must be `Bearer <token>`".into(),
                )
            })?
            .trim();
        let invalid = |e: jsonwebtoken::errors::Error| {
            GatewayError::Unauthenticated(format!("invalid bearer token: {e}"))
        };
        let header = jsonwebtoken::decode_header(token).map_err(invalid)?;
        let (key, algorithm) = self.key_for(&header)?;
        let mut validation = self.keys.validation.clone();
        validation.algorithms = vec![algorithm];
        let data = jsonwebtoken::decode::<Claims>(token, key, &validation).map_err(invalid)?;
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

/// The verification `ratelimit::admit` already did, kept on the request so handlers do not
/// verify the token a second time.
#[derive(Clone)]
pub struct Authenticated(Result<Principal, String>);

impl Authenticated {
    pub fn new(result: Result<Principal, GatewayError>) -> Self {
        Self(result.map_err(|e| e.to_string()))
    }
}

impl Verifier {
    pub fn from_headers(&self, headers: &axum::http::HeaderMap) -> Result<Principal, GatewayError> {
        let header = match headers.get(axum::http::header::AUTHORIZATION) {
            Some(v) => Some(v.to_str().map_err(|_| {
                GatewayError::Unauthenticated("the Authorization header is not valid text".into())
            })?),
            None => None,
        };
        self.principal(header)
    }
}

impl<S> FromRequestParts<S> for Principal
where
    S: Send + Sync,
    Verifier: axum::extract::FromRef<S>,
{
    type Rejection = GatewayError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        if let Some(Authenticated(result)) = parts.extensions.get::<Authenticated>() {
            return result.clone().map_err(GatewayError::Unauthenticated);
        }
        <Verifier as axum::extract::FromRef<S>>::from_ref(state).from_headers(&parts.headers)
    }
}

/// Key material for tests: generated key pairs and a JWKS file of their public halves.
#[cfg(test)]
pub(crate) mod test_keys {
    use aws_lc_rs::encoding::{AsDer, Pkcs8V1Der};
    use base64::Engine;
    use jsonwebtoken::jwk::{Jwk, JwkSet};
    use jsonwebtoken::{Algorithm, EncodingKey};

    pub fn rsa() -> EncodingKey {
        let pair = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).unwrap();
        let der: Pkcs8V1Der<'_> = pair.as_der().unwrap();
        let b64 = base64::engine::general_purpose::STANDARD.encode(der.as_ref());
        let pem = format!("-----BEGIN PRIVATE KEY-----\n{b64}\n-----END PRIVATE KEY-----\n");
        EncodingKey::from_rsa_pem(pem.as_bytes()).unwrap()
    }

    pub fn ed25519() -> EncodingKey {
        let pair = aws_lc_rs::signature::Ed25519KeyPair::generate().unwrap();
        EncodingKey::from_ed_der(pair.to_pkcs8v1().unwrap().as_ref())
    }

    pub fn jwk(key: &EncodingKey, alg: Algorithm, kid: &str) -> Jwk {
        let mut jwk = Jwk::from_encoding_key(key, alg).unwrap();
        jwk.common.key_id = Some(kid.to_owned());
        jwk
    }

    pub fn write_set(dir: &std::path::Path, keys: Vec<Jwk>) -> String {
        let path = dir.join("jwks.json");
        std::fs::write(&path, serde_json::to_string(&JwkSet { keys }).unwrap()).unwrap();
        path.display().to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::test_keys::*;
    use super::*;
    use photos_runtime::Secret;

    const SECRET: &str = "an-hs256-test-secret-of-at-least-32-bytes";

    fn claims(config: &AuthConfig, sub: &str, ttl: i64) -> Claims {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        Claims {
            sub: sub.into(),
            role: Role::Owner,
            exp: (now + ttl) as u64,
            iss: config.issuer.clone(),
            aud: config.audience.clone(),
        }
    }

    fn sign(alg: Algorithm, kid: Option<&str>, claims: &Claims, key: &EncodingKey) -> String {
        let mut header = Header::new(alg);
        header.kid = kid.map(str::to_owned);
        format!(
            "Bearer {}",
            jsonwebtoken::encode(&header, claims, key).unwrap()
        )
    }

    struct Fixture {
        _dir: tempfile::TempDir,
        config: AuthConfig,
        rsa: EncodingKey,
        ed: EncodingKey,
    }

    fn fixture() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let (rsa, ed) = (rsa(), ed25519());
        let jwks_path = write_set(
            dir.path(),
            vec![
                jwk(&rsa, Algorithm::RS256, "rsa-1"),
                jwk(&ed, Algorithm::EdDSA, "ed-1"),
            ],
        );
        let config = AuthConfig {
            hs256_secret: Secret::new(SECRET),
            jwks_path,
            ..AuthConfig::default()
        };
        Fixture {
            _dir: dir,
            config,
            rsa,
            ed,
        }
    }

    fn user(id: &str) -> Principal {
        Principal::User {
            id: id.into(),
            role: Role::Owner,
        }
    }

    #[test]
    fn rs256_eddsa_and_hs256_tokens_verify_with_their_keys() {
        let f = fixture();
        let v = Verifier::new(&f.config).unwrap();
        let c = claims(&f.config, "alice", 600);
        let hmac = EncodingKey::from_secret(SECRET.as_bytes()).unwrap();
        for (what, token) in [
            ("rs256", sign(Algorithm::RS256, Some("rsa-1"), &c, &f.rsa)),
            ("eddsa", sign(Algorithm::EdDSA, Some("ed-1"), &c, &f.ed)),
            // One key per algorithm: a token without kid finds it.
            (
                "rs256 without kid",
                sign(Algorithm::RS256, None, &c, &f.rsa),
            ),
            ("hs256", sign(Algorithm::HS256, None, &c, &hmac)),
        ] {
            assert_eq!(v.principal(Some(&token)).unwrap(), user("alice"), "{what}");
        }
    }

    #[test]
    fn wrong_keys_algorithms_and_claims_are_refused() {
        let f = fixture();
        let v = Verifier::new(&f.config).unwrap();
        let c = claims(&f.config, "alice", 600);
        let stranger = rsa();
        let mut wrong_issuer = claims(&f.config, "alice", 600);
        wrong_issuer.iss = "someone-else".into();
        let refused = [
            (
                "another key under a known kid",
                sign(Algorithm::RS256, Some("rsa-1"), &c, &stranger),
            ),
            (
                "unknown kid",
                sign(Algorithm::RS256, Some("rsa-9"), &c, &f.rsa),
            ),
            // The RSA key's kid with the Ed25519 algorithm: keys are pinned to one algorithm.
            (
                "kid of another algorithm",
                sign(Algorithm::EdDSA, Some("rsa-1"), &c, &f.ed),
            ),
            (
                "expired",
                sign(
                    Algorithm::EdDSA,
                    Some("ed-1"),
                    &claims(&f.config, "alice", -600),
                    &f.ed,
                ),
            ),
            (
                "wrong issuer",
                sign(Algorithm::RS256, Some("rsa-1"), &wrong_issuer, &f.rsa),
            ),
            (
                "algorithm outside the pinned set",
                sign(
                    Algorithm::HS384,
                    None,
                    &c,
                    &EncodingKey::from_secret(SECRET.as_bytes()).unwrap(),
                ),
            ),
        ];
        for (what, token) in refused {
            assert!(
                matches!(
                    v.principal(Some(&token)),
                    Err(GatewayError::Unauthenticated(_))
                ),
                "{what} was accepted"
            );
        }
    }

    #[test]
    fn without_a_secret_hs256_tokens_are_refused_even_keyed_with_a_public_key() {
        let mut f = fixture();
        f.config.hs256_secret = Secret::default();
        let v = Verifier::new(&f.config).unwrap();
        // The classic confusion: an HMAC over the token keyed with public key material.
        let jwks = std::fs::read(&f.config.jwks_path).unwrap();
        let token = sign(
            Algorithm::HS256,
            Some("rsa-1"),
            &claims(&f.config, "mallory", 600),
            &EncodingKey::from_secret(&jwks).unwrap(),
        );
        let err = v.principal(Some(&token)).unwrap_err();
        assert!(err.to_string().contains("hs256_secret"), "{err}");
    }

    #[test]
    fn unusable_key_sets_are_refused_at_start() {
        let dir = tempfile::tempdir().unwrap();
        let load = |text: &str| {
            let path = dir.path().join("set.json");
            std::fs::write(&path, text).unwrap();
            Verifier::new(&AuthConfig {
                jwks_path: path.display().to_string(),
                ..AuthConfig::default()
            })
        };
        let ed = ed25519();
        let mut mislabeled = jwk(&ed, Algorithm::EdDSA, "ed");
        mislabeled.common.key_algorithm = Some(KeyAlgorithm::RS256);
        for (what, text) in [
            ("not json", "{".to_owned()),
            ("no keys", r#"{"keys":[]}"#.to_owned()),
            (
                "an HMAC key",
                r#"{"keys":[{"kty":"oct","k":"c2VjcmV0","kid":"h"}]}"#.to_owned(),
            ),
            (
                "alg not matching the key type",
                serde_json::to_string(&JwkSet {
                    keys: vec![mislabeled.clone()],
                })
                .unwrap(),
            ),
        ] {
            assert!(load(&text).is_err(), "{what} was accepted");
        }
        let missing = Verifier::new(&AuthConfig {
            jwks_path: "/nonexistent/jwks.json".into(),
            ..AuthConfig::default()
        });
        assert!(missing.err().unwrap().contains("cannot read"));
    }
}
