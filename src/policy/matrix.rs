//! The effective policy against what an upstream actually offers (`mcpgate policy`):
//! each tool, prompt and resource with the scope groups it requires, and drift —
//! items no rule names (they get only their method's level) and rules that match
//! nothing the upstream has (renamed or removed items, mistyped patterns).

use std::fmt;

use serde::Serialize;

use super::{Item, ItemKind, Level, NamedRules, Policy, Target};

/// What the upstream lists, by name (URIs and URI templates for resources).
#[derive(Debug, Clone, Copy, Default)]
pub struct Offered<'a> {
    /// Tool names from `tools/list`.
    pub tools: &'a [String],
    /// Prompt names from `prompts/list`.
    pub prompts: &'a [String],
    /// Resource URIs from `resources/list`.
    pub resources: &'a [String],
    /// URI templates from `resources/templates/list`.
    pub resource_templates: &'a [String],
}

/// The effective policy per listed item, as `mcpgate policy` prints it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Matrix {
    /// What every request needs (OR of AND-groups).
    pub every_request: Vec<Vec<String>>,
    pub(crate) tools: Vec<Entry>,
    pub(crate) prompts: Vec<Entry>,
    pub(crate) resources: Vec<Entry>,
    pub(crate) resource_templates: Vec<Entry>,
    /// Items no rule names and rules that match nothing; empty when the two agree.
    pub drift: Drift,
}

/// One item and what using it takes, all levels combined.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Entry {
    pub(crate) name: String,
    /// OR of AND-groups; empty when nothing is required. Absent when the rules that
    /// match it combine past `max_scope_combinations`: each rule is still enforced on
    /// its own, but no single combined list can be shown.
    pub requires: Option<Vec<Vec<String>>>,
    /// The per-item rules (keys under `scopes.tools` etc.) that apply.
    pub rules: Vec<String>,
}

/// Where the rules and the upstream's lists disagree; nothing here is an error.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Drift {
    /// Upstream tools no per-tool rule names: they fall back to `tools_call` alone.
    pub tools_without_rule: Vec<String>,
    /// `scopes.tools` keys that match no upstream tool.
    pub tool_rules_matching_nothing: Vec<String>,
    pub(crate) prompts_without_rule: Vec<String>,
    pub(crate) prompt_rules_matching_nothing: Vec<String>,
    pub(crate) resources_without_rule: Vec<String>,
    pub(crate) resource_templates_without_rule: Vec<String>,
    /// `scopes.resources` keys that match no upstream resource or template.
    pub resource_rules_matching_nothing: Vec<String>,
}

