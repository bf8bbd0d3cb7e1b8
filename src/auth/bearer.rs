//! Reading the bearer token from a request (RFC 6750 §2). Only the `Authorization`
//! header is a credential; a token in the query string is refused outright (§2.3 is a
//! MAY that leaks tokens into logs and histories).

use http::HeaderMap;
use http::header::AUTHORIZATION;

use super::error::{AuthError, RequestProblem};

/// Largest `Authorization` value read; larger ones are refused before any parsing.
pub const MAX_AUTHORIZATION_BYTES: usize = 8 * 1024;

/// The outcome of reading a request's credentials.
#[derive(Debug, PartialEq, Eq)]
pub enum Credential<'a> {
    /// No `Authorization` header, or one of another scheme (`Basic`, …): the client
    /// has not presented a bearer token, so it gets the plain challenge.
    None,
    /// The token68 after `Bearer `, borrowed from the header; not yet verified.
    Bearer(&'a str),
}

/// Reads the bearer token from the headers and refuses one in the query string.
pub fn extract<'a>(
    headers: &'a HeaderMap,
    query: Option<&str>,
) -> Result<Credential<'a>, AuthError> {
    if query.is_some_and(query_has_token) {
        return Err(RequestProblem::TokenInQuery.into());
    }
    let mut values = headers.get_all(AUTHORIZATION).iter();
    let Some(value) = values.next() else {
        return Ok(Credential::None);
    };
    if values.next().is_some() {
        return Err(RequestProblem::DuplicateAuthorization.into());
    }
    if value.len() > MAX_AUTHORIZATION_BYTES {
        return Err(RequestProblem::HeaderTooLarge.into());
    }
    parse_authorization(value.as_bytes())
}

/// `credentials = auth-scheme [ 1*SP token68 ]` (RFC 9110 §11.4), scheme case-insensitive.
/// Read as bytes in one pass over the token: this runs on every request, and checking
/// the header as text first and the token's alphabet second read each byte twice.
fn parse_authorization(value: &[u8]) -> Result<Credential<'_>, AuthError> {
    let (scheme, rest) = match value.iter().position(|&byte| byte == b' ') {
        Some(space) => (
            value.get(..space).unwrap_or_default(),
            value.get(space + 1..).unwrap_or_default(),
        ),
        None => (value, &[][..]),
    };
    if !scheme.eq_ignore_ascii_case(b"bearer") {
        // Another scheme is not ours to judge, but a header no one can read as text
        // is malformed whatever its scheme.
        return match value.iter().all(|&byte| is_visible(byte)) {
            true => Ok(Credential::None),
            false => Err(RequestProblem::MalformedHeader.into()),
        };
    }
    let leading_spaces = rest.iter().take_while(|&&byte| byte == b' ').count();
    let token = rest.get(leading_spaces..).unwrap_or_default();
    if !is_b64token(token) {
        return Err(RequestProblem::MalformedHeader.into());
    }
    // A b64token is ASCII, so this cannot fail; it is checked rather than assumed.
    std::str::from_utf8(token)
        .map(Credential::Bearer)
        .map_err(|_| RequestProblem::MalformedHeader.into())
}

/// What `HeaderValue::to_str` accepts: visible ASCII, space and tab.
fn is_visible(byte: u8) -> bool {
    byte == b'\t' || (b' '..0x7f).contains(&byte)
}

/// The characters of a b64token's body.
// Built at compile time: an index out of range would fail the build, not a request.
#[allow(clippy::indexing_slicing)]
static B64TOKEN: [bool; 256] = {
    let mut table = [false; 256];
    let mut byte = 0;
    while byte < 256 {
        table[byte] = (byte as u8).is_ascii_alphanumeric()
            || matches!(byte as u8, b'-' | b'.' | b'_' | b'~' | b'+' | b'/');
        byte += 1;
    }
    table
};

/// `b64token = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="` (RFC 6750 §2.1).
fn is_b64token(token: &[u8]) -> bool {
    let padding = token.iter().rev().take_while(|&&byte| byte == b'=').count();
    let body = token.get(..token.len() - padding).unwrap_or_default();
    // A byte always finds its entry in a 256-entry table; the default is never taken.
    !body.is_empty()
        && body
            .iter()
            .all(|&byte| B64TOKEN.get(usize::from(byte)).copied().unwrap_or(false))
}

