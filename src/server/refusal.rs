//! Every way the MCP endpoint refuses a request before it reaches the upstream, or
//! fails it after (the upstream gave no answer, or one that must not be passed on),
//! and the one place each becomes a response, a log line, a metric and an audit
//! record. A new kind of refusal (a rate limit, a missing consent) is a variant here:
//! its status, challenge, body and audit reason are written once.

use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};
use serde_json::{Value, json};

use super::body::BodyRefusal;
use super::observe::Observation;
use super::session;
use crate::auth::AuthError;
use crate::edge::challenge::{ChallengeParams, bearer_challenge};
use crate::edge::json::{json_error, json_response};
use crate::edge::origin::ForbiddenOrigin;
use crate::limits::Limited;
use crate::mcp::envelope::EnvelopeError;
use crate::mcp::filter::Refusal as ListRefusal;
use crate::mcp::headers::MediaProblem;
use crate::policy::PolicyRefusal;
use crate::telemetry::metrics::metrics;
use crate::upstream::{ExchangeError, FailureKind, UpstreamError};

/// Why a request was not forwarded.
#[derive(Debug)]
pub enum Refusal {
    /// An `Origin` that is not allowed (403).
    Origin(ForbiddenOrigin),
    /// Credentials missing, malformed or not accepted, or not checkable now
    /// (401, 400, 429, 503).
    Auth(AuthError),
    /// An HTTP method other than POST, GET and DELETE (405).
    MethodNotAllowed,
    /// A session the caller does not own, or a store that cannot answer (404, 503).
    Session(session::Refusal),
    /// A body that is not plain JSON (415).
    Media(MediaProblem),
    /// A body too large, too slow or badly framed (413, 408, 400).
    Body(BodyRefusal),
    /// A body that is not one strict JSON-RPC reading consistent with its headers
    /// (400 with a JSON-RPC error).
    Envelope(EnvelopeError),
    /// The policy's decision (403). Boxed: it is the largest, and every check's
    /// `Result` carries the enum.
    Policy(Box<Denied>),
    /// The upstream gave no answer: unreachable, no credentials for it (502), or
    /// not within its timeout (504).
    Upstream {
        /// What went wrong with the upstream (logged; the client gets a generic text).
        error: UpstreamError,
        /// The request's id, for a JSON-RPC error the client can tie to its call.
        id: Option<Value>,
    },
    /// The caller's token could not be exchanged for the upstream's
    /// (`upstream.identity.exchange`): refused by the provider (401, 403), an API
    /// key or a token of mcpgate's own (403), the provider unavailable (503) or its
    /// answer unusable (502). Nothing was forwarded.
    Exchange {
        /// What failed; its text is the client's, its detail the log's and the
        /// record's. Boxed: a refusal by the provider carries its words.
        error: Box<ExchangeError>,
        /// The request's id, for a JSON-RPC error the client can tie to its call.
        id: Option<Value>,
    },
    /// A rate limit or the calls-in-flight limit (429, nothing forwarded). Boxed:
    /// it carries the limit.
    RateLimited(Box<Limited>),
    /// A tool call that needs the user's connection to a third-party service and
    /// cannot have it: the URL elicitation (200), or an error (403, 503). Boxed:
    /// rare and large.
    Connection(Box<crate::connections::ConnectionRefusal>),
    /// An upstream list answer that must not reach the client: unreadable, or not
    /// one mcpgate can cut to the caller (502).
    UnreadableList {
        /// Which rule the answer broke (the client's error names it).
        refusal: ListRefusal,
        /// What was wrong with it, for the log (never for the client).
        detail: String,
        /// The request's id, for a JSON-RPC error the client can tie to its call.
        id: Option<Value>,
    },
}

/// A policy refusal with what its answer and log need.
#[derive(Debug)]
pub struct Denied {
    pub(crate) refusal: PolicyRefusal,
    /// The request's id, for an answer the client can tie to its call.
    pub id: Option<Value>,
    /// Who was refused, for the log.
    pub subject: Option<String>,
}

