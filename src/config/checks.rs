//! Checks every section's owner uses on its own values; each failure names the key.

use std::collections::BTreeMap;
use std::time::Duration;

use url::Url;

use super::{ConfigError, Secret};

/// An endpoint mcpgate calls itself: http or https, with a host.
pub(crate) fn check_http_url(key: &str, url: &Url) -> Result<(), ConfigError> {
    match url.scheme() {
        "http" | "https" if url.host().is_some() => Ok(()),
        _ => Err(ConfigError::invalid(
            key,
            "must be an http:// or https:// URL",
        )),
    }
}

/// Headers mcpgate adds to its own requests: each name and value must be valid HTTP.
pub(crate) fn check_headers(
    prefix: &str,
    headers: &BTreeMap<String, Secret>,
) -> Result<(), ConfigError> {
    for (name, value) in headers {
        let key = format!("{prefix}.{name}");
        if http::HeaderName::from_bytes(name.as_bytes()).is_err() {
            return Err(ConfigError::invalid(key, "not a valid HTTP header name"));
        }
        if http::HeaderValue::from_str(value.expose()).is_err() {
            return Err(ConfigError::invalid(
                key,
                "value holds characters not allowed in an HTTP header",
            ));
        }
    }
    Ok(())
}

/// Durations that would make a loop spin or a cache useless when zero.
pub(crate) fn require_nonzero(
    section: &str,
    durations: &[(&str, Duration)],
) -> Result<(), ConfigError> {
    match durations.iter().find(|(_, value)| value.is_zero()) {
        Some((name, _)) => Err(ConfigError::invalid(
            format!("{section}.{name}"),
            "must be greater than 0",
        )),
        None => Ok(()),
    }
}

/// RFC 6749 §3.3 scope-token: printable ASCII except space, `"` and `\`. Keeping to
/// it means a scope can be written into a quoted `WWW-Authenticate` value as is.
pub(crate) fn is_scope_token(scope: &str) -> bool {
    !scope.is_empty()
        && scope
            .bytes()
            .all(|b| b == 0x21 || (0x23..=0x5B).contains(&b) || (0x5D..=0x7E).contains(&b))
}

pub(crate) fn check_scope_token(key: &str, scope: &str) -> Result<(), ConfigError> {
    if is_scope_token(scope) {
        Ok(())
    } else {
        Err(ConfigError::invalid(
            key,
            format!(
                "{scope:?} is not a valid scope (RFC 6749 §3.3: no spaces, quotes or backslashes)"
            ),
        ))
    }
}

/// The longest name a rule may have (`rules[].name`, `limits.rules[].name`).
const MAX_RULE_NAME: usize = 128;

/// A rule's name at `key`: 1 to 128 characters of printable ASCII without quotes or
/// backslashes (and without spaces unless `spaces`), because it is written as is into
/// a quoted header value (`header`, for the message), and not taken by an earlier
/// rule of `list` (the config path of the rules, for the message).
pub(crate) fn check_rule_name<'a>(
    key: &str,
    name: &str,
    (spaces, header): (bool, &str),
    (list, earlier): (&str, impl IntoIterator<Item = &'a str>),
) -> Result<(), ConfigError> {
    if name.is_empty() || name.len() > MAX_RULE_NAME {
        return Err(ConfigError::invalid(
            key,
            format!("must be 1 to {MAX_RULE_NAME} characters"),
        ));
    }
    if !name
        .bytes()
        .all(|b| (b.is_ascii_graphic() || (spaces && b == b' ')) && b != b'"' && b != b'\\')
    {
        let spaces = if spaces { "" } else { "spaces, " };
        return Err(ConfigError::invalid(
            key,
            format!(
                "must be printable ASCII without {spaces}quotes or backslashes (it is written \
                 into {header} as is)"
            ),
        ));
    }
    if let Some(position) = earlier.into_iter().position(|other| other == name) {
        return Err(ConfigError::invalid(
            key,
            format!("{name:?} is already the name of {list}[{position}]"),
        ));
    }
    Ok(())
}
