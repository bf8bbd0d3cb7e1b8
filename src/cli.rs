//! Command-line interface.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

/// `mcpgate --version`: the release and the commit it was built from.
const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (",
    env!("MCPGATE_REVISION"),
    ")"
);

#[derive(Debug, Parser)]
#[command(
    name = "mcpgate",
    version = VERSION,
    about = "OAuth 2.1 authorization gateway for MCP servers"
)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Run the gateway.
    Serve(ConfigArg),
    /// Validate a configuration (fetching remote JWKS as `serve` would) and exit:
    /// 0 when it is good, 78 with one line naming the key when it is not.
    Check(ConfigArg),
    /// Mint a development JWT from a symmetric secret.
    Token(TokenArgs),
    /// Run an embedded MCP server behind the gateway, and print tokens and commands to try it.
    Demo(DemoArgs),
    /// Generate a new API key and the argon2id hash to put in `auth.api_keys`.
    HashKey(HashKeyArgs),
    /// Connect to the configured upstream and print each tool, prompt and resource
    /// with the scopes it requires, and drift between the rules and the upstream.
    Policy(PolicyArgs),
    /// Verify a token as the gateway would and explain the decision for one request:
    /// the principal, the requirements that apply, the rules that match, and why it
    /// is allowed or refused. Exit 0 allowed, 1 refused (scopes or a rule), 3 the
    /// token is not accepted, 78 config error. Never prints the token.
    Explain(ExplainArgs),
}

#[derive(Debug, Args)]
pub(crate) struct ExplainArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    /// The bearer token or API key to explain; `-` reads it from standard input
    /// (keeps it out of the process list and shell history).
    #[arg(
        long,
        env = "MCPGATE_EXPLAIN_TOKEN",
        hide_env_values = true,
        allow_hyphen_values = true
    )]
    pub token: String,
    /// A tool: the request is `tools/call` of it (unless --method says otherwise).
    #[arg(long, conflicts_with_all = ["resource", "prompt"])]
    pub tool: Option<String>,
    /// The JSON-RPC method (e.g. tools/list, completion/complete). Without --method
    /// and without an item: the connection alone (what every request needs).
    #[arg(long)]
    pub method: Option<String>,
    /// A resource URI (or URI template): `resources/read` of it by default.
    #[arg(long, conflicts_with = "prompt")]
    pub resource: Option<String>,
    /// A prompt: `prompts/get` of it by default.
    #[arg(long)]
    pub prompt: Option<String>,
    /// Print the explanation as JSON (the admin listener's `POST /explain` answer).
    #[arg(long)]
    pub json: bool,
    /// The route asked about, by name (required when the configuration has `routes:`).
    #[arg(long)]
    pub route: Option<String>,
}

#[derive(Debug, Args)]
pub(crate) struct PolicyArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    /// Print the matrix as a JSON manifest.
    #[arg(long)]
    pub json: bool,
    /// Exit 1 when there is drift (for CI).
    #[arg(long)]
    pub fail_on_drift: bool,
    /// The route whose upstream and policy are shown, by name (required when the
    /// configuration has `routes:`).
    #[arg(long)]
    pub route: Option<String>,
}

#[derive(Debug, Args)]
pub(crate) struct HashKeyArgs {
    /// The key's id (A-Z a-z 0-9 . -); it becomes part of the key and names it in logs.
    #[arg(long)]
    pub id: String,
    /// Scopes for the config entry, space-separated or repeated (`*` for every scope).
    #[arg(long = "scope", value_name = "SCOPES")]
    pub scopes: Vec<String>,
}

#[derive(Debug, Args)]
pub(crate) struct ConfigArg {
    /// Path to mcpgate.yaml.
    #[arg(long, short, env = "MCPGATE_CONFIG", value_name = "FILE")]
    pub config: PathBuf,
}

#[derive(Debug, Args)]
pub(crate) struct TokenArgs {
    /// Take the secret, key id, algorithm, audience and issuer from this config's first
    /// symmetric `auth.oauth.jwks` entry.
    #[arg(long, short, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// The HMAC secret (at least 32 bytes). Prefer the environment variable.
    #[arg(long, env = "MCPGATE_TOKEN_SECRET", hide_env_values = true)]
    pub secret: Option<String>,
    /// `sub` claim.
    #[arg(long, default_value = "dev-user")]
    pub sub: String,
    /// Scopes, space-separated or repeated.
    #[arg(long = "scope", value_name = "SCOPES")]
    pub scopes: Vec<String>,
    /// `aud` claim (default: the config's first accepted audience).
    #[arg(long)]
    pub aud: Option<String>,
    /// `iss` claim (default: the config's first issuer).
    #[arg(long)]
    pub iss: Option<String>,
    /// `client_id` claim.
    #[arg(long)]
    pub client_id: Option<String>,
    /// Lifetime, e.g. 15m, 1h.
    #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
    pub ttl: Duration,
    /// `kid` header (default: the config's header_key_id).
    #[arg(long)]
    pub kid: Option<String>,
    /// HS256, HS384 or HS512 (default: the config's symmetric_algorithm, else HS256).
    #[arg(long)]
    pub alg: Option<jsonwebtoken::Algorithm>,
    /// With --config and `routes:`: the route whose audience the token names.
    #[arg(long, requires = "config", conflicts_with = "aud")]
    pub route: Option<String>,
}

#[derive(Debug, Args)]
pub(crate) struct DemoArgs {
    /// Where the gateway listens (port 0 picks a free one).
    #[arg(long, default_value = "127.0.0.1:5025")]
    pub listen: SocketAddr,
}
