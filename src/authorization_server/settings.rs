//! What one configuration makes of the façade (`Settings`, rebuilt on reload) and
//! what outlives a reload (`Facade`: the sign-ins in progress).

use std::sync::Arc;

use arc_swap::ArcSwap;
use url::Url;

use super::authorize::PageError;
use super::clients::{Client, ConfiguredClients};
use super::events::Event;
use super::grants::Grants;
use super::id_token::ProviderKeys;
use super::metadata::{AuthorizationServerMetadata, Endpoints};
use super::metadata_documents::fetch::Fetcher;
use super::metadata_documents::{DocumentRules, Documents};
use super::pending::PendingStore;
use super::provider::Discovery;
use super::registration::{self, limit::PerIpLimit, store::RegisteredClients};
use super::scope_limit::ScopeLimit;
use super::secret::SecretKey;
use super::shared::{SharedState, Unavailable};
use super::signing::SigningKeys;
use crate::audit::AuditLog;
use crate::auth::Principal;
use crate::config::{
    AuthorizationServerConfig, Config, ConfigError, ProviderAuthMethod, ProviderConfig,
    SessionStoreConfig,
};
use crate::redis::SharedRedis;

/// The façade as one configuration defines it.
#[derive(Debug)]
pub(crate) struct Settings {
    pub(crate) config: AuthorizationServerConfig,
    pub(crate) endpoints: Endpoints,
    pub(crate) metadata: AuthorizationServerMetadata,
    /// The protected resources tokens are issued for (one today; routes add more).
    pub(crate) resources: Vec<String>,
    /// The scopes clients may ask for: the policy's.
    pub(crate) scopes: Vec<String>,
    pub(crate) clients: ConfiguredClients,
    /// How clients known by a metadata document are found.
    pub(crate) documents: DocumentRules,
    pub(crate) key: SecretKey,
    /// The MCP server's name on the consent page.
    pub(crate) server_name: String,
    /// Cookies get `Secure` when the issuer is `https`.
    pub(crate) secure_cookies: bool,
    /// mcpgate's token-signing keys.
    pub(crate) signing: SigningKeys,
    /// Which requested scopes a user's claims allow.
    pub(crate) scope_limit: ScopeLimit,
}

impl Settings {
    /// `None` when the section is absent. `scopes` are the policy's `scopes_supported`.
    pub(crate) fn from_config(
        config: &Config,
        scopes: Vec<String>,
    ) -> Result<Option<Self>, ConfigError> {
        let Some(section) = &config.authorization_server else {
            return Ok(None);
        };
        let public_url = config.public_url();
        let issuer = issuer(section.issuer.as_ref(), &public_url)?;
        provider_credentials(&section.provider)?;
        let endpoints = Endpoints::new(&issuer, section.registration.enabled);
        let clients = ConfiguredClients::new(&section.clients, &section.allowed_redirect_schemes)?;
        let documents = DocumentRules::from_config(
            &section.client_metadata_documents,
            &section.allowed_redirect_schemes,
        )?;
        registration::check_config(&section.registration)?;
        super::id_jag::check_config(&section.identity_assertion_issuers)?;
        shared_between_replicas(config, section)?;
        let key = SecretKey::from_config(section.secret_key.as_ref())?;
        if !config.auth.oauth.enabled() {
            return Err(ConfigError::Invalid {
                key: "auth.oauth.enabled".into(),
                message: "must be true when authorization_server is configured (its tokens are OAuth tokens)".into(),
            });
        }
        let signing = SigningKeys::from_config(section)?;
        section
            .provider
            .claim_scopes
            .check("authorization_server.provider.claim_scopes")?;
        let scope_limit = ScopeLimit::new(&section.provider.claim_scopes);
        let metadata = AuthorizationServerMetadata::new(
            &endpoints,
            &scopes,
            section.client_metadata_documents.enabled,
            !section.identity_assertion_issuers.is_empty(),
        );
        let server_name = section
            .consent
            .server_name
            .clone()
            .or_else(|| public_url.host_str().map(str::to_owned))
            .unwrap_or_else(|| "this MCP server".to_owned());
        Ok(Some(Self {
            secure_cookies: endpoints.issuer.starts_with("https://"),
            config: section.clone(),
            endpoints,
            metadata,
            resources: vec![public_url.as_str().to_owned()],
            scopes,
            clients,
            documents,
            key,
            server_name,
            signing,
            scope_limit,
        }))
    }
}

impl Settings {
    /// What one route needs to accept the façade's tokens: those issued for its
    /// own resource, and no other route's.
    pub(crate) fn local_issuer_for(&self, resource: &str) -> crate::auth::LocalIssuer {
        crate::auth::LocalIssuer {
            issuer: self.endpoints.issuer.clone(),
            jwks: serde_json::from_slice(self.signing.jwks()).unwrap_or_default(),
            audiences: vec![resource.to_owned()],
        }
    }

