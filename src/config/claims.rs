//! `claim_scopes`: claim values that grant scopes, for identity providers that put
//! roles, groups or permissions in claims of their own instead of minting OAuth scopes
//! (Entra ID `roles`, Keycloak `realm_access.roles`, Auth0 namespaced claims).
//!
//! Two spellings, because a YAML map key cannot be a list and some claim names contain
//! dots (`https://example.com/roles`):
//!
//! ```yaml
//! claim_scopes:                          # map form: claim path -> value -> scopes
//!   roles: { Tools.Admin: [mcp:admin] }
//!   realm_access.roles: { admin: [mcp:admin] }
//! claim_scopes:                          # list form
//!   - claim: ["https://example.com/roles"]   # a list: literal path segments
//!     values: { admin: [mcp:admin] }
//!   - claim: realm_access.roles              # a string: split on dots
//!     values: { admin: [mcp:admin] }
//! ```

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer};

use super::ConfigError;
use super::checks::check_scope_token;

/// Where a claim is in the token: nested object members, outermost first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClaimPath {
    /// Written as a string: split on dots (`resource_access.my-client.roles`).
    Dotted(String),
    /// Written as a list: each item is one member name, dots and all.
    Segments(Vec<String>),
}

impl ClaimPath {
    /// The member names to follow, outermost first.
    pub fn segments(&self) -> Vec<&str> {
        match self {
            Self::Dotted(path) => path.split('.').collect(),
            Self::Segments(items) => items.iter().map(String::as_str).collect(),
        }
    }

    /// The path as audit records and messages show it: dotted when that is
    /// unambiguous, else the list of segments as JSON (`["https://example.com/roles"]`).
    pub fn label(&self) -> String {
        match self {
            Self::Dotted(path) => path.clone(),
            Self::Segments(items) if items.iter().all(|item| !item.contains('.')) => {
                items.join(".")
            }
            Self::Segments(items) => serde_json::to_string(items).unwrap_or_default(),
        }
    }
}

impl<'de> Deserialize<'de> for ClaimPath {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct PathVisitor;
        impl<'de> Visitor<'de> for PathVisitor {
            type Value = ClaimPath;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a claim path: a dotted string or a list of member names")
            }
            fn visit_str<E: de::Error>(self, value: &str) -> Result<ClaimPath, E> {
                Ok(ClaimPath::Dotted(value.to_owned()))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<ClaimPath, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = seq.next_element::<String>()? {
                    items.push(item);
                }
                Ok(ClaimPath::Segments(items))
            }
        }
        deserializer.deserialize_any(PathVisitor)
    }
}

/// Scopes granted by one claim value: a list, or one scope as a string.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScopeList(pub Vec<String>);

impl<'de> Deserialize<'de> for ScopeList {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        super::model::one_or_many(deserializer).map(Self)
    }
}

/// One mapping: the values of one claim and the scopes each grants.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClaimScopeRule {
    pub(crate) claim: ClaimPath,
    /// Claim value (matched exactly, case-sensitively) -> scopes it grants.
    #[serde(default)]
    pub values: BTreeMap<String, ScopeList>,
    /// Written in the map form (where the path is the key), for messages that name it.
    #[serde(skip)]
    pub from_map: bool,
}

/// `claim_scopes`, in either spelling.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClaimScopesConfig {
    pub(crate) rules: Vec<ClaimScopeRule>,
}

impl ClaimScopesConfig {
    /// No rule in either spelling: claims grant no scope.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// The config key of rule `index` under `prefix`, as messages name it.
    pub fn rule_key(&self, prefix: &str, index: usize) -> String {
        match self.rules.get(index) {
            Some(rule) if rule.from_map => format!("{prefix}.{}", rule.claim.label()),
            _ => format!("{prefix}[{index}]"),
        }
    }
}

impl<'de> Deserialize<'de> for ClaimScopesConfig {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct RulesVisitor;
        impl<'de> Visitor<'de> for RulesVisitor {
            type Value = ClaimScopesConfig;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a map of claim path to {value: scopes}, or a list of {claim, values}")
            }
            fn visit_map<A: MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<ClaimScopesConfig, A::Error> {
                let mut rules = Vec::new();
                while let Some((path, values)) =
                    map.next_entry::<String, BTreeMap<String, ScopeList>>()?
                {
                    rules.push(ClaimScopeRule {
                        claim: ClaimPath::Dotted(path),
                        values,
                        from_map: true,
                    });
                }
                Ok(ClaimScopesConfig { rules })
            }
            fn visit_seq<A: SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<ClaimScopesConfig, A::Error> {
                let mut rules = Vec::new();
                while let Some(rule) = seq.next_element::<ClaimScopeRule>()? {
                    rules.push(rule);
                }
                Ok(ClaimScopesConfig { rules })
            }
        }
        deserializer.deserialize_any(RulesVisitor)
    }
}

