//! The GraphQL catalog through its public API: a schema with `@requiresScopes` on
//! types and fields, and folders of operation files under tests/fixtures/graphql.

use std::path::PathBuf;

use mcpgate::graphql::{Catalog, CatalogSettings, GraphqlError, OperationKind, OperationTool};
use mcpgate::policy::{Holds, TooManyCombinations};
use serde_json::json;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/graphql")
}

fn settings(folder: &str) -> CatalogSettings {
    CatalogSettings::new(fixtures().join("schema.graphql"), fixtures().join(folder))
}

fn load() -> Catalog {
    Catalog::load(&settings("operations")).unwrap()
}

fn tool<'c>(catalog: &'c Catalog, operation: &str) -> &'c OperationTool {
    catalog
        .tools()
        .iter()
        .find(|t| t.operation_name == operation)
        .unwrap_or_else(|| panic!("no tool for {operation}"))
}

fn names(catalog: &Catalog) -> Vec<&str> {
    catalog
        .tools()
        .iter()
        .map(|t| t.tool_name.as_str())
        .collect()
}

/// A token's scopes, for checking requirements the way the policy does.
struct Token(&'static [&'static str]);

impl Holds for Token {
    fn holds(&self, scope: &str) -> bool {
        self.0.contains(&scope)
    }
}

#[test]
fn every_query_and_mutation_file_becomes_a_tool_in_file_order() {
    let catalog = load();
    assert_eq!(
        names(&catalog),
        [
            "execute_operation_get_facts",
            "execute_operation_get_top_secret_facts",
            "execute_operation_list_employees",
            "execute_operation_search",
            "execute_operation_node_by_id",
            "execute_operation_60_status",
            "execute_operation_get_api_status",
            "execute_operation_add_fact",
            "execute_operation_get_schema",
        ]
    );
    let facts = tool(&catalog, "GetFacts");
    assert_eq!(facts.kind, OperationKind::Query);
    assert!(facts.read_only);
    assert_eq!(
        facts.file,
        fixtures().join("operations/10_get_facts.graphql")
    );
    assert!(facts.document.contains("fragment FactFields on Fact"));
    let add = tool(&catalog, "AddFact");
    assert_eq!(add.kind, OperationKind::Mutation);
    assert!(!add.read_only);
}

#[test]
fn subscriptions_and_later_duplicates_are_skipped_with_a_warning() {
    let catalog = load();
    let warnings = catalog.warnings();
    assert_eq!(warnings.len(), 2, "{warnings:?}");
    assert!(
        warnings[0].contains("85_fact_added.graphql")
            && warnings[0].contains("subscription FactAdded"),
        "{warnings:?}"
    );
    assert!(
        warnings[1].contains("90_get_facts_again.graphql") && warnings[1].contains("GetFacts"),
        "{warnings:?}"
    );
    // The first file keeps the name: its document has the fragment, the later one does not.
    assert!(
        tool(&catalog, "GetFacts")
            .document
            .contains("...FactFields")
    );
}

#[test]
fn an_unnamed_operation_takes_its_file_stem() {
    let catalog = load();
    let status = tool(&catalog, "60_status");
    assert_eq!(status.tool_name, "execute_operation_60_status");
    assert!(status.requirement.is_empty());
}

#[test]
fn without_the_prefix_a_built_in_name_is_skipped_with_a_warning() {
    let mut settings = settings("operations");
    settings.omit_tool_name_prefix = true;
    let catalog = Catalog::load(&settings).unwrap();
    assert_eq!(
        names(&catalog),
        [
            "get_facts",
            "get_top_secret_facts",
            "list_employees",
            "search",
            "node_by_id",
            "60_status",
            "get_api_status",
            "add_fact",
        ]
    );
    let last = catalog.warnings().last().unwrap();
    assert!(
        last.contains("95_get_schema.graphql") && last.contains("built-in"),
        "{last}"
    );
}

#[test]
fn excluded_mutations_are_not_tools() {
    let mut settings = settings("operations");
    settings.exclude_mutations = true;
    let catalog = Catalog::load(&settings).unwrap();
    assert!(catalog.find("AddFact").is_none());
    assert!(
        catalog
            .tools()
            .iter()
            .all(|t| t.kind == OperationKind::Query)
    );
    assert_eq!(catalog.tools().len(), 8);
}

