//! `limits:`: rate limits per caller, address and tool, the built-in limits that
//! protect authentication, and calls in flight per principal. Plain data; the rules
//! are compiled (and their errors reported, naming the key) by `limits::LimitRules`.
//!
//! ```yaml
//! limits:
//!   rules:
//!     - name: per-user
//!       key: subject
//!       rate: 100/min
//!     - name: search-per-user
//!       key: [subject, tool]
//!       rate: 10/s
//!       burst: 20
//!       tools: ["search_*"]
//!       principals: { client_ids: ["ext-*"] }
//!   unauthenticated: { rate: 20/s, burst: 100 }
//!   failed_authentications: { rate: 60/min }
//!   concurrency: { per_principal: 32 }
//! ```

use serde::Deserialize;

use super::model::one_or_many;
use super::rules::WhenConfig;

/// The whole `limits:` section.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsConfig {
    /// Named rate limits, each checked after the policy decision.
    #[serde(default)]
    pub rules: Vec<LimitRuleConfig>,
    /// Per client IP: credentials that need an expensive check (argon2,
    /// introspection, a JWKS fetch), counted before the check.
    #[serde(default = "default_unauthenticated")]
    pub unauthenticated: BuiltinLimitConfig,
    /// Per client IP: failed authentications. While exhausted, uncached credentials
    /// from the address are refused without being checked.
    #[serde(default = "default_failed_authentications")]
    pub failed_authentications: BuiltinLimitConfig,
    /// Calls in flight.
    #[serde(default)]
    pub concurrency: ConcurrencyConfig,
    /// Most keys the in-memory store keeps at once (bounded memory under a flood
    /// of addresses): past it, the keys nearest to full are forgotten first.
    #[serde(default = "default_max_keys")]
    pub max_keys: usize,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            rules: Vec::new(),
            unauthenticated: default_unauthenticated(),
            failed_authentications: default_failed_authentications(),
            concurrency: ConcurrencyConfig::default(),
            max_keys: default_max_keys(),
        }
    }
}

/// One entry of `limits.rules`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitRuleConfig {
    /// Names the rule in 429s, headers, metrics and the audit log; unique.
    pub name: String,
    /// What is counted separately: one of `subject`, `client_id`, `api_key_id`,
    /// `ip`, `tool`, or a list of them.
    #[serde(deserialize_with = "one_or_many")]
    pub key: Vec<String>,
    /// `<count>/<unit>`: `100/min`, `10/s`, `1000/h`, `5000/day`.
    pub rate: String,
    /// Requests that may come at once; default: the rate's count.
    pub burst: Option<u32>,
    /// MCP method names the rule counts; absent: every message.
    #[serde(default, deserialize_with = "some_one_or_many")]
    pub methods: Option<Vec<String>>,
    /// Tool names (glob patterns) whose `tools/call` the rule counts.
    #[serde(default, deserialize_with = "some_one_or_many")]
    pub tools: Option<Vec<String>>,
    /// Which callers the rule applies to, as `rules[].when`; absent: everyone.
    pub principals: Option<WhenConfig>,
}

/// A built-in per-address limit.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BuiltinLimitConfig {
    /// `false` turns the limit off.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// As a rule's `rate`.
    pub rate: String,
    /// As a rule's `burst`.
    pub burst: Option<u32>,
}

/// `limits.concurrency`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConcurrencyConfig {
    /// `false` turns the limit off.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// POST requests one principal (by subject) may have in flight at once.
    #[serde(default = "default_per_principal")]
    pub per_principal: u32,
}

impl Default for ConcurrencyConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            per_principal: default_per_principal(),
        }
    }
}

fn yes() -> bool {
    true
}

fn default_unauthenticated() -> BuiltinLimitConfig {
    BuiltinLimitConfig {
        enabled: true,
        rate: "20/s".to_owned(),
        burst: Some(100),
    }
}

fn default_failed_authentications() -> BuiltinLimitConfig {
    BuiltinLimitConfig {
        enabled: true,
        rate: "60/min".to_owned(),
        burst: Some(60),
    }
}

fn default_per_principal() -> u32 {
    64
}

fn default_max_keys() -> usize {
    100_000
}

fn some_one_or_many<'de, D>(deserializer: D) -> Result<Option<Vec<String>>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    one_or_many(deserializer).map(Some)
}

#[cfg(test)]
mod tests {
    #[test]
    fn parses_the_documented_shape_with_defaults() {
        let config = crate::config::load_from_str(
            "limits:\n  rules:\n    - name: per-user\n      key: subject\n      rate: 100/min\n    - name: search\n      key: [subject, tool]\n      rate: 10/s\n      burst: 20\n      tools: \"search_*\"\n      principals: { client_ids: [\"ext-*\"] }\n  failed_authentications: { rate: 5/min }\n",
        )
        .unwrap();
        let limits = &config.limits;
        assert_eq!(limits.rules.len(), 2);
        assert_eq!(limits.rules[0].key, ["subject"]);
        assert_eq!(limits.rules[1].key, ["subject", "tool"]);
        assert_eq!(
            limits.rules[1].tools.as_deref(),
            Some(&["search_*".to_owned()][..])
        );
        assert_eq!(limits.failed_authentications.rate, "5/min");
        assert_eq!(limits.failed_authentications.burst, None);
        assert!(limits.unauthenticated.enabled);
        assert_eq!(limits.concurrency.per_principal, 64);
    }

    #[test]
    fn unknown_keys_are_errors() {
        let error = crate::config::load_from_str(
            "limits:\n  rules:\n    - { name: a, key: ip, rate: 1/s, brust: 2 }\n",
        )
        .unwrap_err()
        .to_string();
        assert!(error.contains("brust"), "{error}");
    }
}
