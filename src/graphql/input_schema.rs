//! A tool's `inputSchema` (JSON Schema) from its operation's variables.
//!
//! - `Int` → `integer`, `Float` → `number`, `String` and `ID` → `string`,
//!   `Boolean` → `boolean`. `ID` is advertised as a string only: GraphQL accepts a
//!   string for every `ID`, and one type keeps clients that build forms or fill
//!   arguments from the schema simple (an integer still works upstream).
//! - Custom scalars accept anything (`{}`, with the scalar's description): only the
//!   upstream knows their format.
//! - Enums → `string` with `enum` listing the values.
//! - Lists → `array` with `items`. Nullability inside a list is not expressed.
//! - Input objects → `object` with `properties` and `required`. One used once is
//!   written in place; one used more than once, or recursive, goes to `$defs` and
//!   is referenced with `$ref`. So recursion ends, and the schema grows linearly
//!   with the input types instead of with every path through them.
//! - A variable or input field is `required` when it is non-null and has no default.
//!   A nullable one is only left out of `required`: clients omit what they do not
//!   set, and an explicit null is rarely what a caller means.
//! - Defaults become `default`; descriptions come from input fields and types
//!   (apollo-compiler 1.x reads no variable descriptions).
//! - `@oneOf` input objects take exactly one property.

use std::collections::{HashMap, HashSet};

use apollo_compiler::ast::{Type, Value, VariableDefinition};
use apollo_compiler::schema::{ExtendedType, InputObjectType};
use apollo_compiler::{Node, Schema};
use serde_json::{Map, Value as Json, json};

/// The schema for an operation with these variables, validated against `schema`.
pub(super) fn input_schema(schema: &Schema, variables: &[Node<VariableDefinition>]) -> Json {
    let shared = shared_input_objects(schema, variables);
    let mut builder = Builder {
        schema,
        shared,
        queued: HashSet::new(),
        pending: Vec::new(),
    };
    let mut properties = Map::new();
    let mut required = Vec::new();
    for variable in variables {
        let mut property = builder.of_type(&variable.ty);
        if let Some(default) = variable.default_value.as_deref().and_then(to_json) {
            insert(&mut property, "default", default);
        }
        if variable.ty.is_non_null() && variable.default_value.is_none() {
            required.push(Json::String(variable.name.to_string()));
        }
        properties.insert(variable.name.to_string(), property);
    }
    let mut root = Map::new();
    root.insert("type".into(), "object".into());
    root.insert("properties".into(), Json::Object(properties));
    if !required.is_empty() {
        root.insert("required".into(), Json::Array(required));
    }
    let definitions = builder.definitions();
    if !definitions.is_empty() {
        root.insert("$defs".into(), Json::Object(definitions));
    }
    Json::Object(root)
}

struct Builder<'s> {
    schema: &'s Schema,
    /// Input objects written once in `$defs` and referenced.
    shared: HashSet<&'s str>,
    queued: HashSet<&'s str>,
    pending: Vec<&'s InputObjectType>,
}

impl<'s> Builder<'s> {
    fn of_type(&mut self, ty: &'s Type) -> Json {
        match ty {
            Type::List(item) | Type::NonNullList(item) => {
                json!({ "type": "array", "items": self.of_type(item) })
            }
            Type::Named(name) | Type::NonNullNamed(name) => self.named(name.as_str()),
        }
    }

    fn named(&mut self, name: &'s str) -> Json {
        let mut out = match self.schema.types.get(name) {
            Some(ExtendedType::Scalar(_)) => match name {
                "Int" => json!({ "type": "integer" }),
                "Float" => json!({ "type": "number" }),
                "String" | "ID" => json!({ "type": "string" }),
                "Boolean" => json!({ "type": "boolean" }),
                _ => json!({}),
            },
            Some(ExtendedType::Enum(enumeration)) => {
                let values: Vec<&str> = enumeration.values.keys().map(|v| v.as_str()).collect();
                json!({ "type": "string", "enum": values })
            }
            Some(ExtendedType::InputObject(object)) if self.shared.contains(name) => {
                if self.queued.insert(name) {
                    self.pending.push(object);
                }
                return json!({ "$ref": format!("#/$defs/{name}") });
            }
            Some(ExtendedType::InputObject(object)) => self.object(object),
            // Validation only lets input types through; anything else accepts anything.
            _ => json!({}),
        };
        // The built-in scalars' descriptions explain GraphQL, not this API.
        let description = self
            .schema
            .types
            .get(name)
            .filter(|t| !t.is_built_in())
            .and_then(|t| t.description());
        if let Some(description) = description {
            insert(
                &mut out,
                "description",
                Json::String(description.to_string()),
            );
        }
        out
    }

