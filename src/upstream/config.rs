//! `upstream:` resolved into the one kind it names. The YAML keeps every key side by
//! side (`config::UpstreamConfig`); this is what the rest of mcpgate builds from, so
//! no code has to handle a state the checks have ruled out.

use std::collections::BTreeMap;
use std::time::Duration;

use url::Url;

use super::stdio::StdioConfig;
use crate::config::{
    CommandLine, ConfigError, ExchangeGrant, GraphqlUpstreamConfig, Secret, TokenExchangeConfig,
    UpstreamConfig, UpstreamOAuthConfig, VirtualServerConfig, check_headers, check_http_url,
    check_scope_token,
};

/// The upstream section once checked: one kind, and the timeouts every kind shares.
#[derive(Debug, Clone, PartialEq)]
pub struct UpstreamSettings {
    pub(crate) kind: UpstreamKind,
    /// Longest wait for a TCP (and TLS) connection to the upstream.
    pub connect_timeout: Duration,
    /// Longest wait for the upstream's answer to start.
    pub timeout: Duration,
}

/// What the upstream is. Exactly one, as `upstream.url`, `upstream.command` and
/// `upstream.graphql` exclude each other.
#[derive(Debug, Clone, PartialEq)]
pub enum UpstreamKind {
    /// `upstream.url`: a Streamable HTTP MCP endpoint.
    Http(HttpUpstreamConfig),
    /// `upstream.command`: a child process spoken to over stdio.
    Stdio(StdioConfig),
    /// `upstream.graphql`: mcpgate serves MCP itself and calls a GraphQL endpoint.
    Graphql(GraphqlUpstreamConfig),
    /// `upstream.virtual`: mcpgate serves MCP itself and calls other routes.
    Virtual(VirtualServerConfig),
}

/// A Streamable HTTP MCP server and the credentials mcpgate sends it.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpUpstreamConfig {
    pub(crate) url: Url,
    /// Added to every upstream request.
    pub headers: BTreeMap<String, Secret>,
    /// mcpgate's own OAuth client for the upstream.
    pub oauth: Option<UpstreamOAuthConfig>,
}

/// Why `upstream.url` is named when no kind is set: it is the common case.
const REQUIRED: &str = "required: the MCP server to proxy to (e.g. http://127.0.0.1:3001/mcp), \
     or upstream.command to start a stdio server, or upstream.graphql to serve a GraphQL API as tools";

impl UpstreamSettings {
    /// The `upstream` section of a file, which must be there.
    pub fn from_section(section: Option<&UpstreamConfig>) -> Result<Self, ConfigError> {
        section
            .ok_or_else(|| ConfigError::invalid("upstream.url", REQUIRED))?
            .resolve()
    }
}

impl UpstreamConfig {
    /// The kind this section names, checked. Errors name the key, in the order the
    /// keys are checked: which kinds are set, keys that belong to another kind, then
    /// the kind's own values.
    pub fn resolve(&self) -> Result<UpstreamSettings, ConfigError> {
        if let Some(members) = &self.virtual_server {
            return self.virtual_kind(members);
        }
        let kind = match (&self.url, &self.command, &self.graphql) {
            (None, None, None) => return Err(ConfigError::invalid("upstream.url", REQUIRED)),
            (Some(url), None, None) => UpstreamKind::Http(self.http(url)?),
            (None, Some(command), None) => UpstreamKind::Stdio(self.stdio_kind(command)?),
            (None, None, Some(graphql)) => UpstreamKind::Graphql(self.graphql_kind(graphql)?),
            (url, command, _) => {
                let which = match (url.is_some(), command.is_some()) {
                    (true, true) if self.graphql.is_some() => "not all three",
                    (true, true) => "not both url and command",
                    (true, false) => "not both url and graphql",
                    _ => "not both command and graphql",
                };
                return Err(ConfigError::invalid(
                    "upstream",
                    format!(
                        "set one of url (an HTTP server), command (a stdio server) or graphql \
                         (a GraphQL API), {which}"
                    ),
                ));
            }
        };
        Ok(UpstreamSettings {
            kind,
            connect_timeout: self.connect_timeout,
            timeout: self.timeout,
        })
    }

