//! Many globs, matched at a cost that does not grow with their number. A `GlobSet`
//! answers `matches` by running every pattern it compiled to a regular expression
//! (a class, `?`, an alternative, case-insensitive matching) and then walking a
//! bit per such pattern: with thousands of rules that walk is most of a request's
//! cost. Here the patterns are spread over shards of about [`SHARD`] patterns by a
//! hash of their literal prefix (what comes before the first glob character), each
//! shard one `GlobSet`. A pattern can only match a name that starts with its literal
//! prefix, so a name only needs the shards of its own prefixes of the lengths some
//! pattern's prefix has: one hash and one small set per distinct length. Every
//! shard's answer is exact, so the union is exactly `GlobSet::matches` over all of
//! them. Shards rather than a set per prefix keep the memory of a set per pattern
//! away: a regular expression each would cost tens of KiB apiece.

use std::hash::{DefaultHasher, Hash, Hasher};

use globset::{Glob, GlobBuilder, GlobSet, GlobSetBuilder};

/// Characters that make a key a glob rather than an exact name.
pub(super) const GLOB_SYNTAX: &[char] = &['*', '?', '[', ']', '{', '}', '\\'];

/// Patterns per shard, about: walking this many bits is cheap, and a set this
/// size shares one regular expression engine among its patterns.
const SHARD: usize = 64;

/// Compiled globs, with their indices in the order added.
#[derive(Debug, Clone, Default)]
pub(crate) struct GlobIndex {
    shards: Vec<Shard>,
    /// The distinct prefix lengths, in bytes, ascending (0 when some pattern has none).
    lengths: Vec<usize>,
    count: usize,
}

#[derive(Debug, Clone, Default)]
struct Shard {
    set: GlobSet,
    /// The set's pattern index → the index the pattern was added with.
    indices: Vec<usize>,
}

/// Collects patterns for a [`GlobIndex`].
#[derive(Default)]
pub(crate) struct GlobIndexBuilder {
    patterns: Vec<(String, Glob)>,
}

impl GlobIndexBuilder {
    /// Adds `glob`, compiled from `source` (the text the glob was built from, escapes
    /// included). With `ascii_only` the prefix stops at the first non-ASCII
    /// character: for case-insensitive globs, matched against names already folded
    /// to lower case, where only ASCII is sure to be matched byte for byte.
    pub(crate) fn add(&mut self, source: &str, glob: Glob, ascii_only: bool) {
        let prefix = literal_prefix(source, ascii_only).to_owned();
        self.patterns.push((prefix, glob));
    }

    pub(crate) fn build(self) -> Result<GlobIndex, globset::Error> {
        let count = self.patterns.len();
        let shard_count = count.div_ceil(SHARD).max(1);
        let mut builders: Vec<(GlobSetBuilder, Vec<usize>)> = (0..shard_count)
            .map(|_| (GlobSetBuilder::new(), Vec::new()))
            .collect();
        let mut lengths: Vec<usize> = Vec::new();
        for (index, (prefix, glob)) in self.patterns.into_iter().enumerate() {
            lengths.push(prefix.len());
            if let Some((builder, indices)) = builders.get_mut(shard_of(&prefix, shard_count)) {
                builder.add(glob);
                indices.push(index);
            }
        }
        lengths.sort_unstable();
        lengths.dedup();
        let shards = builders
            .into_iter()
            .map(|(builder, indices)| {
                Ok(Shard {
                    set: builder.build()?,
                    indices,
                })
            })
            .collect::<Result<Vec<_>, globset::Error>>()?;
        Ok(GlobIndex {
            shards,
            lengths,
            count,
        })
    }
}

/// The shard of a prefix: the same at build and at look-up (fixed hash keys).
fn shard_of(prefix: &str, shards: usize) -> usize {
    let mut hasher = DefaultHasher::new();
    prefix.hash(&mut hasher);
    (hasher.finish() % shards.max(1) as u64) as usize
}

/// What `source` starts with before its first glob character (or, with
/// `ascii_only`, its first non-ASCII character).
fn literal_prefix(source: &str, ascii_only: bool) -> &str {
    let end = source
        .char_indices()
        .find(|(_, ch)| GLOB_SYNTAX.contains(ch) || (ascii_only && !ch.is_ascii()))
        .map_or(source.len(), |(at, _)| at);
    source.get(..end).unwrap_or_default()
}