#[test]
fn the_seeds_example_needs_read_fact_or_read_all() {
    let catalog = load();
    let facts = tool(&catalog, "GetFacts");
    assert_eq!(facts.requirement.to_string(), "read:fact OR read:all");
    let shortfall = facts
        .requirement
        .check(&Token(&["mcp:connect", "mcp:tools:execute"]))
        .unwrap_err();
    assert_eq!(shortfall.missing, ["read:fact"]);
    assert!(facts.requirement.is_met_by(&Token(&["read:all"])));
}

#[test]
fn scopes_follow_fragments_aliases_nesting_and_type_directives() {
    let catalog = load();
    let expect = [
        // A field's own OR-of-ANDs, combined with a field it selects.
        (
            "GetTopSecretFacts",
            "(read:fact AND read:private) OR (read:all AND read:private)",
        ),
        // Aliases, a nested selection and a named fragment: `Employee`'s type
        // directive, `salary` from the fragment, then the second root field.
        (
            "ListEmployees",
            "(read:employee AND read:private AND read:fact) OR (read:employee AND read:private AND read:all)",
        ),
        // Inline fragments on a union's members; `level` returns a scoped enum.
        ("Search", "read:level AND read:employee"),
        // A field on an interface uses the interface field's directive.
        ("NodeById", "read:node AND read:employee"),
        ("AddFact", "write:fact AND read:node"),
        ("GetAPIStatus", "(none)"),
    ];
    for (operation, requirement) in expect {
        assert_eq!(
            tool(&catalog, operation).requirement.to_string(),
            requirement,
            "{operation}"
        );
    }
}

#[test]
fn descriptions_come_from_the_description_string_or_the_leading_comments() {
    let catalog = load();
    assert_eq!(
        tool(&catalog, "GetFacts").description.as_deref(),
        Some("Lists the public facts.\nNeeds read:fact or read:all.")
    );
    let secret = tool(&catalog, "GetTopSecretFacts");
    assert_eq!(
        secret.description.as_deref(),
        Some("Facts marked private, with their private part.")
    );
    // The upstream gets the operation without the description string.
    assert!(!secret.document.contains("\"\"\""));
    assert!(secret.document.contains("query GetTopSecretFacts"));
    assert_eq!(tool(&catalog, "Search").description, None);
}

#[test]
fn input_schemas_follow_the_variables() {
    let catalog = load();
    assert_eq!(
        tool(&catalog, "GetAPIStatus").input_schema,
        json!({ "type": "object", "properties": {} })
    );
    assert_eq!(
        tool(&catalog, "Search").input_schema,
        json!({
            "type": "object",
            "properties": { "text": { "type": "string" } },
            "required": ["text"]
        })
    );
    assert_eq!(
        tool(&catalog, "AddFact").input_schema,
        json!({
            "type": "object",
            "properties": {
                "input": {
                    "type": "object",
                    "properties": {
                        "title": { "type": "string" },
                        "body": { "type": "string" },
                        "level": {
                            "type": "string",
                            "enum": ["PUBLIC", "INTERNAL", "SECRET"],
                            "description": "How confidential a fact is.",
                            "default": "PUBLIC"
                        }
                    },
                    "required": ["title"]
                }
            },
            "required": ["input"]
        })
    );
    // A recursive input type is defined once and referenced.
    assert_eq!(
        tool(&catalog, "ListEmployees").input_schema,
        json!({
            "type": "object",
            "properties": {
                "filter": { "$ref": "#/$defs/EmployeeFilter" },
                "limit": { "type": "integer", "default": 5 }
            },
            "$defs": {
                "EmployeeFilter": {
                    "type": "object",
                    "properties": {
                        "name": { "type": "string", "description": "Part of the name." },
                        "managerId": { "type": "string" },
                        "reports": {
                            "$ref": "#/$defs/EmployeeFilter",
                            "description": "Reports of reports, to any depth."
                        }
                    },
                    "description": "Who to list."
                }
            }
        })
    );
}

