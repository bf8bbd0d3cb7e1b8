//! Principal × request → decision. Pure: no I/O, no HTTP types; `server/` turns a
//! decision into a response.

mod requirement;

pub use requirement::{Requirement, Shortfall};

use std::collections::BTreeSet;

use crate::auth::Principal;
use crate::config::Config;

/// The scope rules in force.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    /// Required on every HTTP request to the MCP endpoint (`scopes.initialize`).
    every_request: Requirement,
}

/// Why a verified caller was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denial {
    /// Scopes to ask for (the `scope` of the challenge).
    pub challenge_scopes: Vec<String>,
    /// The `error_description` of the challenge.
    pub description: String,
}

impl Policy {
    pub fn from_config(config: &Config) -> Self {
        Self {
            every_request: Requirement::all_of(config.scopes.initialize.iter().cloned()),
        }
    }

    /// The scopes a bare 401 names: what every request needs.
    pub fn connect_scopes(&self) -> Vec<String> {
        self.every_request.scopes().map(str::to_owned).collect()
    }

    /// The sorted union of every configured scope (RFC 9728 `scopes_supported`).
    pub fn scopes_supported(&self) -> Vec<String> {
        let all: BTreeSet<&str> = self.every_request.scopes().collect();
        all.into_iter().map(str::to_owned).collect()
    }

    /// Decides an HTTP request to the MCP endpoint. With `echo_token_scopes` the
    /// challenge lists the token's scopes first (for clients that replace, rather than
    /// add to, their scopes on step-up).
    pub fn authorize_request(
        &self,
        principal: &Principal,
        echo_token_scopes: bool,
    ) -> Result<(), Denial> {
        self.every_request
            .check(&principal.scopes)
            .map_err(|shortfall| {
                let description =
                    format!("missing required scopes: {}", shortfall.missing.join(", "));
                let challenge_scopes = if echo_token_scopes {
                    let mut scopes: Vec<String> =
                        principal.scopes.iter().map(str::to_owned).collect();
                    for scope in shortfall.missing {
                        if !scopes.contains(&scope) {
                            scopes.push(scope);
                        }
                    }
                    scopes
                } else {
                    shortfall.missing
                };
                Denial {
                    challenge_scopes,
                    description,
                }
            })
    }
}
