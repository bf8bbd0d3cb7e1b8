//! The admin listener: `/healthz` (the process answers), `/readyz` (it can serve:
//! signing keys usable, the upstream (an MCP server or a GraphQL endpoint)
//! reachable, the session store answering), `/metrics`, and `POST /explain` (why a
//! token would be allowed or refused a request; see `crate::explain`). Served on its
//! own address (`server.admin_listen`), apart from the MCP endpoint, so that probes
//! and scrapes need no token and are never exposed where clients connect.
//!
//! `/explain` takes a token and tells what it grants, so it answers loopback peers
//! only, even when the listener is bound wider for scrapes. So do the
//! authorization-server routes (`/authorization-server/clients`, `…/grants`,
//! `…/grants/revoke`): they name users and end their grants. So do `/connections`
//! (a user's connections to third-party services: names, scopes, expiry, never a
//! token) and `/connections/delete`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use axum::Router;
use axum::extract::{ConnectInfo, Query, Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use http::{StatusCode, header};
use serde_json::json;
use url::{Host, Url};

use super::AppState;
use crate::authorization_server::admin::{AdminError, Selector};
use crate::authorization_server::{self, Facade};
use crate::gateway::Gateways;
use crate::mcp::session::Sessions;
use crate::telemetry::metrics::{CONTENT_TYPE, metrics};

/// How long `/readyz` waits for a TCP connection to the upstream.
const UPSTREAM_PROBE_TIMEOUT: Duration = Duration::from_secs(1);

/// What readiness looks at. The gateway is read at each request, so readiness
/// follows reloads; the session store outlives them.
#[derive(Clone)]
pub struct Admin {
    pub(crate) gateway: Arc<ArcSwap<Gateways>>,
    /// `None`: no store to probe (a gateway served on its own, as in tests).
    pub sessions: Option<Arc<Sessions>>,
    /// The authorization-server façade, when configured.
    pub(crate) facade: Option<Arc<Facade>>,
}

impl From<Arc<ArcSwap<Gateways>>> for Admin {
    fn from(gateway: Arc<ArcSwap<Gateways>>) -> Self {
        Self {
            gateway,
            sessions: None,
            facade: None,
        }
    }
}

impl From<&AppState> for Admin {
    fn from(state: &AppState) -> Self {
        Self {
            gateway: Arc::clone(&state.gateway),
            sessions: Some(Arc::clone(&state.sessions)),
            facade: state.facade.clone(),
        }
    }
}

/// The admin routes.
pub fn router(admin: impl Into<Admin>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .route("/explain", post(explain))
        .route("/authorization-server/clients", get(facade_clients))
        .route("/authorization-server/grants", get(facade_grants))
        .route("/authorization-server/grants/revoke", post(facade_revoke))
        .route("/connections", get(connections_of_user))
        .route("/connections/delete", post(connections_delete))
        .fallback(not_found)
        .with_state(admin.into())
}

/// Serves the admin routes until `shutdown` completes.
pub async fn serve(
    listener: tokio::net::TcpListener,
    admin: impl Into<Admin>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    // The peer's address is what `/explain` is guarded by.
    axum::serve(
        listener,
        router(admin).into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await
}

async fn healthz() -> Response {
    axum::Json(json!({"status": "ok"})).into_response()
}

/// Ready when the session store answers and the routes can serve. With `routes:`,
/// a route that cannot serve is named in `routes` while the others can: the
/// replica stays ready for them (`"status": "degraded"`); it is not ready when none
/// can.
async fn readyz(State(admin): State<Admin>) -> Response {
    let gateways = admin.gateway.load_full();
    let sessions = async {
        match &admin.sessions {
            Some(sessions) => sessions.readiness().await,
            None => Ok(()),
        }
    };
    // Side by side, so that a slow store does not add to a slow upstream's wait.
    let routes = futures_util::future::join_all(
        gateways
            .all()
            .iter()
            .map(|gateway| route_readiness(gateway)),
    );
    let (sessions, routes) = tokio::join!(sessions, routes);
    let mut reasons: Vec<String> = sessions.err().into_iter().collect();
    if gateways.config.routes.is_empty() {
        reasons.extend(routes.into_iter().flat_map(|state| state.reasons));
        return if reasons.is_empty() {
            axum::Json(json!({"status": "ready"})).into_response()
        } else {
            let body = json!({"status": "not_ready", "reasons": reasons});
            (StatusCode::SERVICE_UNAVAILABLE, axum::Json(body)).into_response()
        };
    }
    let serving = routes.iter().filter(|state| state.serving).count();
    let troubled = routes.iter().any(|state| !state.reasons.is_empty());
    let by_route: serde_json::Map<String, serde_json::Value> = gateways
        .all()
        .iter()
        .zip(routes)
        .map(|(gateway, state)| {
            let name = gateway.config.route_name().unwrap_or_default().to_owned();
            let body = match (state.reasons.is_empty(), state.serving) {
                (true, _) => json!({"status": "ready"}),
                (false, true) => json!({"status": "degraded", "reasons": state.reasons}),
                (false, false) => json!({"status": "not_ready", "reasons": state.reasons}),
            };
            (name, body)
        })
        .collect();
    let (status, code) = if !reasons.is_empty() || serving == 0 {
        ("not_ready", StatusCode::SERVICE_UNAVAILABLE)
    } else if troubled {
        ("degraded", StatusCode::OK)
    } else {
        ("ready", StatusCode::OK)
    };
    let body = if reasons.is_empty() {
        json!({"status": status, "routes": by_route})
    } else {
        json!({"status": status, "routes": by_route, "reasons": reasons})
    };
    (code, axum::Json(body)).into_response()
}

/// One route's state: what troubles it, and whether it serves anyway.
struct RouteState {
    reasons: Vec<String>,
    /// A virtual server serves while one of its members can.
    serving: bool,
}

/// What keeps one route from serving: its keys not loaded, its upstream (or a
/// virtual server's members' upstreams) unreachable.
async fn route_readiness(gateway: &crate::gateway::Gateway) -> RouteState {
    let mut reasons = Vec::new();
    if let Some(Err(reason)) = gateway.auth.as_ref().map(|auth| auth.readiness()) {
        reasons.push(reason);
    }
    let keys_ready = reasons.is_empty();
    if let Some(merged) = gateway.upstream.virtual_server() {
        let members = merged.members();
        let probes = futures_util::future::join_all(members.iter().map(|member| async move {
            probe_upstream(member.probe.as_ref()?)
                .await
                .err()
                .map(|reason| format!("member {}: {reason}", member.name))
        }))
        .await;
        let down = probes.iter().flatten().count();
        reasons.extend(probes.into_iter().flatten());
        let serving = keys_ready && down < members.len();
        return RouteState { reasons, serving };
    }
    // A stdio server is started per session: there is nothing to reach yet.
    if let Some(url) = gateway.upstream_settings.probe_url()
        && let Err(reason) = probe_upstream(url).await
    {
        reasons.push(reason);
    }
    let serving = reasons.is_empty();
    RouteState { reasons, serving }
}

/// A TCP connection to the upstream's host and port: cheap, and says nothing to the
/// MCP server itself (no session, no request in its logs). Names the upstream by
/// host and port only: its URL may carry credentials.
async fn probe_upstream(url: &Url) -> Result<(), String> {
    let port = url.port_or_known_default().unwrap_or(80);
    let (host, target) = match url.host() {
        Some(Host::Domain(domain)) => (domain.to_owned(), format!("{domain}:{port}")),
        Some(Host::Ipv4(ip)) => (ip.to_string(), format!("{ip}:{port}")),
        Some(Host::Ipv6(ip)) => (ip.to_string(), format!("[{ip}]:{port}")),
        None => return Err("upstream URL has no host".to_owned()),
    };
    let connect = tokio::net::TcpStream::connect((host.as_str(), port));
    match tokio::time::timeout(UPSTREAM_PROBE_TIMEOUT, connect).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(error)) => Err(format!("upstream {target} unreachable: {error}")),
        Err(_) => Err(format!(
            "upstream {target} unreachable: no connection within {}",
            humantime::format_duration(UPSTREAM_PROBE_TIMEOUT)
        )),
    }
}

