//! A request a limit refused: 429, with `Retry-After` and the `RateLimit` headers,
//! and a JSON-RPC error for the request's id when its body was read (else the
//! plain JSON error mcpgate's other pre-authentication 429s give).

use std::time::Duration;

use axum::response::Response;
use http::{HeaderValue, StatusCode, header};
use serde_json::{Value, json};

use super::headers;
use super::rules::{CONCURRENCY, Limit, ceil_seconds};
use crate::edge::json::json_response;

/// Which limit was exceeded.
#[derive(Debug, Clone)]
pub enum Exceeded {
    /// A rate limit: one request more fits after `retry_after`.
    Rate {
        /// The limit (its name, rate and burst).
        limit: Limit,
        /// When the request would fit.
        retry_after: Duration,
    },
    /// The principal already has `limit` calls in flight.
    Concurrency {
        /// `limits.concurrency.per_principal`.
        limit: u32,
    },
}

/// A refused request with what its answer needs.
#[derive(Debug, Clone)]
pub struct Limited {
    /// What was exceeded.
    pub exceeded: Exceeded,
    /// `Some` when the body was read: the JSON-RPC id to answer (`Value::Null` for
    /// a notification or a batch).
    pub id: Option<Value>,
}

impl Limited {
    /// The limit's name.
    pub fn rule(&self) -> &str {
        match &self.exceeded {
            Exceeded::Rate { limit, .. } => &limit.name,
            Exceeded::Concurrency { .. } => CONCURRENCY,
        }
    }

    /// What the client is told (and the log says).
    pub fn description(&self) -> String {
        match &self.exceeded {
            Exceeded::Rate { limit, retry_after } => format!(
                "rate limit {} exceeded ({}); retry in {}s",
                limit.name,
                limit.rate,
                ceil_seconds(*retry_after).max(1)
            ),
            Exceeded::Concurrency { limit } => {
                format!("too many calls in flight (at most {limit} at once)")
            }
        }
    }

    /// The audit record's reason: `rate_limited: <rule>`.
    pub fn reason(&self) -> String {
        format!("rate_limited: {}", self.rule())
    }

    /// The 429.
    pub fn response(&self) -> Response {
        let description = self.description();
        let body = match &self.id {
            Some(id) => json!({
                "jsonrpc": "2.0",
                "id": id,
                "error": {
                    "code": -32000,
                    "message": description,
                    "data": {"rule": self.rule()},
                },
            }),
            None => json!({"error": "rate_limited", "error_description": description}),
        };
        let mut response = json_response(StatusCode::TOO_MANY_REQUESTS, &body);
        match &self.exceeded {
            Exceeded::Rate { limit, retry_after } => {
                headers::refused(response.headers_mut(), limit, *retry_after);
            }
            // A call ends when it ends: a second is a guess, not a promise.
            Exceeded::Concurrency { .. } => {
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::rate::Rate;

    fn limit() -> Limit {
        let config = crate::config::load_from_str(
            "limits:\n  rules:\n    - { name: per-ip, key: ip, rate: 30/min, burst: 3 }\n",
        )
        .unwrap();
        let rules = crate::limits::LimitRules::from_config(&config).unwrap();
        let caller = crate::limits::Caller {
            principal: None,
            ip: "198.51.100.7".parse().unwrap(),
        };
        rules.for_stream(caller).limits.remove(0).clone()
    }

    async fn body(response: Response) -> Value {
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 16)
            .await
            .unwrap();
        serde_json::from_slice(&bytes).unwrap()
    }

    #[tokio::test]
    async fn a_rate_refusal_is_a_429_with_its_headers_and_the_request_id() {
        let limited = Limited {
            exceeded: Exceeded::Rate {
                limit: limit(),
                retry_after: Duration::from_millis(1_200),
            },
            id: Some(json!("call-9")),
        };
        assert_eq!(limited.reason(), "rate_limited: per-ip");
        assert_eq!(limit().rate, Rate::parse("30/min").unwrap());
        let response = limited.response();
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        let headers = response.headers();
        assert_eq!(headers["retry-after"], "2");
        assert_eq!(headers["ratelimit-policy"], "\"per-ip\";q=30;w=60");
        assert_eq!(headers["ratelimit"], "\"per-ip\";r=0;t=2");
        assert_eq!(
            body(response).await,
            json!({
                "jsonrpc": "2.0",
                "id": "call-9",
                "error": {
                    "code": -32000,
                    "message": "rate limit per-ip exceeded (30/min); retry in 2s",
                    "data": {"rule": "per-ip"},
                },
            })
        );
    }

    #[tokio::test]
    async fn before_the_body_is_read_the_answer_is_a_plain_json_error() {
        let limited = Limited {
            exceeded: Exceeded::Rate {
                limit: limit(),
                retry_after: Duration::from_millis(10),
            },
            id: None,
        };
        let response = limited.response();
        // Never 0: a client told to wait 0 s would come straight back.
        assert_eq!(response.headers()["retry-after"], "1");
        assert_eq!(body(response).await["error"], "rate_limited");
        let concurrency = Limited {
            exceeded: Exceeded::Concurrency { limit: 4 },
            id: Some(Value::Null),
        };
        assert_eq!(concurrency.reason(), "rate_limited: concurrency");
        let response = concurrency.response();
        assert!(response.headers().get("ratelimit").is_none());
        let answer = body(response).await;
        assert_eq!(answer["id"], Value::Null);
        assert_eq!(answer["error"]["data"]["rule"], "concurrency");
    }
}
