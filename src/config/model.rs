//! The shape of `mcpgate.yaml`. Every struct rejects unknown keys, so a typo is an
//! error at load rather than a silently ignored setting.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use serde::{Deserialize, Deserializer};
use url::Url;

use super::{ClaimScopesConfig, CommandLine, GraphqlUpstreamConfig, ScopesConfig};

/// The whole file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// `server:`: listeners, the public URL, Origin allow-list, limits and timeouts.
    #[serde(default)]
    pub server: ServerConfig,
    /// Required by `serve`; `check` reports its absence like any other missing key.
    pub upstream: Option<UpstreamConfig>,
    /// `auth:`: how a bearer credential is verified (OAuth, API keys).
    #[serde(default)]
    pub auth: AuthConfig,
    #[serde(default)]
    pub(crate) scopes: ScopesConfig,
    /// Per-caller restrictions applied after the scope checks (see `config::rules`).
    #[serde(default)]
    pub rules: Vec<super::PrincipalRuleConfig>,
    /// `log:`: the operator's log on standard error (not the audit log).
    #[serde(default)]
    pub log: LogConfig,
    /// `audit:`: the audit log; off unless a path or stdout is set.
    #[serde(default)]
    pub audit: AuditConfig,
    /// `telemetry:`: OpenTelemetry trace export.
    #[serde(default)]
    pub telemetry: TelemetryConfig,
    /// `session:`: how long sessions live, how many, and where ownership is stored.
    #[serde(default)]
    pub session: SessionConfig,
    /// mcpgate as the authorization server clients see (off when absent).
    pub authorization_server: Option<super::AuthorizationServerConfig>,
    /// `limits:`: rate limits and calls in flight (see `config::limits`).
    #[serde(default)]
    pub limits: super::LimitsConfig,
    /// `routes:`: several MCP endpoints on one listener (see `config::routes`).
    /// Empty: the file is one endpoint (`upstream:`, `server.public_url`).
    #[serde(default)]
    pub routes: Vec<super::RouteConfig>,
    /// Set on a route's expanded configuration, never read from the file.
    #[serde(skip)]
    pub route: Option<super::RouteMark>,
}

/// Where clients connect and what the gateway answers with: listeners, public URL, limits.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// The MCP listener's address: an IP address and port, never a host name (default
    /// `127.0.0.1:5025`).
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// The canonical resource URI (RFC 8707). Its path is the MCP endpoint.
    pub public_url: Option<Url>,
    /// Overrides where the RFC 9728 document is served (one path instead of the two defaults).
    pub metadata_path: Option<String>,
    /// Advertised as `resource_documentation` in the RFC 9728 document.
    pub resource_documentation: Option<Url>,
    /// Largest request body accepted on the MCP endpoint, in bytes.
    #[serde(default = "default_max_body_bytes")]
    pub max_body_bytes: usize,
    /// On SIGTERM/SIGINT, how long in-flight requests and open streams may take to finish.
    #[serde(default = "default_shutdown_grace", with = "humantime_serde")]
    pub shutdown_grace: Duration,
    /// Where `/healthz`, `/readyz` and `/metrics` are served. Unset: not served.
    pub admin_listen: Option<SocketAddr>,
    /// Browser origins allowed to call the MCP endpoint (`scheme://host[:port]`).
    /// A request with any other `Origin` gets 403 (DNS rebinding); requests without
    /// one (non-browser clients) pass.
    #[serde(default)]
    pub allowed_origins: Vec<String>,
    /// CORS for browser MCP clients (`edge::cors`). Unset: no CORS headers.
    pub cors: Option<CorsConfig>,
    /// How long a client has to send a request's headers: from the moment the
    /// connection opens, or from the first byte of a later request on it.
    #[serde(default = "default_header_read_timeout", with = "humantime_serde")]
    pub header_read_timeout: Duration,
    /// How long a client has to send a request's whole body once it is being read.
    #[serde(default = "default_body_read_timeout", with = "humantime_serde")]
    pub body_read_timeout: Duration,
    /// How long a connection may wait, with no request in progress, for the next one.
    #[serde(default = "default_idle_timeout", with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// Most client connections open at once. Unset: derived from the open-file limit
    /// (see `server::limits`).
    pub max_connections: Option<usize>,
    /// Proxies (CIDRs) whose `client_ip_header` is believed: the client IP is the
    /// socket peer's unless that peer is one of these.
    #[serde(default)]
    pub trusted_proxies: Vec<String>,
    /// The one header the trusted proxies write the client's address into.
    #[serde(default)]
    pub client_ip_header: ClientIpHeader,
}

