//! The built-in tools: `get_operation_info` (always), `get_schema` (with
//! `expose_schema`) and `execute_graphql` (with `enable_arbitrary_operations`).

use http::HeaderMap;
use serde_json::{Map, Value, json};

use super::GraphqlUpstream;
use super::call::Arguments;
use super::client::GraphqlRequest;
use super::result::ToolResult;
use crate::graphql::{GraphqlError, OperationKind, OperationTool};
use crate::policy::Requirement;
use crate::upstream::local::rpc_error::RpcError;

/// One built-in tool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Builtin {
    /// `get_operation_info`: what a configured operation takes and returns; always offered.
    GetOperationInfo,
    /// `get_schema`: the SDL; offered with `expose_schema`.
    GetSchema,
    /// `execute_graphql`: an arbitrary query; offered with `enable_arbitrary_operations`.
    ExecuteGraphql,
}

impl Builtin {
    pub(crate) const ALL: [Self; 3] = [
        Self::GetOperationInfo,
        Self::GetSchema,
        Self::ExecuteGraphql,
    ];

    /// The tool's name as clients see it in `tools/list` and call it.
    pub fn name(self) -> &'static str {
        match self {
            Self::GetOperationInfo => "get_operation_info",
            Self::GetSchema => "get_schema",
            Self::ExecuteGraphql => "execute_graphql",
        }
    }

    pub(crate) fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|builtin| builtin.name() == name)
    }

    pub(crate) fn description(self) -> &'static str {
        match self {
            Self::GetOperationInfo => {
                "Describes one of this server's GraphQL operations: its document, its \
                 variables as a JSON Schema, and the scopes a caller needs to run it \
                 (any one AND-group suffices). Takes the operation's name or its tool's name."
            }
            Self::GetSchema => "Returns the GraphQL schema (SDL) of the API behind this server.",
            Self::ExecuteGraphql => {
                "Runs a GraphQL query (or mutation, where allowed) written by the caller \
                 against the API behind this server. The scopes it needs follow from the \
                 fields it selects."
            }
        }
    }

    /// Each built-in's arguments, strict: unknown ones are refused.
    pub fn input_schema(self) -> Value {
        match self {
            Self::GetOperationInfo => json!({
                "type": "object",
                "properties": {
                    "operationName": {
                        "type": "string",
                        "description": "The operation's name (GetFacts) or its tool's name (execute_operation_get_facts).",
                    },
                },
                "required": ["operationName"],
                "additionalProperties": false,
            }),
            Self::GetSchema => json!({
                "type": "object",
                "properties": {},
                "additionalProperties": false,
            }),
            Self::ExecuteGraphql => json!({
                "type": "object",
                "properties": {
                    "query": {
                        "type": "string",
                        "description": "A GraphQL document, valid against the schema.",
                    },
                    "variables": {
                        "type": "object",
                        "description": "Values for the operation's variables.",
                    },
                    "operationName": {
                        "type": "string",
                        "description": "Which operation to run, when the document holds several.",
                    },
                },
                "required": ["query"],
                "additionalProperties": false,
            }),
        }
    }

    /// `execute_graphql` writes unless mutations are refused.
    pub fn read_only(self, exclude_mutations: bool) -> bool {
        match self {
            Self::GetOperationInfo | Self::GetSchema => true,
            Self::ExecuteGraphql => exclude_mutations,
        }
    }
}

impl GraphqlUpstream {
    pub(super) async fn call_builtin(
        &self,
        builtin: Builtin,
        arguments: &Arguments<'_>,
        own_headers: &HeaderMap,
    ) -> Result<ToolResult, RpcError> {
        match builtin {
            Builtin::GetOperationInfo => self.get_operation_info(arguments),
            Builtin::GetSchema => {
                arguments.only(&[])?;
                Ok(ToolResult::success(self.catalog.schema_sdl(), None))
            }
            Builtin::ExecuteGraphql => self.execute_graphql(arguments, own_headers).await,
        }
    }

    fn get_operation_info(&self, arguments: &Arguments<'_>) -> Result<ToolResult, RpcError> {
        arguments.only(&["operationName"])?;
        let name = arguments.required_string("operationName")?;
        Ok(match self.catalog.find(name) {
            Some(tool) => operation_info(tool),
            None => ToolResult::error(format!(
                "no operation or tool named {name:?}; tools/list shows the operation tools"
            )),
        })
    }

    async fn execute_graphql(
        &self,
        arguments: &Arguments<'_>,
        own_headers: &HeaderMap,
    ) -> Result<ToolResult, RpcError> {
        arguments.only(&["query", "variables", "operationName"])?;
        let query = arguments.required_string("query")?;
        let variables = arguments.optional_object("variables")?;
        let operation_name = arguments.optional_string("operationName")?;
        let analysis =
            match self
                .catalog
                .analyze(query, operation_name, self.max_scope_combinations)
            {
                Ok(analysis) => analysis,
                Err(error) => return Ok(ToolResult::error(error.to_string())),
            };
        match analysis.kind {
            OperationKind::Subscription => {
                return Ok(ToolResult::error(
                    "subscriptions are not supported: a tool call has one answer",
                ));
            }
            OperationKind::Mutation if self.exclude_mutations => {
                return Ok(ToolResult::error("mutations are disabled on this server"));
            }
            OperationKind::Query | OperationKind::Mutation => {}
        }
        let request = GraphqlRequest {
            query,
            variables: variables.cloned().unwrap_or_default(),
            operation_name,
        };
        Ok(self
            .run(Builtin::ExecuteGraphql.name(), &request, own_headers)
            .await)
    }