impl Refusal {
    /// What the audit record's `reason` says (the description the client was given).
    pub fn reason(&self) -> String {
        match self {
            Self::Origin(origin) => origin.reason(),
            Self::Auth(error) => error.to_string(),
            Self::MethodNotAllowed => "method not allowed".to_owned(),
            Self::Session(refusal) => refusal.reason(),
            Self::Media(problem) => problem.to_string(),
            Self::Body(refusal) => refusal.reason(),
            Self::Envelope(error) => error.to_string(),
            Self::Policy(denied) => denied.refusal.description().to_owned(),
            Self::Upstream { error, .. } => error.to_string(),
            Self::Exchange { error, .. } => error.detail(),
            Self::RateLimited(limited) => limited.reason(),
            Self::UnreadableList { refusal, .. } => refusal.message().to_owned(),
            Self::Connection(refusal) => refusal.reason(),
        }
    }

    /// Logs the refusal, records it in the observation, and builds the answer.
    pub fn answer(self, challenge: &ChallengeParams, observation: &mut Observation) -> Response {
        self.log();
        match &self {
            Self::Auth(error) => observation.auth_failed(error),
            Self::Policy(denied) => match &denied.refusal {
                PolicyRefusal::Rule(denial) => observation.denied_by_rule(denial),
                _ => observation.refused(self.reason()),
            },
            // The record of a request the upstream did not answer has no reason: its
            // status says what happened.
            Self::Upstream { error, .. } => metrics().upstream_error(error.kind().label()),
            Self::UnreadableList { .. } => {
                metrics().upstream_error(FailureKind::Unreadable.label());
                observation.refused(self.reason());
            }
            Self::RateLimited(limited) => {
                metrics().rate_limited(limited.rule());
                observation.refused(self.reason());
            }
            _ => observation.refused(self.reason()),
        }
        self.response(challenge)
    }

    fn log(&self) {
        match self {
            // The first request of every OAuth flow has no token: not news.
            Self::Auth(AuthError::Missing) => {}
            Self::Auth(error) => {
                tracing::info!(reason = error.reason(), "request refused: {error}");
            }
            Self::Envelope(error) => {
                tracing::info!(code = error.code, "request refused: {error}");
            }
            Self::Policy(denied) => match &denied.refusal {
                PolicyRefusal::Rule(denial) => {
                    tracing::info!(rule = %denial.rule, "request refused: {}", denial.description);
                }
                refusal => tracing::info!(
                    subject = denied.subject.as_deref().unwrap_or("-"),
                    "request refused: {}",
                    refusal.description()
                ),
            },
            Self::Upstream { error, .. } => {
                tracing::warn!(
                    status = upstream_status(error).as_u16(),
                    "{}",
                    error.detail()
                );
            }
            Self::UnreadableList { detail, .. } => {
                tracing::warn!(status = 502, "upstream list answer refused: {detail}");
            }
            Self::RateLimited(limited) => {
                tracing::info!(
                    rule = limited.rule(),
                    "request refused: {}",
                    limited.description()
                );
            }
            Self::Exchange { error, .. } => {
                let status = error.status().as_u16();
                if error.status().is_server_error() {
                    tracing::warn!(status, "token exchange failed: {}", error.detail());
                } else {
                    tracing::info!(status, "request refused: {}", error.detail());
                }
            }
            Self::Connection(refusal) => match refusal.detail() {
                Some(detail) => tracing::warn!("request refused: {}: {detail}", refusal.reason()),
                None => tracing::info!("request refused: {}", refusal.reason()),
            },
            _ => tracing::info!("request refused: {}", self.reason()),
        }
    }

