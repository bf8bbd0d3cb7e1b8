//! Browser-origin check (DNS rebinding, as the Streamable HTTP transport asks
//! servers to guard against): a request that carries an `Origin` must come from an
//! allowed one. Requests without `Origin` are not from a browser page and pass.
//! Origins that `server.cors` lets read answers may send requests too.

use std::collections::HashSet;

use axum::response::Response;
use http::{HeaderMap, StatusCode, header};
use url::Url;

use super::json::json_error;
use super::origin_pattern::{self, OriginPattern};

/// Origins allowed to call the MCP endpoint: exact ones in their serialised form
/// (`https://app.example.com`, default port left out) and the CORS patterns.
#[derive(Debug, Clone, Default)]
pub struct AllowedOrigins {
    exact: HashSet<String>,
    patterns: Vec<OriginPattern>,
}

impl AllowedOrigins {
    /// `public_url`'s own origin plus the configured ones. Each configured entry has
    /// been validated as an origin (see `gateway::validate`); one that is not parses
    /// to nothing and allows nothing. `patterns` are `server.cors`'s: a page allowed
    /// to read the answers is allowed to send the requests.
    pub fn new(public_url: &Url, configured: &[String], patterns: &[OriginPattern]) -> Self {
        let mut exact = HashSet::new();
        exact.insert(public_url.origin().ascii_serialization());
        for origin in configured {
            if let Some(origin) = normalize(origin) {
                exact.insert(origin);
            }
        }
        Self {
            exact,
            patterns: patterns.to_vec(),
        }
    }

    fn contains(&self, origin: &str) -> bool {
        normalize(origin).is_some_and(|origin| self.exact.contains(&origin))
            || origin_pattern::any_matches(&self.patterns, origin)
    }
}

/// `scheme://host[:port]` with case and default ports normalised, or `None` when
/// `text` is not an origin (no host, or a path, query or credentials, or a scheme
/// whose origin a browser sends as `null`).
pub fn normalize(text: &str) -> Option<String> {
    origin_pattern::parse(text).map(|url| url.origin().ascii_serialization())
}

/// A request from an origin that is not allowed.
#[derive(Debug)]
pub struct ForbiddenOrigin(String);

impl ForbiddenOrigin {
    pub(crate) fn reason(&self) -> String {
        format!("origin {} is not allowed", self.0)
    }

    pub(crate) fn response(&self) -> Response {
        json_error(StatusCode::FORBIDDEN, "forbidden_origin", &self.reason())
    }
}

/// Every `Origin` header the request carries must be allowed.
pub fn check(allowed: &AllowedOrigins, headers: &HeaderMap) -> Result<(), ForbiddenOrigin> {
    for value in headers.get_all(header::ORIGIN) {
        let origin = String::from_utf8_lossy(value.as_bytes());
        if !allowed.contains(&origin) {
            // Bounded: the value goes into a log line and an audit record.
            let shown: String = origin.chars().take(200).collect();
            return Err(ForbiddenOrigin(shown));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allowed() -> AllowedOrigins {
        let public = Url::parse("https://mcp.example.com/mcp").unwrap();
        let cors = [OriginPattern::parse("https://*.apps.example.com").unwrap()];
        AllowedOrigins::new(&public, &["http://localhost:6274".to_owned()], &cors)
    }

    fn with_origin(origin: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::ORIGIN, origin.parse().unwrap());
        headers
    }

    #[test]
    fn no_origin_passes() {
        assert!(check(&allowed(), &HeaderMap::new()).is_ok());
    }

    #[test]
    fn the_public_origin_and_listed_ones_pass_in_any_case_and_with_default_ports() {
        for origin in [
            "https://mcp.example.com",
            "HTTPS://MCP.EXAMPLE.COM:443",
            "http://localhost:6274",
            "https://a.apps.example.com",
        ] {
            assert!(check(&allowed(), &with_origin(origin)).is_ok(), "{origin}");
        }
    }

    #[test]
    fn other_origins_are_refused() {
        for origin in [
            "https://evil.example.com",
            "http://mcp.example.com",
            "https://mcp.example.com:8443",
            "http://localhost:6275",
            "null",
            "https://mcp.example.com.evil.com",
            "https://apps.example.com",
            "https://a.b.apps.example.com",
            "",
        ] {
            assert!(check(&allowed(), &with_origin(origin)).is_err(), "{origin}");
        }
    }

    #[test]
    fn a_second_origin_header_is_checked_too() {
        let mut headers = with_origin("https://mcp.example.com");
        headers.append(header::ORIGIN, "https://evil.example.com".parse().unwrap());
        assert!(check(&allowed(), &headers).is_err());
    }

    #[test]
    fn only_bare_origins_normalize() {
        assert_eq!(
            normalize("http://LOCALHOST:80").as_deref(),
            Some("http://localhost")
        );
        for text in [
            "https://a.example/path",
            "https://a.example/",
            "https://a.example?x",
            "https://user@a.example",
            "a.example",
            "*",
            // An opaque origin: allowing it would allow every `Origin: null`.
            "chrome-extension://abcdef",
        ] {
            assert_eq!(normalize(text), None, "{text}");
        }
    }
}
