//! The `authorization_server:` section: mcpgate as the OAuth authorization server
//! MCP clients see, in front of an identity provider that cannot register them
//! (see `docs/authorization-server.md`). Absent: mcpgate is only a resource server.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;
use url::Url;

use super::Secret;
use super::model::one_or_many;

/// The whole section.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthorizationServerConfig {
    /// The issuer clients see. Unset: the origin of `server.public_url`, so the
    /// RFC 8414 document sits at `/.well-known/oauth-authorization-server` of the
    /// host the MCP endpoint is on. Must be `https` (or `http` on a loopback host)
    /// without query or fragment.
    pub issuer: Option<Url>,
    /// The identity provider users sign in at.
    pub provider: ProviderConfig,
    /// Clients known in advance (a desktop app with a fixed id, an internal tool).
    #[serde(default)]
    pub clients: Vec<ConfiguredClientConfig>,
    /// Clients identified by an `https` URL to their metadata document (CIMD).
    #[serde(default)]
    pub client_metadata_documents: ClientMetadataDocumentsConfig,
    /// Dynamic client registration (RFC 7591). Off unless configured.
    #[serde(default)]
    pub registration: RegistrationConfig,
    /// What the consent page shows and remembers.
    #[serde(default)]
    pub consent: ConsentConfig,
    /// Redirect URI schemes other than `https` and loopback `http` that clients may
    /// register (native apps such as `cursor`). Never `javascript`, `data`, `file`.
    #[serde(default)]
    pub allowed_redirect_schemes: Vec<String>,
    /// Signs the CSRF tokens and the remembered-consent cookie, and (later) encrypts
    /// what is kept of the provider's tokens: at least 32 bytes, base64. Unset: a
    /// random key per process (pending sign-ins do not survive a restart and do not
    /// move between replicas).
    pub secret_key: Option<Secret>,
    /// How long a started sign-in (authorize → consent → provider → callback) may take.
    #[serde(default = "default_pending_ttl", with = "humantime_serde")]
    pub pending_ttl: Duration,
    /// The key mcpgate signs its access tokens with: an EC P-256 private key, PKCS#8
    /// PEM (ES256). Unset: read from `signing_key_file`, or generated.
    pub signing_key: Option<Secret>,
    /// Where the signing key is kept: read at start, or generated and written there
    /// (mode 0600) when the file does not exist. Unset with no `signing_key`: a key
    /// per process (tokens do not survive a restart or move between replicas).
    pub signing_key_file: Option<std::path::PathBuf>,
    /// Keys signed with before a rotation (PKCS#8 PEM): still published at
    /// `jwks_uri` and accepted, so tokens they signed live out their lifetime.
    #[serde(default)]
    pub previous_signing_keys: Vec<Secret>,
    /// Lifetime of an access token. Short, so a refresh re-checks the grant.
    #[serde(default = "default_access_token_ttl", with = "humantime_serde")]
    pub access_token_ttl: Duration,
    /// A refresh token unused for this long expires (each use rotates it).
    #[serde(default = "default_refresh_token_ttl", with = "humantime_serde")]
    pub refresh_token_ttl: Duration,
    /// Enterprise identity providers whose Identity Assertion JWT Authorization
    /// Grants (ID-JAG, MCP's enterprise-managed authorization) the token endpoint
    /// redeems with the `jwt-bearer` grant. Empty: that grant is not supported.
    #[serde(default)]
    pub identity_assertion_issuers: Vec<IdentityAssertionIssuerConfig>,
}

/// A trusted issuer of ID-JAGs.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdentityAssertionIssuerConfig {
    /// Its `iss`, compared as a string (a trailing `/` aside).
    pub issuer: Url,
    /// Where its signing keys are (JWKS).
    pub jwks_uri: Url,
    /// Only these clients may redeem its assertions. Empty: any client it names.
    #[serde(default)]
    pub allowed_clients: Vec<String>,
}

