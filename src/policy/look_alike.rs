//! Names that differ from a ruled name only in ways a lenient upstream ignores.
//! Rules match tool, prompt and resource names byte for byte, so `GET-ENV` or
//! ` get-env` escapes a rule on `get-env`; an upstream that trims or folds case
//! would then run `get-env` under a check that never applied to it. Such a name is
//! refused outright rather than judged as another item.

use std::collections::{HashMap, HashSet};

use super::glob_index::{GlobIndex, GlobIndexBuilder};
use unicode_normalization::UnicodeNormalization;

use super::{Item, ItemKind};

/// Every ruled name and pattern, per kind, in exact and in folded form.
#[derive(Debug, Clone, Default)]
pub(super) struct LookAlikes {
    kinds: [Folded; 3],
}

#[derive(Debug, Clone, Default)]
struct Folded {
    /// Folded exact name → the names as written.
    exact: HashMap<String, HashSet<String>>,
    /// Patterns as the rules match them, and folded (case-insensitively), by the
    /// same index.
    globs: GlobIndex,
    folded_globs: GlobIndex,
}

/// What a name is reduced to before comparing: Unicode compatibility forms
/// (NFKC), case, and whitespace or control characters anywhere.
pub(super) fn fold(name: &str) -> String {
    name.nfkc()
        .flat_map(char::to_lowercase)
        .filter(|ch| !ch.is_whitespace() && !ch.is_control())
        .collect()
}

fn index(kind: ItemKind) -> usize {
    match kind {
        ItemKind::Tool => 0,
        ItemKind::Resource => 1,
        ItemKind::Prompt => 2,
    }
}

/// Collects names and patterns; [`Self::build`] compiles them.
#[derive(Default)]
pub(super) struct LookAlikesBuilder {
    exact: [Vec<String>; 3],
    globs: [Vec<(String, bool)>; 3],
}

impl LookAlikesBuilder {
    /// A name or pattern a rule of `kind` matches, compiled as the rules compile it
    /// (for resources, `{`/`}` are literal).
    pub(super) fn add(&mut self, kind: ItemKind, pattern: &str) {
        let slot = index(kind);
        let literal_braces = kind == ItemKind::Resource;
        if pattern.contains(super::glob_index::GLOB_SYNTAX) {
            if let Some(globs) = self.globs.get_mut(slot) {
                globs.push((pattern.to_owned(), literal_braces));
            }
        } else if let Some(exact) = self.exact.get_mut(slot) {
            exact.push(pattern.to_owned());
        }
    }

    /// Patterns that compiled for the rules compile here too; one that does not
    /// after folding (which cannot make valid glob syntax invalid in practice) is
    /// left out of the folded set rather than failing the load.
    pub(super) fn build(self) -> LookAlikes {
        let mut kinds: [Folded; 3] = Default::default();
        for ((folded, exact), globs) in kinds.iter_mut().zip(self.exact).zip(self.globs) {
            for name in exact {
                folded.exact.entry(fold(&name)).or_default().insert(name);
            }
            let mut plain = GlobIndexBuilder::default();
            let mut insensitive = GlobIndexBuilder::default();
            for (pattern, literal_braces) in &globs {
                let folded_pattern = fold(pattern);
                let (Some(as_written), Some(as_folded)) = (
                    glob(pattern, *literal_braces, false),
                    glob(&folded_pattern, *literal_braces, true),
                ) else {
                    continue;
                };
                plain.add(pattern, as_written, false);
                // Matched against folded names: only an ASCII prefix is sure to be
                // matched byte for byte by a case-insensitive glob.
                insensitive.add(&folded_pattern, as_folded, true);
            }
            folded.globs = plain.build().unwrap_or_default();
            folded.folded_globs = insensitive.build().unwrap_or_default();
        }
        LookAlikes { kinds }
    }
}

fn glob(pattern: &str, literal_braces: bool, case_insensitive: bool) -> Option<globset::Glob> {
    super::glob_index::glob_with_case(pattern, literal_braces, case_insensitive).ok()
}

