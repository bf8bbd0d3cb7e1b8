//! `rules:` compiled: which callers a rule is about, and which tools, resources and
//! prompts it takes from them. Every rule that matches a caller applies at once: a
//! deny from any of them refuses the item, and each matching `allow_*` list narrows
//! what is left (the item must be in all of them). So rules only ever take away, and
//! their order cannot open a hole; it only decides which rule a denial names (the
//! first, in the order written).
//!
//! Matching a caller happens once per request ([`PrincipalRules::matching`]); the
//! client-id and subject patterns of all rules are one `GlobSet` each, so that costs
//! one automaton pass per kind whatever the number of rules. Checking an item then
//! only looks at the rules that matched.

use std::collections::HashMap;
use std::fmt;

use globset::{Glob, GlobMatcher, GlobSet, GlobSetBuilder};
use serde_json::{Map, Value};

use super::glob_index::GLOB_SYNTAX;
use super::glob_index::{GlobIndex, GlobIndexBuilder};
use super::{Item, ItemKind};
use crate::auth::Principal;
use crate::auth::claim_map::{claim_values, resolve};
use crate::config::{
    ClaimConditionConfig, Config, ConfigError, PrincipalRuleConfig, WhenConfig, check_rule_name,
};

/// Every configured rule, compiled.
#[derive(Debug, Clone, Default)]
pub struct PrincipalRules {
    rules: Vec<Rule>,
    client_ids: Index,
    subjects: Index,
    claim_index: ClaimIndex,
    /// Rules with no `when` condition the indexes can look up (no `client_ids`, no
    /// `subjects`, no claim with a literal pattern): tested for every caller.
    unindexed: Vec<usize>,
    /// Top-level claim names the rules read.
    claim_roots: Vec<String>,
}

#[derive(Debug, Clone)]
struct Rule {
    name: String,
    has_client_ids: bool,
    has_subjects: bool,
    claims: Vec<ClaimCondition>,
    /// By [`kind_index`]: tools, resources, prompts.
    allow: [Option<GlobSet>; 3],
    deny: [GlobSet; 3],
}

/// Patterns of several rules in one index, with the rule each came from.
#[derive(Debug, Clone, Default)]
struct Index {
    set: GlobIndex,
    owner: Vec<usize>,
}

impl Index {
    /// Which rules have a pattern matching `value` (rule indices, ascending, once each).
    fn hits(&self, value: Option<&str>) -> Vec<usize> {
        let Some(value) = value else {
            return Vec::new();
        };
        let mut hits: Vec<usize> = self
            .set
            .matches(value)
            .into_iter()
            .filter_map(|glob| self.owner.get(glob).copied())
            .collect();
        hits.sort_unstable();
        hits.dedup();
        hits
    }
}

/// The rules that can only match a caller whose claim holds one literal value: each
/// rule with neither `client_ids` nor `subjects` whose claims include a condition
/// with a pattern without glob syntax is filed under its first such condition. A
/// literal pattern matches exactly the text equal to it, so looking the caller's
/// value up finds every such rule its claims could satisfy (and maybe more, which
/// the full test then drops).
#[derive(Debug, Clone, Default)]
struct ClaimIndex {
    keys: Vec<ClaimKey>,
}

#[derive(Debug, Clone)]
struct ClaimKey {
    path: Vec<String>,
    contains: bool,
    rules: HashMap<String, Vec<usize>>,
}

impl ClaimIndex {
    /// Files rule `rule` under `condition` if its pattern is literal; says whether it did.
    fn add(&mut self, rule: usize, condition: &ClaimConditionConfig) -> bool {
        let (pattern, contains) = match (&condition.equals, &condition.contains) {
            (Some(pattern), None) => (pattern, false),
            (None, Some(pattern)) => (pattern, true),
            _ => return false,
        };
        if pattern.contains(GLOB_SYNTAX) {
            return false;
        }
        let path: Vec<String> = condition
            .claim
            .segments()
            .into_iter()
            .map(str::to_owned)
            .collect();
        let at = match self
            .keys
            .iter()
            .position(|key| key.path == path && key.contains == contains)
        {
            Some(at) => at,
            None => {
                self.keys.push(ClaimKey {
                    path,
                    contains,
                    rules: HashMap::new(),
                });
                self.keys.len() - 1
            }
        };
        if let Some(key) = self.keys.get_mut(at) {
            key.rules.entry(pattern.clone()).or_default().push(rule);
        }
        true
    }

