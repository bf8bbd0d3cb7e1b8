//! The MCP server side: JSON-RPC over Streamable HTTP, stateless, answered in JSON.
//!
//! No session id is issued and no SSE stream is offered: every answer is known as
//! soon as the server's own work is done, so a POST gets one `application/json`
//! body, a GET (the standalone stream) and a DELETE (ending a session) get 405.
//!
//! Both eras are spoken on the same endpoint, chosen per request ([`protocol`]):
//! a legacy client opens with `initialize` and gets the results it always got; a
//! 2026-07-28 client sends no handshake and gets `resultType`, the server's
//! identity and caching hints ([`modern`]).

use std::future::Future;

use axum::body::Body;
use bytes::Bytes;
use futures_util::StreamExt;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Response, StatusCode, header};
use serde_json::{Map, Value, json};

use super::modern;
use super::protocol::{self, Era, VersionRefusal};
use super::rpc_error::RpcError;
use super::rpc_error::{INVALID_REQUEST, METHOD_NOT_FOUND, PARSE_ERROR};

/// Messages of one batch handled at once. A batch is one client's, so its calls may
/// overlap, but a long batch must not become a burst against what serves them.
const BATCH_CONCURRENCY: usize = 8;

const PROTOCOL_VERSION_HEADER: HeaderName = HeaderName::from_static("mcp-protocol-version");

/// Who a server says it is (`serverInfo.name`), and what it offers (its
/// `capabilities`, in `initialize` and `server/discover`).
#[derive(Debug, Clone)]
pub(crate) struct Identity {
    pub(crate) name: &'static str,
    pub(crate) capabilities: Value,
}

/// What a request brings besides its message.
pub(crate) struct Context<'a> {
    /// The gateway's own (request id, trace context).
    pub(crate) own_headers: &'a HeaderMap,
    /// Who calls, as a digest that is the same for every token of one principal
    /// (empty when unknown): what a server keeps per caller is keyed by it.
    pub(crate) caller: &'a [u8],
}

/// A server mcpgate runs itself. The protocol's own requests (`initialize`,
/// `ping`, `server/discover`) and the 2026-07-28 result marks are answered here;
/// the server answers the rest.
pub(crate) trait LocalServer: Sync {
    fn identity(&self) -> &Identity;

    /// How long a client may keep a list (`ttlMs` of 2026-07-28 list results).
    fn cache_ttl_ms(&self) -> u64;

    /// One request other than `initialize`, `ping` and `server/discover`; an
    /// unknown method is [`method_not_found`].
    fn handle<'a>(
        &'a self,
        method: &'a str,
        params: Option<&'a Value>,
        context: &'a Context<'a>,
    ) -> impl Future<Output = Result<Value, RpcError>> + Send + 'a;
}

/// Answers one HTTP request to the MCP endpoint as a stateless Streamable HTTP
/// server answering in JSON. Of `client_headers`, the server reads only
/// `MCP-Protocol-Version` (which era the request speaks) and what its own
/// requests need.
pub(crate) async fn forward<S: LocalServer>(
    server: &S,
    method: Method,
    (client_headers, own_headers): (&HeaderMap, &HeaderMap),
    caller: &[u8],
    body: &Bytes,
) -> Response<Body> {
    if method != Method::POST {
        return method_not_allowed();
    }
    // An unreadable value is kept as one no version equals, not dropped: dropped,
    // it would read as "no header", which means 2025-03-26.
    let version = client_headers
        .get(PROTOCOL_VERSION_HEADER)
        .map(|value| value.to_str().map_or("", str::trim));
    let context = Context {
        own_headers,
        caller,
    };
    Posted {
        server,
        context: &context,
    }
    .post(body, version)
    .await
}

/// One POST being answered.
struct Posted<'a, S> {
    server: &'a S,
    context: &'a Context<'a>,
}

/// What one message of a POST body gets.
enum Outcome {
    /// A response to a request (a result or an error), and the HTTP status it
    /// goes with when it is the only message.
    Answer(StatusCode, Value),
    /// Not a JSON-RPC message at all: an error with a null id.
    Invalid(Value),
    /// A notification, or a response to nothing this server asked: no answer.
    Nothing,
}

