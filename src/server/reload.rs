//! Hot reload (SIGHUP): the file is read, validated and built into a new `Gateway`
//! beside the running one, then swapped in atomically. Requests already running keep
//! the gateway they started with; a file that does not load changes nothing.

use std::path::PathBuf;
use std::sync::Mutex;

use tokio::task::JoinHandle;

use super::AppState;
use crate::config::{self, Config, ConfigError};
use crate::gateway::{Gateway, Gateways};
use crate::telemetry::metrics::metrics;

/// Owns what a gateway runs in the background (JWKS refreshers) and replaces the
/// gateway on reload.
pub struct Reloader {
    path: Option<PathBuf>,
    state: AppState,
    client: reqwest::Client,
    refreshers: Mutex<Vec<JoinHandle<()>>>,
}

impl Reloader {
    /// `path` is the file to read again; `None` (the demo) has nothing to reload.
    /// Starts the current gateway's refreshers.
    pub fn new(path: Option<PathBuf>, state: AppState, client: reqwest::Client) -> Self {
        let reloader = Self {
            path,
            state,
            client,
            refreshers: Mutex::new(Vec::new()),
        };
        let gateways = reloader.state.gateway.load_full();
        reloader.replace_refreshers(&gateways);
        reloader
    }

    /// SIGHUP: reopens the audit file (logrotate) and reloads the configuration.
    pub async fn on_hangup(&self) {
        self.state.audit.reopen();
        let Some(path) = &self.path else {
            tracing::info!("SIGHUP: audit log reopened; there is no config file to reload");
            return;
        };
        match self.reload(path).await {
            Ok(()) => metrics().reload(true),
            Err(error) => {
                metrics().reload(false);
                tracing::error!(
                    path = %path.display(),
                    "config reload failed, the running config stays in force: {error}"
                );
            }
        }
    }

    async fn reload(&self, path: &std::path::Path) -> Result<(), ConfigError> {
        let mut config = config::load(path)?;
        let current = self.state.gateway.load_full();
        for key in keep_restart_required(&current.config, &mut config) {
            tracing::warn!(
                key,
                "config reload: {key} changed, which needs a restart; the running value is kept \
                 and the rest of the change applies"
            );
        }
        // The session store survives reloads; the new introspector borrows its connection.
        let redis = self.state.sessions.shared_redis();
        let gateways = Gateways::rebuild(config, &self.client, Some(&current), redis).await?;
        self.state.audit.reconfigure(&gateways.config.audit)?;
        for gateway in gateways.all() {
            let name = gateway.config.route_name();
            match current.named(name) {
                Some(old) => warn_about_auth_change(old, gateway),
                None => tracing::info!(route = name, "config reload added a route"),
            }
        }
        for old in current.all() {
            let name = old.config.route_name();
            if gateways.named(name).is_none() {
                tracing::info!(route = name, "config reload removed a route");
            }
        }
        self.replace_refreshers(&gateways);
        if let (Some(facade), Some(settings)) = (&self.state.facade, gateways.facade()) {
            facade.update(std::sync::Arc::clone(settings));
        }
        let gateways = std::sync::Arc::new(gateways);
        self.state.gateway.store(std::sync::Arc::clone(&gateways));
        current.retire_left_out(&gateways);
        tracing::info!(path = %path.display(), "config reloaded");
        Ok(())
    }

    fn replace_refreshers(&self, gateways: &Gateways) {
        let fresh = gateways
            .all()
            .iter()
            .filter_map(|gateway| gateway.auth.as_ref())
            .flat_map(|auth| auth.spawn_refreshers(&self.client))
            .collect();
        self.swap_refreshers(fresh);
    }

    /// Stops the background tasks (at shutdown).
    pub fn stop(&self) {
        self.swap_refreshers(Vec::new());
    }

    /// Installs `fresh` and aborts the tasks it replaces.
    fn swap_refreshers(&self, fresh: Vec<JoinHandle<()>>) {
        let old = match self.refreshers.lock() {
            Ok(mut refreshers) => std::mem::replace(&mut *refreshers, fresh),
            Err(poisoned) => std::mem::replace(&mut *poisoned.into_inner(), fresh),
        };
        for refresher in old {
            refresher.abort();
        }
    }
}

