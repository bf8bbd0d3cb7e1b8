//! Which of the requested scopes a user may be granted, by the provider's claims.
//!
//! `authorization_server.provider.claim_scopes` maps claim values (a group, a role)
//! to scopes, in the shape of `auth.oauth.claim_scopes`. A scope that some mapping
//! names is *restricted*: it is granted only to a user whose ID token (or userinfo)
//! carries a claim value mapped to it. A scope no mapping names is granted to anyone
//! who asks and approves. Without a mapping, every requested scope is granted.

use std::collections::BTreeSet;

use serde_json::{Map, Value};

use crate::auth::Scopes;
use crate::auth::claim_map::ClaimScopeMap;
use crate::config::ClaimScopesConfig;

/// The compiled limit.
#[derive(Debug, Clone, Default)]
pub(crate) struct ScopeLimit {
    map: ClaimScopeMap,
    restricted: BTreeSet<String>,
}

impl ScopeLimit {
    pub(crate) fn new(config: &ClaimScopesConfig) -> Self {
        let restricted = config
            .rules
            .iter()
            .flat_map(|rule| rule.values.values())
            .flat_map(|scopes| scopes.0.iter().cloned())
            .collect();
        Self {
            map: ClaimScopeMap::compile([config]),
            restricted,
        }
    }

    /// The scopes of `requested` that the user with `claims` may hold, in order.
    pub(crate) fn granted(&self, requested: &[String], claims: &Map<String, Value>) -> Vec<String> {
        if self.restricted.is_empty() {
            return requested.to_vec();
        }
        let mut mapped = Scopes::default();
        self.map.apply(claims, &mut mapped);
        requested
            .iter()
            .filter(|scope| !self.restricted.contains(*scope) || mapped.contains(scope))
            .cloned()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn limit(yaml: serde_json::Value) -> ScopeLimit {
        let config: ClaimScopesConfig = serde_json::from_value(yaml).unwrap();
        ScopeLimit::new(&config)
    }

    fn claims(value: serde_json::Value) -> Map<String, Value> {
        value.as_object().unwrap().clone()
    }

    #[test]
    fn restricted_scopes_need_a_mapped_claim_and_the_rest_pass() {
        let limit = limit(json!({"groups": {"admins": ["mcp:admin"], "writers": ["mcp:write"]}}));
        let requested: Vec<String> = ["mcp:read", "mcp:write", "mcp:admin"]
            .map(String::from)
            .to_vec();
        assert_eq!(
            limit.granted(&requested, &claims(json!({"groups": ["writers"]}))),
            ["mcp:read", "mcp:write"]
        );
        assert_eq!(
            limit.granted(
                &requested,
                &claims(json!({"groups": ["admins", "writers"]}))
            ),
            requested
        );
        assert_eq!(limit.granted(&requested, &claims(json!({}))), ["mcp:read"]);
        assert_eq!(
            limit.granted(&requested, &claims(json!({"groups": "admins"}))),
            ["mcp:read", "mcp:admin"]
        );
    }

    #[test]
    fn without_a_mapping_everything_requested_is_granted() {
        let limit = ScopeLimit::default();
        let requested: Vec<String> = vec!["a".into(), "b".into()];
        assert_eq!(limit.granted(&requested, &Map::new()), requested);
    }
}
