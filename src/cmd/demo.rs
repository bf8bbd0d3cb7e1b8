//! `mcpgate demo`: an embedded MCP server behind a gateway, with tokens to try it.

use anyhow::Context;
use mcpgate::config;

use super::build::build_serving;
use super::serve::run;
use crate::cli::DemoArgs;
use crate::init_logging;

pub(crate) async fn demo(args: DemoArgs) -> anyhow::Result<()> {
    init_logging(&config::LogConfig::default());
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| {
            format!(
                "cannot listen on {} (try --listen 127.0.0.1:0)",
                args.listen
            )
        })?;
    let addr = listener.local_addr()?;
    let demo = mcpgate::demo::prepare(addr).await?;
    let instructions = demo.instructions();
    let (gateway, sessions, client) = build_serving(demo.config).await?;
    println!("{instructions}");
    run(gateway, sessions, client, Some(listener), None).await
}
