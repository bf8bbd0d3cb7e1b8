//! `WWW-Authenticate` challenges (RFC 6750 §3, RFC 9728 §5.1) and the one place where
//! authentication and authorization failures become responses (DESIGN §2).

use axum::body::Body;
use axum::response::Response;
use http::{HeaderValue, StatusCode, header};

use serde_json::{Value, json};

use crate::auth::AuthError;
use crate::policy::{Denial, PolicyRefusal, RuleDenial};

/// The realm every challenge names.
pub const REALM: &str = "mcp";

/// What every challenge carries, fixed per configuration.
#[derive(Debug, Clone)]
pub struct ChallengeParams {
    /// `None` with API keys only (no OAuth, so no RFC 9728 document).
    pub resource_metadata: Option<String>,
    /// Scopes every request needs, named by 401s.
    pub connect_scopes: Vec<String>,
    pub(crate) echo_token_scopes: bool,
}

impl ChallengeParams {
    /// 401 for no credentials, 401 `invalid_token`, 400 `invalid_request`, or 503
    /// when tokens cannot be judged right now (no challenge: the client did nothing wrong).
    pub fn auth_failure(&self, error: &AuthError) -> Response {
        if matches!(error, AuthError::TooManyAttempts) {
            let mut response = super::json::json_error(
                StatusCode::TOO_MANY_REQUESTS,
                "too_many_attempts",
                "too many failed API-key attempts; try again later",
            );
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("60"));
            return response;
        }
        if let AuthError::Unavailable(why) = error {
            let mut response = super::json::json_error(
                StatusCode::SERVICE_UNAVAILABLE,
                "temporarily_unavailable",
                &why.to_string(),
            );
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
            return response;
        }
        let scope = self.connect_scopes.join(" ");
        let mut params: Vec<(&str, String)> = vec![("realm", REALM.to_owned())];
        let status = match error {
            AuthError::Missing => StatusCode::UNAUTHORIZED,
            AuthError::InvalidToken(problem) => {
                params.push(("error", "invalid_token".to_owned()));
                params.push(("error_description", problem.to_string()));
                StatusCode::UNAUTHORIZED
            }
            AuthError::InvalidRequest(problem) => {
                params.push(("error", "invalid_request".to_owned()));
                params.push(("error_description", problem.to_string()));
                StatusCode::BAD_REQUEST
            }
            AuthError::Unavailable(_) | AuthError::TooManyAttempts => {
                StatusCode::SERVICE_UNAVAILABLE
            }
        };
        if !scope.is_empty() {
            params.push(("scope", scope));
        }
        if let Some(url) = &self.resource_metadata {
            params.push(("resource_metadata", url.clone()));
        }
        challenge_response(status, &params)
    }

    /// 403 `insufficient_scope` naming the scopes to ask for.
    pub fn insufficient_scope(&self, denial: &Denial) -> Response {
        let mut params = vec![
            ("error", "insufficient_scope".to_owned()),
            ("scope", denial.challenge_scopes.join(" ")),
        ];
        if let Some(url) = &self.resource_metadata {
            params.push(("resource_metadata", url.clone()));
        }
        params.push(("error_description", denial.description.clone()));
        challenge_response(StatusCode::FORBIDDEN, &params)
    }

    /// 403 for a request no scope could make acceptable (an `execute_graphql` query
    /// whose requirement exceeds `max_scope_combinations`). The challenge carries
    /// no `insufficient_scope` and no `scope`: either would send a client asking
    /// for scopes that cannot help. The reason is in `error_description` and in
    /// the JSON body.
    pub fn unsatisfiable(&self, description: &str) -> Response {
        let mut params = vec![("realm", REALM.to_owned())];
        if let Some(url) = &self.resource_metadata {
            params.push(("resource_metadata", url.clone()));
        }
        params.push(("error_description", description.to_owned()));
        let mut response =
            super::json::json_error(StatusCode::FORBIDDEN, "query_too_complex", description);
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_str(&bearer_challenge(&params))
                .unwrap_or_else(|_| HeaderValue::from_static("Bearer")),
        );
        response
    }
}

