//! What a 2026-07-28 result carries beyond a legacy one: `resultType`, the
//! server's identity in `_meta`, and caching hints on `tools/list` and
//! `server/discover`.

use serde_json::{Map, Value, json};

use super::Identity;
use super::protocol::supported;

const SERVER_INFO_KEY: &str = "io.modelcontextprotocol/serverInfo";

/// Who may cache a `tools/list` or `server/discover` result: only the caller it was
/// given to. mcpgate filters `tools/list` per caller (tool scopes, principal rules),
/// and every answer it gives has passed its authentication and level checks, so a
/// result marked `"public"` could be served by a shared cache to a caller who may
/// not see it. Always `"private"`: whether the list could differ between callers
/// depends on the gateway's policy, which this module does not see, and a wrong
/// `"public"` leaks while a wrong `"private"` only costs a shared cache a miss.
pub(crate) const CACHE_SCOPE: &str = "private";

/// The server, as `serverInfo` (legacy `initialize`) and
/// `_meta["io.modelcontextprotocol/serverInfo"]` (2026-07-28) name it.
pub(crate) fn server_info(identity: &Identity) -> Value {
    json!({"name": identity.name, "version": env!("CARGO_PKG_VERSION")})
}

/// A result as 2026-07-28 answers it: `resultType: "complete"` (this server never
/// needs more input) and its identity in `_meta`, next to whatever `_meta` the
/// result already had.
pub(crate) fn complete(result: Value, identity: &Identity) -> Value {
    let mut result = match result {
        Value::Object(result) => result,
        // Every result built here is an object; anything else is kept, unmarked,
        // rather than dropped.
        other => return other,
    };
    result.insert("resultType".to_owned(), json!("complete"));
    let meta = result
        .entry("_meta")
        .or_insert_with(|| Value::Object(Map::new()));
    if let Value::Object(meta) = meta {
        meta.insert(SERVER_INFO_KEY.to_owned(), server_info(identity));
    }
    Value::Object(result)
}

/// Adds the caching hints a cacheable result must carry.
pub(crate) fn cacheable(result: Value, ttl_ms: u64) -> Value {
    let mut result = match result {
        Value::Object(result) => result,
        other => return other,
    };
    result.insert("ttlMs".to_owned(), json!(ttl_ms));
    result.insert("cacheScope".to_owned(), json!(CACHE_SCOPE));
    Value::Object(result)
}

/// The `server/discover` result, whichever version asked: it is the probe a
/// client sends before it knows which era this server is.
pub(crate) fn discover(identity: &Identity, ttl_ms: u64) -> Value {
    complete(
        cacheable(
            json!({
                "supportedVersions": supported(),
                "capabilities": identity.capabilities,
            }),
            ttl_ms,
        ),
        identity,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn graphql() -> Identity {
        super::super::tools_only("mcpgate-graphql")
    }

    #[test]
    fn complete_marks_the_result_and_names_the_server() {
        assert_eq!(
            complete(json!({"content": []}), &graphql()),
            json!({
                "content": [],
                "resultType": "complete",
                "_meta": {"io.modelcontextprotocol/serverInfo": {
                    "name": "mcpgate-graphql", "version": env!("CARGO_PKG_VERSION"),
                }},
            })
        );
    }

    #[test]
    fn complete_keeps_the_results_own_meta() {
        let result = complete(json!({"_meta": {"com.example/x": 1}}), &graphql());
        assert_eq!(result["_meta"]["com.example/x"], 1);
        assert_eq!(
            result["_meta"]["io.modelcontextprotocol/serverInfo"]["name"],
            "mcpgate-graphql"
        );
    }

    #[test]
    fn cacheable_results_are_private_with_the_given_ttl() {
        let result = cacheable(json!({"tools": []}), 1234);
        assert_eq!(
            result,
            json!({"tools": [], "ttlMs": 1234, "cacheScope": "private"})
        );
    }

    #[test]
    fn discover_lists_every_version_and_tools_only() {
        let result = discover(&graphql(), 60_000);
        assert_eq!(
            result["supportedVersions"],
            json!([
                "2026-07-28",
                "2025-11-25",
                "2025-06-18",
                "2025-03-26",
                "2024-11-05"
            ])
        );
        assert_eq!(
            result["capabilities"],
            json!({"tools": {"listChanged": false}})
        );
        assert_eq!(result["resultType"], "complete");
        assert_eq!(result["ttlMs"], 60_000);
        assert_eq!(result["cacheScope"], "private");
        assert_eq!(
            result["_meta"]["io.modelcontextprotocol/serverInfo"],
            server_info(&graphql())
        );
        assert!(result.get("instructions").is_none());
    }
}
