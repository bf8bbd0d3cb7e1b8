//! Who a verified caller is. Only `auth/` constructs a `Principal`, so holding one
//! means the credentials were checked.

use std::time::SystemTime;

/// How the caller authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMethod {
    Jwt,
    ApiKey,
    Introspection,
}

impl AuthMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Jwt => "jwt",
            Self::ApiKey => "api_key",
            Self::Introspection => "introspection",
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
    /// The JWT's `kid`.
    pub key_id: Option<String>,
    /// The API key's configured id.
    pub api_key_id: Option<String>,
}

/// Granted scopes, in the order the token lists them (kept for challenges that echo
/// them), without duplicates; or every scope (an API key configured with `*`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scopes {
    listed: Vec<String>,
    all: bool,
}

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
        Self {
            listed: out,
            all: false,
        }
    }

    /// Every scope.
    pub fn all() -> Self {
        Self {
            listed: Vec::new(),
            all: true,
        }
    }

    pub fn contains(&self, scope: &str) -> bool {
        self.all || self.listed.iter().any(|granted| granted == scope)
    }

    /// The scopes listed (empty for "every scope").
    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.listed.iter().map(String::as_str)
    }

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
