//! The `tools/list` answer: every operation tool, then the built-in tools that are
//! switched on. Built once at load: it changes only with the catalog.

use serde_json::{Map, Value, json};

use super::builtins::Builtin;
use crate::graphql::{Catalog, OperationTool};

/// The `tools/list` result, one page (there is no cursor to follow).
/// `exclude_mutations` makes `execute_graphql` read-only too.
pub(super) fn list(catalog: &Catalog, builtins: &[Builtin], exclude_mutations: bool) -> Value {
    let mut tools: Vec<Value> = catalog.tools().iter().map(operation_entry).collect();
    tools.extend(
        builtins
            .iter()
            .map(|builtin| builtin_entry(*builtin, exclude_mutations)),
    );
    json!({ "tools": tools })
}

fn operation_entry(tool: &OperationTool) -> Value {
    let description = match &tool.description {
        Some(description) => description.clone(),
        // A model picks tools by their descriptions; an empty one says nothing.
        None => format!("Runs the GraphQL {} {}.", tool.kind, tool.operation_name),
    };
    entry(
        &tool.tool_name,
        &description,
        tool.input_schema.clone(),
        tool.read_only,
    )
}

fn builtin_entry(builtin: Builtin, exclude_mutations: bool) -> Value {
    entry(
        builtin.name(),
        builtin.description(),
        builtin.input_schema(),
        builtin.read_only(exclude_mutations),
    )
}

fn entry(name: &str, description: &str, input_schema: Value, read_only: bool) -> Value {
    let mut tool = Map::new();
    tool.insert("name".to_owned(), Value::String(name.to_owned()));
    tool.insert(
        "description".to_owned(),
        Value::String(description.to_owned()),
    );
    tool.insert("inputSchema".to_owned(), input_schema);
    tool.insert(
        "annotations".to_owned(),
        json!({ "readOnlyHint": read_only }),
    );
    Value::Object(tool)
}
