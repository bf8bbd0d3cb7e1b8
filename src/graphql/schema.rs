//! The upstream's schema, from an SDL file, parsed and validated once at load.

use std::path::Path;

use apollo_compiler::ast::{Definition, Document};
use apollo_compiler::validation::Valid;
use apollo_compiler::{Schema, ast};

use super::error::{GraphqlError, one_line};

/// The directive whose scopes become tool requirements.
pub(super) const REQUIRES_SCOPES: &str = "requiresScopes";

/// Added when the SDL applies `@requiresScopes` without declaring it. Schemas
/// printed by a federation router or copied from a subgraph often leave directive
/// declarations out, and validation would reject every use; declaring it here with
/// the reference router's signature and locations (a plain `String` for the scope
/// scalar) accepts exactly the uses that router accepts. An SDL that declares it
/// itself keeps its own declaration.
const DECLARATION: &str = "directive @requiresScopes(scopes: [[String!]!]!) \
                           on FIELD_DEFINITION | OBJECT | INTERFACE | SCALAR | ENUM\n";

/// Where the added declaration appears in diagnostics.
const DECLARATION_SOURCE: &str = "mcpgate:requiresScopes.graphql";

/// The validated schema and the SDL as written (what `get_schema` shows).
#[derive(Debug)]
pub(super) struct LoadedSchema {
    pub schema: Valid<Schema>,
    pub sdl: String,
}

pub(super) fn load(path: &Path) -> Result<LoadedSchema, GraphqlError> {
    let sdl = std::fs::read_to_string(path).map_err(|source| GraphqlError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let schema = parse(&sdl, path)?;
    Ok(LoadedSchema { schema, sdl })
}

/// Parses and validates SDL text; `path` only names it in errors.
pub(super) fn parse(sdl: &str, path: &Path) -> Result<Valid<Schema>, GraphqlError> {
    let invalid = |message: String| GraphqlError::Schema {
        path: path.to_path_buf(),
        message,
    };
    let document = Document::parse(sdl, path).map_err(|e| invalid(one_line(&e.errors)))?;
    // Orphan `extend type` blocks are adopted because subgraph SDLs are written that
    // way; rejecting them would only make the operator paste an empty definition.
    let mut builder = Schema::builder()
        .adopt_orphan_extensions()
        .add_ast(&document);
    if !declares_requires_scopes(&document) {
        builder = builder.parse(DECLARATION, DECLARATION_SOURCE);
    }
    builder
        .build()
        .map_err(|e| invalid(one_line(&e.errors)))?
        .validate()
        .map_err(|e| invalid(one_line(&e.errors)))
}

fn declares_requires_scopes(document: &ast::Document) -> bool {
    document.definitions.iter().any(|definition| {
        matches!(definition, Definition::DirectiveDefinition(d) if d.name == REQUIRES_SCOPES)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_str(sdl: &str) -> Result<Valid<Schema>, GraphqlError> {
        parse(sdl, Path::new("test.graphql"))
    }

    #[test]
    fn an_undeclared_directive_is_declared_for_the_schema() {
        let schema =
            parse_str(r#"type Query { fact: String @requiresScopes(scopes: [["read:fact"]]) }"#)
                .unwrap();
        assert!(schema.directive_definitions.contains_key(REQUIRES_SCOPES));
    }

    #[test]
    fn a_declared_directive_is_kept_as_written() {
        let schema = parse_str(
            "scalar Scope\n\
             directive @requiresScopes(scopes: [[Scope!]!]!) on FIELD_DEFINITION\n\
             type Query { fact: String @requiresScopes(scopes: [[\"read:fact\"]]) }",
        )
        .unwrap();
        let declared = schema.directive_definitions.get(REQUIRES_SCOPES).unwrap();
        assert_eq!(declared.locations.len(), 1);
    }

    #[test]
    fn an_invalid_schema_names_the_file_and_the_problem() {
        let error = parse_str("type Query { fact: Missing }").unwrap_err();
        let text = error.to_string();
        assert!(text.starts_with("invalid schema test.graphql: "), "{text}");
        assert!(text.contains("Missing"), "{text}");
        assert!(text.contains("line 1"), "{text}");
        let error = parse_str("type Query {").unwrap_err();
        assert!(matches!(error, GraphqlError::Schema { .. }), "{error}");
    }
}
