//! The `mcpgate` binary: parses the command line, reports errors with context, and
//! maps configuration errors to exit code 78.

mod cli;

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, bail};
use clap::Parser;
use jsonwebtoken::{Algorithm, AlgorithmFamily};
use tracing_subscriber::EnvFilter;

use cli::{Cli, Command, ConfigArg, DemoArgs, ExplainArgs, HashKeyArgs, PolicyArgs, TokenArgs};
use mcpgate::audit::AuditLog;
use mcpgate::auth::jwks::idp_client;
use mcpgate::auth::mint::{TokenRequest, mint};
use mcpgate::config::{self, Config, ConfigError, EXIT_CONFIG, LogFormat, UpstreamConfig};
use mcpgate::gateway::Gateway;
use mcpgate::mcp::session::Sessions;
use mcpgate::policy::Policy;
use mcpgate::policy::matrix::{Matrix, Offered};
use mcpgate::reload::Reloader;
use mcpgate::server::{self, AppState};
use mcpgate::telemetry::traces::Traces;
use mcpgate::upstream::{InventoryError, Upstream, inventory_of};
use tokio::sync::watch;

/// jemalloc rather than glibc's malloc: a request allocates and frees many small
/// objects across the worker threads, which glibc's arenas serve more slowly
/// (see docs/BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

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
            Command::Explain(args) => explain(args).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            if let Some(Exit(code)) = error.downcast_ref::<Exit>() {
                return ExitCode::from(*code);
            }
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

/// The session store (a Redis one starts connecting in the background) and the
/// gateway, which shares its Redis connection: one per process, kept across reloads.
async fn build_serving(
    config: Config,
) -> anyhow::Result<(Gateway, Arc<Sessions>, reqwest::Client)> {
    // Before connecting anywhere: a config that does not validate opens nothing.
    config::validate(&config)?;
    let sessions = Arc::new(Sessions::from_config(&config.session)?);
    let client = idp_client().context("cannot build the HTTP client for identity providers")?;
    let gateway = Gateway::build_shared(config, &client, sessions.shared_redis()).await?;
    Ok((gateway, sessions, client))
}

async fn serve(args: ConfigArg) -> anyhow::Result<()> {
    let config = config::load(&args.config)?;
    init_logging(&config.log);
    let (gateway, sessions, client) = build_serving(config).await?;
    run(gateway, sessions, client, None, Some(args.config.clone())).await
}

/// Binds (unless the caller already did), starts the audit log, tracer and admin
/// listener, serves until SIGTERM/SIGINT, reloads on SIGHUP, and on the way out drains
/// requests, flushes the audit log and exports the last spans.
async fn run(
    gateway: Gateway,
    sessions: Arc<Sessions>,
    client: reqwest::Client,
    listener: Option<tokio::net::TcpListener>,
    config_path: Option<PathBuf>,
) -> anyhow::Result<()> {
    // First, before this process opens what it will hold for its lifetime.
    let open_files = server::limits::OpenFiles::raise();
    let config = gateway.config.clone();
    let listen = config.server.listen;
    let listener = match listener {
        Some(listener) => listener,
        None => tokio::net::TcpListener::bind(listen)
            .await
            .with_context(|| format!("cannot listen on {listen} (server.listen)"))?,
    };
    let admin_listener = match config.server.admin_listen {
        Some(admin) => Some(
            tokio::net::TcpListener::bind(admin)
                .await
                .with_context(|| format!("cannot listen on {admin} (server.admin_listen)"))?,
        ),
        None => None,
    };
    let audit = AuditLog::start(&config.audit)?;
    mcpgate::telemetry::metrics::metrics().config_loaded();
    let traces = Traces::init(&config.telemetry.traces)?;
    // Registered before "ready": SIGHUP's default action would end the process.
    let signals = Signals::register().context("cannot install signal handlers")?;
    warn_about_risks(&gateway, admin_listener.as_ref());
    let startup = summary(
        &gateway,
        &listener,
        admin_listener.as_ref(),
        traces.is_enabled(),
    );

    let (stop_tx, stop_rx) = watch::channel(false);
    let state = AppState::new(
        gateway,
        sessions,
        audit.clone(),
        traces.clone(),
        stop_rx.clone(),
    );
    let reloader = Arc::new(Reloader::new(config_path, state.clone(), client));
    let admin = admin_listener.map(|listener| {
        tokio::spawn(server::admin::serve(
            listener,
            server::admin::Admin::from(&state),
            server::stream::shutdown_begun(stop_rx.clone()),
        ))
    });
    let signal_loop = tokio::spawn(signals.run(Arc::clone(&reloader), stop_tx));
    tracing::info!("{startup}");

    let options = serve_options(&config.server, open_files);
    let gateway = Arc::clone(&state.gateway);
    let result = server::serve(listener, state, options).await;
    // Stdio children end with mcpgate, cleanly: stdin closed, then signals.
    gateway.load().upstream.shutdown().await;
    signal_loop.abort();
    if let Some(admin) = admin {
        admin.abort();
    }
    reloader.stop();
    audit.close().await;
    traces.shutdown();
    tracing::info!("mcpgate stopped");
    result.context("server failed")
}

