//! `mcpgate explain`: verify a token as the gateway would and explain the decision
//! for one request; the exit code is the decision.

use anyhow::{Context, bail};
use mcpgate::config;

use super::Exit;
use super::build::build_gateway;
use crate::cli::ExplainArgs;
use crate::init_quiet_logging;

pub(crate) async fn explain(args: ExplainArgs) -> anyhow::Result<()> {
    let config = config::load(&args.config.config)?;
    init_quiet_logging(&config.log);
    let token = if args.token == "-" {
        let mut line = String::new();
        std::io::stdin()
            .read_line(&mut line)
            .context("cannot read the token from standard input")?;
        line.trim().to_owned()
    } else {
        args.token.clone()
    };
    if token.is_empty() {
        bail!("--token is empty");
    }
    let (gateways, _) = build_gateway(config).await?;
    let gateway = gateways.choose(args.route.as_deref())?;
    let question = mcpgate::explain::Question {
        method: args.method.clone(),
        tool: args.tool.clone(),
        resource: args.resource.clone(),
        prompt: args.prompt.clone(),
    };
    let answer = mcpgate::explain::explain(gateway, &token, &question).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&answer)?);
    } else {
        print!("{answer}");
    }
    if answer.decision == mcpgate::explain::Decision::RefusedToken {
        // Also on standard error, for scripts that only look there; the reason is
        // the audit log's, which never quotes the token.
        eprintln!(
            "error: the token is not accepted: {}",
            answer.reason.as_deref().unwrap_or(&answer.auth_result)
        );
    }
    match answer.decision.exit_code() {
        0 => Ok(()),
        code => Err(Exit(code).into()),
    }
}
