//! The façade's HTTP side: metadata, the authorization endpoint, the consent
//! page and the identity provider's callback. Each handler reads the current settings once and hands the work to the
//! modules beside it.

use std::sync::Arc;

use axum::Form;
use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::extract::{RawQuery, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use http::{HeaderMap, HeaderValue, StatusCode, header};
use serde::Deserialize;
use url::Url;

use super::answers::{expired, other_browser, redirect_error, see_other};
use super::authorize::{AuthorizationRequest, Offer, PageError, Params, RedirectError};
use super::callback::{self, CallbackParams};
use super::clients::{Client, ClientKind};
use super::cookies;
use super::events::{Event, Peer, name};
use super::page::{self, ConsentPage, kind_text};
use super::pending::{Pending, Stage};
use super::provider::{self, Pkce, ProviderRequest};
use super::random::random_id;
use super::redirect_uri;
use super::registration_endpoint;
use super::remembered::Remembered;
use super::settings::{Facade, Settings};
use super::shared::Unavailable;
use super::token::{self, TokenError};
use crate::edge::json::public_document;

/// Largest token or revocation request read; real ones are under 2 KiB.
const MAX_FORM_BYTES: usize = 16 * 1024;

/// The façade's routes, to merge into a router of any state. Paths come from the
/// configuration at start.
pub(crate) fn router<S: Clone + Send + Sync + 'static>(facade: Arc<Facade>) -> Router<S> {
    let settings = facade.settings();
    let endpoints = &settings.endpoints;
    let mut router = Router::new()
        .route(&endpoints.path("authorize"), get(authorize))
        .route(
            &endpoints.path("consent"),
            get(consent_page).post(consent_decision),
        )
        .route(&endpoints.path("callback"), get(callback))
        .route(&endpoints.path("jwks"), get(jwks))
        .route(
            &endpoints.path("token"),
            post(token).layer(DefaultBodyLimit::max(MAX_FORM_BYTES)),
        )
        .route(
            &endpoints.path("revoke"),
            post(revoke).layer(DefaultBodyLimit::max(MAX_FORM_BYTES)),
        );
    for path in endpoints.metadata_paths() {
        router = router.route(&path, get(metadata));
    }
    if endpoints.registration_enabled {
        router = router.route(
            &endpoints.path("register"),
            post(registration_endpoint::register),
        );
    }
    router.with_state(facade)
}

/// The routes above that browser clients call from their own page, for
/// `server::cors` to open to any origin when CORS is on: the public documents,
/// then the endpoints a public client posts to (no cookies there; PKCE or client
/// authentication protects them). Authorization, consent and callback are
/// navigations and stay out.
pub(crate) fn cross_origin_paths(facade: &Facade) -> (Vec<String>, Vec<String>) {
    let settings = facade.settings();
    let endpoints = &settings.endpoints;
    let mut documents = endpoints.metadata_paths();
    documents.push(endpoints.path("jwks"));
    let mut posts = vec![endpoints.path("token"), endpoints.path("revoke")];
    if endpoints.registration_enabled {
        posts.push(endpoints.path("register"));
    }
    (documents, posts)
}

async fn metadata(State(facade): State<Arc<Facade>>) -> Response {
    public_document(facade.settings().metadata.document().clone())
}

/// `GET /oauth/jwks`: the keys mcpgate's access tokens are signed with.
async fn jwks(State(facade): State<Arc<Facade>>) -> Response {
    public_document(facade.settings().signing.jwks().clone())
}

/// `POST /oauth/token`.
async fn token(
    State(facade): State<Arc<Facade>>,
    peer: Peer,
    headers: HeaderMap,
    body: String,
) -> Response {
    let answer = if is_form(&headers) {
        token::token(&facade, &headers, &body, peer).await
    } else {
        Err(TokenError::unsupported_media_type())
    };
    let answer = answer.map(|answer| axum::Json(answer).into_response());
    form_answer(&facade, name::TOKEN_REFUSED, &headers, &body, peer, answer).await
}

/// `POST /oauth/revoke`: `200` whether or not the token was known (RFC 7009 §2.2).
async fn revoke(
    State(facade): State<Arc<Facade>>,
    peer: Peer,
    headers: HeaderMap,
    body: String,
) -> Response {
    let answer = if is_form(&headers) {
        token::revoke(&facade, &headers, &body, peer).await
    } else {
        Err(TokenError::unsupported_media_type())
    };
    let answer = answer.map(|()| StatusCode::OK.into_response());
    form_answer(
        &facade,
        name::REVOCATION_REFUSED,
        &headers,
        &body,
        peer,
        answer,
    )
    .await
}