/// The listener's settings; the connection cap is derived from the open-file limit
/// unless configured, and the start log says both.
fn serve_options(
    server: &config::ServerConfig,
    open_files: server::limits::OpenFiles,
) -> server::ServeOptions {
    let derived = open_files.connection_cap();
    let max_connections = server.max_connections.unwrap_or(derived);
    tracing::info!(
        "open-file limit: {}; at most {max_connections} client connections ({})",
        open_files.describe(),
        if server.max_connections.is_some() {
            "server.max_connections"
        } else {
            "derived from the limit"
        }
    );
    if max_connections > derived {
        tracing::warn!(
            "server.max_connections ({max_connections}) is above what the open-file limit leaves \
             room for ({derived}): connections will fail with \"Too many open files\" first; \
             raise LimitNOFILE (docs/operations.md)"
        );
    }
    server::ServeOptions {
        grace: server.shutdown_grace,
        header_read_timeout: server.header_read_timeout,
        idle_timeout: server.idle_timeout,
        max_connections,
    }
}

/// The one line that says what is running and how it is protected.
fn summary(
    gateway: &Gateway,
    listener: &tokio::net::TcpListener,
    admin: Option<&tokio::net::TcpListener>,
    traces: bool,
) -> String {
    let config = &gateway.config;
    let oauth = &config.auth.oauth;
    let mut auth = Vec::new();
    if oauth.enabled {
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
    let metadata = if oauth.enabled {
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
    format!(
        "mcpgate ready: listening on {local}, MCP endpoint {} -> upstream {}; auth: {auth}; \
         metadata: {metadata}; audit: {audit}; admin: {admin}; traces: {}",
        config.public_url(),
        config
            .upstream
            .as_ref()
            .map_or_else(|| "-".to_owned(), UpstreamConfig::describe),
        if traces { "on" } else { "off" },
    )
}

fn warn_about_risks(gateway: &Gateway, admin: Option<&tokio::net::TcpListener>) {
    let config = &gateway.config;
    let listen = config.server.listen;
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
    if gateway
        .policy
        .scopes_supported()
        .iter()
        .any(|scope| scope == mcpgate::policy::OFFLINE_ACCESS)
    {
        tracing::warn!(
            "a scope rule names offline_access: it is advertised in scopes_supported and may be \
             challenged for; MCP 2026-07-28 says a resource server should not (refresh tokens are \
             the client's business with its authorization server)"
        );
    }
}

/// SIGTERM/SIGINT (shutdown) and SIGHUP (reload), handled one at a time.
struct Signals {
    #[cfg(unix)]
    hangup: tokio::signal::unix::Signal,
    #[cfg(unix)]
    terminate: tokio::signal::unix::Signal,
}

impl Signals {
    fn register() -> std::io::Result<Self> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            Ok(Self {
                hangup: signal(SignalKind::hangup())?,
                terminate: signal(SignalKind::terminate())?,
            })
        }
        #[cfg(not(unix))]
        Ok(Self {})
    }

    async fn run(mut self, reloader: Arc<Reloader>, stop: watch::Sender<bool>) {
        loop {
            #[cfg(unix)]
            tokio::select! {
                _ = self.hangup.recv() => {
                    tracing::info!("SIGHUP: reloading");
                    reloader.on_hangup().await;
                    continue;
                }
                _ = self.terminate.recv() => tracing::info!("SIGTERM: shutting down"),
                _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT: shutting down"),
            }
            #[cfg(not(unix))]
            {
                let _ = tokio::signal::ctrl_c().await;
                let _ = &reloader;
            }
            let _ = stop.send(true);
            return;
        }
    }
}

async fn check(args: ConfigArg) -> anyhow::Result<()> {
    let config = config::load(&args.config)?;
    init_logging(&config::LogConfig {
        level: "warn".to_owned(),
        ..config.log.clone()
    });
    let (gateway, _) = build_gateway(config).await?;
    let config = &gateway.config;
    let upstream = config
        .upstream
        .as_ref()
        .map_or_else(|| "-".to_owned(), UpstreamConfig::describe);
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
        "ok: MCP endpoint {} -> {upstream}{tools}; {protection}",
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

/// A command's answer was printed; the process ends with this code.
#[derive(Debug, thiserror::Error)]
#[error("exit {0}")]
struct Exit(u8);

async fn explain(args: ExplainArgs) -> anyhow::Result<()> {
    let config = config::load(&args.config.config)?;
    init_logging(&config::LogConfig {
        level: "warn".to_owned(),
        ..config.log.clone()
    });
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
    let (gateway, _) = build_gateway(config).await?;
    let question = mcpgate::explain::Question {
        method: args.method.clone(),
        tool: args.tool.clone(),
        resource: args.resource.clone(),
        prompt: args.prompt.clone(),
    };
    let answer = mcpgate::explain::explain(&gateway, &token, &question).await?;
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
    let (gateway, sessions, client) = build_serving(demo.config).await?;
    println!("{instructions}");
    run(gateway, sessions, client, Some(listener), None).await
}