    /// The resources of every route, and the scopes their policies name (the
    /// first resource is the default of a request that names none).
    pub(crate) fn serve(&mut self, resources: Vec<String>, scopes: Vec<String>) {
        let section = &self.config;
        self.metadata = AuthorizationServerMetadata::new(
            &self.endpoints,
            &scopes,
            section.client_metadata_documents.enabled,
            !section.identity_assertion_issuers.is_empty(),
        );
        self.resources = resources;
        self.scopes = scopes;
    }
}

/// The issuer: the configured one verbatim, else the public URL's origin. It must
/// be served by this listener, so it shares the public URL's origin.
fn issuer(configured: Option<&Url>, public_url: &Url) -> Result<String, ConfigError> {
    let invalid = |message: &str| ConfigError::Invalid {
        key: "authorization_server.issuer".into(),
        message: message.into(),
    };
    let Some(issuer) = configured else {
        return Ok(public_url.origin().ascii_serialization());
    };
    if issuer.origin() != public_url.origin() {
        return Err(invalid(
            "must be on the same scheme, host and port as server.public_url (mcpgate serves both)",
        ));
    }
    if issuer.query().is_some() || issuer.fragment().is_some() {
        return Err(invalid("must not have a query or fragment (RFC 8414 §2)"));
    }
    let text = issuer.as_str();
    // `Url` adds a `/` to a bare origin; the issuer clients compare is without it.
    Ok(if issuer.path() == "/" {
        text.trim_end_matches('/').to_owned()
    } else {
        text.to_owned()
    })
}

/// With Redis, replicas share the façade's state: each must open what another
/// sealed and accept the tokens another signed, so neither key may be one a
/// process makes up at start.
fn shared_between_replicas(
    config: &Config,
    section: &AuthorizationServerConfig,
) -> Result<(), ConfigError> {
    if !matches!(config.session.store, SessionStoreConfig::Redis(_)) {
        return Ok(());
    }
    let missing = |key: &str, what: &str| ConfigError::Invalid {
        key: format!("authorization_server.{key}"),
        message: format!(
            "is required when session.store is Redis (replicas share the façade's state and must all {what})"
        ),
    };
    if section.secret_key.is_none() {
        return Err(missing(
            "secret_key",
            "open what the others sealed with the same key",
        ));
    }
    if section.signing_key.is_none() && section.signing_key_file.is_none() {
        return Err(missing(
            "signing_key",
            "sign tokens with the same key (set signing_key or signing_key_file)",
        ));
    }
    Ok(())
}

/// mcpgate's client at the provider has a secret exactly when it authenticates with one.
fn provider_credentials(provider: &ProviderConfig) -> Result<(), ConfigError> {
    let invalid = |key: &str, message: &str| ConfigError::Invalid {
        key: format!("authorization_server.provider.{key}"),
        message: message.into(),
    };
    match (provider.auth_method, &provider.client_secret) {
        (ProviderAuthMethod::None, Some(_)) => Err(invalid(
            "client_secret",
            "must not be set with auth_method: none (a public client has no secret)",
        )),
        (ProviderAuthMethod::ClientSecretBasic | ProviderAuthMethod::ClientSecretPost, None) => {
            Err(invalid(
                "client_secret",
                "is required unless auth_method is none (a public client at the provider)",
            ))
        }
        _ if provider.subject_claim.trim().is_empty() => {
            Err(invalid("subject_claim", "must name a userinfo member"))
        }
        _ => Ok(()),
    }
}

/// The façade across reloads: the current settings, the sign-ins in progress and
/// the clients learned at run time.
pub(crate) struct Facade {
    settings: ArcSwap<Settings>,
    pub(crate) pending: PendingStore,
    /// Grants, codes and refresh tokens.
    pub(crate) grants: Grants,
    pub(crate) discovery: Discovery,
    /// The provider's ID-token keys.
    pub(crate) provider_keys: ProviderKeys,
    /// For the provider's endpoints.
    pub(crate) http: reqwest::Client,
    /// Metadata documents fetched, and fetches failed.
    pub(crate) documents: Documents,
    /// Fetches metadata documents (public addresses only, unless a test config
    /// allowed others at start).
    pub(crate) fetcher: Fetcher,
    /// Dynamically registered clients (sized by the first configuration).
    pub(crate) registered: RegisteredClients,
    /// Registrations per client address.
    pub(crate) registrations: PerIpLimit,
    /// Where each step is recorded (the server's audit log).
    audit: AuditLog,
}

