//! `mcpgate explain` and the admin listener's `POST /explain`: why would this token
//! be allowed or refused this request? The token is verified by the gateway's own
//! authenticator and the request decided by the gateway's own policy, in the order
//! the MCP endpoint decides (credentials, scopes, `rules:`), so the answer is the
//! one a real request gets, with the same reason its audit record carries. The
//! token itself is never part of the answer (only its fingerprint, as in the audit
//! log).

use std::fmt;

use http::{HeaderMap, HeaderValue, header};
use serde::Serialize;
use serde_json::{Map, Value, json};

use crate::audit::Record;
use crate::auth::bearer::{self, Credential};
use crate::auth::{AuthError, Principal, RequestProblem};
use crate::gateway::Gateway;
use crate::limits::{Asked, Caller as LimitCaller};
use crate::mcp::envelope;
use crate::policy::{self, AppliedRequirement, Item, PolicyRefusal, Target};
use crate::upstream::graphql::Builtin;

/// What to explain: a method, and the item it acts on. With neither, the
/// connection itself (what every request needs).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Question {
    /// A JSON-RPC method; default: `tools/call` with a tool, `resources/read` with a
    /// resource, `prompts/get` with a prompt.
    pub method: Option<String>,
    /// A tool name, as `tools/call` would send it.
    pub tool: Option<String>,
    /// A resource URI, as `resources/read` would send it.
    pub resource: Option<String>,
    /// A prompt name, as `prompts/get` would send it.
    pub prompt: Option<String>,
}

/// The question cannot be asked as given.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExplainError {
    /// More than one of tool, resource and prompt was given.
    #[error("give at most one of --tool, --resource and --prompt")]
    SeveralItems,
    /// The message would be refused before policy (bad JSON-RPC, or a look-alike name);
    /// why.
    #[error("not a request the gateway would accept: {0}")]
    Request(String),
}

/// How it ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    /// The request would be forwarded.
    Allowed,
    /// The token is not accepted (invalid, expired, unknown key; or it cannot be
    /// verified right now).
    RefusedToken,
    /// Scopes are missing: a step-up challenge.
    RefusedScopes,
    /// A `rules:` entry takes the item from this caller.
    RefusedRule,
    /// No scope could make the request acceptable (an `execute_graphql` query whose
    /// requirement exceeds `max_scope_combinations`).
    RefusedUnsatisfiable,
}

impl Decision {
    /// `mcpgate explain`'s exit code: 0 allowed, 1 refused by policy (scopes or a
    /// rule), 3 token not accepted.
    pub fn exit_code(self) -> u8 {
        match self {
            Self::Allowed => 0,
            Self::RefusedScopes | Self::RefusedRule | Self::RefusedUnsatisfiable => 1,
            Self::RefusedToken => 3,
        }
    }
}

/// The answer.
#[derive(Debug, Clone, Serialize)]
pub struct Explanation {
    pub(crate) request: RequestView,
    /// As in the audit log: the first 16 hex digits of the token's SHA-256.
    pub token_fingerprint: String,
    /// Null when the token is not accepted or authentication is off.
    pub principal: Option<PrincipalView>,
    /// Every scope requirement that applies (null when the token is not accepted).
    pub requirements: Option<Vec<AppliedRequirement>>,
    /// The `rules:` entries whose `when` holds for the caller.
    pub rules_matched: Option<Vec<String>>,
    /// The `limits.rules` that would count this request for this caller (null when
    /// the token is not accepted).
    pub limits: Option<Vec<LimitView>>,
    /// How the request would end.
    pub decision: Decision,
    /// The audit record's `action`, `status`, `auth_result`, `reason` and
    /// `denied_by_rule` for the same request.
    pub action: &'static str,
    pub(crate) status: u16,
    /// `ok`, `disabled`, or the refused credential's reason code (`expired`, …).
    pub auth_result: String,
    /// Why the request was refused, as the audit log's `reason`; `None` when allowed.
    pub reason: Option<String>,
    pub(crate) denied_by_rule: Option<String>,
    /// The `WWW-Authenticate` the client would get.
    pub challenge: Option<String>,
    /// What this answer cannot tell.
    pub notes: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct RequestView {
    /// Null for the connection alone.
    pub method: Option<String>,
    pub(crate) tool: Option<String>,
    pub(crate) resource: Option<String>,
    pub(crate) prompt: Option<String>,
}

/// A rate limit that counts the request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LimitView {
    /// The rule's name.
    pub name: String,
    /// What it counts separately (`subject`, `tool`, …).
    pub key: Vec<&'static str>,
    /// `100/min`.
    pub rate: String,
    /// Requests that may come at once.
    pub burst: u32,
}

