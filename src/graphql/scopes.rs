//! Scopes from `@requiresScopes`: what each schema coordinate needs, and what an
//! operation needs for every field it selects.
//!
//! A field's requirement is the AND of up to three applications, in this order:
//! 1. the directive on the field definition itself;
//! 2. the directive on the type that defines the field (object or interface), which
//!    applies to every field of that type (issue #8's wording, and the reference
//!    router's current documentation for objects);
//! 3. the directive on the field's named return type (object, interface, scalar or
//!    enum), which the reference router's documentation applies to every field
//!    returning that type (`scalars: [Scalar!]!` needs `Scalar`'s scopes).
//!
//! The reference documentation has said both 2 and 3 for objects over time; the
//! gateway requires both, so it never asks for less than either reading. For an
//! object type they rarely differ: a field of `T` is reached through a field
//! returning `T`.
//!
//! A field selected on an interface uses the interface's field and type directives:
//! which implementation answers is only known at run time, so the implementations'
//! own field directives are left to the upstream, as in the reference router (its
//! documentation: a directive on an interface field does not protect the
//! implementations' fields, and the reverse holds too). Select through an inline
//! fragment on the concrete type to have the gateway check that type's fields.
//! Introspection fields (`__typename`, `__schema`, `__type`) are defined on no type
//! of the schema and need nothing.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::path::Path;

use apollo_compiler::Schema;
use apollo_compiler::ast::{Directive, Value};
use apollo_compiler::executable::{ExecutableDocument, Field, Operation, Selection};
use apollo_compiler::schema::ExtendedType;

use super::error::GraphqlError;
use super::schema::REQUIRES_SCOPES;
use crate::policy::{Requirement, TooManyCombinations};

/// The `@requiresScopes` of every type and field of a schema, read once at load.
#[derive(Debug, Clone, Default)]
pub(super) struct ScopeIndex {
    types: HashMap<String, Requirement>,
    /// Type name → field name → the field's own directive.
    fields: HashMap<String, HashMap<String, Requirement>>,
}

impl ScopeIndex {
    /// Reads every application in the schema. `limit` bounds the AND of a
    /// repeated directive on one definition; `path` names the SDL in errors.
    pub(super) fn new(schema: &Schema, path: &Path, limit: usize) -> Result<Self, GraphqlError> {
        let mut index = Self::default();
        for (type_name, ty) in &schema.types {
            if ty.is_built_in() {
                continue;
            }
            let own = applied(
                ty.directives().get_all(REQUIRES_SCOPES).map(|d| &*d.node),
                limit,
            )
            .map_err(|message| directive_error(path, type_name.as_str(), message))?;
            if !own.is_empty() {
                index.types.insert(type_name.to_string(), own);
            }
            let fields = match ty {
                ExtendedType::Object(object) => &object.fields,
                ExtendedType::Interface(interface) => &interface.fields,
                _ => continue,
            };
            for (field_name, field) in fields {
                let own = applied(
                    field.directives.get_all(REQUIRES_SCOPES).map(|d| &**d),
                    limit,
                )
                .map_err(|message| {
                    directive_error(path, &format!("{type_name}.{field_name}"), message)
                })?;
                if !own.is_empty() {
                    index
                        .fields
                        .entry(type_name.to_string())
                        .or_default()
                        .insert(field_name.to_string(), own);
                }
            }
        }
        Ok(index)
    }

    /// Every scope named by a directive anywhere in the schema, sorted.
    pub(super) fn all_scopes(&self) -> Vec<String> {
        let by_type = self.types.values();
        let by_field = self.fields.values().flat_map(HashMap::values);
        let scopes: BTreeSet<&str> = by_type.chain(by_field).flat_map(|r| r.scopes()).collect();
        scopes.into_iter().map(str::to_owned).collect()
    }

    /// What the operation needs: the AND of the requirement of every field it
    /// selects, through fragments, each schema coordinate counted once, in document
    /// order (so the same operation always yields the same challenge).
    pub(super) fn operation(
        &self,
        document: &ExecutableDocument,
        operation: &Operation,
        limit: usize,
    ) -> Result<Requirement, TooManyCombinations> {
        let mut total = Requirement::none();
        let mut coordinates: HashSet<(&str, &str)> = HashSet::new();
        let mut fragments: HashSet<&str> = HashSet::new();
        // An explicit stack instead of recursion: a submitted query's depth is the
        // client's to choose.
        let root = &operation.selection_set;
        let mut stack = vec![(&root.ty, root.selections.iter())];
        while let Some((parent, selections)) = stack.last_mut() {
            let parent = *parent;
            let Some(selection) = selections.next() else {
                stack.pop();
                continue;
            };
            let nested = match selection {
                Selection::Field(field) => {
                    if coordinates.insert((parent.as_str(), field.name.as_str())) {
                        total = total.and(&self.field(parent, field, limit)?, limit)?;
                    }
                    &field.selection_set
                }
                Selection::InlineFragment(inline) => &inline.selection_set,
                Selection::FragmentSpread(spread) => {
                    // A fragment's fields have the same coordinates wherever it is
                    // spread, so one walk is enough.
                    if !fragments.insert(spread.fragment_name.as_str()) {
                        continue;
                    }
                    match document.fragments.get(&spread.fragment_name) {
                        Some(fragment) => &fragment.selection_set,
                        None => continue,
                    }
                }
            };
            if !nested.selections.is_empty() {
                stack.push((&nested.ty, nested.selections.iter()));
            }
        }
        Ok(total)
    }