#[test]
fn tools_are_found_by_operation_name_or_tool_name() {
    let catalog = load();
    let by_operation = catalog.find("GetAPIStatus").unwrap();
    let by_tool = catalog.find("execute_operation_get_api_status").unwrap();
    assert_eq!(by_operation, by_tool);
    assert_eq!(by_operation.operation_name, "GetAPIStatus");
    assert!(catalog.find("FactAdded").is_none());
    assert!(catalog.find("get_api_status").is_none());
}

#[test]
fn the_schema_is_kept_as_written_and_its_scopes_listed() {
    let catalog = load();
    let written = std::fs::read_to_string(fixtures().join("schema.graphql")).unwrap();
    assert_eq!(catalog.schema_sdl(), written);
    assert_eq!(
        catalog.schema_scopes(),
        [
            "audit:cpu",
            "audit:disk",
            "audit:memory",
            "audit:network",
            "ops:cpu",
            "ops:disk",
            "ops:memory",
            "ops:network",
            "read:all",
            "read:employee",
            "read:fact",
            "read:level",
            "read:node",
            "read:private",
            "write:fact",
        ]
    );
}

#[test]
fn an_operation_over_the_combination_limit_fails_the_load_by_name() {
    let mut settings = settings("too_many");
    settings.max_scope_combinations = 8;
    let error = Catalog::load(&settings).unwrap_err();
    match &error {
        GraphqlError::ToolScopes {
            operation,
            path,
            source,
        } => {
            assert_eq!(operation, "AuditEverything");
            assert_eq!(path, &fixtures().join("too_many/audit_everything.graphql"));
            assert_eq!(
                source,
                &TooManyCombinations {
                    needed: 16,
                    limit: 8
                }
            );
        }
        other => panic!("unexpected error: {other}"),
    }
    assert!(error.to_string().contains("AuditEverything"), "{error}");
    settings.max_scope_combinations = 16;
    let catalog = Catalog::load(&settings).unwrap();
    let audit = catalog.find("AuditEverything").unwrap();
    assert_eq!(audit.requirement.groups().len(), 16);
}

#[test]
fn a_file_that_does_not_validate_fails_the_load_naming_it() {
    let error = Catalog::load(&settings("broken")).unwrap_err();
    let text = error.to_string();
    assert!(matches!(error, GraphqlError::Operation { .. }), "{text}");
    assert!(text.contains("20_unknown_field.graphql"), "{text}");
    assert!(text.contains("uptime"), "{text}");
}

#[test]
fn a_file_must_hold_exactly_one_operation() {
    let folder = tempfile::tempdir().unwrap();
    std::fs::write(
        folder.path().join("two.graphql"),
        "query A { status { healthy } }\nquery B { status { healthy } }",
    )
    .unwrap();
    let settings = CatalogSettings::new(fixtures().join("schema.graphql"), folder.path());
    let text = Catalog::load(&settings).unwrap_err().to_string();
    assert!(
        text.contains("two.graphql") && text.contains("holds 2 operations"),
        "{text}"
    );
}

#[test]
fn missing_files_are_reported_with_their_path() {
    let missing = CatalogSettings::new(
        fixtures().join("nope.graphql"),
        fixtures().join("operations"),
    );
    let error = Catalog::load(&missing).unwrap_err();
    assert!(matches!(error, GraphqlError::Io { .. }), "{error}");
    assert!(error.to_string().contains("nope.graphql"), "{error}");
    let missing = settings("no_such_folder");
    assert!(
        Catalog::load(&missing)
            .unwrap_err()
            .to_string()
            .contains("no_such_folder")
    );
}

#[test]
fn subfolders_and_other_files_are_not_read() {
    let folder = tempfile::tempdir().unwrap();
    let nested = folder.path().join("parked");
    std::fs::create_dir(&nested).unwrap();
    std::fs::write(
        nested.join("a.graphql"),
        "query Parked { status { healthy } }",
    )
    .unwrap();
    std::fs::write(folder.path().join("notes.txt"), "query Notes { nope }").unwrap();
    std::fs::write(
        folder.path().join("b.GQL"),
        "query Loud { status { healthy } }",
    )
    .unwrap();
    let settings = CatalogSettings::new(fixtures().join("schema.graphql"), folder.path());
    let catalog = Catalog::load(&settings).unwrap();
    assert_eq!(names(&catalog), ["execute_operation_loud"]);
}