/// `server.client_ip_header`: only the header the proxies write is read; a client
/// could forge the other.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ClientIpHeader {
    /// `X-Forwarded-For: client, proxy1, proxy2`.
    #[default]
    XForwardedFor,
    /// RFC 7239 `Forwarded: for=client, for=proxy1`.
    Forwarded,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: default_listen(),
            public_url: None,
            metadata_path: None,
            resource_documentation: None,
            max_body_bytes: default_max_body_bytes(),
            shutdown_grace: default_shutdown_grace(),
            admin_listen: None,
            allowed_origins: Vec::new(),
            cors: None,
            header_read_timeout: default_header_read_timeout(),
            body_read_timeout: default_body_read_timeout(),
            idle_timeout: default_idle_timeout(),
            max_connections: None,
            trusted_proxies: Vec::new(),
            client_ip_header: ClientIpHeader::default(),
        }
    }
}

/// `server.cors`: which browser pages may read the MCP endpoint's answers.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CorsConfig {
    /// Exact origins or patterns (`https://*.example.com`, `http://localhost:*`).
    pub allowed_origins: Vec<String>,
    /// Request headers allowed beyond the ones MCP clients send.
    #[serde(default)]
    pub allowed_headers: Vec<String>,
    /// How long a browser may keep a preflight's answer.
    #[serde(default = "default_cors_max_age", with = "humantime_serde")]
    pub max_age: Duration,
}

fn default_cors_max_age() -> Duration {
    Duration::from_secs(600)
}

fn default_header_read_timeout() -> Duration {
    Duration::from_secs(10)
}

fn default_body_read_timeout() -> Duration {
    Duration::from_secs(30)
}

fn default_idle_timeout() -> Duration {
    Duration::from_secs(60)
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 5025))
}

fn default_shutdown_grace() -> Duration {
    Duration::from_secs(10)
}

fn default_max_body_bytes() -> usize {
    4 * 1024 * 1024
}

/// The `upstream:` section as written; `resolve` turns it into one `upstream::UpstreamKind`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamConfig {
    /// A Streamable HTTP MCP endpoint. Exactly one of `url`, `command` and `graphql`
    /// is set: `resolve` (in `upstream::config`) turns the section into that one kind.
    pub url: Option<Url>,
    /// A local MCP server started as a child process, one per session (stdio).
    pub command: Option<CommandLine>,
    /// A GraphQL API whose operations mcpgate serves as MCP tools itself.
    pub graphql: Option<GraphqlUpstreamConfig>,
    /// Other routes, merged into one MCP server mcpgate serves itself.
    #[serde(rename = "virtual")]
    pub virtual_server: Option<super::VirtualServerConfig>,
    /// stdio: arguments after those in `command`.
    #[serde(default)]
    pub args: Vec<String>,
    /// stdio: the child's whole environment (nothing of mcpgate's own is inherited).
    #[serde(default)]
    pub env: BTreeMap<String, Secret>,
    /// stdio: the child's working directory.
    pub cwd: Option<std::path::PathBuf>,
    /// stdio: a session's process is stopped after this long without a request.
    #[serde(default, with = "humantime_serde::option")]
    pub idle_timeout: Option<Duration>,
    /// stdio: most processes alive at once.
    pub max_children: Option<usize>,
    /// Added to every upstream request: the upstream's own credentials.
    #[serde(default)]
    pub headers: BTreeMap<String, Secret>,
    #[serde(default = "default_connect_timeout", with = "humantime_serde")]
    pub(crate) connect_timeout: Duration,
    /// Longest wait for the upstream's response headers (a stream may then run longer).
    #[serde(default = "default_upstream_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// mcpgate's own OAuth client for the upstream: a client_credentials token sent as
    /// `Authorization: Bearer` (the caller's token never is).
    pub oauth: Option<UpstreamOAuthConfig>,
    /// Who calls, told to the upstream: a signed assertion and/or plain headers.
    pub identity: Option<UpstreamIdentityConfig>,
}

