//! How a provider's tokens are read beyond RFC 9068: which claims hold its scopes,
//! which claim names the client, which claim carries the audience, and which claim
//! values grant scopes (`claim_scopes`). Compiled once per provider, applied once per
//! token before the principal is cached, so a cached request pays nothing for it.

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::{Map, Value};

use super::principal::{MappedScope, Scopes};
use crate::config::{ClaimScopesConfig, JwksProviderConfig, default_scope_claims};

/// Most values read from one claim; the rest of a longer array is ignored (a token
/// with thousands of groups must not cost thousands of lookups per mapping).
pub const MAX_CLAIM_VALUES: usize = 256;

/// The values a claim holds, as strings. A string is one value, except `scope` (and
/// `scp` when a string), which are space-delimited lists (RFC 9068 §2.2.3); an array
/// gives one value per string item (other items are ignored); any other JSON type
/// gives none.
pub fn claim_values<'a, S: AsRef<str>>(path: &[S], value: &'a Value) -> Vec<&'a str> {
    let space_delimited = matches!(path, [only] if matches!(only.as_ref(), "scope" | "scp"));
    match value {
        Value::String(text) if space_delimited => text
            .split(' ')
            .filter(|item| !item.is_empty())
            .take(MAX_CLAIM_VALUES)
            .collect(),
        Value::String(text) => vec![text.as_str()],
        Value::Array(items) => items
            .iter()
            .take(MAX_CLAIM_VALUES)
            .filter_map(Value::as_str)
            .collect(),
        _ => Vec::new(),
    }
}

/// The claim at `path`, following nested objects; `None` when a member is missing or
/// an intermediate value is not an object.
/// Generic over the segments' type so that compiled paths (`Vec<String>`) are read
/// as they are, without a `Vec<&str>` per look-up.
pub fn resolve<'a, S: AsRef<str>>(claims: &'a Map<String, Value>, path: &[S]) -> Option<&'a Value> {
    let (first, rest) = path.split_first()?;
    let mut current = claims.get(first.as_ref())?;
    for segment in rest {
        current = current.as_object()?.get(segment.as_ref())?;
    }
    Some(current)
}

/// The members of `claims` named in `roots`, copied.
pub fn keep_claims(claims: &Map<String, Value>, roots: &[String]) -> Map<String, Value> {
    roots
        .iter()
        .filter_map(|root| Some((root.clone(), claims.get(root)?.clone())))
        .collect()
}

/// One compiled `claim_scopes` entry.
#[derive(Debug, Clone)]
struct Rule {
    path: Vec<String>,
    /// The path as configured, shared by every `MappedScope` it produces.
    label: Arc<str>,
    values: HashMap<String, Vec<String>>,
}

/// Claim values that grant scopes, compiled for constant-time lookups per value.
#[derive(Debug, Clone, Default)]
pub struct ClaimScopeMap {
    rules: Vec<Rule>,
}

impl ClaimScopeMap {
    /// The rules of every layer given, in order (global first, then the provider's).
    pub fn compile<'a>(layers: impl IntoIterator<Item = &'a ClaimScopesConfig>) -> Self {
        let rules = layers
            .into_iter()
            .flat_map(|layer| &layer.rules)
            .map(|rule| Rule {
                path: rule
                    .claim
                    .segments()
                    .into_iter()
                    .map(str::to_owned)
                    .collect(),
                label: Arc::from(rule.claim.label()),
                values: rule
                    .values
                    .iter()
                    .map(|(value, scopes)| (value.clone(), scopes.0.clone()))
                    .collect(),
            })
            .collect();
        Self { rules }
    }

    /// No claim mapping configured: claims grant nothing beyond the token's scopes.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// The top-level claim names the rules read: what a cached copy of the claims
    /// must keep for the mapping to be applied again.
    pub fn roots(&self) -> impl Iterator<Item = &str> {
        self.rules
            .iter()
            .filter_map(|rule| rule.path.first().map(String::as_str))
    }

    /// Adds to `scopes` every scope a claim value of `claims` is mapped to.
    pub fn apply(&self, claims: &Map<String, Value>, scopes: &mut Scopes) {
        let mut granted = Vec::new();
        for rule in &self.rules {
            let Some(value) = resolve(claims, &rule.path) else {
                continue;
            };
            for item in claim_values(&rule.path, value) {
                let Some(mapped) = rule.values.get(item) else {
                    continue;
                };
                granted.extend(mapped.iter().map(|scope| MappedScope {
                    scope: scope.clone(),
                    claim: Arc::clone(&rule.label),
                    value: item.to_owned(),
                }));
            }
        }
        scopes.add_mapped(granted);
    }
}