impl ChallengeParams {
    /// The 403 for a policy refusal; `id` is the request's, for a rule's JSON-RPC
    /// error. The endpoint and `mcpgate explain` both answer with this.
    pub fn policy_refusal(&self, refusal: &PolicyRefusal, id: Option<&Value>) -> Response {
        match refusal {
            PolicyRefusal::Scopes(denial) => self.insufficient_scope(denial),
            PolicyRefusal::Unsatisfiable(description) => self.unsatisfiable(description),
            PolicyRefusal::Rule(denial) => self.rule_denied(denial, id),
        }
    }

    /// 403 for an item a `rules:` entry takes from the caller. No
    /// `insufficient_scope` and no `scope`: the caller's scopes already pass, and no
    /// scope would lift the rule. `error="access_denied"` (RFC 6749 §4.1.2.1's word
    /// for a refusal by policy) and the `error_description` naming the rule are in
    /// the challenge and in the body: a JSON-RPC error when the request had an id (as
    /// the gateway answers a call it cannot complete), else a plain JSON error.
    pub fn rule_denied(&self, denial: &RuleDenial, id: Option<&Value>) -> Response {
        let mut params = vec![
            ("realm", REALM.to_owned()),
            ("error", ACCESS_DENIED.to_owned()),
        ];
        if let Some(url) = &self.resource_metadata {
            params.push(("resource_metadata", url.clone()));
        }
        params.push(("error_description", denial.description.clone()));
        let body = match id {
            Some(id) => json!({
                "jsonrpc": "2.0",
                "id": id,
                "error": {
                    "code": -32000,
                    "message": denial.description,
                    "data": {"error": ACCESS_DENIED, "rule": denial.rule},
                },
            }),
            None => json!({
                "error": ACCESS_DENIED,
                "error_description": denial.description,
                "rule": denial.rule,
            }),
        };
        let mut response = super::json::json_response(StatusCode::FORBIDDEN, &body);
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_str(&bearer_challenge(&params))
                .unwrap_or_else(|_| HeaderValue::from_static("Bearer")),
        );
        response
    }
}

/// The `error` of a rule denial.
pub const ACCESS_DENIED: &str = "access_denied";

fn challenge_response(status: StatusCode, params: &[(&str, String)]) -> Response {
    let value = bearer_challenge(params);
    let mut response = Response::new(Body::empty());
    *response.status_mut() = status;
    // `bearer_challenge` emits visible ASCII only, so this cannot fail; fall back to
    // the bare scheme rather than panic if it ever did.
    let header_value =
        HeaderValue::from_str(&value).unwrap_or_else(|_| HeaderValue::from_static("Bearer"));
    response
        .headers_mut()
        .insert(header::WWW_AUTHENTICATE, header_value);
    response
}

/// `Bearer k="v", k2="v2"` with every value a quoted-string (RFC 9110 §5.6.4).
pub fn bearer_challenge(params: &[(&str, String)]) -> String {
    let mut out = String::from("Bearer ");
    for (index, (name, value)) in params.iter().enumerate() {
        if index > 0 {
            out.push_str(", ");
        }
        out.push_str(name);
        out.push_str("=\"");
        push_quoted(&mut out, value);
        out.push('"');
    }
    out
}

