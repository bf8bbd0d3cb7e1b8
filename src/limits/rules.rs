//! `limits:` compiled: which rules count a request, under which keys, at what rate.
//!
//! A rule counts each message it applies to (a batch's messages one by one), under a
//! key made of the parts it names. A rule whose key needs a part the request lacks
//! (`client_id` for an API key, `tool` for anything but `tools/call`) does not count
//! it. Keys start with the rule's identity, its name and a digest of its definition,
//! so a reload that leaves a rule alone keeps its counters and one that changes it
//! starts afresh, in memory and in a store replicas share alike.

use std::net::IpAddr;
use std::time::Duration;

use globset::GlobSet;
use sha2::{Digest, Sha256};

use super::charge::Charge;
use super::rate::Rate;
use crate::auth::Principal;
use crate::config::{BuiltinLimitConfig, Config, ConfigError, LimitRuleConfig, check_rule_name};
use crate::edge::client_ip::limit_key;
use crate::mcp::envelope::Envelope;
use crate::policy::{Item, Who};

/// The built-in limits' names, which rules may not take.
pub const UNAUTHENTICATED: &str = "unauthenticated";
/// See [`UNAUTHENTICATED`].
pub const FAILED_AUTHENTICATIONS: &str = "failed_authentications";
/// The name calls in flight are refused under (metric, audit reason).
pub const CONCURRENCY: &str = "concurrency";

/// What a key can be made of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Part {
    Subject,
    ClientId,
    ApiKeyId,
    Ip,
    Tool,
}

impl Part {
    const NAMES: [(&'static str, Self); 5] = [
        ("subject", Self::Subject),
        ("client_id", Self::ClientId),
        ("api_key_id", Self::ApiKeyId),
        ("ip", Self::Ip),
        ("tool", Self::Tool),
    ];

    fn name(self) -> &'static str {
        Self::NAMES
            .iter()
            .find(|(_, part)| *part == self)
            .map_or("", |(name, _)| name)
    }

    fn needs_a_principal(self) -> bool {
        matches!(self, Self::Subject | Self::ClientId | Self::ApiKeyId)
    }
}

/// One limit as it is enforced and reported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limit {
    /// The rule's name (`RateLimit-Policy`, the metric, the audit reason).
    pub name: String,
    /// Name and definition digest: the start of every key it counts under.
    identity: String,
    /// Its rate (`q` and `w` of `RateLimit-Policy`).
    pub rate: Rate,
    /// Requests that may come at once.
    pub burst: u32,
    /// Its `RateLimit-Policy` item (`"per-user";q=100;w=60`), written once.
    pub(crate) policy_item: String,
}

impl Limit {
    fn compile(
        key: &str,
        name: &str,
        rate: &str,
        burst: Option<u32>,
        definition: &str,
    ) -> Result<Self, ConfigError> {
        let rate = Rate::parse(rate)
            .map_err(|message| ConfigError::invalid(format!("{key}.rate"), message))?;
        let burst = burst.unwrap_or(rate.count);
        if burst == 0 {
            return Err(ConfigError::invalid(
                format!("{key}.burst"),
                "must be at least 1 (or left out: the rate's count)",
            ));
        }
        let digest = Sha256::digest(format!("{definition}|{}|{burst}", rate_text(rate)));
        let identity = format!(
            "{name}#{}",
            hex::encode(digest.get(..4).unwrap_or_default())
        );
        Ok(Self {
            policy_item: format!("\"{name}\";q={};w={}", rate.count, rate.period.as_secs()),
            name: name.to_owned(),
            identity,
            rate,
            burst,
        })
    }

    /// A charge of `cost` under `parts` (`<identity>:<parts>`).
    fn charge(&self, parts: &str, cost: u32) -> Charge {
        self.charge_key(format!("{}:{parts}", self.identity), cost)
    }

    /// A charge of `cost` under a whole key ([`Rule::key`]).
    fn charge_key(&self, key: String, cost: u32) -> Charge {
        Charge {
            key,
            interval: self.rate.interval(),
            burst: self.burst,
            cost,
            probe: false,
        }
    }
}

fn rate_text(rate: Rate) -> String {
    format!("{}/{}s", rate.count, rate.period.as_secs())
}