impl ClaimScopesConfig {
    /// Every path names a claim, every scope is a scope-token; `prefix` is the
    /// section's key (`auth.oauth.claim_scopes`), which errors extend.
    pub(crate) fn check(&self, prefix: &str) -> Result<(), ConfigError> {
        for (index, rule) in self.rules.iter().enumerate() {
            let key = self.rule_key(prefix, index);
            let segments = rule.claim.segments();
            let claim_key = if rule.from_map {
                key.clone()
            } else {
                format!("{key}.claim")
            };
            if segments.is_empty() || segments == [""] {
                return Err(ConfigError::invalid(
                    claim_key,
                    "empty claim path: name the claim, e.g. realm_access.roles",
                ));
            }
            if segments.iter().any(|segment| segment.is_empty()) {
                return Err(ConfigError::invalid(
                    claim_key,
                    "claim path has an empty segment (two dots in a row, or a leading or \
                 trailing dot); for a claim name that contains dots, use the list form: \
                 - claim: [\"https://example.com/roles\"]",
                ));
            }
            let values_key = if rule.from_map {
                key.clone()
            } else {
                format!("{key}.values")
            };
            for (value, scopes) in &rule.values {
                let value_key = format!("{values_key}.{value}");
                if scopes.0.is_empty() {
                    return Err(ConfigError::invalid(
                        value_key,
                        "maps to no scope: list the scopes this claim value grants",
                    ));
                }
                for scope in &scopes.0 {
                    check_scope_token(&value_key, scope)?;
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(yaml: &str) -> ClaimScopesConfig {
        let config =
            crate::config::load_from_str(&format!("auth:\n  oauth:\n    claim_scopes:\n{yaml}"))
                .unwrap_or_else(|error| panic!("{yaml}: {error}"));
        config.auth.oauth.claim_scopes
    }

    #[test]
    fn the_map_form_keeps_dotted_keys_whole() {
        let rules = parse(
            "      roles: { Tools.Admin: [mcp:admin], Tools.Read: mcp:read }\n      realm_access.roles: { admin: [mcp:admin, mcp:tools:execute] }\n",
        );
        let by_label: BTreeMap<String, &ClaimScopeRule> = rules
            .rules
            .iter()
            .map(|rule| (rule.claim.label(), rule))
            .collect();
        let realm = by_label["realm_access.roles"];
        assert_eq!(realm.claim.segments(), ["realm_access", "roles"]);
        assert!(realm.from_map);
        assert_eq!(realm.values["admin"].0, ["mcp:admin", "mcp:tools:execute"]);
        let roles = by_label["roles"];
        assert_eq!(roles.values["Tools.Admin"].0, ["mcp:admin"]);
        assert_eq!(roles.values["Tools.Read"].0, ["mcp:read"]);
    }

    #[test]
    fn the_list_form_takes_literal_segments() {
        let rules = parse(
            "      - claim: [\"https://example.com/roles\"]\n        values: { admin: [mcp:admin] }\n      - claim: resource_access.my-client.roles\n        values: { editor: [mcp:write] }\n",
        );
        assert_eq!(rules.rules.len(), 2);
        assert_eq!(
            rules.rules[0].claim.segments(),
            ["https://example.com/roles"]
        );
        assert_eq!(
            rules.rules[0].claim.label(),
            r#"["https://example.com/roles"]"#
        );
        assert!(!rules.rules[0].from_map);
        assert_eq!(
            rules.rules[1].claim.segments(),
            ["resource_access", "my-client", "roles"]
        );
        assert_eq!(rules.rule_key("k", 0), "k[0]");
    }

    #[test]
    fn unknown_keys_in_the_list_form_are_errors() {
        let error = crate::config::load_from_str(
            "auth:\n  oauth:\n    claim_scopes:\n      - claim: roles\n        value: { a: [b] }\n",
        )
        .unwrap_err()
        .to_string();
        assert!(error.contains("value"), "{error}");
    }
}
