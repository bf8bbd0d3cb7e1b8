//! The MCP endpoint: authenticate, authorize, then proxy. Every HTTP method is
//! authenticated (POST, GET for the SSE stream, DELETE).

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Instant;

use axum::body::{Body, to_bytes};
use axum::extract::Request;
use axum::response::Response;
use bytes::Bytes;
use http::{HeaderName, HeaderValue, Method, header};
use serde_json::Value;

use super::AppState;
use super::body::read_body;
use super::observe::Observation;
use super::refusal::{Denied, Refusal};
use super::session::{self, Route};
use crate::auth::bearer::{self, Credential};
use crate::auth::{AuthError, Principal, TokenProblem, Unavailability};
use crate::config::UnknownMethods;
use crate::edge::client_ip::ClientIp;
use crate::edge::origin;
use crate::gateway::Gateway;
use crate::limits::headers as limit_headers;
use crate::limits::{
    Asked, Caller as LimitCaller, Exceeded, Held, Limited, Limiter, Permit, Planned, Standing,
    Verdict,
};
use crate::mcp::filter::{ListFilter, Outcome, Refusal as ListRefusal};
use crate::mcp::headers as mcp_headers;
use crate::mcp::session::{Owner, SESSION_HEADER};
use crate::mcp::version::{self, ProtocolVersion, VersionError};
use crate::mcp::{envelope, sse};
use crate::policy::{Computed, Item, Matched, Question, Target};
use crate::upstream::{ExchangeError, UpstreamError};

/// Largest upstream list answer (or SSE event) held in memory to be filtered.
const MAX_FILTERED_BYTES: usize = 32 * 1024 * 1024;

pub(crate) async fn handle(state: AppState, gateway: Arc<Gateway>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let mut observation = Observation::start(&state, &parts.method, &parts.headers);
    observation.route(gateway.config.route.as_ref().map(|mark| &mark.name));
    let response = match respond(&state, &gateway, &mut observation, parts, body).await {
        Ok(response) => response,
        Err(refusal) => refusal.answer(&gateway.challenge, &mut observation),
    };
    observation
        .finish(&state, Some(&gateway.retirement), response)
        .await
}

/// The checks of docs/errors.md, in order; a refusal is answered by the caller.
async fn respond(
    state: &AppState,
    gateway: &Arc<Gateway>,
    observation: &mut Observation,
    parts: http::request::Parts,
    body: Body,
) -> Result<Response, Refusal> {
    origin::check(&gateway.allowed_origins, &parts.headers).map_err(Refusal::Origin)?;
    // Tagged by `server::client_ip` on every request the listener serves.
    let ip = parts
        .extensions
        .get::<ClientIp>()
        .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |ClientIp(ip)| *ip);
    let principal = authenticate(
        state,
        gateway,
        (&parts.headers, parts.uri.query(), ip),
        observation,
    )
    .await?;
    if !matches!(parts.method, Method::POST | Method::GET | Method::DELETE) {
        return Err(Refusal::MethodNotAllowed);
    }
    // Which `rules:` apply to the caller: decided once, for the request and its lists.
    let matched = match &principal {
        Some(principal) => {
            let rules = gateway.policy.principal_rules();
            let matched = rules.matching(principal);
            observation.rules_matched(rules.names(&matched));
            matched
        }
        None => Matched::default(),
    };
    // The revision decides the rules that follow (sessions, batches, `_meta`). A
    // POST's refusal waits for its body, so that it can answer the request's id.
    let version = match (version::from_headers(&parts.headers), &parts.method) {
        (Ok(version), _) => Ok(version),
        (Err(error), &Method::POST) => Err(error),
        (Err(error), _) => return Err(error.to_error(None).into()),
    };
    let session_version = version
        .as_ref()
        .map_or(ProtocolVersion::V2026_07_28, |version| *version);
    let owner = Owner::of(principal.as_deref()).on_route(gateway.config.route_name());
    let route = session::route(&state.sessions, &parts.headers, &owner, session_version)
        .await
        .map_err(Refusal::Session)?;
    let caller = Caller {
        gateway,
        limiter: &state.limiter,
        ip,
        principal: principal.as_ref(),
        matched: &matched,
        route: &route,
        headers: &parts.headers,
    };
    // A refusal (an upstream failure too) skips `settle`: mcpgate's own answer
    // names no session to bind, and is not the 404 or DELETE that ends one.
    let response = match parts.method {
        Method::POST => caller.post(version, body, observation).await?,
        // A stream or a session end carries no message: the every-request level.
        _ => caller.stream_or_end(&parts.method, observation).await?,
    };
    Ok(session::settle(
        &state.sessions,
        &route,
        &parts.method,
        &owner,
        session_version,
        response,
    )
    .await)
}