/// Largest `/explain` body: a token and a few names.
const MAX_EXPLAIN_BYTES: usize = 64 * 1024;

/// The `POST /explain` body: the token, and the question (`method`, `tool`,
/// `resource`, `prompt`), as `mcpgate explain` takes them.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ExplainBody {
    token: String,
    /// The route asked about (required when the configuration has routes).
    route: Option<String>,
    method: Option<String>,
    tool: Option<String>,
    resource: Option<String>,
    prompt: Option<String>,
}

/// The answer `mcpgate explain --json` prints, against the running gateway (its
/// keys, caches and introspection endpoint, as a request would use them).
async fn explain(State(admin): State<Admin>, request: Request) -> Response {
    let loopback = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .is_some_and(|ConnectInfo(peer)| peer.ip().is_loopback());
    if !loopback {
        return crate::edge::json::json_error(
            StatusCode::FORBIDDEN,
            "forbidden",
            "/explain answers loopback clients only",
        );
    }
    let bad_request = |description: &str| {
        crate::edge::json::json_error(StatusCode::BAD_REQUEST, "invalid_request", description)
    };
    let Ok(bytes) = axum::body::to_bytes(request.into_body(), MAX_EXPLAIN_BYTES).await else {
        return bad_request("the body is too large or could not be read");
    };
    // The message never quotes the body: it holds a token.
    let body: ExplainBody = match crate::json::from_slice(&bytes)
        .ok()
        .and_then(|value| serde_json::from_value(value).ok())
    {
        Some(body) => body,
        None => {
            return bad_request(
                "expected a JSON object: {\"token\": ..., and optionally \"method\", \"tool\", \"resource\" or \"prompt\"}",
            );
        }
    };
    if body.token.is_empty() {
        return bad_request("token is empty");
    }
    let gateways = admin.gateway.load_full();
    let gateway = match gateways.choose(body.route.as_deref()) {
        Ok(gateway) => gateway,
        Err(error) => return bad_request(&error.to_string()),
    };
    let question = crate::explain::Question {
        method: body.method,
        tool: body.tool,
        resource: body.resource,
        prompt: body.prompt,
    };
    match crate::explain::explain(gateway, &body.token, &question).await {
        Ok(answer) => axum::Json(answer).into_response(),
        Err(error) => bad_request(&error.to_string()),
    }
}

