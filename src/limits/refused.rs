//! A request a limit refused: 429, with `Retry-After` and the `RateLimit` headers,
//! and a JSON-RPC error for the request's id when its body was read (else the
//! plain JSON error mcpgate's other pre-authentication 429s give).

use std::time::Duration;

use axum::response::Response;
use http::{HeaderValue, StatusCode, header};
use serde_json::{Value, json};

use super::headers;
use super::rules::{Limit, ceil_seconds};
use crate::edge::json::json_response;

/// The name calls in flight are refused under (metric, audit reason).
pub const CONCURRENCY: &str = "concurrency";

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
                "rate limit {} exceeded ({}/{}s); retry in {}s",
                limit.name,
                limit.rate.count,
                limit.rate.period.as_secs(),
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