impl LookAlikes {
    /// Whether `item` is not itself a ruled name but folds into one (or into a
    /// pattern's match) that it does not match as written.
    pub(super) fn resembles_a_rule(&self, item: Item<'_>) -> bool {
        let (kind, name) = match item {
            Item::Tool(name) => (ItemKind::Tool, name),
            Item::Resource(uri) => (ItemKind::Resource, uri),
            Item::Prompt(name) => (ItemKind::Prompt, name),
        };
        let Some(rules) = self.kinds.get(index(kind)) else {
            return false;
        };
        if rules.exact.is_empty() && rules.globs.is_empty() {
            return false;
        }
        let folded = fold(name);
        if rules
            .exact
            .get(&folded)
            .is_some_and(|names| !names.contains(name))
        {
            return true;
        }
        if rules.folded_globs.is_empty() {
            return false;
        }
        let as_written: HashSet<usize> = rules.globs.matches(name).into_iter().collect();
        rules
            .folded_globs
            .matches(&folded)
            .into_iter()
            .any(|index| !as_written.contains(&index))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn look_alikes() -> LookAlikes {
        let mut builder = LookAlikesBuilder::default();
        builder.add(ItemKind::Tool, "get-env");
        builder.add(ItemKind::Tool, "admin_*");
        builder.add(ItemKind::Prompt, "secret");
        builder.add(ItemKind::Resource, "mem://secret/*");
        builder.add(ItemKind::Resource, "file:///{path}");
        builder.build()
    }

    #[test]
    fn names_folding_into_a_ruled_name_are_caught() {
        let rules = look_alikes();
        for name in [
            "GET-ENV",
            " get-env",
            "get-env ",
            "Get-Env",
            "get- env",
            "get-env\t",
        ] {
            assert!(rules.resembles_a_rule(Item::Tool(name)), "{name:?}");
        }
        for name in ["ADMIN_stats", "Admin_x", " admin_y"] {
            assert!(rules.resembles_a_rule(Item::Tool(name)), "{name:?}");
        }
        assert!(rules.resembles_a_rule(Item::Prompt("SECRET")));
        assert!(rules.resembles_a_rule(Item::Resource("MEM://secret/b")));
        assert!(rules.resembles_a_rule(Item::Resource("mem://SECRET/b")));
        assert!(rules.resembles_a_rule(Item::Resource("FILE:///{path}")));
        // Compatibility forms fold too (the parser refuses most of them earlier).
        assert!(rules.resembles_a_rule(Item::Tool("ｇｅｔ-env")));
    }

    #[test]
    fn ruled_and_unrelated_names_pass() {
        let rules = look_alikes();
        for name in [
            "get-env",
            "admin_stats",
            "echo",
            "get-envx",
            "get_env",
            "adminstats",
        ] {
            assert!(!rules.resembles_a_rule(Item::Tool(name)), "{name:?}");
        }
        assert!(!rules.resembles_a_rule(Item::Prompt("secret")));
        // Another kind's rule says nothing about this kind.
        assert!(!rules.resembles_a_rule(Item::Prompt("GET-ENV")));
        assert!(!rules.resembles_a_rule(Item::Resource("mem://secret/b")));
        assert!(!rules.resembles_a_rule(Item::Resource("mem://public/B")));
        assert!(!LookAlikes::default().resembles_a_rule(Item::Tool("GET-ENV")));
    }

    #[test]
    fn two_ruled_names_differing_in_case_are_both_themselves() {
        let mut builder = LookAlikesBuilder::default();
        builder.add(ItemKind::Tool, "Deploy");
        builder.add(ItemKind::Tool, "deploy");
        let rules = builder.build();
        assert!(!rules.resembles_a_rule(Item::Tool("Deploy")));
        assert!(!rules.resembles_a_rule(Item::Tool("deploy")));
        assert!(rules.resembles_a_rule(Item::Tool("DEPLOY")));
    }
}
