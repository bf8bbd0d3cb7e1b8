//! GraphQL over HTTP to the endpoint: one POST per tool call, with the API's own
//! headers and nothing of the MCP client's request.

use std::time::Duration;

use http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use serde_json::{Map, Value};
use url::Url;

/// The largest answer read from the endpoint. A tool result is held whole in memory
/// and written twice (as text and as structured content) into one JSON-RPC answer,
/// so an endpoint that streams without end must not make mcpgate buffer without
/// bound; 16 MiB is the stdio upstream's cap on one message too, and far more than
/// a model can read.
pub const MAX_RESPONSE_BYTES: usize = 16 * 1024 * 1024;

/// mcpgate's own headers that may go to the endpoint: they identify the request
/// and its trace, nothing about who sent it.
const OWN_HEADERS: [&str; 3] = ["traceparent", "tracestate", "x-request-id"];

/// GraphQL over HTTP's media type first (its status codes mean something), plain
/// JSON for servers that predate it.
const ACCEPT: &str = "application/graphql-response+json, application/json";

/// One GraphQL request's body.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct GraphqlRequest<'a> {
    pub query: &'a str,
    pub variables: Map<String, Value>,
    pub operation_name: Option<&'a str>,
}

impl GraphqlRequest<'_> {
    fn to_json(&self) -> Value {
        let mut body = Map::new();
        body.insert("query".to_owned(), Value::String(self.query.to_owned()));
        body.insert(
            "variables".to_owned(),
            Value::Object(self.variables.clone()),
        );
        if let Some(name) = self.operation_name {
            body.insert("operationName".to_owned(), Value::String(name.to_owned()));
        }
        Value::Object(body)
    }
}

/// The endpoint's answer, read whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Answer {
    pub status: StatusCode,
    pub body: bytes::Bytes,
}

/// Why no answer came. `Display` is for the caller's tool result: it never names the
/// endpoint or its headers; `detail` (for logs) carries the cause.
#[derive(Debug, thiserror::Error)]
pub(super) enum ExchangeError {
    #[error("the GraphQL endpoint could not be reached")]
    Unreachable { detail: String },
    #[error("the GraphQL endpoint did not answer within {}", humantime::format_duration(*.timeout))]
    Timeout { timeout: Duration },
    #[error("the GraphQL endpoint's answer (HTTP {status}) is larger than {} MiB", MAX_RESPONSE_BYTES / (1024 * 1024))]
    TooLarge { status: u16 },
}

impl ExchangeError {
    pub(super) fn detail(&self) -> String {
        match self {
            Self::Unreachable { detail } => format!("{self}: {detail}"),
            Self::Timeout { .. } | Self::TooLarge { .. } => self.to_string(),
        }
    }
}

/// A pooled HTTP client bound to the endpoint and its headers.
#[derive(Debug)]
pub(super) struct Client {
    http: reqwest::Client,
    endpoint: Url,
    headers: HeaderMap,
    timeout: Duration,
}

impl Client {
    /// `headers` are the configured ones, already checked; they are sent as given
    /// and win over mcpgate's defaults of the same name.
    pub(super) fn new(
        endpoint: Url,
        headers: HeaderMap,
        timeout: Duration,
        connect_timeout: Duration,
    ) -> Result<Self, reqwest::Error> {
        let http = reqwest::Client::builder()
            // A redirect would resend the API's credentials to wherever it points.
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .connect_timeout(connect_timeout)
            .pool_idle_timeout(Duration::from_secs(90))
            .tcp_nodelay(true)
            .build()?;
        Ok(Self {
            http,
            endpoint,
            headers,
            timeout,
        })
    }

    /// Posts one GraphQL request and reads the answer, all within the timeout.
    pub(super) async fn execute(
        &self,
        request: &GraphqlRequest<'_>,
        own_headers: &HeaderMap,
    ) -> Result<Answer, ExchangeError> {
        let body =
            serde_json::to_vec(&request.to_json()).map_err(|error| ExchangeError::Unreachable {
                detail: format!("cannot encode the request: {error}"),
            })?;
        let headers = self.request_headers(own_headers);
        let exchange = async {
            let response = self
                .http
                .post(self.endpoint.clone())
                .headers(headers)
                .body(body)
                .send()
                .await
                .map_err(|error| self.failure(&error))?;
            let status = response.status();
            let body = read_capped(response).await.map_err(|error| match error {
                ReadError::TooLarge => ExchangeError::TooLarge {
                    status: status.as_u16(),
                },
                ReadError::Http(error) => self.failure(&error),
            })?;
            Ok(Answer { status, body })
        };
        match tokio::time::timeout(self.timeout, exchange).await {
            Ok(result) => result,
            Err(_) => Err(ExchangeError::Timeout {
                timeout: self.timeout,
            }),
        }
    }

