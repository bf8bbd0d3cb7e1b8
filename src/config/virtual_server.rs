//! `upstream.virtual`: a route whose upstream is other routes. mcpgate is the MCP
//! server its clients see, and lists and calls the members' tools and prompts
//! under each member's prefix.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::{Config, ConfigError, PrincipalRuleConfig, RequirementSpec, ScopesConfig};

/// `upstream.virtual`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VirtualServerConfig {
    /// The routes merged, in the order their items are listed.
    pub members: Vec<MemberConfig>,
    /// Items per page of a merged list.
    #[serde(default = "default_page_size")]
    pub page_size: usize,
}

/// One entry of `upstream.virtual.members`: a route, or a server of its own.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemberConfig {
    /// A route of the same file (not itself virtual): its upstream, and its policy.
    pub route: Option<String>,
    /// A server only this virtual route reaches (the shape of `upstream:`); only
    /// the virtual route's own policy applies to it.
    pub server: Option<Box<super::UpstreamConfig>>,
    /// Put in front of the member's tool and prompt names (`github_`).
    pub prefix: String,
}

impl MemberConfig {
    /// How logs, errors and readiness name it: the route, or `server <prefix>*`.
    pub fn label(&self) -> String {
        match &self.route {
            Some(route) => route.clone(),
            None => format!("server {}*", self.prefix),
        }
    }
}

fn default_page_size() -> usize {
    100
}

/// Longest prefix: it is part of every name a client sees.
const MAX_PREFIX: usize = 32;

impl VirtualServerConfig {
    /// The members and their prefixes. A prefix that is empty, not plain, or the
    /// start of another one is an error naming both: a name under it could belong
    /// to either member.
    pub(crate) fn check(&self, key: &str) -> Result<(), ConfigError> {
        if self.members.is_empty() {
            return Err(ConfigError::invalid(
                format!("{key}.members"),
                "list at least one route",
            ));
        }
        if self.page_size == 0 {
            return Err(ConfigError::invalid(
                format!("{key}.page_size"),
                "must be at least 1",
            ));
        }
        for (index, member) in self.members.iter().enumerate() {
            if member.route.is_some() == member.server.is_some() {
                return Err(ConfigError::invalid(
                    format!("{key}.members[{index}]"),
                    "set one of route (a route of this file) or server (a server of its own)",
                ));
            }
            if let Some(server) = &member.server
                && (server.virtual_server.is_some() || server.identity.is_some())
            {
                return Err(ConfigError::invalid(
                    format!("{key}.members[{index}].server"),
                    "a member server is a plain server: no virtual and no identity",
                ));
            }
            let prefix_key = format!("{key}.members[{index}].prefix");
            let prefix = &member.prefix;
            let plain = prefix
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
            if prefix.is_empty() || prefix.len() > MAX_PREFIX || !plain {
                return Err(ConfigError::invalid(
                    prefix_key,
                    format!(
                        "must be 1 to {MAX_PREFIX} letters, digits, '_', '-' or '.' (it is put \
                         in front of names that rules match as globs)"
                    ),
                ));
            }
            for (other_index, other) in self.members.iter().enumerate().take(index) {
                if member.route.is_some() && other.route == member.route {
                    return Err(ConfigError::invalid(
                        format!("{key}.members[{index}].route"),
                        format!("{:?} is already members[{other_index}]", member.label()),
                    ));
                }
                if prefix.starts_with(&other.prefix) || other.prefix.starts_with(prefix.as_str()) {
                    return Err(ConfigError::invalid(
                        prefix_key,
                        format!(
                            "{prefix:?} and the prefix {:?} of members[{other_index}] ({}) begin \
                             alike: a name under one could be the other's",
                            other.prefix,
                            other.label()
                        ),
                    ));
                }
            }
        }
        Ok(())
    }
}

