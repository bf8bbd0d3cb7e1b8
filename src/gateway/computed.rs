//! `execute_graphql` at request time. What a submitted query needs follows from
//! the fields it selects, so the policy cannot know it in advance: each
//! `tools/call` of `execute_graphql` is analysed here, and what it needs goes to
//! the policy's decision with the rest of the request.

use serde_json::Value;

use super::Gateway;
use crate::graphql::GraphqlError;
use crate::mcp::envelope::Envelope;
use crate::policy::{Computed, Item, Level};
use crate::upstream::graphql::Builtin;

impl Gateway {
    /// What each `execute_graphql` call of the request needs: the scopes of the fields
    /// its query selects, or, when that requirement has more combinations than
    /// `auth.oauth.max_scope_combinations`, the reason no scope set can be named.
    /// Queries that do not parse or validate need nothing here: the upstream answers
    /// them with a tool error, without calling the GraphQL API.
    pub fn computed<'e>(&self, envelope: &'e Envelope) -> Vec<Computed<'e>> {
        let Some(upstream) = self.upstream.graphql() else {
            return Vec::new();
        };
        let tool = Builtin::ExecuteGraphql.name();
        let limit = self.config.auth.oauth.max_scope_combinations;
        let mut computed = Vec::new();
        for message in &envelope.messages {
            let target = message.target();
            let Some(item @ Item::Tool(name)) = target.item else {
                continue;
            };
            if target.level != Level::ToolsCall || name != tool {
                continue;
            }
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