impl Drift {
    /// No drift: every item has a rule and every rule matches an item.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

impl Matrix {
    /// Combines every level that applies to each offered item, and finds the drift.
    pub fn build(policy: &Policy, offered: Offered<'_>) -> Self {
        let entries = |names: &[String], level: Level, kind: ItemKind| -> Vec<Entry> {
            names
                .iter()
                .map(|name| entry(policy, name, level, kind))
                .collect()
        };
        let tools = entries(offered.tools, Level::ToolsCall, ItemKind::Tool);
        let prompts = entries(offered.prompts, Level::PromptsGet, ItemKind::Prompt);
        let resources = entries(offered.resources, Level::ResourcesRead, ItemKind::Resource);
        let resource_templates = entries(
            offered.resource_templates,
            Level::ResourcesRead,
            ItemKind::Resource,
        );
        let unruled = |entries: &[Entry]| -> Vec<String> {
            entries
                .iter()
                .filter(|entry| entry.rules.is_empty())
                .map(|entry| entry.name.clone())
                .collect()
        };
        let drift = Drift {
            tools_without_rule: unruled(&tools),
            tool_rules_matching_nothing: unmatched(&policy.tools, &[&tools]),
            prompts_without_rule: unruled(&prompts),
            prompt_rules_matching_nothing: unmatched(&policy.prompts, &[&prompts]),
            resources_without_rule: unruled(&resources),
            resource_templates_without_rule: unruled(&resource_templates),
            resource_rules_matching_nothing: unmatched(
                &policy.resources,
                &[&resources, &resource_templates],
            ),
        };
        Self {
            every_request: policy.every_request.groups().to_vec(),
            tools,
            prompts,
            resources,
            resource_templates,
            drift,
        }
    }
}

fn entry(policy: &Policy, name: &str, level: Level, kind: ItemKind) -> Entry {
    let item = match kind {
        ItemKind::Tool => Item::Tool(name),
        ItemKind::Prompt => Item::Prompt(name),
        ItemKind::Resource => Item::Resource(name),
    };
    let target = Target {
        level,
        item: Some(item),
    };
    Entry {
        name: name.to_owned(),
        requires: policy
            .requirement_for(&[target])
            .ok()
            .map(|requirement| requirement.groups().to_vec()),
        rules: policy
            .item_rules(item)
            .iter()
            .map(|rule| rule.pattern.clone())
            .collect(),
    }
}

fn unmatched(rules: &NamedRules, offered: &[&[Entry]]) -> Vec<String> {
    rules
        .rules()
        .iter()
        .filter(|rule| {
            !offered
                .iter()
                .flat_map(|entries| entries.iter())
                .any(|entry| entry.rules.contains(&rule.pattern))
        })
        .map(|rule| rule.pattern.clone())
        .collect()
}

impl fmt::Display for Matrix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "every request: {}",
            groups_text(Some(&self.every_request))
        )?;
        let sections = [
            ("tools", &self.tools),
            ("prompts", &self.prompts),
            ("resources", &self.resources),
            ("resource templates", &self.resource_templates),
        ];
        for (title, entries) in sections {
            writeln!(f, "\n{title} ({}):", entries.len())?;
            let width = entries.iter().map(|e| e.name.len()).max().unwrap_or(0);
            for entry in entries {
                let rules = if entry.rules.is_empty() {
                    "no rule of its own".to_owned()
                } else {
                    format!("rules: {}", entry.rules.join(", "))
                };
                writeln!(
                    f,
                    "  {:width$}  {}   [{rules}]",
                    entry.name,
                    groups_text(entry.requires.as_deref())
                )?;
            }
        }
        writeln!(f, "\ndrift:")?;
        if self.drift.is_empty() {
            return writeln!(
                f,
                "  none: every item has a rule and every rule matches something"
            );
        }
        let lines = [
            (
                "tools no rule names (tools_call alone applies)",
                &self.drift.tools_without_rule,
            ),
            (
                "scopes.tools keys matching no tool",
                &self.drift.tool_rules_matching_nothing,
            ),
            (
                "prompts no rule names (prompts_get alone applies)",
                &self.drift.prompts_without_rule,
            ),
            (
                "scopes.prompts keys matching no prompt",
                &self.drift.prompt_rules_matching_nothing,
            ),
            (
                "resources no rule names (resources_read alone applies)",
                &self.drift.resources_without_rule,
            ),
            (
                "resource templates no rule names",
                &self.drift.resource_templates_without_rule,
            ),
            (
                "scopes.resources keys matching no resource or template",
                &self.drift.resource_rules_matching_nothing,
            ),
        ];
        for (label, names) in lines {
            if !names.is_empty() {
                writeln!(f, "  {label}: {}", names.join(", "))?;
            }
        }
        Ok(())
    }
}

/// `a AND b  OR  c`, `(nothing)`, or the over-limit note.
fn groups_text(groups: Option<&[Vec<String>]>) -> String {
    match groups {
        None => "(each rule applies; combined they exceed max_scope_combinations)".to_owned(),
        Some([]) => "(nothing)".to_owned(),
        Some(groups) => groups
            .iter()
            .map(|group| group.join(" AND "))
            .collect::<Vec<_>>()
            .join("  OR  "),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::load_from_str;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn the_matrix_combines_levels_and_reports_drift() {
        let config = load_from_str(
            "
scopes:
  initialize: mcp:connect
  tools_call: mcp:tools:execute
  tools:
    get-env: [[mcp:admin], [read:env]]
    old_tool: mcp:admin
    \"db_*\": db:read
  resources:
    \"file:///secret/*\": mcp:admin
",
        )
        .unwrap();
        let policy = Policy::from_config(&config).unwrap();
        let tools = names(&["echo", "get-env", "db_query"]);
        let templates = names(&["file:///secret/{name}"]);
        let matrix = Matrix::build(
            &policy,
            Offered {
                tools: &tools,
                resource_templates: &templates,
                ..Offered::default()
            },
        );
        assert_eq!(
            matrix.tools[1],
            Entry {
                name: "get-env".into(),
                requires: Some(vec![
                    names(&["mcp:connect", "mcp:tools:execute", "mcp:admin"]),
                    names(&["mcp:connect", "mcp:tools:execute", "read:env"]),
                ]),
                rules: names(&["get-env"]),
            }
        );
        assert_eq!(matrix.drift.tools_without_rule, ["echo"]);
        assert_eq!(matrix.drift.tool_rules_matching_nothing, ["old_tool"]);
        assert!(matrix.drift.resource_rules_matching_nothing.is_empty());
        let text = matrix.to_string();
        assert!(
            text.contains("get-env   mcp:connect AND mcp:tools:execute AND mcp:admin  OR  mcp:connect AND mcp:tools:execute AND read:env   [rules: get-env]"),
            "{text}"
        );
        assert!(
            text.contains("scopes.tools keys matching no tool: old_tool"),
            "{text}"
        );
    }
}
