//! MCP tool results: from a GraphQL answer, or from a refusal of mcpgate's own.
//!
//! A tool that ran but failed (GraphQL `errors`, an HTTP error from the endpoint, no
//! answer in time) is a result with `isError: true`, so the model reads what went
//! wrong; only a call that cannot be a call (unknown tool, arguments that are not an
//! object) is a JSON-RPC error.

use http::StatusCode;
use serde_json::{Map, Value, json};

use super::client::{Answer, ExchangeError};

/// A `tools/call` result.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct ToolResult {
    pub is_error: bool,
    pub text: String,
    pub structured: Option<Map<String, Value>>,
}

impl ToolResult {
    pub(super) fn success(text: impl Into<String>, structured: Option<Map<String, Value>>) -> Self {
        Self {
            is_error: false,
            text: text.into(),
            structured,
        }
    }

    pub(super) fn error(text: impl Into<String>) -> Self {
        Self {
            is_error: true,
            text: text.into(),
            structured: None,
        }
    }

    /// The result as MCP writes it: one text block, and the structured content
    /// when there is an object to give.
    pub(super) fn to_json(&self) -> Value {
        let mut result = Map::new();
        result.insert(
            "content".to_owned(),
            json!([{"type": "text", "text": self.text}]),
        );
        if let Some(structured) = &self.structured {
            result.insert(
                "structuredContent".to_owned(),
                Value::Object(structured.clone()),
            );
        }
        result.insert("isError".to_owned(), Value::Bool(self.is_error));
        Value::Object(result)
    }
}

/// What the endpoint's answer means for the caller.
pub(super) fn from_answer(answer: &Answer) -> ToolResult {
    let parsed = serde_json::from_slice::<Value>(&answer.body).ok();
    let status = answer.status;
    if !status.is_success() {
        // GraphQL over HTTP answers a request it refuses (invalid variables, a
        // document that does not validate) with 4xx and a list of errors: those say
        // what to fix, so they follow the status.
        let mut text = format!("the GraphQL endpoint answered HTTP {}", shown(status));
        if let Some(messages) = parsed
            .as_ref()
            .and_then(|body| body.get("errors"))
            .and_then(error_messages)
        {
            text.push('\n');
            text.push_str(&messages);
        }
        return ToolResult::error(text);
    }
    let Some(parsed) = parsed else {
        return ToolResult::error(format!(
            "the GraphQL endpoint's answer (HTTP {}) is not JSON",
            shown(status)
        ));
    };
    let not_graphql = || {
        ToolResult::error(format!(
            "the GraphQL endpoint's answer (HTTP {}) is not a GraphQL response",
            shown(status)
        ))
    };
    let Value::Object(mut body) = parsed else {
        return not_graphql();
    };
    let data = body.remove("data");
    let structured = match &data {
        Some(Value::Object(data)) => Some(data.clone()),
        _ => None,
    };
    match body.get("errors") {
        None | Some(Value::Null) => {}
        Some(Value::Array(errors)) if errors.is_empty() => {}
        Some(errors) => {
            return match error_messages(errors) {
                Some(messages) => ToolResult {
                    is_error: true,
                    text: messages,
                    structured,
                },
                None => not_graphql(),
            };
        }
    }
    match data {
        Some(data) => ToolResult::success(data.to_string(), structured),
        None => not_graphql(),
    }
}

/// The endpoint could not be asked, or did not answer.
pub(super) fn from_exchange_error(error: &ExchangeError) -> ToolResult {
    ToolResult::error(error.to_string())
}

/// Each error's `message`, one a line; an error without one is shown as its JSON.
/// `None` when `errors` is not a non-empty list.
fn error_messages(errors: &Value) -> Option<String> {
    let errors = errors.as_array().filter(|errors| !errors.is_empty())?;
    let lines: Vec<String> = errors
        .iter()
        .map(|error| match error.get("message").and_then(Value::as_str) {
            Some(message) => message.to_owned(),
            None => error.to_string(),
        })
        .collect();
    Some(lines.join("\n"))
}