    /// As [`UpstreamSettings::describe`]; `-` when the section names no single kind.
    pub fn describe(&self) -> String {
        self.resolve()
            .map_or_else(|_| "-".to_owned(), |settings| settings.describe())
    }

    /// The first stdio-only key set, if any.
    fn stdio_key(&self) -> Option<&'static str> {
        [
            ("args", !self.args.is_empty()),
            ("env", !self.env.is_empty()),
            ("cwd", self.cwd.is_some()),
            ("idle_timeout", self.idle_timeout.is_some()),
            ("max_children", self.max_children.is_some()),
        ]
        .into_iter()
        .find_map(|(key, set)| set.then_some(key))
    }

    /// Which of `oauth` and `headers` is set (oauth named first), if any.
    fn credentials_key(&self) -> Option<&'static str> {
        if self.oauth.is_some() {
            Some("upstream.oauth")
        } else if !self.headers.is_empty() {
            Some("upstream.headers")
        } else if let Some(identity) = &self.identity {
            Some(match identity.exchange {
                Some(_) => "upstream.identity.exchange",
                None => "upstream.identity",
            })
        } else {
            None
        }
    }

    fn http(&self, url: &Url) -> Result<HttpUpstreamConfig, ConfigError> {
        check_http_url("upstream.url", url)?;
        if let Some(key) = self.stdio_key() {
            return Err(ConfigError::invalid(
                format!("upstream.{key}"),
                "applies to a stdio upstream (upstream.command), not to upstream.url",
            ));
        }
        let http = HttpUpstreamConfig {
            url: url.clone(),
            headers: self.headers.clone(),
            oauth: self.oauth.clone(),
        };
        http.check()?;
        // Built by the gateway (it needs mcpgate's public URL), checked here.
        if let Some(identity) = &self.identity {
            super::identity::check_names(identity, &self.headers, self.oauth.is_some())?;
            if let Some(exchange) = &identity.exchange {
                self.check_exchange(exchange)?;
            }
        }
        Ok(http)
    }

    /// `upstream.identity.exchange`: the one source of the upstream's
    /// `Authorization`, and a request the provider can act on.
    fn check_exchange(&self, exchange: &TokenExchangeConfig) -> Result<(), ConfigError> {
        const KEY: &str = "upstream.identity.exchange";
        if self.oauth.is_some() {
            return Err(ConfigError::invalid(
                KEY,
                "set either upstream.identity.exchange or upstream.oauth, not both: each \
                 sets the upstream's Authorization",
            ));
        }
        if self
            .headers
            .keys()
            .any(|name| name.eq_ignore_ascii_case("authorization"))
        {
            return Err(ConfigError::invalid(
                KEY,
                "set either upstream.identity.exchange or an Authorization header in \
                 upstream.headers, not both: each sets the upstream's Authorization",
            ));
        }
        check_http_url("upstream.identity.exchange.token_url", &exchange.token_url)?;
        if exchange.client_id.is_empty() {
            return Err(ConfigError::invalid(
                "upstream.identity.exchange.client_id",
                "must not be empty",
            ));
        }
        for scope in &exchange.scopes {
            check_scope_token("upstream.identity.exchange.scopes", scope)?;
        }
        if exchange.max_entries == 0 {
            return Err(ConfigError::invalid(
                "upstream.identity.exchange.max_entries",
                "must be at least 1",
            ));
        }
        match exchange.grant {
            ExchangeGrant::TokenExchange => {
                if exchange.audience.is_none()
                    && exchange.resource.is_none()
                    && exchange.scopes.is_empty()
                {
                    return Err(ConfigError::invalid(
                        "upstream.identity.exchange.audience",
                        "set audience, resource or scopes: what the exchanged token is for",
                    ));
                }
                if exchange.requested_token_type.is_empty() {
                    return Err(ConfigError::invalid(
                        "upstream.identity.exchange.requested_token_type",
                        "must not be empty",
                    ));
                }
            }
            ExchangeGrant::EntraObo => {
                for (key, set) in [
                    ("audience", exchange.audience.is_some()),
                    ("resource", exchange.resource.is_some()),
                ] {
                    if set {
                        return Err(ConfigError::invalid(
                            format!("upstream.identity.exchange.{key}"),
                            "not used by grant: entra_obo; name the upstream API in scopes \
                             (api://<application id>/.default)",
                        ));
                    }
                }
                if exchange.scopes.is_empty() {
                    return Err(ConfigError::invalid(
                        "upstream.identity.exchange.scopes",
                        "required with grant: entra_obo: the upstream API's scope, \
                         api://<application id>/.default",
                    ));
                }
            }
        }
        Ok(())
    }

    fn stdio_kind(&self, command: &CommandLine) -> Result<StdioConfig, ConfigError> {
        if let Some(key) = self.credentials_key() {
            return Err(ConfigError::invalid(
                key,
                "applies to an HTTP upstream (upstream.url); give a stdio server its credentials in upstream.env",
            ));
        }
        let mut stdio = StdioConfig::new(command.clone());
        stdio.args.clone_from(&self.args);
        stdio.env.clone_from(&self.env);
        stdio.cwd.clone_from(&self.cwd);
        if let Some(idle) = self.idle_timeout {
            stdio.idle_timeout = idle;
        }
        if let Some(max) = self.max_children {
            stdio.max_children = max;
        }
        // One meaning for every kind: how long an answer may take to start.
        stdio.request_timeout = self.timeout;
        Ok(stdio)
    }

    /// `virtual` alone: the members bring their own upstreams.
    fn virtual_kind(&self, config: &VirtualServerConfig) -> Result<UpstreamSettings, ConfigError> {
        let other = [
            ("url", self.url.is_some()),
            ("command", self.command.is_some()),
            ("graphql", self.graphql.is_some()),
        ]
        .into_iter()
        .find_map(|(key, set)| set.then_some(key))
        .or_else(|| self.stdio_key())
        .or_else(|| {
            self.credentials_key()
                .map(|key| key.trim_start_matches("upstream."))
        });
        if let Some(key) = other {
            return Err(ConfigError::invalid(
                format!("upstream.{key}"),
                "cannot be set beside upstream.virtual: each member route has its own upstream",
            ));
        }
        config.check("upstream.virtual")?;
        Ok(UpstreamSettings {
            kind: UpstreamKind::Virtual(config.clone()),
            connect_timeout: self.connect_timeout,
            timeout: self.timeout,
        })
    }

    fn graphql_kind(
        &self,
        graphql: &GraphqlUpstreamConfig,
    ) -> Result<GraphqlUpstreamConfig, ConfigError> {
        if let Some(key) = self.stdio_key() {
            return Err(ConfigError::invalid(
                format!("upstream.{key}"),
                "applies to a stdio upstream (upstream.command), not to upstream.graphql",
            ));
        }
        if let Some(key) = self.credentials_key() {
            return Err(ConfigError::invalid(
                key,
                "applies to an HTTP MCP upstream (upstream.url); give the GraphQL API its \
                 credentials in upstream.graphql.headers",
            ));
        }
        graphql.check()?;
        Ok(graphql.clone())
    }
}

