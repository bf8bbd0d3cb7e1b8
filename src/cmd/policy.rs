//! `mcpgate policy`: the effective scope matrix and drift against the live upstream.

use anyhow::{Context, bail};
use mcpgate::config;
use mcpgate::policy::Policy;
use mcpgate::policy::matrix::{Matrix, Offered};
use mcpgate::upstream::{InventoryError, Upstream, inventory_of};

use crate::cli::PolicyArgs;
use crate::init_quiet_logging;

/// The effective matrix against the live upstream. Needs no keys: only the policy
/// and the upstream are looked at.
pub(crate) async fn policy(args: PolicyArgs) -> anyhow::Result<()> {
    let config = config::load(&args.config.config)?;
    init_quiet_logging(&config.log);
    mcpgate::gateway::validate(&config)?;
    let config = config.choose_route(args.route.as_deref())?;
    let upstream = config::require_upstream(&config)?;
    // The same upstream the gateway would build: a GraphQL one declares its tools'
    // requirements (and answers the listing in-process), a stdio child is started
    // for this one listing and stopped after it.
    let running = Upstream::from_config(upstream, config.auth.oauth.max_scope_combinations)?;
    let (declared, more_scopes) = running.declared_tools();
    let policy = Policy::from_config(&config)?.with_declared_tools(declared, more_scopes)?;
    let listed = match running.check_credentials().await {
        Ok(()) => inventory_of(&running, upstream.timeout).await,
        Err(error) => Err(InventoryError::Config(error)),
    };
    running.shutdown().await;
    let inventory = match listed {
        Ok(inventory) => inventory,
        Err(InventoryError::Config(error)) => return Err(error.into()),
        Err(error) => {
            return Err(anyhow::Error::new(error))
                .with_context(|| format!("cannot list what {} offers", upstream.describe()));
        }
    };
    let matrix = Matrix::build(
        &policy,
        Offered {
            tools: &inventory.tools,
            prompts: &inventory.prompts,
            resources: &inventory.resources,
            resource_templates: &inventory.resource_templates,
        },
    );
    if args.json {
        #[derive(serde::Serialize)]
        struct Manifest<'a> {
            upstream: &'a str,
            server_name: Option<&'a str>,
            protocol_version: &'a str,
            #[serde(flatten)]
            matrix: &'a Matrix,
        }
        let manifest = Manifest {
            upstream: &upstream.describe(),
            server_name: inventory.server_name.as_deref(),
            protocol_version: &inventory.protocol_version,
            matrix: &matrix,
        };
        println!("{}", serde_json::to_string_pretty(&manifest)?);
    } else {
        println!(
            "upstream: {} ({}, protocol {})\n",
            upstream.describe(),
            inventory.server_name.as_deref().unwrap_or("unnamed server"),
            inventory.protocol_version
        );
        print!("{matrix}");
    }
    if args.fail_on_drift && !matrix.drift.is_empty() {
        bail!("drift between the rules and the upstream (see above)");
    }
    Ok(())
}
