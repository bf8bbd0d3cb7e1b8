//! A virtual server: one MCP server made of other routes. mcpgate answers its
//! clients itself (statelessly, in both eras, as [`super::local`] does) and, for
//! each request, asks the members as their client: a merged list is every
//! member's list with each name under the member's prefix, and a call goes to the
//! member whose prefix the name carries, with the name it has there.
//!
//! A member that cannot answer a list drops out of it (its items disappear, the
//! others are listed); a call to it fails alone.

mod members;
mod names;

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use bytes::Bytes;
use http::{HeaderMap, Method, Response};
use serde_json::{Value, json};

pub(crate) use self::members::Member;
use self::members::Sessions;
use self::names::{Kind, Page};
use super::UpstreamError;
use super::local::rpc_error::{INVALID_PARAMS, RpcError};
use super::local::{self, Context, Identity, LocalServer, method_not_found};
use crate::config::VirtualServerConfig;

/// The members' tools and prompts under one endpoint.
#[derive(Debug)]
pub struct VirtualUpstream {
    members: Vec<Member>,
    page_size: usize,
    timeout: Duration,
    sessions: Sessions,
}

impl VirtualUpstream {
    /// `members` in the order of `config.members`, each with its route's upstream.
    /// `previous` is the virtual server of the same route that a reload replaces:
    /// the member sessions of the members it keeps carry over.
    pub(crate) fn new(
        config: &VirtualServerConfig,
        members: Vec<Member>,
        timeout: Duration,
        previous: Option<&Self>,
    ) -> Self {
        let sessions = Sessions::new(
            &members,
            previous.map(|previous| (previous.members.as_slice(), &previous.sessions)),
        );
        Self {
            members,
            page_size: config.page_size,
            timeout,
            sessions,
        }
    }

    /// The members, in order.
    pub(crate) fn members(&self) -> &[Member] {
        &self.members
    }

    /// Answers one HTTP request to the MCP endpoint (see [`local::forward`]) for
    /// `caller` (a digest of who calls: the member sessions opened for one caller
    /// are never another's).
    pub async fn forward(
        &self,
        method: Method,
        (client_headers, own_headers): (&HeaderMap, HeaderMap),
        caller: &[u8],
        body: Bytes,
    ) -> Result<Response<Body>, UpstreamError> {
        Ok(local::forward(self, method, (client_headers, &own_headers), caller, &body).await)
    }

    /// [`Self::forward`] behind a trait object. A virtual server's members are
    /// upstreams, so the future of [`super::Upstream::forward`] would contain its
    /// own type; its concrete return type here breaks the cycle.
    pub(crate) fn forward_boxed<'a>(
        &'a self,
        method: Method,
        headers: (&'a HeaderMap, HeaderMap),
        caller: &'a [u8],
        body: Bytes,
    ) -> BoxedAnswer<'a> {
        Box::pin(self.forward(method, headers, caller, body))
    }

    /// One page of the merged list of `kind`, from `cursor` on.
    async fn list(
        &self,
        kind: Kind,
        params: Option<&Value>,
        context: &Context<'_>,
    ) -> Result<Value, RpcError> {
        let page = Page::from_params(params, self.page_size)?;
        let lists = futures_util::future::join_all(self.members.iter().map(|member| {
            self.sessions.list(
                member,
                kind.list_method(),
                kind.key(),
                context,
                self.timeout,
            )
        }))
        .await;
        let mut merged = Vec::new();
        for (member, list) in self.members.iter().zip(lists) {
            match list {
                Ok(items) => merged.extend(
                    items
                        .into_iter()
                        .filter_map(|item| names::prefixed(item, &member.prefix)),
                ),
                Err(error) => tracing::warn!(
                    member = %member.name,
                    "virtual server: {} left out of {}: {error}",
                    member.name,
                    kind.list_method()
                ),
            }
        }
        Ok(page.of(kind.key(), merged))
    }

    /// A call or a get: sent to the member whose prefix the name carries.
    async fn one(
        &self,
        kind: Kind,
        params: Option<&Value>,
        context: &Context<'_>,
    ) -> Result<Value, RpcError> {
        let name = params
            .and_then(|params| params.get("name"))
            .and_then(Value::as_str)
            .ok_or_else(|| RpcError::invalid_params("params.name must be a string"))?;
        let Some((member, own_name)) = names::owner(&self.members, name) else {
            return Err(RpcError::new(
                INVALID_PARAMS,
                format!("unknown {}: {}", kind.item(), crate::char_prefix(name, 100)),
            ));
        };
        let mut params = params.cloned().unwrap_or_else(|| json!({}));
        if let Some(object) = params.as_object_mut() {
            object.insert("name".to_owned(), Value::from(own_name));
        }
        self.sessions
            .request(member, kind.one_method(), params, context, self.timeout)
            .await
            .map_err(|error| members::rpc_error(member, &error))
    }
}

impl LocalServer for VirtualUpstream {
    fn identity(&self) -> &Identity {
        &IDENTITY
    }

    fn cache_ttl_ms(&self) -> u64 {
        // The members' lists can change at any time: a client asks again.
        0
    }

    async fn handle(
        &self,
        method: &str,
        params: Option<&Value>,
        context: &Context<'_>,
    ) -> Result<Value, RpcError> {
        match method {
            "tools/list" => self.list(Kind::Tool, params, context).await,
            "prompts/list" => self.list(Kind::Prompt, params, context).await,
            "tools/call" => self.one(Kind::Tool, params, context).await,
            "prompts/get" => self.one(Kind::Prompt, params, context).await,
            _ => Err(method_not_found(method)),
        }
    }
}

/// Tools and prompts, with no change notifications.
static IDENTITY: std::sync::LazyLock<Identity> = std::sync::LazyLock::new(|| Identity {
    name: "mcpgate-virtual",
    capabilities: json!({"tools": {"listChanged": false}, "prompts": {"listChanged": false}}),
});

// The gateway shares one upstream across requests.
const _: fn() = || {
    fn shared<T: Send + Sync>() {}
    shared::<VirtualUpstream>();
};

/// An answer on its way, its type erased.
pub(crate) type BoxedAnswer<'a> = std::pin::Pin<
    Box<dyn std::future::Future<Output = Result<Response<Body>, UpstreamError>> + Send + 'a>,
>;

/// Kept with the member for logs and errors.
pub(crate) type RouteName = Arc<str>;
