//! Scope hierarchies: a broad scope implies narrower ones (`mcp:admin` implies
//! `mcp:tools:read`), transitively. The 2026-07-28 MCP authorization spec requires a
//! server to account for them when deciding whether a token is sufficient. The
//! closure is computed once at load, so a decision only looks implied scopes up.

use std::collections::{BTreeMap, HashMap, HashSet};

use super::requirement::Holds;
use crate::auth::Scopes;

/// Each broad scope with every scope it implies, directly or not.
#[derive(Debug, Clone, Default)]
pub struct Hierarchy {
    implied: HashMap<String, Vec<String>>,
}

/// `scopes.hierarchy` loops back on itself.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cycle: {}", .0.join(" -> "))]
pub struct Cycle(pub Vec<String>);

impl Hierarchy {
    pub(crate) fn new(written: &BTreeMap<String, Vec<String>>) -> Result<Self, Cycle> {
        let mut finished: HashSet<&str> = HashSet::new();
        for root in written.keys() {
            let mut path = Vec::new();
            find_cycle(written, root, &mut path, &mut finished)?;
        }
        // Acyclic from here, so memoised closures terminate and share work on diamonds.
        let mut implied: HashMap<String, Vec<String>> = HashMap::with_capacity(written.len());
        for broad in written.keys() {
            closure(written, broad, &mut implied);
        }
        implied.retain(|_, narrower| !narrower.is_empty());
        Ok(Self { implied })
    }

    /// No `scopes.hierarchy`: each scope grants only itself.
    pub fn is_empty(&self) -> bool {
        self.implied.is_empty()
    }

    /// The token's scopes with everything they imply.
    pub fn grant<'a>(&'a self, scopes: &'a Scopes) -> Granted<'a> {
        let mut implied: Vec<&'a str> = Vec::new();
        if !self.implied.is_empty() {
            for scope in scopes.iter() {
                if let Some(narrower) = self.implied.get(scope) {
                    implied.extend(narrower.iter().map(String::as_str));
                }
            }
        }
        Granted {
            scopes,
            implied,
            hierarchy: self,
        }
    }
}

/// Depth-first search; `path` is the chain being walked, so meeting one of its
/// scopes again is a cycle, reported in full. `finished` scopes are known acyclic.
fn find_cycle<'a>(
    written: &'a BTreeMap<String, Vec<String>>,
    scope: &'a str,
    path: &mut Vec<&'a str>,
    finished: &mut HashSet<&'a str>,
) -> Result<(), Cycle> {
    if finished.contains(scope) {
        return Ok(());
    }
    if let Some(start) = path.iter().position(|step| *step == scope) {
        let mut cycle: Vec<String> = path.iter().skip(start).map(|s| (*s).to_owned()).collect();
        cycle.push(scope.to_owned());
        return Err(Cycle(cycle));
    }
    path.push(scope);
    for next in written.get(scope).into_iter().flatten() {
        find_cycle(written, next, path, finished)?;
    }
    path.pop();
    finished.insert(scope);
    Ok(())
}

fn closure(
    written: &BTreeMap<String, Vec<String>>,
    scope: &str,
    memo: &mut HashMap<String, Vec<String>>,
) -> Vec<String> {
    if let Some(done) = memo.get(scope) {
        return done.clone();
    }
    let mut out: Vec<String> = Vec::new();
    for next in written.get(scope).into_iter().flatten() {
        for implied in std::iter::once(next.clone()).chain(closure(written, next, memo)) {
            if !out.contains(&implied) {
                out.push(implied);
            }
        }
    }
    memo.insert(scope.to_owned(), out.clone());
    out
}

/// What a caller holds for one decision: the token's scopes and what they imply.
pub struct Granted<'a> {
    scopes: &'a Scopes,
    implied: Vec<&'a str>,
    hierarchy: &'a Hierarchy,
}

impl<'a> Granted<'a> {
    /// The token's own scopes, as listed (for challenges that echo them).
    pub fn listed(&self) -> impl Iterator<Item = &'a str> {
        self.scopes.iter()
    }

    /// Holds every scope (an API key configured with `*`).
    pub fn is_everything(&self) -> bool {
        self.scopes.is_all()
    }
}

impl Holds for Granted<'_> {
    fn holds(&self, scope: &str) -> bool {
        self.scopes.contains(scope) || self.implied.contains(&scope)
    }

    fn implies(&self, broad: &str, narrow: &str) -> bool {
        self.hierarchy
            .implied
            .get(broad)
            .is_some_and(|implied| implied.iter().any(|s| s == narrow))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hierarchy(pairs: &[(&str, &[&str])]) -> Result<Hierarchy, Cycle> {
        let written = pairs
            .iter()
            .map(|(broad, narrow)| {
                (
                    (*broad).to_owned(),
                    narrow.iter().map(|s| (*s).to_owned()).collect(),
                )
            })
            .collect();
        Hierarchy::new(&written)
    }

    #[test]
    fn a_broad_scope_implies_narrower_ones_transitively() {
        let hierarchy = hierarchy(&[
            ("mcp:admin", &["mcp:tools"]),
            ("mcp:tools", &["mcp:tools:read", "mcp:tools:execute"]),
        ])
        .unwrap();
        let token = Scopes::new(["mcp:admin"]);
        let granted = hierarchy.grant(&token);
        assert!(granted.holds("mcp:admin"));
        assert!(granted.holds("mcp:tools:execute"));
        assert!(!granted.holds("mcp:other"));
        let narrow = Scopes::new(["mcp:tools:read"]);
        assert!(!hierarchy.grant(&narrow).holds("mcp:tools"));
        assert_eq!(granted.listed().collect::<Vec<_>>(), ["mcp:admin"]);
    }

    #[test]
    fn cycles_are_refused_with_the_whole_loop() {
        assert_eq!(
            hierarchy(&[("a", &["b"]), ("b", &["c"]), ("c", &["a"])]).unwrap_err(),
            Cycle(vec!["a".into(), "b".into(), "c".into(), "a".into()])
        );
        assert_eq!(
            hierarchy(&[("a", &["a"])]).unwrap_err(),
            Cycle(vec!["a".into(), "a".into()])
        );
        assert_eq!(
            hierarchy(&[("x", &["b"]), ("b", &["c"]), ("c", &["b"])]).unwrap_err(),
            Cycle(vec!["b".into(), "c".into(), "b".into()])
        );
        // A diamond is not a cycle.
        assert!(hierarchy(&[("a", &["b", "c"]), ("b", &["d"]), ("c", &["d"])]).is_ok());
    }
}