/// Who the token says the caller is, as the gateway would see it.
#[derive(Debug, Clone, Serialize)]
pub struct PrincipalView {
    /// `jwt`, `introspection` or `api_key`.
    pub auth_method: &'static str,
    pub(crate) issuer: Option<String>,
    pub(crate) subject: Option<String>,
    pub(crate) client_id: Option<String>,
    pub(crate) api_key_id: Option<String>,
    /// The JWT's `kid`.
    pub key_id: Option<String>,
    /// RFC 3339.
    pub expires_at: Option<String>,
    /// An API key configured with `*`: every scope.
    pub all_scopes: bool,
    pub(crate) scopes: Vec<ScopeView>,
}

/// One granted scope and where it came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ScopeView {
    pub(crate) scope: String,
    /// `token` (the token's own), `claim` (mapped by `claim_scopes`) or `api_key`.
    pub source: &'static str,
    pub(crate) claim: Option<String>,
    pub(crate) value: Option<String>,
}

impl PrincipalView {
    fn new(principal: &Principal) -> Self {
        let mapped = principal.scopes.mapped();
        let own_source = match principal.method {
            crate::auth::AuthMethod::ApiKey => "api_key",
            _ => "token",
        };
        let scopes = principal
            .scopes
            .iter()
            .map(
                |scope| match mapped.iter().find(|entry| entry.scope == scope) {
                    Some(entry) => ScopeView {
                        scope: scope.to_owned(),
                        source: "claim",
                        claim: Some(entry.claim.to_string()),
                        value: Some(entry.value.clone()),
                    },
                    None => ScopeView {
                        scope: scope.to_owned(),
                        source: own_source,
                        claim: None,
                        value: None,
                    },
                },
            )
            .collect();
        Self {
            auth_method: principal.method.as_str(),
            issuer: principal.issuer.clone(),
            subject: principal.subject.clone(),
            client_id: principal.client_id.clone(),
            api_key_id: principal.api_key_id.clone(),
            key_id: principal.key_id.clone(),
            expires_at: principal
                .expires_at
                .map(|at| humantime::format_rfc3339_seconds(at).to_string()),
            all_scopes: principal.scopes.is_all(),
            scopes,
        }
    }
}

/// The JSON-RPC message the question stands for (`None`: the connection alone).
fn message(question: &Question) -> Result<Option<Value>, ExplainError> {
    let items = [&question.tool, &question.resource, &question.prompt];
    if items.iter().filter(|item| item.is_some()).count() > 1 {
        return Err(ExplainError::SeveralItems);
    }
    let method = match (
        &question.method,
        &question.tool,
        &question.resource,
        &question.prompt,
    ) {
        (Some(method), ..) => method.clone(),
        (None, Some(_), _, _) => "tools/call".to_owned(),
        (None, _, Some(_), _) => "resources/read".to_owned(),
        (None, _, _, Some(_)) => "prompts/get".to_owned(),
        (None, None, None, None) => return Ok(None),
    };
    let mut params = Map::new();
    if let Some(tool) = &question.tool {
        params.insert("name".into(), json!(tool));
        params.insert("arguments".into(), json!({}));
    }
    if method == "completion/complete" {
        let reference = match (&question.prompt, &question.resource) {
            (Some(prompt), _) => json!({"type": "ref/prompt", "name": prompt}),
            (None, Some(uri)) => json!({"type": "ref/resource", "uri": uri}),
            (None, None) => json!({}),
        };
        params.insert("ref".into(), reference);
        params.insert("argument".into(), json!({"name": "x", "value": ""}));
    } else {
        if let Some(uri) = &question.resource {
            params.insert("uri".into(), json!(uri));
        }
        if let Some(prompt) = &question.prompt {
            params.insert("name".into(), json!(prompt));
        }
    }
    let mut message = json!({"jsonrpc": "2.0", "id": 1, "method": method});
    if let Some(object) = message.as_object_mut().filter(|_| !params.is_empty()) {
        object.insert("params".into(), Value::Object(params));
    }
    Ok(Some(message))
}

