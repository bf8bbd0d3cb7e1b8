//! Minting development tokens from a symmetric secret (`mcpgate token`, `mcpgate demo`),
//! like an identity provider's "test token" command. Never used on the request path.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::json;

/// What to put in a development token.
#[derive(Debug, Clone)]
pub struct TokenRequest {
    /// The `sub` claim.
    pub subject: String,
    /// Space-joined into the `scope` claim; empty gives an empty `scope`.
    pub scopes: Vec<String>,
    /// The `aud` claim: the resource the token is for.
    pub audience: String,
    /// The `iss` claim; `None` leaves it out.
    pub issuer: Option<String>,
    /// The `client_id` claim (RFC 9068); `None` leaves it out.
    pub client_id: Option<String>,
    /// From `iat` to `exp`, whole seconds.
    pub lifetime: Duration,
    /// The header's `kid`; `None` leaves it out.
    pub key_id: Option<String>,
    /// An HMAC algorithm (HS256, HS384, HS512): the token is signed with a shared secret.
    pub algorithm: Algorithm,
}

/// Signs a JWT access token (`typ: at+jwt`, RFC 9068) with `secret`.
pub fn mint(secret: &[u8], request: &TokenRequest) -> Result<String, jsonwebtoken::errors::Error> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let mut header = Header::new(request.algorithm);
    header.typ = Some("at+jwt".to_owned());
    header.kid = request.key_id.clone();
    let mut claims = json!({
        "sub": request.subject,
        "aud": request.audience,
        "iat": now,
        "nbf": now,
        "exp": now + request.lifetime.as_secs(),
        "scope": request.scopes.join(" "),
    });
    if let Some(map) = claims.as_object_mut() {
        if let Some(issuer) = &request.issuer {
            map.insert("iss".to_owned(), json!(issuer));
        }
        if let Some(client_id) = &request.client_id {
            map.insert("client_id".to_owned(), json!(client_id));
        }
    }
    jsonwebtoken::encode(&header, &claims, &EncodingKey::from_secret(secret))
}