/// `upstream.identity`: how the upstream learns who the caller is, never from the
/// caller's own token.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamIdentityConfig {
    /// A short-lived JWT signed by mcpgate on every forwarded request.
    pub assertion: Option<IdentityAssertionConfig>,
    /// Plain headers, for upstreams on a trusted network.
    pub headers: Option<IdentityHeadersConfig>,
    /// The caller's token exchanged at the identity provider for one meant for the
    /// upstream (RFC 8693 token exchange, or Entra ID's on-behalf-of flow).
    pub exchange: Option<TokenExchangeConfig>,
    /// Each user's own token at a third-party service.
    pub connection: Option<super::ConnectionConfig>,
}

/// `upstream.identity.exchange`: mcpgate's OAuth client at the identity provider,
/// and what it asks for in exchange for the caller's token.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenExchangeConfig {
    pub(crate) token_url: Url,
    pub(crate) client_id: String,
    pub(crate) client_secret: Secret,
    #[serde(default)]
    pub(crate) auth_method: ClientAuthMethod,
    /// RFC 8693 token exchange, or Entra ID's on-behalf-of grant.
    #[serde(default)]
    pub grant: ExchangeGrant,
    /// RFC 8693 `audience`: the upstream as the provider names it.
    pub audience: Option<String>,
    /// RFC 8707 / RFC 8693 `resource`: the upstream's URI.
    pub resource: Option<String>,
    /// Scopes asked for, space-separated or a list (for `entra_obo`, the upstream
    /// API's `api://…/.default`).
    #[serde(default, deserialize_with = "one_or_many")]
    pub scopes: Vec<String>,
    /// RFC 8693 `requested_token_type` (not sent for `entra_obo`).
    #[serde(default = "default_requested_token_type")]
    pub requested_token_type: String,
    /// An exchanged token is not used within this long of its expiry.
    #[serde(default = "default_exchange_renew_before", with = "humantime_serde")]
    pub renew_before: Duration,
    #[serde(default = "default_token_timeout", with = "humantime_serde")]
    pub(crate) timeout: Duration,
    /// Most exchanged tokens kept at once (one per caller's token).
    #[serde(default = "default_exchange_max_entries")]
    pub max_entries: u64,
    /// What a caller with an API key (no token to exchange) gets.
    #[serde(default)]
    pub api_keys: ApiKeyExchange,
}

/// `upstream.identity.exchange.grant`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExchangeGrant {
    /// `urn:ietf:params:oauth:grant-type:token-exchange` (RFC 8693).
    #[default]
    TokenExchange,
    /// `urn:ietf:params:oauth:grant-type:jwt-bearer` with
    /// `requested_token_use=on_behalf_of` (Microsoft Entra ID).
    EntraObo,
}

impl ExchangeGrant {
    /// The audit record's `upstream_identity`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::TokenExchange => "token_exchange",
            Self::EntraObo => "entra_obo",
        }
    }
}

/// `upstream.identity.exchange.api_keys`: an API key is no token a provider can
/// exchange.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ApiKeyExchange {
    /// 403: the upstream needs the user's token, and an API key has none.
    #[default]
    Refuse,
    /// Forwarded without an `Authorization` header: for an upstream that also
    /// serves callers it does not know.
    WithoutToken,
}

fn default_requested_token_type() -> String {
    "urn:ietf:params:oauth:token-type:access_token".to_owned()
}

fn default_exchange_renew_before() -> Duration {
    Duration::from_secs(30)
}

fn default_exchange_max_entries() -> u64 {
    10_000
}

/// `upstream.identity.assertion`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdentityAssertionConfig {
    /// The request header carrying the JWT.
    #[serde(default = "default_assertion_header")]
    pub header: String,
    /// How long an assertion is valid after it is made.
    #[serde(default = "default_assertion_ttl", with = "humantime_serde")]
    pub ttl: Duration,
    /// The `aud` claim. Unset: the upstream URL.
    pub audience: Option<String>,
    /// The EC P-256 signing key, PKCS#8 PEM. Unset: read from `signing_key_file`.
    pub signing_key: Option<Secret>,
    /// PKCS#8 PEM file with the EC P-256 signing key, made (mode 0600) when missing.
    /// Unset with no `signing_key`: a key of this process only.
    pub signing_key_file: Option<std::path::PathBuf>,
    /// Keys signed with before a rotation: still published at the JWKS URL, so
    /// assertions in flight verify until they expire.
    #[serde(default)]
    pub previous_signing_keys: Vec<Secret>,
}