/// The token or revocation endpoint's answer, never cached; a refusal is audited
/// as `event` first.
async fn form_answer(
    facade: &Facade,
    event: &'static str,
    headers: &HeaderMap,
    body: &str,
    peer: Peer,
    answer: Result<Response, TokenError>,
) -> Response {
    match answer {
        Ok(response) => no_store(response),
        Err(error) => {
            facade
                .audit(refusal(event, headers, body, &error, peer))
                .await;
            token_error(&error)
        }
    }
}

/// The record of a refused token or revocation request.
fn refusal(
    event: &'static str,
    headers: &HeaderMap,
    body: &str,
    error: &TokenError,
    peer: Peer,
) -> Event {
    Event::new(event)
        .client_id(token::named_client(headers, body).as_deref())
        .peer(peer)
        .error(error.error)
        .reason(error.description.clone())
}

fn is_form(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(';').next())
        .is_some_and(|essence| {
            essence
                .trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        })
}

fn token_error(error: &TokenError) -> Response {
    let mut response = (error.status, axum::Json(error.body())).into_response();
    if error.basic_challenge {
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"mcpgate\""),
        );
    }
    no_store(response)
}

/// Token answers are never cached (RFC 6749 §5.1).
fn no_store(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    response
}

/// `GET /oauth/authorize`: check the request, remember it, and send the browser to
/// the consent page (its own URL, so that reloading it repeats nothing).
async fn authorize(
    State(facade): State<Arc<Facade>>,
    peer: Peer,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let settings = facade.settings();
    let params = Params::from_query(query.as_deref().unwrap_or(""));
    let refused = |error: &PageError| {
        Event::new(name::AUTHORIZE_REFUSED)
            .client_id(params.client_id().ok())
            .peer(peer)
            .error(unverified_code(error))
            .reason(error.to_string())
    };
    let client = match params.client_id() {
        Ok(client_id) => match facade.find_client(&settings, client_id).await {
            Ok(client) => client,
            Err(error) => {
                facade.audit(refused(&error)).await;
                return unverified(&error);
            }
        },
        Err(error) => {
            facade.audit(refused(&error)).await;
            return unverified(&error);
        }
    };
    let redirect_uri = match params.redirect_uri(&client) {
        Ok(uri) => uri,
        Err(error) => {
            facade.audit(refused(&error).client(&client)).await;
            return unverified(&error);
        }
    };
    let offer = Offer {
        resources: &settings.resources,
        scopes: &settings.scopes,
    };
    let request = match params.check(&client, redirect_uri, offer) {
        Ok(request) => request,
        Err(error) => {
            tracing::info!(client_id = %client.client_id, error = error.error, "authorization request refused: {}", error.description);
            let refused = Event::new(name::AUTHORIZE_REFUSED)
                .client(&client)
                .peer(peer)
                .error(error.error)
                .reason(error.description.clone());
            facade.audit(refused).await;
            return redirect_error(&settings, &error);
        }
    };
    let (browser, set_cookie) = match cookies::browser_id(&headers, &settings) {
        Some(existing) => (existing, None),
        None => {
            let fresh = random_id();
            let cookie = cookies::browser_cookie(&settings, &fresh);
            (fresh, Some(cookie))
        }
    };
    // An approval this browser remembers for exactly this request skips the page;
    // the callback checks that the same user signs in.
    let remembered_for = remembered_approval(&headers, &settings, &request);
    let id = random_id();
    let pending = Pending {
        request,
        client,
        browser,
        remembered_for,
        stage: Stage::AwaitingConsent,
    };
    let mut response = if pending.remembered_for.is_some() {
        tracing::info!(client_id = %pending.client.client_id, "consent remembered by this browser; to the identity provider");
        let approved = Event::new(name::CONSENT_APPROVED)
            .client(&pending.client)
            .request(&pending.request.scopes, &pending.request.resource)
            .peer(peer)
            .reason("remembered by this browser");
        facade.audit(approved).await;
        to_provider(&facade, &settings, &id, &pending).await
    } else {
        if let Err(error) = facade.pending.insert(&id, pending).await {
            return error.page();
        }
        see_other(&format!(
            "{}?request={id}",
            settings.endpoints.url("consent")
        ))
    };
    if let Some(cookie) = set_cookie {
        response.headers_mut().append(header::SET_COOKIE, cookie);
    }
    response
}

/// Who approved `request` before in this browser, if remembering is on.
fn remembered_approval(
    headers: &HeaderMap,
    settings: &Settings,
    request: &AuthorizationRequest,
) -> Option<String> {
    if settings.config.consent.remember.is_zero() {
        return None;
    }
    let cookie = cookies::consent(headers, settings)?;
    Remembered::from_cookie(&cookie, &settings.key).find(request)
}

