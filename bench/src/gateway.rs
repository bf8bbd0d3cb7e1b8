//! The gateway under test: the release binary, started once per scenario with a
//! generated configuration, and always stopped again, whether the harness ends
//! normally, fails, panics or is interrupted.

use std::fs::{self, File};
use std::net::{SocketAddr, TcpListener};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use tokio::time::Instant;

use crate::keys::TOKEN_SCOPES;
use crate::load::{self, Target};
use crate::upstream::HIDDEN_PREFIX;

/// `iss` of the benchmark tokens. Never fetched: `.invalid` cannot resolve.
pub const ISSUER: &str = "https://issuer.bench.invalid/";
/// `aud` of the benchmark tokens, fixed so tokens can be minted before the gateway's
/// port is known.
pub const AUDIENCE: &str = "https://mcp.bench.invalid/mcp";
const API_KEY_ID: &str = "bench";

/// Pids of the gateways alive now, so an interrupt can stop them before exiting
/// (destructors do not run on `process::exit`).
static LIVE: Mutex<Vec<u32>> = Mutex::new(Vec::new());

/// Kills every gateway still running. Called on Ctrl-C.
pub fn kill_all() {
    let pids = LIVE.lock().map(|pids| pids.clone()).unwrap_or_default();
    for pid in pids {
        if let Ok(pid) = i32::try_from(pid) {
            // SAFETY: kill(2) with a pid this process started and has not reaped.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
}

/// How the gateway authenticates callers in a scenario.
#[derive(Debug, Clone)]
pub enum Auth {
    /// No OAuth, no API keys: mcpgate proxies unauthenticated.
    Off,
    /// JWTs signed with a shared secret.
    Hs256 { secret: String },
    /// JWTs verified against a remote JWKS (RS256 and ES256 keys).
    Jwks { url: String },
    /// One argon2id API key.
    ApiKey { hash: String },
    /// Opaque tokens, introspected (RFC 7662) and cached.
    Introspection { url: String },
}

/// The whole configuration file for one scenario.
pub fn config(listen: SocketAddr, upstream_url: &str, auth: &Auth) -> String {
    compose(listen, Some(upstream_url), auth)
}

/// The path of the `index`th (from 1) route of [`routes_config`] on the gateway.
pub fn route_path(index: usize) -> String {
    format!("/r{index}/mcp")
}

/// The public URL of the `index`th (from 1) route of [`routes_config`]: the audience
/// of its tokens.
pub fn route_url(index: usize) -> String {
    format!("https://mcp.bench.invalid{}", route_path(index))
}

/// A configuration with `routes` entries (`r1` … `r<routes>`, each on its own path,
/// see [`route_url`]), all in front of the same upstream and inheriting the scenario's
/// authentication and policy.
pub fn routes_config(listen: SocketAddr, upstream_url: &str, auth: &Auth, routes: usize) -> String {
    let mut yaml = compose(listen, None, auth);
    yaml.push_str("routes:\n");
    for index in 1..=routes {
        yaml.push_str(&format!(
            "  - {{ name: r{index}, public_url: \"{}\", upstream: {{ url: \"{upstream_url}\" }} }}\n",
            route_url(index)
        ));
    }
    yaml
}

/// A scenario's configuration; without an upstream (a file with `routes:`), also
/// without the audience, which each route then has of its own.
fn compose(listen: SocketAddr, upstream_url: Option<&str>, auth: &Auth) -> String {
    let upstream = upstream_url
        .map(|url| format!("upstream:\n  url: {url}\n"))
        .unwrap_or_default();
    let audiences = if upstream_url.is_some() {
        format!("    audiences: [\"{AUDIENCE}\"]\n")
    } else {
        String::new()
    };
    let mut yaml = format!(
        "server:\n  listen: {listen}\n\
         {upstream}\
         # The bench upstream keeps no sessions, so neither does the gateway.\n\
         session:\n  stateless: true\n\
         log:\n  level: warn\n"
    );
    let oauth = |jwks: &str| {
        format!(
            "auth:\n  oauth:\n    enabled: true\n    issuers: [\"{ISSUER}\"]\n\
             {audiences}    jwks:\n{jwks}"
        )
    };
    match auth {
        Auth::Off => return yaml,
        Auth::Hs256 { secret } => yaml.push_str(&oauth(&format!(
            "      - secret: \"{secret}\"\n        symmetric_algorithm: HS256\n        \
             header_key_id: {}\n",
            crate::keys::HMAC_KID
        ))),
        Auth::Jwks { url } => yaml.push_str(&oauth(&format!(
            "      - url: {url}\n        algorithms: [RS256, ES256]\n"
        ))),
        Auth::Introspection { url } => yaml.push_str(&format!(
            "auth:\n  oauth:\n    enabled: true\n    issuers: [\"{ISSUER}\"]\n\
             {audiences}    introspection:\n      url: {url}\n      \
             client_id: mcpgate-bench\n      client_secret: bench-introspection-secret\n"
        )),
        Auth::ApiKey { hash } => {
            let scopes = TOKEN_SCOPES.split(' ').collect::<Vec<_>>().join(", ");
            yaml.push_str(&format!(
                "auth:\n  api_keys:\n    - id: {API_KEY_ID}\n      hash: \"{hash}\"\n      \
                 scopes: [{scopes}]\n"
            ));
        }
    }
    // A realistic policy: a scope for every request, one per method, and a glob rule
    // that hides half of the 1,000-tool list from callers without `admin`.
    yaml.push_str(&format!(
        "scopes:\n  initialize: [mcp:connect]\n  tools_list: [mcp:tools:read]\n  \
         tools_call: [mcp:tools:execute]\n  tools:\n    \"{HIDDEN_PREFIX}*\": [admin]\n"
    ));
    yaml
}

/// A running gateway. Dropping it kills the process.
pub struct Gateway {
    child: Child,
    pub pid: u32,
    pub addr: SocketAddr,
    log: PathBuf,
}

impl Gateway {
    /// Starts `binary serve` with `config`, on the given cores when there are any,
    /// run by `wrapper` (a program and its arguments, such as valgrind's) unless it is
    /// empty; the pid is then the wrapper's, which for valgrind is the gateway's own.
    pub fn spawn(
        wrapper: &[String],
        binary: &Path,
        workdir: &Path,
        name: &str,
        config: &str,
        cpus: &[usize],
    ) -> Result<Self> {
        let config_path = workdir.join(format!("{name}.yaml"));
        fs::write(&config_path, config).context("writing the gateway config")?;
        let log = workdir.join(format!("{name}.log"));
        let stderr = File::create(&log).context("creating the gateway log")?;
        let mut command = match wrapper.split_first() {
            Some((program, args)) => {
                let mut command = Command::new(program);
                command.args(args).arg(binary);
                command
            }
            None => Command::new(binary),
        };
        command
            .arg("serve")
            .arg("--config")
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr);
        // The configuration file is the whole configuration: no override from the
        // environment the harness happens to run in.
        for (key, _) in std::env::vars_os() {
            let key_text = key.to_string_lossy();
            if key_text.starts_with("MCPGATE_")
                || key_text.starts_with("MCP_OAUTH_")
                || key_text.starts_with("OTEL_")
                || key_text == "RUST_LOG"
            {
                command.env_remove(&key);
            }
        }
        let listen = config_addr(config)?;
        Self::launch(command, log, listen, cpus)
    }

    /// Starts `command` (stdout and stderr already directed) as the process in front
    /// of the upstream, listening on `listen`, on the given cores when there are any.
    pub fn launch(
        mut command: Command,
        log: PathBuf,
        listen: SocketAddr,
        cpus: &[usize],
    ) -> Result<Self> {
        let set = (!cpus.is_empty()).then(|| crate::measure::cpu_set(cpus));
        // SAFETY: between fork and exec the closure only makes two system calls.
        unsafe {
            command.pre_exec(move || {
                // If the harness dies without running destructors (SIGKILL), the
                // kernel still takes the gateway down with it.
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong);
                if let Some(set) = &set {
                    libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), set);
                }
                Ok(())
            });
        }
        let child = command
            .spawn()
            .with_context(|| format!("starting {:?}", command.get_program()))?;
        let pid = child.id();
        if let Ok(mut pids) = LIVE.lock() {
            pids.push(pid);
        }
        Ok(Self {
            child,
            pid,
            addr: listen,
            log,
        })
    }

    /// Waits until `target` (a request through this gateway) gets an answer.
    pub async fn wait_ready(&mut self, target: &Target) -> Result<()> {
        self.wait_ready_within(target, Duration::from_secs(20))
            .await
    }

    /// [`Gateway::wait_ready`] with a longer patience (a gateway under valgrind starts
    /// slowly).
    pub async fn wait_ready_within(&mut self, target: &Target, patience: Duration) -> Result<()> {
        let deadline = Instant::now() + patience;
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!(
                    "mcpgate exited ({status}) before it was ready:\n{}",
                    self.log_tail()
                );
            }
            if load::probe(target).await.is_ok() {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "mcpgate was not ready after {} s:\n{}",
                    patience.as_secs(),
                    self.log_tail()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The end of the gateway's log, for error messages.
    pub fn log_tail(&self) -> String {
        let log = fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Ok(mut pids) = LIVE.lock() {
            pids.retain(|&pid| pid != self.pid);
        }
    }
}