/// How one JWT provider's tokens are read.
#[derive(Debug, Clone)]
pub struct TokenProfile {
    /// Claim checked against the accepted audiences (`aud` unless configured).
    pub audience_claim: String,
    /// Accepted audience values for this provider; `None`: the global ones.
    pub audiences: Option<Vec<String>>,
    /// Claims whose values are the token's own scopes.
    pub scope_claims: Vec<String>,
    /// Claim naming the client; `None`: `client_id`, then `azp`.
    pub client_id_claim: Option<String>,
    pub(crate) claim_scopes: ClaimScopeMap,
    /// Top-level claims the principal keeps for `rules:`.
    pub rule_claims: Arc<[String]>,
}

impl Default for TokenProfile {
    fn default() -> Self {
        Self {
            audience_claim: "aud".to_owned(),
            audiences: None,
            scope_claims: default_scope_claims(),
            client_id_claim: None,
            claim_scopes: ClaimScopeMap::default(),
            rule_claims: Arc::from([]),
        }
    }
}

impl TokenProfile {
    /// The profile of a configured provider, with `global` mappings before its own.
    pub fn from_config(config: &JwksProviderConfig, global: &ClaimScopesConfig) -> Self {
        Self {
            audience_claim: config
                .audience_claim
                .clone()
                .unwrap_or_else(|| "aud".to_owned()),
            audiences: (!config.audiences.is_empty()).then(|| config.audiences.clone()),
            scope_claims: config.scope_claims.clone(),
            client_id_claim: config.client_id_claim.clone(),
            claim_scopes: ClaimScopeMap::compile([global, &config.claim_scopes]),
            rule_claims: Arc::from([]),
        }
    }

    /// The claims `rules:` read, copied out of the token (nothing when none do).
    pub fn kept_claims(&self, claims: &Map<String, Value>) -> Map<String, Value> {
        keep_claims(claims, &self.rule_claims)
    }

    /// The token's own scopes (from `scope_claims`), then the mapped ones.
    pub fn scopes(&self, claims: &Map<String, Value>) -> Scopes {
        let mut own: Vec<&str> = Vec::new();
        for name in &self.scope_claims {
            let path = [name.as_str()];
            if let Some(value) = claims.get(name) {
                // A scope claim is a list of scopes whichever claim holds it: split
                // a string on spaces (a scope-token has none, RFC 6749 §3.3).
                match value {
                    Value::String(text) => own.extend(text.split(' ')),
                    _ => own.extend(claim_values(&path, value)),
                }
            }
        }
        let mut scopes = Scopes::new(own);
        self.claim_scopes.apply(claims, &mut scopes);
        scopes
    }