/// `upstream.identity.headers`: the names, and whether they are sent. Configured
/// names are removed from what the client sends even while `enabled` is false.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdentityHeadersConfig {
    /// Whether the headers are sent (off by default).
    #[serde(default)]
    pub enabled: bool,
    /// Carries the caller's subject.
    #[serde(default = "default_subject_header")]
    pub subject: String,
    /// Carries the OAuth client's id.
    #[serde(default = "default_client_id_header")]
    pub client_id: String,
    /// Carries the granted scopes, space-separated.
    #[serde(default = "default_scopes_header")]
    pub scopes: String,
}

fn default_assertion_header() -> String {
    "X-Mcpgate-Identity".to_owned()
}

fn default_assertion_ttl() -> Duration {
    Duration::from_secs(60)
}

fn default_subject_header() -> String {
    "X-Mcpgate-Subject".to_owned()
}

fn default_client_id_header() -> String {
    "X-Mcpgate-Client-Id".to_owned()
}

fn default_scopes_header() -> String {
    "X-Mcpgate-Scopes".to_owned()
}

impl Default for UpstreamConfig {
    /// No upstream kind at all: validation asks for one.
    fn default() -> Self {
        Self {
            url: None,
            command: None,
            graphql: None,
            virtual_server: None,
            args: Vec::new(),
            env: BTreeMap::new(),
            cwd: None,
            idle_timeout: None,
            max_children: None,
            headers: BTreeMap::new(),
            connect_timeout: default_connect_timeout(),
            timeout: default_upstream_timeout(),
            oauth: None,
            identity: None,
        }
    }
}

/// An OAuth 2.0 client_credentials grant (RFC 6749 §4.4) mcpgate performs itself.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamOAuthConfig {
    pub(crate) token_url: Url,
    pub(crate) client_id: String,
    pub(crate) client_secret: Secret,
    #[serde(default)]
    pub(crate) auth_method: ClientAuthMethod,
    /// Scopes asked for, space-separated or a list.
    #[serde(default, deserialize_with = "one_or_many")]
    pub scopes: Vec<String>,
    /// RFC 8707 `resource`: the upstream's resource URI, when the AS binds audiences.
    pub resource: Option<String>,
    /// `audience`, for authorization servers that take it instead of `resource` (Auth0).
    pub audience: Option<String>,
    /// A token is renewed this long before it expires.
    #[serde(default = "default_renew_before", with = "humantime_serde")]
    pub renew_before: Duration,
    #[serde(default = "default_token_timeout", with = "humantime_serde")]
    pub(crate) timeout: Duration,
}

fn default_renew_before() -> Duration {
    Duration::from_secs(60)
}

fn default_token_timeout() -> Duration {
    Duration::from_secs(5)
}

fn default_connect_timeout() -> Duration {
    Duration::from_secs(5)
}

fn default_upstream_timeout() -> Duration {
    Duration::from_secs(60)
}

/// The `auth:` section: which credentials are accepted, and how each is verified.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    /// OAuth bearer tokens (JWTs, opaque tokens); off unless `enabled`.
    #[serde(default)]
    pub oauth: OAuthConfig,
    /// API keys (argon2id hashes), accepted beside OAuth tokens.
    #[serde(default)]
    pub api_keys: Vec<ApiKeyConfig>,
    /// How long a successful API-key verification is remembered (argon2 on every
    /// request would be a denial-of-service lever).
    #[serde(default = "default_api_key_cache_ttl", with = "humantime_serde")]
    pub api_key_cache_ttl: Duration,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            oauth: OAuthConfig::default(),
            api_keys: Vec::new(),
            api_key_cache_ttl: default_api_key_cache_ttl(),
        }
    }
}

fn default_api_key_cache_ttl() -> Duration {
    Duration::from_secs(300)
}

