//! Sessions on the MCP endpoint: the id a request names is checked against the
//! caller and swapped for the upstream's; the upstream's id in an answer is swapped
//! for one mcpgate issues. The upstream's ids never reach clients, and a client's
//! header never reaches the upstream unchecked.

use axum::response::Response;
use http::{HeaderMap, HeaderValue, Method, StatusCode};
use serde_json::json;

use crate::edge::json::json_response;
use crate::mcp::session::{Owner, SESSION_HEADER, SessionEntry, SessionError, Sessions};
use crate::mcp::version::ProtocolVersion;

/// The session a request belongs to, once checked.
#[derive(Debug)]
pub enum Route {
    /// No `Mcp-Session-Id` (an `initialize`, or a stateless request), stateless
    /// mode, or a protocol revision without sessions (2026-07-28).
    Unbound,
    /// A session of the caller's: `id` is mcpgate's, `entry.upstream_id` the upstream's.
    Bound {
        /// The client-facing `Mcp-Session-Id`.
        id: String,
        /// What the store holds for it: the owner and the upstream's session id.
        entry: SessionEntry,
    },
}

impl Route {
    /// The session id to send upstream.
    pub fn upstream_id(&self) -> Option<&str> {
        match self {
            Self::Unbound => None,
            Self::Bound { entry, .. } => entry.upstream_id.as_deref(),
        }
    }
}

/// Why a request cannot go on in the session it names.
#[derive(Debug)]
pub enum Refusal {
    /// Unknown, expired, or someone else's: told apart from nothing.
    NotFound,
    /// The session store failed or is full: 503, the request goes nowhere.
    Store(SessionError),
}

impl Refusal {
    /// What the audit record and the log say.
    pub fn reason(&self) -> String {
        match self {
            Self::NotFound => "session not found".to_owned(),
            Self::Store(error) => error.to_string(),
        }
    }

    /// 404 as the Streamable HTTP transport specifies for an unknown session (the
    /// client then starts a new one), or 503 when the store cannot answer.
    pub fn response(&self) -> Response {
        let (status, code, message) = match self {
            Self::NotFound => (
                StatusCode::NOT_FOUND,
                -32001,
                "Session not found".to_owned(),
            ),
            Self::Store(error) => {
                tracing::warn!("{}", error.detail());
                (StatusCode::SERVICE_UNAVAILABLE, -32000, error.to_string())
            }
        };
        let body =
            json!({"jsonrpc": "2.0", "id": null, "error": {"code": code, "message": message}});
        json_response(status, &body)
    }
}

/// The session the request names, if the caller owns it. A revision without
/// sessions never has one: a stray `Mcp-Session-Id` is neither checked nor
/// forwarded (the client's own header never is).
pub async fn route(
    sessions: &Sessions,
    headers: &HeaderMap,
    owner: &Owner,
    version: ProtocolVersion,
) -> Result<Route, Refusal> {
    if sessions.is_stateless() || !version.has_sessions() {
        return Ok(Route::Unbound);
    }
    let mut named = headers.get_all(SESSION_HEADER).iter();
    let (Some(value), None) = (named.next(), named.next()) else {
        // None at all, or several (which no client sends): only the first case is
        // a request outside any session.
        return if headers.contains_key(SESSION_HEADER) {
            Err(Refusal::NotFound)
        } else {
            Ok(Route::Unbound)
        };
    };
    let id = value.to_str().map_err(|_| Refusal::NotFound)?;
    match sessions.resolve(id, owner).await {
        Ok(Some(entry)) => Ok(Route::Bound {
            id: id.to_owned(),
            entry,
        }),
        Ok(None) => Err(Refusal::NotFound),
        Err(error) => Err(Refusal::Store(error)),
    }
}

/// Applies the upstream's answer to the session state and rewrites its session
/// header: a new upstream session becomes a new mcpgate session owned by the caller;
/// a DELETE that succeeded, or an upstream that no longer knows the session, ends it.
///
/// Under a revision without sessions an upstream's session id is dropped: no
/// client would present it again.
pub async fn settle(
    sessions: &Sessions,
    route: &Route,
    method: &Method,
    owner: &Owner,
    version: ProtocolVersion,
    mut response: Response,
) -> Response {
    let upstream_id = response
        .headers_mut()
        .remove(SESSION_HEADER)
        .and_then(|value| value.to_str().ok().map(str::to_owned));
    if sessions.is_stateless() || !version.has_sessions() {
        return response;
    }
    let status = response.status();
    match route {
        Route::Bound { id, .. } => {
            let ended = (*method == Method::DELETE && status.is_success())
                || status == StatusCode::NOT_FOUND;
            if ended {
                if let Err(error) = sessions.close(id).await {
                    tracing::warn!("session not removed from the store: {}", error.detail());
                }
            } else if upstream_id.is_some() {
                set_header(response.headers_mut(), id);
            }
            response
        }
        Route::Unbound => {
            let Some(upstream_id) = upstream_id.filter(|_| status.is_success()) else {
                return response;
            };
            let entry = SessionEntry {
                owner: owner.clone(),
                upstream_id: Some(upstream_id),
            };
            match sessions.open(entry).await {
                Ok(id) => {
                    set_header(response.headers_mut(), &id);
                    response
                }
                // The upstream session is left to its own idle timeout: the client
                // never learnt its id, so nobody can use it.
                Err(error) => Refusal::Store(error).response(),
            }
        }
    }
}

fn set_header(headers: &mut HeaderMap, id: &str) {
    if let Ok(value) = HeaderValue::from_str(id) {
        headers.insert(SESSION_HEADER, value);
    }
}