impl GlobIndex {
    pub(crate) fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The indices of every pattern matching `name`, ascending and once each (as
    /// `GlobSet::matches` answers).
    pub(crate) fn matches(&self, name: &str) -> Vec<usize> {
        let mut out = Vec::new();
        let mut searched: Vec<usize> = Vec::new();
        for &length in &self.lengths {
            if length > name.len() {
                break;
            }
            // Inside a character: no prefix of this length can be the name's.
            let Some(prefix) = name.get(..length) else {
                continue;
            };
            let shard = shard_of(prefix, self.shards.len());
            if searched.contains(&shard) {
                continue;
            }
            searched.push(shard);
            if let Some(shard) = self.shards.get(shard) {
                for hit in shard.set.matches(name) {
                    if let Some(index) = shard.indices.get(hit) {
                        out.push(*index);
                    }
                }
            }
        }
        out.sort_unstable();
        out
    }
}

/// A pattern compiled as every rule of the policy compiles it
/// ([`super::rules::compile_glob`]), optionally ignoring case (to find names that only differ in it).
pub(super) fn glob_with_case(
    pattern: &str,
    literal_braces: bool,
    case_insensitive: bool,
) -> Result<Glob, globset::Error> {
    let source = if literal_braces {
        escape_braces(pattern)
    } else {
        pattern.to_owned()
    };
    GlobBuilder::new(&source)
        .literal_separator(false)
        .backslash_escape(true)
        .case_insensitive(case_insensitive)
        .build()
}

/// `\{` and `\}` for every brace not already escaped.
fn escape_braces(pattern: &str) -> String {
    let mut out = String::with_capacity(pattern.len() + 4);
    let mut escaped = false;
    for ch in pattern.chars() {
        if !escaped && matches!(ch, '{' | '}') {
            out.push('\\');
        }
        escaped = !escaped && ch == '\\';
        out.push(ch);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn both(patterns: &[String], case_insensitive: bool) -> (GlobSet, GlobIndex) {
        let mut set = GlobSetBuilder::new();
        let mut index = GlobIndexBuilder::default();
        for pattern in patterns {
            let Ok(glob) = glob_with_case(pattern, false, case_insensitive) else {
                continue;
            };
            set.add(glob.clone());
            index.add(pattern, glob, case_insensitive);
        }
        (set.build().unwrap(), index.build().unwrap())
    }

    #[test]
    fn prefixes_stop_at_glob_syntax() {
        assert_eq!(literal_prefix("ns_01_*", false), "ns_01_");
        assert_eq!(literal_prefix("db_[qt]x", false), "db_");
        assert_eq!(literal_prefix("*x", false), "");
        assert_eq!(literal_prefix("a\\*b", false), "a");
        assert_eq!(literal_prefix("plain", false), "plain");
        assert_eq!(literal_prefix("éa*", true), "");
        assert_eq!(literal_prefix("aé*", false), "aé");
    }

    #[test]
    fn names_shorter_than_a_prefix_or_split_inside_a_character_are_handled() {
        let patterns = ["abcdef*".to_owned(), "é*".to_owned(), "*".to_owned()];
        let (set, index) = both(&patterns, false);
        for name in ["", "a", "é", "éx", "abcdefg", "xé"] {
            assert_eq!(index.matches(name), set.matches(name), "{name:?}");
        }
    }

    #[test]
    fn case_insensitive_globs_are_filed_under_their_ascii_prefix_only() {
        // Whether a case-insensitive glob takes `ς` for `σ` is the regex engine's
        // business; filed under `a` only, the group is found either way.
        let patterns = ["ας*".to_owned(), "aς*".to_owned(), "k*".to_owned()];
        let (set, index) = both(&patterns, true);
        for name in ["ασx", "aσ", "aς", "k", "kelvin"] {
            let folded = super::super::look_alike::fold(name);
            assert_eq!(index.matches(&folded), set.matches(&folded), "{name:?}");
        }
    }

    #[test]
    fn thousands_of_patterns_spread_over_shards_answer_as_one_set() {
        let patterns: Vec<String> = (0..3000)
            .map(|i| match i % 4 {
                0 => format!("ns_{i}_*"),
                1 => format!("db_{i}_[qt]*"),
                2 => format!("*_{i}"),
                _ => format!("x{}?", i % 7),
            })
            .collect();
        let (set, index) = both(&patterns, false);
        assert!(index.shards.len() > 1);
        for name in [
            "ns_0_a",
            "db_1_query",
            "db_1_x",
            "a_2",
            "x3y",
            "x3",
            "ns_4_",
            "",
        ] {
            assert_eq!(index.matches(name), set.matches(name), "{name:?}");
        }
    }

    /// Names and patterns from a small alphabet (so that they meet), with the
    /// characters case folding treats specially.
    fn text() -> impl Strategy<Value = String> {
        proptest::collection::vec(
            prop::sample::select(vec![
                "a", "b", "A", "_", "/", "k", "K", "s", "ſ", "\u{212a}", "σ", "ς", "Σ", "é", "ß",
                "ab", "x",
            ]),
            0..6,
        )
        .prop_map(|parts| parts.concat())
    }

    fn pattern() -> impl Strategy<Value = String> {
        (
            text(),
            prop::sample::select(vec!["", "*", "?", "[ab]", "{a,ς}", "\\*", "[!k]"]),
            text(),
        )
            .prop_map(|(head, glob, tail)| format!("{head}{glob}{tail}"))
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// The index answers exactly what one `GlobSet` of the same patterns does,
        /// case-sensitively on any name, and case-insensitively on names folded as
        /// the look-alike check folds them.
        #[test]
        fn the_index_agrees_with_a_glob_set(
            patterns in proptest::collection::vec(pattern(), 0..12),
            names in proptest::collection::vec(text(), 1..8),
        ) {
            let (set, index) = both(&patterns, false);
            for name in &names {
                prop_assert_eq!(index.matches(name), set.matches(name));
            }
            let folded_patterns: Vec<String> =
                patterns.iter().map(|p| super::super::look_alike::fold(p)).collect();
            let (set, index) = both(&folded_patterns, true);
            for name in &names {
                let folded = super::super::look_alike::fold(name);
                prop_assert_eq!(index.matches(&folded), set.matches(&folded));
            }
        }
    }
}
