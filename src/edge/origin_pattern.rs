//! Reading browser origins and matching them against configured patterns. An
//! `Origin` header is parsed into its scheme, host and port (case, default ports
//! and IDN folded as browsers do); a pattern is an exact origin with at most a
//! `*` for the whole left-most host label and a `*` for the whole port.

use url::{Host, Url};

/// `text` as a tuple origin (`scheme://host[:port]`), or `None` when it is not one:
/// no host, a path (even `/`), a query, a fragment, credentials, or a scheme whose
/// origin is opaque (`null` to a browser, so never a name for one page).
pub(crate) fn parse(text: &str) -> Option<Url> {
    let (_, rest) = text.split_once("://")?;
    if rest.is_empty() || rest.contains(['/', '?', '#', '@', '\\']) {
        return None;
    }
    let url = Url::parse(text).ok()?;
    url.host()?;
    url.origin().is_tuple().then_some(url)
}

/// A configured origin: `https://app.example.com`, `https://*.example.com`,
/// `http://localhost:*`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OriginPattern {
    scheme: String,
    host: HostPattern,
    /// `None`: any port.
    port: Option<u16>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum HostPattern {
    /// The host as `Url` serialises it (lower case, punycode, `[v6]`).
    Exact(String),
    /// One whole label, then `.` and this domain.
    AnyLabelOf(String),
}

/// Why a configured origin pattern is refused (the config error's text).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatternError {
    #[error(
        "a bare * is refused: it would let every web page call the endpoint with a token, which \
         the Origin check exists to stop (DNS rebinding); list origins or use a pattern such as \
         https://*.example.com or http://localhost:*"
    )]
    /// `*` alone.
    Everything,
    #[error(
        "must be an origin scheme://host[:port] with an http or https scheme and no path \
         (e.g. https://app.example.com, https://*.example.com, http://localhost:*)"
    )]
    /// Not `http(s)://host[:port]`.
    NotAnOrigin,
    #[error(
        "a * may only stand for the whole left-most host label (https://*.example.com) or the \
         whole port (http://localhost:*)"
    )]
    /// A `*` inside a label, in a later label, or in part of the port.
    MisplacedWildcard,
    #[error(
        "a *. must be followed by a domain of at least two labels (https://*.example.com): \
         *.com or *.localhost would take in sites of anyone"
    )]
    /// `*.` before a single label.
    WildcardTooWide,
}

impl OriginPattern {
    /// Reads one configured entry.
    pub fn parse(text: &str) -> Result<Self, PatternError> {
        let text = text.trim();
        if text == "*" {
            return Err(PatternError::Everything);
        }
        let (scheme, rest) = text.split_once("://").ok_or(PatternError::NotAnOrigin)?;
        let scheme = scheme.to_ascii_lowercase();
        if scheme != "http" && scheme != "https" {
            return Err(PatternError::NotAnOrigin);
        }
        let (authority, any_port) = match rest.strip_suffix(":*") {
            Some(authority) => (authority, true),
            None => (rest, false),
        };
        let (authority, any_label) = match authority.strip_prefix("*.") {
            Some(authority) => (authority, true),
            None => (authority, false),
        };
        if authority.contains('*') {
            return Err(PatternError::MisplacedWildcard);
        }
        let url = parse(&format!("{scheme}://{authority}")).ok_or(PatternError::NotAnOrigin)?;
        let host = match (any_label, url.host()) {
            (false, Some(host)) => HostPattern::Exact(host.to_string()),
            (true, Some(Host::Domain(domain))) if domain.contains('.') => {
                HostPattern::AnyLabelOf(domain.to_owned())
            }
            (true, Some(Host::Domain(_))) => return Err(PatternError::WildcardTooWide),
            // `*.10.0.0.1` names nothing: addresses have no subdomains.
            (true, _) => return Err(PatternError::MisplacedWildcard),
            (false, None) => return Err(PatternError::NotAnOrigin),
        };
        if any_port && url.port().is_some() {
            return Err(PatternError::NotAnOrigin);
        }
        let port = if any_port {
            None
        } else {
            url.port_or_known_default()
        };
        Ok(Self { scheme, host, port })
    }

    /// Whether the origin a browser sent (already parsed) is one this pattern names.
    pub fn matches(&self, origin: &Url) -> bool {
        if origin.scheme() != self.scheme {
            return false;
        }
        if self
            .port
            .is_some_and(|port| origin.port_or_known_default() != Some(port))
        {
            return false;
        }
        match (&self.host, origin.host()) {
            (HostPattern::Exact(exact), Some(host)) => host.to_string() == *exact,
            (HostPattern::AnyLabelOf(domain), Some(Host::Domain(host))) => host
                .split_once('.')
                .is_some_and(|(label, rest)| !label.is_empty() && rest == domain),
            _ => false,
        }
    }
}

