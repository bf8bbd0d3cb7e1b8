//! Everything that one configuration produces, built in one place so that startup,
//! `mcpgate check` and (later) reload share the same path. Swapped whole, atomically.

use std::sync::Arc;

use crate::auth::Authenticator;
use crate::authorization_server;
use crate::config::{Config, ConfigError};
use crate::edge::challenge::ChallengeParams;
use crate::edge::client_ip::ClientIpResolver;
use crate::edge::cors::Cors;
use crate::edge::metadata::ProtectedResourceMetadata;
use crate::edge::origin::AllowedOrigins;
use crate::limits::LimitRules;
use crate::mcp::session::SharedRedis;
use crate::policy::Policy;
use crate::upstream::{
    Identity, Member, TlsRoots, TokenExchange, Upstream, UpstreamKind, UpstreamSettings,
    VirtualUpstream,
};

mod computed;
mod retirement;
mod routes;
mod validate;

pub use self::retirement::{Retirement, retired};
pub use self::routes::{Destination, Gateways};
pub use self::validate::validate;

/// The running state derived from one configuration.
pub struct Gateway {
    /// The configuration this state was built from.
    pub config: Arc<Config>,
    /// `None` when no credential source is configured: requests pass unauthenticated.
    pub auth: Option<Authenticator>,
    /// Shared with the list filters of the answers in flight.
    pub policy: Arc<Policy>,
    /// Shared with the next gateway when a reload leaves `upstream` alone, so that
    /// what it runs (stdio children, the upstream token) outlives the reload.
    pub upstream: Arc<Upstream>,
    /// The `upstream` section resolved into its one kind.
    pub upstream_settings: UpstreamSettings,
    pub(crate) challenge: ChallengeParams,
    /// `None` when OAuth is off: the metadata paths answer 404.
    pub metadata: Option<ProtectedResourceMetadata>,
    pub(crate) allowed_origins: AllowedOrigins,
    /// `None` when `server.cors` is absent: no CORS headers at all.
    pub(crate) cors: Option<Cors>,
    /// Where a request comes from (`server.trusted_proxies`).
    pub(crate) client_ip: ClientIpResolver,
    /// `limits:` compiled; the counters outlive the gateway (`AppState`).
    pub(crate) limits: Arc<LimitRules>,
    /// The authorization-server façade's settings, when configured.
    pub(crate) authorization_server: Option<Arc<authorization_server::Settings>>,
    /// `upstream.identity`: who calls, told to the upstream.
    pub(crate) identity: Option<Arc<Identity>>,
    /// `upstream.identity.exchange`: the caller's token exchanged for the
    /// upstream's. Kept with the upstream across reloads (with its cache).
    pub(crate) exchange: Option<Arc<TokenExchange>>,
    /// `upstream.identity.connection`: each user's token at a third-party service.
    /// Kept across a reload that leaves the section alone (its vault and links).
    pub(crate) connections: Option<Arc<crate::connections::Connections>>,
    /// Ends the standing streams of this route's upstream when a reload leaves it
    /// out; shared with the next gateway while the route and its `upstream` remain.
    pub retirement: Arc<Retirement>,
}

impl Gateway {
    /// For `mcpgate check`: with `authorization_server:` configured, reaches its
    /// identity provider's discovery document and says so; `None` without the section.
    pub async fn check_identity_provider(&self) -> Result<Option<String>, ConfigError> {
        match &self.authorization_server {
            Some(settings) => {
                let config = &settings.config;
                let provider = authorization_server::provider::check(&config.provider).await?;
                let issuers = authorization_server::id_jag::check_reachable(
                    &config.identity_assertion_issuers,
                    config.provider.timeout,
                )
                .await?;
                Ok(Some(if issuers == 0 {
                    provider
                } else {
                    format!("{provider}, {issuers} trusted identity-assertion issuer(s)")
                }))
            }
            None => Ok(None),
        }
    }

