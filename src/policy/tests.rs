//! Decisions of a whole policy, and property tests of the algebra underneath.

use proptest::prelude::*;

use super::*;
use crate::config::load_from_str;

fn policy(scopes_yaml: &str) -> Result<Policy, ConfigError> {
    let config = load_from_str(&format!("scopes:\n{scopes_yaml}"))?;
    Policy::from_config(&config)
}

fn token(scopes: &str) -> Scopes {
    Scopes::new(scopes.split(' '))
}

const SEED_POLICY: &str = "
  initialize: [mcp:connect]
  tools_list: [mcp:tools:read]
  tools_call: [mcp:tools:execute]
  tools:
    execute_operation_get_top_secret_facts: [[read:fact], [read:all]]
";

fn call(name: &str) -> Target<'_> {
    Target {
        level: Level::ToolsCall,
        item: Some(Item::Tool(name)),
    }
}

fn denial(policy: &Policy, scopes: &str, targets: &[Target<'_>], echo: bool) -> Denial {
    policy
        .authorize(&token(scopes), targets, echo)
        .expect_err("should be denied")
}

#[test]
fn the_seeds_examples_hold() {
    let policy = policy(SEED_POLICY).unwrap();
    let tool = call("execute_operation_get_top_secret_facts");
    let denied = denial(&policy, "mcp:connect mcp:tools:execute", &[tool], false);
    assert_eq!(denied.challenge_scopes, ["read:fact"]);
    assert_eq!(
        denied.description,
        "insufficient scopes for tool execute_operation_get_top_secret_facts"
    );
    let denied = denial(&policy, "mcp:connect", &[call("echo")], false);
    assert_eq!(denied.challenge_scopes, ["mcp:tools:execute"]);
    assert_eq!(
        denied.description,
        "missing required scopes: mcp:tools:execute"
    );
    assert!(
        policy
            .authorize(
                &token("mcp:connect mcp:tools:execute read:all"),
                &[tool],
                false
            )
            .is_ok()
    );
    assert_eq!(
        policy.scopes_supported(),
        [
            "mcp:connect",
            "mcp:tools:execute",
            "mcp:tools:read",
            "read:all",
            "read:fact"
        ]
    );
    assert_eq!(policy.connect_scopes(), ["mcp:connect"]);
}

#[test]
fn one_challenge_names_every_level_that_is_missing() {
    let policy = policy(SEED_POLICY).unwrap();
    let tool = call("execute_operation_get_top_secret_facts");
    let denied = denial(&policy, "other", &[tool], false);
    assert_eq!(
        denied.challenge_scopes,
        ["mcp:connect", "mcp:tools:execute", "read:fact"]
    );
    assert_eq!(
        denied.description,
        "missing required scopes: mcp:connect, mcp:tools:execute, read:fact"
    );
}

#[test]
fn echoing_token_scopes_puts_them_first_without_duplicates() {
    let policy = policy(SEED_POLICY).unwrap();
    let tool = call("execute_operation_get_top_secret_facts");
    let denied = denial(&policy, "mcp:connect mcp:tools:write", &[tool], true);
    assert_eq!(
        denied.challenge_scopes,
        [
            "mcp:connect",
            "mcp:tools:write",
            "mcp:tools:execute",
            "read:fact"
        ]
    );
}

#[test]
fn offline_access_is_echoed_only_when_a_rule_names_it() {
    let seed = policy(SEED_POLICY).unwrap();
    let tool = call("execute_operation_get_top_secret_facts");
    let denied = denial(&seed, "mcp:connect offline_access", &[tool], true);
    assert_eq!(
        denied.challenge_scopes,
        ["mcp:connect", "mcp:tools:execute", "read:fact"]
    );
    assert!(
        !seed
            .scopes_supported()
            .iter()
            .any(|s| s == "offline_access")
    );
    let configured = policy(&format!("{SEED_POLICY}\n  prompts_list: [offline_access]")).unwrap();
    let denied = denial(&configured, "mcp:connect offline_access", &[tool], true);
    assert_eq!(
        denied.challenge_scopes,
        [
            "mcp:connect",
            "offline_access",
            "mcp:tools:execute",
            "read:fact"
        ]
    );
    assert!(
        configured
            .scopes_supported()
            .iter()
            .any(|s| s == "offline_access")
    );
}

#[test]
fn hierarchy_counts_when_deciding_and_choosing_the_challenge() {
    let policy = policy(
        "
  initialize: mcp:connect
  tools_call: mcp:tools:execute
  tools:
    get-env: [[mcp:admin, mcp:root], [read:env, audit]]
  hierarchy:
    mcp:admin: [mcp:tools]
    mcp:tools: [mcp:tools:execute, mcp:tools:read]
",
    )
    .unwrap();
    let tool = call("get-env");
    assert!(
        policy
            .authorize(&token("mcp:connect mcp:admin mcp:root"), &[tool], false)
            .is_ok()
    );
    // mcp:tools implies execute but not admin: only the tool rule is missing.
    let denied = denial(&policy, "mcp:connect mcp:tools read:env", &[tool], false);
    assert_eq!(denied.challenge_scopes, ["audit"]);
    assert_eq!(denied.description, "insufficient scopes for tool get-env");
}

#[test]
fn every_matching_rule_applies_and_globs_cover_families() {
    let policy = policy(
        "
  tools:
    \"db_*\": db:read
    db_drop: db:admin
",
    )
    .unwrap();
    let denied = denial(&policy, "db:read", &[call("db_drop")], false);
    assert_eq!(denied.challenge_scopes, ["db:admin"]);
    let denied = denial(&policy, "", &[call("db_drop")], false);
    assert_eq!(denied.challenge_scopes, ["db:admin", "db:read"]);
    assert!(
        policy
            .authorize(&token("db:read"), &[call("db_query")], false)
            .is_ok()
    );
    assert!(policy.authorize(&token(""), &[call("echo")], false).is_ok());
}

#[test]
fn unknown_methods_get_the_default_level_and_the_protocol_ones_do_not() {
    let policy = policy("  initialize: c\n  default: mcp:other\n").unwrap();
    let other = Target {
        level: Level::Default,
        item: None,
    };
    assert_eq!(
        denial(&policy, "c", &[other], false).challenge_scopes,
        ["mcp:other"]
    );
    assert!(
        policy
            .authorize(&token("c"), &[Target::CONNECTION], false)
            .is_ok()
    );
}

#[test]
fn a_batch_needs_the_product_of_its_messages() {
    let policy = policy(SEED_POLICY).unwrap();
    let batch = [
        Target {
            level: Level::ToolsList,
            item: None,
        },
        call("echo"),
    ];
    let denied = denial(&policy, "mcp:connect", &batch, false);
    assert_eq!(
        denied.challenge_scopes,
        ["mcp:tools:read", "mcp:tools:execute"]
    );
    assert!(
        policy
            .authorize(
                &token("mcp:connect mcp:tools:read mcp:tools:execute"),
                &batch,
                false
            )
            .is_ok()
    );
}

#[test]
fn filtering_looks_at_the_items_own_rules() {
    let policy = policy(SEED_POLICY).unwrap();
    let scopes = token("mcp:connect");
    let granted = policy.grant(&scopes);
    assert!(policy.may_use(&granted, Item::Tool("echo")));
    assert!(!policy.may_use(
        &granted,
        Item::Tool("execute_operation_get_top_secret_facts")
    ));
    assert!(policy.filters(ItemKind::Tool));
    assert!(!policy.filters(ItemKind::Prompt));
    let everything = Scopes::all();
    assert!(policy.may_use(
        &policy.grant(&everything),
        Item::Tool("execute_operation_get_top_secret_facts")
    ));
}

#[test]
fn what_could_differ_between_callers() {
    let seed = policy(SEED_POLICY).unwrap();
    assert!(seed.could_filter(ItemKind::Tool));
    assert!(!seed.could_filter(ItemKind::Resource));
    assert!(!seed.read_could_be_refused("file:///any"));
    let reviewed =
        policy("  resources:\n    \"file:///open/*\": []\n    \"file:///secret/*\": [admin]\n")
            .unwrap();
    assert!(reviewed.read_could_be_refused("file:///secret/k"));
    assert!(
        !reviewed.read_could_be_refused("file:///open/a"),
        "a rule that requires nothing refuses no one"
    );
    let level = policy("  resources_read: [read]\n").unwrap();
    assert!(level.read_could_be_refused("file:///any"));
}

#[test]
fn exceeding_the_combination_limit_is_a_load_error_naming_the_rule() {
    let config = load_from_str(
        "
auth: { oauth: { max_scope_combinations: 4 } }
scopes:
  initialize: [[a], [b]]
  tools_call: [[c], [d]]
  tools:
    wide: [[p], [q]]
",
    )
    .unwrap();
    let error = Policy::from_config(&config).unwrap_err().to_string();
    assert_eq!(
        error,
        "scopes.tools.wide: combined with scopes.initialize and scopes.tools_call it needs 8 \
         scope combinations, more than the limit of 4 (auth.oauth.max_scope_combinations); \
         simplify the rule or raise the limit"
    );
}

#[test]
fn a_cyclic_hierarchy_is_a_load_error() {
    let error = policy("  hierarchy: { a: [b], b: [a] }\n").unwrap_err();
    assert_eq!(error.to_string(), "scopes.hierarchy: cycle: a -> b -> a");
}

// ---- properties of the algebra ----

fn scope() -> impl Strategy<Value = String> {
    prop::sample::select(vec!["a", "b", "c", "d", "e"]).prop_map(str::to_owned)
}

fn groups() -> impl Strategy<Value = Vec<Vec<String>>> {
    prop::collection::vec(prop::collection::vec(scope(), 1..4), 0..5)
}

fn scope_set() -> impl Strategy<Value = Vec<String>> {
    prop::collection::vec(scope(), 0..5)
}

struct Set<'a>(&'a [String]);

