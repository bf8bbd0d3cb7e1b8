//! `upstream:` for a local MCP server started as a child process: the file format and
//! the startup checks that turn it into something that can be spawned.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::config::{CommandLine, Secret};

/// How to start the MCP server and how long its processes may live.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StdioConfig {
    /// The program, or the program followed by its arguments. A single string is one
    /// program path, never split on spaces: there is no shell in between.
    pub command: CommandLine,
    /// Arguments after those given in `command`.
    #[serde(default)]
    pub args: Vec<String>,
    /// The child's whole environment: nothing of mcpgate's own (its secrets, its
    /// cloud credentials) leaks into a process that runs tools on a user's behalf.
    #[serde(default)]
    pub env: BTreeMap<String, Secret>,
    /// Working directory of the child; mcpgate's own when unset.
    #[serde(default)]
    pub cwd: Option<PathBuf>,
    /// A session with no request for this long has its process stopped. A request
    /// still running, or an open GET stream (a connected client waiting for
    /// notifications), counts as use: the clock starts when the last one ends.
    #[serde(default = "default_idle_timeout", with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// Most processes alive at once (one per MCP session).
    #[serde(default = "default_max_children")]
    pub max_children: usize,
    /// Longest wait for the child's answer to one request.
    #[serde(default = "default_request_timeout", with = "humantime_serde")]
    pub request_timeout: Duration,
}

fn default_idle_timeout() -> Duration {
    Duration::from_secs(600)
}

fn default_max_children() -> usize {
    32
}

fn default_request_timeout() -> Duration {
    Duration::from_secs(60)
}

impl StdioConfig {
    /// A configuration with the defaults, for code and tests that build one by hand.
    pub fn new(command: CommandLine) -> Self {
        Self {
            command,
            args: Vec::new(),
            env: BTreeMap::new(),
            cwd: None,
            idle_timeout: default_idle_timeout(),
            max_children: default_max_children(),
            request_timeout: default_request_timeout(),
        }
    }
}

/// A configuration problem, naming the key (`upstream.command`, `upstream.env.NAME` …).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {message}")]
pub struct StdioConfigError {
    /// The configuration key at fault.
    pub key: String,
    /// What is wrong with it.
    pub message: String,
}

impl StdioConfigError {
    fn new(key: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            message: message.into(),
        }
    }
}

/// What every spawn uses, checked once at startup.
#[derive(Clone)]
pub(super) struct Launch {
    /// Absolute: the child has no `PATH` to search unless the operator gives it one.
    pub program: PathBuf,
    /// Arguments after those given in `command`.
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    /// Working directory of the child; mcpgate's own when unset.
    pub cwd: Option<PathBuf>,
}

impl std::fmt::Debug for Launch {
    /// Variable names only: their values are often credentials.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Launch")
            .field("program", &self.program)
            .field("args", &self.args)
            .field(
                "env",
                &self.env.iter().map(|(name, _)| name).collect::<Vec<_>>(),
            )
            .field("cwd", &self.cwd)
            .finish()
    }
}

/// The limits each session runs under.
#[derive(Debug, Clone, Copy)]
pub(super) struct Limits {
    /// A session with no request for this long has its process stopped. A request
    /// still running, or an open GET stream (a connected client waiting for
    /// notifications), counts as use: the clock starts when the last one ends.
    pub idle_timeout: Duration,
    /// Most processes alive at once (one per MCP session).
    pub max_children: usize,
    /// Longest wait for the child's answer to one request.
    pub request_timeout: Duration,
}

