//! The operator's say over which hosts may be `client_id` hosts: a deny list, then
//! an allow list (empty: any host). A pattern is a host name (`app.example.com`)
//! or a suffix (`*.example.com`, which matches hosts under it but not
//! `example.com` itself).

use crate::config::ConfigError;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Pattern {
    Exact(String),
    /// The part after `*`, with its leading dot: `.example.com`.
    Suffix(String),
}

impl Pattern {
    fn parse(text: &str) -> Result<Self, String> {
        let lower = text.trim().to_ascii_lowercase();
        let (pattern, name) = match lower.strip_prefix("*.") {
            Some(rest) => (Self::Suffix(format!(".{rest}")), rest.to_owned()),
            None => (Self::Exact(lower.clone()), lower.clone()),
        };
        let valid = !name.is_empty()
            && !name.starts_with('.')
            && !name.ends_with('.')
            && !name.contains("..")
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
        if valid {
            Ok(pattern)
        } else {
            Err(format!(
                "`{text}` is not a host name or `*.` followed by one (no scheme, port or path)"
            ))
        }
    }

    fn matches(&self, host: &str) -> bool {
        match self {
            Self::Exact(name) => host == name,
            Self::Suffix(suffix) => host.len() > suffix.len() && host.ends_with(suffix.as_str()),
        }
    }
}

/// `allowed_hosts` and `denied_hosts`, checked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct HostRules {
    allowed: Vec<Pattern>,
    denied: Vec<Pattern>,
}

impl HostRules {
    /// `prefix` is the config key of the section, for errors.
    pub(crate) fn from_config(
        allowed: &[String],
        denied: &[String],
        prefix: &str,
    ) -> Result<Self, ConfigError> {
        let parse = |list: &[String], name: &str| {
            list.iter()
                .enumerate()
                .map(|(index, text)| {
                    Pattern::parse(text).map_err(|message| ConfigError::Invalid {
                        key: format!("{prefix}.{name}[{index}]"),
                        message,
                    })
                })
                .collect::<Result<Vec<_>, _>>()
        };
        Ok(Self {
            allowed: parse(allowed, "allowed_hosts")?,
            denied: parse(denied, "denied_hosts")?,
        })
    }

    /// Whether `host` (lower case, as a URL parser gives it) may serve documents.
    pub(crate) fn permits(&self, host: &str) -> bool {
        let host = host.to_ascii_lowercase();
        if self.denied.iter().any(|pattern| pattern.matches(&host)) {
            return false;
        }
        self.allowed.is_empty() || self.allowed.iter().any(|pattern| pattern.matches(&host))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(allowed: &[&str], denied: &[&str]) -> HostRules {
        let owned = |list: &[&str]| list.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        HostRules::from_config(&owned(allowed), &owned(denied), "cmd").unwrap()
    }

    #[test]
    fn empty_lists_permit_any_host() {
        assert!(rules(&[], &[]).permits("anything.example"));
    }

    #[test]
    fn allow_list_is_exact_or_a_suffix_below_a_dot() {
        let rules = rules(&["app.example.com", "*.tools.example"], &[]);
        assert!(rules.permits("app.example.com"));
        assert!(rules.permits("APP.example.com"));
        assert!(rules.permits("a.tools.example"));
        assert!(rules.permits("b.a.tools.example"));
        assert!(!rules.permits("tools.example"));
        assert!(!rules.permits("eviltools.example"));
        assert!(!rules.permits("app.example.com.evil"));
        assert!(!rules.permits("sub.app.example.com"));
    }

    #[test]
    fn deny_list_wins() {
        let rules = rules(
            &["*.example.com"],
            &["bad.example.com", "*.user.example.com"],
        );
        assert!(rules.permits("good.example.com"));
        assert!(!rules.permits("bad.example.com"));
        assert!(!rules.permits("x.user.example.com"));
        assert!(rules.permits("user.example.com"));
    }

    #[test]
    fn bad_patterns_name_their_key() {
        for bad in [
            "",
            "*",
            "*.",
            "https://a.example",
            "a.example:443",
            "a.*.example",
            "a..b",
        ] {
            let error = HostRules::from_config(&[], &["ok.example".into(), bad.into()], "cmd")
                .unwrap_err()
                .to_string();
            assert!(error.starts_with("cmd.denied_hosts[1]:"), "{bad}: {error}");
        }
    }
}