#[test]
fn a_submitted_query_is_analysed_like_an_operation_file() {
    let catalog = load();
    let analysis = catalog
        .analyze(
            "query Q { a: facts { ... on Fact { private } } }",
            None,
            2048,
        )
        .unwrap();
    assert_eq!(analysis.kind, OperationKind::Query);
    assert_eq!(analysis.operation_name.as_deref(), Some("Q"));
    assert_eq!(
        analysis.requirement.to_string(),
        "(read:fact AND read:private) OR (read:all AND read:private)"
    );
    let mutation = catalog
        .analyze(
            "mutation M { addFact(input: { title: \"t\" }) { title } } query Q { status { healthy } }",
            Some("M"),
            2048,
        )
        .unwrap();
    assert_eq!(mutation.kind, OperationKind::Mutation);
    assert_eq!(mutation.requirement.to_string(), "write:fact");
    let subscription = catalog
        .analyze("subscription { factAdded { title } }", None, 2048)
        .unwrap();
    assert_eq!(subscription.kind, OperationKind::Subscription);
    assert_eq!(subscription.operation_name, None);
    assert_eq!(subscription.requirement.to_string(), "read:fact");
}

#[test]
fn a_submitted_query_that_is_invalid_or_ambiguous_is_refused() {
    let catalog = load();
    for (query, name, expected) in [
        ("{ status { uptime } }", None, "uptime"),
        ("{ status {", None, "line 1"),
        (
            "query A { status { healthy } } query B { status { healthy } }",
            None,
            "Ambiguous",
        ),
        (
            "query A { status { healthy } }",
            Some("B"),
            "No operation named 'B'",
        ),
    ] {
        let error = catalog.analyze(query, name, 2048).unwrap_err();
        assert!(
            matches!(error, GraphqlError::InvalidQuery { .. }),
            "{error}"
        );
        assert!(error.to_string().contains(expected), "{query}: {error}");
    }
}

#[test]
fn a_submitted_query_over_the_limit_is_refused_with_a_clear_reason() {
    let catalog = load();
    let query = "{ audit { cpu memory disk network } }";
    let error = catalog.analyze(query, None, 8).unwrap_err();
    assert!(
        matches!(error, GraphqlError::QueryScopes { source } if source.needed == 16),
        "{error}"
    );
    assert_eq!(
        error.to_string(),
        "the query needs 16 scope combinations, more than the limit of 8"
    );
    assert_eq!(
        catalog
            .analyze(query, None, 16)
            .unwrap()
            .requirement
            .groups()
            .len(),
        16
    );
}

#[test]
fn names_that_snake_case_alike_keep_the_first_and_unusable_names_fail() {
    let folder = tempfile::tempdir().unwrap();
    std::fs::write(
        folder.path().join("a.graphql"),
        "query getStatus { status { healthy } }",
    )
    .unwrap();
    std::fs::write(
        folder.path().join("b.graphql"),
        "query GetStatus { status { healthy } }",
    )
    .unwrap();
    let settings = CatalogSettings::new(fixtures().join("schema.graphql"), folder.path());
    let catalog = Catalog::load(&settings).unwrap();
    assert_eq!(names(&catalog), ["execute_operation_get_status"]);
    assert_eq!(
        catalog
            .find("execute_operation_get_status")
            .unwrap()
            .operation_name,
        "getStatus"
    );
    let warning = catalog.warnings().join("\n");
    assert!(
        warning.contains("b.graphql") && warning.contains("GetStatus"),
        "{warning}"
    );
    // An unnamed operation in a file whose stem has no letter or digit.
    std::fs::write(folder.path().join("---.graphql"), "{ status { healthy } }").unwrap();
    let error = Catalog::load(&settings).unwrap_err().to_string();
    assert!(
        error.contains("---.graphql") && error.contains("no tool name"),
        "{error}"
    );
}