pub(super) fn check(config: &StdioConfig) -> Result<(Launch, Limits), StdioConfigError> {
    let (program, mut args) = match &config.command {
        CommandLine::Program(program) => (program.clone(), Vec::new()),
        CommandLine::WithArgs(items) => match items.split_first() {
            Some((program, rest)) => (program.clone(), rest.to_vec()),
            None => {
                return Err(StdioConfigError::new(
                    "upstream.command",
                    "must name a program",
                ));
            }
        },
    };
    args.extend(config.args.iter().cloned());
    if program.trim().is_empty() {
        return Err(StdioConfigError::new(
            "upstream.command",
            "must name a program",
        ));
    }
    // A NUL cannot cross exec(2); refusing it here beats a confusing spawn error later.
    if program.contains('\0') {
        return Err(StdioConfigError::new(
            "upstream.command",
            "contains a NUL byte",
        ));
    }
    if args.iter().any(|arg| arg.contains('\0')) {
        return Err(StdioConfigError::new(
            "upstream.args",
            "an argument contains a NUL byte",
        ));
    }
    let mut env = Vec::with_capacity(config.env.len());
    for (name, value) in &config.env {
        let key = format!("upstream.env.{name}");
        if name.is_empty() || name.contains('=') || name.contains('\0') {
            return Err(StdioConfigError::new(
                key,
                "not a valid environment variable name",
            ));
        }
        if value.expose().contains('\0') {
            return Err(StdioConfigError::new(key, "the value contains a NUL byte"));
        }
        env.push((name.clone(), value.expose().to_owned()));
    }
    let cwd = match &config.cwd {
        None => None,
        Some(dir) => {
            let absolute = std::path::absolute(dir).map_err(|error| {
                StdioConfigError::new("upstream.cwd", format!("{}: {error}", dir.display()))
            })?;
            if !absolute.is_dir() {
                return Err(StdioConfigError::new(
                    "upstream.cwd",
                    format!("{} is not an existing directory", dir.display()),
                ));
            }
            Some(absolute)
        }
    };
    // The configured PATH is the one the operator meant for this server; without one,
    // mcpgate's own is searched (the child still gets no PATH of its own).
    let search_path = config
        .env
        .get("PATH")
        .map(|path| OsString::from(path.expose()))
        .or_else(|| std::env::var_os("PATH"));
    let program = resolve_program(&program, search_path.as_deref(), cwd.as_deref())?;
    if config.max_children == 0 {
        return Err(StdioConfigError::new(
            "upstream.max_children",
            "must be at least 1",
        ));
    }
    for (key, value) in [
        ("upstream.idle_timeout", config.idle_timeout),
        ("upstream.request_timeout", config.request_timeout),
    ] {
        if value.is_zero() {
            return Err(StdioConfigError::new(key, "must be longer than zero"));
        }
    }
    Ok((
        Launch {
            program,
            args,
            env,
            cwd,
        },
        Limits {
            idle_timeout: config.idle_timeout,
            max_children: config.max_children,
            request_timeout: config.request_timeout,
        },
    ))
}

/// The absolute path of an executable file: a name with a `/` is a path (relative to
/// `cwd` when set, as the child would see it), a bare name is searched in `path`.
fn resolve_program(
    program: &str,
    path: Option<&std::ffi::OsStr>,
    cwd: Option<&Path>,
) -> Result<PathBuf, StdioConfigError> {
    let not_found = |detail: String| {
        StdioConfigError::new(
            "upstream.command",
            format!(
                "{detail} (a single string is one program; give a list [program, arg, …] to pass arguments)"
            ),
        )
    };
    let given = Path::new(program);
    if program.contains(std::path::MAIN_SEPARATOR) || program.contains('/') {
        let candidate = match cwd {
            Some(dir) if given.is_relative() => dir.join(given),
            _ => std::path::absolute(given)
                .map_err(|error| not_found(format!("{program:?}: {error}")))?,
        };
        return if is_executable(&candidate) {
            Ok(candidate)
        } else {
            Err(not_found(format!("{program:?} is not an executable file")))
        };
    }
    let found = path
        .into_iter()
        .flat_map(std::env::split_paths)
        // An empty PATH entry means the current directory: too surprising for a
        // program that gets run on every new session, so it is skipped.
        .filter(|dir| !dir.as_os_str().is_empty() && dir.is_absolute())
        .map(|dir| dir.join(program))
        .find(|candidate| is_executable(candidate));
    found.ok_or_else(|| not_found(format!("program {program:?} not found in PATH")))
}