/// A request whose head has passed: who asks, in which session, with which headers.
struct Caller<'a> {
    gateway: &'a Arc<Gateway>,
    limiter: &'a Limiter,
    ip: IpAddr,
    principal: Option<&'a Arc<Principal>>,
    matched: &'a Matched,
    route: &'a Route,
    headers: &'a http::HeaderMap,
}

impl Caller<'_> {
    /// The policy's decision for these targets; nothing to decide without
    /// credentials (no credential source is configured).
    fn decide(
        &self,
        targets: &[Target<'_>],
        computed: &[Computed<'_>],
        id: Option<&Value>,
    ) -> Result<(), Refusal> {
        let Some(principal) = self.principal else {
            return Ok(());
        };
        let question = Question {
            scopes: &principal.scopes,
            matched: self.matched,
            targets,
            computed,
            echo_token_scopes: self.gateway.challenge.echo_token_scopes,
        };
        self.gateway.policy.decide(&question).map_err(|refusal| {
            Refusal::Policy(Box::new(Denied {
                refusal,
                id: id.cloned(),
                subject: principal.subject.clone(),
            }))
        })
    }

    /// GET (the standing stream) or DELETE (ending a session).
    async fn stream_or_end(
        &self,
        method: &Method,
        observation: &mut Observation,
    ) -> Result<Response, Refusal> {
        self.decide(&[Target::CONNECTION], &[], None)?;
        let planned = self.gateway.limits.for_stream(self.who());
        let standings = self.charge(&planned, None).await?;
        let gateway = self.gateway;
        let filter = self
            .principal
            .filter(|_| *method == Method::GET)
            .and_then(|principal| ListFilter::for_stream(&gateway.policy, principal, self.matched));
        let response = forward(
            gateway,
            method.clone(),
            self.headers,
            self.route,
            (self.principal.map(Arc::as_ref), None),
            Bytes::new(),
            observation,
        )
        .await
        .map_err(|failure| failure.refusal(None))?;
        let mut response = match filter {
            Some(filter) => filtered(response, filter).await?,
            None => response,
        };
        limit_headers::allowed(response.headers_mut(), &planned.limits, &standings);
        Ok(response)
    }

    /// A POST: the body is read, checked and authorized as a whole before anything
    /// reaches the upstream, so one challenge can name everything the request lacks.
    async fn post(
        &self,
        version: Result<ProtocolVersion, VersionError>,
        body: Body,
        observation: &mut Observation,
    ) -> Result<Response, Refusal> {
        let gateway = self.gateway;
        mcp_headers::check_media(self.headers).map_err(Refusal::Media)?;
        let body = read_body(gateway, self.headers, body)
            .await
            .map_err(Refusal::Body)?;
        let revision = version
            .as_ref()
            .map_or(ProtocolVersion::WITHOUT_HEADER, |version| *version);
        let mut envelope = self.parse(version, &body)?;
        observation.messages(&envelope);
        let computed = gateway.computed(&envelope);
        self.decide(&envelope.targets(), &computed, envelope.reply_id())?;
        // The body was read: a refusal answers for the request (id null for a
        // notification or a batch).
        let id = Some(envelope.reply_id().cloned().unwrap_or(Value::Null));
        let permit = self.permit(id.as_ref())?;
        let planned = gateway
            .limits
            .for_messages(self.who(), &Asked::all(&envelope));
        let standings = self.charge(&planned, id).await?;
        let filter = self.principal.and_then(|principal| {
            ListFilter::for_request(&gateway.policy, principal, self.matched, &envelope)
        });
        // A tool call that needs the user's own account at a service: sent with
        // their token, or answered here with the way to connect one.
        let mut connection = None;
        if let Some(connections) = gateway
            .connections
            .as_ref()
            .filter(|connections| connections.needed_by(&envelope))
        {
            observation.upstream_identity(&connections.mechanism());
            // Boxed: a vault lookup (and a refresh, or Redis) is rare among
            // requests, and its state must not grow every request's future.
            let header = Box::pin(connections.header_for(
                self.principal.map(Arc::as_ref),
                (revision, connections.url_elicitation_declared(&envelope)),
                envelope.reply_id(),
            ))
            .await
            .map_err(|refusal| Refusal::Connection(Box::new(refusal)))?;
            connection = Some(header);
            connections.strip_answer(&mut envelope);
        }
        let forwarded = Bytes::from(envelope.to_bytes());
        let response = forward(
            gateway,
            Method::POST,
            self.headers,
            self.route,
            (self.principal.map(Arc::as_ref), connection),
            forwarded,
            observation,
        )
        .await
        .map_err(|failure| failure.refusal(envelope.reply_id().cloned()))?;
        let mut response = match filter {
            Some(filter) => filtered(response, filter).await?,
            None => response,
        };
        limit_headers::allowed(response.headers_mut(), &planned.limits, &standings);
        Ok(match permit {
            Some(permit) => response.map(|body| Held::wrap(body, permit)),
            None => response,
        })
    }

    /// Who the limits count this request as.
    fn who(&self) -> LimitCaller<'_> {
        LimitCaller {
            principal: self.principal.map(Arc::as_ref),
            ip: self.ip,
        }
    }

    /// Charges the request's limits (all or none), refusing with the limit that
    /// would have to wait longest.
    async fn charge(
        &self,
        planned: &Planned<'_>,
        id: Option<Value>,
    ) -> Result<Vec<Standing>, Refusal> {
        charge(self.limiter, planned, id).await
    }

    /// A place among the principal's calls in flight, when that is limited.
    fn permit(&self, id: Option<&Value>) -> Result<Option<Permit>, Refusal> {
        let (Some(limit), Some(subject)) = (
            self.gateway.limits.per_principal(),
            self.principal
                .and_then(|principal| principal.subject.as_deref()),
        ) else {
            return Ok(None);
        };
        match self.limiter.in_flight.try_acquire(subject, limit) {
            Some(permit) => Ok(Some(permit)),
            None => Err(Refusal::RateLimited(Box::new(Limited {
                exceeded: Exceeded::Concurrency { limit },
                id: id.cloned(),
            }))),
        }
    }

    /// The body as one reading, consistent with the headers under the request's
    /// revision, naming nothing the policy could mistake for something else.
    fn parse(
        &self,
        version: Result<ProtocolVersion, VersionError>,
        body: &[u8],
    ) -> Result<envelope::Envelope, envelope::EnvelopeError> {
        let version = match version {
            Ok(version) => version,
            Err(error) => {
                let id = envelope::parse(body, ProtocolVersion::WITHOUT_HEADER)
                    .ok()
                    .and_then(|envelope| envelope.reply_id().cloned());
                return Err(error.to_error(id));
            }
        };
        let envelope = envelope::parse(body, version)?;
        mcp_headers::check_mirrored(self.headers, &envelope, version)?;
        let header_sent = self.headers.contains_key(version::HEADER);
        mcp_headers::check_meta_version(version, header_sent, &envelope)?;
        look_alike_items(&self.gateway.policy, &envelope)?;
        let refuse_unknown = self.gateway.config.scopes.unknown_methods == UnknownMethods::Refuse;
        if let Some(method) = envelope.unknown_method().filter(|_| refuse_unknown) {
            return Err(envelope::EnvelopeError {
                code: envelope::EnvelopeError::METHOD_NOT_FOUND,
                message: format!(
                    "method {method:?} is not an MCP method, and unknown methods are refused here"
                ),
                id: envelope.reply_id().cloned(),
                data: None,
            });
        }
        Ok(envelope)
    }
}