/// One API key: `mcpgate hash-key --id <id>` prints the key and this entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiKeyConfig {
    pub(crate) id: String,
    /// argon2id PHC string (`$argon2id$v=19$m=…,t=…,p=…$salt$hash`).
    pub hash: Secret,
    /// Scopes the key carries; `*` means every scope.
    #[serde(default, deserialize_with = "one_or_many")]
    pub scopes: Vec<String>,
}

/// `auth.oauth`: bearer tokens from one or more identity providers.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OAuthConfig {
    /// Require a valid bearer credential on every request to the MCP endpoint. Unset
    /// beside key sources is a config error (`auth::oauth_config`): a
    /// section that configures verification but forgets this line must not serve
    /// without authentication.
    #[serde(default)]
    pub enabled: Option<bool>,
    /// Advertised in the RFC 9728 document; defaults to `issuers`.
    #[serde(default, deserialize_with = "one_or_many")]
    pub authorization_servers: Vec<String>,
    /// Exact `iss` values accepted. Empty: any issuer (the key set still has to verify).
    #[serde(default, deserialize_with = "one_or_many")]
    pub issuers: Vec<String>,
    /// Accepted `aud` values. Empty: `[server.public_url]`.
    #[serde(default, deserialize_with = "one_or_many")]
    pub audiences: Vec<String>,
    #[serde(default = "default_leeway", with = "humantime_serde")]
    pub(crate) leeway: Duration,
    /// Key sources for verifying JWTs locally: remote JWKS endpoints and symmetric secrets.
    #[serde(default)]
    pub jwks: Vec<JwksProviderConfig>,
    /// RFC 7662 introspection, for opaque tokens (and for JWTs with `validation: both`).
    pub introspection: Option<IntrospectionConfig>,
    /// `jwt`: JWTs verified locally, other tokens introspected when configured;
    /// `introspection`: every token introspected; `both`: JWTs verified locally and
    /// introspected too, so a revoked JWT stops working within `cache_ttl`.
    #[serde(default)]
    pub validation: ValidationMode,
    #[serde(default)]
    pub(crate) scope_challenge_include_token_scopes: bool,
    /// Most OR-groups a combined scope requirement may have; more is a load error (at least
    /// 1).
    #[serde(default = "default_max_scope_combinations")]
    pub max_scope_combinations: usize,
    /// A verified token is remembered (by its SHA-256) for at most this long, and never
    /// past its `exp`, so repeated requests cost a hash and a lookup.
    #[serde(default = "default_token_cache_ttl", with = "humantime_serde")]
    pub token_cache_ttl: Duration,
    /// Most verified tokens remembered.
    #[serde(default = "default_token_cache_size")]
    pub token_cache_size: u64,
    /// Claim values mapped to scopes for every provider (each `jwks` entry and
    /// `introspection`); a provider's own `claim_scopes` apply as well.
    #[serde(default)]
    pub claim_scopes: ClaimScopesConfig,
}

impl OAuthConfig {
    /// Whether bearer tokens are required: only when `enabled: true` is written.
    pub fn enabled(&self) -> bool {
        self.enabled.unwrap_or(false)
    }
}

impl Default for OAuthConfig {
    fn default() -> Self {
        Self {
            enabled: None,
            authorization_servers: Vec::new(),
            issuers: Vec::new(),
            audiences: Vec::new(),
            leeway: default_leeway(),
            jwks: Vec::new(),
            introspection: None,
            validation: ValidationMode::default(),
            scope_challenge_include_token_scopes: false,
            max_scope_combinations: default_max_scope_combinations(),
            token_cache_ttl: default_token_cache_ttl(),
            token_cache_size: default_token_cache_size(),
            claim_scopes: ClaimScopesConfig::default(),
        }
    }
}

fn default_leeway() -> Duration {
    Duration::from_secs(30)
}

/// `auth.oauth.max_scope_combinations` when unset (the reference router's default).
pub const DEFAULT_MAX_SCOPE_COMBINATIONS: usize = 2048;

fn default_max_scope_combinations() -> usize {
    DEFAULT_MAX_SCOPE_COMBINATIONS
}

fn default_token_cache_ttl() -> Duration {
    Duration::from_secs(300)
}