impl Holds for Set<'_> {
    fn holds(&self, scope: &str) -> bool {
        self.0.iter().any(|s| s == scope)
    }
}

/// The meaning of an unreduced OR of ANDs.
fn satisfies(groups: &[Vec<String>], granted: &[String]) -> bool {
    groups.is_empty() || groups.iter().any(|g| g.iter().all(|s| granted.contains(s)))
}

proptest! {
    #[test]
    fn reduction_never_changes_who_is_satisfied(groups in groups(), granted in scope_set()) {
        let reduced = Requirement::any_of(groups.clone());
        prop_assert_eq!(reduced.is_met_by(&Set(&granted)), satisfies(&groups, &granted));
        prop_assert!(reduced.groups().len() <= groups.len());
    }

    #[test]
    fn the_product_is_met_exactly_when_both_are(left in groups(), right in groups(), granted in scope_set()) {
        let (left, right) = (Requirement::any_of(left), Requirement::any_of(right));
        let product = left.and(&right, usize::MAX).unwrap();
        let set = Set(&granted);
        prop_assert_eq!(product.is_met_by(&set), left.is_met_by(&set) && right.is_met_by(&set));
    }

    #[test]
    fn granting_the_challenge_satisfies_the_requirement(groups in groups(), granted in scope_set()) {
        let requirement = Requirement::any_of(groups);
        if let Err(shortfall) = requirement.check(&Set(&granted)) {
            let mut more = granted.clone();
            more.extend(shortfall.missing.iter().cloned());
            prop_assert!(requirement.is_met_by(&Set(&more)));
            // And nothing cheaper would: no group misses fewer scopes.
            for group in requirement.groups() {
                let missing = group.iter().filter(|s| !granted.contains(s)).count();
                prop_assert!(missing >= shortfall.missing.len());
            }
        } else {
            prop_assert!(requirement.is_met_by(&Set(&granted)));
        }
    }

    #[test]
    fn hierarchy_closure_is_monotone(
        edges in prop::collection::vec((scope(), scope()), 0..6),
        smaller in scope_set(),
        extra in scope_set(),
        probe in scope(),
    ) {
        let mut written: std::collections::BTreeMap<String, Vec<String>> = Default::default();
        for (broad, narrow) in edges {
            written.entry(broad).or_default().push(narrow);
        }
        // Cyclic inputs are refused at load; the property is about the accepted ones.
        if let Ok(hierarchy) = Hierarchy::new(&written) {
            let small = Scopes::new(smaller.clone());
            let large = Scopes::new(smaller.into_iter().chain(extra));
            let (small, large) = (hierarchy.grant(&small), hierarchy.grant(&large));
            if small.holds(&probe) {
                prop_assert!(large.holds(&probe));
            }
            // Transitive: a broad scope grants what its narrower scopes grant.
            for (broad, narrower) in &written {
                let only = Scopes::new([broad.clone()]);
                let granted = hierarchy.grant(&only);
                for scope in narrower {
                    prop_assert!(granted.holds(scope));
                    for deeper in written.get(scope).into_iter().flatten() {
                        prop_assert!(granted.holds(deeper));
                    }
                }
            }
        }
    }
}