/// Whether `text` (an `Origin` header's value) is named by one of `patterns`.
pub fn any_matches(patterns: &[OriginPattern], text: &str) -> bool {
    parse(text).is_some_and(|origin| patterns.iter().any(|pattern| pattern.matches(&origin)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allows(pattern: &str, origin: &str) -> bool {
        any_matches(&[OriginPattern::parse(pattern).unwrap()], origin)
    }

    #[test]
    fn an_exact_origin_matches_itself_in_any_case_and_with_its_default_port() {
        let pattern = "https://app.example.com";
        for origin in [
            "https://app.example.com",
            "HTTPS://APP.Example.COM",
            "https://app.example.com:443",
        ] {
            assert!(allows(pattern, origin), "{origin}");
        }
        for origin in [
            "http://app.example.com",
            "https://app.example.com:8443",
            "https://app.example.com.",
            "https://app.example.com.evil.com",
            "https://evilapp.example.com",
            "https://x.app.example.com",
            "https://user@app.example.com",
            "https://user:pw@app.example.com",
            "https://app.example.com/",
            "https://app.example.com/path",
            "https://app.example.com?x",
            "https://app.example.com#x",
            "null",
            "",
            "app.example.com",
        ] {
            assert!(!allows(pattern, origin), "{origin}");
        }
    }

    #[test]
    fn a_wildcard_label_is_exactly_one_whole_label() {
        let pattern = "https://*.example.com";
        for origin in [
            "https://a.example.com",
            "https://A.EXAMPLE.COM",
            "https://a-b.example.com:443",
            "https://xn--bcher-kva.example.com",
            "https://bücher.example.com",
        ] {
            assert!(allows(pattern, origin), "{origin}");
        }
        for origin in [
            "https://example.com",
            "https://a.b.example.com",
            "https://example.com.evil.com",
            "https://a.example.com.evil.com",
            "https://evilexample.com",
            "https://a.evilexample.com",
            "https://a.example.com.",
            "https://.example.com",
            "http://a.example.com",
            "https://a.example.com:8443",
            "https://user@a.example.com",
            "https://a.example.com@evil.com",
            "https://evil.com\\@a.example.com",
            "null",
        ] {
            assert!(!allows(pattern, origin), "{origin}");
        }
    }

    #[test]
    fn a_wildcard_port_takes_any_port_of_that_host_and_scheme_only() {
        let pattern = "http://localhost:*";
        for origin in [
            "http://localhost",
            "http://localhost:80",
            "http://localhost:6274",
            "http://LOCALHOST:5173",
        ] {
            assert!(allows(pattern, origin), "{origin}");
        }
        for origin in [
            "https://localhost:6274",
            "http://localhost.evil.com:6274",
            "http://a.localhost:6274",
            "http://127.0.0.1:6274",
        ] {
            assert!(!allows(pattern, origin), "{origin}");
        }
        assert!(allows("https://*.example.com:*", "https://a.example.com:9"));
        assert!(allows("http://[::1]:*", "http://[::1]:6274"));
        assert!(!allows("http://[::1]:*", "http://[::2]:6274"));
    }

    #[test]
    fn an_idn_pattern_matches_its_punycode_form() {
        assert!(allows(
            "https://bücher.example",
            "https://xn--bcher-kva.example"
        ));
        assert!(allows(
            "https://*.bücher.example",
            "https://a.xn--bcher-kva.example"
        ));
    }

    #[test]
    fn bad_patterns_are_refused_with_their_reason() {
        assert_eq!(OriginPattern::parse("*"), Err(PatternError::Everything));
        for text in [
            "https://*",
            "https://*.*.example.com",
            "https://a.*.example.com",
            "https://*example.com",
            "https://app*.example.com",
            "http://localhost:6*",
            "https://*.10.0.0.1",
        ] {
            assert_eq!(
                OriginPattern::parse(text),
                Err(PatternError::MisplacedWildcard),
                "{text}"
            );
        }
        for text in ["https://*.com", "http://*.localhost"] {
            assert_eq!(
                OriginPattern::parse(text),
                Err(PatternError::WildcardTooWide),
                "{text}"
            );
        }
        for text in [
            "app.example.com",
            "ftp://app.example.com",
            "chrome-extension://abcdef",
            "https://app.example.com/",
            "https://user@app.example.com",
            "https://",
            "null",
            "https://localhost:6274:*",
        ] {
            assert_eq!(
                OriginPattern::parse(text),
                Err(PatternError::NotAnOrigin),
                "{text}"
            );
        }
    }
}
