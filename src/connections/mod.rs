//! Per-user connections to a third-party service (`upstream.identity.connection`):
//! each user's own token at GitHub, Google, Atlassian…, kept sealed in a vault,
//! refreshed before it expires, and sent to the upstream on the tool calls that
//! need it. A user without one gets a URL elicitation to mcpgate's connect page,
//! where they first prove in the browser who they are (an OpenID sign-in at the
//! identity provider of the callers' tokens) and then authorize mcpgate at the
//! service. See docs/design-decisions.md for the threat model.
//!
//! `vault` keeps the tokens, `token` talks to the service, `flow` is the connect
//! flow without its HTTP side (in `server::connect`), `refusal` what a call gets
//! when it cannot be sent.

mod flow;
mod refusal;
mod store;
mod token;
mod vault;

use std::sync::Arc;
use std::time::Duration;

use http::{HeaderName, HeaderValue};
use serde_json::Value;

pub use self::flow::{CallbackOutcome, FlowError, Started};
pub use self::refusal::ConnectionRefusal;
pub(crate) use self::vault::User;
use self::vault::{Stored, Vault, now};
use crate::auth::Principal;
use crate::auth::seal::Sealer;
use crate::authorization_server::id_token::ProviderKeys;
use crate::authorization_server::provider::Discovery;
use crate::authorization_server::random::{random_bytes, random_id};
use crate::authorization_server::shared::SharedState;
use crate::config::{
    Config, ConfigError, ConnectionConfig, ConnectionStore, ProviderConfig, SessionStoreConfig,
};
use crate::mcp::envelope::Envelope;
use crate::mcp::version::ProtocolVersion;
use crate::redis::SharedRedis;

/// HKDF `info` of the vault's sealing key.
const PURPOSE: &[u8] = b"mcpgate upstream connection tokens v1";
const KEY: &str = "upstream.identity.connection";
/// How many 100 ms turns a call waits for another replica's refresh.
const REFRESH_WAIT_TURNS: u32 = 50;

/// The connection, built once at start (its links, flows and memory vault outlive
/// reloads; changing the section needs a restart, as the façade's does).
pub struct Connections {
    pub(crate) config: ConnectionConfig,
    sign_in: ProviderConfig,
    /// With the façade's provider as the sign-in: the façade's issuer, which the
    /// callers' tokens name instead of the provider's.
    facade_issuer: Option<String>,
    header: HeaderName,
    /// mcpgate's public origin: the connect links and the callback are on it.
    origin: String,
    pub(crate) secure_cookies: bool,
    vault: Vault,
    /// One refresh per user at a time, by vault key.
    locks: moka::sync::Cache<String, Arc<tokio::sync::Mutex<()>>>,
    http: reqwest::Client,
    discovery: Discovery,
    keys: ProviderKeys,
}

impl std::fmt::Debug for Connections {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connections")
            .field("name", &self.config.name)
            .finish_non_exhaustive()
    }
}

