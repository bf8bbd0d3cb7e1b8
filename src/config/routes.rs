//! `routes:`: several MCP endpoints on one listener, each with its own upstream,
//! resource URI and policy. Each route is expanded into a whole [`Config`]: the
//! file's sections, with the route's own in their place. Every part of the gateway
//! then reads one route the way it reads a single-upstream file, and a file without
//! `routes:` is the one route it always was.

use std::sync::Arc;

use serde::Deserialize;
use url::Url;

use super::{
    Config, ConfigError, LimitRuleConfig, PrincipalRuleConfig, ScopesConfig, UpstreamConfig,
    check_http_url,
};

/// One entry of `routes:`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// Names the route in audit records, traces, logs and `--route`.
    pub name: String,
    /// The route's resource URI: its path (and, where routes share a path, its host)
    /// selects the route; it is the audience of the route's tokens.
    pub public_url: Url,
    /// The route's MCP server (the shape of the top-level `upstream:`).
    pub upstream: UpstreamConfig,
    /// Advertised in the route's RFC 9728 document.
    pub resource_documentation: Option<Url>,
    /// Accepted `aud` values. Empty: the route's `public_url`.
    #[serde(default)]
    pub audiences: Vec<String>,
    /// Replaces the top-level `scopes:` for this route when set.
    pub scopes: Option<ScopesConfig>,
    /// Replaces the top-level `rules:` for this route when set.
    pub rules: Option<Vec<PrincipalRuleConfig>>,
    /// Replaces the top-level `limits.rules` for this route when set; the route's
    /// own rules count apart from every other route's.
    pub limits: Option<RouteLimitsConfig>,
}

/// `routes[].limits`: the route's own named rate limits.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteLimitsConfig {
    /// As `limits.rules`.
    #[serde(default)]
    pub rules: Vec<LimitRuleConfig>,
}

/// Which route an expanded configuration is, and which of its sections are the
/// route's own (error keys and limit counters follow them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteMark {
    /// `routes[].name`.
    pub name: Arc<str>,
    /// Its place in `routes:`.
    pub index: usize,
    /// The route sets `scopes:`.
    pub own_scopes: bool,
    /// The route sets `rules:`.
    pub own_rules: bool,
    /// The route sets `limits:`.
    pub own_limits: bool,
}

impl RouteMark {
    /// Writes an error of the expanded configuration under the key the operator
    /// wrote: `upstream.url` of the second route is `routes[1].upstream.url`.
    pub(crate) fn locate(&self, error: ConfigError) -> ConfigError {
        let ConfigError::Invalid { key, message } = error else {
            return error;
        };
        let at = format!("routes[{}]", self.index);
        let key = if let Some(rest) = key.strip_prefix("server.public_url") {
            format!("{at}.public_url{rest}")
        } else if let Some(rest) = key.strip_prefix("server.resource_documentation") {
            format!("{at}.resource_documentation{rest}")
        } else if let Some(rest) = key.strip_prefix("auth.oauth.audiences") {
            format!("{at}.audiences{rest}")
        } else if key.starts_with("upstream")
            || (self.own_scopes && key.starts_with("scopes"))
            || (self.own_rules && key.starts_with("rules"))
            || (self.own_limits && key.starts_with("limits.rules"))
        {
            format!("{at}.{key}")
        } else {
            key
        };
        ConfigError::Invalid { key, message }
    }
}

/// Top-level keys that name one endpoint, and so belong to each route instead.
const PER_ROUTE: [&str; 4] = [
    "upstream",
    "server.public_url",
    "server.resource_documentation",
    "auth.oauth.audiences",
];

