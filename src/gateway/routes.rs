//! Every route of one configuration, and which of them a request is for. A file
//! without `routes:` is one route; the listener, the session store, the audit log
//! and the authorization-server façade are shared by all of them.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;

use super::{Gateway, validate};
use crate::authorization_server;
use crate::config::{Config, ConfigError, METADATA_WELL_KNOWN, RouteChoice};
use crate::mcp::session::SharedRedis;
use crate::upstream::TlsRoots;

/// The running state of every route, swapped whole on reload.
pub struct Gateways {
    /// The file as written (its `routes:` included).
    pub config: Arc<Config>,
    /// In file order; never empty.
    routes: Vec<Arc<Gateway>>,
    /// MCP endpoint path → the routes served on it (several only when their hosts
    /// differ).
    endpoints: HashMap<String, Vec<usize>>,
    /// RFC 9728 document path → the routes it describes.
    documents: HashMap<String, Vec<usize>>,
    /// The keys of every route's identity assertions, in one document.
    identity_jwks: Option<Bytes>,
}

/// What a request's path is on the listener.
pub enum Destination<'a> {
    /// A route's MCP endpoint.
    Endpoint(&'a Arc<Gateway>),
    /// A route's RFC 9728 document.
    Document(&'a Arc<Gateway>),
}

impl Gateways {
    /// Builds every route, fetching remote JWKS. Errors name the config key.
    pub async fn build(config: Config, idp_client: &reqwest::Client) -> Result<Self, ConfigError> {
        Self::rebuild(config, idp_client, None, None).await
    }

    /// As [`Self::build`], sharing what replicas share (the introspection cache) over
    /// `redis`, the session store's connection.
    pub async fn build_shared(
        config: Config,
        idp_client: &reqwest::Client,
        redis: Option<SharedRedis>,
    ) -> Result<Self, ConfigError> {
        Self::rebuild(config, idp_client, None, redis).await
    }

    /// Builds every route for a reload: a route whose name is still there keeps what
    /// its running gateway runs where its configuration did not change.
    pub async fn rebuild(
        config: Config,
        idp_client: &reqwest::Client,
        running: Option<&Gateways>,
        redis: Option<SharedRedis>,
    ) -> Result<Self, ConfigError> {
        let expanded = config.expand_routes()?;
        let mut facade = match expanded.first() {
            Some(first) => authorization_server::Settings::from_config(first, Vec::new())
                .map_err(|error| validate::locate(first, error))?,
            None => None,
        };
        // Servers first, virtual servers after: their members must be built.
        let is_virtual = |route: &Config| {
            route
                .upstream
                .as_ref()
                .is_some_and(|upstream| upstream.virtual_server.is_some())
        };
        let order: Vec<usize> = (0..expanded.len())
            .filter(|&index| !expanded.get(index).is_some_and(is_virtual))
            .chain((0..expanded.len()).filter(|&index| expanded.get(index).is_some_and(is_virtual)))
            .collect();
        // Read once for every route (a thousand routes would read them a thousand
        // times), and again by the next reload.
        let tls = TlsRoots::default();
        let mut built: Vec<Gateway> = Vec::with_capacity(expanded.len());
        for &index in &order {
            let Some(route) = expanded.get(index) else {
                continue;
            };
            let kept = running.and_then(|running| running.named(route.route_name()));
            let gateway = Gateway::build_route(
                route.clone(),
                idp_client,
                kept.map(|kept| &**kept),
                redis.clone(),
                (facade.as_ref(), &built),
                &tls,
            )
            .await
            .map_err(|error| validate::locate(route, error))?;
            built.push(gateway);
        }
        // Back in file order.
        let mut placed: Vec<(usize, Gateway)> = order.into_iter().zip(built).collect();
        placed.sort_by_key(|(index, _)| *index);
        let routes: Vec<Gateway> = placed.into_iter().map(|(_, gateway)| gateway).collect();
        if let Some(settings) = &mut facade {
            settings.serve(resources(&routes), scopes(&routes));
        }
        let facade = facade.map(Arc::new);
        let routes: Vec<Arc<Gateway>> = routes
            .into_iter()
            .map(|mut gateway| {
                gateway.authorization_server.clone_from(&facade);
                Arc::new(gateway)
            })
            .collect();
        let (endpoints, documents) = index(&routes, config.routes.is_empty())?;
        Ok(Self {
            identity_jwks: identity_jwks(&routes),
            config: Arc::new(config),
            routes,
            endpoints,
            documents,
        })
    }

    /// The first route: the one a file without `routes:` has, and the one whose
    /// listener-wide sections (`server:`, `audit:`, `session:`) every route shares.
    #[allow(clippy::indexing_slicing)] // Never empty: `rebuild` builds one route at least.
    pub fn first(&self) -> &Arc<Gateway> {
        &self.routes[0]
    }

    /// Every route, in file order.
    pub fn all(&self) -> &[Arc<Gateway>] {
        &self.routes
    }

    /// The route of that name (`None`: the unnamed route of a file without `routes:`).
    pub fn named(&self, name: Option<&str>) -> Option<&Arc<Gateway>> {
        self.routes
            .iter()
            .find(|gateway| gateway.config.route_name() == name)
    }

    /// The route a command names (`--route`): with `routes:`, one must be named;
    /// without, none may be.
    pub fn choose(&self, name: Option<&str>) -> Result<&Arc<Gateway>, RouteChoice> {
        RouteChoice::check(&self.config, name)?;
        self.named(name)
            .ok_or_else(|| RouteChoice::unknown(&self.config, name.unwrap_or_default()))
    }

    /// Retires what `next` leaves out: the routes it removed and those whose upstream
    /// it changed, so that their standing streams end.
    pub fn retire_left_out(&self, next: &Gateways) {
        for old in &self.routes {
            let kept = next
                .routes
                .iter()
                .any(|new| Arc::ptr_eq(&new.retirement, &old.retirement));
            if !kept {
                old.retirement.retire();
            }
        }
    }

    /// The public keys of the identity assertions the routes send upstream.
    pub fn identity_jwks(&self) -> Option<&Bytes> {
        self.identity_jwks.as_ref()
    }

    /// The authorization-server façade every route shares.
    pub(crate) fn facade(&self) -> Option<&Arc<authorization_server::Settings>> {
        self.first().authorization_server.as_ref()
    }

    /// What `path` is, given the request's host (`Host`, or the target's authority).
    pub fn destination(&self, host: Option<&str>, path: &str) -> Option<Destination<'_>> {
        if let Some(candidates) = self.endpoints.get(path) {
            return self.pick(candidates, host).map(Destination::Endpoint);
        }
        let candidates = self.documents.get(path)?;
        self.pick(candidates, host).map(Destination::Document)
    }

    /// Whether `path` is some route's MCP endpoint (CORS treats those apart).
    pub fn is_endpoint(&self, path: &str) -> bool {
        self.endpoints.contains_key(path)
    }

    /// Whether `path` is some route's RFC 9728 document.
    pub fn is_document(&self, path: &str) -> bool {
        self.documents.contains_key(path)
    }

    /// One route on a path is that route whatever the host (as a single endpoint
    /// always was: a proxy in front may rewrite `Host`); several are told apart by
    /// host, and a host none of them has finds nothing.
    fn pick(&self, candidates: &[usize], host: Option<&str>) -> Option<&Arc<Gateway>> {
        match candidates {
            [only] => self.routes.get(*only),
            _ => {
                let host = host?;
                candidates
                    .iter()
                    .filter_map(|index| self.routes.get(*index))
                    .find(|gateway| same_host(&gateway.config.public_url(), host))
            }
        }
    }
}