    /// Every rule filed under a value the caller's claims hold.
    fn candidates(&self, claims: &Map<String, Value>, out: &mut Vec<usize>) {
        for key in &self.keys {
            let Some(value) = resolve(claims, &key.path) else {
                continue;
            };
            let mut look_up = |text: &str| {
                if let Some(rules) = key.rules.get(text) {
                    out.extend_from_slice(rules);
                }
            };
            if key.contains {
                for item in claim_values(&key.path, value) {
                    look_up(item);
                }
            } else {
                // As `ClaimTest::Equals` reads the claim.
                match value {
                    Value::String(text) => look_up(text),
                    Value::Number(_) | Value::Bool(_) => look_up(&value.to_string()),
                    _ => {}
                }
            }
        }
    }
}

#[derive(Debug, Clone)]
struct ClaimCondition {
    path: Vec<String>,
    test: ClaimTest,
}

#[derive(Debug, Clone)]
enum ClaimTest {
    Equals(GlobMatcher),
    Contains(GlobMatcher),
}

impl ClaimCondition {
    fn holds(&self, claims: &Map<String, Value>) -> bool {
        let Some(value) = resolve(claims, &self.path) else {
            return false;
        };
        match &self.test {
            ClaimTest::Equals(pattern) => match value {
                Value::String(text) => pattern.is_match(text),
                Value::Number(_) | Value::Bool(_) => pattern.is_match(value.to_string()),
                _ => false,
            },
            ClaimTest::Contains(pattern) => claim_values(&self.path, value)
                .into_iter()
                .any(|item| pattern.is_match(item)),
        }
    }
}

/// The rules that matched one caller, by index, in the order written.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Matched {
    rules: Vec<usize>,
}

impl Matched {
    pub(crate) fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }
}

/// Which list of a rule refused an item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuleList {
    /// The item matches one of the rule's `deny_*` patterns.
    Deny,
    /// The rule has an `allow_*` list for the item's kind and the item is not in it.
    NotAllowed,
}

/// An item a matching rule takes from the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleDenial {
    /// The rule's name.
    pub rule: String,
    pub(crate) list: RuleList,
    /// The list's key (`deny_tools`, `allow_resources`).
    pub key: &'static str,
    /// What the client is told (`error_description`), naming the item and the rule.
    pub description: String,
}

impl fmt::Display for RuleDenial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.description)
    }
}

fn kind_index(kind: ItemKind) -> usize {
    match kind {
        ItemKind::Tool => 0,
        ItemKind::Resource => 1,
        ItemKind::Prompt => 2,
    }
}

fn kind_of(item: Item<'_>) -> (ItemKind, &str) {
    match item {
        Item::Tool(name) => (ItemKind::Tool, name),
        Item::Resource(uri) => (ItemKind::Resource, uri),
        Item::Prompt(name) => (ItemKind::Prompt, name),
    }
}

fn list_keys(kind: ItemKind) -> (&'static str, &'static str) {
    match kind {
        ItemKind::Tool => ("allow_tools", "deny_tools"),
        ItemKind::Resource => ("allow_resources", "deny_resources"),
        ItemKind::Prompt => ("allow_prompts", "deny_prompts"),
    }
}

impl PrincipalRules {
    /// Compiles `rules:`. Errors name the key (`rules[2].when.claims[0].claim`).
    pub fn from_config(config: &Config) -> Result<Self, ConfigError> {
        let written = &config.rules;
        if written.is_empty() {
            return Ok(Self::default());
        }
        let auth = &config.auth;
        if !auth.oauth.enabled() && auth.api_keys.is_empty() {
            // Without a verified caller there is no one to match: the rules would
            // silently not apply.
            return Err(ConfigError::invalid(
                "rules",
                "rules apply to verified callers, and no credential source is configured: \
                 enable auth.oauth or add auth.api_keys",
            ));
        }
        let mut rules = Vec::with_capacity(written.len());
        let mut client_ids = IndexBuilder::default();
        let mut subjects = IndexBuilder::default();
        let mut claim_index = ClaimIndex::default();
        let mut unindexed = Vec::new();
        for (index, rule) in written.iter().enumerate() {
            let key = format!("rules[{index}]");
            check_name(&key, rule, written.get(..index).unwrap_or_default())?;
            let when = &rule.when;
            if let Some(patterns) = &when.client_ids {
                client_ids.add(&format!("{key}.when.client_ids"), patterns, index)?;
            }
            if let Some(patterns) = &when.subjects {
                subjects.add(&format!("{key}.when.subjects"), patterns, index)?;
            }
            // A rule is found through one necessary condition: its client ids, else
            // its subjects, else a literal claim value; failing all, it is always tried.
            if when.client_ids.is_none()
                && when.subjects.is_none()
                && !when
                    .claims
                    .iter()
                    .any(|condition| claim_index.add(index, condition))
            {
                unindexed.push(index);
            }
            let claims = when
                .claims
                .iter()
                .enumerate()
                .map(|(position, condition)| {
                    claim_condition(&format!("{key}.when.claims[{position}]"), condition)
                })
                .collect::<Result<Vec<_>, _>>()?;
            let allow = [
                allow_set(&key, "allow_tools", rule.allow_tools.as_deref(), false)?,
                allow_set(
                    &key,
                    "allow_resources",
                    rule.allow_resources.as_deref(),
                    true,
                )?,
                allow_set(&key, "allow_prompts", rule.allow_prompts.as_deref(), false)?,
            ];
            let deny = [
                glob_set(&format!("{key}.deny_tools"), &rule.deny_tools, false)?,
                glob_set(&format!("{key}.deny_resources"), &rule.deny_resources, true)?,
                glob_set(&format!("{key}.deny_prompts"), &rule.deny_prompts, false)?,
            ];
            if allow.iter().all(Option::is_none) && deny.iter().all(GlobSet::is_empty) {
                return Err(ConfigError::invalid(
                    key,
                    "the rule neither allows nor denies anything: add allow_tools, deny_tools, \
                     allow_resources, deny_resources, allow_prompts or deny_prompts",
                ));
            }
            rules.push(Rule {
                name: rule.name.clone(),
                has_client_ids: when.client_ids.is_some(),
                has_subjects: when.subjects.is_some(),
                claims,
                allow,
                deny,
            });
        }
        Ok(Self {
            rules,
            client_ids: client_ids.build("rules")?,
            subjects: subjects.build("rules")?,
            claim_index,
            unindexed,
            claim_roots: crate::config::rule_claim_roots(written),
        })
    }