/// A tool, prompt or resource named so that it differs from a ruled name only by
/// case, width or whitespace is refused: judged as the name written, it would
/// escape the rule; run by an upstream that folds names, it would be the ruled one.
fn look_alike_items(
    policy: &crate::policy::Policy,
    envelope: &envelope::Envelope,
) -> Result<(), envelope::EnvelopeError> {
    for message in &envelope.messages {
        let Some(item) = message
            .targets()
            .filter_map(|target| target.item)
            .find(|item| policy.resembles_a_rule(*item))
        else {
            continue;
        };
        let (kind, name) = match item {
            Item::Tool(name) => ("tool", name),
            Item::Resource(uri) => ("resource", uri),
            Item::Prompt(name) => ("prompt", name),
        };
        return Err(envelope::EnvelopeError {
            code: envelope::EnvelopeError::INVALID_PARAMS,
            message: format!(
                "{kind} {name:?} differs from a name the policy rules only by case, width or \
                 whitespace; names are matched exactly"
            ),
            id: message.id().cloned(),
            data: None,
        });
    }
    Ok(())
}

/// Why a request did not reach the upstream, or got no answer from it.
enum ForwardFailure {
    Upstream(UpstreamError),
    Exchange(ExchangeError),
}

impl ForwardFailure {
    fn refusal(self, id: Option<Value>) -> Refusal {
        match self {
            Self::Upstream(error) => Refusal::Upstream { error, id },
            Self::Exchange(error) => Refusal::Exchange {
                error: Box::new(error),
                id,
            },
        }
    }
}