impl Facade {
    /// The façade for its first settings, with its own HTTP client for the
    /// provider (no redirects followed: an endpoint that moves is a configuration
    /// problem, and a client metadata document must not redirect).
    ///
    /// With `redis` (the session store's connection), the state lives there, sealed
    /// with the first settings' key (`secret_key` changes need a restart).
    pub(crate) fn new(
        settings: Arc<Settings>,
        redis: Option<SharedRedis>,
        audit: AuditLog,
    ) -> Arc<Self> {
        let shared = redis.map(|redis| SharedState::new(redis, settings.key.sealer()));
        let pending = PendingStore::new(settings.config.pending_ttl, shared.clone());
        let grants = Grants::new(
            settings.config.refresh_token_ttl,
            settings.config.access_token_ttl,
            shared.clone(),
        );
        // A User-Agent: GitHub's API refuses requests without one.
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("mcpgate/", env!("CARGO_PKG_VERSION")))
            .build()
            .unwrap_or_default();
        let registered = RegisteredClients::new(&settings.config.registration, shared);
        let fetcher = Fetcher::new(
            settings
                .config
                .client_metadata_documents
                .allow_private_addresses,
        );
        Arc::new(Self {
            settings: ArcSwap::new(settings),
            pending,
            grants,
            discovery: Discovery::default(),
            provider_keys: ProviderKeys::default(),
            http,
            documents: Documents::default(),
            fetcher,
            registered,
            registrations: PerIpLimit::default(),
            audit,
        })
    }

    /// Counts the event and writes its audit record (waiting, never dropping it,
    /// when the log is behind).
    pub(crate) async fn audit(&self, event: Event) {
        self.audit.facade(event.finish()).await;
    }

    /// A client by id: configured, then registered, then (for a URL) by its
    /// metadata document, fetched if not remembered.
    pub(crate) async fn find_client(
        &self,
        settings: &Settings,
        client_id: &str,
    ) -> Result<Client, PageError> {
        if let Some(client) = settings.clients.get(client_id) {
            return Ok(client.clone());
        }
        let registered = self
            .registered
            .get(client_id)
            .await
            .map_err(|Unavailable(cause)| PageError::Unavailable(cause))?;
        if let Some(client) = registered {
            return Ok(client);
        }
        match settings
            .documents
            .find(&self.documents, &self.fetcher, client_id)
            .await
        {
            Some(Ok(client)) => Ok(client),
            Some(Err(error)) => Err(PageError::MetadataDocument(error.to_string())),
            None => Err(PageError::UnknownClient(
                client_id.chars().take(200).collect(),
            )),
        }
    }

    pub(crate) fn settings(&self) -> Arc<Settings> {
        self.settings.load_full()
    }

    /// Whether `principal` holds one of this façade's tokens whose grant is revoked.
    /// With replicas, one `EXISTS` in Redis per request with such a token (other
    /// tokens pay nothing), so a revocation anywhere counts at once; when Redis
    /// cannot answer, the error (the request fails closed).
    pub(crate) async fn revoked(&self, principal: &Principal) -> Result<bool, Unavailable> {
        let Some(grant) = &principal.grant_id else {
            return Ok(false);
        };
        let ours = {
            let settings = self.settings.load();
            principal.issuer.as_deref() == Some(settings.endpoints.issuer.as_str())
        };
        if !ours {
            return Ok(false);
        }
        self.grants.is_revoked(grant).await
    }

    /// A reload: new settings, the same sign-ins in progress and registered
    /// clients. Documents are fetched again under the new rules.
    pub(crate) fn update(&self, settings: Arc<Settings>) {
        self.settings.store(settings);
        self.documents.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::super::clients::{Client, ClientKind};
    use base64::Engine;

    use super::super::metadata_documents::cache::Entry;
    use super::*;

    const CONFIG: &str = "upstream:
  url: http://127.0.0.1:1/mcp
auth:
  oauth:
    enabled: true
authorization_server:
  provider:
    issuer: https://idp.test
    authorization_endpoint: https://idp.test/authorize
    token_endpoint: https://idp.test/token
    client_id: mcpgate-at-idp
    client_secret: s3cret
";

    fn settings(yaml: &str) -> Result<Arc<Settings>, ConfigError> {
        let config = crate::config::load_from_str(yaml)?;
        Ok(Arc::new(Settings::from_config(&config, vec![])?.unwrap()))
    }

    #[tokio::test]
    async fn a_reload_forgets_fetched_documents_but_keeps_registered_clients() {
        let facade = Facade::new(settings(CONFIG).unwrap(), None, AuditLog::disabled());
        let client = |id: &str, kind| Client {
            client_id: id.into(),
            client_name: None,
            redirect_uris: vec!["https://app.example/cb".into()],
            kind,
            secret_hash: None,
        };
        facade
            .registered
            .insert(client("registered", ClientKind::Registered))
            .await
            .unwrap();
        let remembered = |outcome: u8| async move {
            Entry {
                outcome: Ok(client(
                    &format!("https://app.example/{outcome}"),
                    ClientKind::MetadataDocument,
                )),
                ttl: std::time::Duration::from_secs(60),
            }
        };
        let url = "https://app.example/c";
        facade.documents.get_or_fetch(url, remembered(1)).await;
        let before = facade.documents.get_or_fetch(url, remembered(2)).await;
        assert_eq!(
            before.outcome.as_ref().unwrap().client_id,
            "https://app.example/1"
        );
        facade.update(settings(CONFIG).unwrap());
        let after = facade.documents.get_or_fetch(url, remembered(3)).await;
        assert_eq!(
            after.outcome.as_ref().unwrap().client_id,
            "https://app.example/3"
        );
        assert!(facade.registered.get("registered").await.unwrap().is_some());
    }

    #[test]
    fn registration_settings_are_checked_at_load() {
        let with = |extra: &str| settings(&format!("{CONFIG}  registration:\n{extra}"));
        let error = with("    per_ip_per_minute: 0\n").unwrap_err().to_string();
        assert!(
            error.starts_with("authorization_server.registration.per_ip_per_minute:"),
            "{error}"
        );
        let error = with("    initial_access_token: short\n")
            .unwrap_err()
            .to_string();
        assert!(
            error.starts_with("authorization_server.registration.initial_access_token:"),
            "{error}"
        );
        assert!(with("    enabled: true\n    initial_access_token: a-long-enough-token\n").is_ok());
    }

    #[test]
    fn replicas_need_a_shared_secret_key_and_signing_key() {
        let redis = CONFIG.replacen(
            "auth:",
            "session:\n  store: redis://127.0.0.1:6379\nauth:",
            1,
        );
        let error = settings(&redis).unwrap_err().to_string();
        assert!(
            error.starts_with("authorization_server.secret_key: is required"),
            "{error}"
        );
        let key = format!(
            "{redis}  secret_key: {}\n",
            base64::engine::general_purpose::STANDARD.encode([7u8; 32])
        );
        let error = settings(&key).unwrap_err().to_string();
        assert!(
            error.starts_with("authorization_server.signing_key: is required"),
            "{error}"
        );
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("signing.pem");
        let both = format!("{key}  signing_key_file: {}\n", file.display());
        assert!(settings(&both).is_ok());
        // One process keeps its state in memory: neither is required.
        assert!(settings(CONFIG).is_ok());
    }

    #[test]
    fn the_issuer_is_the_public_origin_unless_configured() {
        let public = Url::parse("https://mcp.example.com/tools/mcp").unwrap();
        assert_eq!(issuer(None, &public).unwrap(), "https://mcp.example.com");
        let with_path = Url::parse("https://mcp.example.com/as").unwrap();
        assert_eq!(
            issuer(Some(&with_path), &public).unwrap(),
            "https://mcp.example.com/as"
        );
        let elsewhere = Url::parse("https://auth.example.com").unwrap();
        let error = issuer(Some(&elsewhere), &public).unwrap_err().to_string();
        assert!(error.starts_with("authorization_server.issuer:"), "{error}");
        let query = Url::parse("https://mcp.example.com/?a=1").unwrap();
        assert!(issuer(Some(&query), &public).is_err());
    }

    #[test]
    fn the_provider_secret_comes_with_the_method_that_uses_it() {
        let provider = |extra: serde_json::Value| -> ProviderConfig {
            let mut value = serde_json::json!({
                "issuer": "https://idp.example.com",
                "client_id": "mcpgate",
            });
            for (key, field) in extra.as_object().unwrap() {
                value[key] = field.clone();
            }
            serde_json::from_value(value).unwrap()
        };
        let error = |extra| {
            provider_credentials(&provider(extra))
                .unwrap_err()
                .to_string()
        };
        assert!(provider_credentials(&provider(serde_json::json!({"client_secret": "s"}))).is_ok());
        assert!(
            provider_credentials(&provider(serde_json::json!({"auth_method": "none"}))).is_ok()
        );
        assert!(
            error(serde_json::json!({}))
                .starts_with("authorization_server.provider.client_secret: is required")
        );
        assert!(
            error(serde_json::json!({"auth_method": "none", "client_secret": "s"}))
                .starts_with("authorization_server.provider.client_secret: must not")
        );
        assert!(
            error(serde_json::json!({"auth_method": "none", "subject_claim": " "}))
                .starts_with("authorization_server.provider.subject_claim:")
        );
    }
}
