//! `mcpgate demo`: an embedded MCP server behind the gateway with a fresh development
//! secret, and tokens and commands to try it with. Needs no set-up and no network.

mod mcp_server;

use std::net::SocketAddr;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::Algorithm;
use rand::RngCore;

use crate::auth::mint::{TokenRequest, mint};
use crate::config::{
    Config, JwksProviderConfig, OAuthConfig, RequirementSpec, ScopesConfig, Secret, ServerConfig,
    UpstreamConfig,
};

pub use mcp_server::router as mcp_server_router;

/// Scopes of the "basic" token: enough to connect, list and call tools.
pub const BASIC_SCOPES: &[&str] = &["mcp:connect", "mcp:tools:read", "mcp:tools:execute"];
/// The scope `admin_stats` needs.
pub const ADMIN_SCOPE: &str = "mcp:admin";
/// Issuer of demo tokens.
pub const DEMO_ISSUER: &str = "mcpgate-demo";
const DEMO_KEY_ID: &str = "demo";
const TOKEN_LIFETIME: Duration = Duration::from_secs(12 * 3600);

/// The demo's policy: connecting, listing and calling each need their scope, and
/// `admin_stats` also needs `mcp:admin` (hidden from lists without it).
fn demo_scopes() -> ScopesConfig {
    let one = |scope: &str| RequirementSpec {
        groups: vec![vec![scope.to_owned()]],
    };
    ScopesConfig {
        initialize: one("mcp:connect"),
        tools_list: one("mcp:tools:read"),
        tools_call: one("mcp:tools:execute"),
        tools: [("admin_stats".to_owned(), one(ADMIN_SCOPE))].into(),
        ..ScopesConfig::default()
    }
}

/// A ready-to-serve demo: its configuration and the tokens to print.
pub struct Demo {
    /// Serves the embedded MCP server with a fresh secret and example scopes.
    pub config: Config,
    pub(crate) token_all: String,
    pub(crate) token_basic: String,
    pub(crate) token_no_connect: String,
}

/// Starts the embedded MCP server on a free loopback port and prepares the gateway
/// configuration for `gateway_addr` (already bound by the caller).
pub async fn prepare(gateway_addr: SocketAddr) -> anyhow::Result<Demo> {
    let upstream_listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
    let upstream_addr = upstream_listener.local_addr()?;
    tokio::spawn(async move {
        if let Err(error) = axum::serve(upstream_listener, mcp_server_router()).await {
            tracing::error!(%error, "demo MCP server stopped");
        }
    });

    let mut secret_bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut secret_bytes);
    let secret = URL_SAFE_NO_PAD.encode(secret_bytes);
    let public_url = url::Url::parse(&format!("http://{gateway_addr}/mcp"))?;

    let config = Config {
        server: ServerConfig {
            listen: gateway_addr,
            public_url: Some(public_url.clone()),
            ..ServerConfig::default()
        },
        upstream: Some(UpstreamConfig {
            url: Some(url::Url::parse(&format!("http://{upstream_addr}/mcp"))?),
            connect_timeout: Duration::from_secs(2),
            timeout: Duration::from_secs(30),
            ..UpstreamConfig::default()
        }),
        auth: crate::config::AuthConfig {
            oauth: OAuthConfig {
                enabled: Some(true),
                // The demo has no authorization server: its tokens are printed instead.
                authorization_servers: vec![format!("http://{gateway_addr}")],
                issuers: vec![DEMO_ISSUER.to_owned()],
                jwks: vec![JwksProviderConfig {
                    url: None,
                    algorithms: Vec::new(),
                    refresh_interval: Duration::from_secs(60),
                    min_refetch_interval: Duration::from_secs(30),
                    max_stale: Duration::from_secs(3600),
                    start_not_ready: false,
                    issuer: None,
                    require_at_jwt: false,
                    secret: Some(Secret::new(secret.clone())),
                    symmetric_algorithm: Some(Algorithm::HS256),
                    header_key_id: Some(DEMO_KEY_ID.to_owned()),
                    ..JwksProviderConfig::default()
                }],
                ..OAuthConfig::default()
            },
            ..Default::default()
        },
        scopes: demo_scopes(),
        ..Config::default()
    };

    let token = |subject: &str, scopes: Vec<&str>| {
        mint(
            secret.as_bytes(),
            &TokenRequest {
                subject: subject.to_owned(),
                scopes: scopes.into_iter().map(str::to_owned).collect(),
                audience: public_url.to_string(),
                issuer: Some(DEMO_ISSUER.to_owned()),
                client_id: Some("mcpgate-demo-client".to_owned()),
                lifetime: TOKEN_LIFETIME,
                key_id: Some(DEMO_KEY_ID.to_owned()),
                algorithm: Algorithm::HS256,
            },
        )
    };
    let mut all_scopes = BASIC_SCOPES.to_vec();
    all_scopes.push(ADMIN_SCOPE);
    Ok(Demo {
        token_all: token("demo-admin", all_scopes)?,
        token_basic: token("demo-user", BASIC_SCOPES.to_vec())?,
        token_no_connect: token("demo-visitor", vec!["mcp:tools:read"])?,
        config,
    })
}

