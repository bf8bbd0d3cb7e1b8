//! The members as mcpgate reaches them: an MCP client session per member and
//! caller, opened on first use and kept while it is used. A caller never shares a
//! member session with another (a server may keep state per session), and a
//! session the member no longer knows is opened again once.

use std::sync::Arc;
use std::time::Duration;

use http::StatusCode;
use moka::future::Cache;
use serde_json::Value;

use super::RouteName;
use crate::upstream::Upstream;
use crate::upstream::client::{Client, ClientError, Session};
use crate::upstream::local::Context;
use crate::upstream::local::rpc_error::RpcError;

/// JSON-RPC's "internal error": the member could not be asked.
const INTERNAL_ERROR: i64 = -32603;
/// Member sessions kept at once, over every member and caller.
const MAX_SESSIONS: u64 = 10_000;
/// A member session unused this long is forgotten (the member expires its own).
const IDLE: Duration = Duration::from_secs(300);

/// One member: its name (a route's, or `server <prefix>*`), its prefix, the
/// upstream it runs and where readiness reaches it.
#[derive(Debug, Clone)]
pub(crate) struct Member {
    pub(crate) name: RouteName,
    pub(crate) prefix: Arc<str>,
    pub(crate) upstream: Arc<Upstream>,
    pub(crate) probe: Option<url::Url>,
}

#[cfg(test)]
impl Member {
    /// A member whose upstream goes nowhere: for tests of names only.
    pub(crate) fn for_tests(prefix: &str) -> Self {
        #[allow(clippy::unwrap_used)]
        let upstream = crate::config::load_from_str("upstream: {url: http://127.0.0.1:9/mcp}")
            .unwrap()
            .upstream
            .map(|section| Upstream::from_config(&section, 1).unwrap())
            .unwrap();
        Self {
            name: Arc::from(format!("{prefix}route")),
            prefix: Arc::from(prefix),
            upstream: Arc::new(upstream),
            probe: None,
        }
    }
}

/// Open member sessions, by member route and caller.
#[derive(Debug)]
pub(super) struct Sessions {
    open: Cache<(RouteName, Vec<u8>), Session>,
}

impl Sessions {
    pub(super) fn new() -> Self {
        Self {
            open: Cache::builder()
                .max_capacity(MAX_SESSIONS)
                .time_to_idle(IDLE)
                .build(),
        }
    }

    /// Every item of `member`'s list, for the caller of `context`.
    pub(super) async fn list(
        &self,
        member: &Member,
        method: &str,
        key: &str,
        context: &Context<'_>,
        timeout: Duration,
    ) -> Result<Vec<Value>, ClientError> {
        let mut result = Vec::new();
        let mut cursor: Option<String> = None;
        // The member's pages, as the client would walk them; bounded as the
        // client's own list walk is.
        for _ in 0..1000 {
            let params = match cursor.take() {
                Some(cursor) => serde_json::json!({"cursor": cursor}),
                None => serde_json::json!({}),
            };
            let mut page = self
                .request(member, method, params, context, timeout)
                .await?;
            match page.get_mut(key).map(Value::take) {
                Some(Value::Array(items)) => result.extend(items),
                _ => {
                    return Err(ClientError::NotMcp {
                        method: method.to_owned(),
                        reason: format!("the result has no {key} array"),
                    });
                }
            }
            match page.get("nextCursor").and_then(Value::as_str) {
                Some(next) if !next.is_empty() => cursor = Some(next.to_owned()),
                _ => return Ok(result),
            }
        }
        Err(ClientError::TooManyPages {
            method: method.to_owned(),
            pages: 1000,
        })
    }

    /// One request to `member` in the caller's session with it.
    pub(super) async fn request(
        &self,
        member: &Member,
        method: &str,
        params: Value,
        context: &Context<'_>,
        timeout: Duration,
    ) -> Result<Value, ClientError> {
        let key = (Arc::clone(&member.name), context.caller.to_vec());
        let own = context.own_headers.clone();
        let mut reopened = false;
        loop {
            let session = match self.open.get(&key).await {
                Some(session) if !reopened => session,
                _ => {
                    let mut client =
                        Client::new(&member.upstream, timeout).with_headers(own.clone());
                    client.initialize("mcpgate-virtual").await?;
                    let Some(session) = client.session() else {
                        return Err(ClientError::NotMcp {
                            method: "initialize".to_owned(),
                            reason: "no protocol version was agreed".to_owned(),
                        });
                    };
                    self.open.insert(key.clone(), session.clone()).await;
                    session
                }
            };
            let mut client =
                Client::resume(&member.upstream, timeout, &session).with_headers(own.clone());
            match client.request(method, Some(params.clone())).await {
                // The member forgot the session (it restarted, or expired it).
                Err(ClientError::Status { status, .. })
                    if status == StatusCode::NOT_FOUND && session.id.is_some() && !reopened =>
                {
                    self.open.invalidate(&key).await;
                    reopened = true;
                }
                outcome => return outcome,
            }
        }
    }
}

/// A member's failure as the client is told it: the member's own JSON-RPC error
/// as it gave it, anything else as an internal error naming the member.
pub(super) fn rpc_error(member: &Member, error: &ClientError) -> RpcError {
    match error {
        ClientError::JsonRpc { code, message, .. } => RpcError::new(*code, message.clone()),
        other => RpcError::new(
            INTERNAL_ERROR,
            format!("member {} could not answer: {other}", member.name),
        ),
    }
}