/// `host[:port]` against a URL's host and port (case-insensitive, a missing port
/// being the scheme's).
fn same_host(url: &url::Url, host: &str) -> bool {
    let Ok(authority) = host.parse::<http::uri::Authority>() else {
        return false;
    };
    // A `Host` without a port names the scheme's default port, not the route's.
    let default = match url.scheme() {
        "https" => 443,
        _ => 80,
    };
    let port = match authority.port_u16() {
        Some(port) => port,
        // Something after the host that is not a port.
        None if authority.as_str().len() > authority.host().len() => return false,
        None => default,
    };
    url.host_str()
        .is_some_and(|name| name.eq_ignore_ascii_case(authority.host()))
        && Some(port) == url.port_or_known_default()
}

/// One JWKS holding every route's assertion keys (a route's own document, as is,
/// when only one route signs assertions).
fn identity_jwks(routes: &[Arc<Gateway>]) -> Option<Bytes> {
    let documents: Vec<&Bytes> = routes
        .iter()
        .filter_map(|gateway| gateway.identity.as_ref()?.jwks())
        .collect();
    if let [only] = documents.as_slice() {
        return Some((*only).clone());
    }
    let keys: Vec<serde_json::Value> = documents
        .iter()
        .filter_map(|document| serde_json::from_slice::<serde_json::Value>(document).ok())
        .filter_map(|mut document| match document.get_mut("keys")?.take() {
            serde_json::Value::Array(keys) => Some(keys),
            _ => None,
        })
        .flatten()
        .collect();
    (!keys.is_empty()).then(|| Bytes::from(serde_json::json!({ "keys": keys }).to_string()))
}