    /// No `rules:` entry: no caller is restricted beyond its scopes.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// The top-level claims a principal must keep for the rules.
    pub fn claim_roots(&self) -> &[String] {
        &self.claim_roots
    }

    /// The rules whose `when` holds for this caller. An API key has no client id
    /// and no claims; its subject is `api-key:<id>`.
    pub fn matching(&self, principal: &Principal) -> Matched {
        self.matching_parts(
            principal.client_id.as_deref(),
            principal.subject.as_deref(),
            &principal.claims,
        )
    }

    fn matching_parts(
        &self,
        client_id: Option<&str>,
        subject: Option<&str>,
        claims: &Map<String, Value>,
    ) -> Matched {
        if self.rules.is_empty() {
            return Matched::default();
        }
        let client_hits = self.client_ids.hits(client_id);
        let subject_hits = self.subjects.hits(subject);
        // Every rule that can match is among these: a rule with client ids is in
        // `client_hits` if it matches, one with subjects in `subject_hits`, one filed
        // under a claim value among that claim's look-ups, and the rest is unindexed.
        let mut candidates = self.unindexed.clone();
        candidates.extend_from_slice(&client_hits);
        candidates.extend_from_slice(&subject_hits);
        self.claim_index.candidates(claims, &mut candidates);
        candidates.sort_unstable();
        candidates.dedup();
        let rules = candidates
            .into_iter()
            .filter(|index| {
                self.rules.get(*index).is_some_and(|rule| {
                    (!rule.has_client_ids || client_hits.binary_search(index).is_ok())
                        && (!rule.has_subjects || subject_hits.binary_search(index).is_ok())
                        && rule.claims.iter().all(|condition| condition.holds(claims))
                })
            })
            .collect();
        Matched { rules }
    }

    /// [`Self::matching_parts`] without the indexes: every rule tested in turn. The
    /// differential test holds the indexed look-up to it.
    #[cfg(test)]
    fn matching_plain(
        &self,
        client_id: Option<&str>,
        subject: Option<&str>,
        claims: &Map<String, Value>,
    ) -> Matched {
        let rules = self
            .rules
            .iter()
            .enumerate()
            .filter(|(index, rule)| {
                (!rule.has_client_ids
                    || client_id.is_some_and(|value| {
                        self.client_ids
                            .set
                            .matches(value)
                            .into_iter()
                            .any(|glob| self.client_ids.owner.get(glob) == Some(index))
                    }))
                    && (!rule.has_subjects
                        || subject.is_some_and(|value| {
                            self.subjects
                                .set
                                .matches(value)
                                .into_iter()
                                .any(|glob| self.subjects.owner.get(glob) == Some(index))
                        }))
                    && rule.claims.iter().all(|condition| condition.holds(claims))
            })
            .map(|(index, _)| index)
            .collect();
        Matched { rules }
    }

    /// The names of the matched rules, in the order written.
    pub fn names(&self, matched: &Matched) -> Vec<String> {
        self.matched(matched)
            .map(|rule| rule.name.clone())
            .collect()
    }

