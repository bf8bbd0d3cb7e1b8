//! Per-item rules (tools, resources, prompts) keyed by exact name or glob pattern,
//! compiled once so that a look-up costs one hash probe for the exact name and one
//! per distinct literal prefix of the globs ([`GlobIndex`]), whatever the number of
//! rules.

use std::collections::{BTreeMap, HashMap};

use globset::Glob;

use super::glob_index::{GLOB_SYNTAX, GlobIndex, GlobIndexBuilder, glob_with_case};

use super::requirement::Requirement;
use crate::config::{ConfigError, RequirementSpec};

/// One rule as configured.
#[derive(Debug, Clone)]
pub struct NamedRule {
    /// The key as written (`get-env`, `admin_*`, `file:///secret/**`).
    pub pattern: String,
    pub(crate) requirement: Requirement,
    /// The pattern has glob syntax (`*`, `?`, `[…]`, `{…}`, `\`); otherwise it names one
    /// item exactly.
    pub is_glob: bool,
}

/// Every rule of one kind.
#[derive(Debug, Clone, Default)]
pub struct NamedRules {
    /// In key order (the configuration's maps are sorted by key).
    rules: Vec<NamedRule>,
    exact: HashMap<String, usize>,
    globs: GlobIndex,
    /// `globs` index → `rules` index.
    glob_rules: Vec<usize>,
}

impl NamedRules {
    /// `key` is the config path of the map (`scopes.tools`), for error messages.
    pub fn new(
        key: &str,
        written: &BTreeMap<String, RequirementSpec>,
    ) -> Result<Self, ConfigError> {
        Self::compile(key, written, false)
    }

    /// For resources, `{` and `}` are literal: URI templates (`file:///{path}`) are
    /// matched by their template string, so a key naming one must mean it as written
    /// rather than as glob alternatives.
    pub fn for_resources(
        key: &str,
        written: &BTreeMap<String, RequirementSpec>,
    ) -> Result<Self, ConfigError> {
        Self::compile(key, written, true)
    }

    fn compile(
        key: &str,
        written: &BTreeMap<String, RequirementSpec>,
        literal_braces: bool,
    ) -> Result<Self, ConfigError> {
        let mut rules = Vec::with_capacity(written.len());
        let mut exact = HashMap::new();
        let mut builder = GlobIndexBuilder::default();
        let mut glob_rules = Vec::new();
        for (pattern, spec) in written {
            let index = rules.len();
            let is_glob = pattern.contains(GLOB_SYNTAX);
            if pattern.is_empty() {
                return Err(ConfigError::invalid(
                    key,
                    "a rule needs a non-empty name or pattern",
                ));
            }
            if is_glob {
                builder.add(
                    pattern,
                    compile_glob(&format!("{key}.{pattern}"), pattern, literal_braces)?,
                    false,
                );
                glob_rules.push(index);
            } else {
                exact.insert(pattern.clone(), index);
            }
            rules.push(NamedRule {
                pattern: pattern.clone(),
                requirement: Requirement::any_of(spec.groups.iter().cloned()),
                is_glob,
            });
        }
        let globs = builder
            .build()
            .map_err(|error| ConfigError::invalid(key, format!("bad glob: {error}")))?;
        Ok(Self {
            rules,
            exact,
            globs,
            glob_rules,
        })
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    pub(crate) fn rules(&self) -> &[NamedRule] {
        &self.rules
    }

    /// Every rule that applies to `name`: the exact one first, then matching globs in
    /// key order. All of them apply at once, so adding a rule can only tighten.
    pub fn matching(&self, name: &str) -> Vec<&NamedRule> {
        let mut out = Vec::new();
        if let Some(rule) = self
            .exact
            .get(name)
            .and_then(|index| self.rules.get(*index))
        {
            out.push(rule);
        }
        if !self.glob_rules.is_empty() {
            for glob_index in self.globs.matches(name) {
                if let Some(rule) = self
                    .glob_rules
                    .get(glob_index)
                    .and_then(|index| self.rules.get(*index))
                {
                    out.push(rule);
                }
            }
        }
        out
    }
}

/// One pattern as every rule of the policy compiles it: `*` crosses `/` (URIs,
/// namespaced tool names and subjects are flat strings here), matching is
/// case-sensitive, and with `literal_braces` (resources) `{`/`}` are literal so that a
/// URI template is matched as written. `key` names the pattern in errors.
pub(crate) fn compile_glob(
    key: &str,
    pattern: &str,
    literal_braces: bool,
) -> Result<Glob, ConfigError> {
    glob_with_case(pattern, literal_braces, false)
        .map_err(|error| ConfigError::invalid(key, format!("bad glob: {}", error.kind())))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(pairs: &[(&str, &[&str])]) -> NamedRules {
        let written = pairs
            .iter()
            .map(|(pattern, scopes)| {
                (
                    (*pattern).to_owned(),
                    RequirementSpec {
                        groups: vec![scopes.iter().map(|s| (*s).to_owned()).collect()],
                    },
                )
            })
            .collect();
        NamedRules::new("scopes.tools", &written).unwrap()
    }

    fn patterns(rules: &NamedRules, name: &str) -> Vec<String> {
        rules
            .matching(name)
            .iter()
            .map(|r| r.pattern.clone())
            .collect()
    }

    #[test]
    fn exact_names_then_globs_in_key_order() {
        let rules = rules(&[
            ("get-env", &["mcp:admin"]),
            ("get-*", &["mcp:read"]),
            ("*", &["mcp:any"]),
            ("file:///secret/*", &["secret"]),
        ]);
        assert_eq!(patterns(&rules, "get-env"), ["get-env", "*", "get-*"]);
        assert_eq!(patterns(&rules, "echo"), ["*"]);
        assert_eq!(
            patterns(&rules, "file:///secret/a/b.txt"),
            ["*", "file:///secret/*"]
        );
    }

    #[test]
    fn matching_is_exact_bytes_and_case_sensitive() {
        let rules = rules(&[("get-env", &["a"]), ("db_?", &["b"])]);
        assert!(rules.matching("Get-Env").is_empty());
        assert!(rules.matching("get-env ").is_empty());
        assert!(rules.matching("get\u{200b}-env").is_empty());
        assert_eq!(patterns(&rules, "db_1"), ["db_?"]);
        assert!(rules.matching("db_12").is_empty());
    }

    #[test]
    fn resource_keys_take_braces_literally() {
        let written = [
            ("db://{table}".to_owned(), RequirementSpec::default()),
            ("file:///secret/*".to_owned(), RequirementSpec::default()),
            ("x://\\{a\\}".to_owned(), RequirementSpec::default()),
        ]
        .into();
        let rules = NamedRules::for_resources("scopes.resources", &written).unwrap();
        assert_eq!(patterns(&rules, "db://{table}"), ["db://{table}"]);
        assert!(rules.matching("db://table").is_empty());
        assert_eq!(
            patterns(&rules, "file:///secret/{name}"),
            ["file:///secret/*"]
        );
        assert_eq!(patterns(&rules, "x://{a}"), ["x://\\{a\\}"]);
    }

    #[test]
    fn a_bad_glob_names_its_key() {
        let written = [("db_[".to_owned(), RequirementSpec::default())].into();
        let error = NamedRules::new("scopes.tools", &written).unwrap_err();
        assert!(
            error.to_string().starts_with("scopes.tools.db_[: bad glob"),
            "{error}"
        );
    }
}