impl std::fmt::Display for Rate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let unit = match self.period.as_secs() {
            1 => "s",
            60 => "min",
            3600 => "h",
            _ => "day",
        };
        write!(f, "{}/{unit}", self.count)
    }
}

#[derive(Debug, Clone)]
struct Rule {
    limit: Limit,
    parts: Vec<Part>,
    methods: Option<Vec<String>>,
    tools: Option<GlobSet>,
    principals: Option<Who>,
}

/// Every configured limit, compiled.
#[derive(Debug, Clone, Default)]
pub struct LimitRules {
    rules: Vec<Rule>,
    unauthenticated: Option<Limit>,
    failed: Option<Limit>,
    per_principal: Option<u32>,
}

/// Who asks, and from where: what keys are made of.
#[derive(Debug, Clone, Copy)]
pub struct Caller<'a> {
    /// The verified caller (`None` without a credential source).
    pub principal: Option<&'a Principal>,
    /// The client IP ([`crate::edge::client_ip`]).
    pub ip: IpAddr,
}

/// One message as the rules see it.
#[derive(Debug, Clone, Copy, Default)]
pub struct Asked<'a> {
    /// Its method (`None` for a response to the server).
    pub method: Option<&'a str>,
    /// The tool a `tools/call` names.
    pub tool: Option<&'a str>,
}

impl<'a> Asked<'a> {
    /// Each message of a request's body, in order.
    pub fn all(envelope: &'a Envelope) -> Vec<Self> {
        envelope
            .messages
            .iter()
            .map(|message| Self {
                method: message.method(),
                tool: match message.target().item {
                    Some(Item::Tool(name)) => Some(name),
                    _ => None,
                },
            })
            .collect()
    }
}

/// The charges one request makes, each with the limit it counts against.
#[derive(Debug, Clone, Default)]
pub struct Planned<'a> {
    /// The charges, for the backend.
    pub charges: Vec<Charge>,
    /// The limit of each charge, in the same order.
    pub limits: Vec<&'a Limit>,
}

impl<'a> Planned<'a> {
    fn add(&mut self, limit: &'a Limit, charge: Charge) {
        self.charges.push(charge);
        self.limits.push(limit);
    }

    /// Nothing to count.
    pub fn is_empty(&self) -> bool {
        self.charges.is_empty()
    }
}

impl LimitRules {
    /// Compiles `limits:`. Errors name the key (`limits.rules[1].rate`).
    pub fn from_config(config: &Config) -> Result<Self, ConfigError> {
        let limits = &config.limits;
        let verified_callers = config.auth.oauth.enabled() || !config.auth.api_keys.is_empty();
        // A route's own rules count apart from every other route's; rules it
        // inherits from the file count one caller across the routes.
        let own_route = config
            .route
            .as_ref()
            .filter(|mark| mark.own_limits)
            .map(|mark| &*mark.name);
        let mut rules = Vec::with_capacity(limits.rules.len());
        for (index, rule) in limits.rules.iter().enumerate() {
            let key = format!("limits.rules[{index}]");
            check_name(&key, rule, limits.rules.get(..index).unwrap_or_default())?;
            rules.push(compile_rule(&key, rule, verified_callers, own_route)?);
        }
        let builtin = |name: &str, config: &BuiltinLimitConfig| {
            config
                .enabled
                .then(|| {
                    Limit::compile(
                        &format!("limits.{name}"),
                        name,
                        &config.rate,
                        config.burst,
                        &format!("{name}|ip"),
                    )
                })
                .transpose()
        };
        let concurrency = &limits.concurrency;
        if concurrency.enabled && concurrency.per_principal == 0 {
            return Err(ConfigError::invalid(
                "limits.concurrency.per_principal",
                "must be at least 1 (or set limits.concurrency.enabled: false)",
            ));
        }
        if limits.max_keys == 0 {
            return Err(ConfigError::invalid(
                "limits.max_keys",
                "must be at least 1",
            ));
        }
        Ok(Self {
            rules,
            unauthenticated: builtin(UNAUTHENTICATED, &limits.unauthenticated)?,
            failed: builtin(FAILED_AUTHENTICATIONS, &limits.failed_authentications)?,
            per_principal: concurrency.enabled.then_some(concurrency.per_principal),
        })
    }