/// The upstream identity provider and mcpgate's own client there.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderConfig {
    /// The provider's issuer; its endpoints come from OpenID discovery unless given
    /// below (plain OAuth providers such as GitHub).
    pub issuer: Url,
    /// Overrides (or, for plain OAuth, replaces) the discovered authorization endpoint.
    pub authorization_endpoint: Option<Url>,
    /// Overrides (or replaces) the discovered token endpoint.
    pub token_endpoint: Option<Url>,
    /// Where the provider's ID-token keys are; discovered when unset.
    pub jwks_uri: Option<Url>,
    /// Where the user is read from when the provider issues no ID token.
    pub userinfo_endpoint: Option<Url>,
    /// mcpgate's client at the provider (registered once by the operator).
    pub client_id: String,
    /// Its secret; unset for a public client (`auth_method: none`).
    pub client_secret: Option<Secret>,
    /// How mcpgate authenticates at the provider's token endpoint.
    #[serde(default)]
    pub auth_method: ProviderAuthMethod,
    /// Scopes asked of the provider (e.g. `openid profile email`, Entra's
    /// `api://…/.default`, `offline_access`), space-separated or a list.
    #[serde(default = "default_provider_scopes", deserialize_with = "one_or_many")]
    pub scopes: Vec<String>,
    /// Extra parameters on the provider's authorization request (`prompt`, `hd`, …).
    #[serde(default)]
    pub authorization_params: BTreeMap<String, String>,
    /// Claim values (groups, roles) that a requested scope needs: a scope some
    /// mapping names is granted only to users whose claims map to it. Same shape
    /// as `auth.oauth.claim_scopes`.
    #[serde(default)]
    pub claim_scopes: super::ClaimScopesConfig,
    /// Send the MCP resource as RFC 8707 `resource` to the provider. Off for
    /// providers that reject or misread it (Entra v2).
    #[serde(default)]
    pub send_resource: bool,
    /// The `userinfo` member that names the user when the provider issues no ID
    /// token (`id` for GitHub). An ID token's user is always its `sub`.
    #[serde(default = "default_subject_claim")]
    pub subject_claim: String,
    /// Longest a call to the provider (discovery, token, userinfo) may take.
    #[serde(default = "default_provider_timeout", with = "humantime_serde")]
    pub timeout: Duration,
}

/// How mcpgate authenticates at the provider's token endpoint.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProviderAuthMethod {
    /// HTTP Basic with the client id and secret (RFC 6749 §2.3.1).
    #[default]
    ClientSecretBasic,
    /// The client id and secret in the form body.
    ClientSecretPost,
    /// A public client: PKCE only.
    None,
}

/// A client fixed in the configuration.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfiguredClientConfig {
    /// The id the client sends (not a URL: those are metadata documents).
    pub client_id: String,
    /// Shown on the consent page.
    pub client_name: Option<String>,
    /// Where codes may be sent; matched exactly (loopback `http` on any port).
    #[serde(deserialize_with = "one_or_many")]
    pub redirect_uris: Vec<String>,
    /// An argon2id hash (`mcpgate hash-key`) of the client's secret. Unset: a public
    /// client (PKCE only, `token_endpoint_auth_method: none`).
    pub client_secret_hash: Option<Secret>,
}

/// Client ID Metadata Documents (the MCP spec's preferred registration).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientMetadataDocumentsConfig {
    /// Accept `https` URL client ids (on unless turned off).
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Only these hosts (exact, or `*.example.com`) may be `client_id` hosts. Empty: any.
    #[serde(default)]
    pub allowed_hosts: Vec<String>,
    /// These hosts never may (checked before `allowed_hosts`).
    #[serde(default)]
    pub denied_hosts: Vec<String>,
    /// Documents given here instead of fetched (a client whose document sits behind a
    /// bot challenge), keyed by their `client_id` URL.
    #[serde(default)]
    pub pinned: BTreeMap<String, serde_json::Value>,
    /// Largest document accepted, in bytes.
    #[serde(default = "default_document_max_bytes")]
    pub max_bytes: usize,
    /// Longest a fetch may take, connection included.
    #[serde(default = "default_document_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// A fetched document is kept at least this long, whatever its `Cache-Control` says.
    #[serde(default = "default_document_min_ttl", with = "humantime_serde")]
    pub min_cache_ttl: Duration,
    /// …and at most this long.
    #[serde(default = "default_document_max_ttl", with = "humantime_serde")]
    pub max_cache_ttl: Duration,
    /// Fetch documents from loopback and private addresses, over `http` too. For
    /// tests only: it lets a `client_id` make mcpgate call into its own network.
    #[serde(default)]
    pub allow_private_addresses: bool,
}

impl Default for ClientMetadataDocumentsConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            allowed_hosts: Vec::new(),
            denied_hosts: Vec::new(),
            pinned: BTreeMap::new(),
            max_bytes: default_document_max_bytes(),
            timeout: default_document_timeout(),
            min_cache_ttl: default_document_min_ttl(),
            max_cache_ttl: default_document_max_ttl(),
            allow_private_addresses: false,
        }
    }
}

/// Dynamic client registration (RFC 7591), for clients that predate CIMD.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistrationConfig {
    /// Serve the registration endpoint (and advertise it).
    #[serde(default)]
    pub enabled: bool,
    /// When set, a registration must carry `Authorization: Bearer <this>`.
    pub initial_access_token: Option<Secret>,
    /// Registrations accepted per client IP per minute.
    #[serde(default = "default_registrations_per_minute")]
    pub per_ip_per_minute: u32,
    /// A registered client that has not completed a sign-in within this long is forgotten.
    #[serde(default = "default_unused_client_ttl", with = "humantime_serde")]
    pub unused_client_ttl: Duration,
    /// Most registered clients kept at once (the oldest unused go first).
    #[serde(default = "default_max_registered_clients")]
    pub max_clients: u64,
}

impl Default for RegistrationConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            initial_access_token: None,
            per_ip_per_minute: default_registrations_per_minute(),
            unused_client_ttl: default_unused_client_ttl(),
            max_clients: default_max_registered_clients(),
        }
    }
}

/// The consent page.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsentConfig {
    /// What each scope lets a client do, in the user's words (keyed by scope).
    #[serde(default)]
    pub scope_descriptions: BTreeMap<String, String>,
    /// The MCP server's name on the page. Unset: the host of `server.public_url`.
    pub server_name: Option<String>,
    /// How long an approval is remembered in the browser (0: never).
    #[serde(default = "default_consent_remember", with = "humantime_serde")]
    pub remember: Duration,
}

impl Default for ConsentConfig {
    fn default() -> Self {
        Self {
            scope_descriptions: BTreeMap::new(),
            server_name: None,
            remember: default_consent_remember(),
        }
    }
}

fn yes() -> bool {
    true
}

fn default_pending_ttl() -> Duration {
    Duration::from_secs(600)
}

fn default_access_token_ttl() -> Duration {
    Duration::from_secs(600)
}

fn default_refresh_token_ttl() -> Duration {
    Duration::from_secs(30 * 24 * 3600)
}

fn default_provider_scopes() -> Vec<String> {
    vec!["openid".to_owned()]
}

fn default_subject_claim() -> String {
    "sub".to_owned()
}

fn default_provider_timeout() -> Duration {
    Duration::from_secs(10)
}

fn default_document_max_bytes() -> usize {
    5 * 1024
}

fn default_document_timeout() -> Duration {
    Duration::from_secs(5)
}

fn default_document_min_ttl() -> Duration {
    Duration::from_secs(60)
}

fn default_document_max_ttl() -> Duration {
    Duration::from_secs(24 * 3600)
}

fn default_registrations_per_minute() -> u32 {
    10
}

fn default_unused_client_ttl() -> Duration {
    Duration::from_secs(24 * 3600)
}

fn default_max_registered_clients() -> u64 {
    10_000
}

fn default_consent_remember() -> Duration {
    Duration::from_secs(30 * 24 * 3600)
}