/// Copies the running values of restart-only settings (bound at start: listening
/// sockets, routes, the tracer, the session store) into `new`, returning the keys
/// that differed.
pub fn keep_restart_required(running: &Config, new: &mut Config) -> Vec<&'static str> {
    let mut changed = Vec::new();
    let mut keep = |key, differs: bool| {
        if differs {
            changed.push(key);
        }
    };
    let (old, fresh) = (&running.server, &mut new.server);
    keep(
        "server.listen",
        keep_running(&old.listen, &mut fresh.listen),
    );
    keep(
        "server.public_url",
        keep_running(&old.public_url, &mut fresh.public_url),
    );
    keep(
        "server.metadata_path",
        keep_running(&old.metadata_path, &mut fresh.metadata_path),
    );
    keep(
        "server.admin_listen",
        keep_running(&old.admin_listen, &mut fresh.admin_listen),
    );
    // Bound by the accept loop at start (body_read_timeout is read per request).
    keep(
        "server.header_read_timeout",
        keep_running(&old.header_read_timeout, &mut fresh.header_read_timeout),
    );
    keep(
        "server.idle_timeout",
        keep_running(&old.idle_timeout, &mut fresh.idle_timeout),
    );
    keep(
        "server.max_connections",
        keep_running(&old.max_connections, &mut fresh.max_connections),
    );
    keep(
        "telemetry",
        keep_running(&running.telemetry, &mut new.telemetry),
    );
    keep("session", keep_running(&running.session, &mut new.session));
    // The counters are made at start, sized by it (they outlive reloads).
    keep(
        "limits.max_keys",
        keep_running(&running.limits.max_keys, &mut new.limits.max_keys),
    );
    // The façade's routes are mounted at start: turning it on or off, moving its
    // issuer or its registration endpoint needs a restart.
    match (&running.authorization_server, &mut new.authorization_server) {
        (Some(old), Some(fresh)) => {
            keep(
                "authorization_server.issuer",
                keep_running(&old.issuer, &mut fresh.issuer),
            );
            keep(
                "authorization_server.registration.enabled",
                keep_running(&old.registration.enabled, &mut fresh.registration.enabled),
            );
        }
        (old, fresh) => keep("authorization_server", keep_running(old, fresh)),
    }
    changed
}

/// Puts the running value back into `new`; true when they differed.
fn keep_running<T: PartialEq + Clone>(running: &T, new: &mut T) -> bool {
    let differs = running != new;
    if differs {
        new.clone_from(running);
    }
    differs
}

/// Says what a reload did to authentication, loudly when it turned it off.
fn warn_about_auth_change(old: &Gateway, new: &Gateway) {
    let (was_oauth, is_oauth) = (
        old.config.auth.oauth.enabled(),
        new.config.auth.oauth.enabled(),
    );
    if new.auth.is_none() && old.auth.is_some() {
        tracing::warn!(
            "config reload turned AUTHENTICATION OFF: requests are now proxied without credentials"
        );
    } else if was_oauth && !is_oauth {
        tracing::warn!(
            "config reload disabled OAuth: bearer tokens are refused, only API keys are accepted, \
             and the metadata document answers 404"
        );
    } else if !was_oauth && is_oauth {
        tracing::info!("config reload enabled OAuth: the metadata document is served again");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(yaml: &str) -> Config {
        config::load_from_str(yaml).expect("test config parses")
    }

    #[test]
    fn restart_only_settings_keep_their_running_values() {
        let running = parse(
            "server: { listen: 127.0.0.1:5025, public_url: https://a.example/mcp }\n\
             scopes: { initialize: [a] }\n",
        );
        let mut new = parse(
            "server: { listen: 127.0.0.1:6000, public_url: https://b.example/mcp, admin_listen: 127.0.0.1:9090, \
             header_read_timeout: 3s, idle_timeout: 5s, max_connections: 10, body_read_timeout: 9s }\n\
             scopes: { initialize: [b] }\n\
             telemetry: { traces: { enabled: true } }\n",
        );
        let changed = keep_restart_required(&running, &mut new);
        assert_eq!(
            changed,
            vec![
                "server.listen",
                "server.public_url",
                "server.admin_listen",
                "server.header_read_timeout",
                "server.idle_timeout",
                "server.max_connections",
                "telemetry"
            ]
        );
        // Read per request: applies at once.
        assert_eq!(
            new.server.body_read_timeout,
            std::time::Duration::from_secs(9)
        );
        assert_eq!(new.server.max_connections, None);
        assert_eq!(new.server.listen, running.server.listen);
        assert_eq!(new.server.public_url, running.server.public_url);
        assert_eq!(new.server.admin_listen, None);
        assert!(!new.telemetry.traces.enabled);
        // The rest of the change still applies.
        assert_eq!(
            new.scopes.initialize.scopes().collect::<Vec<_>>(),
            vec!["b"]
        );
    }

    #[test]
    fn unchanged_settings_are_not_reported() {
        let running = parse("server: { listen: 127.0.0.1:5025 }\n");
        let mut new = parse("server: { listen: 127.0.0.1:5025 }\nlog: { level: debug }\n");
        assert!(keep_restart_required(&running, &mut new).is_empty());
    }
}