impl Demo {
    /// The text printed on start: the URL, tokens and commands that work as printed.
    pub fn instructions(&self) -> String {
        let url = self.config.public_url();
        let metadata = self.config.metadata_url();
        let accept =
            "-H 'Content-Type: application/json' -H 'Accept: application/json, text/event-stream'";
        let list = r#"'{"jsonrpc":"2.0","id":1,"method":"tools/list"}'"#;
        let call = r#"'{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"echo","arguments":{"message":"hello"}}}'"#;
        let admin_call = r#"'{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"admin_stats","arguments":{}}}'"#;
        format!(
            "\nmcpgate demo is running.\n\n\
             MCP endpoint (OAuth-protected):  {url}\n\
             Protected-resource metadata:     {metadata}\n\n\
             Token with every scope ({all_scopes}):\n{all}\n\n\
             Token with the basic scopes ({basic_scopes}):\n{basic}\n\n\
             Token without mcp:connect (refused with 403):\n{no_connect}\n\n\
             Try it (paste into another terminal):\n\n\
             # no token: 401 with a WWW-Authenticate challenge\n\
             curl -i {url} {accept} -d {list}\n\n\
             # basic token: tools/list (admin_stats is not listed)\n\
             curl -s {url} {accept} -H 'Authorization: Bearer {basic}' -d {list}\n\n\
             # basic token: call the echo tool\n\
             curl -s {url} {accept} -H 'Authorization: Bearer {basic}' -d {call}\n\n\
             # basic token: admin_stats needs mcp:admin, so tools/list hides it and a call gets 403 naming the scope\n\
             curl -i {url} {accept} -H 'Authorization: Bearer {basic}' -d {admin_call}\n\n\
             # token without mcp:connect: 403 insufficient_scope, naming the scope to ask for\n\
             curl -i {url} {accept} -H 'Authorization: Bearer {no_connect}' -d {list}\n\n\
             # the discovery document clients read after a 401\n\
             curl -s {metadata}\n\n\
             # the MCP Inspector CLI\n\
             npx -y @modelcontextprotocol/inspector@1.0.3 --cli {url} --transport http --method tools/list --header 'Authorization: Bearer {basic}'\n\n\
             Press Ctrl-C to stop.\n",
            all_scopes = {
                let mut scopes = BASIC_SCOPES.to_vec();
                scopes.push(ADMIN_SCOPE);
                scopes.join(" ")
            },
            all = self.token_all,
            basic_scopes = BASIC_SCOPES.join(" "),
            basic = self.token_basic,
            no_connect = self.token_no_connect,
        )
    }
}