/// Sends the request upstream, timing the wait for its response head.
async fn forward(
    gateway: &Gateway,
    method: Method,
    headers: &http::HeaderMap,
    route: &Route,
    (principal, connection): (Option<&Principal>, Option<(HeaderName, HeaderValue)>),
    body: Bytes,
    observation: &mut Observation,
) -> Result<Response, ForwardFailure> {
    let mut own_headers = observation.upstream_headers();
    if let Some(value) = route
        .upstream_id()
        .and_then(|id| HeaderValue::from_str(id).ok())
    {
        own_headers.insert(SESSION_HEADER, value);
    }
    let mut stripped = None;
    if let Some(identity) = &gateway.identity {
        identity
            .add(principal, &mut own_headers)
            .map_err(|error| ForwardFailure::Upstream(UpstreamError::Credentials(error)))?;
        if principal.is_some() {
            for mechanism in identity.mechanisms() {
                observation.upstream_identity(mechanism);
            }
        }
        stripped = identity.strip(headers);
    }
    // The exchanged token sent, to drop should the upstream refuse it.
    let mut exchanged = None;
    if let (Some(exchange), Some(principal)) = (&gateway.exchange, principal) {
        // Authentication read this same header: a principal means a bearer credential.
        let outcome = match bearer::extract(headers, None) {
            // Boxed: an exchange (an HTTP call, Redis) is a large future that most
            // configurations never await; inline it would size every request's.
            Ok(Credential::Bearer(token)) => Box::pin(exchange.authorization(principal, token))
                .await
                .map(|authorization| authorization.map(|value| (token, value))),
            _ => Err(ExchangeError::NoSubjectToken("no bearer token to exchange")),
        };
        // Named in the record when it gave the upstream a token or refused the
        // request; an API key let through without a token had none.
        if !matches!(outcome, Ok(None)) {
            observation.upstream_identity(exchange.mechanism());
            observation.upstream_audience(exchange.audience());
        }
        if let Some((token, authorization)) = outcome.map_err(ForwardFailure::Exchange)? {
            own_headers.insert(header::AUTHORIZATION, authorization.clone());
            exchanged = Some((exchange, principal, token, authorization));
        }
    }
    if let Some((name, value)) = connection {
        own_headers.insert(name, value);
    }
    let headers = stripped.as_ref().unwrap_or(headers);
    let sent = Instant::now();
    let result = match gateway.upstream.virtual_server() {
        // A virtual server keeps member sessions per caller.
        Some(merged) => {
            let caller = Owner::of(principal);
            merged
                .forward_boxed(method, (headers, own_headers), caller.as_bytes(), body)
                .await
        }
        None => {
            gateway
                .upstream
                .forward(method, headers, own_headers, body)
                .await
        }
    };
    observation.forwarded(sent.elapsed());
    // The status only: a response (its body is not `Sync`) is not held across the await.
    let refused =
        matches!(&result, Ok(response) if response.status() == http::StatusCode::UNAUTHORIZED);
    if let (true, Some((exchange, principal, token, authorization))) = (refused, exchanged) {
        // Revoked or not accepted after all: this request fails (it is not replayed,
        // it may have had effects), the next one exchanges anew.
        Box::pin(exchange.refused_by_upstream(principal, token, &authorization)).await;
    }
    result.map_err(ForwardFailure::Upstream)
}