/// Decides `question` for `token` as the gateway would.
pub async fn explain(
    gateway: &Gateway,
    token: &str,
    question: &Question,
) -> Result<Explanation, ExplainError> {
    let message = message(question)?;
    // Read by the endpoint's own parser, so that a name it would refuse (or read
    // differently) is refused here too.
    let parsed = match &message {
        Some(message) => Some(
            envelope::parse(
                message.to_string().as_bytes(),
                crate::mcp::version::ProtocolVersion::WITHOUT_HEADER,
            )
            .map_err(|error| ExplainError::Request(error.to_string()))?,
        ),
        None => None,
    };
    let target = parsed
        .as_ref()
        .and_then(|envelope| envelope.messages.first())
        .map_or(Target::CONNECTION, envelope::Message::target);
    if let Some(item) = target
        .item
        .filter(|item| gateway.policy.resembles_a_rule(*item))
    {
        return Err(ExplainError::Request(format!(
            "{item:?} differs from a name the policy rules only by case, width or whitespace; \
             names are matched exactly"
        )));
    }
    let request = RequestView {
        method: message
            .as_ref()
            .and_then(|message| message["method"].as_str().map(str::to_owned)),
        tool: question.tool.clone(),
        resource: question.resource.clone(),
        prompt: question.prompt.clone(),
    };
    let digest = crate::auth::cache::digest(token);
    let mut answer = Explanation {
        request,
        token_fingerprint: Record::fingerprint(&digest),
        principal: None,
        requirements: None,
        rules_matched: None,
        limits: None,
        decision: Decision::Allowed,
        action: "allow",
        status: 200,
        auth_result: "ok".to_owned(),
        reason: None,
        denied_by_rule: None,
        challenge: None,
        notes: Vec::new(),
    };
    let Some(auth) = &gateway.auth else {
        "disabled".clone_into(&mut answer.auth_result);
        answer.notes.push(
            "no credential source is configured: every request is proxied without \
             authentication"
                .to_owned(),
        );
        return Ok(answer);
    };
    let principal = match verify(auth, token, digest).await {
        Ok(principal) => principal,
        Err(error) => {
            let response = gateway.challenge.auth_failure(&error);
            answer.decision = Decision::RefusedToken;
            answer.action = "deny";
            answer.status = response.status().as_u16();
            error.reason().clone_into(&mut answer.auth_result);
            answer.reason = Some(error.to_string());
            answer.challenge = challenge_of(&response);
            return Ok(answer);
        }
    };
    let policy = &gateway.policy;
    answer.principal = Some(PrincipalView::new(&principal));
    answer.requirements = Some(policy.applied_requirements(&principal.scopes, target));
    let rules = policy.principal_rules();
    let matched = rules.matching(&principal);
    answer.rules_matched = Some(rules.names(&matched));
    limits(gateway, &principal, parsed.as_ref(), &mut answer);
    // The GraphQL server's own name, or a virtual server's member's under its prefix.
    let execute_graphql = match (gateway.upstream.graphql(), target.item) {
        (Some(_), Some(Item::Tool(name))) => name == Builtin::ExecuteGraphql.name(),
        (None, Some(Item::Tool(name))) => gateway.upstream.virtual_server().is_some_and(|merged| {
            merged.members().iter().any(|member| {
                member.upstream.graphql().is_some()
                    && name.strip_prefix(&*member.prefix) == Some(Builtin::ExecuteGraphql.name())
            })
        }),
        _ => false,
    };
    if execute_graphql {
        answer.notes.push(
            "execute_graphql also needs the scopes of the fields its query selects, which \
             this answer does not see"
                .to_owned(),
        );
    }
    // The gateway's own decision, on the same targets and computed requirements.
    let targets = parsed
        .as_ref()
        .map_or_else(|| vec![Target::CONNECTION], envelope::Envelope::targets);
    let computed = parsed
        .as_ref()
        .map(|envelope| gateway.computed(envelope))
        .unwrap_or_default();
    let question = policy::Question {
        scopes: &principal.scopes,
        matched: &matched,
        targets: &targets,
        computed: &computed,
        echo_token_scopes: gateway.challenge.echo_token_scopes,
    };
    let Err(refusal) = policy.decide(&question) else {
        return Ok(answer);
    };
    answer.decision = match &refusal {
        PolicyRefusal::Scopes(_) => Decision::RefusedScopes,
        PolicyRefusal::Unsatisfiable(_) => Decision::RefusedUnsatisfiable,
        PolicyRefusal::Rule(_) => Decision::RefusedRule,
    };
    answer.action = "deny";
    answer.reason = Some(refusal.description().to_owned());
    match &refusal {
        // The gateway stops at the first refusal; the operator also wants to know
        // whether stepping up would be enough.
        PolicyRefusal::Scopes(_) | PolicyRefusal::Unsatisfiable(_) => {
            if let Err(rule) = rules.check_all(&matched, target.item) {
                answer.notes.push(format!(
                    "with the missing scopes it would still be refused: {}",
                    rule.description
                ));
            }
        }
        PolicyRefusal::Rule(denial) => answer.denied_by_rule = Some(denial.rule.clone()),
    }
    // The answer the gateway would give, built where the gateway builds it.
    let response = gateway.challenge.policy_refusal(&refusal, Some(&json!(1)));
    answer.status = response.status().as_u16();
    answer.challenge = challenge_of(&response);
    Ok(answer)
}

