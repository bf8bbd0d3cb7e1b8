//! Scope requirements as an OR of AND-groups: the caller must hold every scope of at
//! least one group. Own code because the challenge needs the group structure (which
//! group is cheapest to satisfy) and the combination must stay small and ordered,
//! which no authorization crate offers.
//!
//! Order is part of the contract: groups stay in the order written, a product lists
//! the left operand's groups first (the left one varies slowest), and reduction keeps
//! first occurrences. So the same configuration always yields the same challenge.

use std::collections::HashSet;

/// Anything that can say whether a scope is granted (the token's scopes with the
/// hierarchy applied, see [`super::Granted`]).
pub trait Holds {
    /// Whether `scope` is granted, directly or through the hierarchy.
    fn holds(&self, scope: &str) -> bool;

    /// Whether granting `broad` would also grant `narrow` (a scope hierarchy).
    fn implies(&self, _broad: &str, _narrow: &str) -> bool {
        false
    }
}

/// An OR of AND-groups, always reduced. No groups means "no scope required".
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Requirement {
    groups: Vec<Vec<String>>,
}

/// A requirement the caller does not meet, and what would meet it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shortfall {
    /// Scopes still missing from the group with the fewest missing (first on a tie).
    pub missing: Vec<String>,
}

/// Combining two requirements would produce more groups than allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("needs {needed} scope combinations, more than the limit of {limit}")]
pub struct TooManyCombinations {
    /// How many AND-groups combining the requirements would produce.
    pub needed: usize,
    /// `auth.oauth.max_scope_combinations`.
    pub limit: usize,
}

impl Requirement {
    /// No scope required, usable in statics.
    pub const EMPTY: Self = Self { groups: Vec::new() };

    /// No scope required.
    pub fn none() -> Self {
        Self::default()
    }

    /// A single AND-group (an empty list requires nothing).
    pub fn all_of<I, S>(scopes: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self::any_of([scopes.into_iter().map(Into::into).collect::<Vec<String>>()])
    }

    /// An OR of AND-groups, reduced. An empty group is satisfied by anyone, so it makes
    /// the whole requirement empty.
    pub fn any_of<G, I, S>(groups: G) -> Self
    where
        G: IntoIterator<Item = I>,
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let groups: Vec<Vec<String>> = groups
            .into_iter()
            .map(|group| group.into_iter().map(Into::into).collect())
            .collect();
        Self {
            groups: reduce(groups),
        }
    }

    /// No group at all: nothing is required.
    pub fn is_empty(&self) -> bool {
        self.groups.is_empty()
    }

    /// The AND-groups, any one of which satisfies the requirement (reduced: none is a
    /// superset of another).
    pub fn groups(&self) -> &[Vec<String>] {
        &self.groups
    }

    /// Every scope named anywhere in the requirement.
    pub fn scopes(&self) -> impl Iterator<Item = &str> {
        self.groups.iter().flatten().map(String::as_str)
    }

    /// Both requirements at once: the product of their groups, reduced. The size of the
    /// product is checked before it is built.
    pub fn and(&self, other: &Self, limit: usize) -> Result<Self, TooManyCombinations> {
        if other.is_empty() {
            return Ok(self.clone());
        }
        if self.is_empty() {
            return Ok(other.clone());
        }
        let needed = self.groups.len().saturating_mul(other.groups.len());
        if needed > limit {
            return Err(TooManyCombinations { needed, limit });
        }
        let mut product = Vec::with_capacity(needed);
        for left in &self.groups {
            for right in &other.groups {
                let mut merged = left.clone();
                merged.extend(right.iter().filter(|s| !left.contains(s)).cloned());
                product.push(merged);
            }
        }
        Ok(Self {
            groups: reduce(product),
        })
    }

    /// `Ok` when some group is fully held; otherwise the cheapest group's missing scopes.
    pub fn check(&self, granted: &impl Holds) -> Result<(), Shortfall> {
        let mut best: Option<Vec<String>> = None;
        for group in &self.groups {
            let missing = missing_from(group, granted);
            if missing.is_empty() {
                return Ok(());
            }
            if best.as_ref().is_none_or(|best| missing.len() < best.len()) {
                best = Some(missing);
            }
        }
        match best {
            None => Ok(()),
            Some(missing) => Err(Shortfall { missing }),
        }
    }

    /// Whether some group is fully held (`check` without building the shortfall).
    pub fn is_met_by(&self, granted: &impl Holds) -> bool {
        self.groups.is_empty()
            || self
                .groups
                .iter()
                .any(|group| group.iter().all(|s| granted.holds(s)))
    }
}