fn declared(tool: &str, groups: &[&[&str]]) -> DeclaredTool {
    DeclaredTool {
        tool: tool.to_owned(),
        requirement: Requirement::any_of(groups.iter().map(|group| group.to_vec())),
        source: format!("@requiresScopes of operation {tool}"),
        key: "upstream.graphql.operations".to_owned(),
        subject: format!("operation {tool}"),
    }
}

#[test]
fn declared_tools_apply_like_rules_of_their_own_name() {
    let policy = policy("  initialize: [mcp:connect]\n  tools_call: [mcp:tools:execute]\n")
        .unwrap()
        .with_declared_tools(
            vec![
                declared(
                    "execute_operation_get_facts",
                    &[&["read:fact"], &["read:all"]],
                ),
                declared("execute_operation_status", &[]),
            ],
            vec!["write:fact".to_owned()],
        )
        .unwrap();
    let tool = call("execute_operation_get_facts");
    let denied = denial(&policy, "mcp:connect mcp:tools:execute", &[tool], false);
    assert_eq!(denied.challenge_scopes, ["read:fact"]);
    assert_eq!(
        denied.description,
        "insufficient scopes for tool execute_operation_get_facts"
    );
    let allowed = token("mcp:connect mcp:tools:execute read:all");
    assert!(policy.authorize(&allowed, &[tool], false).is_ok());
    assert!(policy.filters(ItemKind::Tool));
    let granted = policy.grant(&allowed);
    assert!(policy.may_use(&granted, Item::Tool("execute_operation_get_facts")));
    let plain = token("mcp:connect mcp:tools:execute");
    let granted = policy.grant(&plain);
    assert!(!policy.may_use(&granted, Item::Tool("execute_operation_get_facts")));
    assert!(policy.may_use(&granted, Item::Tool("execute_operation_status")));
    assert_eq!(
        policy.scopes_supported(),
        [
            "mcp:connect",
            "mcp:tools:execute",
            "read:all",
            "read:fact",
            "write:fact"
        ]
    );
}