#[cfg(unix)]
fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .map(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

#[cfg(not(unix))]
fn is_executable(path: &Path) -> bool {
    path.is_file()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(yaml: &str) -> Result<StdioConfig, String> {
        serde_saphyr::from_str(yaml).map_err(|error| error.to_string())
    }

    #[test]
    fn command_is_a_string_or_a_list_with_defaults() {
        let config = parse("command: [sh, -c, 'exit 0']\n").unwrap();
        assert_eq!(
            config.command,
            CommandLine::WithArgs(vec!["sh".into(), "-c".into(), "exit 0".into()])
        );
        assert_eq!(config.idle_timeout, Duration::from_secs(600));
        assert_eq!(config.max_children, 32);
        assert_eq!(config.request_timeout, Duration::from_secs(60));
        let config = parse("command: sh\nidle_timeout: 500ms\nrequest_timeout: 2m\n").unwrap();
        assert_eq!(config.command, CommandLine::Program("sh".into()));
        assert_eq!(config.idle_timeout, Duration::from_millis(500));
        assert_eq!(config.request_timeout, Duration::from_secs(120));
    }

    #[test]
    fn unknown_keys_are_refused() {
        assert!(parse("command: sh\nshell: true\n").is_err());
    }

    #[test]
    fn a_bare_program_resolves_to_an_absolute_path() {
        let (launch, _) = check(&StdioConfig::new(CommandLine::WithArgs(vec![
            "sh".into(),
            "-c".into(),
        ])))
        .unwrap();
        assert!(launch.program.is_absolute());
        assert!(launch.program.ends_with("sh"));
        assert_eq!(launch.args, vec!["-c".to_owned()]);
    }

    #[test]
    fn a_missing_program_names_upstream_command() {
        let error = check(&StdioConfig::new(CommandLine::Program(
            "npx -y something".into(),
        )))
        .unwrap_err();
        assert_eq!(error.key, "upstream.command");
        assert!(error.message.contains("not found"), "{error}");
        let error = check(&StdioConfig::new(CommandLine::WithArgs(vec![]))).unwrap_err();
        assert_eq!(error.key, "upstream.command");
        let error = check(&StdioConfig::new(CommandLine::Program(
            "/nonexistent/server".into(),
        )))
        .unwrap_err();
        assert_eq!(error.key, "upstream.command");
    }

    #[test]
    fn the_configured_path_is_searched_first() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = StdioConfig::new(CommandLine::Program("sh".into()));
        config.env.insert(
            "PATH".into(),
            Secret::new(dir.path().to_string_lossy().into_owned()),
        );
        // Not in the configured PATH, even though mcpgate's own PATH has it.
        assert_eq!(check(&config).unwrap_err().key, "upstream.command");
    }

    #[test]
    fn cwd_must_exist_and_limits_must_be_positive() {
        let mut config = StdioConfig::new(CommandLine::Program("sh".into()));
        config.cwd = Some("/nonexistent/dir".into());
        assert_eq!(check(&config).unwrap_err().key, "upstream.cwd");
        let mut config = StdioConfig::new(CommandLine::Program("sh".into()));
        config.max_children = 0;
        assert_eq!(check(&config).unwrap_err().key, "upstream.max_children");
        let mut config = StdioConfig::new(CommandLine::Program("sh".into()));
        config.idle_timeout = Duration::ZERO;
        assert_eq!(check(&config).unwrap_err().key, "upstream.idle_timeout");
        let mut config = StdioConfig::new(CommandLine::Program("sh".into()));
        config.env.insert("A=B".into(), Secret::new("x"));
        assert_eq!(check(&config).unwrap_err().key, "upstream.env.A=B");
    }
}
