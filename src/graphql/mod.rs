//! A GraphQL API as MCP tools, the load-time half: the schema (SDL), the folder of
//! operations that become tools, each tool's input schema and the scopes its fields
//! need from `@requiresScopes`, and the same scope analysis for a query submitted at
//! request time (`execute_graphql`).
//!
//! Pure apart from reading the files: no HTTP, no MCP messages. A [`Catalog`] is
//! built whole or not at all, so a reload that fails keeps the previous one.

mod catalog;
mod description;
mod error;
mod input_schema;
mod naming;
mod operations;
mod schema;
mod scopes;

use std::path::PathBuf;

pub use catalog::{Analysis, Catalog, OperationTool};
pub use error::GraphqlError;
pub use naming::BUILT_IN_TOOLS;

/// Where the schema and operations are, and how operations become tools.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CatalogSettings {
    /// The SDL file.
    pub schema: PathBuf,
    /// The folder of `*.graphql`/`*.gql` operation files (not read recursively).
    pub operations: PathBuf,
    /// Tool names without the `execute_operation_` prefix.
    pub omit_tool_name_prefix: bool,
    /// Mutations do not become tools.
    pub exclude_mutations: bool,
    /// The most OR-groups an operation's scope requirement may have.
    pub max_scope_combinations: usize,
}

impl CatalogSettings {
    /// The defaults of the configuration file: prefixed names, mutations included,
    /// 2,048 combinations.
    pub fn new(schema: impl Into<PathBuf>, operations: impl Into<PathBuf>) -> Self {
        Self {
            schema: schema.into(),
            operations: operations.into(),
            omit_tool_name_prefix: false,
            exclude_mutations: false,
            max_scope_combinations: 2048,
        }
    }
}

/// The three kinds of GraphQL operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OperationKind {
    /// Reads only.
    Query,
    /// May write.
    Mutation,
    /// A stream of results: never a tool, skipped at load with a warning.
    Subscription,
}

impl OperationKind {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Query => "query",
            Self::Mutation => "mutation",
            Self::Subscription => "subscription",
        }
    }
}

impl std::fmt::Display for OperationKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
