//! CORS for browser MCP clients (`server.cors`): which origins may read the MCP
//! endpoint's answers, and the headers that say so. Built once per configuration;
//! `server::cors` applies it to requests.
//!
//! Never `Access-Control-Allow-Credentials`: MCP clients authenticate with a bearer
//! token the page holds, not with cookies, so a page needs no ambient credentials.

use std::time::Duration;

use axum::body::Body;
use axum::response::Response;
use http::header::{self, HeaderName};
use http::{HeaderMap, HeaderValue, StatusCode};

use super::origin_pattern::{OriginPattern, PatternError};
use crate::config::{ConfigError, CorsConfig};

/// Longest `max_age`: Chromium keeps a preflight at most two hours whatever it is told.
pub const MAX_AGE_LIMIT: Duration = Duration::from_secs(2 * 60 * 60);

/// What the MCP endpoint accepts from a page: its methods and the request headers
/// MCP clients send (the CORS-safelisted ones need no listing, but `Content-Type:
/// application/json` is not safelisted).
const MCP_METHODS: &str = "POST, GET, DELETE";
const MCP_HEADERS: [&str; 8] = [
    "Authorization",
    "Content-Type",
    "Accept",
    "Mcp-Session-Id",
    "Mcp-Protocol-Version",
    "Mcp-Method",
    "Mcp-Name",
    "Last-Event-ID",
];

/// The answer headers a page may read: the challenge, the session, and the rate
/// limits' advice.
const EXPOSED: &str = "WWW-Authenticate, Mcp-Session-Id, Mcp-Protocol-Version, Retry-After, RateLimit, RateLimit-Policy";

/// What public endpoints (metadata, the façade's token endpoint) accept: an OAuth
/// client's requests, with the header MCP SDKs add to discovery.
const PUBLIC_HEADERS: &str = "Authorization, Content-Type, Accept, Mcp-Protocol-Version";

/// `server.cors`, ready to answer with.
#[derive(Debug, Clone)]
pub struct Cors {
    origins: Vec<OriginPattern>,
    allow_headers: HeaderValue,
    max_age: HeaderValue,
}

impl Cors {
    /// Built from a checked configuration (see [`check`]); an entry that does not
    /// parse allows nothing.
    pub fn new(config: &CorsConfig) -> Self {
        let origins = config
            .allowed_origins
            .iter()
            .filter_map(|text| OriginPattern::parse(text).ok())
            .collect();
        let mut headers: Vec<&str> = MCP_HEADERS.to_vec();
        for extra in &config.allowed_headers {
            let extra = extra.trim();
            if !headers
                .iter()
                .any(|known| known.eq_ignore_ascii_case(extra))
            {
                headers.push(extra);
            }
        }
        let allow_headers = HeaderValue::from_str(&headers.join(", "))
            .unwrap_or_else(|_| HeaderValue::from_static("Authorization"));
        let max_age = HeaderValue::from(config.max_age.min(MAX_AGE_LIMIT).as_secs());
        Self {
            origins,
            allow_headers,
            max_age,
        }
    }

    /// The patterns, for the Origin check (a page that may read may send).
    pub fn origins(&self) -> &[OriginPattern] {
        &self.origins
    }

    /// The request's one `Origin`, when it is allowed here. Two `Origin` headers
    /// are no browser's: they get nothing.
    pub fn allowed_origin(&self, headers: &HeaderMap) -> Option<HeaderValue> {
        let mut values = headers.get_all(header::ORIGIN).iter();
        let origin = values.next()?;
        if values.next().is_some() {
            return None;
        }
        let text = origin.to_str().ok()?;
        super::origin_pattern::any_matches(&self.origins, text).then(|| origin.clone())
    }

    /// The `204` to a preflight from `origin`. It lists what the endpoint accepts
    /// whatever the preflight asked for: the browser compares, and refuses the
    /// request itself when it needs more (so the answer depends on `Origin` alone).
    pub fn preflight(&self, origin: HeaderValue) -> Response {
        let mut response = no_content();
        let headers = response.headers_mut();
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
        headers.insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static(MCP_METHODS),
        );
        headers.insert(
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            self.allow_headers.clone(),
        );
        headers.insert(header::ACCESS_CONTROL_MAX_AGE, self.max_age.clone());
        vary_origin(headers);
        response
    }

    /// What an answer to an allowed origin carries.
    pub fn allow(origin: HeaderValue, headers: &mut HeaderMap) {
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
        headers.insert(
            header::ACCESS_CONTROL_EXPOSE_HEADERS,
            HeaderValue::from_static(EXPOSED),
        );
    }

    /// The `204` to a preflight for a public endpoint, from any origin.
    pub fn public_preflight(&self, methods: &'static str) -> Response {
        let mut response = no_content();
        let headers = response.headers_mut();
        headers.insert(
            header::ACCESS_CONTROL_ALLOW_ORIGIN,
            HeaderValue::from_static("*"),
        );
        headers.insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static(methods),
        );
        headers.insert(
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            HeaderValue::from_static(PUBLIC_HEADERS),
        );
        headers.insert(header::ACCESS_CONTROL_MAX_AGE, self.max_age.clone());
        response
    }
}

