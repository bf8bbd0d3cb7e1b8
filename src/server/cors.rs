//! CORS on the routes browser clients call, after the `Host` check and before
//! everything else: a preflight is answered here, before authentication and before
//! anything reaches the upstream. The paths are fixed at start (as the router's);
//! `server.cors` is read from the current gateway on each request, so it follows
//! a reload.
//!
//! - The MCP endpoint: an allowed origin's preflight gets `204`; every answer to it
//!   (refusals and streams included) names that origin. A preflight from any other
//!   origin goes on to the endpoint, whose Origin check refuses it. Upstream
//!   `Access-Control-*` headers are removed whether CORS is on or not.
//! - Public documents (RFC 9728, RFC 8414, the JWKS) and the façade's token,
//!   revocation and registration endpoints: any origin, `*`.

use std::collections::HashSet;

use axum::extract::Request;
use axum::middleware::Next;
use axum::response::Response;

use super::AppState;
use crate::edge::cors::{self, Cors};
use crate::gateway::Gateways;

/// Which of the façade's paths get which CORS treatment (the routes' own are
/// found in the current gateways).
#[derive(Debug, Default)]
pub(crate) struct CorsPaths {
    documents: HashSet<String>,
    posts: HashSet<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Mcp,
    Document,
    Post,
}

impl CorsPaths {
    pub(crate) fn new(documents: Vec<String>, posts: Vec<String>) -> Self {
        Self {
            documents: documents.into_iter().collect(),
            posts: posts.into_iter().collect(),
        }
    }

    fn kind(&self, gateways: &Gateways, path: &str) -> Option<Kind> {
        if gateways.is_endpoint(path) {
            Some(Kind::Mcp)
        } else if self.documents.contains(path) || gateways.is_document(path) {
            Some(Kind::Document)
        } else if self.posts.contains(path) {
            Some(Kind::Post)
        } else {
            None
        }
    }
}

/// Runs `next` with the CORS treatment of the request's path (see
/// [`super::front`]); other paths pass through untouched.
pub(crate) async fn around(
    state: &AppState,
    paths: &CorsPaths,
    request: Request,
    next: Next,
) -> Response {
    let gateways = state.gateway.load_full();
    let Some(kind) = paths.kind(&gateways, request.uri().path()) else {
        drop(gateways);
        return next.run(request).await;
    };
    let settings = gateways.first().cors.as_ref();
    match kind {
        Kind::Mcp => mcp(settings, request, next).await,
        Kind::Document => public(settings, "GET", request, next).await,
        Kind::Post => public(settings, "POST", request, next).await,
    }
}

async fn mcp(settings: Option<&Cors>, request: Request, next: Next) -> Response {
    let allowed = settings.and_then(|settings| {
        let origin = settings.allowed_origin(request.headers())?;
        Some((settings, origin))
    });
    if let Some((settings, origin)) = &allowed
        && cors::is_preflight(request.method(), request.headers())
    {
        return settings.preflight(origin.clone());
    }
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    cors::strip(headers);
    if settings.is_some() {
        cors::vary_origin(headers);
    }
    if let Some((_, origin)) = allowed {
        Cors::allow(origin, headers);
    }
    response
}

async fn public(
    settings: Option<&Cors>,
    methods: &'static str,
    request: Request,
    next: Next,
) -> Response {
    let Some(settings) = settings else {
        return next.run(request).await;
    };
    if cors::is_preflight(request.method(), request.headers()) {
        return settings.public_preflight(methods);
    }
    let mut response = next.run(request).await;
    cors::allow_any(response.headers_mut());
    response
}