fn resources(routes: &[Gateway]) -> Vec<String> {
    routes
        .iter()
        .map(|gateway| gateway.config.public_url().to_string())
        .collect()
}

/// The scopes the façade may issue: every route's, once each, sorted.
fn scopes(routes: &[Gateway]) -> Vec<String> {
    let mut scopes: Vec<String> = routes
        .iter()
        .flat_map(|gateway| gateway.policy.scopes_supported().iter().cloned())
        .collect();
    scopes.sort_unstable();
    scopes.dedup();
    scopes
}

type PathIndex = HashMap<String, Vec<usize>>;

/// Where each route is served. With `routes:`, a route's RFC 9728 document is at
/// its path-aware location only: the root location would describe one of them.
fn index(routes: &[Arc<Gateway>], single: bool) -> Result<(PathIndex, PathIndex), ConfigError> {
    let mut endpoints: PathIndex = HashMap::with_capacity(routes.len());
    let mut documents: PathIndex = HashMap::with_capacity(routes.len());
    for (index, gateway) in routes.iter().enumerate() {
        let config = &gateway.config;
        endpoints.entry(config.mcp_path()).or_default().push(index);
        for path in config.metadata_paths() {
            if !single && path == METADATA_WELL_KNOWN && config.mcp_path() != "/" {
                continue;
            }
            documents.entry(path).or_default().push(index);
        }
    }
    for path in endpoints.keys() {
        if let Some(&index) = documents.get(path).and_then(|owners| owners.first()) {
            return Err(ConfigError::invalid(
                format!("routes[{index}].public_url"),
                format!(
                    "its RFC 9728 document would be served at {path}, another route's MCP endpoint"
                ),
            ));
        }
    }
    Ok((endpoints, documents))
}

#[cfg(test)]
mod tests {
    use super::same_host;

    #[test]
    fn a_host_names_the_routes_host_and_port() {
        let url = url::Url::parse("http://a.test:8080/mcp").unwrap();
        assert!(same_host(&url, "a.test:8080"));
        assert!(same_host(&url, "A.TEST:8080"));
        // No port is port 80, which is not the route's.
        assert!(!same_host(&url, "a.test"));
        assert!(!same_host(&url, "a.test:8081"));
        assert!(!same_host(&url, "b.test:8080"));
        let default = url::Url::parse("https://a.test/mcp").unwrap();
        assert!(same_host(&default, "a.test"));
        assert!(same_host(&default, "a.test:443"));
        assert!(!same_host(&default, "a.test:80"));
        assert!(!same_host(&default, "a.test:x"));
    }
}