/// A public endpoint's answer, readable by any page.
pub fn allow_any(headers: &mut HeaderMap) {
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    headers.insert(
        header::ACCESS_CONTROL_EXPOSE_HEADERS,
        HeaderValue::from_static("WWW-Authenticate"),
    );
}

/// Caches must keep answers apart by `Origin`: whether they carry CORS headers
/// depends on it.
pub fn vary_origin(headers: &mut HeaderMap) {
    let already = headers.get_all(header::VARY).iter().any(|value| {
        value.to_str().is_ok_and(|text| {
            text.split(',')
                .any(|name| name.trim().eq_ignore_ascii_case("origin") || name.trim() == "*")
        })
    });
    if !already {
        headers.append(header::VARY, HeaderValue::from_static("Origin"));
    }
}

/// Removes every `Access-Control-*` header: what the upstream says about origins
/// must not widen mcpgate's decision.
pub fn strip(headers: &mut HeaderMap) {
    let names: Vec<HeaderName> = headers
        .keys()
        .filter(|name| name.as_str().starts_with("access-control-"))
        .cloned()
        .collect();
    for name in names {
        headers.remove(name);
    }
}

/// Whether a request is a CORS preflight (RFC: `OPTIONS` with `Origin` and
/// `Access-Control-Request-Method`); any other `OPTIONS` is an ordinary request.
pub fn is_preflight(method: &http::Method, headers: &HeaderMap) -> bool {
    method == http::Method::OPTIONS
        && headers.contains_key(header::ORIGIN)
        && headers.contains_key(header::ACCESS_CONTROL_REQUEST_METHOD)
}

fn no_content() -> Response {
    let mut response = Response::new(Body::empty());
    *response.status_mut() = StatusCode::NO_CONTENT;
    response
}

