//! The loaded schema and its operation tools, and request-time analysis of a query.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;

use apollo_compiler::validation::Valid;
use apollo_compiler::{ExecutableDocument, Schema};

use super::error::{GraphqlError, one_line};
use super::input_schema::input_schema;
use super::naming::{BUILT_IN_TOOLS, tool_name};
use super::operations::{self, OperationFile, kind_of};
use super::schema;
use super::scopes::ScopeIndex;
use super::{CatalogSettings, OperationKind};
use crate::policy::Requirement;

/// One operation file as an MCP tool.
#[derive(Debug, Clone, PartialEq)]
pub struct OperationTool {
    /// The MCP tool name: `execute_operation_` and the operation name in snake case, or
    /// without the prefix when configured.
    pub tool_name: String,
    /// The operation's name, or its file's stem when the operation is unnamed.
    pub operation_name: String,
    /// Query or mutation; subscription files are skipped at load.
    pub kind: OperationKind,
    /// The file's text: the one operation and the fragments it uses, with any
    /// description string blanked. Send it as is; being the document's only
    /// operation, it needs no `operationName` (and an unnamed one has none).
    pub document: String,
    /// From the operation's description string or the file's leading `#` comments; `None`
    /// when it has neither.
    pub description: Option<String>,
    /// JSON Schema of the variables, `"type": "object"` at the top.
    pub input_schema: serde_json::Value,
    /// What a caller needs for every field the operation selects.
    pub requirement: Requirement,
    /// Queries read; mutations may write.
    pub read_only: bool,
    /// The operation file, for messages that name it.
    pub file: PathBuf,
}

/// What a query submitted at request time is and what it needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Analysis {
    /// Query, mutation or subscription: the selected operation's kind.
    pub kind: OperationKind,
    /// The selected operation's name; `None` for an unnamed one.
    pub operation_name: Option<String>,
    /// Every scope group a caller needs for the fields the operation selects.
    pub requirement: Requirement,
}

/// The schema and the operation tools, loaded together.
pub struct Catalog {
    schema: Valid<Schema>,
    sdl: String,
    scopes: ScopeIndex,
    tools: Vec<OperationTool>,
    /// Operation and tool names → index in `tools`, so a look-up does not grow
    /// with the number of tools.
    by_name: HashMap<String, usize>,
    warnings: Vec<String>,
}

impl std::fmt::Debug for Catalog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Catalog")
            .field("tools", &self.tools.len())
            .field("warnings", &self.warnings)
            .finish_non_exhaustive()
    }
}

impl Catalog {
    /// Reads the schema and every operation file. Any file that does not parse or
    /// validate, and any operation over `max_scope_combinations`, fails the whole
    /// load; skipped operations (subscriptions, duplicates, built-in names) are
    /// reported in [`Catalog::warnings`].
    pub fn load(settings: &CatalogSettings) -> Result<Self, GraphqlError> {
        let loaded = schema::load(&settings.schema)?;
        let scopes = ScopeIndex::new(
            &loaded.schema,
            &settings.schema,
            settings.max_scope_combinations,
        )?;
        let mut tools = Vec::new();
        let mut warnings = Vec::new();
        let mut operation_names: HashSet<String> = HashSet::new();
        let mut tool_names: HashSet<String> = HashSet::new();
        for path in operations::list(&settings.operations)? {
            let file = operations::read(&loaded.schema, &path)?;
            let shown = path.display();
            let name = &file.name;
            match file.kind {
                OperationKind::Subscription => {
                    warnings.push(format!(
                        "{shown}: subscription {name} skipped: subscriptions are not tools"
                    ));
                    continue;
                }
                OperationKind::Mutation if settings.exclude_mutations => continue,
                OperationKind::Query | OperationKind::Mutation => {}
            }
            if !operation_names.insert(name.clone()) {
                warnings.push(format!(
                    "{shown}: operation {name} skipped: an earlier file has an operation of that name"
                ));
                continue;
            }
            let Some(tool) = tool_name(name, settings.omit_tool_name_prefix) else {
                return Err(GraphqlError::Operation {
                    path: path.clone(),
                    message: format!("no tool name can be made from the operation name {name:?}"),
                });
            };
            if BUILT_IN_TOOLS.contains(&tool.as_str()) {
                warnings.push(format!(
                    "{shown}: operation {name} skipped: its tool name {tool} is a built-in tool's"
                ));
                continue;
            }
            if !tool_names.insert(tool.clone()) {
                warnings.push(format!(
                    "{shown}: operation {name} skipped: an earlier operation has the tool name {tool}"
                ));
                continue;
            }
            tools.push(build_tool(
                &loaded.schema,
                &scopes,
                file,
                tool,
                settings.max_scope_combinations,
            )?);
        }
        let mut by_name = HashMap::with_capacity(tools.len() * 2);
        // Operation names first: `get_operation_info` is asked for an operation by
        // name, and a tool name equal to another operation's name must not shadow it.
        for (index, tool) in tools.iter().enumerate() {
            by_name.insert(tool.operation_name.clone(), index);
        }
        for (index, tool) in tools.iter().enumerate() {
            by_name.entry(tool.tool_name.clone()).or_insert(index);
        }
        Ok(Self {
            schema: loaded.schema,
            sdl: loaded.sdl,
            scopes,
            tools,
            by_name,
            warnings,
        })
    }