impl Connections {
    /// From `upstream.identity.connection`; `None` without it. `redis` is the
    /// session store's connection (`None` for `mcpgate check`, which serves
    /// nothing); `facade` the authorization-server façade's issuer, when it is
    /// configured (its provider signs users in when `sign_in` is unset).
    pub fn from_config(
        config: &Config,
        redis: Option<SharedRedis>,
        facade: Option<&str>,
    ) -> Result<Option<Arc<Self>>, ConfigError> {
        let Some(section) = config
            .upstream
            .as_ref()
            .and_then(|upstream| upstream.identity.as_ref())
            .and_then(|identity| identity.connection.as_ref())
        else {
            return Ok(None);
        };
        // Without `sign_in`, the façade's provider: it names users by the `sub`
        // the façade's tokens carry, under the façade's issuer.
        let (sign_in, facade_issuer) =
            match (&section.sign_in, &config.authorization_server, facade) {
                (Some(sign_in), _, _) => (sign_in.clone(), None),
                (None, Some(section), Some(issuer)) => {
                    (section.provider.clone(), Some(issuer.to_owned()))
                }
                _ => {
                    return Err(ConfigError::invalid(
                        format!("{KEY}.sign_in"),
                        "required without authorization_server: the OpenID client at the identity \
                     provider of the callers' tokens, where a user proves who they are before \
                     connecting",
                    ));
                }
            };
        if !sign_in.scopes.iter().any(|scope| scope == "openid") {
            return Err(ConfigError::invalid(
                format!("{KEY}.sign_in.scopes"),
                "must include openid: the sign-in is checked by its ID token",
            ));
        }
        let header = HeaderName::from_bytes(section.header.as_bytes())
            .map_err(|_| ConfigError::invalid(format!("{KEY}.header"), "not a header name"))?;
        let secret = match &section.secret_key {
            Some(secret) => decode_key(secret.expose())?,
            None => random_bytes::<32>().to_vec(),
        };
        if section.store == ConnectionStore::Redis
            && !matches!(config.session.store, SessionStoreConfig::Redis(_))
        {
            return Err(ConfigError::invalid(
                format!("{KEY}.store"),
                "redis needs session.store to be a Redis URL: connections share its connection",
            ));
        }
        let sealer = Sealer::derive_for(&secret, &[PURPOSE]);
        let store = match (section.store, redis) {
            (ConnectionStore::Redis, Some(redis)) => store::Store::Redis {
                shared: SharedState::new(redis, Arc::new(sealer)),
                pending_ttl: section.link_ttl,
            },
            _ => store::Store::memory(sealer, section.max_connections, section.link_ttl),
        };
        let public = config.public_url();
        let origin = public.origin().ascii_serialization();
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("mcpgate/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|error| ConfigError::invalid(KEY, error.to_string()))?;
        Ok(Some(Arc::new(Self {
            sign_in,
            facade_issuer,
            header,
            secure_cookies: public.scheme() == "https",
            origin,
            vault: Vault::new(&section.name, store),
            locks: moka::sync::Cache::builder()
                .max_capacity(section.max_connections)
                .time_to_idle(Duration::from_secs(600))
                .build(),
            http,
            discovery: Discovery::default(),
            keys: ProviderKeys::default(),
            config: section.clone(),
        })))
    }

    /// The connection's name.
    pub fn name(&self) -> &str {
        &self.config.name
    }

    /// What the audit record names.
    pub(crate) fn mechanism(&self) -> String {
        format!("connection:{}", self.config.name)
    }

    /// The connect page's path.
    pub fn connect_path(&self) -> String {
        format!("/connect/{}", self.config.name)
    }

    /// The manage page's path (sign in, see and remove one's connection).
    pub fn manage_path(&self) -> String {
        format!("/connect/{}/manage", self.config.name)
    }

    /// Where the manage page's form posts.
    pub fn disconnect_path(&self) -> String {
        format!("/connect/{}/disconnect", self.config.name)
    }

    /// mcpgate's public origin (`scheme://host[:port]`).
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// The callback's path (both legs: the sign-in and the service).
    pub fn callback_path(&self) -> String {
        format!("/connect/{}/callback", self.config.name)
    }

    fn callback_url(&self) -> String {
        format!("{}{}", self.origin, self.callback_path())
    }

    /// Whether the request calls a tool that needs the connection.
    pub(crate) fn needed_by(&self, envelope: &Envelope) -> bool {
        self.calls(envelope).next().is_some()
    }

    fn calls<'a>(
        &'a self,
        envelope: &'a Envelope,
    ) -> impl Iterator<Item = &'a crate::mcp::envelope::Message> {
        envelope.messages.iter().filter(|message| {
            message.method() == Some("tools/call")
                && match &self.config.tools {
                    None => true,
                    Some(tools) => message
                        .params()
                        .and_then(|params| params.get("name"))
                        .and_then(Value::as_str)
                        .is_some_and(|name| tools.iter().any(|tool| tool == name)),
                }
        })
    }

    /// The retry of a call mcpgate elicited for carries the user's answer to
    /// mcpgate's input request: it is mcpgate's, not the upstream's.
    pub(crate) fn strip_answer(&self, envelope: &mut Envelope) {
        envelope.remove_input_response(&refusal::input_key(&self.config.name));
    }

    /// Whether every call that needs the connection declares URL elicitation in
    /// its 2026-07-28 `_meta` client capabilities (without it the server must
    /// not send one).
    pub(crate) fn url_elicitation_declared(&self, envelope: &Envelope) -> bool {
        self.calls(envelope).all(|message| {
            message
                .params()
                .and_then(|params| params.get("_meta"))
                .and_then(|meta| meta.get("io.modelcontextprotocol/clientCapabilities"))
                .and_then(|capabilities| capabilities.get("elicitation"))
                .and_then(|elicitation| elicitation.get("url"))
                .is_some_and(Value::is_object)
        })
    }

    /// The header the upstream request carries for `principal`, or why the call
    /// cannot be sent.
    pub(crate) async fn header_for(
        &self,
        principal: Option<&Principal>,
        (version, url_declared): (ProtocolVersion, bool),
        id: Option<&Value>,
    ) -> Result<(HeaderName, HeaderValue), ConnectionRefusal> {
        let name = self.config.name.clone();
        let Some(user) = principal.and_then(User::of) else {
            return Err(ConnectionRefusal::NoUser {
                name,
                id: id.cloned(),
            });
        };
        match self.token(&user).await {
            Ok(Some(token)) => {
                let mut value =
                    HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| {
                        ConnectionRefusal::Unavailable {
                            name: name.clone(),
                            detail: "the service's token is not a valid header value".into(),
                            id: id.cloned(),
                        }
                    })?;
                value.set_sensitive(true);
                Ok((self.header.clone(), value))
            }
            Ok(None) if version >= ProtocolVersion::V2026_07_28 && !url_declared => {
                Err(ConnectionRefusal::MissingCapability {
                    name,
                    id: id.cloned(),
                })
            }
            Ok(None) => {
                let link =
                    self.link(&user)
                        .await
                        .map_err(|error| ConnectionRefusal::Unavailable {
                            name: name.clone(),
                            detail: error.to_string(),
                            id: id.cloned(),
                        })?;
                Err(ConnectionRefusal::NotConnected {
                    url: format!("{}{}?link={link}", self.origin, self.connect_path()),
                    elicitation_id: random_id(),
                    name,
                    version,
                    id: id.cloned(),
                })
            }
            Err(detail) => Err(ConnectionRefusal::Unavailable {
                name,
                detail,
                id: id.cloned(),
            }),
        }
    }

    /// The user's current access token: refreshed first when it is due, `None`
    /// when there is no connection (or the service refused the refresh).
    async fn token(&self, user: &User) -> Result<Option<String>, String> {
        let before = self.config.refresh_before;
        let unavailable = |error: store::Unavailable| error.to_string();
        let Some(stored) = self.vault.get(user).await.map_err(unavailable)? else {
            return Ok(None);
        };
        if !stored.due(before, now()) {
            return Ok(Some(stored.access_token));
        }
        if stored.refresh_token.is_none() {
            return Ok((!stored.expired(now())).then_some(stored.access_token));
        }
        // One refresh per user: in this process a lock, between replicas a lock in
        // Redis. The others wait and read what it stored. The new refresh token is
        // stored before either lock is released, so no caller can spend the old
        // one again (a rotating service would see a replay).
        let key = self.vault.key(user);
        let lock = self
            .locks
            .get_with(key.clone(), || Arc::new(tokio::sync::Mutex::new(())));
        let _held = lock.lock().await;
        let holder = random_id();
        let mut waited = 0;
        loop {
            let Some(stored) = self.vault.get(user).await.map_err(unavailable)? else {
                return Ok(None);
            };
            if !stored.due(before, now()) || stored.refresh_token.is_none() {
                return Ok((!stored.expired(now())).then_some(stored.access_token));
            }
            if self
                .vault
                .store
                .lock(&key, &holder)
                .await
                .map_err(unavailable)?
            {
                let refreshed = self.refresh(user, stored).await;
                self.vault.store.unlock(&key, &holder).await;
                return refreshed;
            }
            // Another replica refreshes: its result is read on the next turn.
            waited += 1;
            if waited > REFRESH_WAIT_TURNS {
                return if stored.expired(now()) {
                    Err("another replica's refresh did not finish in time".to_owned())
                } else {
                    Ok(Some(stored.access_token))
                };
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Spends `stored`'s refresh token (the caller holds both locks).
    async fn refresh(&self, user: &User, stored: Stored) -> Result<Option<String>, String> {
        let unavailable = |error: store::Unavailable| error.to_string();
        let Some(refresh_token) = stored.refresh_token.clone() else {
            return Ok(None);
        };
        match token::refresh(&self.http, &self.config.provider, &refresh_token).await {
            Ok(granted) => {
                let renewed = Stored {
                    access_token: granted.access_token,
                    // A service that does not rotate keeps the one it gave.
                    refresh_token: granted.refresh_token.or(Some(refresh_token)),
                    expires_at: granted.expires_in.map(|secs| now().saturating_add(secs)),
                    scope: granted.scope.or(stored.scope),
                    connected_at: stored.connected_at,
                };
                self.vault.put(user, &renewed).await.map_err(unavailable)?;
                Ok(Some(renewed.access_token))
            }
            Err(token::TokenError::Refused(code)) => {
                tracing::info!(
                    connection = %self.config.name,
                    "the service refused a refresh ({code}); the connection is removed"
                );
                self.vault.delete(user).await.map_err(unavailable)?;
                Ok(None)
            }
            // Still valid a while: used; past its expiry: never.
            Err(error) if !stored.expired(now()) => {
                tracing::warn!(connection = %self.config.name, "refresh failed, token still valid: {error}");
                Ok(Some(stored.access_token))
            }
            Err(error) => Err(error.to_string()),
        }
    }

    /// What the admin listener shows of a user's connection (never a token).
    pub async fn describe(&self, issuer: &str, subject: &str) -> Result<Option<Value>, String> {
        let user = User {
            issuer: issuer.to_owned(),
            subject: subject.to_owned(),
        };
        let stored = self
            .vault
            .get(&user)
            .await
            .map_err(|error| error.to_string())?;
        Ok(stored.map(|stored| {
            serde_json::json!({
                "name": self.config.name,
                "scope": stored.scope,
                "expires_at": stored.expires_at,
                "connected_at": stored.connected_at,
                "refreshable": stored.refresh_token.is_some(),
            })
        }))
    }

    /// Removes a user's connection; whether there was one.
    pub async fn disconnect(&self, issuer: &str, subject: &str) -> Result<bool, String> {
        self.forget(&User {
            issuer: issuer.to_owned(),
            subject: subject.to_owned(),
        })
        .await
        .map_err(|error| error.to_string())
    }

    /// Deletes the user's connection, and revokes its grant at the service when
    /// it has a revocation endpoint (the refresh token, which ends the grant, or
    /// else the access token). Whether there was one.
    pub(crate) async fn forget(&self, user: &User) -> Result<bool, store::Unavailable> {
        let Some(stored) = self.vault.get(user).await? else {
            return Ok(false);
        };
        let deleted = self.vault.delete(user).await?;
        if let Some(endpoint) = &self.config.revocation_endpoint {
            let token = match &stored.refresh_token {
                Some(refresh) => (refresh.as_str(), "refresh_token"),
                None => (stored.access_token.as_str(), "access_token"),
            };
            if let Err(error) =
                token::revoke(&self.http, &self.config.provider, endpoint, token).await
            {
                tracing::warn!(connection = %self.config.name, "revoking a disconnected grant failed: {error}");
            }
        }
        Ok(deleted)
    }
}

fn decode_key(text: &str) -> Result<Vec<u8>, ConfigError> {
    use base64::Engine;
    use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
    let text = text.trim();
    let bytes = STANDARD
        .decode(text)
        .or_else(|_| URL_SAFE_NO_PAD.decode(text))
        .map_err(|_| ConfigError::invalid(format!("{KEY}.secret_key"), "is not base64"))?;
    if bytes.len() < 32 {
        return Err(ConfigError::invalid(
            format!("{KEY}.secret_key"),
            "must decode to at least 32 bytes",
        ));
    }
    Ok(bytes)
}
