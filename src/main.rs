//! The `mcpgate` binary: parses the command line, reports errors with context, and
//! maps configuration errors to exit code 78.

mod cli;

use std::io::IsTerminal;
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::Parser;
use jsonwebtoken::{Algorithm, AlgorithmFamily};
use tracing_subscriber::EnvFilter;

use cli::{Cli, Command, ConfigArg, DemoArgs, HashKeyArgs, PolicyArgs, TokenArgs};
use mcpgate::auth::jwks::idp_client;
use mcpgate::auth::mint::{TokenRequest, mint};
use mcpgate::config::{self, Config, ConfigError, EXIT_CONFIG, LogFormat};
use mcpgate::gateway::Gateway;
use mcpgate::policy::Policy;
use mcpgate::policy::matrix::{Matrix, Offered};
use mcpgate::server::{self, AppState};
use mcpgate::upstream::{InventoryError, fetch_inventory};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Serve(args) => serve(args).await,
            Command::Check(args) => check(args).await,
            Command::Token(args) => token(args),
            Command::Demo(args) => demo(args).await,
            Command::HashKey(args) => hash_key(args),
            Command::Policy(args) => policy(args).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            if let Some(config_error) = error.downcast_ref::<ConfigError>() {
                eprintln!("config error: {config_error}");
                ExitCode::from(EXIT_CONFIG as u8)
            } else {
                eprintln!("error: {error:#}");
                ExitCode::FAILURE
            }
        }
    }
}

fn init_logging(config: &config::LogConfig) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&config.level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    match config.format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

async fn build_gateway(config: Config) -> anyhow::Result<(Gateway, reqwest::Client)> {
    let client = idp_client().context("cannot build the HTTP client for identity providers")?;
    let gateway = Gateway::build(config, &client).await?;
    Ok((gateway, client))
}

async fn serve(args: ConfigArg) -> anyhow::Result<()> {
    let config = config::load(&args.config)?;
    init_logging(&config.log);
    let (gateway, client) = build_gateway(config).await?;
    run(gateway, client, None).await
}

/// Binds (unless the caller already did), warns about risky settings, and serves.
async fn run(
    gateway: Gateway,
    client: reqwest::Client,
    listener: Option<tokio::net::TcpListener>,
) -> anyhow::Result<()> {
    let config = gateway.config.clone();
    let listen = config.server.listen;
    let listener = match listener {
        Some(listener) => listener,
        None => tokio::net::TcpListener::bind(listen)
            .await
            .with_context(|| format!("cannot listen on {listen} (server.listen)"))?,
    };
    if gateway.auth.is_none() {
        tracing::warn!(
            "AUTHENTICATION IS OFF: every request is proxied to the upstream without credentials. \
             Set auth.oauth.enabled: true or configure auth.api_keys to protect it."
        );
    } else if !config.auth.oauth.enabled {
        tracing::info!("OAuth is disabled: only API keys are accepted");
    }
    if config.server.public_url.is_none() && !listen.ip().is_loopback() {
        tracing::warn!(
            "server.public_url is unset and server.listen is not loopback: clients will be told \
             http://{listen}/mcp; set server.public_url to the URL they use"
        );
    }
    let refreshers = gateway
        .auth
        .as_ref()
        .map(|auth| auth.spawn_refreshers(&client))
        .unwrap_or_default();
    tracing::info!(
        listen = %listener.local_addr().unwrap_or(listen),
        mcp = %config.public_url(),
        upstream = %config.upstream.as_ref().map(|u| u.url.as_str()).unwrap_or("-"),
        oauth = config.auth.oauth.enabled,
        "mcpgate ready"
    );
    let grace = config.server.shutdown_grace;
    let result = server::serve(listener, AppState::new(gateway), grace).await;
    for refresher in refreshers {
        refresher.abort();
    }
    result.context("server failed")
}

async fn check(args: ConfigArg) -> anyhow::Result<()> {
    let config = config::load(&args.config)?;
    init_logging(&config::LogConfig {
        level: "warn".to_owned(),
        ..config.log.clone()
    });
    let (gateway, _) = build_gateway(config).await?;
    let config = &gateway.config;
    let upstream = config.upstream.as_ref().map_or("-", |u| u.url.as_str());
    let protection = if gateway.auth.is_none() {
        "NO AUTHENTICATION".to_owned()
    } else {
        let oauth = if config.auth.oauth.enabled {
            "enabled"
        } else {
            "disabled"
        };
        format!("OAuth {oauth}, {} API key(s)", config.auth.api_keys.len())
    };
    println!(
        "ok: MCP endpoint {} -> {upstream}; {protection}",
        config.public_url()
    );
    Ok(())
}