fn default_token_cache_size() -> u64 {
    10_000
}

/// How a bearer token is verified: locally, by introspection, or both.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ValidationMode {
    /// JWTs are verified locally; other tokens are introspected when introspection is set.
    #[default]
    Jwt,
    /// Every token is introspected, JWT or not.
    Introspection,
    /// JWTs are verified locally and introspected as well, so revocation shows within the
    /// introspection cache TTL.
    Both,
}

/// `auth.oauth.introspection`: an RFC 7662 endpoint and the client credentials to call it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IntrospectionConfig {
    pub(crate) url: Url,
    pub(crate) client_id: String,
    pub(crate) client_secret: Secret,
    #[serde(default)]
    pub(crate) auth_method: ClientAuthMethod,
    /// Active answers are reused for at most this long (and never past `exp`).
    #[serde(default = "default_introspection_cache_ttl", with = "humantime_serde")]
    pub cache_ttl: Duration,
    /// Inactive answers are reused for this long.
    #[serde(default = "default_negative_cache_ttl", with = "humantime_serde")]
    pub negative_cache_ttl: Duration,
    #[serde(default = "default_introspection_timeout", with = "humantime_serde")]
    pub(crate) timeout: Duration,
    /// Require an `aud` naming this resource; some authorization servers return none.
    #[serde(default = "default_true")]
    pub require_audience: bool,
    /// Claim values of introspection answers mapped to scopes, beside
    /// `auth.oauth.claim_scopes`.
    #[serde(default)]
    pub claim_scopes: ClaimScopesConfig,
}

fn default_introspection_cache_ttl() -> Duration {
    Duration::from_secs(30)
}

fn default_negative_cache_ttl() -> Duration {
    Duration::from_secs(5)
}

fn default_introspection_timeout() -> Duration {
    Duration::from_secs(5)
}