impl VirtualServerConfig {
    /// Puts each member route's policy into the virtual route's, under the
    /// member's prefix, so that a call through the virtual route meets what the
    /// member route asks as well as the virtual route's own rules (every rule that
    /// matches applies). `file` is the whole file; `key` the section's key.
    pub(crate) fn merge_policies(
        &self,
        route: &mut Config,
        file: &Config,
        key: &str,
    ) -> Result<(), ConfigError> {
        for (index, member) in self.members.iter().enumerate() {
            // A server of its own brings no policy: the virtual route's applies.
            let Some(route_name) = &member.route else {
                continue;
            };
            let member_key = format!("{key}.members[{index}].route");
            let Some(source) = file.routes.iter().find(|other| other.name == *route_name) else {
                return Err(ConfigError::invalid(
                    member_key,
                    format!("no route is named {route_name:?}"),
                ));
            };
            if source.upstream.virtual_server.is_some() {
                return Err(ConfigError::invalid(
                    member_key,
                    format!("{route_name:?} is itself virtual: members are servers"),
                ));
            }
            if source.upstream.identity.is_some() {
                return Err(ConfigError::invalid(
                    member_key,
                    format!(
                        "{:?} tells its upstream who calls (upstream.identity), which a virtual \
                         server does not do yet",
                        route_name
                    ),
                ));
            }
            // Its calls through the virtual route would not spend them: refused
            // rather than a way around them. (Rules the file sets for every route
            // count one caller across routes, the virtual one included.)
            if source.limits.is_some() {
                return Err(ConfigError::invalid(
                    member_key,
                    format!(
                        "{:?} has limits of its own, which calls through a virtual server \
                         would not spend: set them in the file's limits (shared by every \
                         route) or on the virtual route",
                        route_name
                    ),
                ));
            }
            let scopes = source.scopes.as_ref().unwrap_or(&file.scopes);
            if !scopes.hierarchy.is_empty() {
                return Err(ConfigError::invalid(
                    member_key,
                    format!(
                        "{:?} has a scopes.hierarchy, which a virtual server cannot apply to its \
                         names yet",
                        route_name
                    ),
                ));
            }
            merge_scopes(&mut route.scopes, scopes, &member.prefix);
            let rules = source.rules.as_ref().unwrap_or(&file.rules);
            let others: Vec<&str> = self
                .members
                .iter()
                .filter(|other| other.prefix != member.prefix)
                .map(|other| other.prefix.as_str())
                .collect();
            for rule in rules {
                route
                    .rules
                    .push(prefixed_rule(rule, route_name, &member.prefix, &others));
            }
        }
        Ok(())
    }
}

/// A member's scope rules under its prefix: its per-item rules, and what its
/// method levels ask of every call or get of its items.
fn merge_scopes(into: &mut ScopesConfig, member: &ScopesConfig, prefix: &str) {
    let everything = format!("{prefix}*");
    let tools = member.initialize.and(&member.tools_call);
    let prompts = member.initialize.and(&member.prompts_get);
    add(&mut into.tools, everything.clone(), &tools);
    add(&mut into.prompts, everything, &prompts);
    for (name, requirement) in &member.tools {
        add(&mut into.tools, format!("{prefix}{name}"), requirement);
    }
    for (name, requirement) in &member.prompts {
        add(&mut into.prompts, format!("{prefix}{name}"), requirement);
    }
}

/// `requirement` on `key`, with whatever the key already asks.
fn add(rules: &mut BTreeMap<String, RequirementSpec>, key: String, requirement: &RequirementSpec) {
    let entry = rules.entry(key).or_default();
    *entry = entry.and(requirement);
}

/// A member's principal rule over the member's items only: its lists under the
/// prefix, and an allow-list that leaves the other members' items alone.
fn prefixed_rule(
    rule: &PrincipalRuleConfig,
    route: &str,
    prefix: &str,
    others: &[&str],
) -> PrincipalRuleConfig {
    let under = |patterns: &[String]| -> Vec<String> {
        patterns
            .iter()
            .map(|pattern| format!("{prefix}{pattern}"))
            .collect()
    };
    let allow = |patterns: &Option<Vec<String>>| {
        patterns.as_ref().map(|patterns| {
            let mut allowed = under(patterns);
            allowed.extend(others.iter().map(|other| format!("{other}*")));
            allowed
        })
    };
    PrincipalRuleConfig {
        name: format!("{route}.{}", rule.name),
        when: rule.when.clone(),
        allow_tools: allow(&rule.allow_tools),
        deny_tools: under(&rule.deny_tools),
        // A virtual server serves no resources.
        allow_resources: None,
        deny_resources: Vec::new(),
        allow_prompts: allow(&rule.allow_prompts),
        deny_prompts: under(&rule.deny_prompts),
    }
}