impl<S: LocalServer> Posted<'_, S> {
    /// Answers a POST body: one message, or a batch (an array). `version` is the
    /// `MCP-Protocol-Version` header.
    async fn post(&self, body: &[u8], version: Option<&str>) -> Response<Body> {
        let parsed: Value = match serde_json::from_slice(body) {
            Ok(parsed) => parsed,
            Err(_) => {
                return json_response(
                    StatusCode::BAD_REQUEST,
                    &error_message(None, &RpcError::new(PARSE_ERROR, "the body is not JSON")),
                );
            }
        };
        match parsed {
            Value::Array(messages) if messages.is_empty() => json_response(
                StatusCode::BAD_REQUEST,
                &error_message(None, &RpcError::new(INVALID_REQUEST, "empty batch")),
            ),
            Value::Array(_) if !protocol::allows_batch(version) => json_response(
                StatusCode::BAD_REQUEST,
                &error_message(
                    None,
                    &RpcError::new(
                        INVALID_REQUEST,
                        format!(
                            "JSON-RPC batches are not part of MCP protocol version {}",
                            crate::char_prefix(version.unwrap_or_default(), 100)
                        ),
                    ),
                ),
            ),
            Value::Array(messages) => {
                // `buffered` keeps the answers in the order of the requests. Each
                // message is moved into its future rather than borrowed: a closure
                // over borrowed items makes the whole future not provably `Send`
                // inside an axum handler.
                let outcomes: Vec<Outcome> = futures_util::stream::iter(messages)
                    .map(|message| async move { self.outcome(&message, version).await })
                    .buffered(BATCH_CONCURRENCY)
                    .collect()
                    .await;
                let answers: Vec<Value> = outcomes
                    .into_iter()
                    .filter_map(|outcome| match outcome {
                        Outcome::Answer(_, answer) | Outcome::Invalid(answer) => Some(answer),
                        Outcome::Nothing => None,
                    })
                    .collect();
                if answers.is_empty() {
                    accepted()
                } else {
                    json_response(StatusCode::OK, &Value::Array(answers))
                }
            }
            message => match self.outcome(&message, version).await {
                Outcome::Answer(status, answer) => json_response(status, &answer),
                Outcome::Invalid(answer) => json_response(StatusCode::BAD_REQUEST, &answer),
                Outcome::Nothing => accepted(),
            },
        }
    }

    async fn outcome(&self, message: &Value, version: Option<&str>) -> Outcome {
        let Some(message) = message.as_object() else {
            return Outcome::Invalid(error_message(
                None,
                &RpcError::new(INVALID_REQUEST, "a JSON-RPC message is an object"),
            ));
        };
        let method = message.get("method");
        let id = message.get("id");
        // The refusal names the request when its id can be read (JSON-RPC 2.0 §5).
        let readable_id = id.filter(|id| id.is_string() || id.is_number());
        let invalid = |text: &str| {
            Outcome::Invalid(error_message(
                readable_id,
                &RpcError::new(INVALID_REQUEST, text),
            ))
        };
        if message.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
            return invalid("not a JSON-RPC 2.0 message");
        }
        match (method, id) {
            (Some(Value::String(method)), Some(id @ (Value::String(_) | Value::Number(_)))) => {
                let params = message.get("params");
                let era = match protocol::era(version, params) {
                    Ok(era) => era,
                    Err(VersionRefusal(error)) => {
                        return Outcome::Answer(
                            VersionRefusal::STATUS,
                            error_message(Some(id), &error),
                        );
                    }
                };
                match self.dispatch(method, params, era).await {
                    Ok(result) => Outcome::Answer(
                        StatusCode::OK,
                        json!({"jsonrpc": "2.0", "id": id, "result": result}),
                    ),
                    Err(error) => {
                        // 2026-07-28 tells an unknown method from a missing endpoint
                        // by a 404 with a JSON-RPC body; before, errors were 200s.
                        let status = if era == Era::Modern && error.code == METHOD_NOT_FOUND {
                            StatusCode::NOT_FOUND
                        } else {
                            StatusCode::OK
                        };
                        Outcome::Answer(status, error_message(Some(id), &error))
                    }
                }
            }
            (Some(Value::String(_)), None) => Outcome::Nothing,
            (Some(Value::String(_)), Some(_)) => invalid("a request id is a string or a number"),
            (Some(_), _) => invalid("a method is a string"),
            // A response: this server sends no requests, so it answers nothing.
            (None, Some(_)) if message.contains_key("result") || message.contains_key("error") => {
                Outcome::Nothing
            }
            (None, _) => invalid("a request or notification has a method"),
        }
    }

    async fn dispatch(
        &self,
        method: &str,
        params: Option<&Value>,
        era: Era,
    ) -> Result<Value, RpcError> {
        let server = self.server;
        let identity = server.identity();
        // Answered in either era: it is how a client finds out which one to speak.
        if method == "server/discover" {
            return Ok(modern::discover(identity, server.cache_ttl_ms()));
        }
        match (era, method) {
            (Era::Legacy, "initialize") => Ok(initialize(params, identity)),
            (Era::Legacy, "ping") => Ok(json!({})),
            (Era::Legacy, _) => server.handle(method, params, self.context).await,
            // No `initialize` and no `ping`: 2026-07-28 removed both.
            (Era::Modern, "initialize" | "ping") => Err(method_not_found(method)),
            (Era::Modern, _) => {
                let result = server.handle(method, params, self.context).await?;
                // A list may be kept by the client, for the caller it was given to.
                let result = if method.ends_with("/list") {
                    modern::cacheable(result, server.cache_ttl_ms())
                } else {
                    result
                };
                Ok(modern::complete(result, identity))
            }
        }
    }
}