/// Charges `planned` (all or none); a refusal names the limit that would have to
/// wait longest.
async fn charge(
    limiter: &Limiter,
    planned: &Planned<'_>,
    id: Option<Value>,
) -> Result<Vec<Standing>, Refusal> {
    match limiter.charge(&planned.charges).await {
        Verdict::Allowed(standings) => Ok(standings),
        Verdict::Refused { index, retry_after } => {
            // A refusal names one of the charges; the first stands in should a
            // backend answer out of range. (An empty plan is never refused.)
            let limit = planned.limits.get(index).or(planned.limits.first());
            match limit {
                Some(limit) => Err(Refusal::RateLimited(Box::new(Limited {
                    exceeded: Exceeded::Rate {
                        limit: (*limit).clone(),
                        retry_after,
                    },
                    id,
                }))),
                None => Ok(Vec::new()),
            }
        }
    }
}

/// Authentication. `Ok(None)` when no credential source is configured.
///
/// A credential that is not in a cache of verified ones costs a check (argon2, an
/// introspection call, a JWKS fetch): it is counted against the address's
/// `unauthenticated` limit first, and refused unchecked while the address's
/// failed authentications are exhausted. A refused credential counts as a failure.
async fn authenticate(
    state: &AppState,
    gateway: &Gateway,
    (headers, query, ip): (&http::HeaderMap, Option<&str>, IpAddr),
    observation: &mut Observation,
) -> Result<Option<Arc<Principal>>, Refusal> {
    let Some(auth) = &gateway.auth else {
        observation.auth_disabled();
        return Ok(None);
    };
    let credential = bearer::extract(headers, query)?;
    let Credential::Bearer(token) = credential else {
        return Err(AuthError::Missing.into());
    };
    let digest = crate::auth::cache::digest(token);
    observation.token(&digest);
    let limits = &gateway.limits;
    if limits.guards_verification() && !auth.is_cached(token, &digest) {
        let planned = limits.before_verification(ip);
        if let Err(refusal) = charge(&state.limiter, &planned, None).await {
            observation.auth_limited();
            return Err(refusal);
        }
    }
    let principal = match auth.authenticate(token, digest).await {
        Ok(principal) => principal,
        Err(error) => {
            if matches!(error, AuthError::InvalidToken(_)) {
                // Counted whatever the answer: a limit already exhausted stays so.
                let _ = state
                    .limiter
                    .charge(&limits.after_failure(ip).charges)
                    .await;
            }
            return Err(error.into());
        }
    };
    // Checked on every request, cached verification or not: a revoked grant's
    // tokens stop at once.
    if let Some(facade) = &state.facade {
        // Boxed: a Redis call inline (6.8 KB) would size every request's future,
        // which is copied whole when a request starts, façade or not.
        match Box::pin(facade.revoked(&principal)).await {
            Ok(false) => {}
            Ok(true) => return Err(AuthError::InvalidToken(TokenProblem::Revoked).into()),
            // Cannot tell: fail closed, as the other checks that need a peer.
            Err(_) => {
                return Err(AuthError::Unavailable(Unavailability::RevocationsUnavailable).into());
            }
        }
    }
    observation.authenticated(&principal);
    Ok(Some(principal))
}