    /// The client id: the configured claim alone, else `client_id` then `azp`. Only
    /// a string counts.
    pub fn client_id(&self, claims: &Map<String, Value>) -> Option<String> {
        let text = |name: &str| claims.get(name).and_then(Value::as_str).map(str::to_owned);
        match &self.client_id_claim {
            Some(name) => text(name),
            None => text("client_id").or_else(|| text("azp")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{ClaimPath, ClaimScopeRule, ScopeList};
    use serde_json::json;

    fn object(value: Value) -> Map<String, Value> {
        match value {
            Value::Object(map) => map,
            _ => unreachable!(),
        }
    }

    fn rule(claim: ClaimPath, values: &[(&str, &[&str])]) -> ClaimScopeRule {
        ClaimScopeRule {
            claim,
            values: values
                .iter()
                .map(|(value, scopes)| {
                    (
                        (*value).to_owned(),
                        ScopeList(scopes.iter().map(|s| (*s).to_owned()).collect()),
                    )
                })
                .collect(),
            from_map: false,
        }
    }

    fn dotted(path: &str) -> ClaimPath {
        ClaimPath::Dotted(path.to_owned())
    }

    fn mapped(scopes: &Scopes) -> Vec<(String, String, String)> {
        scopes
            .mapped()
            .iter()
            .map(|m| (m.scope.clone(), m.claim.to_string(), m.value.clone()))
            .collect()
    }

    #[test]
    fn claim_paths_follow_nested_objects() {
        let claims = object(json!({
            "realm_access": {"roles": ["admin"]},
            "resource_access": {"my-client": {"roles": ["editor"]}},
            "flat": "x",
        }));
        assert_eq!(
            resolve(&claims, &["realm_access", "roles"]),
            Some(&json!(["admin"]))
        );
        assert_eq!(
            resolve(&claims, &["resource_access", "my-client", "roles"]),
            Some(&json!(["editor"]))
        );
        assert_eq!(resolve(&claims, &["flat", "deeper"]), None);
        assert_eq!(resolve(&claims, &["realm_access", "groups"]), None);
        assert_eq!(resolve::<&str>(&claims, &[]), None);
    }

    #[test]
    fn a_string_is_one_value_except_scope_and_scp() {
        let text = json!("Tools.Admin Tools.Read");
        assert_eq!(claim_values(&["roles"], &text), ["Tools.Admin Tools.Read"]);
        assert_eq!(
            claim_values(&["scope"], &text),
            ["Tools.Admin", "Tools.Read"]
        );
        assert_eq!(claim_values(&["scp"], &text), ["Tools.Admin", "Tools.Read"]);
        // Only the top-level claims are space-delimited lists.
        assert_eq!(
            claim_values(&["x", "scope"], &text),
            ["Tools.Admin Tools.Read"]
        );
        assert_eq!(
            claim_values(&["roles"], &json!(["a", 1, null, {"b": 2}, ["c"], "d"])),
            ["a", "d"]
        );
        assert!(claim_values(&["roles"], &json!(7)).is_empty());
        assert!(claim_values(&["roles"], &json!({"admin": true})).is_empty());
    }

    #[test]
    fn maps_values_exactly_and_records_where_each_scope_came_from() {
        let map = ClaimScopeMap::compile([&ClaimScopesConfig {
            rules: vec![
                rule(
                    dotted("roles"),
                    &[
                        ("Tools.Admin", &["mcp:admin"]),
                        ("Tools.Read", &["mcp:read"]),
                    ],
                ),
                rule(
                    dotted("realm_access.roles"),
                    &[("admin", &["mcp:admin", "mcp:write"])],
                ),
                rule(
                    ClaimPath::Segments(vec!["https://example.com/roles".into()]),
                    &[("support", &["mcp:read"])],
                ),
            ],
        }]);
        let claims = object(json!({
            "roles": ["tools.admin", "Tools.Read", 5],
            "realm_access": {"roles": ["admin"]},
            "https://example.com/roles": ["support"],
            "https://example": {"com/roles": ["support"]},
        }));
        let mut scopes = Scopes::new(["openid"]);
        map.apply(&claims, &mut scopes);
        assert_eq!(
            scopes.iter().collect::<Vec<_>>(),
            ["openid", "mcp:read", "mcp:admin", "mcp:write"]
        );
        assert_eq!(
            mapped(&scopes),
            [
                ("mcp:read".into(), "roles".into(), "Tools.Read".into()),
                (
                    "mcp:admin".into(),
                    "realm_access.roles".into(),
                    "admin".into()
                ),
                (
                    "mcp:write".into(),
                    "realm_access.roles".into(),
                    "admin".into()
                ),
            ]
        );
        assert_eq!(
            map.roots().collect::<Vec<_>>(),
            ["roles", "realm_access", "https://example.com/roles"]
        );
    }

    #[test]
    fn a_dotted_string_path_is_not_a_literal_claim_name() {
        let map = ClaimScopeMap::compile([&ClaimScopesConfig {
            rules: vec![rule(
                dotted("https://example.com/roles"),
                &[("admin", &["mcp:admin"])],
            )],
        }]);
        let mut scopes = Scopes::default();
        map.apply(
            &object(json!({"https://example.com/roles": ["admin"]})),
            &mut scopes,
        );
        assert!(scopes.is_empty());
    }

    #[test]
    fn a_scope_already_granted_by_the_token_is_not_marked_as_mapped() {
        let profile = TokenProfile {
            claim_scopes: ClaimScopeMap::compile([&ClaimScopesConfig {
                rules: vec![rule(
                    dotted("groups"),
                    &[("a", &["mcp:read"]), ("b", &["mcp:read", "mcp:write"])],
                )],
            }]),
            ..TokenProfile::default()
        };
        let scopes = profile.scopes(&object(json!({
            "scope": "mcp:read  openid",
            "groups": ["a", "b", "a"],
        })));
        assert_eq!(
            scopes.iter().collect::<Vec<_>>(),
            ["mcp:read", "openid", "mcp:write"]
        );
        assert_eq!(
            mapped(&scopes),
            [("mcp:write".into(), "groups".into(), "b".into())]
        );
    }

    #[test]
    fn scope_claims_choose_where_the_tokens_own_scopes_are() {
        let claims = object(json!({
            "scope": "openid profile",
            "scp": ["mcp:read"],
            "permissions": ["read:tools", "call:tools", 3],
        }));
        let default = TokenProfile::default().scopes(&claims);
        assert_eq!(
            default.iter().collect::<Vec<_>>(),
            ["openid", "profile", "mcp:read"]
        );
        let auth0 = TokenProfile {
            scope_claims: vec!["scope".into(), "permissions".into()],
            ..TokenProfile::default()
        };
        assert_eq!(
            auth0.scopes(&claims).iter().collect::<Vec<_>>(),
            ["openid", "profile", "read:tools", "call:tools"]
        );
        assert!(auth0.scopes(&claims).mapped().is_empty());
    }

    #[test]
    fn the_client_id_claim_replaces_the_default_chain() {
        let okta = object(json!({"cid": "0oa1", "uid": "00u1"}));
        let keycloak = object(json!({"azp": "mcp-client"}));
        let both = object(json!({"client_id": "c", "azp": "a", "cid": "o"}));
        let default = TokenProfile::default();
        assert_eq!(default.client_id(&okta), None);
        assert_eq!(default.client_id(&keycloak).as_deref(), Some("mcp-client"));
        assert_eq!(default.client_id(&both).as_deref(), Some("c"));
        let with_cid = TokenProfile {
            client_id_claim: Some("cid".into()),
            ..TokenProfile::default()
        };
        assert_eq!(with_cid.client_id(&okta).as_deref(), Some("0oa1"));
        assert_eq!(with_cid.client_id(&keycloak), None);
        assert_eq!(with_cid.client_id(&both).as_deref(), Some("o"));
        assert_eq!(
            with_cid.client_id(&object(json!({"cid": ["x"]}))),
            None,
            "only a string names a client"
        );
    }

    #[test]
    fn global_rules_come_before_the_providers_own() {
        let global = ClaimScopesConfig {
            rules: vec![rule(dotted("groups"), &[("staff", &["mcp:read"])])],
        };
        let config = JwksProviderConfig {
            claim_scopes: ClaimScopesConfig {
                rules: vec![rule(dotted("roles"), &[("admin", &["mcp:admin"])])],
            },
            ..JwksProviderConfig::default()
        };
        let profile = TokenProfile::from_config(&config, &global);
        let scopes = profile.scopes(&object(json!({"groups": ["staff"], "roles": "admin"})));
        assert_eq!(scopes.iter().collect::<Vec<_>>(), ["mcp:read", "mcp:admin"]);
        assert_eq!(profile.audience_claim, "aud");
        assert_eq!(profile.audiences, None);
    }
}
