//! The requirements that apply to one message, each named by where it is written:
//! what `mcpgate explain` shows beside the decision.

use serde::Serialize;

use super::{Item, Level, Policy, Target};
use crate::auth::Scopes;

/// One requirement that applies, and whether the caller meets it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AppliedRequirement {
    /// `every request`, `method`, or `tool`/`resource`/`prompt`.
    pub level: &'static str,
    /// Where it is configured: `scopes.initialize`, `scopes.tools_call`,
    /// `scopes.tools.admin_*`, `@requiresScopes of operation GetFacts`.
    pub source: String,
    /// OR of AND-groups; empty when nothing is required.
    pub groups: Vec<Vec<String>>,
    pub(crate) met: bool,
}

impl Policy {
    /// Every requirement that applies to `target`, the every-request level first,
    /// then its method's level, then each rule matching its item.
    pub fn applied_requirements(
        &self,
        scopes: &Scopes,
        target: Target<'_>,
    ) -> Vec<AppliedRequirement> {
        let granted = self.grant(scopes);
        let applied =
            |level, source: String, requirement: &super::Requirement| AppliedRequirement {
                level,
                source,
                groups: requirement.groups().to_vec(),
                met: granted.is_everything() || requirement.is_met_by(&granted),
            };
        let mut out = vec![applied(
            "every request",
            "scopes.initialize".to_owned(),
            &self.every_request,
        )];
        if let Some(key) = level_key(target.level) {
            out.push(applied(
                "method",
                format!("scopes.{key}"),
                self.level(target.level),
            ));
        }
        if let Some(item) = target.item {
            let (kind, name, rules) = match item {
                Item::Tool(name) => ("tool", name, &self.tools),
                Item::Resource(uri) => ("resource", uri, &self.resources),
                Item::Prompt(name) => ("prompt", name, &self.prompts),
            };
            let section = match item {
                Item::Tool(_) => "tools",
                Item::Resource(_) => "resources",
                Item::Prompt(_) => "prompts",
            };
            for rule in rules.matching(name) {
                out.push(applied(
                    kind,
                    format!("scopes.{section}.{}", rule.pattern),
                    &rule.requirement,
                ));
            }
            if let Item::Tool(name) = item
                && let Some(rule) = self.declared.get(name)
            {
                out.push(applied(kind, rule.pattern.clone(), &rule.requirement));
            }
        }
        out
    }
}

/// The `scopes:` key of a method level (`None` for the connection, which has only
/// the every-request level).
fn level_key(level: Level) -> Option<&'static str> {
    Some(match level {
        Level::Connection => return None,
        Level::ToolsList => "tools_list",
        Level::ToolsCall => "tools_call",
        Level::ResourcesList => "resources_list",
        Level::ResourcesTemplatesList => "resources_templates_list",
        Level::ResourcesRead => "resources_read",
        Level::PromptsList => "prompts_list",
        Level::PromptsGet => "prompts_get",
        Level::CompletionComplete => "completion_complete",
        Level::Default => "default",
    })
}