    fn matched<'a>(&'a self, matched: &'a Matched) -> impl Iterator<Item = &'a Rule> {
        matched
            .rules
            .iter()
            .filter_map(|index| self.rules.get(*index))
    }

    /// Whether a matched rule says anything about items of this kind (else lists of
    /// it need no cutting for the rules' sake).
    pub fn restricts(&self, matched: &Matched, kind: ItemKind) -> bool {
        let slot = kind_index(kind);
        self.matched(matched).any(|rule| {
            rule.allow.get(slot).is_some_and(Option::is_some)
                || rule.deny.get(slot).is_some_and(|set| !set.is_empty())
        })
    }

    /// Whether any rule, whoever it matches, says anything about items of this kind:
    /// then two callers can see different lists of it.
    pub fn about(&self, kind: ItemKind) -> bool {
        let slot = kind_index(kind);
        self.rules.iter().any(|rule| {
            rule.allow.get(slot).is_some_and(Option::is_some)
                || rule.deny.get(slot).is_some_and(|set| !set.is_empty())
        })
    }

    /// Whether some rule, whoever it matches, refuses `item`: then what the item
    /// reveals is not the same for every caller.
    pub fn could_refuse(&self, item: Item<'_>) -> bool {
        let every = Matched {
            rules: (0..self.rules.len()).collect(),
        };
        self.check(&every, item).is_err()
    }

    /// Whether the matched rules let the caller use `item` (what list filtering shows).
    pub fn permits(&self, matched: &Matched, item: Item<'_>) -> bool {
        self.check(matched, item).is_ok()
    }

    /// The first matched rule (in the order written) that denies `item`, preferring a
    /// deny list over an allow list that leaves it out.
    pub fn check(&self, matched: &Matched, item: Item<'_>) -> Result<(), RuleDenial> {
        let (kind, name) = kind_of(item);
        let slot = kind_index(kind);
        let (allow_key, deny_key) = list_keys(kind);
        let denied = self
            .matched(matched)
            .find(|rule| rule.deny.get(slot).is_some_and(|set| set.is_match(name)))
            .map(|rule| (rule, RuleList::Deny, deny_key));
        let denied = denied.or_else(|| {
            self.matched(matched)
                .find(|rule| {
                    rule.allow
                        .get(slot)
                        .and_then(Option::as_ref)
                        .is_some_and(|set| !set.is_match(name))
                })
                .map(|rule| (rule, RuleList::NotAllowed, allow_key))
        });
        match denied {
            None => Ok(()),
            Some((rule, list, key)) => {
                let why = match list {
                    RuleList::Deny => key.to_owned(),
                    RuleList::NotAllowed => format!("not in {key}"),
                };
                Err(RuleDenial {
                    rule: rule.name.clone(),
                    list,
                    key,
                    description: format!(
                        "{} refused by rule {} ({why})",
                        item.describe(),
                        rule.name
                    ),
                })
            }
        }
    }

    /// The first item of these messages the matched rules refuse.
    pub fn check_all<'m>(
        &self,
        matched: &Matched,
        items: impl IntoIterator<Item = Item<'m>>,
    ) -> Result<(), RuleDenial> {
        if matched.is_empty() {
            return Ok(());
        }
        items
            .into_iter()
            .try_for_each(|item| self.check(matched, item))
    }
}

/// A `when:` on its own, compiled as a rule's: who a limit applies to
/// (`limits.rules[].principals`).
#[derive(Debug, Clone)]
pub struct Who {
    client_ids: Option<GlobSet>,
    subjects: Option<GlobSet>,
    claims: Vec<ClaimCondition>,
}

impl Who {
    /// Compiles `when` found at `key`; errors name the entry.
    pub fn compile(key: &str, when: &WhenConfig) -> Result<Self, ConfigError> {
        let list = |name: &str, patterns: Option<&Vec<String>>| {
            patterns
                .map(|patterns| {
                    let key = format!("{key}.{name}");
                    if patterns.is_empty() {
                        return Err(ConfigError::invalid(
                            key,
                            "an empty list matches no one: list patterns, or remove the key to \
                             match any",
                        ));
                    }
                    glob_set(&key, patterns, false)
                })
                .transpose()
        };
        Ok(Self {
            client_ids: list("client_ids", when.client_ids.as_ref())?,
            subjects: list("subjects", when.subjects.as_ref())?,
            claims: when
                .claims
                .iter()
                .enumerate()
                .map(|(position, condition)| {
                    claim_condition(&format!("{key}.claims[{position}]"), condition)
                })
                .collect::<Result<_, _>>()?,
        })
    }

