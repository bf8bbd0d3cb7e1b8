//! Redirect URIs: which ones a client may register, and whether the one an
//! authorization request names is one of them.
//!
//! A redirect URI is where the authorization code goes, so a lax rule here hands
//! codes to an attacker. Registration accepts `https` URIs, `http` only on a
//! loopback host (RFC 8252 §7.3), and private-use schemes only when the operator
//! lists them; never userinfo or a fragment. Matching is exact string equality
//! (OAuth 2.1 §4.1.1), except that a loopback `http` URI matches on any port,
//! because native apps pick a free port at run time (RFC 8252 §7.3).

use std::net::{Ipv4Addr, Ipv6Addr};

use url::{Host, Url};

/// Longest redirect URI accepted; real ones are well under 200 bytes.
const MAX_LENGTH: usize = 2000;

/// Schemes that run code or read files where a browser lands; never allowed.
const FORBIDDEN_SCHEMES: &[&str] = &["javascript", "data", "file", "vbscript", "blob", "about"];

/// Why a redirect URI cannot be registered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum RedirectUriError {
    #[error("redirect URI is longer than {MAX_LENGTH} bytes")]
    TooLong,
    #[error("redirect URI is not an absolute URI")]
    NotAbsolute,
    #[error("redirect URI must not contain a fragment")]
    Fragment,
    #[error("redirect URI must not contain user information")]
    UserInfo,
    #[error("redirect URI with http must be on a loopback host (127.0.0.1, [::1], localhost)")]
    HttpNotLoopback,
    #[error("redirect URI scheme `{0}` is not allowed")]
    Scheme(String),
}

/// Checks a redirect URI a client wants to register. `custom_schemes` are the
/// private-use schemes the operator allows (lower case).
pub(crate) fn check_registrable(
    uri: &str,
    custom_schemes: &[String],
) -> Result<(), RedirectUriError> {
    if uri.len() > MAX_LENGTH {
        return Err(RedirectUriError::TooLong);
    }
    // The parser forgives what a registration must not contain: check the raw text.
    if uri.contains('#') {
        return Err(RedirectUriError::Fragment);
    }
    if uri.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(RedirectUriError::NotAbsolute);
    }
    let parsed = Url::parse(uri).map_err(|_| RedirectUriError::NotAbsolute)?;
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(RedirectUriError::UserInfo);
    }
    // `url` keeps an `@` with nothing before it out of `username()`.
    if authority(uri).is_some_and(|authority| authority.contains('@')) {
        return Err(RedirectUriError::UserInfo);
    }
    match parsed.scheme() {
        "https" => {
            if parsed.host().is_none() {
                return Err(RedirectUriError::NotAbsolute);
            }
            Ok(())
        }
        "http" => {
            if is_loopback(&parsed) {
                Ok(())
            } else {
                Err(RedirectUriError::HttpNotLoopback)
            }
        }
        scheme if FORBIDDEN_SCHEMES.contains(&scheme) => {
            Err(RedirectUriError::Scheme(scheme.to_owned()))
        }
        scheme if custom_schemes.iter().any(|allowed| allowed == scheme) => Ok(()),
        scheme => Err(RedirectUriError::Scheme(scheme.to_owned())),
    }
}

/// The registered URI `requested` stands for, if any: an exact match, or a
/// loopback `http` URI equal in everything but the port.
pub(crate) fn find_match<'a>(registered: &'a [String], requested: &str) -> Option<&'a str> {
    if let Some(exact) = registered.iter().find(|uri| uri.as_str() == requested) {
        return Some(exact);
    }
    let requested_url = loopback_url(requested)?;
    registered
        .iter()
        .find(|uri| {
            loopback_url(uri).is_some_and(|registered_url| {
                registered_url.host() == requested_url.host()
                    && registered_url.path() == requested_url.path()
                    && registered_url.query() == requested_url.query()
            })
        })
        .map(String::as_str)
}

/// `uri` parsed, if it is a registrable `http` URI on a loopback host.
fn loopback_url(uri: &str) -> Option<Url> {
    check_registrable(uri, &[]).ok()?;
    let parsed = Url::parse(uri).ok()?;
    (parsed.scheme() == "http" && is_loopback(&parsed)).then_some(parsed)
}

/// `127.0.0.0/8`, `[::1]` or the name `localhost` (RFC 8252 §8.3 prefers the IP
/// literals; clients in the field use both). `127.0.0.1.evil.example` is a domain.
fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(Host::Ipv4(ip)) => ip.is_loopback(),
        Some(Host::Ipv6(ip)) => ip == Ipv6Addr::LOCALHOST,
        Some(Host::Domain(name)) => name.eq_ignore_ascii_case("localhost"),
        None => false,
    }
}

/// The text between `//` and the next `/`, `?` or end, as written.
fn authority(uri: &str) -> Option<&str> {
    let rest = uri.split_once("://")?.1;
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    rest.get(..end)
}