impl Config {
    /// The configuration of each route, in file order: the file itself when it has
    /// no `routes:`. Checks what spans routes (names, endpoints, keys that belong
    /// to a route); each route's own sections are checked when it is built.
    pub fn expand_routes(&self) -> Result<Vec<Config>, ConfigError> {
        if self.routes.is_empty() {
            return Ok(vec![self.clone()]);
        }
        self.check_route_free()?;
        let mut base = self.clone();
        let routes = std::mem::take(&mut base.routes);
        let mut seen: Vec<(&str, String)> = Vec::with_capacity(routes.len());
        let mut expanded = Vec::with_capacity(routes.len());
        for (index, route) in self.routes.iter().enumerate() {
            let key = format!("routes[{index}]");
            check_name(&key, &route.name, &seen)?;
            check_http_url(&format!("{key}.public_url"), &route.public_url)?;
            let endpoint = endpoint(&route.public_url);
            if let Some((other, _)) = seen.iter().find(|(_, seen)| *seen == endpoint) {
                return Err(ConfigError::invalid(
                    format!("{key}.public_url"),
                    format!(
                        "the same endpoint as route {other:?}: each route needs its own path or host"
                    ),
                ));
            }
            seen.push((&route.name, endpoint));
            if route
                .upstream
                .identity
                .as_ref()
                .is_some_and(|identity| identity.connection.is_some())
            {
                return Err(ConfigError::invalid(
                    format!("{key}.upstream.identity.connection"),
                    "is not supported in a route yet: its sign-in pages are mounted once per \
                     listener",
                ));
            }
            let config = base.for_route(self, index, route);
            expanded.push(config.map_err(|error| locate_virtual(index, error))?);
        }
        drop(routes);
        Ok(expanded)
    }

    /// A top-level key that names one endpoint is an error beside `routes:`: it
    /// would silently apply to every route (one audience for all is how a token
    /// for one route would be accepted by another).
    fn check_route_free(&self) -> Result<(), ConfigError> {
        let set = [
            self.upstream.is_some(),
            self.server.public_url.is_some(),
            self.server.resource_documentation.is_some(),
            !self.auth.oauth.audiences.is_empty(),
        ];
        if let Some((key, _)) = PER_ROUTE.iter().zip(set).find(|(_, set)| *set) {
            return Err(ConfigError::invalid(
                *key,
                "cannot be set beside routes: set it on each route",
            ));
        }
        if self.server.metadata_path.is_some() {
            return Err(ConfigError::invalid(
                "server.metadata_path",
                "cannot be set beside routes: each route's RFC 9728 document is served at its \
                 path-aware location",
            ));
        }
        if let Some(index) = self
            .auth
            .oauth
            .jwks
            .iter()
            .position(|provider| !provider.audiences.is_empty())
        {
            return Err(ConfigError::invalid(
                format!("auth.oauth.jwks[{index}].audiences"),
                "cannot be set beside routes: a provider's audiences would be accepted on every \
                 route; set audiences on each route",
            ));
        }
        Ok(())
    }

    /// `self` is the file without its routes; `file` the whole file.
    fn for_route(
        &self,
        file: &Config,
        index: usize,
        route: &RouteConfig,
    ) -> Result<Config, ConfigError> {
        let mut config = self.clone();
        config.server.public_url = Some(route.public_url.clone());
        config
            .server
            .resource_documentation
            .clone_from(&route.resource_documentation);
        config.upstream = Some(route.upstream.clone());
        config.auth.oauth.audiences.clone_from(&route.audiences);
        if let Some(scopes) = &route.scopes {
            config.scopes = scopes.clone();
        }
        if let Some(rules) = &route.rules {
            config.rules.clone_from(rules);
        }
        if let Some(limits) = &route.limits {
            config.limits.rules.clone_from(&limits.rules);
        }
        if let Some(merged) = &route.upstream.virtual_server {
            merged.merge_policies(&mut config, file, "upstream.virtual")?;
        }
        config.route = Some(RouteMark {
            name: Arc::from(route.name.as_str()),
            index,
            own_scopes: route.scopes.is_some(),
            own_rules: route.rules.is_some(),
            own_limits: route.limits.is_some(),
        });
        Ok(config)
    }

    /// The route's name, `None` for a file without `routes:`.
    pub fn route_name(&self) -> Option<&str> {
        self.route.as_ref().map(|mark| &*mark.name)
    }
}