    /// What an `execute_graphql` call with these arguments needs, for the gateway to
    /// check before forwarding. `None` when there is nothing to analyse: the tool is
    /// off (the call will fail as an unknown tool) or the arguments hold no string
    /// `query` (it will fail as invalid params). `Some(Err(InvalidQuery))`: the call
    /// will fail as a tool error without reaching the endpoint, so it needs no
    /// scope; `Some(Err(QueryScopes))`: over `limit`, to be refused (403).
    pub fn execute_graphql_requirement(
        &self,
        arguments: &Value,
        limit: usize,
    ) -> Option<Result<Requirement, GraphqlError>> {
        if !self.offers(Builtin::ExecuteGraphql) {
            return None;
        }
        let query = arguments.get("query")?.as_str()?;
        let operation_name = arguments.get("operationName").and_then(Value::as_str);
        Some(
            self.catalog
                .analyze(query, operation_name, limit)
                .map(|analysis| analysis.requirement),
        )
    }
}

/// `get_operation_info`'s answer.
fn operation_info(tool: &OperationTool) -> ToolResult {
    let document = tool.document.trim();
    let schema = serde_json::to_string_pretty(&tool.input_schema)
        .unwrap_or_else(|_| tool.input_schema.to_string());
    let mut text = format!(
        "Operation: {} ({})\nTool: {}\n",
        tool.operation_name, tool.kind, tool.tool_name
    );
    if let Some(description) = &tool.description {
        text.push_str(&format!("Description: {description}\n"));
    }
    text.push_str(&format!(
        "Required scopes (OR-of-AND): {}\nVariables (JSON Schema):\n{schema}\nDocument:\n{document}\n",
        scopes_text(&tool.requirement)
    ));
    let mut structured = Map::new();
    structured.insert("operationName".to_owned(), json!(tool.operation_name));
    structured.insert("toolName".to_owned(), json!(tool.tool_name));
    structured.insert("kind".to_owned(), json!(tool.kind));
    if let Some(description) = &tool.description {
        structured.insert("description".to_owned(), json!(description));
    }
    structured.insert("document".to_owned(), json!(document));
    structured.insert("inputSchema".to_owned(), tool.input_schema.clone());
    structured.insert(
        "requiredScopes".to_owned(),
        json!(tool.requirement.groups()),
    );
    ToolResult::success(text, Some(structured))
}

/// `(a AND b) OR (c)`, or `none`.
pub(super) fn scopes_text(requirement: &Requirement) -> String {
    if requirement.is_empty() {
        return "none".to_owned();
    }
    requirement
        .groups()
        .iter()
        .map(|group| format!("({})", group.join(" AND ")))
        .collect::<Vec<_>>()
        .join(" OR ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_read_as_or_of_and_groups() {
        assert_eq!(scopes_text(&Requirement::none()), "none");
        assert_eq!(
            scopes_text(&Requirement::any_of([vec!["read:fact"], vec!["read:all"]])),
            "(read:fact) OR (read:all)"
        );
        assert_eq!(
            scopes_text(&Requirement::any_of([
                vec!["read:fact", "read:private"],
                vec!["read:all"]
            ])),
            "(read:fact AND read:private) OR (read:all)"
        );
    }

    #[test]
    fn names_round_trip_and_match_the_catalogs_reserved_names() {
        for builtin in Builtin::ALL {
            assert_eq!(Builtin::from_name(builtin.name()), Some(builtin));
            assert!(crate::graphql::BUILT_IN_TOOLS.contains(&builtin.name()));
        }
        assert_eq!(Builtin::ALL.len(), crate::graphql::BUILT_IN_TOOLS.len());
        assert_eq!(Builtin::from_name("get_schemas"), None);
    }

    #[test]
    fn input_schemas_are_objects_naming_their_required_arguments() {
        for builtin in Builtin::ALL {
            let schema = builtin.input_schema();
            assert_eq!(schema["type"], "object", "{}", builtin.name());
            assert!(schema["properties"].is_object(), "{}", builtin.name());
            let required = schema.get("required").and_then(Value::as_array);
            for name in required.into_iter().flatten() {
                let name = name.as_str().unwrap();
                assert!(
                    schema["properties"].get(name).is_some(),
                    "{}: {name}",
                    builtin.name()
                );
            }
        }
        assert_eq!(
            Builtin::GetOperationInfo.input_schema()["required"],
            json!(["operationName"])
        );
        assert_eq!(
            Builtin::ExecuteGraphql.input_schema()["required"],
            json!(["query"])
        );
    }

    #[test]
    fn execute_graphql_is_read_only_only_without_mutations() {
        assert!(Builtin::ExecuteGraphql.read_only(true));
        assert!(!Builtin::ExecuteGraphql.read_only(false));
        assert!(Builtin::GetSchema.read_only(false));
        assert!(Builtin::GetOperationInfo.read_only(false));
    }
}
