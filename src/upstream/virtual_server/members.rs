//! The members as mcpgate reaches them: an MCP client session per member and
//! caller, opened on first use and kept while it is used. A caller never shares a
//! member session with another (a server may keep state per session), and a
//! session the member no longer knows is opened again once.

use std::collections::HashMap;
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
/// Member sessions kept at once, per member, over every caller.
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

/// Open member sessions: per member, by caller. A member whose route a reload
/// keeps (the same upstream) keeps its sessions in the rebuilt virtual server, so a
/// reload neither opens them again nor leaves the old ones (a stdio child each)
/// behind until the member expires them.
#[derive(Debug)]
pub(super) struct Sessions {
    open: HashMap<RouteName, Cache<Vec<u8>, Session>>,
}

impl Sessions {
    /// Sessions for `members`: those of `previous` (the virtual server a reload
    /// replaces) for each member whose upstream it keeps, new ones for the others.
    pub(super) fn new(members: &[Member], previous: Option<(&[Member], &Self)>) -> Self {
        let open = members
            .iter()
            .map(|member| {
                let kept = previous.and_then(|(old_members, old)| {
                    old_members
                        .iter()
                        .find(|old| {
                            old.name == member.name && Arc::ptr_eq(&old.upstream, &member.upstream)
                        })
                        .and_then(|old_member| old.open.get(&old_member.name))
                });
                let cache = match kept {
                    // A clone shares the entries.
                    Some(cache) => cache.clone(),
                    None => Cache::builder()
                        .max_capacity(MAX_SESSIONS)
                        .time_to_idle(IDLE)
                        .build(),
                };
                (Arc::clone(&member.name), cache)
            })
            .collect();
        Self { open }
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
        let Some(open) = self.open.get(&member.name) else {
            return Err(ClientError::NotMcp {
                method: method.to_owned(),
                reason: format!("{} is not a member", member.name),
            });
        };
        let caller = context.caller.to_vec();
        let mut reopened = false;
        loop {
            // Opened once however many of the caller's requests find none at once:
            // each would otherwise open its own, and all but one be left behind.
            let session = open
                .try_get_with_by_ref(&caller, async {
                    let mut client = Client::new(&member.upstream, timeout)
                        .with_headers(context.own_headers.clone());
                    client.initialize("mcpgate-virtual").await?;
                    client.session().ok_or_else(|| ClientError::NotMcp {
                        method: "initialize".to_owned(),
                        reason: "no protocol version was agreed".to_owned(),
                    })
                })
                .await
                .map_err(|shared| Arc::try_unwrap(shared).unwrap_or_else(ClientError::Shared))?;
            let mut client = Client::resume(&member.upstream, timeout, &session)
                .with_headers(context.own_headers.clone());
            match client.request(method, Some(params.clone())).await {
                // The member forgot the session (it restarted, or expired it): forget
                // it too, unless another request has already put a new one in its place.
                Err(ClientError::Status { status, .. })
                    if status == StatusCode::NOT_FOUND && session.id.is_some() && !reopened =>
                {
                    if open
                        .get(&caller)
                        .await
                        .is_some_and(|current| current.id == session.id)
                    {
                        open.invalidate(&caller).await;
                    }
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
        ClientError::Shared(error) => rpc_error(member, error),
        other => RpcError::new(
            INTERNAL_ERROR,
            format!("member {} could not answer: {other}", member.name),
        ),
    }
}