    /// One field's requirement; see the module documentation for the three parts.
    fn field(
        &self,
        parent: &str,
        field: &Field,
        limit: usize,
    ) -> Result<Requirement, TooManyCombinations> {
        if field.name.starts_with("__") {
            return Ok(Requirement::none());
        }
        let none = Requirement::EMPTY;
        let own = self
            .fields
            .get(parent)
            .and_then(|fields| fields.get(field.name.as_str()))
            .unwrap_or(&none);
        let of_parent = self.types.get(parent).unwrap_or(&none);
        let returned = field.definition.ty.inner_named_type();
        let of_return = self.types.get(returned.as_str()).unwrap_or(&none);
        own.and(of_parent, limit)?.and(of_return, limit)
    }
}

/// The AND of the applications on one definition: a repeatable directive applied
/// twice needs both.
fn applied<'a>(
    directives: impl Iterator<Item = &'a Directive>,
    limit: usize,
) -> Result<Requirement, String> {
    let mut total = Requirement::none();
    for directive in directives {
        let value = directive
            .specified_argument_by_name("scopes")
            .ok_or("no `scopes` argument")?;
        let one = Requirement::any_of(groups(value)?);
        total = total
            .and(&one, limit)
            .map_err(|e| format!("{e} (max_scope_combinations)"))?;
    }
    Ok(total)
}

/// `[[String!]!]!` read with GraphQL's input coercion, which turns a single value
/// where a list is expected into a list of one: `scopes: "a"` is `[["a"]]`, and
/// `scopes: ["a", "b"]` is `[["a"], ["b"]]` (a OR b), as the upstream reads it.
/// Empty lists are refused: an empty OR could never be met and an empty AND would
/// always be, and either way the directive would not say what its author meant.
fn groups(value: &Value) -> Result<Vec<Vec<String>>, String> {
    let outer = as_list(value);
    if outer.is_empty() {
        return Err("`scopes` is empty".to_owned());
    }
    outer
        .into_iter()
        .map(|group| {
            let scopes = as_list(group);
            if scopes.is_empty() {
                return Err("`scopes` holds an empty group".to_owned());
            }
            scopes
                .into_iter()
                .map(|scope| match scope {
                    Value::String(scope) => Ok(scope.clone()),
                    other => Err(format!("expected a scope string, found {other}")),
                })
                .collect()
        })
        .collect()
}

fn as_list(value: &Value) -> Vec<&Value> {
    match value {
        Value::List(items) => items.iter().map(|item| &**item).collect(),
        single => vec![single],
    }
}

fn directive_error(path: &Path, coordinate: &str, message: String) -> GraphqlError {
    GraphqlError::ScopesDirective {
        path: path.to_path_buf(),
        coordinate: coordinate.to_owned(),
        message,
    }
}

#[cfg(test)]
mod tests {
    use apollo_compiler::validation::Valid;

    use super::*;

    const SDL: &str = r#"
        type Query {
          facts: [Fact!]! @requiresScopes(scopes: [["read:fact"], ["read:all"]])
          employee(id: ID!): Employee
          secret: Secret @requiresScopes(scopes: [["read:secret"]])
          node: Node
          level: Level
          open: String
          anyone: Anyone
        }
        union Anyone = Employee
        type Fact { id: ID! title: String! private: String @requiresScopes(scopes: [["read:private"]]) }
        type Employee @requiresScopes(scopes: [["read:employee"]]) { id: ID! name: String! }
        scalar Secret @requiresScopes(scopes: [["read:secret:value"]])
        enum Level @requiresScopes(scopes: "read:level") { LOW HIGH }
        interface Node @requiresScopes(scopes: [["read:node"]]) {
          id: ID! @requiresScopes(scopes: ["read:node:id", "read:all"])
        }
        type Thing implements Node { id: ID! @requiresScopes(scopes: [["read:thing:id"]]) }
    "#;

    fn schema(sdl: &str) -> Valid<Schema> {
        super::super::schema::parse(sdl, Path::new("test.graphql")).unwrap()
    }

    fn requirement(query: &str, limit: usize) -> Result<String, TooManyCombinations> {
        let schema = schema(SDL);
        let index = ScopeIndex::new(&schema, Path::new("test.graphql"), 2048).unwrap();
        let document = ExecutableDocument::parse_and_validate(&schema, query, "q.graphql").unwrap();
        let operation = document.operations.get(None).unwrap();
        index
            .operation(&document, operation, limit)
            .map(|r| r.to_string())
    }

