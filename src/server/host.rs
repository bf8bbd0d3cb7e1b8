//! The `Host` header, checked before anything else on every route (RFC 9112 §3.2):
//! an HTTP/1.1 request without one, a request with more than one (identical or
//! not), a value that is not a host and port, or one that names another authority
//! than the request target (absolute-form, or HTTP/2's `:authority`) is answered
//! 400 and goes nowhere. Intermediaries that pick different ones of two hosts are
//! how requests get routed, cached or logged as something they are not.

use std::str::FromStr;

use axum::extract::Request;
use axum::response::Response;
use http::uri::{Authority, Scheme};
use http::{HeaderMap, HeaderValue, StatusCode, Uri, Version, header};

use super::AppState;
use super::observe::Observation;
use crate::edge::json::json_error;

/// Why the `Host` header was refused: 400, before any other check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HostProblem {
    /// No `Host`: on HTTP/1, always; on HTTP/2 and later, when `:authority` is absent too.
    #[error("the request has no Host header")]
    Missing,
    /// Two or more `Host` headers, identical or not.
    #[error("the request has more than one Host header")]
    Repeated,
    /// Not a `host[:port]` (user information or an empty part included).
    #[error("the Host header is not a valid host[:port]")]
    Invalid,
    /// Names another authority than the request target (absolute-form or `:authority`).
    #[error("the Host header names another authority than the request target")]
    Mismatch,
}

/// Checks the request's `Host` against RFC 9112 §3.2 and RFC 9113 §8.3.1.
pub fn check(version: Version, uri: &Uri, headers: &HeaderMap) -> Result<(), HostProblem> {
    let mut values = headers.get_all(header::HOST).iter();
    let Some(value) = values.next() else {
        // HTTP/2 and later carry the authority in `:authority` instead. HTTP/1.0
        // did not require Host, but no MCP client speaks it: one rule for HTTP/1.
        return match (version, uri.authority()) {
            (Version::HTTP_2 | Version::HTTP_3, Some(_)) => Ok(()),
            _ => Err(HostProblem::Missing),
        };
    };
    if values.next().is_some() {
        return Err(HostProblem::Repeated);
    }
    let host = parse(value).ok_or(HostProblem::Invalid)?;
    match uri.authority() {
        Some(target) if !same_authority(&host, target, uri.scheme()) => Err(HostProblem::Mismatch),
        _ => Ok(()),
    }
}

/// The host a request names: its `Host`, or HTTP/2's `:authority`. Only read
/// after [`check`] passed, so the two agree when both are present.
pub(crate) fn of(request: &Request) -> Option<&str> {
    match request.headers().get(header::HOST) {
        Some(value) => value.to_str().ok(),
        None => request.uri().authority().map(Authority::as_str),
    }
}

/// `host[:port]`: no user information, nothing empty.
fn parse(value: &HeaderValue) -> Option<Authority> {
    let text = value.to_str().ok()?;
    if text.is_empty() || text.contains('@') {
        return None;
    }
    let authority = Authority::from_str(text).ok()?;
    // `http` takes any characters after the colon; a port is digits (RFC 3986).
    let port = text.get(authority.host().len()..).unwrap_or_default();
    let port_ok = match port.strip_prefix(':') {
        None => port.is_empty(),
        Some("") => true,
        Some(digits) => digits.bytes().all(|b| b.is_ascii_digit()) && digits.parse::<u16>().is_ok(),
    };
    (!authority.host().is_empty() && port_ok).then_some(authority)
}

/// Same host (case-insensitive) and same port, a missing port being the scheme's.
fn same_authority(host: &Authority, target: &Authority, scheme: Option<&Scheme>) -> bool {
    let default = match scheme.map(Scheme::as_str) {
        Some("http") => Some(80),
        Some("https") => Some(443),
        _ => None,
    };
    host.host().eq_ignore_ascii_case(target.host())
        && host.port_u16().or(default) == target.port_u16().or(default)
}

/// Middleware for every route, metadata and the fallback included.
/// The `400` for a request whose `Host` is refused (see [`super::front`]).
pub(super) async fn refuse(state: &AppState, request: Request, problem: HostProblem) -> Response {
    let reason = problem.to_string();
    tracing::info!(path = request.uri().path(), "request refused: {reason}");
    let mut observation = Observation::start(state, request.method(), request.headers());
    observation.refused(reason.clone());
    let mut response = json_error(StatusCode::BAD_REQUEST, "invalid_request", &reason);
    // Whoever sent two hosts may be probing how the hops frame requests: the
    // connection is not trusted with another one.
    if request.version() < Version::HTTP_2 {
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    observation.finish(state, None, response).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(hosts: &[&str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for host in hosts {
            headers.append(header::HOST, HeaderValue::from_str(host).unwrap());
        }
        headers
    }

    fn origin_form() -> Uri {
        Uri::from_static("/mcp")
    }

    #[test]
    fn http1_needs_exactly_one_valid_host() {
        let v11 = Version::HTTP_11;
        assert_eq!(
            check(v11, &origin_form(), &headers(&["mcp.example.com"])),
            Ok(())
        );
        assert_eq!(
            check(v11, &origin_form(), &headers(&["127.0.0.1:5025"])),
            Ok(())
        );
        assert_eq!(
            check(v11, &origin_form(), &headers(&["[::1]:5025"])),
            Ok(())
        );
        assert_eq!(
            check(v11, &origin_form(), &headers(&[])),
            Err(HostProblem::Missing)
        );
        assert_eq!(
            check(Version::HTTP_10, &origin_form(), &headers(&[])),
            Err(HostProblem::Missing)
        );
        assert_eq!(
            check(v11, &origin_form(), &headers(&["a.example", "b.example"])),
            Err(HostProblem::Repeated)
        );
        assert_eq!(
            check(v11, &origin_form(), &headers(&["a.example", "a.example"])),
            Err(HostProblem::Repeated)
        );
        for bad in [
            "",
            "user@a.example",
            "a.example/path",
            "a example",
            "a.example:port",
            "a.example:99999",
        ] {
            assert_eq!(
                check(v11, &origin_form(), &headers(&[bad])),
                Err(HostProblem::Invalid),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn the_host_must_name_the_absolute_form_target() {
        let v11 = Version::HTTP_11;
        let target = Uri::from_static("http://mcp.example.com/mcp");
        assert_eq!(check(v11, &target, &headers(&["MCP.example.com"])), Ok(()));
        assert_eq!(
            check(v11, &target, &headers(&["mcp.example.com:80"])),
            Ok(())
        );
        assert_eq!(
            check(v11, &target, &headers(&["other.example"])),
            Err(HostProblem::Mismatch)
        );
        assert_eq!(
            check(v11, &target, &headers(&["mcp.example.com:8080"])),
            Err(HostProblem::Mismatch)
        );
        // Absolute-form does not replace Host in HTTP/1.1.
        assert_eq!(
            check(v11, &target, &headers(&[])),
            Err(HostProblem::Missing)
        );
    }

    #[test]
    fn http2_may_carry_the_authority_alone_but_not_a_different_host() {
        let v2 = Version::HTTP_2;
        let target = Uri::from_static("https://mcp.example.com/mcp");
        assert_eq!(check(v2, &target, &headers(&[])), Ok(()));
        assert_eq!(
            check(v2, &target, &headers(&["mcp.example.com:443"])),
            Ok(())
        );
        assert_eq!(
            check(v2, &target, &headers(&["evil.example"])),
            Err(HostProblem::Mismatch)
        );
        assert_eq!(
            check(v2, &origin_form(), &headers(&[])),
            Err(HostProblem::Missing)
        );
    }
}