    /// The operation tools, in file order.
    pub fn tools(&self) -> &[OperationTool] {
        &self.tools
    }

    /// Operations skipped at load, one sentence each, naming the file.
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// The SDL as written in the schema file.
    pub fn schema_sdl(&self) -> &str {
        &self.sdl
    }

    /// The tool with this operation name or tool name.
    pub fn find(&self, operation_or_tool_name: &str) -> Option<&OperationTool> {
        self.by_name
            .get(operation_or_tool_name)
            .and_then(|&index| self.tools.get(index))
    }

    /// Parses and validates a submitted query, selects its operation (by name when
    /// the document holds several), and works out what it needs, as for a tool.
    /// Over `limit` is [`GraphqlError::QueryScopes`]: the caller refuses the request
    /// rather than guess a requirement.
    pub fn analyze(
        &self,
        query: &str,
        operation_name: Option<&str>,
        limit: usize,
    ) -> Result<Analysis, GraphqlError> {
        let invalid = |message: String| GraphqlError::InvalidQuery { message };
        let document = ExecutableDocument::parse_and_validate(&self.schema, query, "query.graphql")
            .map_err(|e| invalid(one_line(&e.errors)))?;
        let operation = document
            .operations
            .get(operation_name)
            .map_err(|e| invalid(e.message().to_string()))?;
        let requirement = self
            .scopes
            .operation(&document, operation, limit)
            .map_err(|source| GraphqlError::QueryScopes { source })?;
        Ok(Analysis {
            kind: kind_of(operation.operation_type),
            operation_name: operation.name.as_ref().map(|n| n.to_string()),
            requirement,
        })
    }

    /// Every scope any `@requiresScopes` in the schema names, sorted.
    pub fn schema_scopes(&self) -> Vec<String> {
        self.scopes.all_scopes()
    }
}

fn build_tool(
    schema: &Valid<Schema>,
    scopes: &ScopeIndex,
    file: OperationFile,
    tool_name: String,
    limit: usize,
) -> Result<OperationTool, GraphqlError> {
    let Some(operation) = file.operation() else {
        return Err(GraphqlError::Operation {
            path: file.path,
            message: "holds no operation".to_owned(),
        });
    };
    let requirement = scopes
        .operation(&file.document, operation, limit)
        .map_err(|source| GraphqlError::ToolScopes {
            operation: file.name.clone(),
            path: file.path.clone(),
            source,
        })?;
    let input_schema = input_schema(schema, &operation.variables);
    Ok(OperationTool {
        tool_name,
        read_only: file.kind == OperationKind::Query,
        kind: file.kind,
        document: file.text,
        description: file.description,
        input_schema,
        requirement,
        operation_name: file.name,
        file: file.path,
    })
}

// The gateway shares a catalog across requests and swaps it on reload.
const _: fn() = || {
    fn shared<T: Send + Sync>() {}
    shared::<Catalog>();
};