    #[test]
    fn fields_combine_by_and_in_document_order() {
        assert_eq!(requirement("{ open }", 2048).unwrap(), "(none)");
        assert_eq!(
            requirement("{ facts { id private } }", 2048).unwrap(),
            "(read:fact AND read:private) OR (read:all AND read:private)"
        );
        assert_eq!(
            requirement("{ a: facts { id } b: facts { title } }", 2048).unwrap(),
            "read:fact OR read:all"
        );
    }

    #[test]
    fn type_directives_apply_to_their_fields_and_to_fields_returning_them() {
        assert_eq!(
            requirement("{ employee(id: 1) { name } }", 2048).unwrap(),
            "read:employee"
        );
        assert_eq!(
            requirement("{ employee(id: 1) { __typename } }", 2048).unwrap(),
            "read:employee"
        );
        // Reached through a union, so only the type's own fields carry its directive.
        assert_eq!(
            requirement("{ anyone { ... on Employee { name } } }", 2048).unwrap(),
            "read:employee"
        );
        assert_eq!(
            requirement("{ secret }", 2048).unwrap(),
            "read:secret AND read:secret:value"
        );
        assert_eq!(requirement("{ level }", 2048).unwrap(), "read:level");
    }

    #[test]
    fn interface_fields_use_the_interface_and_inline_fragments_the_concrete_type() {
        assert_eq!(
            requirement("{ node { id } }", 2048).unwrap(),
            "(read:node AND read:node:id) OR (read:node AND read:all)"
        );
        assert_eq!(
            requirement("{ node { ... on Thing { id } } }", 2048).unwrap(),
            "read:node AND read:thing:id"
        );
        assert_eq!(
            requirement("{ node { __typename } }", 2048).unwrap(),
            "read:node"
        );
    }

    #[test]
    fn named_fragments_are_walked_once() {
        let query = "{ facts { ...F } more: facts { ...F } } fragment F on Fact { private }";
        assert_eq!(
            requirement(query, 2048).unwrap(),
            "(read:fact AND read:private) OR (read:all AND read:private)"
        );
    }

    #[test]
    fn the_limit_applies_to_the_whole_operation() {
        assert_eq!(
            requirement("{ facts { id } node { id } }", 3),
            Err(TooManyCombinations {
                needed: 4,
                limit: 3
            })
        );
        assert!(requirement("{ facts { id } node { id } }", 4).is_ok());
    }

    #[test]
    fn every_scope_of_the_schema_is_listed_once_sorted() {
        let schema = schema(SDL);
        let index = ScopeIndex::new(&schema, Path::new("test.graphql"), 2048).unwrap();
        assert_eq!(
            index.all_scopes(),
            [
                "read:all",
                "read:employee",
                "read:fact",
                "read:level",
                "read:node",
                "read:node:id",
                "read:private",
                "read:secret",
                "read:secret:value",
                "read:thing:id"
            ]
        );
    }

    #[test]
    fn a_repeated_directive_needs_every_application_within_the_limit() {
        let sdl = "directive @requiresScopes(scopes: [[String!]!]!) repeatable on FIELD_DEFINITION\n\
                   type Query { a: String @requiresScopes(scopes: [[\"x\"], [\"y\"]]) \
                                          @requiresScopes(scopes: [[\"z\"], [\"w\"]]) }";
        let schema = schema(sdl);
        let index = ScopeIndex::new(&schema, Path::new("s.graphql"), 4).unwrap();
        let document = ExecutableDocument::parse_and_validate(&schema, "{ a }", "q").unwrap();
        let operation = document.operations.get(None).unwrap();
        assert_eq!(
            index
                .operation(&document, operation, 4)
                .unwrap()
                .to_string(),
            "(x AND z) OR (x AND w) OR (y AND z) OR (y AND w)"
        );
        let error = ScopeIndex::new(&schema, Path::new("s.graphql"), 3).unwrap_err();
        assert!(
            error.to_string().contains("Query.a") && error.to_string().contains("limit of 3"),
            "{error}"
        );
    }

    #[test]
    fn malformed_applications_are_load_errors_naming_the_coordinate() {
        let cases = [
            (
                r#"type Query { a: String @requiresScopes(scopes: []) }"#,
                "empty",
            ),
            (
                r#"type Query { a: String @requiresScopes(scopes: [[]]) }"#,
                "empty group",
            ),
        ];
        for (sdl, expected) in cases {
            let schema = schema(sdl);
            let error = ScopeIndex::new(&schema, Path::new("s.graphql"), 2048).unwrap_err();
            let text = error.to_string();
            assert!(text.contains("Query.a"), "{text}");
            assert!(text.contains(expected), "{text}");
        }
        // A schema may declare the argument as it likes; a non-string scope is refused.
        let schema = schema(
            "directive @requiresScopes(scopes: [[Int!]!]!) on OBJECT\n\
             type Query @requiresScopes(scopes: [[1]]) { a: String }",
        );
        let error = ScopeIndex::new(&schema, Path::new("s.graphql"), 2048).unwrap_err();
        assert!(
            error.to_string().contains("on Query in s.graphql"),
            "{error}"
        );
    }
}