#[test]
fn a_declared_tool_adds_to_a_configured_rule_of_the_same_name() {
    let policy = policy("  tools:\n    execute_operation_*: [mcp:ops]\n")
        .unwrap()
        .with_declared_tools(
            vec![declared("execute_operation_get_facts", &[&["read:fact"]])],
            Vec::new(),
        )
        .unwrap();
    let tool = call("execute_operation_get_facts");
    let denied = denial(&policy, "read:fact", &[tool], false);
    assert_eq!(denied.challenge_scopes, ["mcp:ops"]);
    let denied = denial(&policy, "mcp:ops", &[tool], false);
    assert_eq!(denied.challenge_scopes, ["read:fact"]);
    assert!(
        policy
            .authorize(&token("mcp:ops read:fact"), &[tool], false)
            .is_ok()
    );
}

#[test]
fn a_declared_tool_over_the_limit_with_its_levels_names_itself() {
    let config = load_from_str(
        "auth: { oauth: { max_scope_combinations: 4 } }\nscopes:\n  tools_call: [[a], [b]]\n",
    )
    .unwrap();
    let error = Policy::from_config(&config)
        .unwrap()
        .with_declared_tools(
            vec![declared(
                "execute_operation_wide",
                &[&["x"], &["y"], &["z"]],
            )],
            Vec::new(),
        )
        .unwrap_err()
        .to_string();
    assert!(
        error.starts_with("upstream.graphql.operations: operation execute_operation_wide: "),
        "{error}"
    );
    assert!(error.contains("needs 6 scope combinations"), "{error}");
}

#[test]
fn a_requirement_known_at_request_time_is_challenged_like_a_tool_rule() {
    let policy =
        policy("  tools_call: [mcp:tools:execute]\n  hierarchy: { read:all: [read:fact] }\n")
            .unwrap();
    let requirement = Requirement::any_of([vec!["read:fact", "read:private"], vec!["read:all"]]);
    let item = Item::Tool("execute_graphql");
    let denied = policy
        .authorize_item(&token("mcp:tools:execute"), item, &requirement, false)
        .unwrap_err();
    assert_eq!(denied.challenge_scopes, ["read:all"]);
    assert_eq!(
        denied.description,
        "insufficient scopes for tool execute_graphql"
    );
    let denied = policy
        .authorize_item(
            &token("mcp:tools:execute read:fact"),
            item,
            &requirement,
            true,
        )
        .unwrap_err();
    assert_eq!(
        denied.challenge_scopes,
        ["mcp:tools:execute", "read:fact", "read:private"]
    );
    assert!(
        policy
            .authorize_item(&token("read:all"), item, &requirement, false)
            .is_ok()
    );
    assert!(
        policy
            .authorize_item(&Scopes::all(), item, &requirement, false)
            .is_ok()
    );
}