/// Loopback peers only, and only with the façade configured; else the answer.
fn facade_of(
    admin: &Admin,
    peer: Option<&ConnectInfo<SocketAddr>>,
) -> Result<Arc<Facade>, Box<Response>> {
    if !peer.is_some_and(|ConnectInfo(peer)| peer.ip().is_loopback()) {
        return Err(Box::new(crate::edge::json::json_error(
            StatusCode::FORBIDDEN,
            "forbidden",
            "/authorization-server answers loopback clients only",
        )));
    }
    admin.facade.clone().ok_or_else(|| {
        Box::new(crate::edge::json::json_error(
            StatusCode::NOT_FOUND,
            "not_found",
            "authorization_server is not configured",
        ))
    })
}

fn peer_of(request: &Request) -> Option<&ConnectInfo<SocketAddr>> {
    request.extensions().get::<ConnectInfo<SocketAddr>>()
}

fn admin_refusal(error: &AdminError) -> Response {
    let (status, code) = match error {
        AdminError::Unavailable => (StatusCode::SERVICE_UNAVAILABLE, "temporarily_unavailable"),
        _ => (StatusCode::BAD_REQUEST, "invalid_request"),
    };
    crate::edge::json::json_error(status, code, &error.to_string())
}

async fn facade_clients(State(admin): State<Admin>, request: Request) -> Response {
    match facade_of(&admin, peer_of(&request)) {
        Ok(facade) => axum::Json(authorization_server::admin::clients(&facade)).into_response(),
        Err(response) => *response,
    }
}

async fn facade_grants(State(admin): State<Admin>, request: Request) -> Response {
    let facade = match facade_of(&admin, peer_of(&request)) {
        Ok(facade) => facade,
        Err(response) => return *response,
    };
    let Ok(Query(selector)) = Query::<Selector>::try_from_uri(request.uri()) else {
        return admin_refusal(&AdminError::Malformed(
            "the parameters subject and client_id",
        ));
    };
    match authorization_server::admin::grants(&facade, &selector).await {
        Ok(body) => axum::Json(body).into_response(),
        Err(error) => admin_refusal(&error),
    }
}

/// Largest revocation body: one id or name.
const MAX_REVOKE_BYTES: usize = 16 * 1024;

