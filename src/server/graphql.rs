//! `execute_graphql` at request time. What a submitted query needs follows from
//! the fields it selects, so the policy cannot know it in advance: each
//! `tools/call` of `execute_graphql` is analysed here, after the static levels
//! have passed and before anything is forwarded.

use axum::response::Response;
use serde_json::Value;

use super::observe::Observation;
use crate::auth::Principal;
use crate::gateway::Gateway;
use crate::graphql::GraphqlError;
use crate::mcp::envelope::Envelope;
use crate::policy::{Item, Level};
use crate::upstream::graphql::Builtin;

/// `Some` 403 when a message of the request calls `execute_graphql` with a query
/// the caller may not run: one whose fields need scopes the caller lacks (a
/// step-up challenge, as for any tool), or one whose requirement has more
/// combinations than `auth.oauth.max_scope_combinations` (no scope would help, so
/// the answer says why instead of naming one). Queries that do not parse or
/// validate pass: the upstream answers them with a tool error, without calling
/// the GraphQL API.
pub(super) fn refusal(
    gateway: &Gateway,
    principal: Option<&Principal>,
    envelope: &Envelope,
    observation: &mut Observation,
) -> Option<Response> {
    // Without credentials there are no scopes to check.
    let principal = principal?;
    let upstream = gateway.upstream.graphql()?;
    let tool = Builtin::ExecuteGraphql.name();
    let limit = gateway.config.auth.oauth.max_scope_combinations;
    for message in &envelope.messages {
        let target = message.target();
        if target.level != Level::ToolsCall || target.item != Some(Item::Tool(tool)) {
            continue;
        }
        let arguments = message
            .params()
            .and_then(|params| params.get("arguments"))
            .unwrap_or(&Value::Null);
        match upstream.execute_graphql_requirement(arguments, limit) {
            Some(Ok(requirement)) => {
                let decided = gateway.policy.authorize_item(
                    &principal.scopes,
                    Item::Tool(tool),
                    &requirement,
                    gateway.challenge.echo_token_scopes,
                );
                if let Err(denial) = decided {
                    tracing::info!(
                        subject = principal.subject.as_deref().unwrap_or("-"),
                        "request refused: {} (the query needs {requirement})",
                        denial.description
                    );
                    observation.refused(denial.description.clone());
                    return Some(gateway.challenge.insufficient_scope(&denial));
                }
            }
            Some(Err(error @ GraphqlError::QueryScopes { .. })) => {
                // A caller holding every scope meets any requirement, computed or not.
                if gateway.policy.grant(&principal.scopes).is_everything() {
                    continue;
                }
                let description = error.to_string();
                tracing::info!(
                    subject = principal.subject.as_deref().unwrap_or("-"),
                    "request refused: execute_graphql: {description}"
                );
                observation.refused(description.clone());
                return Some(gateway.challenge.unsatisfiable(&description));
            }
            Some(Err(_)) | None => {}
        }
    }
    None
}
