//! The one access decision: every check a verified caller's request goes through,
//! in the order the gateway applies them. The MCP endpoint and `mcpgate explain`
//! both call [`Policy::decide`], so an explanation cannot drift from what the
//! gateway does, and a new kind of refusal is added here once.

use super::{Denial, Item, Matched, Policy, Requirement, RuleDenial, Target};
use crate::auth::Scopes;

/// What a request asks of the policy, once its caller is known.
#[derive(Debug, Clone, Copy)]
pub struct Question<'a> {
    pub(crate) scopes: &'a Scopes,
    /// The `rules:` entries that apply to the caller.
    pub matched: &'a Matched,
    /// What each message asks for, in order (one, several for a batch, or
    /// [`Target::CONNECTION`] for GET and DELETE).
    pub targets: &'a [Target<'a>],
    /// Requirements only the message itself tells, such as the fields an
    /// `execute_graphql` query selects, in the order of their messages.
    pub computed: &'a [Computed<'a>],
    /// `scope_challenge_include_token_scopes`.
    pub echo_token_scopes: bool,
}

/// A requirement worked out from a message at request time.
#[derive(Debug, Clone)]
pub enum Computed<'a> {
    /// The item needs this on top of its rules.
    Needs(Item<'a>, Requirement),
    /// The item's requirement has more combinations than the limit: no scope set
    /// short of every scope could be named. The text says why.
    TooComplex(Item<'a>, String),
}

/// Why the policy refuses a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PolicyRefusal {
    /// Scopes are missing: a step-up challenge names the cheapest set to ask for.
    Scopes(Denial),
    /// No scope could make the request acceptable (an `execute_graphql` query whose
    /// requirement exceeds `max_scope_combinations`).
    Unsatisfiable(String),
    /// A `rules:` entry takes an item the request uses.
    Rule(RuleDenial),
}

impl PolicyRefusal {
    /// The description the client is given and the audit record keeps.
    pub fn description(&self) -> &str {
        match self {
            Self::Scopes(denial) => &denial.description,
            Self::Unsatisfiable(description) => description,
            Self::Rule(denial) => &denial.description,
        }
    }
}

impl Policy {
    /// Decides a verified caller's request. The scope levels come first, then what
    /// the messages themselves require, then `rules:`: a request short of scopes gets
    /// the step-up challenge, which a rule denial would hide.
    pub fn decide(&self, question: &Question<'_>) -> Result<(), PolicyRefusal> {
        let Question {
            scopes,
            matched,
            targets,
            computed,
            echo_token_scopes,
        } = *question;
        self.authorize(scopes, targets, echo_token_scopes)
            .map_err(PolicyRefusal::Scopes)?;
        for computed in computed {
            match computed {
                Computed::Needs(item, requirement) => self
                    .authorize_item(scopes, *item, requirement, echo_token_scopes)
                    .map_err(PolicyRefusal::Scopes)?,
                // A caller holding every scope meets any requirement, computed or not.
                Computed::TooComplex(_, why) => {
                    if !self.grant(scopes).is_everything() {
                        return Err(PolicyRefusal::Unsatisfiable(why.clone()));
                    }
                }
            }
        }
        let items = targets.iter().filter_map(|target| target.item);
        self.principal_rules()
            .check_all(matched, items)
            .map_err(PolicyRefusal::Rule)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::load_from_str;
    use crate::policy::Level;

    fn policy(yaml: &str) -> Policy {
        Policy::from_config(&load_from_str(yaml).unwrap()).unwrap()
    }

    const CONFIG: &str = "
upstream: { url: http://127.0.0.1:9/mcp }
auth:
  oauth:
    enabled: true
    jwks: [{ secret: a-development-secret-of-at-least-32-bytes!, header_key_id: dev }]
scopes:
  initialize: [mcp:connect]
  tools_call: [mcp:tools:execute]
  tools:
    get-env: mcp:admin
rules:
  - name: no-db
    deny_tools: [\"db_*\"]
";

    fn scopes(text: &str) -> Scopes {
        if text == "*" {
            return Scopes::all();
        }
        Scopes::new(text.split(' '))
    }

    fn call(name: &str) -> Target<'_> {
        Target {
            level: Level::ToolsCall,
            item: Some(Item::Tool(name)),
        }
    }

    fn ask<'a>(
        policy: &Policy,
        scopes: &'a Scopes,
        matched: &'a Matched,
        targets: &'a [Target<'a>],
        computed: &'a [Computed<'a>],
    ) -> Result<(), PolicyRefusal> {
        policy.decide(&Question {
            scopes,
            matched,
            targets,
            computed,
            echo_token_scopes: false,
        })
    }

    #[test]
    fn scopes_then_computed_requirements_then_rules() {
        let policy = policy(CONFIG);
        let someone = crate::auth::Principal::for_tests("someone", Scopes::default());
        let everyone = policy.principal_rules().matching(&someone);
        let basic = scopes("mcp:connect mcp:tools:execute");
        // Accepted.
        assert_eq!(
            ask(&policy, &basic, &everyone, &[call("echo")], &[]),
            Ok(())
        );
        // Scopes first: the step-up challenge, even where a rule would also refuse.
        let refused = ask(
            &policy,
            &scopes("mcp:connect"),
            &everyone,
            &[call("db_x")],
            &[],
        );
        assert!(
            matches!(refused, Err(PolicyRefusal::Scopes(ref d)) if d.challenge_scopes == ["mcp:tools:execute"])
        );
        let refused = ask(&policy, &basic, &everyone, &[call("get-env")], &[]);
        assert!(
            matches!(refused, Err(PolicyRefusal::Scopes(ref d)) if d.challenge_scopes == ["mcp:admin"])
        );
        // Then what the message itself needs.
        let needs = [Computed::Needs(
            Item::Tool("execute_graphql"),
            Requirement::any_of([vec!["read:fact".to_owned()]]),
        )];
        let refused = ask(
            &policy,
            &basic,
            &everyone,
            &[call("execute_graphql")],
            &needs,
        );
        assert!(
            matches!(refused, Err(PolicyRefusal::Scopes(ref d)) if d.challenge_scopes == ["read:fact"])
        );
        let held = scopes("mcp:connect mcp:tools:execute read:fact");
        assert_eq!(
            ask(
                &policy,
                &held,
                &everyone,
                &[call("execute_graphql")],
                &needs
            ),
            Ok(())
        );
        let complex = [Computed::TooComplex(
            Item::Tool("execute_graphql"),
            "too many".to_owned(),
        )];
        assert_eq!(
            ask(
                &policy,
                &held,
                &everyone,
                &[call("execute_graphql")],
                &complex
            ),
            Err(PolicyRefusal::Unsatisfiable("too many".to_owned()))
        );
        assert_eq!(
            ask(
                &policy,
                &scopes("*"),
                &everyone,
                &[call("execute_graphql")],
                &complex
            ),
            Ok(())
        );
        // Rules last.
        let refused = ask(&policy, &basic, &everyone, &[call("db_x")], &[]);
        assert!(matches!(refused, Err(PolicyRefusal::Rule(ref d)) if d.rule == "no-db"));
        // A caller the rule does not match is not refused by it.
        assert_eq!(
            ask(&policy, &basic, &Matched::default(), &[call("db_x")], &[]),
            Ok(())
        );
    }
}
