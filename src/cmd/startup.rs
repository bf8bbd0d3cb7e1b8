//! What a serving process says when it starts: one summary line and the risky
//! settings worth a warning.

use mcpgate::config::UpstreamConfig;
use mcpgate::gateway::{Gateway, Gateways};

/// The one line that says what is running and how it is protected.
pub(super) fn summary(
    gateways: &Gateways,
    listener: &tokio::net::TcpListener,
    admin: Option<&tokio::net::TcpListener>,
    traces: bool,
) -> String {
    let gateway = gateways.first();
    let config = &gateway.config;
    let oauth = &config.auth.oauth;
    let mut auth = Vec::new();
    if oauth.enabled() {
        let remote = oauth.jwks.iter().filter(|p| p.url.is_some()).count();
        let symmetric = oauth.jwks.len() - remote;
        let mut sources = Vec::new();
        if remote > 0 {
            sources.push(format!("{remote} JWKS URL(s)"));
        }
        if symmetric > 0 {
            sources.push(format!("{symmetric} symmetric key(s)"));
        }
        if oauth.introspection.is_some() {
            sources.push("introspection".to_owned());
        }
        auth.push(format!("OAuth ({})", sources.join(", ")));
    }
    if !config.auth.api_keys.is_empty() {
        auth.push(format!("{} API key(s)", config.auth.api_keys.len()));
    }
    let auth = if gateway.auth.is_none() {
        "OFF".to_owned()
    } else {
        auth.join(" + ")
    };
    let metadata = if oauth.enabled() {
        config.metadata_url()
    } else {
        "not served".to_owned()
    };
    let audit = match (&config.audit.path, config.audit.stdout) {
        (Some(path), _) => path.display().to_string(),
        (None, true) => "stdout".to_owned(),
        (None, false) => "off".to_owned(),
    };
    let admin = admin
        .and_then(|admin| admin.local_addr().ok())
        .map_or_else(|| "off".to_owned(), |addr| addr.to_string());
    let local = listener.local_addr().map_or_else(
        |_| config.server.listen.to_string(),
        |addr| addr.to_string(),
    );
    let endpoints = if gateways.config.routes.is_empty() {
        format!("MCP endpoint {}", endpoint(gateway))
    } else {
        let routes: Vec<String> = gateways
            .all()
            .iter()
            .map(|gateway| {
                let name = gateway.config.route_name().unwrap_or_default();
                format!("{name} {}", endpoint(gateway))
            })
            .collect();
        format!("{} routes: {}", routes.len(), routes.join(", "))
    };
    format!(
        "mcpgate ready: listening on {local}, {endpoints}; auth: {auth}; \
         metadata: {metadata}; audit: {audit}; admin: {admin}; traces: {}",
        if traces { "on" } else { "off" },
    )
}

/// `<public URL> -> upstream <upstream>`.
fn endpoint(gateway: &Gateway) -> String {
    let config = &gateway.config;
    format!(
        "{} -> upstream {}",
        config.public_url(),
        config
            .upstream
            .as_ref()
            .map_or_else(|| "-".to_owned(), UpstreamConfig::describe)
    )
}

/// Said once at start, before "ready", so an operator reading the log sees them first.
pub(super) fn warn_about_risks(gateways: &Gateways, admin: Option<&tokio::net::TcpListener>) {
    let gateway = gateways.first();
    let config = &gateway.config;
    let listen = config.server.listen;
    if gateway.auth.is_none() {
        tracing::warn!(
            "AUTHENTICATION IS OFF: every request is proxied to the upstream without credentials. \
             Set auth.oauth.enabled: true or configure auth.api_keys to protect it."
        );
    } else if !config.auth.oauth.enabled() {
        tracing::info!("OAuth is disabled: only API keys are accepted");
    }
    if config.server.public_url.is_none() && !listen.ip().is_loopback() {
        tracing::warn!(
            "server.public_url is unset and server.listen is not loopback: clients will be told \
             http://{listen}/mcp; set server.public_url to the URL they use"
        );
    }
    if let Some(addr) = admin.and_then(|admin| admin.local_addr().ok())
        && !addr.ip().is_loopback()
    {
        tracing::warn!(
            "server.admin_listen ({addr}) is not loopback: /metrics and /readyz are served \
             without authentication to anyone who can reach it"
        );
    }
    if !config.audit.is_enabled() {
        tracing::info!("the audit log is off (set audit.path or audit.stdout to record decisions)");
    }
    if gateways.all().iter().any(|gateway| {
        gateway
            .policy
            .scopes_supported()
            .iter()
            .any(|scope| scope == mcpgate::policy::OFFLINE_ACCESS)
    }) {
        tracing::warn!(
            "a scope rule names offline_access: it is advertised in scopes_supported and may be \
             challenged for; MCP 2026-07-28 says a resource server should not (refresh tokens are \
             the client's business with its authorization server)"
        );
    }
}