    /// The response: status, challenge where one applies, and body.
    pub fn response(&self, challenge: &ChallengeParams) -> Response {
        match self {
            Self::Origin(origin) => origin.response(),
            Self::Auth(error) => challenge.auth_failure(error),
            Self::MethodNotAllowed => {
                let mut response = StatusCode::METHOD_NOT_ALLOWED.into_response();
                response
                    .headers_mut()
                    .insert(header::ALLOW, HeaderValue::from_static("GET, POST, DELETE"));
                response
            }
            Self::Session(refusal) => refusal.response(),
            Self::Media(problem) => json_error(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                &problem.to_string(),
            ),
            Self::Body(refusal) => refusal.response(),
            Self::Envelope(error) => json_response(StatusCode::BAD_REQUEST, &error.to_response()),
            Self::Policy(denied) => challenge.policy_refusal(&denied.refusal, denied.id.as_ref()),
            Self::Upstream { error, id } => {
                let message = error.to_string();
                let body = match id {
                    Some(id) => json!({
                        "jsonrpc": "2.0",
                        "id": id,
                        "error": {"code": -32000, "message": message},
                    }),
                    None => json!({"error": "upstream_error", "error_description": message}),
                };
                json_response(upstream_status(error), &body)
            }
            Self::Exchange { error, id } => exchange_failure(challenge, error, id.as_ref()),
            Self::RateLimited(limited) => limited.response(),
            Self::Connection(refusal) => {
                let (status, body) = refusal.answer();
                json_response(status, &body)
            }
            Self::UnreadableList { refusal, id, .. } => {
                let body = match id {
                    Some(id) => refusal.error(Some(id)),
                    None => json!({
                        "error": "upstream_error",
                        "error_description": refusal.message(),
                    }),
                };
                json_response(StatusCode::BAD_GATEWAY, &body)
            }
        }
    }
}

/// A failed exchange: a JSON-RPC error for a request with an id, else an OAuth-style
/// JSON error; a challenge on a 401 (the client should get a new token), and a
/// `Retry-After` on a 503.
fn exchange_failure(
    challenge: &ChallengeParams,
    error: &ExchangeError,
    id: Option<&Value>,
) -> Response {
    let status = error.status();
    let message = error.to_string();
    let code = match status {
        StatusCode::UNAUTHORIZED => "invalid_token",
        StatusCode::FORBIDDEN => "access_denied",
        StatusCode::SERVICE_UNAVAILABLE => "temporarily_unavailable",
        _ => "upstream_error",
    };
    let body = match id {
        Some(id) => json!({
            "jsonrpc": "2.0",
            "id": id,
            "error": {"code": -32000, "message": message, "data": {"error": code}},
        }),
        None => json!({"error": code, "error_description": message}),
    };
    let mut response = json_response(status, &body);
    let headers = response.headers_mut();
    if status == StatusCode::UNAUTHORIZED {
        let mut params = vec![
            ("realm", crate::edge::challenge::REALM.to_owned()),
            ("error", "invalid_token".to_owned()),
            ("error_description", message),
        ];
        if let Some(url) = &challenge.resource_metadata {
            params.push(("resource_metadata", url.clone()));
        }
        headers.insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_str(&bearer_challenge(&params))
                .unwrap_or_else(|_| HeaderValue::from_static("Bearer")),
        );
    }
    if status == StatusCode::SERVICE_UNAVAILABLE {
        headers.insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
    }
    response
}

/// 504 when the upstream did not answer in time, else 502.
fn upstream_status(error: &UpstreamError) -> StatusCode {
    match error {
        UpstreamError::Unreachable(_) | UpstreamError::Credentials(_) => StatusCode::BAD_GATEWAY,
        UpstreamError::Timeout(_) => StatusCode::GATEWAY_TIMEOUT,
    }
}

impl From<AuthError> for Refusal {
    fn from(error: AuthError) -> Self {
        Self::Auth(error)
    }
}

