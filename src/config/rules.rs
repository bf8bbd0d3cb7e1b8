//! `rules:`: per-caller restrictions on top of the scope rules. Each rule says who it
//! is about (`when`: client ids, subjects, claim values) and what those callers may
//! not use (`deny_*`) or may only use (`allow_*`). The rules are compiled (and their
//! errors reported, naming the key) by `policy::PrincipalRules`.
//!
//! ```yaml
//! rules:
//!   - name: contractors-read-only
//!     when:
//!       client_ids: ["contractor-app", "ext-*"]
//!       claims:
//!         - { claim: groups, contains: contractors }
//!     allow_tools: ["search_*", "get_*"]
//!     deny_resources: ["file:///secret/**"]
//! ```

use serde::Deserialize;

use super::claims::ClaimPath;
use super::model::one_or_many;

/// One entry of `rules:`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrincipalRuleConfig {
    /// Names the rule in denials, the audit log and `mcpgate explain`; unique.
    pub name: String,
    /// Who the rule applies to. Absent: every authenticated caller.
    #[serde(default)]
    pub when: WhenConfig,
    /// Tool names (glob patterns) the caller may use; absent: no restriction.
    #[serde(default, deserialize_with = "some_one_or_many")]
    pub allow_tools: Option<Vec<String>>,
    #[serde(default, deserialize_with = "one_or_many")]
    pub(crate) deny_tools: Vec<String>,
    /// Resource URIs (and URI templates) the caller may use.
    #[serde(default, deserialize_with = "some_one_or_many")]
    pub allow_resources: Option<Vec<String>>,
    #[serde(default, deserialize_with = "one_or_many")]
    pub(crate) deny_resources: Vec<String>,
    #[serde(default, deserialize_with = "some_one_or_many")]
    pub(crate) allow_prompts: Option<Vec<String>>,
    #[serde(default, deserialize_with = "one_or_many")]
    pub(crate) deny_prompts: Vec<String>,
}

/// The conditions of a rule: all the kinds given must hold (AND); within one list,
/// any one pattern suffices (OR).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WhenConfig {
    /// Glob patterns matched against the token's client id (never an API key's).
    #[serde(default, deserialize_with = "some_one_or_many")]
    pub client_ids: Option<Vec<String>>,
    /// Glob patterns matched against the subject (`api-key:<id>` for an API key).
    #[serde(default, deserialize_with = "some_one_or_many")]
    pub subjects: Option<Vec<String>>,
    /// Claim conditions; every one must hold.
    #[serde(default)]
    pub claims: Vec<ClaimConditionConfig>,
}

impl WhenConfig {
    /// No condition at all: the rule applies to every caller.
    pub fn is_empty(&self) -> bool {
        self.client_ids.is_none() && self.subjects.is_none() && self.claims.is_empty()
    }
}

/// `{ claim: <path>, equals: <glob> }` or `{ claim: <path>, contains: <glob> }`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClaimConditionConfig {
    /// A dotted path (`realm_access.roles`) or a list of member names, as in
    /// `claim_scopes`.
    pub claim: ClaimPath,
    /// The claim is a string (or a number or boolean, as its JSON text) matching this.
    pub equals: Option<String>,
    /// The claim is an array with a string item matching this, or a string matching
    /// it (`scope` and `scp` strings are space-separated lists).
    pub contains: Option<String>,
}

fn some_one_or_many<'de, D>(deserializer: D) -> Result<Option<Vec<String>>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    one_or_many(deserializer).map(Some)
}

/// The top-level claim names the rules read: all a principal has to keep of its
/// token's claims for them (nothing when no rule reads a claim).
pub fn rule_claim_roots(rules: &[PrincipalRuleConfig]) -> Vec<String> {
    roots(rules.iter().map(|rule| &rule.when))
}

/// The top-level claim names anything matching callers reads: `rules:` and the
/// `principals` of `limits.rules`. What principals keep of their tokens' claims.
pub fn claim_roots(config: &super::Config) -> Vec<String> {
    roots(
        config.rules.iter().map(|rule| &rule.when).chain(
            config
                .limits
                .rules
                .iter()
                .filter_map(|rule| rule.principals.as_ref()),
        ),
    )
}

fn roots<'a>(whens: impl Iterator<Item = &'a WhenConfig>) -> Vec<String> {
    let mut roots: Vec<String> = Vec::new();
    for when in whens {
        for condition in &when.claims {
            if let Some(root) = condition.claim.segments().first()
                && !root.is_empty()
                && !roots.iter().any(|known| known == root)
            {
                roots.push((*root).to_owned());
            }
        }
    }
    roots
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_documented_shape_and_collects_claim_roots() {
        let config = crate::config::load_from_str(
            "rules:\n  - name: contractors\n    when:\n      client_ids: [\"contractor-app\", \"ext-*\"]\n      subjects: user-42\n      claims:\n        - { claim: groups, contains: contractors }\n        - { claim: realm_access.roles, equals: \"sales*\" }\n        - { claim: groups, contains: x }\n    allow_tools: [\"search_*\"]\n    deny_tools: delete_*\n    deny_prompts: [\"internal_*\"]\n  - name: everyone\n    deny_resources: [\"file:///secret/**\"]\n",
        )
        .unwrap();
        let rules = &config.rules;
        assert_eq!(rules.len(), 2);
        assert_eq!(
            rules[0].when.subjects.as_deref(),
            Some(&["user-42".to_owned()][..])
        );
        assert_eq!(rules[0].deny_tools, ["delete_*"]);
        assert_eq!(rules[0].allow_resources, None);
        assert!(rules[1].when.is_empty());
        assert_eq!(rule_claim_roots(rules), ["groups", "realm_access"]);
    }

    #[test]
    fn unknown_keys_are_errors() {
        let error = crate::config::load_from_str("rules:\n  - name: a\n    deny_tool: [x]\n")
            .unwrap_err()
            .to_string();
        assert!(error.contains("deny_tool"), "{error}");
    }
}
