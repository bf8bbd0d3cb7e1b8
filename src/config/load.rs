//! Layering: the YAML file, then the `MCP_OAUTH_*` aliases kept from the reference
//! documents, then `MCPGATE_<SECTION>__<KEY>` overrides; `${env:NAME}` is expanded last,
//! so an override may use it too.

use std::path::Path;

use figment::Figment;
use figment::providers::{Env, Format, Serialized};
use figment::value::Value;
use serde_saphyr::figment::Yaml;

use super::interpolate::interpolate;
use super::{Config, ConfigError};

/// Environment variables kept from the reference documents, and the key each one sets.
const ALIASES: &[(&str, &str)] = &[
    ("MCP_OAUTH_ENABLED", "auth.oauth.enabled"),
    (
        "MCP_OAUTH_AUTHORIZATION_SERVER_URL",
        "auth.oauth.authorization_servers",
    ),
    (
        "MCP_OAUTH_SCOPE_CHALLENGE_INCLUDE_TOKEN_SCOPES",
        "auth.oauth.scope_challenge_include_token_scopes",
    ),
    (
        "MCP_OAUTH_MAX_SCOPE_COMBINATIONS",
        "auth.oauth.max_scope_combinations",
    ),
];

/// Reads, merges and parses a config file. Validation is separate (`validate`).
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.display().to_string(),
        source,
    })?;
    load_from_str(&text)
}

/// As [`load`], from YAML text (the environment still applies).
pub fn load_from_str(yaml: &str) -> Result<Config, ConfigError> {
    let aliases = Env::raw()
        .only(&ALIASES.iter().map(|(name, _)| *name).collect::<Vec<_>>())
        .map(|name| {
            ALIASES
                .iter()
                .find(|(alias, _)| name == *alias)
                .map_or_else(|| name.as_str().to_owned(), |(_, key)| (*key).to_owned())
                .into()
        });
    let merged = Figment::new()
        .merge(Yaml::string(yaml))
        .merge(aliases)
        // Only `MCPGATE_<SECTION>__<KEY>` is an override: variables such as
        // `MCPGATE_CONFIG` (the CLI's) or `MCPGATE_BIN` belong to other tools.
        .merge(
            Env::prefixed("MCPGATE_")
                .filter(|key| key.as_str().contains("__"))
                .split("__"),
        );

    let mut tree: Value = merged.extract().map_err(figment_error)?;
    interpolate(&mut tree, &mut Vec::new(), &|name| std::env::var(name).ok())?;
    Figment::from(Serialized::defaults(tree))
        .extract()
        .map_err(figment_error)
}

/// One line naming the key: `auth.oauth.leeway: invalid value …`.
fn figment_error(error: figment::Error) -> ConfigError {
    let first = error.into_iter().next();
    match first {
        Some(error) => {
            // Figment prefixes every path with its profile name.
            let parts: Vec<&String> = error
                .path
                .iter()
                .skip_while(|part| part.as_str() == "default")
                .collect();
            let key = super::key_path(&parts);
            let message = tidy(&error.kind.to_string());
            if let Some((duplicate, position)) = duplicate_key(&message) {
                return ConfigError::invalid(duplicate, format!("duplicate key{position}"));
            }
            if key.is_empty() {
                ConfigError::Parse(message)
            } else {
                ConfigError::invalid(key, message)
            }
        }
        None => ConfigError::Parse("invalid configuration".to_owned()),
    }
}

/// serde-saphyr reports `duplicate mapping key: <key>, set DuplicateKeyPolicy … at line
/// L, column C`; the user needs the key and the place, not the library's option.
fn duplicate_key(message: &str) -> Option<(String, String)> {
    let rest = message.strip_prefix("duplicate mapping key: ")?;
    let (key, tail) = rest.split_once(',').unwrap_or((rest, ""));
    let position = tail
        .find(" at line ")
        .map_or(String::new(), |at| tail[at..].to_owned());
    Some((key.trim().to_owned(), position))
}

/// figment quotes its expectation list in backticks that already hold backticks.
fn tidy(message: &str) -> String {
    message
        .replace("expected `one of ", "expected one of ")
        .replace("``", "`")
}