/// The effective matrix against the live upstream. Needs no keys: only the policy
/// and the upstream are looked at.
async fn policy(args: PolicyArgs) -> anyhow::Result<()> {
    let config = config::load(&args.config.config)?;
    init_logging(&config::LogConfig {
        level: "warn".to_owned(),
        ..config.log.clone()
    });
    config::validate(&config)?;
    let policy = Policy::from_config(&config)?;
    let upstream = config::require_upstream(&config)?;
    let inventory = match fetch_inventory(upstream).await {
        Ok(inventory) => inventory,
        Err(InventoryError::Config(error)) => return Err(error.into()),
        Err(error) => {
            return Err(anyhow::Error::new(error))
                .with_context(|| format!("cannot list what {} offers", upstream.url));
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
            upstream: upstream.url.as_str(),
            server_name: inventory.server_name.as_deref(),
            protocol_version: &inventory.protocol_version,
            matrix: &matrix,
        };
        println!("{}", serde_json::to_string_pretty(&manifest)?);
    } else {
        println!(
            "upstream: {} ({}, protocol {})\n",
            upstream.url,
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

fn token(args: TokenArgs) -> anyhow::Result<()> {
    let config = match &args.config {
        Some(path) => Some(config::load(path)?),
        None => None,
    };
    let provider = config.as_ref().and_then(|config| {
        config
            .auth
            .oauth
            .jwks
            .iter()
            .find(|provider| provider.secret.is_some())
    });
    let secret = match (&args.secret, provider.and_then(|p| p.secret.as_ref())) {
        (Some(secret), _) => secret.clone(),
        (None, Some(secret)) => secret.expose().to_owned(),
        (None, None) => bail!(
            "no secret: pass --secret (or MCPGATE_TOKEN_SECRET), or --config with a symmetric auth.oauth.jwks entry"
        ),
    };
    if secret.len() < config::MIN_HMAC_SECRET_BYTES {
        bail!(
            "the secret is {} bytes; at least {} are required",
            secret.len(),
            config::MIN_HMAC_SECRET_BYTES
        );
    }
    let algorithm = args
        .alg
        .or_else(|| provider.and_then(|p| p.symmetric_algorithm))
        .unwrap_or(Algorithm::HS256);
    if algorithm.family() != AlgorithmFamily::Hmac {
        bail!("--alg must be HS256, HS384 or HS512");
    }
    let audience = match (&args.aud, &config) {
        (Some(aud), _) => aud.clone(),
        (None, Some(config)) => config
            .accepted_audiences()
            .into_iter()
            .next()
            .context("the config accepts no audience")?,
        (None, None) => bail!("--aud is required without --config"),
    };
    let issuer = args.iss.clone().or_else(|| {
        config
            .as_ref()
            .and_then(|config| config.auth.oauth.issuers.first().cloned())
    });
    let scopes = args
        .scopes
        .iter()
        .flat_map(|scopes| scopes.split_whitespace())
        .map(str::to_owned)
        .collect();
    let request = TokenRequest {
        subject: args.sub.clone(),
        scopes,
        audience,
        issuer,
        client_id: args.client_id.clone(),
        lifetime: args.ttl,
        key_id: args
            .kid
            .clone()
            .or_else(|| provider.and_then(|p| p.header_key_id.clone())),
        algorithm,
    };
    println!("{}", mint(secret.as_bytes(), &request)?);
    Ok(())
}

fn hash_key(args: HashKeyArgs) -> anyhow::Result<()> {
    let (key, hash) = mcpgate::auth::api_keys::generate(&args.id).map_err(anyhow::Error::msg)?;
    let scopes: Vec<String> = args
        .scopes
        .iter()
        .flat_map(|scopes| scopes.split_whitespace())
        .map(|scope| format!("{scope:?}"))
        .collect();
    println!("API key (give it to the client; mcpgate keeps only the hash):");
    println!("{key}");
    println!();
    println!("Entry for auth.api_keys:");
    println!("  - id: {}", args.id);
    println!("    hash: \"{hash}\"");
    println!("    scopes: [{}]", scopes.join(", "));
    Ok(())
}

async fn demo(args: DemoArgs) -> anyhow::Result<()> {
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
    let (gateway, client) = build_gateway(demo.config).await?;
    println!("{instructions}");
    run(gateway, client, Some(listener)).await
}
