//! Who a verified caller is. Only `auth/` constructs a `Principal`, so holding one
//! means the credentials were checked.

use std::time::SystemTime;

/// How the caller authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMethod {
    Jwt,
}

impl AuthMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Jwt => "jwt",
        }
    }
}

/// A verified caller.
#[derive(Debug, Clone)]
pub struct Principal {
    pub issuer: Option<String>,
    pub subject: Option<String>,
    /// `client_id` claim (RFC 9068), `azp` as fallback.
    pub client_id: Option<String>,
    pub scopes: Scopes,
    pub expires_at: Option<SystemTime>,
    pub method: AuthMethod,
    pub key_id: Option<String>,
}

/// Granted scopes, in the order the token lists them (kept for challenges that echo
/// them), without duplicates.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scopes(Vec<String>);

impl Scopes {
    pub fn new<I, S>(scopes: I) -> Self
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
        Self(out)
    }

    pub fn contains(&self, scope: &str) -> bool {
        self.0.iter().any(|granted| granted == scope)
    }

    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(String::as_str)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Space-delimited, as in the `scope` claim.
    pub fn to_claim(&self) -> String {
        self.0.join(" ")
    }
}