impl From<EnvelopeError> for Refusal {
    fn from(error: EnvelopeError) -> Self {
        Self::Envelope(error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{Denial, RuleDenial, RuleList};

    fn params() -> ChallengeParams {
        ChallengeParams {
            resource_metadata: Some("https://mcp.example.com/.well-known/x".into()),
            connect_scopes: vec!["mcp:connect".into()],
            echo_token_scopes: false,
        }
    }

    fn policy(refusal: PolicyRefusal, id: Option<Value>) -> Refusal {
        Refusal::Policy(Box::new(Denied {
            refusal,
            id,
            subject: None,
        }))
    }

    fn status_and_challenge(refusal: &Refusal) -> (u16, Option<String>) {
        let response = refusal.response(&params());
        let challenge = response
            .headers()
            .get(header::WWW_AUTHENTICATE)
            .map(|value| value.to_str().unwrap().to_owned());
        (response.status().as_u16(), challenge)
    }

    #[test]
    fn each_refusal_has_its_status_and_challenge() {
        let (status, challenge) = status_and_challenge(&Refusal::Auth(AuthError::Missing));
        assert_eq!(status, 401);
        assert!(
            challenge
                .unwrap()
                .starts_with("Bearer realm=\"mcp\", scope=\"mcp:connect\"")
        );
        assert_eq!(
            status_and_challenge(&Refusal::MethodNotAllowed),
            (405, None)
        );
        assert_eq!(
            status_and_challenge(&Refusal::Media(MediaProblem::NotJson)),
            (415, None)
        );
        assert_eq!(
            status_and_challenge(&Refusal::Body(BodyRefusal::TooLarge(10))),
            (413, None)
        );
        let scopes = policy(
            PolicyRefusal::Scopes(Denial {
                challenge_scopes: vec!["mcp:admin".into()],
                description: "insufficient scopes for tool get-env".into(),
            }),
            None,
        );
        let (status, challenge) = status_and_challenge(&scopes);
        assert_eq!(status, 403);
        assert!(
            challenge
                .unwrap()
                .contains("error=\"insufficient_scope\", scope=\"mcp:admin\"")
        );
        assert_eq!(scopes.reason(), "insufficient scopes for tool get-env");
        let rule = policy(
            PolicyRefusal::Rule(RuleDenial {
                rule: "no-db".into(),
                list: RuleList::Deny,
                key: "deny_tools",
                description: "tool db_x refused by rule no-db (deny_tools)".into(),
            }),
            Some(serde_json::json!(4)),
        );
        let (status, challenge) = status_and_challenge(&rule);
        assert_eq!(status, 403);
        assert!(challenge.unwrap().contains("error=\"access_denied\""));
        let unsatisfiable = policy(PolicyRefusal::Unsatisfiable("too many".into()), None);
        let (status, challenge) = status_and_challenge(&unsatisfiable);
        assert_eq!(status, 403);
        assert!(!challenge.unwrap().contains("scope="));
    }

    async fn body_of(response: Response) -> Value {
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        serde_json::from_slice(&bytes).unwrap()
    }

    #[tokio::test]
    async fn upstream_failures_answer_for_the_request_id_or_in_plain_json() {
        let timeout = Refusal::Upstream {
            error: UpstreamError::Timeout(std::time::Duration::from_secs(30)),
            id: Some(serde_json::json!(7)),
        };
        assert_eq!(status_and_challenge(&timeout), (504, None));
        assert_eq!(
            body_of(timeout.response(&params())).await,
            serde_json::json!({
                "jsonrpc": "2.0",
                "id": 7,
                "error": {"code": -32000, "message": "upstream did not answer within 30s"},
            })
        );
        let unreachable = Refusal::Upstream {
            error: UpstreamError::Unreachable("connection refused (10.0.0.1:80)".into()),
            id: None,
        };
        assert_eq!(status_and_challenge(&unreachable), (502, None));
        let body = body_of(unreachable.response(&params())).await;
        assert_eq!(
            body,
            serde_json::json!({"error": "upstream_error", "error_description": "upstream unreachable"})
        );
        let credentials = Refusal::Upstream {
            error: UpstreamError::Credentials("token endpoint down".into()),
            id: None,
        };
        assert_eq!(status_and_challenge(&credentials), (502, None));
    }

    #[tokio::test]
    async fn an_unreadable_list_is_a_502_that_never_shows_the_detail() {
        let with_id = Refusal::UnreadableList {
            refusal: ListRefusal::NotJson,
            detail: "secret detail".into(),
            id: Some(serde_json::json!("a")),
        };
        assert_eq!(status_and_challenge(&with_id), (502, None));
        assert_eq!(with_id.reason(), ListRefusal::NotJson.message());
        let body = body_of(with_id.response(&params())).await;
        assert_eq!(
            body,
            ListRefusal::NotJson.error(Some(&serde_json::json!("a")))
        );
        let without = Refusal::UnreadableList {
            refusal: ListRefusal::Encoded,
            detail: "content encoding gzip".into(),
            id: None,
        };
        let body = body_of(without.response(&params())).await;
        assert_eq!(
            body,
            serde_json::json!({
                "error": "upstream_error",
                "error_description": ListRefusal::Encoded.message(),
            })
        );
        assert!(!body.to_string().contains("gzip"));
    }
}