async fn facade_revoke(State(admin): State<Admin>, request: Request) -> Response {
    let facade = match facade_of(&admin, peer_of(&request)) {
        Ok(facade) => facade,
        Err(response) => return *response,
    };
    let Ok(bytes) = axum::body::to_bytes(request.into_body(), MAX_REVOKE_BYTES).await else {
        return admin_refusal(&AdminError::Malformed("a body of at most 16 KiB"));
    };
    let Some(selector) = crate::json::from_slice(&bytes)
        .ok()
        .and_then(|value| serde_json::from_value::<Selector>(value).ok())
    else {
        return admin_refusal(&AdminError::Malformed(
            "a JSON object: {\"grant_id\"}, {\"subject\"} or {\"client_id\"}",
        ));
    };
    match authorization_server::admin::revoke(&facade, &selector).await {
        Ok(body) => axum::Json(body).into_response(),
        Err(error) => admin_refusal(&error),
    }
}

async fn metrics_text() -> Response {
    ([(header::CONTENT_TYPE, CONTENT_TYPE)], metrics().encode()).into_response()
}

async fn not_found() -> Response {
    crate::edge::json::json_error(StatusCode::NOT_FOUND, "not_found", "no such endpoint")
}

/// A user, as the connections know them.
#[derive(serde::Deserialize)]
struct UserSelector {
    issuer: String,
    subject: String,
}

fn connections_for(
    admin: &Admin,
    peer: Option<&ConnectInfo<SocketAddr>>,
) -> Result<Arc<crate::connections::Connections>, Box<Response>> {
    if !peer.is_some_and(|ConnectInfo(peer)| peer.ip().is_loopback()) {
        return Err(Box::new(crate::edge::json::json_error(
            StatusCode::FORBIDDEN,
            "forbidden",
            "/connections answers loopback clients only",
        )));
    }
    admin
        .gateway
        .load()
        .first()
        .connections
        .clone()
        .ok_or_else(|| {
            Box::new(crate::edge::json::json_error(
                StatusCode::NOT_FOUND,
                "not_found",
                "upstream.identity.connection is not configured",
            ))
        })
}

/// `GET /connections?issuer=…&subject=…`.
async fn connections_of_user(State(admin): State<Admin>, request: Request) -> Response {
    let connections = match connections_for(&admin, peer_of(&request)) {
        Ok(connections) => connections,
        Err(response) => return *response,
    };
    let Ok(Query(user)) = Query::<UserSelector>::try_from_uri(request.uri()) else {
        return admin_refusal(&AdminError::Malformed("the parameters issuer and subject"));
    };
    match connections.describe(&user.issuer, &user.subject).await {
        Ok(listed) => {
            let listed: Vec<serde_json::Value> = listed.into_iter().collect();
            axum::Json(json!({"connections": listed})).into_response()
        }
        Err(detail) => {
            tracing::warn!("listing a user's connections failed: {detail}");
            admin_refusal(&AdminError::Unavailable)
        }
    }
}

/// `POST /connections/delete` with `{"issuer", "subject"}`.
async fn connections_delete(State(admin): State<Admin>, request: Request) -> Response {
    let connections = match connections_for(&admin, peer_of(&request)) {
        Ok(connections) => connections,
        Err(response) => return *response,
    };
    let Ok(bytes) = axum::body::to_bytes(request.into_body(), MAX_REVOKE_BYTES).await else {
        return admin_refusal(&AdminError::Malformed("a body of at most 16 KiB"));
    };
    let Some(user) = crate::json::from_slice(&bytes)
        .ok()
        .and_then(|value| serde_json::from_value::<UserSelector>(value).ok())
    else {
        return admin_refusal(&AdminError::Malformed(
            "a JSON object: {\"issuer\", \"subject\"}",
        ));
    };
    let deleted = match connections.disconnect(&user.issuer, &user.subject).await {
        Ok(deleted) => deleted,
        Err(detail) => {
            tracing::warn!("deleting a user's connection failed: {detail}");
            return admin_refusal(&AdminError::Unavailable);
        }
    };
    tracing::info!(connection = %connections.name(), deleted, "admin deleted a user's connection");
    axum::Json(json!({"deleted": deleted})).into_response()
}