    /// The charges of a POST whose messages are `messages`.
    pub fn for_messages(&self, caller: Caller<'_>, messages: &[Asked<'_>]) -> Planned<'_> {
        let mut planned = Planned::default();
        for rule in self.applying(caller) {
            // (key parts, cost) in the order first met.
            let mut keys: Vec<(String, u32)> = Vec::new();
            for message in messages.iter().filter(|message| rule.counts(message)) {
                let Some(key) = rule.key(caller, Some(message)) else {
                    continue;
                };
                match keys.iter_mut().find(|(known, _)| *known == key) {
                    Some((_, cost)) => *cost = cost.saturating_add(1),
                    None => keys.push((key, 1)),
                }
            }
            for (key, cost) in keys {
                planned.add(&rule.limit, rule.limit.charge_key(key, cost));
            }
        }
        planned
    }

    /// The charges of a GET (the standing stream) or a DELETE: the rules without
    /// method or tool filters, once.
    pub fn for_stream(&self, caller: Caller<'_>) -> Planned<'_> {
        let mut planned = Planned::default();
        for rule in self.applying(caller).filter(|rule| {
            rule.methods.is_none() && rule.tools.is_none() && !rule.parts.contains(&Part::Tool)
        }) {
            if let Some(key) = rule.key(caller, None) {
                planned.add(&rule.limit, rule.limit.charge_key(key, 1));
            }
        }
        planned
    }

    /// Before a credential is checked the expensive way: one unit of the
    /// address's `unauthenticated` limit, and a look at its failures.
    pub fn before_verification(&self, ip: IpAddr) -> Planned<'_> {
        let mut planned = Planned::default();
        let parts = format!("ip={}", escape(&limit_key(ip)));
        if let Some(limit) = &self.unauthenticated {
            planned.add(limit, limit.charge(&parts, 1));
        }
        if let Some(limit) = &self.failed {
            let mut probe = limit.charge(&parts, 1);
            probe.probe = true;
            planned.add(limit, probe);
        }
        planned
    }

    /// After a credential was refused: one unit of the address's failures.
    pub fn after_failure(&self, ip: IpAddr) -> Planned<'_> {
        let mut planned = Planned::default();
        if let Some(limit) = &self.failed {
            let parts = format!("ip={}", escape(&limit_key(ip)));
            planned.add(limit, limit.charge(&parts, 1));
        }
        planned
    }

    /// Whether a request must be looked at before its credential is checked.
    pub fn guards_verification(&self) -> bool {
        self.unauthenticated.is_some() || self.failed.is_some()
    }

    /// Calls one principal may have in flight (`None`: no limit).
    pub fn per_principal(&self) -> Option<u32> {
        self.per_principal
    }

    /// The built-in limits that are on, for `mcpgate explain`.
    pub fn builtins(&self) -> impl Iterator<Item = &Limit> {
        self.unauthenticated.iter().chain(&self.failed)
    }

    /// The rules that would count this request (`messages`; `None`: a GET or
    /// DELETE), for `mcpgate explain`. Nothing is charged.
    pub fn counting(&self, caller: Caller<'_>, messages: Option<&[Asked<'_>]>) -> Vec<Described> {
        self.applying(caller)
            .filter(|rule| match messages {
                Some(messages) => messages.iter().any(|message| {
                    rule.counts(message) && rule.key(caller, Some(message)).is_some()
                }),
                None => {
                    rule.methods.is_none()
                        && rule.tools.is_none()
                        && !rule.parts.contains(&Part::Tool)
                        && rule.key(caller, None).is_some()
                }
            })
            .map(|rule| Described {
                limit: rule.limit.clone(),
                key: rule.parts.iter().map(|part| part.name()).collect(),
            })
            .collect()
    }

    fn applying<'s, 'c>(
        &'s self,
        caller: Caller<'c>,
    ) -> impl Iterator<Item = &'s Rule> + use<'s, 'c> {
        self.rules
            .iter()
            .filter(move |rule| match &rule.principals {
                None => true,
                Some(who) => caller
                    .principal
                    .is_some_and(|principal| who.matches(principal)),
            })
    }
}

/// A rule as `mcpgate explain` shows it.
#[derive(Debug, Clone)]
pub struct Described {
    /// Name, rate and burst.
    pub limit: Limit,
    /// The key's parts, by name.
    pub key: Vec<&'static str>,
}

