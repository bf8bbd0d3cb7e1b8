//! `mcpgate check`: validate a configuration as `serve` would, and say in one line
//! what it would run.

use mcpgate::config::{self, UpstreamConfig};
use mcpgate::gateway::Gateway;

use super::build::build_gateway;
use crate::cli::ConfigArg;
use crate::init_quiet_logging;

pub(crate) async fn check(args: ConfigArg) -> anyhow::Result<()> {
    let config = config::load(&args.config)?;
    init_quiet_logging(&config.log);
    let (gateways, _) = build_gateway(config).await?;
    let facade = gateways
        .first()
        .check_identity_provider()
        .await?
        .map_or_else(String::new, |provider| {
            format!("; authorization server: {provider}")
        });
    let routes: Vec<String> = gateways
        .all()
        .iter()
        .map(|gateway| describe(gateway))
        .collect();
    let routes = if gateways.config.routes.is_empty() {
        routes.concat()
    } else {
        format!("{} routes: {}", routes.len(), routes.join("; "))
    };
    println!("ok: {routes}{facade}");
    Ok(())
}

/// `MCP endpoint <url> -> <upstream> (<tools>); <protection>`, and the route's
/// name in front when it has one.
fn describe(gateway: &Gateway) -> String {
    let config = &gateway.config;
    let upstream = config
        .upstream
        .as_ref()
        .map_or_else(|| "-".to_owned(), UpstreamConfig::describe);
    let protection = if gateway.auth.is_none() {
        "NO AUTHENTICATION".to_owned()
    } else {
        let oauth = if config.auth.oauth.enabled() {
            "enabled"
        } else {
            "disabled"
        };
        format!("OAuth {oauth}, {} API key(s)", config.auth.api_keys.len())
    };
    let tools = match gateway.upstream.graphql() {
        Some(graphql) => format!(
            " ({} operation tool(s), built-in: {})",
            graphql.catalog().tools().len(),
            graphql
                .builtins()
                .iter()
                .map(|builtin| builtin.name())
                .collect::<Vec<_>>()
                .join(", ")
        ),
        None => String::new(),
    };
    let name = config
        .route_name()
        .map_or_else(String::new, |name| format!("{name}: "));
    format!(
        "{name}MCP endpoint {} -> {upstream}{tools}; {protection}",
        config.public_url()
    )
}