    fn object(&mut self, object: &'s InputObjectType) -> Json {
        let mut properties = Map::new();
        let mut required = Vec::new();
        for (name, field) in &object.fields {
            let mut property = self.of_type(&field.ty);
            if let Some(description) = &field.description {
                insert(
                    &mut property,
                    "description",
                    Json::String(description.to_string()),
                );
            }
            if let Some(default) = field.default_value.as_deref().and_then(to_json) {
                insert(&mut property, "default", default);
            }
            if field.ty.is_non_null() && field.default_value.is_none() {
                required.push(Json::String(name.to_string()));
            }
            properties.insert(name.to_string(), property);
        }
        let mut out = Map::new();
        out.insert("type".into(), "object".into());
        out.insert("properties".into(), Json::Object(properties));
        if !required.is_empty() {
            out.insert("required".into(), Json::Array(required));
        }
        if object.directives.has("oneOf") {
            out.insert("minProperties".into(), 1.into());
            out.insert("maxProperties".into(), 1.into());
        }
        Json::Object(out)
    }

    /// Writes every shared input object referenced so far, and those they reference.
    fn definitions(&mut self) -> Map<String, Json> {
        let mut definitions = Map::new();
        while let Some(object) = self.pending.pop() {
            let mut definition = self.object(object);
            if let Some(description) = &object.description {
                insert(
                    &mut definition,
                    "description",
                    Json::String(description.to_string()),
                );
            }
            definitions.insert(object.name.to_string(), definition);
        }
        definitions.sort_keys();
        definitions
    }
}

/// Input objects reachable from the variables that are referenced more than once
/// (two variables, two fields, or a field of their own type through any cycle: a
/// cycle's entry is referenced from outside it and from inside it).
fn shared_input_objects<'s>(
    schema: &'s Schema,
    variables: &'s [Node<VariableDefinition>],
) -> HashSet<&'s str> {
    let mut uses: HashMap<&str, usize> = HashMap::new();
    let mut to_visit: Vec<&InputObjectType> = Vec::new();
    let mut note = |ty: &'s Type, to_visit: &mut Vec<&'s InputObjectType>| {
        let name = ty.inner_named_type().as_str();
        if let Some(object) = schema.get_input_object(name) {
            let count = uses.entry(name).or_insert(0);
            *count += 1;
            if *count == 1 {
                to_visit.push(object);
            }
        }
    };
    for variable in variables {
        note(&variable.ty, &mut to_visit);
    }
    while let Some(object) = to_visit.pop() {
        for field in object.fields.values() {
            note(&field.ty, &mut to_visit);
        }
    }
    uses.into_iter()
        .filter_map(|(name, count)| (count > 1).then_some(name))
        .collect()
}

/// A constant GraphQL value as JSON; `None` for what JSON cannot hold (a float
/// overflowing `f64`) or what cannot be a default (a variable).
fn to_json(value: &Value) -> Option<Json> {
    Some(match value {
        Value::Null => Json::Null,
        Value::Enum(name) => Json::String(name.to_string()),
        Value::Variable(_) => return None,
        Value::String(text) => Json::String(text.clone()),
        Value::Int(int) => match int.try_to_i32() {
            Ok(int) => Json::from(int),
            Err(_) => Json::from(int.try_to_f64().ok()?),
        },
        Value::Float(float) => serde_json::Number::from_f64(float.try_to_f64().ok()?)?.into(),
        Value::Boolean(flag) => Json::Bool(*flag),
        Value::List(items) => Json::Array(items.iter().map(|i| to_json(i)).collect::<Option<_>>()?),
        Value::Object(fields) => Json::Object(
            fields
                .iter()
                .map(|(name, v)| Some((name.to_string(), to_json(v)?)))
                .collect::<Option<_>>()?,
        ),
    })
}