    /// Builds one route's gateway from its expanded configuration (see
    /// [`Gateways`]): the running one of the same route is kept where its
    /// configuration did not change (stdio sessions survive a reload). `redis` is the
    /// session store's connection, which outlives reloads: a reload opens none.
    /// `facade` is the one authorization-server façade every route shares, `tls` the
    /// system's roots every route's upstream shares.
    pub(crate) async fn build_route(
        config: Config,
        idp_client: &reqwest::Client,
        running: Option<&Gateway>,
        redis: Option<SharedRedis>,
        (facade, built): (Option<&authorization_server::Settings>, &[Gateway]),
        tls: &TlsRoots,
    ) -> Result<Self, ConfigError> {
        validate::check_route(&config)?;
        let upstream_config = crate::config::require_upstream(&config)?;
        let settings = UpstreamSettings::from_section(Some(upstream_config))?;
        let limit = config.auth.oauth.max_scope_combinations;
        // A GraphQL upstream is never kept: its schema and operations are files that
        // may have changed under an unchanged configuration, and it holds nothing
        // worth keeping (no session, no child process, no token).
        // Nor is a virtual one: its members are rebuilt with the reload.
        let kept = running.filter(|running| {
            !matches!(
                settings.kind,
                UpstreamKind::Graphql(_) | UpstreamKind::Virtual(_)
            ) && running.config.upstream.as_ref() == Some(upstream_config)
                && running.config.auth.oauth.max_scope_combinations == limit
        });
        let upstream = match (kept, &settings.kind) {
            (Some(running), _) => Arc::clone(&running.upstream),
            (None, UpstreamKind::Virtual(merged)) => {
                let members = members(merged, built, limit, tls).await?;
                Arc::new(Upstream::Virtual(Box::new(VirtualUpstream::new(
                    merged,
                    members,
                    settings.timeout,
                    running.and_then(|running| running.upstream.virtual_server()),
                ))))
            }
            (None, _) => Arc::new(Upstream::from_settings(&settings, limit, tls)?),
        };
        // Wider than `kept`: a GraphQL upstream rebuilt from the same section is the
        // same server to its clients.
        let retirement = match running
            .filter(|running| running.config.upstream.as_ref() == Some(upstream_config))
        {
            Some(running) => Arc::clone(&running.retirement),
            None => Arc::new(Retirement::new()),
        };
        if kept.is_none() {
            // A reload with new upstream credentials fails if they do not work.
            upstream.check_credentials().await?;
        }
        let (declared, more_scopes) = upstream.declared_tools();
        let policy = Policy::from_config(&config)?.with_declared_tools(declared, more_scopes)?;
        let oauth_enabled = config.auth.oauth.enabled();
        let local_issuer =
            facade.map(|settings| settings.local_issuer_for(config.public_url().as_str()));
        let auth =
            Authenticator::build(&config, idp_client, redis.clone(), local_issuer.as_ref()).await?;
        // With the façade on, clients are sent to mcpgate itself.
        let authorization_servers = match facade {
            Some(facade) => vec![facade.endpoints.issuer.clone()],
            None => config.advertised_authorization_servers(),
        };
        let metadata = oauth_enabled
            .then(|| ProtectedResourceMetadata::new(&config, &policy, &authorization_servers));
        let challenge = ChallengeParams {
            // Without OAuth there is no metadata document to point to.
            resource_metadata: oauth_enabled.then(|| config.metadata_url()),
            connect_scopes: policy.connect_scopes(),
            echo_token_scopes: config.auth.oauth.scope_challenge_include_token_scopes,
        };
        let identity = match (&settings.kind, &upstream_config.identity) {
            (UpstreamKind::Http(http), Some(section)) => Some(Arc::new(Identity::from_config(
                section,
                config.public_url().as_str(),
                http.url.as_str(),
            )?)),
            _ => None,
        };
        let exchange_section = exchange_section(&config)?;
        let exchange = match (kept, &settings.kind) {
            (Some(running), _) => running.exchange.clone(),
            (None, UpstreamKind::Http(_)) => {
                token_exchange(exchange_section, &settings, local_issuer, redis.clone())?
            }
            (None, _) => None,
        };
        let section = upstream_config
            .identity
            .as_ref()
            .and_then(|identity| identity.connection.as_ref());
        let connections = match running
            .and_then(|running| running.connections.clone())
            .filter(|kept| section == Some(&kept.config))
        {
            Some(kept) => Some(kept),
            None => crate::connections::Connections::from_config(
                &config,
                redis,
                facade.map(|facade| facade.endpoints.issuer.as_str()),
            )?,
        };
        let cors = config.server.cors.as_ref().map(Cors::new);
        let allowed_origins = AllowedOrigins::new(
            &config.public_url(),
            &config.server.allowed_origins,
            cors.as_ref().map_or(&[], Cors::origins),
        );
        Ok(Self {
            client_ip: ClientIpResolver::from_config(&config.server)?,
            limits: Arc::new(LimitRules::from_config(&config)?),
            allowed_origins,
            cors,
            config: Arc::new(config),
            auth,
            policy: Arc::new(policy),
            upstream,
            upstream_settings: settings,
            challenge,
            metadata,
            // Set by `Gateways` once every route is built: the façade's scopes are
            // those of all routes.
            authorization_server: None,
            identity,
            exchange,
            connections,
            retirement,
        })
    }
}