fn default_true() -> bool {
    true
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum ClientAuthMethod {
    #[default]
    ClientSecretBasic,
    ClientSecretPost,
}

/// One key source: either a remote JWKS `url` or a symmetric `secret`.
/// Kept as one struct (rather than an untagged enum) so that a wrong key gets a
/// precise "unknown field" error instead of "did not match any variant".
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JwksProviderConfig {
    /// A remote JWKS endpoint; exactly one of `url` and `secret` is set.
    pub url: Option<Url>,
    /// Allowed signing algorithms for this provider. Empty: every asymmetric one.
    #[serde(default)]
    pub algorithms: Vec<jsonwebtoken::Algorithm>,
    #[serde(default = "default_refresh_interval", with = "humantime_serde")]
    pub(crate) refresh_interval: Duration,
    /// Unknown-`kid` refetches (and `max-age`-driven refreshes) happen at most this often.
    #[serde(default = "default_min_refetch_interval", with = "humantime_serde")]
    pub min_refetch_interval: Duration,
    /// While the JWKS endpoint fails, the last good keys are used for this long; then
    /// the provider fails closed.
    #[serde(default = "default_max_stale", with = "humantime_serde")]
    pub max_stale: Duration,
    /// Start even if the first fetch fails (retrying with backoff) instead of exiting 78.
    #[serde(default)]
    pub start_not_ready: bool,
    /// Bind this provider to one issuer: its keys verify only tokens with this `iss`.
    pub issuer: Option<String>,
    /// Refuse tokens whose `typ` is not `at+jwt` (RFC 9068). Default: `at+jwt`, `JWT`
    /// or no `typ` are accepted.
    #[serde(default)]
    pub require_at_jwt: bool,
    /// A symmetric HMAC key; its bytes are used as written, not base64-decoded.
    pub secret: Option<Secret>,
    /// The one algorithm accepted for `secret` (HS256, HS384 or HS512); unset means HS256.
    pub symmetric_algorithm: Option<jsonwebtoken::Algorithm>,
    /// The `kid` tokens signed with `secret` carry.
    pub header_key_id: Option<String>,
    /// Claim values mapped to scopes for this provider's tokens, beside
    /// `auth.oauth.claim_scopes`.
    #[serde(default)]
    pub claim_scopes: ClaimScopesConfig,
    /// The claim checked against the accepted audiences instead of `aud`, for
    /// providers whose access tokens carry none (Cognito: `client_id`). Needs
    /// `audiences`. A token without this claim is refused like a wrong `aud`.
    pub audience_claim: Option<String>,
    /// Accepted values of the audience claim for this provider's tokens. Empty:
    /// `auth.oauth.audiences`.
    #[serde(default, deserialize_with = "one_or_many")]
    pub audiences: Vec<String>,
    /// Claims whose values are the token's own scopes: `scope` and `scp` by default;
    /// add `permissions` for Auth0 RBAC. A string is split on spaces, an array gives
    /// one scope per string item.
    #[serde(default = "default_scope_claims", deserialize_with = "one_or_many")]
    pub scope_claims: Vec<String>,
    /// The claim naming the OAuth client (Okta: `cid`). Unset: `client_id`, then `azp`.
    pub client_id_claim: Option<String>,
}

impl Default for JwksProviderConfig {
    /// No key source at all: validation asks for one.
    fn default() -> Self {
        Self {
            url: None,
            algorithms: Vec::new(),
            refresh_interval: default_refresh_interval(),
            min_refetch_interval: default_min_refetch_interval(),
            max_stale: default_max_stale(),
            start_not_ready: false,
            issuer: None,
            require_at_jwt: false,
            secret: None,
            symmetric_algorithm: None,
            header_key_id: None,
            claim_scopes: ClaimScopesConfig::default(),
            audience_claim: None,
            audiences: Vec::new(),
            scope_claims: default_scope_claims(),
            client_id_claim: None,
        }
    }
}

/// The claims a token's own scopes are read from unless a provider says otherwise
/// (RFC 9068 §2.2.3 `scope`; `scp` as Okta and Entra ID issue it).
pub fn default_scope_claims() -> Vec<String> {
    vec!["scope".to_owned(), "scp".to_owned()]
}

fn default_refresh_interval() -> Duration {
    Duration::from_secs(60)
}

fn default_min_refetch_interval() -> Duration {
    Duration::from_secs(30)
}

fn default_max_stale() -> Duration {
    Duration::from_secs(24 * 3600)
}

/// The `log:` section: level and format of the operator's log.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    /// A `tracing` filter directive such as `info` or `mcpgate=debug`. `RUST_LOG` wins when set.
    #[serde(default = "default_log_level")]
    pub level: String,
    /// Text for a terminal, JSON lines for a collector.
    #[serde(default)]
    pub format: LogFormat,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            level: default_log_level(),
            format: LogFormat::default(),
        }
    }
}

fn default_log_level() -> String {
    "info".to_owned()
}

/// How log lines are written to standard error.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines (the default).
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// A string that must never reach logs: its `Debug` is redacted.
#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a value read from the file or the environment.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself, for the one place that must use it (a signer, a client, a
    /// connection).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// Accepts `key: value` as well as `key: [value, …]`, so that single-valued
/// environment variables (such as `MCP_OAUTH_AUTHORIZATION_SERVER_URL`) fill list keys.
pub(super) fn one_or_many<'de, D, T>(deserializer: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany<T> {
        Many(Vec<T>),
        One(T),
    }
    Ok(match OneOrMany::deserialize(deserializer)? {
        OneOrMany::Many(items) => items,
        OneOrMany::One(item) => vec![item],
    })
}

/// The audit log: one JSON line per decision.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditConfig {
    /// A file, appended to (reopened on SIGHUP, for logrotate).
    pub path: Option<std::path::PathBuf>,
    /// Write records to standard output instead of a file.
    #[serde(default)]
    pub stdout: bool,
    /// When written records are forced to disk.
    #[serde(default)]
    pub fsync: FsyncPolicy,
    /// Records waiting to be written; when full, requests wait (records are never dropped).
    #[serde(default = "default_audit_queue")]
    pub queue_capacity: usize,
}

impl Default for AuditConfig {
    fn default() -> Self {
        Self {
            path: None,
            stdout: false,
            fsync: FsyncPolicy::default(),
            queue_capacity: default_audit_queue(),
        }
    }
}

impl AuditConfig {
    /// Whether records go anywhere: a file path or stdout is set.
    pub fn is_enabled(&self) -> bool {
        self.stdout || self.path.is_some()
    }
}

