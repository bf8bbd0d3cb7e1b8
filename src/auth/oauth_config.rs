//! `auth.oauth` checked by its owner; each failure names the key. Each `jwks` entry's
//! key source is resolved (and checked) in `key_source`.

use std::time::Duration;

use url::Url;

use crate::config::{
    ConfigError, JwksProviderConfig, OAuthConfig, ValidationMode, check_http_url, require_nonzero,
};

/// Longest clock-skew allowance accepted (security checklist A1).
pub(super) const MAX_LEEWAY: Duration = Duration::from_secs(60);

impl OAuthConfig {
    /// `auth.oauth`: claim mappings, every key source, the limits, and when OAuth is
    /// on, where keys and tokens come from.
    pub(crate) fn check(&self, own_authorization_server: bool) -> Result<(), ConfigError> {
        self.claim_scopes.check("auth.oauth.claim_scopes")?;
        if let Some(introspection) = &self.introspection {
            introspection
                .claim_scopes
                .check("auth.oauth.introspection.claim_scopes")?;
        }
        for (index, provider) in self.jwks.iter().enumerate() {
            let key = format!("auth.oauth.jwks[{index}]");
            provider.key_source(&key)?;
            check_token_profile(&key, provider)?;
            if let Some(issuer) = &provider.issuer
                && !self.issuers.is_empty()
                && !self.issuers.contains(issuer)
            {
                return Err(ConfigError::invalid(
                    format!("{key}.issuer"),
                    "is not in auth.oauth.issuers, so no token it verifies could be accepted",
                ));
            }
        }
        if self.leeway > MAX_LEEWAY {
            return Err(ConfigError::invalid(
                "auth.oauth.leeway",
                "must be at most 60s: clock skew larger than that is a clock to fix, and a longer \
             leeway keeps expired tokens alive",
            ));
        }
        if self.max_scope_combinations == 0 {
            return Err(ConfigError::invalid(
                "auth.oauth.max_scope_combinations",
                "must be at least 1",
            ));
        }
        // `enabled` left out of a section that configures how tokens are verified
        // is an error rather than a gateway that silently verifies nothing.
        if self.enabled.is_none() && (!self.jwks.is_empty() || self.introspection.is_some()) {
            return Err(ConfigError::invalid(
                "auth.oauth.enabled",
                "is not set, but auth.oauth configures how tokens are verified: write \
                 `enabled: true` to require them (or `enabled: false` to run without OAuth)",
            ));
        }
        if !self.enabled() {
            return Ok(());
        }
        // mcpgate's own authorization server is a key source, and the issuer clients
        // are sent to.
        if self.jwks.is_empty() && self.introspection.is_none() && !own_authorization_server {
            return Err(ConfigError::invalid(
                "auth.oauth.jwks",
                "OAuth is enabled but no key source is configured: add a jwks entry \
             (a remote JWKS url or a symmetric secret) or auth.oauth.introspection",
            ));
        }
        match &self.introspection {
            None if self.validation != ValidationMode::Jwt => {
                return Err(ConfigError::invalid(
                    "auth.oauth.introspection",
                    "required by auth.oauth.validation: introspection or both",
                ));
            }
            None => {}
            Some(introspection) => {
                check_http_url("auth.oauth.introspection.url", &introspection.url)?;
                require_nonzero(
                    "auth.oauth.introspection",
                    &[
                        ("cache_ttl", introspection.cache_ttl),
                        ("negative_cache_ttl", introspection.negative_cache_ttl),
                        ("timeout", introspection.timeout),
                    ],
                )?;
            }
        }
        for (index, server) in self.authorization_servers.iter().enumerate() {
            let key = format!("auth.oauth.authorization_servers[{index}]");
            let url = Url::parse(server)
                .map_err(|_| ConfigError::invalid(&key, "must be an http:// or https:// URL"))?;
            check_http_url(&key, &url)?;
        }
        if self.authorization_servers.is_empty() && !own_authorization_server {
            for (index, issuer) in self.issuers.iter().enumerate() {
                if Url::parse(issuer).is_err() {
                    return Err(ConfigError::invalid(
                        format!("auth.oauth.issuers[{index}]"),
                        "is not a URL, so it cannot stand in for auth.oauth.authorization_servers: \
                     set authorization_servers explicitly",
                    ));
                }
            }
            if self.issuers.is_empty() {
                return Err(ConfigError::invalid(
                    "auth.oauth.authorization_servers",
                    "OAuth is enabled but no authorization server is set: clients discover where \
                 to get tokens from it (RFC 9728)",
                ));
            }
        }
        Ok(())
    }
}

/// A provider's IdP quirks: each names a claim, and an audience read from another
/// claim has its own allowlist (the resource URL is never a client id).
fn check_token_profile(key: &str, provider: &JwksProviderConfig) -> Result<(), ConfigError> {
    provider
        .claim_scopes
        .check(&format!("{key}.claim_scopes"))?;
    let claim_names = [
        ("audience_claim", provider.audience_claim.as_deref()),
        ("client_id_claim", provider.client_id_claim.as_deref()),
    ];
    for (name, claim) in claim_names {
        if claim.is_some_and(str::is_empty) {
            return Err(ConfigError::invalid(
                format!("{key}.{name}"),
                "must name a claim",
            ));
        }
    }
    if let Some(claim) = &provider.audience_claim
        && claim != "aud"
        && provider.audiences.is_empty()
    {
        return Err(ConfigError::invalid(
            format!("{key}.audiences"),
            format!(
                "required with audience_claim: {claim}: the {claim} values this provider's \
                 tokens must carry (e.g. the app client ids)"
            ),
        ));
    }
    for (index, audience) in provider.audiences.iter().enumerate() {
        if audience.is_empty() {
            return Err(ConfigError::invalid(
                format!("{key}.audiences[{index}]"),
                "must not be empty",
            ));
        }
    }
    for (index, claim) in provider.scope_claims.iter().enumerate() {
        if claim.is_empty() {
            return Err(ConfigError::invalid(
                format!("{key}.scope_claims[{index}]"),
                "must name a claim",
            ));
        }
    }
    Ok(())
}