/// Cuts list answers to what the caller may use: SSE event by event, JSON whole.
///
/// Whatever the status, a body declared as JSON or as an event stream is looked at:
/// a lax client may read a list from an error status too, and it costs nothing when
/// the body is an error. Any other non-empty body at 2xx is refused, since a client
/// might read it as the awaited answer; at an error status it is the upstream's (or a
/// proxy's) error page, which no client takes for a JSON-RPC message, and passes.
async fn filtered(response: Response, mut filter: ListFilter) -> Result<Response, Refusal> {
    let media = Media::of(response.headers());
    let (mut parts, body) = response.into_parts();
    if media == Media::Other && !parts.status.is_success() {
        return Ok(Response::from_parts(parts, body));
    }
    // mcpgate never asks for one; encoded bytes would only be read by the client.
    if let Some(encoding) = parts
        .headers
        .get(header::CONTENT_ENCODING)
        .filter(|value| !value.as_bytes().eq_ignore_ascii_case(b"identity"))
    {
        let detail = format!(
            "content encoding {}",
            String::from_utf8_lossy(encoding.as_bytes())
        );
        return Err(unreadable(&filter, ListRefusal::Encoded, detail));
    }
    parts.headers.remove(header::CONTENT_LENGTH);
    if media == Media::EventStream {
        let stream = sse::edit_events(body.into_data_stream(), filter, MAX_FILTERED_BYTES);
        return Ok(Response::from_parts(parts, Body::from_stream(stream)));
    }
    let bytes = to_bytes(body, MAX_FILTERED_BYTES)
        .await
        .map_err(|error| unreadable(&filter, ListRefusal::Incomplete, error.to_string()))?;
    // An empty body carries nothing to hide (a `202`, say).
    if bytes.is_empty() {
        return Ok(Response::from_parts(parts, Body::empty()));
    }
    if media == Media::Other {
        let declared = parts
            .headers
            .get(header::CONTENT_TYPE)
            .map(|value| String::from_utf8_lossy(value.as_bytes()).into_owned())
            .unwrap_or_else(|| "none".to_owned());
        let detail = format!("content type {declared}");
        return Err(unreadable(&filter, ListRefusal::ContentType, detail));
    }
    match filter.filter_document(&bytes) {
        Outcome::Unchanged => Ok(Response::from_parts(parts, Body::from(bytes))),
        Outcome::Edited(edited) => Ok(Response::from_parts(parts, Body::from(edited))),
        // Only an event can be dropped from a stream; a whole JSON body cannot.
        Outcome::Dropped => Err(unreadable(
            &filter,
            ListRefusal::Withheld,
            "a resource update the caller may not read".to_owned(),
        )),
        Outcome::Refused(refusal) => {
            Err(unreadable(&filter, refusal, refusal.message().to_owned()))
        }
    }
}

/// A list answer that must not reach the client, answered for the request's id.
fn unreadable(filter: &ListFilter, refusal: ListRefusal, detail: String) -> Refusal {
    Refusal::UnreadableList {
        refusal,
        detail,
        id: filter.reply_id().cloned(),
    }
}

/// How an upstream body is declared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Media {
    /// `application/json`, or a `+json` type.
    Json,
    EventStream,
    /// Anything else, or nothing.
    Other,
}

impl Media {
    fn of(headers: &http::HeaderMap) -> Self {
        let Some(value) = headers
            .get(header::CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
        else {
            return Self::Other;
        };
        let essence = value
            .split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase();
        if essence == "application/json" || essence.ends_with("+json") {
            Self::Json
        } else if essence == "text/event-stream" {
            Self::EventStream
        } else {
            Self::Other
        }
    }
}