fn default_audit_queue() -> usize {
    8192
}

/// `never` (the OS decides; records are still flushed to the file after every batch),
/// `always` (fsync after every batch written), or a duration such as `1s` (at most
/// that long between fsyncs).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum FsyncPolicy {
    /// The default: no fsync, the OS decides when data reaches the disk.
    #[default]
    Never,
    /// Fsync after every batch written.
    Always,
    /// Fsync at most this long apart.
    Every(Duration),
}

impl<'de> Deserialize<'de> for FsyncPolicy {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        match text.as_str() {
            "never" => Ok(Self::Never),
            "always" => Ok(Self::Always),
            other => match humantime::parse_duration(other) {
                Ok(every) if !every.is_zero() => Ok(Self::Every(every)),
                _ => Err(serde::de::Error::custom(format!(
                    "expected `never`, `always` or a duration such as `1s`, found `{other}`"
                ))),
            },
        }
    }
}

/// The `telemetry:` section.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelemetryConfig {
    /// `telemetry.traces`: OTLP span export.
    #[serde(default)]
    pub traces: TracesConfig,
}

/// OpenTelemetry traces, exported over OTLP (HTTP/protobuf). Off by default.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TracesConfig {
    /// Export a span per request; `OTEL_SDK_DISABLED=true` turns it off regardless.
    #[serde(default)]
    pub enabled: bool,
    /// The OTLP traces endpoint (e.g. `http://127.0.0.1:4318/v1/traces`). Unset: the
    /// standard `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` / `OTEL_EXPORTER_OTLP_ENDPOINT`,
    /// else `http://localhost:4318/v1/traces`.
    pub endpoint: Option<Url>,
    /// `service.name`; unset: `OTEL_SERVICE_NAME`, else `mcpgate`.
    pub service_name: Option<String>,
    /// Fraction of new traces sampled (a sampled parent is always followed).
    #[serde(default = "default_sample_ratio")]
    pub sample_ratio: f64,
    /// Extra headers on export requests (e.g. a collector's API key).
    #[serde(default)]
    pub headers: BTreeMap<String, Secret>,
}

impl Default for TracesConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            endpoint: None,
            service_name: None,
            sample_ratio: default_sample_ratio(),
            headers: BTreeMap::new(),
        }
    }
}

fn default_sample_ratio() -> f64 {
    1.0
}

/// MCP sessions: bound to the principal that opened them, kept in memory or in Redis.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionConfig {
    /// No session state at all: `Mcp-Session-Id` is neither forwarded nor returned,
    /// so every request stands alone (for upstreams that serve without sessions).
    #[serde(default)]
    pub stateless: bool,
    /// `memory` (one replica) or a `redis://` / `rediss://` URL (shared by replicas).
    #[serde(default)]
    pub store: SessionStoreConfig,
    /// A session unused this long is forgotten (and its stdio child, if any, stopped).
    #[serde(default = "default_session_idle", with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// Most sessions held at once; beyond it `initialize` gets 503.
    #[serde(default = "default_max_sessions")]
    pub max_sessions: u64,
}

impl Default for SessionConfig {
    fn default() -> Self {
        Self {
            stateless: false,
            store: SessionStoreConfig::default(),
            idle_timeout: default_session_idle(),
            max_sessions: default_max_sessions(),
        }
    }
}

fn default_session_idle() -> Duration {
    Duration::from_secs(60 * 60)
}

fn default_max_sessions() -> u64 {
    100_000
}

/// Where session ownership lives.
#[derive(Debug, Clone, Default, PartialEq)]
pub enum SessionStoreConfig {
    /// Sessions are known to this process only (the default); fine for one replica.
    #[default]
    Memory,
    /// A Redis URL; may carry a password, so it is kept as a secret.
    Redis(Secret),
}

impl<'de> Deserialize<'de> for SessionStoreConfig {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = Secret::deserialize(deserializer)?;
        let value = text.expose();
        if value == "memory" {
            Ok(Self::Memory)
        } else if value.starts_with("redis://") || value.starts_with("rediss://") {
            Ok(Self::Redis(text))
        } else {
            Err(serde::de::Error::custom(
                "expected `memory` or a redis:// or rediss:// URL",
            ))
        }
    }
}
