//! The connect page and its callback (`upstream.identity.connection`), on the
//! main listener: the HTTP side of `connections::flow`. The browser cookie ties
//! the callback to the browser that opened the link: `HttpOnly`, `SameSite=Lax`
//! (sent on the providers' top-level redirects back), and over https `Secure`
//! with the `__Host-` prefix.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use http::{HeaderMap, HeaderValue, StatusCode, header};

use super::AppState;
use crate::authorization_server::page::{error_page, manage_page, notice_page};
use crate::connections::{CallbackOutcome, Connections, FlowError};

const COOKIE: &str = "mcpgate_connect";
const SECURE_COOKIE: &str = "__Host-mcpgate_connect";

/// The routes, on the connection's paths (fixed at start).
pub(crate) fn routes(router: Router<AppState>, connections: &Connections) -> Router<AppState> {
    router
        .route(&connections.connect_path(), get(start))
        .route(&connections.callback_path(), get(callback))
        .route(&connections.manage_path(), get(manage))
        .route(&connections.disconnect_path(), post(disconnect))
}

/// The current gateway's connection (a reload may have removed it).
fn current(state: &AppState) -> Option<Arc<Connections>> {
    state.gateway.load().first().connections.clone()
}

fn gone() -> Response {
    error_page(
        StatusCode::NOT_FOUND,
        "not_found",
        "This server has no such connection.",
    )
}

fn cookie_name(connections: &Connections) -> &'static str {
    if connections.secure_cookies {
        SECURE_COOKIE
    } else {
        COOKIE
    }
}

async fn start(
    State(state): State<AppState>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let Some(connections) = current(&state) else {
        return gone();
    };
    let Some(link) = query.get("link") else {
        return refused(&FlowError::UnknownLink);
    };
    started(&connections, connections.start(link).await)
}

/// The manage page: sign in first, whoever you are.
async fn manage(State(state): State<AppState>) -> Response {
    let Some(connections) = current(&state) else {
        return gone();
    };
    started(&connections, connections.start_manage().await)
}

/// A sign-in started: the browser cookie, and on to the identity provider.
fn started(
    connections: &Connections,
    started: Result<crate::connections::Started, FlowError>,
) -> Response {
    match started {
        Ok(started) => {
            let secure = if connections.secure_cookies {
                "; Secure"
            } else {
                ""
            };
            let cookie = format!(
                "{}={}; Path=/; Max-Age={}; HttpOnly; SameSite=Lax{secure}",
                cookie_name(connections),
                started.browser,
                connections.config.link_ttl.as_secs()
            );
            let mut response = redirect(&started.location);
            if let Ok(value) = HeaderValue::from_str(&cookie) {
                response.headers_mut().insert(header::SET_COOKIE, value);
            }
            response
        }
        Err(error) => refused(&error),
    }
}

async fn callback(
    State(state): State<AppState>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let Some(connections) = current(&state) else {
        return gone();
    };
    let Some(state) = query.get("state") else {
        return refused(&FlowError::UnknownFlow);
    };
    let browser = cookie(&headers, cookie_name(&connections));
    let outcome = connections
        .callback(
            state,
            query.get("code").map(String::as_str),
            query.get("error").map(String::as_str),
            browser.as_deref(),
        )
        .await;
    match outcome {
        Ok(CallbackOutcome::ToService(location)) => redirect(&location),
        Ok(CallbackOutcome::Connected) => notice_page(
            StatusCode::OK,
            "Connected",
            &format!(
                "Your {} account is connected. Return to your MCP client and retry.",
                connections.name()
            ),
        ),
        Ok(CallbackOutcome::Manage { form, connected }) => manage_page(
            connections.name(),
            connected,
            &connections.disconnect_path(),
            &form,
        ),
        Err(error) => refused(&error),
    }
}

/// Largest disconnect form read.
const MAX_FORM_BYTES: usize = 4096;

/// The manage page's form. Its token is single-use and bound to the browser
/// that signed in (a cross-site form cannot know it); a cross-origin `Origin`
/// is refused as well.
async fn disconnect(State(state): State<AppState>, request: axum::extract::Request) -> Response {
    let Some(connections) = current(&state) else {
        return gone();
    };
    let origin = request.headers().get(header::ORIGIN).cloned();
    if origin.is_some_and(|origin| origin.as_bytes() != connections.origin().as_bytes()) {
        return refused(&FlowError::OtherBrowser);
    }
    let browser = cookie(request.headers(), cookie_name(&connections));
    let Ok(body) = axum::body::to_bytes(request.into_body(), MAX_FORM_BYTES).await else {
        return refused(&FlowError::UnknownFlow);
    };
    let Some(form) = url::form_urlencoded::parse(&body)
        .find(|(name, _)| name == "form")
        .map(|(_, value)| value.into_owned())
    else {
        return refused(&FlowError::UnknownFlow);
    };
    match connections
        .disconnect_signed_in(&form, browser.as_deref())
        .await
    {
        Ok(_) => notice_page(
            StatusCode::OK,
            "Disconnected",
            &format!(
                "Your {} account is disconnected. Tools that need it will ask you to connect again.",
                connections.name()
            ),
        ),
        Err(error) => refused(&error),
    }
}

fn refused(error: &FlowError) -> Response {
    tracing::info!("connect flow stopped: {error}");
    let status = StatusCode::from_u16(error.status()).unwrap_or(StatusCode::BAD_REQUEST);
    error_page(status, "connect_refused", &error.to_string())
}

fn redirect(location: &str) -> Response {
    let mut response = StatusCode::SEE_OTHER.into_response();
    if let Ok(value) = HeaderValue::from_str(location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// The value of cookie `name`, if sent.
fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value.to_owned())
}