impl HttpUpstreamConfig {
    /// mcpgate's own OAuth client, then the static headers.
    fn check(&self) -> Result<(), ConfigError> {
        if let Some(oauth) = &self.oauth {
            check_http_url("upstream.oauth.token_url", &oauth.token_url)?;
            if oauth.client_id.is_empty() {
                return Err(ConfigError::invalid(
                    "upstream.oauth.client_id",
                    "must not be empty",
                ));
            }
            if self
                .headers
                .keys()
                .any(|name| name.eq_ignore_ascii_case("authorization"))
            {
                return Err(ConfigError::invalid(
                    "upstream.oauth",
                    "set either upstream.oauth or an Authorization header in upstream.headers, not both",
                ));
            }
            for scope in &oauth.scopes {
                check_scope_token("upstream.oauth.scopes", scope)?;
            }
        }
        check_headers("upstream.headers", &self.headers)
    }
}

impl UpstreamSettings {
    /// What the upstream is, for logs and messages: its URL, `stdio: <command>`, or
    /// `graphql: <endpoint>`.
    pub fn describe(&self) -> String {
        match &self.kind {
            UpstreamKind::Http(http) => http.url.to_string(),
            UpstreamKind::Stdio(stdio) => match &stdio.command {
                CommandLine::Program(program) => format!("stdio: {program}"),
                CommandLine::WithArgs(items) => format!("stdio: {}", items.join(" ")),
            },
            UpstreamKind::Graphql(graphql) => format!("graphql: {}", graphql.endpoint),
            UpstreamKind::Virtual(config) => format!(
                "virtual: {}",
                config
                    .members
                    .iter()
                    .map(|member| match &member.route {
                        Some(route) => format!("{}*={route}", member.prefix),
                        None => member.label(),
                    })
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
    }

    /// What a readiness probe connects to: the HTTP server or the GraphQL endpoint.
    /// None for a stdio server, which is started per session.
    pub fn probe_url(&self) -> Option<&Url> {
        match &self.kind {
            UpstreamKind::Http(http) => Some(&http.url),
            UpstreamKind::Graphql(graphql) => Some(&graphql.endpoint),
            UpstreamKind::Stdio(_) | UpstreamKind::Virtual(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolved(yaml: &str) -> UpstreamSettings {
        let config = crate::config::load_from_str(yaml).expect("parses");
        UpstreamSettings::from_section(config.upstream.as_ref()).expect("resolves")
    }

    #[test]
    fn each_kind_resolves_into_its_own_variant_with_only_its_keys() {
        let http = resolved(
            "upstream:\n  url: http://127.0.0.1:1/mcp\n  headers: { X-A: b }\n  timeout: 7s\n  connect_timeout: 2s\n",
        );
        assert_eq!(http.timeout, Duration::from_secs(7));
        assert_eq!(http.connect_timeout, Duration::from_secs(2));
        assert_eq!(http.describe(), "http://127.0.0.1:1/mcp");
        let UpstreamKind::Http(kind) = &http.kind else {
            panic!("{http:?}")
        };
        assert_eq!(kind.headers.get("X-A").map(Secret::expose), Some("b"));
        assert!(kind.oauth.is_none());

        let stdio = resolved(
            "upstream:\n  command: [node, server.js]\n  args: [--flag]\n  max_children: 3\n  timeout: 9s\n",
        );
        assert_eq!(stdio.describe(), "stdio: node server.js");
        assert_eq!(stdio.probe_url(), None);
        let UpstreamKind::Stdio(kind) = &stdio.kind else {
            panic!("{stdio:?}")
        };
        assert_eq!(kind.args, ["--flag"]);
        assert_eq!(kind.max_children, 3);
        // The shared `timeout` bounds a stdio answer too.
        assert_eq!(kind.request_timeout, Duration::from_secs(9));

        let graphql = resolved(
            "upstream:\n  graphql: { endpoint: http://127.0.0.1:1/graphql, schema: s.graphql, operations: ops }\n",
        );
        assert_eq!(graphql.describe(), "graphql: http://127.0.0.1:1/graphql");
        assert_eq!(
            graphql.probe_url().map(Url::as_str),
            Some("http://127.0.0.1:1/graphql")
        );
        assert!(matches!(graphql.kind, UpstreamKind::Graphql(_)));
    }

    #[test]
    fn identity_belongs_to_an_http_upstream() {
        for kind in [
            "command: [node, server.js]",
            "graphql: { endpoint: http://127.0.0.1:1/graphql, schema: s.graphql, operations: ops }",
        ] {
            let yaml = format!("upstream:\n  {kind}\n  identity: {{ assertion: {{}} }}\n");
            let config = crate::config::load_from_str(&yaml).expect("parses");
            match UpstreamSettings::from_section(config.upstream.as_ref()) {
                Err(ConfigError::Invalid { key, .. }) => assert_eq!(key, "upstream.identity"),
                other => panic!("{kind}: {other:?}"),
            }
        }
    }

    #[test]
    fn a_missing_section_names_upstream_url_as_a_missing_kind_does() {
        for section in [None, Some(&UpstreamConfig::default())] {
            match UpstreamSettings::from_section(section) {
                Err(ConfigError::Invalid { key, message }) => {
                    assert_eq!(key, "upstream.url");
                    assert!(message.starts_with("required: "), "{message}");
                }
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(UpstreamConfig::default().describe(), "-");
    }
}