/// An error of a route's `upstream.virtual` under the route's key.
fn locate_virtual(index: usize, error: ConfigError) -> ConfigError {
    match error {
        ConfigError::Invalid { key, message } if key.starts_with("upstream") => {
            ConfigError::Invalid {
                key: format!("routes[{index}].{key}"),
                message,
            }
        }
        other => other,
    }
}

/// Letters, digits, `-` and `_`: a name is written into metrics labels, URLs of
/// the admin API and log lines as is.
fn check_name(key: &str, name: &str, seen: &[(&str, String)]) -> Result<(), ConfigError> {
    let valid = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if !valid {
        return Err(ConfigError::invalid(
            format!("{key}.name"),
            "must be 1 to 64 letters, digits, '-' or '_'",
        ));
    }
    if seen.iter().any(|(other, _)| *other == name) {
        return Err(ConfigError::invalid(
            format!("{key}.name"),
            format!("{name:?} names two routes"),
        ));
    }
    Ok(())
}

/// Why a command's `--route` does not name one route.
#[derive(Debug, thiserror::Error)]
pub enum RouteChoice {
    /// The file has `routes:` and the command named none.
    #[error("the configuration has routes: name one with --route ({0})")]
    Needed(String),
    /// No route of that name.
    #[error("no route is named {0:?} (routes: {1})")]
    Unknown(String, String),
    /// `--route` given for a file without `routes:`.
    #[error("--route names a route, and the configuration has no routes:")]
    NoRoutes,
}

impl RouteChoice {
    /// Whether naming `name` (or none) fits the file: routes need a name, a file
    /// without them takes none.
    pub(crate) fn check(config: &Config, name: Option<&str>) -> Result<(), Self> {
        match (name, config.routes.is_empty()) {
            (None, true) | (Some(_), false) => Ok(()),
            (Some(_), true) => Err(Self::NoRoutes),
            (None, false) => Err(Self::Needed(names(config))),
        }
    }

    pub(crate) fn unknown(config: &Config, name: &str) -> Self {
        Self::Unknown(name.to_owned(), names(config))
    }
}