fn insert(schema: &mut Json, key: &str, value: Json) {
    if let Json::Object(map) = schema {
        map.insert(key.to_owned(), value);
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use apollo_compiler::ExecutableDocument;

    use super::*;

    const SDL: &str = r#"
        type Query {
          search(filter: Filter, limit: Int, ids: [ID!], level: Level, at: DateTime): [String]
          tree(root: Node!, other: Node): String
          pick(by: PickBy!): String
        }
        "How urgent"
        enum Level { LOW HIGH }
        "An ISO 8601 instant"
        scalar DateTime
        "What to search for"
        input Filter {
          "Words to match"
          text: String!
          exact: Boolean = false
          score: Float!
          range: Range
        }
        input Range { from: Int! to: Int }
        input Node { name: String! children: [Node!] }
        directive @oneOf on INPUT_OBJECT
        input PickBy @oneOf { id: ID name: String }
    "#;

    fn schema_for(query: &str) -> Json {
        let schema = super::super::schema::parse(SDL, Path::new("s.graphql")).unwrap();
        let document = ExecutableDocument::parse_and_validate(&schema, query, "q.graphql").unwrap();
        let operation = document.operations.get(None).unwrap();
        input_schema(&schema, &operation.variables)
    }

    #[test]
    fn no_variables_give_an_empty_object() {
        assert_eq!(
            schema_for("{ search }"),
            json!({ "type": "object", "properties": {} })
        );
    }

    #[test]
    fn scalars_enums_lists_and_defaults_map_to_json_schema() {
        let schema = schema_for(
            "query Q($limit: Int! = 10, $ids: [ID!]!, $level: Level, $at: DateTime!) {
               search(limit: $limit, ids: $ids, level: $level, at: $at)
             }",
        );
        assert_eq!(
            schema,
            json!({
                "type": "object",
                "properties": {
                    "limit": { "type": "integer", "default": 10 },
                    "ids": { "type": "array", "items": { "type": "string" } },
                    "level": { "type": "string", "enum": ["LOW", "HIGH"], "description": "How urgent" },
                    "at": { "description": "An ISO 8601 instant" }
                },
                "required": ["ids", "at"]
            })
        );
    }

    #[test]
    fn input_objects_used_once_are_nested_in_place() {
        let schema = schema_for("query Q($filter: Filter!) { search(filter: $filter) }");
        assert_eq!(
            schema,
            json!({
                "type": "object",
                "properties": {
                    "filter": {
                        "type": "object",
                        "properties": {
                            "text": { "type": "string", "description": "Words to match" },
                            "exact": { "type": "boolean", "default": false },
                            "score": { "type": "number" },
                            "range": {
                                "type": "object",
                                "properties": {
                                    "from": { "type": "integer" },
                                    "to": { "type": "integer" }
                                },
                                "required": ["from"]
                            }
                        },
                        "required": ["text", "score"],
                        "description": "What to search for"
                    }
                },
                "required": ["filter"]
            })
        );
    }

    #[test]
    fn recursive_and_repeated_input_objects_go_to_defs() {
        let schema =
            schema_for("query Q($root: Node!, $other: Node) { tree(root: $root, other: $other) }");
        assert_eq!(
            schema,
            json!({
                "type": "object",
                "properties": {
                    "root": { "$ref": "#/$defs/Node" },
                    "other": { "$ref": "#/$defs/Node" }
                },
                "required": ["root"],
                "$defs": {
                    "Node": {
                        "type": "object",
                        "properties": {
                            "name": { "type": "string" },
                            "children": { "type": "array", "items": { "$ref": "#/$defs/Node" } }
                        },
                        "required": ["name"]
                    }
                }
            })
        );
        // Recursive even when used by one variable only.
        let schema = schema_for("query Q($root: Node!) { tree(root: $root) }");
        assert_eq!(
            schema["properties"]["root"],
            json!({ "$ref": "#/$defs/Node" })
        );
        assert!(schema["$defs"]["Node"].is_object());
    }

    #[test]
    fn one_of_input_objects_take_exactly_one_property() {
        let schema = schema_for("query Q($by: PickBy!) { pick(by: $by) }");
        assert_eq!(schema["properties"]["by"]["minProperties"], json!(1));
        assert_eq!(schema["properties"]["by"]["maxProperties"], json!(1));
        assert_eq!(schema["properties"]["by"]["required"], Json::Null);
    }
}
