//! The `scopes:` section: which scopes each level of an MCP request needs.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer};

use super::ConfigError;
use super::checks::check_scope_token;

/// Scope rules. Every level that applies to a message is required at once (AND);
/// within one level, any one AND-group suffices (OR).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScopesConfig {
    /// Every HTTP request to the MCP endpoint (POST, GET, DELETE).
    #[serde(default)]
    pub initialize: RequirementSpec,
    #[serde(default)]
    pub(crate) tools_list: RequirementSpec,
    #[serde(default)]
    pub(crate) tools_call: RequirementSpec,
    #[serde(default)]
    pub(crate) resources_list: RequirementSpec,
    #[serde(default)]
    pub(crate) resources_templates_list: RequirementSpec,
    #[serde(default)]
    pub(crate) resources_read: RequirementSpec,
    #[serde(default)]
    pub(crate) prompts_list: RequirementSpec,
    #[serde(default)]
    pub(crate) prompts_get: RequirementSpec,
    #[serde(default)]
    pub(crate) completion_complete: RequirementSpec,
    /// Any other request method (the protocol's own `initialize` and `ping` excepted),
    /// including methods mcpgate does not know.
    #[serde(default)]
    pub default: RequirementSpec,
    /// Per tool, by exact name or glob pattern.
    #[serde(default)]
    pub tools: BTreeMap<String, RequirementSpec>,
    /// Per resource, by URI glob pattern.
    #[serde(default)]
    pub resources: BTreeMap<String, RequirementSpec>,
    /// Per prompt, by exact name or glob pattern.
    #[serde(default)]
    pub prompts: BTreeMap<String, RequirementSpec>,
    /// A broad scope implies the narrower ones listed (transitively).
    #[serde(default)]
    pub hierarchy: BTreeMap<String, Vec<String>>,
    /// What a request for a method MCP does not define gets.
    #[serde(default)]
    pub unknown_methods: UnknownMethods,
}

/// `scopes.unknown_methods`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UnknownMethods {
    /// Judged by the `default` level and forwarded: an upstream's own extension
    /// methods keep working behind mcpgate.
    #[default]
    Default,
    /// Refused with `-32601` and never forwarded.
    Refuse,
}

impl ScopesConfig {
    /// The method levels with their key names, in the order they are documented.
    pub fn method_levels(&self) -> [(&'static str, &RequirementSpec); 10] {
        [
            ("initialize", &self.initialize),
            ("tools_list", &self.tools_list),
            ("tools_call", &self.tools_call),
            ("resources_list", &self.resources_list),
            ("resources_templates_list", &self.resources_templates_list),
            ("resources_read", &self.resources_read),
            ("prompts_list", &self.prompts_list),
            ("prompts_get", &self.prompts_get),
            ("completion_complete", &self.completion_complete),
            ("default", &self.default),
        ]
    }
}

/// One requirement as written: an OR of AND-groups. In YAML:
/// `mcp:connect` (one scope), `[a, b]` (one group: a AND b) or `[[a], [b, c]]`
/// (a OR (b AND c)). `[]` requires nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequirementSpec {
    pub(crate) groups: Vec<Vec<String>>,
}

impl RequirementSpec {
    /// No group at all (`[]`): nothing is required.
    pub fn is_empty(&self) -> bool {
        self.groups.is_empty()
    }

    /// Both requirements at once: every group of one joined with every group of
    /// the other (nothing required is the identity).
    #[must_use]
    pub(crate) fn and(&self, other: &Self) -> Self {
        if self.is_empty() {
            return other.clone();
        }
        if other.is_empty() {
            return self.clone();
        }
        let mut groups = Vec::with_capacity(self.groups.len() * other.groups.len());
        for left in &self.groups {
            for right in &other.groups {
                let mut group = left.clone();
                group.extend(right.iter().filter(|scope| !left.contains(scope)).cloned());
                groups.push(group);
            }
        }
        Self { groups }
    }

    pub(crate) fn scopes(&self) -> impl Iterator<Item = &str> {
        self.groups.iter().flatten().map(String::as_str)
    }
}

impl<'de> Deserialize<'de> for RequirementSpec {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Item {
            Scope(String),
            Group(Vec<String>),
        }
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Written {
            One(String),
            Many(Vec<Item>),
        }
        let written = Written::deserialize(deserializer).map_err(|_| {
            serde::de::Error::custom(
                "expected a scope, a list of scopes (all required) or a list of lists (any one list suffices)",
            )
        })?;
        let items = match written {
            Written::One(scope) => return Ok(Self::one_group(vec![scope])),
            Written::Many(items) => items,
        };
        let groups_written = items
            .iter()
            .filter(|item| matches!(item, Item::Group(_)))
            .count();
        if groups_written == 0 {
            let scopes = items
                .into_iter()
                .filter_map(|item| match item {
                    Item::Scope(scope) => Some(scope),
                    Item::Group(_) => None,
                })
                .collect();
            return Ok(Self::one_group(scopes));
        }
        if groups_written != items.len() {
            return Err(serde::de::Error::custom(
                "mixes scopes and lists of scopes: write [a, b] for a AND b, or [[a], [b]] for a OR b",
            ));
        }
        let mut groups = Vec::with_capacity(items.len());
        for item in items {
            if let Item::Group(group) = item {
                if group.is_empty() {
                    return Err(serde::de::Error::custom(
                        "an empty scope group would let anyone through; write [] for no requirement",
                    ));
                }
                groups.push(group);
            }
        }
        Ok(Self { groups })
    }
}

impl RequirementSpec {
    fn one_group(scopes: Vec<String>) -> Self {
        if scopes.is_empty() {
            Self::default()
        } else {
            Self {
                groups: vec![scopes],
            }
        }
    }
}

impl ScopesConfig {
    /// Every scope a rule or the hierarchy names must be writable into a challenge as is.
    pub(crate) fn check(&self) -> Result<(), ConfigError> {
        for (name, spec) in self.method_levels() {
            for scope in spec.scopes() {
                check_scope_token(&format!("scopes.{name}"), scope)?;
            }
        }
        let per_item = [
            ("tools", &self.tools),
            ("resources", &self.resources),
            ("prompts", &self.prompts),
        ];
        for (kind, rules) in per_item {
            for (pattern, spec) in rules {
                for scope in spec.scopes() {
                    check_scope_token(&format!("scopes.{kind}.{pattern}"), scope)?;
                }
            }
        }
        for (broad, narrower) in &self.hierarchy {
            let key = format!("scopes.hierarchy.{broad}");
            check_scope_token(&key, broad)?;
            for scope in narrower {
                check_scope_token(&key, scope)?;
            }
        }
        Ok(())
    }
}