fn names(config: &Config) -> String {
    config
        .routes
        .iter()
        .map(|route| route.name.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

impl Config {
    /// The expanded configuration of the route a command names (`--route`).
    pub fn choose_route(&self, name: Option<&str>) -> Result<Config, RouteChoiceError> {
        RouteChoice::check(self, name)?;
        let Some(name) = name else {
            return Ok(self.clone());
        };
        let index = self
            .routes
            .iter()
            .position(|route| route.name == name)
            .ok_or_else(|| RouteChoice::unknown(self, name))?;
        let mut routes = self.expand_routes()?;
        Ok(routes.swap_remove(index))
    }
}

/// Why `choose_route` has no configuration to give.
#[derive(Debug, thiserror::Error)]
pub enum RouteChoiceError {
    /// `--route` does not fit the file.
    #[error(transparent)]
    Choice(#[from] RouteChoice),
    /// The routes do not expand.
    #[error(transparent)]
    Config(#[from] ConfigError),
}

/// What selects a route: host (lowercase, with its port) and path.
fn endpoint(url: &Url) -> String {
    format!(
        "{}:{}{}",
        url.host_str().unwrap_or_default().to_ascii_lowercase(),
        url.port_or_known_default().unwrap_or_default(),
        url.path()
    )
}

#[cfg(test)]
mod tests {
    use crate::config::load_from_str;

    const TWO: &str = "
routes:
  - name: github
    public_url: https://gw.example.com/github/mcp
    upstream: {url: http://127.0.0.1:9001/mcp}
  - name: jira
    public_url: https://gw.example.com/jira/mcp
    upstream: {url: http://127.0.0.1:9002/mcp}
    scopes: {initialize: jira}
";

    fn expand(yaml: &str) -> Result<Vec<crate::config::Config>, String> {
        let config = load_from_str(yaml).map_err(|error| error.to_string())?;
        config.expand_routes().map_err(|error| error.to_string())
    }

    #[test]
    fn each_route_is_the_file_with_its_own_sections() {
        let routes = expand(TWO).unwrap();
        assert_eq!(routes.len(), 2);
        let jira = &routes[1];
        assert_eq!(jira.route_name(), Some("jira"));
        assert_eq!(
            jira.public_url().as_str(),
            "https://gw.example.com/jira/mcp"
        );
        assert_eq!(
            jira.upstream
                .as_ref()
                .and_then(|u| u.url.as_ref())
                .map(|u| u.as_str()),
            Some("http://127.0.0.1:9002/mcp")
        );
        assert!(jira.routes.is_empty());
        assert_eq!(
            jira.accepted_audiences(),
            ["https://gw.example.com/jira/mcp"]
        );
        assert_eq!(
            routes[0].accepted_audiences(),
            ["https://gw.example.com/github/mcp"]
        );
    }

    #[test]
    fn a_file_without_routes_is_one_unnamed_route() {
        let routes = expand("upstream: {url: http://127.0.0.1:9001/mcp}").unwrap();
        assert_eq!(routes.len(), 1);
        assert_eq!(routes[0].route_name(), None);
    }

    #[test]
    fn keys_that_name_one_endpoint_are_refused_beside_routes() {
        for (extra, key) in [
            ("upstream: {url: http://127.0.0.1:1/mcp}", "upstream:"),
            (
                "server: {public_url: https://a.example/mcp}",
                "server.public_url:",
            ),
            ("server: {metadata_path: /meta}", "server.metadata_path:"),
            (
                "auth: {oauth: {enabled: true, issuers: [https://i.example], audiences: [x]}}",
                "auth.oauth.audiences:",
            ),
        ] {
            let error = expand(&format!("{extra}\n{TWO}")).unwrap_err();
            assert!(error.starts_with(key), "{extra}: {error}");
        }
    }

    #[test]
    fn names_and_endpoints_are_unique_and_plain() {
        let same_name = TWO.replace("name: jira", "name: github");
        assert_eq!(
            expand(&same_name).unwrap_err(),
            "routes[1].name: \"github\" names two routes"
        );
        let bad_name = TWO.replace("name: jira", "name: \"ji ra\"");
        assert!(
            expand(&bad_name)
                .unwrap_err()
                .starts_with("routes[1].name:")
        );
        let same_endpoint = TWO.replace("/jira/mcp", "/github/mcp");
        assert!(
            expand(&same_endpoint)
                .unwrap_err()
                .starts_with("routes[1].public_url: the same endpoint as route \"github\"")
        );
        // Host case and the default port do not make another endpoint.
        let same_host = TWO.replace(
            "https://gw.example.com/jira/mcp",
            "https://GW.example.com:443/github/mcp",
        );
        assert!(expand(&same_host).is_err());
        // Another host with the same path is another endpoint.
        let other_host = TWO.replace(
            "https://gw.example.com/jira/mcp",
            "https://jira.example.com/github/mcp",
        );
        assert_eq!(expand(&other_host).unwrap().len(), 2);
    }

    #[test]
    fn an_error_in_a_route_names_the_route_key() {
        let routes = expand(TWO).unwrap();
        let mark = routes[1].route.clone().unwrap();
        let located = |key: &str| match mark.locate(crate::config::ConfigError::invalid(key, "x")) {
            crate::config::ConfigError::Invalid { key, .. } => key,
            other => other.to_string(),
        };
        assert_eq!(located("upstream.url"), "routes[1].upstream.url");
        assert_eq!(located("server.public_url"), "routes[1].public_url");
        assert_eq!(located("scopes.initialize"), "routes[1].scopes.initialize");
        // Inherited sections keep their own key.
        assert_eq!(located("rules[0].name"), "rules[0].name");
        assert_eq!(located("auth.oauth.issuers"), "auth.oauth.issuers");
    }
}