/// The limits that would count the request, and the ones around it.
fn limits(
    gateway: &Gateway,
    principal: &Principal,
    parsed: Option<&envelope::Envelope>,
    answer: &mut Explanation,
) {
    let rules = &gateway.limits;
    // The address is not part of the question: only whether a key can be made.
    let caller = LimitCaller {
        principal: Some(principal),
        ip: std::net::IpAddr::from([0, 0, 0, 0]),
    };
    let asked: Option<Vec<Asked<'_>>> = parsed.map(Asked::all);
    answer.limits = Some(
        rules
            .counting(caller, asked.as_deref())
            .into_iter()
            .map(|described| LimitView {
                name: described.limit.name,
                key: described.key,
                rate: described.limit.rate.to_string(),
                burst: described.limit.burst,
            })
            .collect(),
    );
    if let Some(limit) = rules.per_principal() {
        answer.notes.push(format!(
            "at most {limit} calls of this caller may be in flight at once \
             (limits.concurrency.per_principal)"
        ));
    }
}

/// The token through the endpoint's own bearer parsing, then the authenticator.
async fn verify(
    auth: &crate::auth::Authenticator,
    token: &str,
    digest: [u8; 32],
) -> Result<std::sync::Arc<Principal>, AuthError> {
    let value = HeaderValue::from_str(&format!("Bearer {token}"))
        .map_err(|_| AuthError::InvalidRequest(RequestProblem::MalformedHeader))?;
    let mut headers = HeaderMap::new();
    headers.insert(header::AUTHORIZATION, value);
    let Credential::Bearer(token) = bearer::extract(&headers, None)? else {
        return Err(AuthError::Missing);
    };
    auth.authenticate(token, digest).await
}

fn challenge_of(response: &axum::response::Response) -> Option<String> {
    response
        .headers()
        .get(header::WWW_AUTHENTICATE)
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned)
}