impl Rule {
    /// Whether the rule's filters take this message.
    fn counts(&self, message: &Asked<'_>) -> bool {
        let is_call = message.method == Some("tools/call");
        let method_ok = self.methods.as_ref().is_none_or(|methods| {
            message
                .method
                .is_some_and(|method| methods.iter().any(|wanted| wanted == method))
        });
        let tool_ok = self
            .tools
            .as_ref()
            .is_none_or(|tools| is_call && message.tool.is_some_and(|tool| tools.is_match(tool)));
        let tool_key_ok = !self.parts.contains(&Part::Tool) || (is_call && message.tool.is_some());
        method_ok && tool_ok && tool_key_ok
    }

    /// The whole key, `<identity>:subject=alice:tool=search`, built in one string
    /// (it is made for every request); `None` when the request lacks a part.
    fn key(&self, caller: Caller<'_>, message: Option<&Asked<'_>>) -> Option<String> {
        let mut key = String::with_capacity(self.limit.identity.len() + 64);
        key.push_str(&self.limit.identity);
        for part in &self.parts {
            key.push(':');
            key.push_str(part.name());
            key.push('=');
            match part {
                Part::Subject => push_escaped(&mut key, caller.principal?.subject.as_deref()?),
                Part::ClientId => push_escaped(&mut key, caller.principal?.client_id.as_deref()?),
                Part::ApiKeyId => push_escaped(&mut key, caller.principal?.api_key_id.as_deref()?),
                Part::Ip => push_escaped(&mut key, &limit_key(caller.ip)),
                Part::Tool => push_escaped(&mut key, message?.tool?),
            }
        }
        Some(key)
    }
}

/// Keeps key parts apart whatever their values hold.
fn escape(value: &str) -> String {
    let mut escaped = String::with_capacity(value.len());
    push_escaped(&mut escaped, value);
    escaped
}

fn push_escaped(key: &mut String, value: &str) {
    for c in value.chars() {
        match c {
            '%' => key.push_str("%25"),
            ':' => key.push_str("%3A"),
            c => key.push(c),
        }
    }
}

fn compile_rule(
    key: &str,
    rule: &LimitRuleConfig,
    verified_callers: bool,
    own_route: Option<&str>,
) -> Result<Rule, ConfigError> {
    let key_key = format!("{key}.key");
    if rule.key.is_empty() {
        return Err(ConfigError::invalid(
            key_key,
            "name at least one of subject, client_id, api_key_id, ip, tool",
        ));
    }
    let mut parts = Vec::with_capacity(rule.key.len());
    for name in &rule.key {
        let part = Part::NAMES
            .iter()
            .find(|(known, _)| known == name)
            .map(|(_, part)| *part)
            .ok_or_else(|| {
                ConfigError::invalid(
                    &key_key,
                    format!("{name:?} is not one of subject, client_id, api_key_id, ip, tool"),
                )
            })?;
        if parts.contains(&part) {
            return Err(ConfigError::invalid(
                &key_key,
                format!("{name:?} is named twice"),
            ));
        }
        if part.needs_a_principal() && !verified_callers {
            return Err(ConfigError::invalid(
                &key_key,
                format!(
                    "{name:?} needs a verified caller, and no credential source is configured: \
                     enable auth.oauth or add auth.api_keys"
                ),
            ));
        }
        parts.push(part);
    }
    let methods = match &rule.methods {
        Some(methods) if methods.is_empty() || methods.iter().any(String::is_empty) => {
            return Err(ConfigError::invalid(
                format!("{key}.methods"),
                "list MCP method names (e.g. tools/call), or remove the key to count every message",
            ));
        }
        other => other.clone(),
    };
    let calls_counted = methods
        .as_ref()
        .is_none_or(|methods| methods.iter().any(|method| method == "tools/call"));
    let tools = match &rule.tools {
        None => None,
        Some(patterns) if patterns.is_empty() => {
            return Err(ConfigError::invalid(
                format!("{key}.tools"),
                "an empty list counts nothing: list tool names, or remove the key",
            ));
        }
        Some(patterns) => {
            let mut builder = globset::GlobSetBuilder::new();
            for (index, pattern) in patterns.iter().enumerate() {
                let pattern_key = format!("{key}.tools[{index}]");
                if pattern.is_empty() {
                    return Err(ConfigError::invalid(
                        pattern_key,
                        "a pattern must not be empty",
                    ));
                }
                builder.add(crate::policy::compile_glob(&pattern_key, pattern, false)?);
            }
            Some(builder.build().map_err(|error| {
                ConfigError::invalid(format!("{key}.tools"), format!("bad glob: {error}"))
            })?)
        }
    };
    if (tools.is_some() || parts.contains(&Part::Tool)) && !calls_counted {
        return Err(ConfigError::invalid(
            format!("{key}.methods"),
            "the rule is about tools (tools or a tool key) but does not count tools/call: it \
             would never apply",
        ));
    }
    let principals = match &rule.principals {
        None => None,
        Some(_) if !verified_callers => {
            return Err(ConfigError::invalid(
                format!("{key}.principals"),
                "needs verified callers, and no credential source is configured: enable \
                 auth.oauth or add auth.api_keys",
            ));
        }
        Some(when) => Some(Who::compile(&format!("{key}.principals"), when)?),
    };
    let definition = format!(
        "{}{}|{}|{:?}|{:?}|{:?}",
        own_route.map_or_else(String::new, |route| format!("route:{route}|")),
        rule.name,
        rule.key.join(","),
        rule.methods,
        rule.tools,
        rule.principals
    );
    Ok(Rule {
        limit: Limit::compile(key, &rule.name, &rule.rate, rule.burst, &definition)?,
        parts,
        methods,
        tools,
        principals,
    })
}

