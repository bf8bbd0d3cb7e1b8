//! Who a verified caller is. Only `auth/` constructs a `Principal`, so holding one
//! means the credentials were checked.

use std::sync::Arc;
use std::time::SystemTime;

use serde::Serialize;

/// How the caller authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMethod {
    /// A JWT verified locally against a JWKS or a shared secret.
    Jwt,
    /// An `mcpk_` API key matched against its argon2id hash.
    ApiKey,
    /// An opaque token (or a JWT under `validation: both`) the introspection endpoint
    /// called active.
    Introspection,
}

impl AuthMethod {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Jwt => "jwt",
            Self::ApiKey => "api_key",
            Self::Introspection => "introspection",
        }
    }
}

/// A verified caller. Only `auth` makes one; elsewhere it is read, never built:
///
/// ```compile_fail
/// use mcpgate::auth::{AuthMethod, Principal, Scopes};
/// let forged = Principal {
///     issuer: None,
///     subject: Some("admin".into()),
///     client_id: None,
///     scopes: Scopes::all(),
///     expires_at: None,
///     method: AuthMethod::Jwt,
///     key_id: None,
///     api_key_id: None,
///     claims: serde_json::Map::new(),
///     grant_id: None,
/// };
/// ```
#[derive(Debug, Clone)]
pub struct Principal {
    pub(crate) issuer: Option<String>,
    pub(crate) subject: Option<String>,
    /// `client_id` claim (RFC 9068), `azp` as fallback.
    pub client_id: Option<String>,
    pub(crate) scopes: Scopes,
    pub(crate) expires_at: Option<SystemTime>,
    pub(crate) method: AuthMethod,
    /// The JWT's `kid`.
    pub key_id: Option<String>,
    /// The API key's configured id.
    pub api_key_id: Option<String>,
    /// The token's claims that `rules:` read (by top-level name), and no others: empty
    /// when no rule reads a claim, so a principal costs nothing more then.
    pub claims: serde_json::Map<String, serde_json::Value>,
    /// The `gid` claim: the grant of mcpgate's own authorization server a token
    /// belongs to, checked against revocations on every request.
    pub(crate) grant_id: Option<String>,
    /// Only `auth` makes principals: whoever holds one was verified here.
    pub(super) _verified: Verified,
}

/// The mark a [`Principal`] is made with, which only `auth` can write.
#[derive(Debug, Clone, Copy)]
pub(super) struct Verified;

#[cfg(test)]
impl Principal {
    /// A JWT caller with `subject` and `scopes`, for other modules' unit tests.
    pub(crate) fn for_tests(subject: &str, scopes: Scopes) -> Self {
        Self {
            issuer: None,
            subject: Some(subject.to_owned()),
            client_id: None,
            scopes,
            expires_at: None,
            method: AuthMethod::Jwt,
            key_id: None,
            api_key_id: None,
            claims: serde_json::Map::new(),
            grant_id: None,
            _verified: Verified,
        }
    }
}

fn shared_str<S: serde::Serializer>(value: &Arc<str>, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(value)
}

/// Granted scopes, in the order the token lists them (kept for challenges that echo
/// them), without duplicates; or every scope (an API key configured with `*`).
/// Scopes granted by `claim_scopes` follow the token's own and are also kept, with
/// the claim value that granted them, in [`Scopes::mapped`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scopes {
    listed: Vec<String>,
    all: bool,
    mapped: Vec<MappedScope>,
}

/// A scope the token did not carry but one of its claim values was mapped to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MappedScope {
    pub(crate) scope: String,
    /// The claim path, as configured (`realm_access.roles`); shared by every scope
    /// its mapping grants.
    #[serde(serialize_with = "shared_str")]
    pub claim: Arc<str>,
    /// The claim value that matched.
    pub value: String,
}

impl Scopes {
    pub(crate) fn new<I, S>(scopes: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let mut out: Vec<String> = Vec::new();
        for scope in scopes {
            let scope = scope.into();
            if !scope.is_empty() && !out.contains(&scope) {
                out.push(scope);
            }
        }
        Self {
            listed: out,
            all: false,
            mapped: Vec::new(),
        }
    }

    /// Every scope.
    pub fn all() -> Self {
        Self {
            listed: Vec::new(),
            all: true,
            mapped: Vec::new(),
        }
    }

    /// Adds scopes granted by claim mappings. One already granted (by the token or
    /// an earlier mapping) is not added again, so each mapped scope names the first
    /// claim value that granted it, and none shadows the token's own.
    pub fn add_mapped(&mut self, mapped: impl IntoIterator<Item = MappedScope>) {
        for entry in mapped {
            if entry.scope.is_empty() || self.listed.contains(&entry.scope) {
                continue;
            }
            self.listed.push(entry.scope.clone());
            self.mapped.push(entry);
        }
    }

    /// The scopes granted by claim mappings, in the order they were added (a subset
    /// of [`Scopes::iter`]).
    pub fn mapped(&self) -> &[MappedScope] {
        &self.mapped
    }

    pub(crate) fn contains(&self, scope: &str) -> bool {
        self.all || self.listed.iter().any(|granted| granted == scope)
    }

    /// The scopes listed, mapped ones included (empty for "every scope").
    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.listed.iter().map(String::as_str)
    }

    /// No scope at all: neither "every scope" nor any listed one.
    pub fn is_empty(&self) -> bool {
        !self.all && self.listed.is_empty()
    }

    /// Every scope (an API key configured with `*`).
    pub fn is_all(&self) -> bool {
        self.all
    }

    /// Space-delimited, as in the `scope` claim (`*` for every scope).
    pub fn to_claim(&self) -> String {
        if self.all {
            "*".to_owned()
        } else {
            self.listed.join(" ")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mapped(scope: &str, claim: &str, value: &str) -> MappedScope {
        MappedScope {
            scope: scope.into(),
            claim: claim.into(),
            value: value.into(),
        }
    }

    #[test]
    fn mapped_scopes_join_without_duplicates_and_keep_their_source() {
        let mut scopes = Scopes::new(["openid", "mcp:read"]);
        scopes.add_mapped([
            mapped("mcp:read", "roles", "Reader"),
            mapped("mcp:admin", "roles", "Admin"),
            mapped("mcp:admin", "groups", "admins"),
            mapped("", "roles", "Empty"),
        ]);
        assert_eq!(
            scopes.iter().collect::<Vec<_>>(),
            ["openid", "mcp:read", "mcp:admin"]
        );
        assert_eq!(scopes.mapped(), [mapped("mcp:admin", "roles", "Admin")]);
        assert!(scopes.contains("mcp:admin"));
        assert_eq!(scopes.to_claim(), "openid mcp:read mcp:admin");
    }
}
