//! Configuration: the file format (`model`) and how layers are merged (`load`). The
//! sections are plain data; each is checked by the module that uses it, and
//! `gateway::validate` runs every check.

mod authorization_server;
mod checks;
mod claims;
mod connection;
mod derived;
mod interpolate;
mod limits;
mod load;
mod model;
mod routes;
mod rules;
mod scopes;
mod upstream;
mod virtual_server;

pub use authorization_server::{
    AuthorizationServerConfig, ClientMetadataDocumentsConfig, ConfiguredClientConfig,
    ConsentConfig, IdentityAssertionIssuerConfig, ProviderAuthMethod, ProviderConfig,
    RegistrationConfig,
};
pub(crate) use checks::{
    check_headers, check_http_url, check_rule_name, check_scope_token, is_scope_token,
    require_nonzero,
};
pub use claims::{ClaimPath, ClaimScopeRule, ClaimScopesConfig, ScopeList};
pub use connection::{ConnectionConfig, ConnectionStore};
pub use derived::METADATA_WELL_KNOWN;
pub use limits::{BuiltinLimitConfig, ConcurrencyConfig, LimitRuleConfig, LimitsConfig};
pub use load::{load, load_from_str};
pub use model::*;
pub use routes::{RouteChoice, RouteChoiceError, RouteConfig, RouteLimitsConfig, RouteMark};
pub use rules::{
    ClaimConditionConfig, PrincipalRuleConfig, WhenConfig, claim_roots, rule_claim_roots,
};
pub use scopes::{RequirementSpec, ScopesConfig, UnknownMethods};
pub use upstream::{BuiltinScopes, CommandLine, GraphqlUpstreamConfig};
pub use virtual_server::{MemberConfig, VirtualServerConfig};

/// A configuration problem, reported as one line that names the key.
/// Every variant maps to exit code 78 (EX_CONFIG) in the binary.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read (missing, unreadable, not UTF-8).
    #[error("{path}: cannot read config file: {source}")]
    Read {
        /// The file that was read.
        path: String,
        /// What the OS reported.
        #[source]
        source: std::io::Error,
    },
    /// The YAML does not parse, at a place no key names (e.g. the document root).
    #[error("{0}")]
    Parse(String),
    /// A value is wrong, missing or unknown.
    #[error("{key}: {message}")]
    Invalid {
        /// The dotted path of the offending key, e.g. `auth.oauth.issuers`.
        key: String,
        /// What is wrong with it, for the operator.
        message: String,
    },
}

impl ConfigError {
    pub(crate) fn invalid(key: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Invalid {
            key: key.into(),
            message: message.into(),
        }
    }
}

/// The upstream section, which every command that talks to the upstream needs.
pub fn require_upstream(config: &Config) -> Result<&UpstreamConfig, ConfigError> {
    config
        .upstream
        .as_ref()
        .ok_or_else(|| ConfigError::invalid("upstream.url", "required"))
}

/// Renders a key path as it is written in messages: `auth.oauth.jwks[0].secret`.
pub(crate) fn key_path<S: AsRef<str>>(parts: &[S]) -> String {
    let mut out = String::new();
    for part in parts {
        let part = part.as_ref();
        if !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit()) {
            out.push('[');
            out.push_str(part);
            out.push(']');
        } else {
            if !out.is_empty() {
                out.push('.');
            }
            out.push_str(part);
        }
    }
    out
}

/// EX_CONFIG from sysexits.h: the exit code for every configuration error.
pub const EXIT_CONFIG: i32 = 78;