/// Names are required, unique, not a built-in limit's (they share the metric's
/// `rule` label and the audit reason), and written into headers as they are.
fn check_name(
    key: &str,
    rule: &LimitRuleConfig,
    earlier: &[LimitRuleConfig],
) -> Result<(), ConfigError> {
    let name_key = format!("{key}.name");
    let name = &rule.name;
    if [UNAUTHENTICATED, FAILED_AUTHENTICATIONS, CONCURRENCY].contains(&name.as_str()) {
        return Err(ConfigError::invalid(
            name_key,
            format!("{name:?} is a built-in limit's name"),
        ));
    }
    check_rule_name(
        &name_key,
        name,
        (false, "the RateLimit headers"),
        (
            "limits.rules",
            earlier.iter().map(|other| other.name.as_str()),
        ),
    )
}

/// `Duration` in whole seconds, rounded up (for `Retry-After` and headers).
pub fn ceil_seconds(duration: Duration) -> u64 {
    duration.as_secs() + u64::from(duration.subsec_nanos() > 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::Scopes;

    const AUTH: &str = "auth:\n  api_keys: [{ id: k, hash: x }]\n";

    fn compile(yaml: &str) -> Result<LimitRules, ConfigError> {
        let config = crate::config::load_from_str(&format!("{AUTH}limits:\n{yaml}"))
            .unwrap_or_else(|error| panic!("{yaml}: {error}"));
        LimitRules::from_config(&config)
    }

    fn alice() -> Principal {
        Principal::for_tests("alice", Scopes::default())
    }

    fn caller(principal: &Principal) -> Caller<'_> {
        Caller {
            principal: Some(principal),
            ip: "2001:db8::7".parse().unwrap(),
        }
    }

    fn call(tool: &str) -> Asked<'_> {
        Asked {
            method: Some("tools/call"),
            tool: Some(tool),
        }
    }

    fn keys(planned: &Planned) -> Vec<(String, u32)> {
        planned
            .charges
            .iter()
            .map(|charge| {
                let (_, parts) = charge.key.split_once(':').unwrap();
                (
                    format!("{}:{parts}", charge.key.split('#').next().unwrap()),
                    charge.cost,
                )
            })
            .collect()
    }

    #[test]
    fn keys_are_built_from_their_parts_and_a_batch_adds_up() {
        let rules = compile(
            "  rules:\n    - { name: per-user, key: subject, rate: 10/s }\n    - { name: per-tool, key: [subject, tool, ip], rate: 10/s }\n",
        )
        .unwrap();
        let alice = alice();
        let list = Asked {
            method: Some("tools/list"),
            tool: None,
        };
        let planned =
            rules.for_messages(caller(&alice), &[call("a:b"), list, call("c"), call("a:b")]);
        assert_eq!(
            keys(&planned),
            [
                ("per-user:subject=alice".to_owned(), 4),
                (
                    "per-tool:subject=alice:tool=a%3Ab:ip=2001%3Adb8%3A%3A/64".to_owned(),
                    2
                ),
                (
                    "per-tool:subject=alice:tool=c:ip=2001%3Adb8%3A%3A/64".to_owned(),
                    1
                ),
            ]
        );
        assert_eq!(planned.charges[0].interval, Duration::from_millis(100));
        assert_eq!(planned.charges[0].burst, 10);
        // A stream counts once, and never for a rule keyed by tool.
        assert_eq!(
            keys(&rules.for_stream(caller(&alice))),
            [("per-user:subject=alice".to_owned(), 1)]
        );
    }

    #[test]
    fn filters_pick_the_messages_counted() {
        let rules = compile(
            "  rules:\n    - { name: calls, key: subject, rate: 1/s, methods: [tools/call] }\n    - { name: search, key: subject, rate: 1/s, tools: [\"search_*\"] }\n    - { name: ext, key: subject, rate: 1/s, principals: { subjects: [\"ext-*\"] } }\n",
        )
        .unwrap();
        let alice = alice();
        let read = Asked {
            method: Some("resources/read"),
            tool: None,
        };
        assert_eq!(
            keys(&rules.for_messages(caller(&alice), &[call("search_web"), call("other"), read])),
            [
                ("calls:subject=alice".to_owned(), 2),
                ("search:subject=alice".to_owned(), 1)
            ]
        );
        // Filtered rules never count a stream; `ext` does not match alice.
        assert!(rules.for_stream(caller(&alice)).is_empty());
        let ext = Principal::for_tests("ext-bob", Scopes::default());
        assert_eq!(
            keys(&rules.for_stream(caller(&ext))),
            [("ext:subject=ext-bob".to_owned(), 1)]
        );
    }

    #[test]
    fn a_missing_part_means_the_rule_does_not_count() {
        let rules = compile("  rules:\n    - { name: apps, key: client_id, rate: 1/s }\n").unwrap();
        // An API key (or a token without client_id) has none.
        assert!(
            rules
                .for_messages(caller(&alice()), &[call("x")])
                .is_empty()
        );
    }

    #[test]
    fn identities_change_with_the_definition_only() {
        let identity = |yaml: &str| compile(yaml).unwrap().rules[0].limit.identity.clone();
        let base = identity("  rules:\n    - { name: a, key: subject, rate: 10/s }\n");
        assert_eq!(
            base,
            identity(
                "  rules:\n    - { name: a, key: [subject], rate: 10/s, burst: 10 }\n  max_keys: 5\n"
            )
        );
        assert_ne!(
            base,
            identity("  rules:\n    - { name: a, key: subject, rate: 11/s }\n")
        );
        assert_ne!(
            base,
            identity("  rules:\n    - { name: a, key: subject, rate: 10/s, burst: 2 }\n")
        );
        assert_ne!(
            base,
            identity("  rules:\n    - { name: a, key: ip, rate: 10/s }\n")
        );
        assert!(base.starts_with("a#"));
    }

    #[test]
    fn a_routes_own_rules_count_apart_and_inherited_ones_together() {
        let routes = crate::config::load_from_str(
            "auth: {oauth: {enabled: true}}\n\
             limits: {rules: [{name: a, key: subject, rate: 10/s}]}\n\
             routes:\n\
             - {name: one, public_url: http://127.0.0.1:1/one, upstream: {url: http://127.0.0.1:2/mcp}}\n\
             - {name: two, public_url: http://127.0.0.1:1/two, upstream: {url: http://127.0.0.1:2/mcp}}\n\
             - {name: own, public_url: http://127.0.0.1:1/own, upstream: {url: http://127.0.0.1:2/mcp}, \
                limits: {rules: [{name: a, key: subject, rate: 10/s}]}}\n\
             - {name: mine, public_url: http://127.0.0.1:1/mine, upstream: {url: http://127.0.0.1:2/mcp}, \
                limits: {rules: [{name: a, key: subject, rate: 10/s}]}}\n",
        )
        .unwrap()
        .expand_routes()
        .unwrap();
        let identity = |index: usize| {
            LimitRules::from_config(&routes[index]).unwrap().rules[0]
                .limit
                .identity
                .clone()
        };
        assert_eq!(identity(0), identity(1));
        assert_ne!(identity(2), identity(0));
        assert_ne!(identity(2), identity(3));
    }

    #[test]
    fn the_built_ins_count_per_address_and_probe_failures() {
        let rules = compile("  unauthenticated: { rate: 5/s }\n").unwrap();
        let planned = rules.before_verification("198.51.100.7".parse().unwrap());
        assert_eq!(planned.charges.len(), 2);
        assert!(planned.charges[0].key.starts_with("unauthenticated#"));
        assert!(planned.charges[0].key.ends_with(":ip=198.51.100.7"));
        assert_eq!(planned.charges[0].burst, 5);
        assert!(!planned.charges[0].probe);
        assert!(
            planned.charges[1]
                .key
                .starts_with("failed_authentications#")
        );
        assert!(planned.charges[1].probe);
        let failure = rules.after_failure("198.51.100.7".parse().unwrap());
        assert_eq!(failure.charges[0].key, planned.charges[1].key);
        assert!(!failure.charges[0].probe);
        let off = compile("  unauthenticated: { enabled: false, rate: 1/s }\n  failed_authentications: { enabled: false, rate: 1/s }\n").unwrap();
        assert!(!off.guards_verification());
    }

    #[test]
    fn errors_name_the_key() {
        for (yaml, key, fragment) in [
            (
                "  rules:\n    - { name: a, key: user, rate: 1/s }\n",
                "limits.rules[0].key",
                "not one of",
            ),
            (
                "  rules:\n    - { name: a, key: [ip, ip], rate: 1/s }\n",
                "limits.rules[0].key",
                "twice",
            ),
            (
                "  rules:\n    - { name: a, key: ip, rate: 1/week }\n",
                "limits.rules[0].rate",
                "not a rate",
            ),
            (
                "  rules:\n    - { name: a, key: ip, rate: 1/s, burst: 0 }\n",
                "limits.rules[0].burst",
                "at least 1",
            ),
            (
                "  rules:\n    - { name: a, key: ip, rate: 1/s }\n    - { name: a, key: ip, rate: 1/s }\n",
                "limits.rules[1].name",
                "already",
            ),
            (
                "  rules:\n    - { name: \"a b\", key: ip, rate: 1/s }\n",
                "limits.rules[0].name",
                "printable",
            ),
            (
                "  rules:\n    - { name: unauthenticated, key: ip, rate: 1/s }\n",
                "limits.rules[0].name",
                "built-in",
            ),
            (
                "  rules:\n    - { name: concurrency, key: ip, rate: 1/s }\n",
                "limits.rules[0].name",
                "built-in",
            ),
            (
                "  rules:\n    - { name: \"\", key: ip, rate: 1/s }\n",
                "limits.rules[0].name",
                "1 to 128",
            ),
            (
                "  rules:\n    - { name: a, key: tool, rate: 1/s, methods: [tools/list] }\n",
                "limits.rules[0].methods",
                "never apply",
            ),
            (
                "  rules:\n    - { name: a, key: ip, rate: 1/s, tools: [] }\n",
                "limits.rules[0].tools",
                "empty",
            ),
            (
                "  rules:\n    - { name: a, key: ip, rate: 1/s, principals: { subjects: [] } }\n",
                "limits.rules[0].principals.subjects",
                "empty",
            ),
            (
                "  failed_authentications: { rate: 0/s }\n",
                "limits.failed_authentications.rate",
                "at least 1",
            ),
            (
                "  concurrency: { per_principal: 0 }\n",
                "limits.concurrency.per_principal",
                "at least 1",
            ),
        ] {
            let error = compile(yaml).unwrap_err().to_string();
            assert!(error.starts_with(&format!("{key}: ")), "{yaml}: {error}");
            assert!(error.contains(fragment), "{yaml}: {error}");
        }
        // Without a credential source, keys that need a caller cannot apply.
        let config = crate::config::load_from_str(
            "limits:\n  rules:\n    - { name: a, key: subject, rate: 1/s }\n",
        )
        .unwrap();
        let error = LimitRules::from_config(&config).unwrap_err().to_string();
        assert!(error.starts_with("limits.rules[0].key: "), "{error}");
    }
}
