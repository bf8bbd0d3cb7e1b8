//! Scope requirements as an OR of AND-groups: the caller must hold every scope of at
//! least one group. Own code because the challenge needs the group structure (which
//! group is cheapest to satisfy), which no authorization crate exposes.

use crate::auth::Scopes;

/// An OR of AND-groups. No groups means "no scope required".
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

impl Requirement {
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
        let mut group: Vec<String> = Vec::new();
        for scope in scopes {
            let scope = scope.into();
            if !group.contains(&scope) {
                group.push(scope);
            }
        }
        if group.is_empty() {
            Self::none()
        } else {
            Self {
                groups: vec![group],
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.groups.is_empty()
    }

    /// Every scope named anywhere in the requirement.
    pub fn scopes(&self) -> impl Iterator<Item = &str> {
        self.groups.iter().flatten().map(String::as_str)
    }

    /// `Ok` when some group is fully granted; otherwise the cheapest group's missing scopes.
    pub fn check(&self, granted: &Scopes) -> Result<(), Shortfall> {
        let mut best: Option<Vec<String>> = None;
        for group in &self.groups {
            let missing: Vec<String> = group
                .iter()
                .filter(|scope| !granted.contains(scope))
                .cloned()
                .collect();
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
}

#[cfg(test)]
mod tests {
    use super::*;

    fn granted(scopes: &str) -> Scopes {
        Scopes::new(scopes.split(' '))
    }

    #[test]
    fn an_empty_requirement_accepts_anyone() {
        assert_eq!(Requirement::none().check(&Scopes::default()), Ok(()));
        assert_eq!(
            Requirement::all_of(Vec::<String>::new()),
            Requirement::none()
        );
    }

    #[test]
    fn a_group_needs_every_scope_and_names_only_the_missing_ones() {
        let requirement = Requirement::all_of(["mcp:connect", "mcp:tools", "mcp:connect"]);
        assert_eq!(requirement.check(&granted("mcp:tools mcp:connect")), Ok(()));
        assert_eq!(
            requirement.check(&granted("mcp:tools")),
            Err(Shortfall {
                missing: vec!["mcp:connect".to_owned()]
            })
        );
        assert_eq!(
            requirement.check(&Scopes::default()),
            Err(Shortfall {
                missing: vec!["mcp:connect".to_owned(), "mcp:tools".to_owned()]
            })
        );
    }

    #[test]
    fn the_cheapest_group_wins_and_the_first_breaks_ties() {
        let requirement = Requirement {
            groups: vec![
                vec!["a".into(), "b".into()],
                vec!["read:fact".into()],
                vec!["read:all".into()],
            ],
        };
        assert_eq!(
            requirement.check(&granted("x")),
            Err(Shortfall {
                missing: vec!["read:fact".to_owned()]
            })
        );
        assert_eq!(requirement.check(&granted("read:all")), Ok(()));
    }
}