fn shown(status: StatusCode) -> String {
    match status.canonical_reason() {
        Some(reason) => format!("{} {reason}", status.as_u16()),
        None => status.as_u16().to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(status: u16, body: &str) -> ToolResult {
        from_answer(&Answer {
            status: StatusCode::from_u16(status).unwrap(),
            body: bytes::Bytes::from(body.to_owned()),
        })
    }

    #[test]
    fn data_is_the_text_and_the_structured_content() {
        let result = answer(200, r#"{"data": {"status": {"healthy": true}}}"#);
        assert!(!result.is_error);
        assert_eq!(result.text, r#"{"status":{"healthy":true}}"#);
        assert_eq!(
            result.structured.map(Value::Object),
            Some(json!({"status": {"healthy": true}}))
        );
    }

    #[test]
    fn an_empty_error_list_is_no_error() {
        let result = answer(200, r#"{"data": {"a": 1}, "errors": []}"#);
        assert!(!result.is_error);
        assert_eq!(result.text, r#"{"a":1}"#);
    }

    #[test]
    fn errors_are_the_text_with_partial_data_kept() {
        let result = answer(
            200,
            r#"{"data": {"a": null, "b": 2}, "errors": [{"message": "no a"}, {"message": "really no a", "path": ["a"]}]}"#,
        );
        assert!(result.is_error);
        assert_eq!(result.text, "no a\nreally no a");
        assert_eq!(
            result.structured.map(Value::Object),
            Some(json!({"a": null, "b": 2}))
        );
    }

    #[test]
    fn an_error_without_a_message_is_shown_as_json() {
        let result = answer(200, r#"{"errors": [{"code": 7}]}"#);
        assert!(result.is_error);
        assert_eq!(result.text, r#"{"code":7}"#);
        assert_eq!(result.structured, None);
    }

    #[test]
    fn an_http_error_names_the_status_and_any_graphql_errors() {
        let plain = answer(500, "<html>oops</html>");
        assert!(plain.is_error);
        assert_eq!(
            plain.text,
            "the GraphQL endpoint answered HTTP 500 Internal Server Error"
        );
        let graphql = answer(
            400,
            r#"{"errors": [{"message": "Variable \"$id\" of required type \"ID!\" was not provided."}]}"#,
        );
        assert_eq!(
            graphql.text,
            "the GraphQL endpoint answered HTTP 400 Bad Request\nVariable \"$id\" of required type \"ID!\" was not provided."
        );
    }

    #[test]
    fn what_is_not_a_graphql_response_is_an_error() {
        assert_eq!(
            answer(200, "hello").text,
            "the GraphQL endpoint's answer (HTTP 200 OK) is not JSON"
        );
        for body in [
            "[1]",
            "{}",
            r#"{"errors": "x"}"#,
            r#"{"errors": {"message": "x"}}"#,
        ] {
            let result = answer(200, body);
            assert!(result.is_error, "{body}");
            assert_eq!(
                result.text,
                "the GraphQL endpoint's answer (HTTP 200 OK) is not a GraphQL response",
                "{body}"
            );
        }
    }

    #[test]
    fn null_data_without_errors_is_a_result_without_structured_content() {
        let result = answer(200, r#"{"data": null}"#);
        assert!(!result.is_error);
        assert_eq!(result.text, "null");
        assert_eq!(result.structured, None);
    }

    #[test]
    fn the_json_form_has_text_content_and_the_flag() {
        assert_eq!(
            ToolResult::error("nope").to_json(),
            json!({"content": [{"type": "text", "text": "nope"}], "isError": true})
        );
        let mut data = Map::new();
        data.insert("x".to_owned(), json!(1));
        assert_eq!(
            ToolResult::success("{\"x\":1}", Some(data)).to_json(),
            json!({
                "content": [{"type": "text", "text": "{\"x\":1}"}],
                "structuredContent": {"x": 1},
                "isError": false,
            })
        );
    }
}