#[derive(Deserialize)]
struct ConsentQuery {
    request: String,
}

/// The sign-in `request` names, waiting for this browser's decision; else the
/// page that says why not (expired or decided, or another browser's).
async fn awaiting_consent(
    facade: &Facade,
    settings: &Settings,
    headers: &HeaderMap,
    request: &str,
) -> Result<(Arc<Pending>, String), Box<Response>> {
    let pending = match facade.pending.get(request).await {
        Ok(Some(pending)) if pending.stage == Stage::AwaitingConsent => pending,
        Ok(_) => return Err(Box::new(expired())),
        Err(error) => return Err(Box::new(error.page())),
    };
    match cookies::browser_id(headers, settings).filter(|id| *id == pending.browser) {
        Some(browser) => Ok((pending, browser)),
        None => Err(Box::new(other_browser())),
    }
}

/// `GET /oauth/consent?request=…`: the page. Reading it changes nothing, so a
/// reload (or a second tab) shows the same page with the same token.
async fn consent_page(
    State(facade): State<Arc<Facade>>,
    peer: Peer,
    headers: HeaderMap,
    axum::extract::Query(query): axum::extract::Query<ConsentQuery>,
) -> Response {
    let settings = facade.settings();
    let (pending, browser) =
        match awaiting_consent(&facade, &settings, &headers, &query.request).await {
            Ok(found) => found,
            Err(response) => return *response,
        };
    let csrf = settings.key.mac("consent", &[&query.request, &browser]);
    let client = &pending.client;
    let verified_host = client.verified_host();
    let redirect_host = redirect_uri::host_of(&pending.request.redirect_uri)
        .unwrap_or_else(|| pending.request.redirect_uri.clone());
    let warnings = warnings(client, verified_host.as_deref(), &redirect_host);
    let client_label = client
        .client_name
        .as_deref()
        .filter(|name| !name.trim().is_empty())
        .unwrap_or(&client.client_id);
    let descriptions = &settings.config.consent.scope_descriptions;
    let action = settings.endpoints.url("consent");
    let kind = kind_text(client.kind, verified_host.as_deref());
    let shown = Event::new(name::CONSENT_SHOWN)
        .client(client)
        .request(&pending.request.scopes, &pending.request.resource)
        .peer(peer);
    facade.audit(shown).await;
    ConsentPage {
        style: ConsentPage::style(),
        client_label,
        name_verified: client.kind == ClientKind::Configured,
        client_id: &client.client_id,
        kind: &kind,
        redirect_host: &redirect_host,
        server_name: &settings.server_name,
        resource: &pending.request.resource,
        scopes: pending
            .request
            .scopes
            .iter()
            .map(|scope| (scope.as_str(), descriptions.get(scope).map(String::as_str)))
            .collect(),
        warnings,
        action: &action,
        request_id: &query.request,
        csrf: &csrf,
    }
    .respond()
}

/// What the user should know before approving.
fn warnings(client: &Client, verified_host: Option<&str>, redirect_host: &str) -> Vec<String> {
    let mut warnings = Vec::new();
    if client.kind == ClientKind::Registered {
        warnings.push(
            "This application registered itself. Its name is not verified: allow it only if you started this sign-in yourself.".to_owned(),
        );
    }
    if let Some(host) = verified_host
        && host != redirect_host
        && !redirect_uri::is_loopback_host(redirect_host)
    {
        warnings.push(format!(
            "This application is published by {host} but sends you back to {redirect_host}."
        ));
    }
    warnings
}

#[derive(Deserialize)]
struct ConsentForm {
    request: String,
    csrf: String,
    decision: String,
}