    /// Whether `principal` is one of them (as a rule's `when` decides).
    pub fn matches(&self, principal: &Principal) -> bool {
        let holds = |set: &Option<GlobSet>, value: Option<&str>| {
            set.as_ref()
                .is_none_or(|set| value.is_some_and(|value| set.is_match(value)))
        };
        holds(&self.client_ids, principal.client_id.as_deref())
            && holds(&self.subjects, principal.subject.as_deref())
            && self
                .claims
                .iter()
                .all(|condition| condition.holds(&principal.claims))
    }
}

/// Names are required, unique, and written into `WWW-Authenticate` as they are.
fn check_name(
    key: &str,
    rule: &PrincipalRuleConfig,
    earlier: &[PrincipalRuleConfig],
) -> Result<(), ConfigError> {
    check_rule_name(
        &format!("{key}.name"),
        &rule.name,
        (true, "WWW-Authenticate"),
        ("rules", earlier.iter().map(|other| other.name.as_str())),
    )
}

fn claim_condition(
    key: &str,
    condition: &ClaimConditionConfig,
) -> Result<ClaimCondition, ConfigError> {
    let segments = condition.claim.segments();
    if segments.is_empty() || segments.iter().any(|segment| segment.is_empty()) {
        return Err(ConfigError::invalid(
            format!("{key}.claim"),
            "must name a claim (a dotted path without empty segments, or a list of member \
             names for a claim whose name contains dots)",
        ));
    }
    let test = match (&condition.equals, &condition.contains) {
        (Some(pattern), None) => {
            ClaimTest::Equals(glob(&format!("{key}.equals"), pattern, false)?.compile_matcher())
        }
        (None, Some(pattern)) => {
            ClaimTest::Contains(glob(&format!("{key}.contains"), pattern, false)?.compile_matcher())
        }
        _ => {
            return Err(ConfigError::invalid(
                key,
                "set exactly one of equals (the claim's value) or contains (an item of the claim)",
            ));
        }
    };
    Ok(ClaimCondition {
        path: segments.into_iter().map(str::to_owned).collect(),
        test,
    })
}

fn allow_set(
    key: &str,
    name: &str,
    patterns: Option<&[String]>,
    literal_braces: bool,
) -> Result<Option<GlobSet>, ConfigError> {
    // `allow_*: []` is kept: it allows nothing of that kind.
    patterns
        .map(|patterns| glob_set(&format!("{key}.{name}"), patterns, literal_braces))
        .transpose()
}

fn glob_set(key: &str, patterns: &[String], literal_braces: bool) -> Result<GlobSet, ConfigError> {
    let mut builder = GlobSetBuilder::new();
    for (index, pattern) in patterns.iter().enumerate() {
        builder.add(glob(&format!("{key}[{index}]"), pattern, literal_braces)?);
    }
    builder
        .build()
        .map_err(|error| ConfigError::invalid(key, format!("bad glob: {error}")))
}

/// One pattern, compiled as the `scopes:` rules are ([`super::rules::compile_glob`]).
fn glob(key: &str, pattern: &str, literal_braces: bool) -> Result<Glob, ConfigError> {
    if pattern.is_empty() {
        return Err(ConfigError::invalid(key, "a pattern must not be empty"));
    }
    super::rules::compile_glob(key, pattern, literal_braces)
}

#[derive(Default)]
struct IndexBuilder {
    builder: GlobIndexBuilder,
    owner: Vec<usize>,
}

impl IndexBuilder {
    fn add(&mut self, key: &str, patterns: &[String], rule: usize) -> Result<(), ConfigError> {
        if patterns.is_empty() {
            return Err(ConfigError::invalid(
                key,
                "an empty list matches no one: list patterns, or remove the key to match any",
            ));
        }
        for (index, pattern) in patterns.iter().enumerate() {
            self.builder.add(
                pattern,
                glob(&format!("{key}[{index}]"), pattern, false)?,
                false,
            );
            self.owner.push(rule);
        }
        Ok(())
    }