impl fmt::Display for Explanation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let request = &self.request;
        writeln!(f, "request")?;
        writeln!(
            f,
            "  method:    {}",
            request
                .method
                .as_deref()
                .unwrap_or("(none: the connection itself)")
        )?;
        for (label, value) in [
            ("tool", &request.tool),
            ("resource", &request.resource),
            ("prompt", &request.prompt),
        ] {
            if let Some(value) = value {
                writeln!(
                    f,
                    "  {label}:{:width$}{value}",
                    "",
                    width = 10 - label.len()
                )?;
            }
        }
        writeln!(
            f,
            "  token:     sha256 {}… (as token_fingerprint in the audit log)",
            self.token_fingerprint
        )?;
        if let Some(principal) = &self.principal {
            writeln!(f, "\nprincipal ({})", principal.auth_method)?;
            let fields = [
                ("issuer", &principal.issuer),
                ("subject", &principal.subject),
                ("client id", &principal.client_id),
                ("api key", &principal.api_key_id),
                ("key id", &principal.key_id),
                ("expires", &principal.expires_at),
            ];
            for (label, value) in fields {
                if let Some(value) = value {
                    writeln!(
                        f,
                        "  {label}:{:width$}{value}",
                        "",
                        width = 10 - label.len()
                    )?;
                }
            }
            if principal.all_scopes {
                writeln!(f, "  scopes:    * (every scope)")?;
            } else if principal.scopes.is_empty() {
                writeln!(f, "  scopes:    (none)")?;
            } else {
                writeln!(f, "  scopes:")?;
                for scope in &principal.scopes {
                    match (&scope.claim, &scope.value) {
                        (Some(claim), Some(value)) => writeln!(
                            f,
                            "    {}  (mapped from claim {claim} = {value})",
                            scope.scope
                        )?,
                        _ => writeln!(f, "    {}  ({})", scope.scope, scope.source)?,
                    }
                }
            }
        }
        if let Some(requirements) = &self.requirements {
            writeln!(f, "\nrequirements")?;
            for requirement in requirements {
                let needs = if requirement.groups.is_empty() {
                    "nothing".to_owned()
                } else {
                    requirement
                        .groups
                        .iter()
                        .map(|group| group.join(" AND "))
                        .collect::<Vec<_>>()
                        .join("  OR  ")
                };
                writeln!(
                    f,
                    "  [{}] {} ({}): {needs}",
                    if requirement.met { "met" } else { "NOT met" },
                    requirement.level,
                    requirement.source
                )?;
            }
        }
        if let Some(matched) = &self.rules_matched {
            writeln!(f, "\nrules")?;
            if matched.is_empty() {
                writeln!(f, "  none matches this caller")?;
            } else {
                writeln!(f, "  matched: {}", matched.join(", "))?;
            }
        }
        if let Some(limits) = &self.limits {
            writeln!(f, "\nlimits")?;
            if limits.is_empty() {
                writeln!(f, "  no rate limit counts this request")?;
            }
            for limit in limits {
                writeln!(
                    f,
                    "  {}: {} per {} (burst {})",
                    limit.name,
                    limit.rate,
                    limit.key.join(" + "),
                    limit.burst
                )?;
            }
        }
        let decision = match self.decision {
            Decision::Allowed => "ALLOWED",
            Decision::RefusedToken => "REFUSED: the token is not accepted",
            Decision::RefusedScopes => "REFUSED for missing scopes",
            Decision::RefusedRule => "REFUSED by a rule",
            Decision::RefusedUnsatisfiable => "REFUSED: no scope could allow this query",
        };
        writeln!(f, "\ndecision: {decision} (HTTP {})", self.status)?;
        if let Some(reason) = &self.reason {
            writeln!(f, "  reason:    {reason}")?;
        }
        if self.auth_result != "ok" {
            writeln!(f, "  auth:      {}", self.auth_result)?;
        }
        if let Some(rule) = &self.denied_by_rule {
            writeln!(f, "  rule:      {rule}")?;
        }
        if let Some(challenge) = &self.challenge {
            writeln!(f, "  WWW-Authenticate: {challenge}")?;
        }
        for note in &self.notes {
            writeln!(f, "  note: {note}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn question(
        method: Option<&str>,
        tool: Option<&str>,
        resource: Option<&str>,
        prompt: Option<&str>,
    ) -> Question {
        Question {
            method: method.map(str::to_owned),
            tool: tool.map(str::to_owned),
            resource: resource.map(str::to_owned),
            prompt: prompt.map(str::to_owned),
        }
    }

    #[test]
    fn the_method_follows_the_item_unless_given() {
        let tool = message(&question(None, Some("echo"), None, None))
            .unwrap()
            .unwrap();
        assert_eq!(tool["method"], "tools/call");
        assert_eq!(tool["params"]["name"], "echo");
        let resource = message(&question(None, None, Some("file:///a"), None))
            .unwrap()
            .unwrap();
        assert_eq!(resource["method"], "resources/read");
        assert_eq!(resource["params"]["uri"], "file:///a");
        let completion = message(&question(
            Some("completion/complete"),
            None,
            None,
            Some("p"),
        ))
        .unwrap()
        .unwrap();
        assert_eq!(
            completion["params"]["ref"],
            json!({"type": "ref/prompt", "name": "p"})
        );
        let list = message(&question(Some("tools/list"), None, None, None))
            .unwrap()
            .unwrap();
        assert!(list.get("params").is_none());
        assert_eq!(message(&Question::default()).unwrap(), None);
        assert_eq!(
            message(&question(None, Some("a"), None, Some("b"))),
            Err(ExplainError::SeveralItems)
        );
    }

    #[test]
    fn exit_codes_tell_policy_from_credentials() {
        assert_eq!(Decision::Allowed.exit_code(), 0);
        assert_eq!(Decision::RefusedScopes.exit_code(), 1);
        assert_eq!(Decision::RefusedRule.exit_code(), 1);
        assert_eq!(Decision::RefusedToken.exit_code(), 3);
    }
}