/// Escapes `"` and `\`; drops control characters and non-ASCII so no header value can
/// carry a raw newline.
fn push_quoted(out: &mut String, value: &str) {
    for ch in value.chars() {
        match ch {
            '"' | '\\' => {
                out.push('\\');
                out.push(ch);
            }
            ' '..='~' => out.push(ch),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::{RequestProblem, TokenProblem};

    fn params(scopes: &[&str]) -> ChallengeParams {
        ChallengeParams {
            resource_metadata: Some(
                "https://mcp.example.com/.well-known/oauth-protected-resource/mcp".into(),
            ),
            connect_scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
            echo_token_scopes: false,
        }
    }

    fn header_of(response: &Response) -> &str {
        response.headers()[header::WWW_AUTHENTICATE]
            .to_str()
            .unwrap()
    }

    #[test]
    fn rfc6750_3_1_no_credentials_has_no_error_code() {
        let response = params(&["mcp:connect"]).auth_failure(&AuthError::Missing);
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(
            header_of(&response),
            "Bearer realm=\"mcp\", scope=\"mcp:connect\", resource_metadata=\"https://mcp.example.com/.well-known/oauth-protected-resource/mcp\""
        );
    }

    #[test]
    fn scope_is_omitted_when_none_is_configured() {
        let response = params(&[]).auth_failure(&AuthError::Missing);
        assert_eq!(
            header_of(&response),
            "Bearer realm=\"mcp\", resource_metadata=\"https://mcp.example.com/.well-known/oauth-protected-resource/mcp\""
        );
    }

    #[test]
    fn rfc6750_3_1_invalid_token_and_invalid_request() {
        let response =
            params(&["a", "b"]).auth_failure(&AuthError::InvalidToken(TokenProblem::Expired));
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(
            header_of(&response),
            "Bearer realm=\"mcp\", error=\"invalid_token\", error_description=\"token has expired\", scope=\"a b\", resource_metadata=\"https://mcp.example.com/.well-known/oauth-protected-resource/mcp\""
        );
        let response = params(&[]).auth_failure(&AuthError::InvalidRequest(
            RequestProblem::DuplicateAuthorization,
        ));
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        assert!(header_of(&response).starts_with(
            "Bearer realm=\"mcp\", error=\"invalid_request\", error_description=\"more than one Authorization header\""
        ));
    }

    #[test]
    fn rfc6750_3_insufficient_scope_has_the_design_shape() {
        let denial = Denial {
            challenge_scopes: vec!["mcp:tools:execute".into()],
            description: "missing required scopes: mcp:tools:execute".into(),
        };
        let response = params(&[]).insufficient_scope(&denial);
        assert_eq!(response.status(), StatusCode::FORBIDDEN);
        assert_eq!(
            header_of(&response),
            "Bearer error=\"insufficient_scope\", scope=\"mcp:tools:execute\", resource_metadata=\"https://mcp.example.com/.well-known/oauth-protected-resource/mcp\", error_description=\"missing required scopes: mcp:tools:execute\""
        );
    }

    #[test]
    fn a_request_no_scope_can_fix_gets_no_step_up_challenge() {
        let response = params(&[])
            .unsatisfiable("the query needs 16 scope combinations, more than the limit of 8");
        assert_eq!(response.status(), StatusCode::FORBIDDEN);
        assert_eq!(
            header_of(&response),
            "Bearer realm=\"mcp\", resource_metadata=\"https://mcp.example.com/.well-known/oauth-protected-resource/mcp\", error_description=\"the query needs 16 scope combinations, more than the limit of 8\""
        );
        assert_eq!(response.headers()[header::CONTENT_TYPE], "application/json");
    }

    #[test]
    fn a_rule_denial_names_the_rule_and_asks_for_no_scope() {
        let denial = RuleDenial {
            rule: "contractors".into(),
            list: crate::policy::RuleList::Deny,
            key: "deny_tools",
            description: "tool delete_all refused by rule contractors (deny_tools)".into(),
        };
        let response = params(&["mcp:connect"]).rule_denied(&denial, Some(&json!(7)));
        assert_eq!(response.status(), StatusCode::FORBIDDEN);
        assert_eq!(
            header_of(&response),
            "Bearer realm=\"mcp\", error=\"access_denied\", resource_metadata=\"https://mcp.example.com/.well-known/oauth-protected-resource/mcp\", error_description=\"tool delete_all refused by rule contractors (deny_tools)\""
        );
        assert_eq!(response.headers()[header::CONTENT_TYPE], "application/json");
    }

    #[test]
    fn quoted_values_escape_and_never_carry_newlines() {
        let value = bearer_challenge(&[(
            "error_description",
            "a \"b\" \\ c\r\nInjected: x".to_owned(),
        )]);
        assert_eq!(
            value,
            "Bearer error_description=\"a \\\"b\\\" \\\\ cInjected: x\""
        );
    }
}
