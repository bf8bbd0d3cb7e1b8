//! `tools/call`: find the tool, check its arguments' shape, and run it.

use http::HeaderMap;
use serde_json::{Map, Value};

use super::GraphqlUpstream;
use super::client::GraphqlRequest;
use super::result::{self, ToolResult};
use crate::upstream::local::rpc_error::RpcError;

/// A tool call's arguments: a JSON object, possibly empty.
pub(super) struct Arguments<'a> {
    tool: &'a str,
    map: &'a Map<String, Value>,
}

/// What an absent `arguments` stands for.
static NO_ARGUMENTS: std::sync::LazyLock<Map<String, Value>> = std::sync::LazyLock::new(Map::new);

impl<'a> Arguments<'a> {
    /// `arguments` absent or `null` is no arguments; anything but an object is
    /// invalid params.
    pub(super) fn of(tool: &'a str, arguments: Option<&'a Value>) -> Result<Self, RpcError> {
        match arguments {
            None | Some(Value::Null) => Ok(Self {
                tool,
                map: &NO_ARGUMENTS,
            }),
            Some(Value::Object(map)) => Ok(Self { tool, map }),
            Some(_) => Err(RpcError::invalid_params(format!(
                "the arguments of tool {tool} must be a JSON object"
            ))),
        }
    }

    pub(super) fn map(&self) -> &'a Map<String, Value> {
        self.map
    }

    /// Refuses any argument not named in `allowed`.
    pub(super) fn only(&self, allowed: &[&str]) -> Result<(), RpcError> {
        match self.map.keys().find(|key| !allowed.contains(&key.as_str())) {
            Some(key) => Err(RpcError::invalid_params(format!(
                "tool {} has no argument {:?}",
                self.tool,
                crate::char_prefix(key, 100)
            ))),
            None => Ok(()),
        }
    }

    pub(super) fn required_string(&self, key: &str) -> Result<&'a str, RpcError> {
        self.optional_string(key)?.ok_or_else(|| {
            RpcError::invalid_params(format!(
                "tool {} needs the string argument {key}",
                self.tool
            ))
        })
    }

    /// A string, or nothing when absent or `null`.
    pub(super) fn optional_string(&self, key: &str) -> Result<Option<&'a str>, RpcError> {
        match self.map.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(text)) => Ok(Some(text)),
            Some(_) => Err(RpcError::invalid_params(format!(
                "argument {key} of tool {} must be a string",
                self.tool
            ))),
        }
    }

    /// An object, or nothing when absent or `null`.
    pub(super) fn optional_object(
        &self,
        key: &str,
    ) -> Result<Option<&'a Map<String, Value>>, RpcError> {
        match self.map.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Object(map)) => Ok(Some(map)),
            Some(_) => Err(RpcError::invalid_params(format!(
                "argument {key} of tool {} must be a JSON object",
                self.tool
            ))),
        }
    }
}

impl GraphqlUpstream {
    /// A `tools/call` request's result, or the JSON-RPC error for a call that cannot
    /// be made (no such tool, arguments of the wrong shape).
    pub(super) async fn call_tool(
        &self,
        params: Option<&Value>,
        own_headers: &HeaderMap,
    ) -> Result<Value, RpcError> {
        let name = params
            .and_then(|params| params.get("name"))
            .and_then(Value::as_str)
            .ok_or_else(|| RpcError::invalid_params("tools/call needs a string name"))?;
        let arguments = params.and_then(|params| params.get("arguments"));
        if let Some(builtin) = self.builtin(name) {
            let arguments = Arguments::of(name, arguments)?;
            let result = self.call_builtin(builtin, &arguments, own_headers).await?;
            return Ok(result.to_json());
        }
        let Some(tool) = self.operation_tool(name) else {
            return Err(RpcError::invalid_params(format!(
                "unknown tool: {:?}",
                crate::char_prefix(name, 200)
            )));
        };
        let arguments = Arguments::of(name, arguments)?;
        let request = GraphqlRequest {
            query: &tool.document,
            variables: arguments.map().clone(),
            operation_name: None,
        };
        Ok(self.run(name, &request, own_headers).await.to_json())
    }

    /// Sends one GraphQL request; whatever happens is a tool result.
    pub(super) async fn run(
        &self,
        tool: &str,
        request: &GraphqlRequest<'_>,
        own_headers: &HeaderMap,
    ) -> ToolResult {
        match self.client.execute(request, own_headers).await {
            Ok(answer) => {
                if !answer.status.is_success() {
                    tracing::warn!(
                        tool,
                        status = answer.status.as_u16(),
                        "GraphQL endpoint answered with an HTTP error"
                    );
                }
                result::from_answer(&answer)
            }
            Err(error) => {
                tracing::warn!(tool, "GraphQL request failed: {}", error.detail());
                result::from_exchange_error(&error)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn absent_or_null_arguments_are_none_and_other_non_objects_are_refused() {
        assert!(Arguments::of("t", None).unwrap().map().is_empty());
        assert!(
            Arguments::of("t", Some(&Value::Null))
                .unwrap()
                .map()
                .is_empty()
        );
        for bad in [json!([1]), json!("x"), json!(3), json!(true)] {
            let error = Arguments::of("t", Some(&bad)).err().unwrap();
            assert_eq!(error.code, -32602);
            assert_eq!(
                error.message,
                "the arguments of tool t must be a JSON object"
            );
        }
    }

    #[test]
    fn typed_accessors_refuse_the_wrong_type() {
        let value = json!({"q": 1, "v": "x", "s": "ok", "n": null});
        let arguments = Arguments::of("t", Some(&value)).unwrap();
        assert_eq!(arguments.optional_string("s").unwrap(), Some("ok"));
        assert_eq!(arguments.optional_string("n").unwrap(), None);
        assert_eq!(arguments.optional_string("missing").unwrap(), None);
        assert!(arguments.optional_string("q").is_err());
        assert!(arguments.optional_object("v").is_err());
        assert!(arguments.required_string("missing").is_err());
        assert!(arguments.only(&["q", "v", "s"]).is_err());
        assert!(arguments.only(&["q", "v", "s", "n"]).is_ok());
    }
}
