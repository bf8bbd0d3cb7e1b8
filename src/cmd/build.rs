//! Building the gateway from a loaded configuration, for the commands that need one.

use std::sync::Arc;

use anyhow::Context;
use mcpgate::auth::jwks::idp_client;
use mcpgate::config::Config;
use mcpgate::gateway::Gateways;
use mcpgate::mcp::session::Sessions;

/// The gateway alone, for commands that answer and exit (`check`, `explain`).
pub(crate) async fn build_gateway(config: Config) -> anyhow::Result<(Gateways, reqwest::Client)> {
    let client = idp_client().context("cannot build the HTTP client for identity providers")?;
    let gateways = Gateways::build(config, &client).await?;
    Ok((gateways, client))
}

/// The session store (a Redis one starts connecting in the background) and the
/// gateway, which shares its Redis connection: one per process, kept across reloads.
pub(crate) async fn build_serving(
    config: Config,
) -> anyhow::Result<(Gateways, Arc<Sessions>, reqwest::Client)> {
    // Before connecting anywhere: a config that does not validate opens nothing.
    mcpgate::gateway::validate(&config)?;
    let sessions = Arc::new(Sessions::from_config(&config.session)?);
    let client = idp_client().context("cannot build the HTTP client for identity providers")?;
    let gateways = Gateways::build_shared(config, &client, sessions.shared_redis()).await?;
    Ok((gateways, sessions, client))
}