impl std::fmt::Display for Requirement {
    /// `(a AND b) OR c`, or `(none)`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.groups.is_empty() {
            return f.write_str("(none)");
        }
        for (index, group) in self.groups.iter().enumerate() {
            if index > 0 {
                f.write_str(" OR ")?;
            }
            let several = group.len() > 1 && self.groups.len() > 1;
            if several {
                f.write_str("(")?;
            }
            f.write_str(&group.join(" AND "))?;
            if several {
                f.write_str(")")?;
            }
        }
        Ok(())
    }
}

/// The group's scopes not held, less those another missing scope implies: asking
/// for `mcp:admin` already brings the `mcp:tools:execute` it implies.
fn missing_from(group: &[String], granted: &impl Holds) -> Vec<String> {
    let missing: Vec<&String> = group.iter().filter(|s| !granted.holds(s)).collect();
    missing
        .iter()
        .filter(|narrow| {
            !missing
                .iter()
                .any(|broad| broad != *narrow && granted.implies(broad, narrow))
        })
        .map(|s| (*s).clone())
        .collect()
}

/// Removes in-group duplicates, duplicate groups, and groups that contain another
/// group (a superset is never cheaper to satisfy, so it only adds noise to
/// challenges). First occurrences are kept, in order. Quadratic in the number of
/// groups, which the combination limit bounds.
fn reduce(groups: Vec<Vec<String>>) -> Vec<Vec<String>> {
    let mut deduped: Vec<Vec<String>> = Vec::with_capacity(groups.len());
    for group in groups {
        let mut unique: Vec<String> = Vec::with_capacity(group.len());
        for scope in group {
            if !unique.contains(&scope) {
                unique.push(scope);
            }
        }
        if unique.is_empty() {
            // Satisfied by anyone: the whole OR is.
            return Vec::new();
        }
        deduped.push(unique);
    }
    let sets: Vec<HashSet<&str>> = deduped
        .iter()
        .map(|group| group.iter().map(String::as_str).collect())
        .collect();
    let mut keep = vec![true; deduped.len()];
    for (i, set) in sets.iter().enumerate() {
        for (j, other) in sets.iter().enumerate() {
            if i == j || !keep.get(j).copied().unwrap_or(false) {
                continue;
            }
            // `other` ⊆ `set`: drop `set`, unless they are equal and `set` came first.
            if other.len() <= set.len()
                && other.is_subset(set)
                && (other.len() < set.len() || j < i)
            {
                if let Some(flag) = keep.get_mut(i) {
                    *flag = false;
                }
                break;
            }
        }
    }
    deduped
        .into_iter()
        .zip(keep)
        .filter_map(|(group, kept)| kept.then_some(group))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Set(Vec<&'static str>);

    impl Holds for Set {
        fn holds(&self, scope: &str) -> bool {
            self.0.contains(&scope)
        }
    }

    fn granted(scopes: &'static str) -> Set {
        Set(scopes.split(' ').filter(|s| !s.is_empty()).collect())
    }

    fn req(groups: &[&[&str]]) -> Requirement {
        Requirement::any_of(groups.iter().map(|g| g.iter().copied()))
    }

    fn missing(scopes: &[&str]) -> Result<(), Shortfall> {
        Err(Shortfall {
            missing: scopes.iter().map(|s| (*s).to_owned()).collect(),
        })
    }

    #[test]
    fn an_empty_requirement_accepts_anyone() {
        assert_eq!(Requirement::none().check(&granted("")), Ok(()));
        assert_eq!(
            Requirement::all_of(Vec::<String>::new()),
            Requirement::none()
        );
        assert_eq!(req(&[&["a"], &[]]), Requirement::none());
    }

    #[test]
    fn a_group_needs_every_scope_and_names_only_the_missing_ones() {
        let requirement = Requirement::all_of(["mcp:connect", "mcp:tools", "mcp:connect"]);
        assert_eq!(requirement.check(&granted("mcp:tools mcp:connect")), Ok(()));
        assert_eq!(
            requirement.check(&granted("mcp:tools")),
            missing(&["mcp:connect"])
        );
        assert_eq!(
            requirement.check(&granted("")),
            missing(&["mcp:connect", "mcp:tools"])
        );
    }

    #[test]
    fn the_cheapest_group_wins_and_the_first_breaks_ties() {
        let requirement = req(&[&["a", "b"], &["read:fact"], &["read:all"]]);
        assert_eq!(requirement.check(&granted("x")), missing(&["read:fact"]));
        assert_eq!(requirement.check(&granted("read:all")), Ok(()));
        assert_eq!(requirement.check(&granted("a")), missing(&["b"]));
    }

    #[test]
    fn reduction_drops_duplicates_and_supersets_keeping_first_occurrences() {
        let requirement = req(&[&["b", "a", "b"], &["c"], &["a", "b"], &["c", "d"], &["a"]]);
        assert_eq!(
            requirement.groups(),
            &[vec!["c".to_owned()], vec!["a".to_owned()]]
        );
        let requirement = req(&[&["b", "a"], &["a", "b"]]);
        assert_eq!(
            requirement.groups(),
            &[vec!["b".to_owned(), "a".to_owned()]]
        );
    }

    #[test]
    fn the_product_lists_the_left_groups_first_and_is_reduced() {
        let left = req(&[&["mcp:connect"]]);
        let right = req(&[&["read:fact"], &["read:all"]]);
        let product = left.and(&right, 2048).unwrap();
        assert_eq!(
            product.to_string(),
            "(mcp:connect AND read:fact) OR (mcp:connect AND read:all)"
        );
        // The seeds' example: a token with connect and execute, a tool needing fact OR all.
        let with_execute = product.and(&req(&[&["mcp:tools:execute"]]), 2048).unwrap();
        assert_eq!(
            with_execute.check(&granted("mcp:connect mcp:tools:execute")),
            missing(&["read:fact"])
        );
        let ordered = req(&[&["a"], &["b"]])
            .and(&req(&[&["x"], &["y"]]), 2048)
            .unwrap();
        assert_eq!(
            ordered.to_string(),
            "(a AND x) OR (a AND y) OR (b AND x) OR (b AND y)"
        );
        let absorbed = req(&[&["a"], &["b"]])
            .and(&req(&[&["a"], &["c"]]), 2048)
            .unwrap();
        assert_eq!(absorbed.to_string(), "a OR (b AND c)");
    }

    #[test]
    fn the_limit_is_checked_before_the_product_is_built() {
        let left = req(&[&["a"], &["b"], &["c"]]);
        let right = req(&[&["x"], &["y"]]);
        assert_eq!(
            left.and(&right, 5),
            Err(TooManyCombinations {
                needed: 6,
                limit: 5
            })
        );
        assert!(left.and(&right, 6).is_ok());
        assert_eq!(left.and(&Requirement::none(), 0), Ok(left.clone()));
    }

    #[test]
    fn display_is_readable() {
        assert_eq!(Requirement::none().to_string(), "(none)");
        assert_eq!(req(&[&["a", "b"]]).to_string(), "a AND b");
        assert_eq!(req(&[&["a", "b"], &["c"]]).to_string(), "(a AND b) OR c");
    }
}