    fn build(self, key: &str) -> Result<Index, ConfigError> {
        let set = self
            .builder
            .build()
            .map_err(|error| ConfigError::invalid(key, format!("bad glob: {error}")))?;
        Ok(Index {
            set,
            owner: self.owner,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const AUTH: &str = "auth:\n  api_keys: [{ id: k, hash: x }]\n";

    fn compile(rules_yaml: &str) -> Result<PrincipalRules, ConfigError> {
        let config = crate::config::load_from_str(&format!("{AUTH}rules:\n{rules_yaml}"))
            .unwrap_or_else(|error| panic!("{rules_yaml}: {error}"));
        PrincipalRules::from_config(&config)
    }

    fn rules(rules_yaml: &str) -> PrincipalRules {
        compile(rules_yaml).unwrap_or_else(|error| panic!("{rules_yaml}: {error}"))
    }

    fn claims(value: Value) -> Map<String, Value> {
        match value {
            Value::Object(map) => map,
            _ => Map::new(),
        }
    }

    fn names(
        rules: &PrincipalRules,
        client: Option<&str>,
        subject: Option<&str>,
        claims: &Value,
    ) -> Vec<String> {
        let matched = rules.matching_parts(client, subject, &self::claims(claims.clone()));
        rules.names(&matched)
    }

    fn who(rules: &PrincipalRules, client: &str) -> Matched {
        rules.matching_parts(Some(client), Some("user"), &Map::new())
    }

    #[test]
    fn conditions_are_and_across_kinds_and_or_within_a_list() {
        let rules = rules(
            "  - name: r\n    when:\n      client_ids: [app-a, \"ext-*\"]\n      subjects: [\"svc-*\"]\n    deny_tools: [x]\n",
        );
        let none = json!({});
        assert_eq!(names(&rules, Some("app-a"), Some("svc-1"), &none), ["r"]);
        assert_eq!(names(&rules, Some("ext-9"), Some("svc-1"), &none), ["r"]);
        assert!(names(&rules, Some("app-b"), Some("svc-1"), &none).is_empty());
        assert!(names(&rules, Some("app-a"), Some("user-1"), &none).is_empty());
        assert!(names(&rules, None, Some("svc-1"), &none).is_empty());
        assert!(names(&rules, Some("app-a"), None, &none).is_empty());
    }

    #[test]
    fn about_and_could_refuse_ignore_whom_a_rule_matches() {
        let rules = rules(
            "  - name: a\n    when:\n      client_ids: [app-a]\n    deny_resources: [\"file:///secret/*\"]\n  - name: b\n    when:\n      subjects: [bob]\n    allow_prompts: [hello]\n",
        );
        assert!(rules.about(ItemKind::Resource));
        assert!(rules.about(ItemKind::Prompt));
        assert!(!rules.about(ItemKind::Tool));
        // Nobody is matched here, yet another caller could be refused these.
        assert!(rules.could_refuse(Item::Resource("file:///secret/k")));
        assert!(rules.could_refuse(Item::Prompt("other")));
        assert!(!rules.could_refuse(Item::Prompt("hello")));
        assert!(!rules.could_refuse(Item::Resource("file:///public/r")));
        assert!(!rules.could_refuse(Item::Tool("anything")));
        assert!(!PrincipalRules::default().about(ItemKind::Tool));
    }

    #[test]
    fn a_rule_without_when_matches_everyone() {
        let rules = rules("  - name: all\n    deny_tools: [drop_*]\n");
        assert_eq!(names(&rules, None, None, &json!({})), ["all"]);
        let matched = who(&rules, "x");
        assert!(!rules.permits(&matched, Item::Tool("drop_table")));
        assert!(rules.permits(&matched, Item::Tool("select")));
    }

    #[test]
    fn claims_equal_or_contain_on_strings_arrays_and_nested_paths() {
        let rules = rules(
            "  - name: sales\n    when:\n      claims: [{ claim: department, equals: \"sales*\" }]\n    deny_tools: [a]\n  - name: contractors\n    when:\n      claims: [{ claim: groups, contains: contractors }]\n    deny_tools: [a]\n  - name: realm\n    when:\n      claims:\n        - { claim: realm_access.roles, contains: \"admin\" }\n        - { claim: [\"https://example.com/tier\"], equals: \"3\" }\n    deny_tools: [a]\n  - name: scoped\n    when:\n      claims: [{ claim: scope, contains: \"beta:*\" }]\n    deny_tools: [a]\n",
        );
        let match_of = |value: Value| names(&rules, None, None, &value);
        assert_eq!(match_of(json!({"department": "sales-emea"})), ["sales"]);
        assert!(match_of(json!({"department": "presales"})).is_empty());
        assert!(
            match_of(json!({"department": ["sales"]})).is_empty(),
            "equals is not contains"
        );
        assert_eq!(
            match_of(json!({"groups": ["staff", "contractors"]})),
            ["contractors"]
        );
        assert_eq!(match_of(json!({"groups": "contractors"})), ["contractors"]);
        assert!(match_of(json!({"groups": ["contractors-old"]})).is_empty());
        assert!(match_of(json!({"groups": {"contractors": true}})).is_empty());
        assert_eq!(
            match_of(
                json!({"realm_access": {"roles": ["user", "admin"]}, "https://example.com/tier": 3})
            ),
            ["realm"]
        );
        assert!(
            match_of(json!({"realm_access": {"roles": ["admin"]}})).is_empty(),
            "every claim condition must hold"
        );
        assert_eq!(match_of(json!({"scope": "openid beta:tools"})), ["scoped"]);
        assert!(match_of(json!({})).is_empty());
        assert_eq!(
            rules.claim_roots(),
            [
                "department",
                "groups",
                "realm_access",
                "https://example.com/tier",
                "scope"
            ]
        );
    }

    #[test]
    fn deny_wins_and_every_allow_list_narrows_whatever_the_order() {
        let forward = "  - name: wide\n    allow_tools: [\"get_*\", \"search_*\", delete_all]\n  - name: narrow\n    allow_tools: [\"get_*\", delete_all]\n    allow_resources: [\"file:///public/**\"]\n  - name: no-delete\n    deny_tools: [\"delete_*\"]\n";
        let reversed = "  - name: no-delete\n    deny_tools: [\"delete_*\"]\n  - name: narrow\n    allow_tools: [\"get_*\", delete_all]\n    allow_resources: [\"file:///public/**\"]\n  - name: wide\n    allow_tools: [\"get_*\", \"search_*\", delete_all]\n";
        for yaml in [forward, reversed] {
            let rules = rules(yaml);
            let matched = who(&rules, "c");
            assert!(rules.permits(&matched, Item::Tool("get_user")));
            let denial = rules
                .check(&matched, Item::Tool("search_docs"))
                .unwrap_err();
            assert_eq!(denial.rule, "narrow");
            assert_eq!(denial.list, RuleList::NotAllowed);
            assert_eq!(
                denial.description,
                "tool search_docs refused by rule narrow (not in allow_tools)"
            );
            let denial = rules.check(&matched, Item::Tool("delete_all")).unwrap_err();
            assert_eq!(
                (denial.rule.as_str(), denial.list),
                ("no-delete", RuleList::Deny)
            );
            assert_eq!(
                denial.description,
                "tool delete_all refused by rule no-delete (deny_tools)"
            );
            assert!(rules.permits(&matched, Item::Resource("file:///public/a/b.md")));
            assert!(!rules.permits(&matched, Item::Resource("file:///secret/k")));
            // Prompts: no rule names them.
            assert!(rules.permits(&matched, Item::Prompt("anything")));
            assert!(rules.restricts(&matched, ItemKind::Tool));
            assert!(!rules.restricts(&matched, ItemKind::Prompt));
        }
    }

    #[test]
    fn resource_patterns_take_braces_literally_and_an_empty_allow_list_allows_nothing() {
        let rules =
            rules("  - name: r\n    deny_resources: [\"db://{table}\"]\n    allow_prompts: []\n");
        let matched = who(&rules, "c");
        assert!(!rules.permits(&matched, Item::Resource("db://{table}")));
        assert!(rules.permits(&matched, Item::Resource("db://table")));
        assert!(!rules.permits(&matched, Item::Prompt("greeting")));
        // A caller no rule matches keeps everything.
        assert!(
            rules
                .check_all(&Matched::default(), [Item::Prompt("greeting")])
                .is_ok()
        );
    }

    #[test]
    fn config_errors_name_the_key() {
        for (yaml, key, needle) in [
            (
                "  - name: a\n    deny_tools: [\"db_[\"]\n",
                "rules[0].deny_tools[0]",
                "bad glob",
            ),
            (
                "  - name: a\n    deny_tools: [x]\n  - name: a\n    deny_tools: [z]\n",
                "rules[1].name",
                "already",
            ),
            (
                "  - name: \"\"\n    deny_tools: [x]\n",
                "rules[0].name",
                "characters",
            ),
            (
                "  - name: \"a\\\"b\"\n    deny_tools: [x]\n",
                "rules[0].name",
                "quotes",
            ),
            ("  - name: a\n", "rules[0]", "neither allows nor denies"),
            (
                "  - name: a\n    when: { client_ids: [] }\n    deny_tools: [x]\n",
                "rules[0].when.client_ids",
                "empty list",
            ),
            (
                "  - name: a\n    deny_tools: [x]\n  - name: b\n    when:\n      claims: [{ claim: \"a..b\", equals: x }]\n    deny_tools: [x]\n",
                "rules[1].when.claims[0].claim",
                "must name a claim",
            ),
            (
                "  - name: a\n    when:\n      claims: [{ claim: groups }]\n    deny_tools: [x]\n",
                "rules[0].when.claims[0]",
                "exactly one",
            ),
            (
                "  - name: a\n    when:\n      claims: [{ claim: groups, equals: a, contains: b }]\n    deny_tools: [x]\n",
                "rules[0].when.claims[0]",
                "exactly one",
            ),
            (
                "  - name: a\n    when: { subjects: [\"[\"] }\n    deny_tools: [x]\n",
                "rules[0].when.subjects[0]",
                "bad glob",
            ),
        ] {
            match compile(yaml) {
                Err(ConfigError::Invalid { key: got, message }) => {
                    assert_eq!(got, key, "{yaml}");
                    assert!(message.contains(needle), "{yaml}: {message}");
                }
                other => panic!("{yaml}: expected an error, got {other:?}"),
            }
        }
    }

    #[test]
    fn rules_need_a_credential_source() {
        let config =
            crate::config::load_from_str("rules:\n  - name: a\n    deny_tools: [x]\n").unwrap();
        let error = PrincipalRules::from_config(&config).unwrap_err();
        assert!(error.to_string().starts_with("rules: "), "{error}");
    }

    fn when_strategy() -> impl proptest::strategy::Strategy<Value = String> {
        use proptest::prelude::*;
        let patterns = || {
            proptest::option::of(proptest::collection::vec(
                prop::sample::select(vec!["app-a", "app-*", "b?", "svc-[0-9]", "u1", "g1"]),
                1..3,
            ))
        };
        let condition = (
            prop::sample::select(vec!["groups", "scope", "org.dept", "level"]),
            any::<bool>(),
            prop::sample::select(vec!["g1", "g2", "g*", "sales", "3", "true", "{g1,g2}"]),
        )
            .prop_map(|(claim, contains, pattern)| {
                let test = if contains { "contains" } else { "equals" };
                format!("{{ claim: {claim}, {test}: \"{pattern}\" }}")
            });
        (
            patterns(),
            patterns(),
            proptest::collection::vec(condition, 0..3),
        )
            .prop_map(|(clients, subjects, claims)| {
                let list = |items: Vec<&str>| {
                    items
                        .iter()
                        .map(|item| format!("\"{item}\""))
                        .collect::<Vec<_>>()
                        .join(", ")
                };
                let mut when = Vec::new();
                if let Some(clients) = clients {
                    when.push(format!("client_ids: [{}]", list(clients)));
                }
                if let Some(subjects) = subjects {
                    when.push(format!("subjects: [{}]", list(subjects)));
                }
                if !claims.is_empty() {
                    when.push(format!("claims: [{}]", claims.join(", ")));
                }
                format!("{{ {} }}", when.join(", "))
            })
    }

    fn claims_strategy() -> impl proptest::strategy::Strategy<Value = Value> {
        use proptest::prelude::*;
        let word = || prop::sample::select(vec!["g1", "g2", "g*", "sales", "3", "x"]);
        (
            proptest::option::of(proptest::collection::vec(word(), 0..3)),
            proptest::option::of(proptest::collection::vec(word(), 0..3)),
            proptest::option::of(prop_oneof![
                word().prop_map(Value::from),
                Just(json!(3)),
                Just(json!(true)),
                Just(json!(["sales"])),
            ]),
            proptest::option::of(prop_oneof![
                Just(json!(3)),
                Just(json!("3")),
                Just(json!(true)),
                Just(json!("true")),
                Just(json!(["g1"])),
            ]),
        )
            .prop_map(|(groups, scope, dept, level)| {
                let mut claims = Map::new();
                if let Some(groups) = groups {
                    claims.insert("groups".into(), json!(groups));
                }
                if let Some(scope) = scope {
                    claims.insert("scope".into(), json!(scope.join(" ")));
                }
                if let Some(dept) = dept {
                    claims.insert("org".into(), json!({ "dept": dept }));
                }
                if let Some(level) = level {
                    claims.insert("level".into(), level);
                }
                Value::Object(claims)
            })
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]

        /// The indexed look-up of the rules matching a caller finds exactly the rules
        /// that testing every rule in turn finds, in the same order.
        #[test]
        fn indexed_matching_agrees_with_testing_every_rule(
            whens in proptest::collection::vec(when_strategy(), 1..10),
            callers in proptest::collection::vec(
                (
                    proptest::option::of(proptest::sample::select(vec!["app-a", "app-b", "bx", "g1"])),
                    proptest::option::of(proptest::sample::select(vec!["u1", "svc-4", "svc-x", "app-a"])),
                    claims_strategy(),
                ),
                1..6,
            ),
        ) {
            let yaml: String = whens
                .iter()
                .enumerate()
                .map(|(index, when)| {
                    format!("  - {{ name: r{index}, when: {when}, deny_tools: [x] }}\n")
                })
                .collect();
            let rules = rules(&yaml);
            for (client, subject, value) in &callers {
                let claims = claims(value.clone());
                proptest::prop_assert_eq!(
                    rules.matching_parts(*client, *subject, &claims),
                    rules.matching_plain(*client, *subject, &claims),
                    "{} {:?} {:?} {}", yaml, client, subject, value
                );
            }
        }
    }
}
