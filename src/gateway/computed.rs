//! `execute_graphql` at request time. What a submitted query needs follows from
//! the fields it selects, so the policy cannot know it in advance: each
//! `tools/call` of `execute_graphql` is analysed here, and what it needs goes to
//! the policy's decision with the rest of the request.

use serde_json::Value;

use super::Gateway;
use crate::graphql::GraphqlError;
use crate::mcp::envelope::Envelope;
use crate::policy::{Computed, Item, Level};
use crate::upstream::graphql::{Builtin, GraphqlUpstream};

impl Gateway {
    /// What each `execute_graphql` call of the request needs: the scopes of the fields
    /// its query selects, or, when that requirement has more combinations than
    /// `auth.oauth.max_scope_combinations`, the reason no scope set can be named.
    /// Queries that do not parse or validate need nothing here: the upstream answers
    /// them with a tool error, without calling the GraphQL API.
    pub fn computed<'e>(&self, envelope: &'e Envelope) -> Vec<Computed<'e>> {
        // The GraphQL servers behind this route, each with the prefix its tools
        // carry here: the upstream itself, or a virtual server's GraphQL members
        // (a query sent through the virtual server needs what it needs directly).
        let servers: Vec<(&str, &GraphqlUpstream)> = match self.upstream.virtual_server() {
            Some(merged) => merged
                .members()
                .iter()
                .filter_map(|member| Some((&*member.prefix, member.upstream.graphql()?)))
                .collect(),
            None => self
                .upstream
                .graphql()
                .map(|graphql| ("", graphql))
                .into_iter()
                .collect(),
        };
        if servers.is_empty() {
            return Vec::new();
        }
        let tool = Builtin::ExecuteGraphql.name();
        let limit = self.config.auth.oauth.max_scope_combinations;
        let mut computed = Vec::new();
        for message in &envelope.messages {
            let target = message.target();
            let Some(item @ Item::Tool(name)) = target.item else {
                continue;
            };
            if target.level != Level::ToolsCall {
                continue;
            }
            let Some((_, upstream)) = servers
                .iter()
                .find(|(prefix, _)| name.strip_prefix(prefix) == Some(tool))
            else {
                continue;
            };
            let arguments = message
                .params()
                .and_then(|params| params.get("arguments"))
                .unwrap_or(&Value::Null);
            match upstream.execute_graphql_requirement(arguments, limit) {
                Some(Ok(requirement)) => computed.push(Computed::Needs(item, requirement)),
                Some(Err(error @ GraphqlError::QueryScopes { .. })) => {
                    computed.push(Computed::TooComplex(item, error.to_string()));
                }
                Some(Err(_)) | None => {}
            }
        }
        computed
    }
}