fn query_has_token(query: &str) -> bool {
    url::form_urlencoded::parse(query.as_bytes()).any(|(name, _)| name == "access_token")
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(values: &[&str]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for value in values {
            map.append(AUTHORIZATION, HeaderValue::from_str(value).unwrap());
        }
        map
    }

    #[test]
    fn rfc6750_2_1_reads_bearer_with_any_scheme_case() {
        for value in ["Bearer abc.def-_~+/==", "bearer abc", "BEARER  abc"] {
            let map = headers(&[value]);
            assert!(
                matches!(extract(&map, None), Ok(Credential::Bearer(_))),
                "{value}"
            );
        }
        let map = headers(&["Bearer abc.def"]);
        assert_eq!(extract(&map, None), Ok(Credential::Bearer("abc.def")));
    }

    #[test]
    fn no_header_or_other_scheme_is_no_credential() {
        assert_eq!(extract(&HeaderMap::new(), None), Ok(Credential::None));
        assert_eq!(
            extract(&headers(&["Basic dXNlcjpwdw=="]), None),
            Ok(Credential::None)
        );
    }

    #[test]
    fn rfc6750_3_1_two_headers_are_invalid_request() {
        let map = headers(&["Bearer a", "Bearer b"]);
        assert_eq!(
            extract(&map, None),
            Err(AuthError::InvalidRequest(
                RequestProblem::DuplicateAuthorization
            ))
        );
    }

    #[test]
    fn rfc6750_2_1_refuses_bad_token_syntax() {
        for value in [
            "Bearer",
            "Bearer ",
            "Bearer a b",
            "Bearer a,b",
            "Bearer =abc",
            "Bearer a\"b",
        ] {
            let map = headers(&[value]);
            assert_eq!(
                extract(&map, None),
                Err(AuthError::InvalidRequest(RequestProblem::MalformedHeader)),
                "{value}"
            );
        }
    }

    #[test]
    fn rfc6750_2_3_query_token_is_refused_even_with_a_header() {
        assert_eq!(
            extract(&HeaderMap::new(), Some("x=1&access_token=abc")),
            Err(AuthError::InvalidRequest(RequestProblem::TokenInQuery))
        );
        assert_eq!(
            extract(&headers(&["Bearer abc"]), Some("access_token=abc")),
            Err(AuthError::InvalidRequest(RequestProblem::TokenInQuery))
        );
        assert_eq!(
            extract(&HeaderMap::new(), Some("session=1")),
            Ok(Credential::None)
        );
    }

    #[test]
    fn unreadable_headers_are_malformed_whatever_the_scheme() {
        for value in [&b"Bearer ab\xc3\xa9"[..], b"Basic \xff", b"Digest a\x80"] {
            let mut map = HeaderMap::new();
            map.append(AUTHORIZATION, HeaderValue::from_bytes(value).unwrap());
            assert_eq!(
                extract(&map, None),
                Err(AuthError::InvalidRequest(RequestProblem::MalformedHeader)),
                "{value:?}"
            );
        }
        // Tabs are readable, and a tab is not the separator.
        assert_eq!(
            extract(&headers(&["Bearer\tabc"]), None),
            Ok(Credential::None)
        );
    }

    #[test]
    fn padding_only_trails_the_token() {
        assert_eq!(
            extract(&headers(&["Bearer ab=="]), None),
            Ok(Credential::Bearer("ab=="))
        );
        for value in ["Bearer a=b", "Bearer ==", "Bearer a==b=="] {
            assert_eq!(
                extract(&headers(&[value]), None),
                Err(AuthError::InvalidRequest(RequestProblem::MalformedHeader)),
                "{value}"
            );
        }
    }

    #[test]
    fn oversized_header_is_refused_before_parsing() {
        let big = format!("Bearer {}", "a".repeat(MAX_AUTHORIZATION_BYTES));
        assert_eq!(
            extract(&headers(&[&big]), None),
            Err(AuthError::InvalidRequest(RequestProblem::HeaderTooLarge))
        );
    }
}