/// `POST /oauth/consent`: the user's decision, accepted once, only with the token
/// of this sign-in in this browser.
async fn consent_decision(
    State(facade): State<Arc<Facade>>,
    peer: Peer,
    headers: HeaderMap,
    Form(form): Form<ConsentForm>,
) -> Response {
    let settings = facade.settings();
    if !same_origin(&headers, &settings) {
        return page::error_page(
            StatusCode::FORBIDDEN,
            "invalid_request",
            "The form was sent from another site.",
        );
    }
    let (pending, browser) =
        match awaiting_consent(&facade, &settings, &headers, &form.request).await {
            Ok(found) => found,
            Err(response) => return *response,
        };
    if !settings
        .key
        .verify("consent", &[&form.request, &browser], &form.csrf)
    {
        tracing::warn!(client_id = %pending.client.client_id, "consent decision with a wrong CSRF token refused");
        return page::error_page(
            StatusCode::FORBIDDEN,
            "invalid_request",
            "The form does not belong to this sign-in.",
        );
    }
    // Used once: a second submission finds nothing.
    let Some(pending) = (match facade.pending.take(&form.request).await {
        Ok(pending) => pending,
        Err(error) => return error.page(),
    }) else {
        return expired();
    };
    let decided = |event| {
        Event::new(event)
            .client(&pending.client)
            .request(&pending.request.scopes, &pending.request.resource)
            .peer(peer)
    };
    match form.decision.as_str() {
        "approve" => {
            facade.audit(decided(name::CONSENT_APPROVED)).await;
            to_provider(&facade, &settings, &form.request, &pending).await
        }
        "deny" => {
            tracing::info!(client_id = %pending.client.client_id, "consent denied");
            facade.audit(decided(name::CONSENT_DENIED)).await;
            redirect_error(
                &settings,
                &RedirectError {
                    redirect_uri: pending.request.redirect_uri.clone(),
                    state: pending.request.state.clone(),
                    error: "access_denied",
                    description: "the user denied the request".into(),
                },
            )
        }
        _ => page::error_page(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "The form's decision is not one of allow or deny.",
        ),
    }
}

/// Approved: send the browser to the identity provider with mcpgate's own request.
async fn to_provider(
    facade: &Facade,
    settings: &Settings,
    id: &str,
    pending: &Pending,
) -> Response {
    let provider_config = &settings.config.provider;
    let endpoints = match facade
        .discovery
        .endpoints(&facade.http, provider_config)
        .await
    {
        Ok(endpoints) => endpoints,
        Err(error) => {
            tracing::error!("identity provider unavailable: {error}");
            return page::error_page(
                StatusCode::SERVICE_UNAVAILABLE,
                "temporarily_unavailable",
                "The identity provider cannot be reached. Try again in a moment.",
            );
        }
    };
    let state = random_id();
    let nonce = random_id();
    let pkce = Pkce::generate();
    let url = provider::authorization_url(
        &endpoints,
        provider_config,
        &ProviderRequest {
            redirect_uri: &settings.endpoints.url("callback"),
            state: &state,
            nonce: &nonce,
            code_challenge: &pkce.challenge,
            resource: &pending.request.resource,
        },
    );
    let mut at_provider = pending.clone();
    at_provider.stage = Stage::AtProvider {
        state,
        nonce,
        code_verifier: pkce.verifier,
    };
    if let Err(error) = facade.pending.insert(id, at_provider).await {
        return error.page();
    }
    tracing::info!(client_id = %pending.client.client_id, "consent approved; to the identity provider");
    see_other(url.as_str())
}

/// `GET /oauth/callback`: the identity provider's answer (see `callback`).
async fn callback(
    State(facade): State<Arc<Facade>>,
    peer: Peer,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let settings = facade.settings();
    let Some(params) = CallbackParams::from_query(query.as_deref().unwrap_or("")) else {
        let refused = Event::new(name::CALLBACK_REFUSED)
            .peer(peer)
            .error("invalid_request")
            .reason("a parameter repeated");
        facade.audit(refused).await;
        return page::error_page(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "The identity provider's answer repeats a parameter.",
        );
    };
    let browser = cookies::browser_id(&headers, &settings);
    let remembered = cookies::consent(&headers, &settings)
        .map(|cookie| Remembered::from_cookie(&cookie, &settings.key))
        .unwrap_or_default();
    callback::complete(&facade, &settings, params, browser, remembered, peer).await
}

/// A form post's `Origin`, when the browser sent one, must be the issuer's.
fn same_origin(headers: &HeaderMap, settings: &Settings) -> bool {
    let Some(origin) = headers.get(header::ORIGIN) else {
        return true;
    };
    let Ok(issuer) = Url::parse(&settings.endpoints.issuer) else {
        return false;
    };
    origin
        .to_str()
        .is_ok_and(|origin| origin == issuer.origin().ascii_serialization())
}

fn unverified(error: &PageError) -> Response {
    if let PageError::Unavailable(cause) = error {
        return Unavailable(cause.clone()).page();
    }
    tracing::info!("authorization request refused: {error}");
    page::error_page(
        StatusCode::BAD_REQUEST,
        unverified_code(error),
        &error.to_string(),
    )
}

fn unverified_code(error: &PageError) -> &'static str {
    match error {
        PageError::UnknownClient(_) | PageError::MetadataDocument(_) => "invalid_client",
        _ => "invalid_request",
    }
}