/// A virtual server's members: the routes built before it, by name, and the
/// servers of its own, built here.
async fn members(
    merged: &crate::config::VirtualServerConfig,
    built: &[Gateway],
    limit: usize,
    tls: &TlsRoots,
) -> Result<Vec<Member>, ConfigError> {
    let mut members = Vec::with_capacity(merged.members.len());
    for (index, member) in merged.members.iter().enumerate() {
        let key = format!("upstream.virtual.members[{index}]");
        let (upstream, probe) = match (&member.route, &member.server) {
            (Some(route), _) => {
                let gateway = built
                    .iter()
                    .find(|gateway| gateway.config.route_name() == Some(route.as_str()))
                    .ok_or_else(|| {
                        ConfigError::invalid(
                            format!("{key}.route"),
                            format!("no route is named {route:?}"),
                        )
                    })?;
                let probe = gateway.upstream_settings.probe_url().cloned();
                (Arc::clone(&gateway.upstream), probe)
            }
            (None, Some(server)) => {
                // The section's own errors, under the member's key.
                let under = |error: ConfigError| match error {
                    ConfigError::Invalid {
                        key: inner,
                        message,
                    } => ConfigError::Invalid {
                        key: inner.replacen("upstream", &format!("{key}.server"), 1),
                        message,
                    },
                    other => other,
                };
                let settings = server.resolve().map_err(under)?;
                let upstream = Upstream::from_settings(&settings, limit, tls).map_err(under)?;
                upstream.check_credentials().await.map_err(under)?;
                (Arc::new(upstream), settings.probe_url().cloned())
            }
            (None, None) => {
                return Err(ConfigError::invalid(key, "set route or server"));
            }
        };
        members.push(Member {
            name: Arc::from(member.label()),
            prefix: Arc::from(member.prefix.as_str()),
            upstream,
            probe,
        });
    }
    Ok(members)
}

/// `upstream.identity.exchange`, when configured. It exchanges the caller's OAuth
/// token, so it needs `auth.oauth` (checked on every build, a reload that keeps the
/// upstream too).
fn exchange_section(
    config: &Config,
) -> Result<Option<&crate::config::TokenExchangeConfig>, ConfigError> {
    let section = config
        .upstream
        .as_ref()
        .and_then(|upstream| upstream.identity.as_ref())
        .and_then(|identity| identity.exchange.as_ref());
    if section.is_some() && !config.auth.oauth.enabled() {
        return Err(ConfigError::invalid(
            "upstream.identity.exchange",
            "needs auth.oauth.enabled: the caller's OAuth token is what is exchanged",
        ));
    }
    Ok(section)
}

/// `upstream.identity.exchange`, built with its own HTTP client for the provider.
fn token_exchange(
    section: Option<&crate::config::TokenExchangeConfig>,
    settings: &UpstreamSettings,
    local_issuer: Option<crate::auth::LocalIssuer>,
    redis: Option<SharedRedis>,
) -> Result<Option<Arc<TokenExchange>>, ConfigError> {
    let Some(section) = section else {
        return Ok(None);
    };
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .connect_timeout(settings.connect_timeout)
        .build()
        .map_err(|error| {
            ConfigError::invalid(
                "upstream.identity.exchange",
                format!("cannot build HTTP client: {error}"),
            )
        })?;
    Ok(Some(Arc::new(TokenExchange::new(
        section.clone(),
        client,
        local_issuer.map(|issuer| issuer.issuer),
        redis,
    ))))
}
