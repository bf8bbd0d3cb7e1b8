//! `mcpgate check`: validate a configuration as `serve` would, and say in one line
//! what it would run.

use mcpgate::config::{self, UpstreamConfig};

use super::build::build_gateway;
use crate::cli::ConfigArg;
use crate::init_quiet_logging;

pub(crate) async fn check(args: ConfigArg) -> anyhow::Result<()> {
    let config = config::load(&args.config)?;
    init_quiet_logging(&config.log);
    let (gateway, _) = build_gateway(config).await?;
    let facade = gateway
        .check_identity_provider()
        .await?
        .map_or_else(String::new, |provider| {
            format!("; authorization server: {provider}")
        });
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
    println!(
        "ok: MCP endpoint {} -> {upstream}{tools}; {protection}{facade}",
        config.public_url()
    );
    Ok(())
}