/// `server.cors`'s rules; each failure names its key.
pub(crate) fn check(config: &CorsConfig) -> Result<(), ConfigError> {
    if config.allowed_origins.is_empty() {
        return Err(ConfigError::invalid(
            "server.cors.allowed_origins",
            "must list at least one origin (or leave server.cors out to turn CORS off)",
        ));
    }
    for (index, text) in config.allowed_origins.iter().enumerate() {
        OriginPattern::parse(text).map_err(|error: PatternError| {
            ConfigError::invalid(
                format!("server.cors.allowed_origins[{index}]"),
                error.to_string(),
            )
        })?;
    }
    for (index, name) in config.allowed_headers.iter().enumerate() {
        let name = name.trim();
        if name == "*" || HeaderName::from_bytes(name.as_bytes()).is_err() {
            return Err(ConfigError::invalid(
                format!("server.cors.allowed_headers[{index}]"),
                "must be a header name (e.g. X-Trace-Id); * is refused, list the headers",
            ));
        }
    }
    if config.max_age > MAX_AGE_LIMIT {
        return Err(ConfigError::invalid(
            "server.cors.max_age",
            "must be at most 2h (browsers keep a preflight no longer)",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(origins: &[&str], headers: &[&str]) -> CorsConfig {
        CorsConfig {
            allowed_origins: origins.iter().map(|o| (*o).to_owned()).collect(),
            allowed_headers: headers.iter().map(|h| (*h).to_owned()).collect(),
            max_age: Duration::from_secs(600),
        }
    }

    fn origin(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::ORIGIN, HeaderValue::from_str(value).unwrap());
        headers
    }

    #[test]
    fn the_preflight_names_the_origin_the_mcp_methods_headers_and_extras() {
        let cors = Cors::new(&config(
            &["http://localhost:*"],
            &["X-Trace-Id", "authorization"],
        ));
        let allowed = cors
            .allowed_origin(&origin("http://localhost:5173"))
            .unwrap();
        let response = cors.preflight(allowed);
        assert_eq!(response.status(), StatusCode::NO_CONTENT);
        let headers = response.headers();
        assert_eq!(
            headers[header::ACCESS_CONTROL_ALLOW_ORIGIN],
            "http://localhost:5173"
        );
        assert_eq!(
            headers[header::ACCESS_CONTROL_ALLOW_METHODS],
            "POST, GET, DELETE"
        );
        assert_eq!(
            headers[header::ACCESS_CONTROL_ALLOW_HEADERS],
            "Authorization, Content-Type, Accept, Mcp-Session-Id, Mcp-Protocol-Version, \
             Mcp-Method, Mcp-Name, Last-Event-ID, X-Trace-Id"
        );
        assert_eq!(headers[header::ACCESS_CONTROL_MAX_AGE], "600");
        assert_eq!(headers[header::VARY], "Origin");
        assert!(!headers.contains_key(header::ACCESS_CONTROL_ALLOW_CREDENTIALS));
    }

    #[test]
    fn only_one_allowed_origin_header_is_echoed() {
        let cors = Cors::new(&config(&["https://app.example.com"], &[]));
        assert!(cors.allowed_origin(&HeaderMap::new()).is_none());
        assert!(
            cors.allowed_origin(&origin("https://evil.example.com"))
                .is_none()
        );
        assert!(cors.allowed_origin(&origin("null")).is_none());
        let mut two = origin("https://app.example.com");
        two.append(
            header::ORIGIN,
            HeaderValue::from_static("https://app.example.com"),
        );
        assert!(cors.allowed_origin(&two).is_none());
        // Echoed as the browser sent it, which is what the browser compares.
        assert_eq!(
            cors.allowed_origin(&origin("https://app.example.com"))
                .unwrap(),
            "https://app.example.com"
        );
    }

    #[test]
    fn answers_expose_the_challenge_session_and_limit_headers() {
        let mut headers = HeaderMap::new();
        Cors::allow(HeaderValue::from_static("https://a.example"), &mut headers);
        assert_eq!(
            headers[header::ACCESS_CONTROL_EXPOSE_HEADERS],
            "WWW-Authenticate, Mcp-Session-Id, Mcp-Protocol-Version, Retry-After, RateLimit, \
             RateLimit-Policy"
        );
        assert_eq!(
            headers[header::ACCESS_CONTROL_ALLOW_ORIGIN],
            "https://a.example"
        );
    }

    #[test]
    fn vary_origin_is_added_once_beside_other_vary_names() {
        let mut headers = HeaderMap::new();
        headers.insert(header::VARY, HeaderValue::from_static("Accept-Encoding"));
        vary_origin(&mut headers);
        vary_origin(&mut headers);
        let all: Vec<_> = headers.get_all(header::VARY).iter().collect();
        assert_eq!(all, ["Accept-Encoding", "Origin"]);
    }

    #[test]
    fn strip_removes_every_access_control_header_and_nothing_else() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::ACCESS_CONTROL_ALLOW_ORIGIN,
            HeaderValue::from_static("*"),
        );
        headers.insert(
            header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
            HeaderValue::from_static("true"),
        );
        headers.insert("access-control-x", HeaderValue::from_static("1"));
        headers.insert("mcp-session-id", HeaderValue::from_static("s"));
        strip(&mut headers);
        assert_eq!(headers.len(), 1);
        assert!(headers.contains_key("mcp-session-id"));
    }

    #[test]
    fn a_preflight_is_options_with_origin_and_a_requested_method() {
        let mut headers = origin("https://a.example");
        assert!(!is_preflight(&http::Method::OPTIONS, &headers));
        headers.insert(
            header::ACCESS_CONTROL_REQUEST_METHOD,
            HeaderValue::from_static("POST"),
        );
        assert!(is_preflight(&http::Method::OPTIONS, &headers));
        assert!(!is_preflight(&http::Method::POST, &headers));
    }

    #[test]
    fn config_errors_name_the_key() {
        let cases = [
            (config(&[], &[]), "server.cors.allowed_origins"),
            (
                config(&["https://a.example", "*"], &[]),
                "server.cors.allowed_origins[1]",
            ),
            (
                config(&["https://a.example"], &["X-Ok", "bad header"]),
                "server.cors.allowed_headers[1]",
            ),
            (
                config(&["https://a.example"], &["*"]),
                "server.cors.allowed_headers[0]",
            ),
        ];
        for (config, key) in cases {
            let error = check(&config).unwrap_err().to_string();
            assert!(error.contains(key), "{error}");
        }
        let mut long = config(&["https://a.example"], &[]);
        long.max_age = Duration::from_secs(3 * 60 * 60);
        assert!(
            check(&long)
                .unwrap_err()
                .to_string()
                .contains("server.cors.max_age")
        );
        let error = check(&config(&["*"], &[])).unwrap_err().to_string();
        assert!(error.contains("DNS rebinding"), "{error}");
        assert!(
            check(&config(
                &["https://*.example.com", "http://localhost:*"],
                &[]
            ))
            .is_ok()
        );
    }
}