/// A free loopback port. Another process could take it before the gateway binds it;
/// on a benchmark machine that race is not worth a protocol to read the port back.
pub fn free_addr() -> Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").context("finding a free port")?;
    Ok(listener.local_addr()?)
}

fn config_addr(config: &str) -> Result<SocketAddr> {
    config
        .lines()
        .find_map(|line| line.trim().strip_prefix("listen: "))
        .context("config has no listen address")?
        .parse()
        .context("config listen address")
}

/// Creates an API key with `mcpgate hash-key`, so the hash is exactly what mcpgate
/// itself produces. Returns the key and its hash.
pub fn make_api_key(binary: &Path) -> Result<(String, String)> {
    let output = Command::new(binary)
        .args(["hash-key", "--id", API_KEY_ID, "--scope", TOKEN_SCOPES])
        .output()
        .context("running mcpgate hash-key")?;
    if !output.status.success() {
        bail!(
            "mcpgate hash-key failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let text = String::from_utf8(output.stdout).context("hash-key output")?;
    let key = text
        .lines()
        .map(str::trim)
        .find(|line| line.starts_with("mcpk_"))
        .context("no key in hash-key output")?;
    let hash = text
        .lines()
        .find_map(|line| line.trim().strip_prefix("hash: "))
        .map(|hash| hash.trim_matches('"'))
        .context("no hash in hash-key output")?;
    Ok((key.to_owned(), hash.to_owned()))
}

/// A directory for configs and logs, removed when the run ends.
pub struct WorkDir(pub PathBuf);

impl WorkDir {
    pub fn create() -> Result<Self> {
        let path = std::env::temp_dir().join(format!("mcpgate-bench-{}", std::process::id()));
        fs::create_dir_all(&path).with_context(|| format!("creating {}", path.display()))?;
        Ok(Self(path))
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_names_its_listen_address() {
        let addr: SocketAddr = "127.0.0.1:4000".parse().unwrap();
        for auth in [
            Auth::Off,
            Auth::Hs256 {
                secret: "s".repeat(43),
            },
            Auth::Jwks {
                url: "http://127.0.0.1:1/jwks.json".into(),
            },
            Auth::ApiKey {
                hash: "$argon2id$v=19$m=19456,t=2,p=1$a$b".into(),
            },
            Auth::Introspection {
                url: "http://127.0.0.1:1/introspect".into(),
            },
        ] {
            let yaml = config(addr, "http://127.0.0.1:1/mcp", &auth);
            assert_eq!(config_addr(&yaml).unwrap(), addr);
            assert_eq!(yaml.contains("scopes:"), !matches!(auth, Auth::Off));
        }
    }

    #[test]
    fn routes_config_has_no_top_level_endpoint_and_a_path_per_route() {
        let addr: SocketAddr = "127.0.0.1:4000".parse().unwrap();
        let auth = Auth::Hs256 {
            secret: "s".repeat(43),
        };
        let yaml = routes_config(addr, "http://127.0.0.1:1/mcp", &auth, 3);
        assert_eq!(config_addr(&yaml).unwrap(), addr);
        assert!(!yaml.contains("\nupstream:"));
        assert!(!yaml.contains("audiences:"));
        assert!(yaml.contains("scopes:\n"));
        let routes: Vec<&str> = yaml
            .lines()
            .filter(|line| line.starts_with("  - {"))
            .collect();
        assert_eq!(routes.len(), 3);
        assert!(routes[0].contains("name: r1, public_url: \"https://mcp.bench.invalid/r1/mcp\""));
        assert!(routes[2].contains("/r3/mcp"));
        assert!(
            routes
                .iter()
                .all(|route| route.contains("url: \"http://127.0.0.1:1/mcp\""))
        );
        assert_eq!(
            route_url(3),
            format!("https://mcp.bench.invalid{}", route_path(3))
        );
    }
}