/// The host a redirect URI sends the browser to, for the consent page.
pub(crate) fn host_of(uri: &str) -> Option<String> {
    let parsed = Url::parse(uri).ok()?;
    match parsed.host()? {
        Host::Domain(name) => Some(name.to_ascii_lowercase()),
        Host::Ipv4(ip) => Some(ip.to_string()),
        Host::Ipv6(ip) => Some(format!("[{ip}]")),
    }
}

/// Whether a host is loopback (for the consent page's "local app" wording).
pub(crate) fn is_loopback_host(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host.parse::<Ipv4Addr>().is_ok_and(|ip| ip.is_loopback())
        || host == "[::1]"
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(uri: &str) {
        assert_eq!(
            check_registrable(uri, &["cursor".to_owned()]),
            Ok(()),
            "{uri}"
        );
    }

    fn refused(uri: &str) -> RedirectUriError {
        match check_registrable(uri, &["cursor".to_owned()]) {
            Err(error) => error,
            Ok(()) => panic!("{uri} was accepted"),
        }
    }

    #[test]
    fn registrable_uris() {
        ok("https://client.example/callback");
        ok("https://client.example/cb?tenant=a");
        ok("http://127.0.0.1/callback");
        ok("http://127.0.0.1:33418/");
        ok("http://[::1]:8080/cb");
        ok("http://localhost:6274/oauth/callback");
        ok("cursor://anysphere.cursor-retrieval/oauth/callback");
    }

    #[test]
    fn refused_uris() {
        assert_eq!(
            refused("https://client.example/cb#frag"),
            RedirectUriError::Fragment
        );
        assert_eq!(
            refused("https://client.example/cb#"),
            RedirectUriError::Fragment
        );
        assert_eq!(
            refused("https://user@client.example/cb"),
            RedirectUriError::UserInfo
        );
        assert_eq!(
            refused("https://u:p@client.example/cb"),
            RedirectUriError::UserInfo
        );
        assert_eq!(
            refused("https://@client.example/cb"),
            RedirectUriError::UserInfo
        );
        assert_eq!(
            refused("http://client.example/cb"),
            RedirectUriError::HttpNotLoopback
        );
        assert_eq!(
            refused("http://127.0.0.1.evil.example/cb"),
            RedirectUriError::HttpNotLoopback
        );
        assert_eq!(
            refused("http://localhost.evil.example/"),
            RedirectUriError::HttpNotLoopback
        );
        assert_eq!(refused("http://[::2]/"), RedirectUriError::HttpNotLoopback);
        assert_eq!(refused("/relative/cb"), RedirectUriError::NotAbsolute);
        assert_eq!(
            refused("https://client.example/c b"),
            RedirectUriError::NotAbsolute
        );
        assert_eq!(
            refused("javascript:alert(1)"),
            RedirectUriError::Scheme("javascript".into())
        );
        assert_eq!(
            refused("data:text/html,x"),
            RedirectUriError::Scheme("data".into())
        );
        assert_eq!(
            refused("vscode://cb"),
            RedirectUriError::Scheme("vscode".into())
        );
        assert_eq!(
            refused(&format!("https://a.example/{}", "a".repeat(MAX_LENGTH))),
            RedirectUriError::TooLong
        );
    }

    #[test]
    fn forbidden_schemes_stay_forbidden_even_when_listed() {
        let listed = vec!["javascript".to_owned()];
        assert!(check_registrable("javascript:alert(1)", &listed).is_err());
    }

    #[test]
    fn matching_is_exact_except_loopback_ports() {
        let registered = vec![
            "https://client.example/callback".to_owned(),
            "http://127.0.0.1/cb".to_owned(),
            "http://localhost:3000/oauth".to_owned(),
        ];
        assert_eq!(
            find_match(&registered, "https://client.example/callback"),
            Some("https://client.example/callback")
        );
        for other in [
            "https://client.example/callback/",
            "https://client.example/callback?x=1",
            "https://client.example/Callback",
            "https://CLIENT.example/callback",
            "https://client.example:443/callback",
            "https://client.example/callback#x",
            "https://client.example.evil/callback",
            "https://evil.example/callback",
            "http://client.example/callback",
            "http://127.0.0.1.evil.example/cb",
            "http://127.0.0.1:9/cb/../cb2",
            "http://127.0.0.1:9/other",
            "http://user@127.0.0.1:9/cb",
            "http://[::1]:9/cb",
            "http://localhost:3000/oauth#x",
        ] {
            assert_eq!(find_match(&registered, other), None, "{other}");
        }
        assert_eq!(
            find_match(&registered, "http://127.0.0.1:53124/cb"),
            Some("http://127.0.0.1/cb")
        );
        assert_eq!(
            find_match(&registered, "http://localhost:49152/oauth"),
            Some("http://localhost:3000/oauth")
        );
    }

    #[test]
    fn hosts_for_the_consent_page() {
        assert_eq!(
            host_of("https://Client.Example/cb").as_deref(),
            Some("client.example")
        );
        assert_eq!(host_of("http://[::1]:9/").as_deref(), Some("[::1]"));
        assert!(is_loopback_host("127.0.0.1"));
        assert!(is_loopback_host("localhost"));
        assert!(!is_loopback_host("127.0.0.1.evil.example"));
    }
}
