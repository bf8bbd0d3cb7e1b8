//! Which `client_id` values are metadata document URLs, and which of those may be
//! fetched (draft-ietf-oauth-client-id-metadata-document §3): `https`, a host, a
//! path, no dot segments, no userinfo, no fragment, and here also no query (the
//! draft discourages one; a query would let one host mint endless client ids).
//! The URL must be written in its canonical form, so that the URL fetched and
//! the `client_id` compared with the document's are the same text.

use url::Url;

/// Longest `client_id` URL accepted.
const MAX_LENGTH: usize = 2000;

/// Why a URL `client_id` is not a usable document URL.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum ClientIdUrlError {
    #[error("the client_id URL is longer than {MAX_LENGTH} bytes")]
    TooLong,
    #[error("the client_id is not a valid URL")]
    NotAUrl,
    #[error("the client_id URL must use https")]
    NotHttps,
    #[error("the client_id URL must name a host")]
    NoHost,
    #[error("the client_id URL must have a path (such as /client.json)")]
    NoPath,
    #[error("the client_id URL must not contain `.` or `..` path segments")]
    DotSegment,
    #[error("the client_id URL must not contain user information")]
    UserInfo,
    #[error("the client_id URL must not contain a query")]
    Query,
    #[error("the client_id URL must not contain a fragment")]
    Fragment,
    #[error("the client_id URL is not in canonical form (lower-case host, no default port)")]
    NotCanonical,
}

/// Whether a `client_id` claims to be a document URL (then it is looked up as one
/// or not at all).
pub(crate) fn is_url(client_id: &str) -> bool {
    let lower = client_id.get(..8).unwrap_or(client_id).to_ascii_lowercase();
    lower.starts_with("https://") || lower.starts_with("http://")
}

/// Checks a document URL; `allow_http` is for tests against local servers.
pub(crate) fn check(client_id: &str, allow_http: bool) -> Result<Url, ClientIdUrlError> {
    if client_id.len() > MAX_LENGTH {
        return Err(ClientIdUrlError::TooLong);
    }
    // The parser drops or rewrites these; the raw text must not have them.
    if client_id.contains('#') {
        return Err(ClientIdUrlError::Fragment);
    }
    if client_id.contains('?') {
        return Err(ClientIdUrlError::Query);
    }
    if client_id
        .chars()
        .any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(ClientIdUrlError::NotAUrl);
    }
    let after_scheme = client_id.split_once("://").map_or("", |(_, rest)| rest);
    let authority = after_scheme
        .get(..after_scheme.find('/').unwrap_or(after_scheme.len()))
        .unwrap_or("");
    if authority.contains('@') {
        return Err(ClientIdUrlError::UserInfo);
    }
    let path = after_scheme.get(authority.len()..).unwrap_or("");
    if path.split('/').any(|segment| {
        matches!(
            segment.to_ascii_lowercase().as_str(),
            "." | ".." | "%2e" | "%2e%2e" | ".%2e" | "%2e."
        )
    }) {
        return Err(ClientIdUrlError::DotSegment);
    }
    let url = Url::parse(client_id).map_err(|_| ClientIdUrlError::NotAUrl)?;
    match url.scheme() {
        "https" => {}
        "http" if allow_http => {}
        _ => return Err(ClientIdUrlError::NotHttps),
    }
    if url.host().is_none() {
        return Err(ClientIdUrlError::NoHost);
    }
    if url.path().is_empty() || url.path() == "/" {
        return Err(ClientIdUrlError::NoPath);
    }
    if url.as_str() != client_id {
        return Err(ClientIdUrlError::NotCanonical);
    }
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn document_urls_are_recognised_by_scheme() {
        assert!(is_url("https://app.example/client.json"));
        assert!(is_url("HTTP://app.example/"));
        assert!(!is_url("tool"));
        assert!(!is_url("httpsfoo"));
    }

    #[test]
    fn good_urls_pass() {
        for url in [
            "https://app.example/client.json",
            "https://app.example:8443/oauth/client",
            "https://93.184.216.34/c",
        ] {
            assert_eq!(check(url, false).unwrap().as_str(), url);
        }
        assert!(check("http://127.0.0.1:4000/c.json", true).is_ok());
    }

    #[test]
    fn bad_urls_are_refused_for_their_reason() {
        use ClientIdUrlError::*;
        let cases = [
            ("http://app.example/c", NotHttps),
            ("ftp://app.example/c", NotHttps),
            ("https://app.example", NoPath),
            ("https://app.example/", NoPath),
            ("https://app.example/a/../c", DotSegment),
            ("https://app.example/./c", DotSegment),
            ("https://app.example/a/%2E%2E/c", DotSegment),
            ("https://user@app.example/c", UserInfo),
            ("https://u:p@app.example/c", UserInfo),
            ("https://@app.example/c", UserInfo),
            ("https://app.example/c?x=1", Query),
            ("https://app.example/c?", Query),
            ("https://app.example/c#x", Fragment),
            ("https://app.example/c#", Fragment),
            ("https://APP.example/c", NotCanonical),
            ("https://app.example:443/c", NotCanonical),
            ("https://app.example/c d", NotAUrl),
        ];
        for (url, expected) in cases {
            assert_eq!(check(url, false), Err(expected), "{url}");
        }
        let long = format!("https://app.example/{}", "a".repeat(MAX_LENGTH));
        assert_eq!(check(&long, false), Err(TooLong));
    }
}
