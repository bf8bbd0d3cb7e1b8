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
    let value = value
        .to_str()
        .map_err(|_| RequestProblem::MalformedHeader)?;
    parse_authorization(value)
}

/// `credentials = auth-scheme [ 1*SP token68 ]` (RFC 9110 §11.4), scheme case-insensitive.
fn parse_authorization(value: &str) -> Result<Credential<'_>, AuthError> {
    let (scheme, rest) = match value.split_once(' ') {
        Some((scheme, rest)) => (scheme, rest),
        None => (value, ""),
    };
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Ok(Credential::None);
    }
    let token = rest.trim_start_matches(' ');
    if is_b64token(token) {
        Ok(Credential::Bearer(token))
    } else {
        Err(RequestProblem::MalformedHeader.into())
    }
}

/// `b64token = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="` (RFC 6750 §2.1).
fn is_b64token(token: &str) -> bool {
    let body = token.trim_end_matches('=');
    !body.is_empty()
        && body.bytes().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'+' | b'/')
        })
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
    fn oversized_header_is_refused_before_parsing() {
        let big = format!("Bearer {}", "a".repeat(MAX_AUTHORIZATION_BYTES));
        assert_eq!(
            extract(&headers(&[&big]), None),
            Err(AuthError::InvalidRequest(RequestProblem::HeaderTooLarge))
        );
    }
}
