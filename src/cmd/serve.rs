//! `mcpgate serve`, and the serving lifecycle it shares with `demo`.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use mcpgate::audit::AuditLog;
use mcpgate::config;
use mcpgate::gateway::Gateways;
use mcpgate::mcp::session::Sessions;
use mcpgate::server::reload::Reloader;
use mcpgate::server::{self, AppState};
use mcpgate::telemetry::traces::Traces;
use tokio::sync::watch;

use super::build::build_serving;
use super::signals::Signals;
use super::startup::{summary, warn_about_risks};
use crate::cli::ConfigArg;
use crate::init_logging;

pub(crate) async fn serve(args: ConfigArg) -> anyhow::Result<()> {
    let config = config::load(&args.config)?;
    init_logging(&config.log);
    let (gateway, sessions, client) = build_serving(config).await?;
    run(gateway, sessions, client, None, Some(args.config.clone())).await
}

/// Binds (unless the caller already did), starts the audit log, tracer and admin
/// listener, serves until SIGTERM/SIGINT, reloads on SIGHUP, and on the way out drains
/// requests, flushes the audit log and exports the last spans.
pub(crate) async fn run(
    gateways: Gateways,
    sessions: Arc<Sessions>,
    client: reqwest::Client,
    listener: Option<tokio::net::TcpListener>,
    config_path: Option<PathBuf>,
) -> anyhow::Result<()> {
    // First, before this process opens what it will hold for its lifetime.
    let open_files = server::limits::OpenFiles::raise();
    let config = gateways.config.clone();
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
    warn_about_risks(&gateways, admin_listener.as_ref());
    let startup = summary(
        &gateways,
        &listener,
        admin_listener.as_ref(),
        traces.is_enabled(),
    );

    let (stop_tx, stop_rx) = watch::channel(false);
    let state = AppState::new(
        gateways,
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
    for gateway in gateway.load().all() {
        gateway.upstream.shutdown().await;
    }
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