    fn request_headers(&self, own_headers: &HeaderMap) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        headers.insert(header::ACCEPT, HeaderValue::from_static(ACCEPT));
        headers.insert(
            header::USER_AGENT,
            HeaderValue::from_static(concat!("mcpgate/", env!("CARGO_PKG_VERSION"))),
        );
        for name in OWN_HEADERS {
            for value in own_headers.get_all(name) {
                headers.append(HeaderName::from_static(name), value.clone());
            }
        }
        for (name, value) in &self.headers {
            headers.insert(name.clone(), value.clone());
        }
        headers
    }

    fn failure(&self, error: &reqwest::Error) -> ExchangeError {
        if error.is_timeout() {
            ExchangeError::Timeout {
                timeout: self.timeout,
            }
        } else {
            ExchangeError::Unreachable {
                detail: crate::error_chain(error),
            }
        }
    }
}

enum ReadError {
    TooLarge,
    Http(reqwest::Error),
}

/// The body, refused as soon as it is known to exceed the cap (from its declared
/// length, else while reading), so an oversized answer is never buffered whole.
async fn read_capped(mut response: reqwest::Response) -> Result<bytes::Bytes, ReadError> {
    if response
        .content_length()
        .is_some_and(|length| length > MAX_RESPONSE_BYTES as u64)
    {
        return Err(ReadError::TooLarge);
    }
    let mut body = bytes::BytesMut::new();
    while let Some(chunk) = response.chunk().await.map_err(ReadError::Http)? {
        if body.len().saturating_add(chunk.len()) > MAX_RESPONSE_BYTES {
            return Err(ReadError::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(headers: HeaderMap) -> Client {
        Client::new(
            Url::parse("http://127.0.0.1:9/graphql").unwrap(),
            headers,
            Duration::from_secs(1),
            Duration::from_secs(1),
        )
        .unwrap()
    }

    #[test]
    fn the_body_has_no_operation_name_unless_given() {
        let mut variables = Map::new();
        variables.insert("limit".to_owned(), Value::from(2));
        let request = GraphqlRequest {
            query: "query Q($limit: Int) { facts(limit: $limit) { title } }",
            variables,
            operation_name: None,
        };
        assert_eq!(
            request.to_json(),
            serde_json::json!({
                "query": "query Q($limit: Int) { facts(limit: $limit) { title } }",
                "variables": {"limit": 2},
            })
        );
        let named = GraphqlRequest {
            operation_name: Some("Q"),
            ..request
        };
        assert_eq!(named.to_json()["operationName"], "Q");
    }

    #[test]
    fn only_trace_and_request_id_of_own_headers_pass_and_configured_ones_win() {
        let mut configured = HeaderMap::new();
        configured.insert("x-api-key", HeaderValue::from_static("k"));
        configured.insert(header::ACCEPT, HeaderValue::from_static("application/json"));
        let client = client(configured);
        let mut own = HeaderMap::new();
        own.insert("x-request-id", HeaderValue::from_static("r1"));
        own.insert("traceparent", HeaderValue::from_static("00-aa-bb-01"));
        own.insert("mcp-session-id", HeaderValue::from_static("s"));
        own.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer x"));
        let headers = client.request_headers(&own);
        assert_eq!(headers["x-request-id"], "r1");
        assert_eq!(headers["traceparent"], "00-aa-bb-01");
        assert_eq!(headers["x-api-key"], "k");
        assert_eq!(headers[header::ACCEPT], "application/json");
        assert_eq!(headers[header::CONTENT_TYPE], "application/json");
        assert!(!headers.contains_key("mcp-session-id"));
        assert!(!headers.contains_key(header::AUTHORIZATION));
    }

    #[test]
    fn the_default_accept_prefers_the_graphql_response_type() {
        let headers = client(HeaderMap::new()).request_headers(&HeaderMap::new());
        assert_eq!(
            headers[header::ACCEPT],
            "application/graphql-response+json, application/json"
        );
    }

    #[test]
    fn messages_for_the_caller_name_no_address() {
        let error = ExchangeError::Unreachable {
            detail: "error sending request for url (http://10.1.2.3/graphql)".to_owned(),
        };
        assert_eq!(
            error.to_string(),
            "the GraphQL endpoint could not be reached"
        );
        assert!(error.detail().contains("10.1.2.3"));
        let timeout = ExchangeError::Timeout {
            timeout: Duration::from_secs(5),
        };
        assert_eq!(
            timeout.to_string(),
            "the GraphQL endpoint did not answer within 5s"
        );
    }
}