/// The error for a method the server does not offer.
pub(crate) fn method_not_found(method: &str) -> RpcError {
    RpcError::new(
        METHOD_NOT_FOUND,
        format!("method not found: {}", crate::char_prefix(method, 100)),
    )
}

fn initialize(params: Option<&Value>, identity: &Identity) -> Value {
    let requested = params
        .and_then(|params| params.get("protocolVersion"))
        .and_then(Value::as_str);
    let version = requested
        .and_then(|requested| protocol::legacy().find(|version| *version == requested))
        .or_else(|| protocol::legacy().next())
        .unwrap_or_default();
    json!({
        "protocolVersion": version,
        "capabilities": identity.capabilities,
        "serverInfo": modern::server_info(identity),
    })
}

fn error_message(id: Option<&Value>, error: &RpcError) -> Value {
    let mut object = Map::new();
    object.insert("jsonrpc".to_owned(), json!("2.0"));
    object.insert("id".to_owned(), id.cloned().unwrap_or(Value::Null));
    let mut body = Map::new();
    body.insert("code".to_owned(), json!(error.code));
    body.insert("message".to_owned(), json!(error.message));
    if let Some(data) = &error.data {
        body.insert("data".to_owned(), data.clone());
    }
    object.insert("error".to_owned(), Value::Object(body));
    Value::Object(object)
}

fn json_response(status: StatusCode, body: &Value) -> Response<Body> {
    let mut response = Response::new(Body::from(body.to_string()));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// Only notifications and responses: accepted, nothing to say (Streamable HTTP).
fn accepted() -> Response<Body> {
    let mut response = Response::new(Body::empty());
    *response.status_mut() = StatusCode::ACCEPTED;
    response
}

/// GET and DELETE have no meaning without sessions and server-sent streams.
pub(crate) fn method_not_allowed() -> Response<Body> {
    let mut response = Response::new(Body::empty());
    *response.status_mut() = StatusCode::METHOD_NOT_ALLOWED;
    response
        .headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static("POST"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn graphql() -> Identity {
        super::super::tools_only("mcpgate-graphql")
    }

    #[test]
    fn initialize_echoes_a_known_version_and_offers_the_newest_otherwise() {
        for version in protocol::legacy() {
            let params = json!({"protocolVersion": version});
            assert_eq!(
                initialize(Some(&params), &graphql())["protocolVersion"],
                version
            );
        }
        for params in [
            json!({"protocolVersion": "2099-01-01"}),
            json!({}),
            json!({"protocolVersion": 1}),
        ] {
            assert_eq!(
                initialize(Some(&params), &graphql())["protocolVersion"],
                "2025-11-25"
            );
        }
        assert_eq!(
            initialize(None, &graphql())["protocolVersion"],
            "2025-11-25"
        );
    }

    #[test]
    fn initialize_offers_tools_only() {
        let result = initialize(None, &graphql());
        assert_eq!(
            result["capabilities"],
            json!({"tools": {"listChanged": false}})
        );
        assert_eq!(result["serverInfo"]["name"], "mcpgate-graphql");
        assert_eq!(result["serverInfo"]["version"], env!("CARGO_PKG_VERSION"));
    }

    #[test]
    fn an_error_without_an_id_has_a_null_one() {
        assert_eq!(
            error_message(None, &RpcError::invalid_params("x")),
            json!({"jsonrpc": "2.0", "id": null, "error": {"code": -32602, "message": "x"}})
        );
    }

    #[test]
    fn an_errors_data_goes_with_it() {
        let error = RpcError::new(-32022, "x").with_data(json!({"requested": "y"}));
        assert_eq!(
            error_message(Some(&json!(3)), &error),
            json!({"jsonrpc": "2.0", "id": 3, "error": {"code": -32022, "message": "x", "data": {"requested": "y"}}})
        );
    }
}
