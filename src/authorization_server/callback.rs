//! `GET /oauth/callback`: the identity provider sends the browser back here. The
//! sign-in is found by the provider `state` (once), must come back to the browser
//! that started it (a callback carried into another browser is login CSRF), and
//! only then is the provider's answer read: its error goes to the client, its code
//! is redeemed, the user named by a checked ID token (or `userinfo`), and the
//! client gets an mcpgate code for the grant.

use std::time::{SystemTime, UNIX_EPOCH};

use axum::response::Response;
use http::StatusCode;
use serde_json::{Map, Value};
use url::Url;

use super::answers::{expired, other_browser, redirect_error, see_other};
use super::authorize::RedirectError;
use super::cookies;
use super::events::{Event, Peer, name};
use super::exchange::{self, ExchangeError, Redemption};
use super::grants::Grant;
use super::id_token::{self, Expected};
use super::page;
use super::pending::{Pending, Stage};
use super::provider::ProviderEndpoints;
use super::remembered::{Remembered, subject_digest};
use super::settings::{Facade, Settings};

/// The callback's query, each parameter at most once.
#[derive(Default)]
pub(super) struct CallbackParams {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
    iss: Option<String>,
}

impl CallbackParams {
    /// `None` when a parameter mcpgate reads comes twice (which value the
    /// provider meant is unknown).
    pub(super) fn from_query(query: &str) -> Option<Self> {
        let mut params = Self::default();
        for (name, value) in url::form_urlencoded::parse(query.as_bytes()) {
            let slot = match name.as_ref() {
                "code" => &mut params.code,
                "state" => &mut params.state,
                "error" => &mut params.error,
                "iss" => &mut params.iss,
                _ => continue,
            };
            if slot.replace(value.into_owned()).is_some() {
                return None;
            }
        }
        Some(params)
    }
}

/// What the callback answers, given the browser's id from its cookie.
pub(super) async fn complete(
    facade: &Facade,
    settings: &Settings,
    params: CallbackParams,
    browser: Option<String>,
    mut remembered: Remembered,
    peer: Peer,
) -> Response {
    let refused = |error: &'static str, reason: &str| {
        Event::new(name::CALLBACK_REFUSED)
            .peer(peer)
            .error(error)
            .reason(reason)
    };
    let Some(state) = params.state.as_deref() else {
        tracing::warn!("identity provider callback without state refused");
        facade.audit(refused("invalid_request", "no state")).await;
        return expired();
    };
    // Taken before anything else is checked: whatever follows, it is spent.
    let taken = match facade.pending.take_by_provider_state(state).await {
        Ok(taken) => taken,
        Err(error) => return error.page(),
    };
    let Some((_, pending)) = taken else {
        tracing::warn!("identity provider callback with an unknown or used state refused");
        facade
            .audit(refused("invalid_request", "unknown or used state"))
            .await;
        return expired();
    };
    let client_id = &pending.client.client_id;
    // What is known of the sign-in from here on.
    let refused = |error: &'static str, reason: &str| {
        refused(error, reason)
            .client(&pending.client)
            .request(&pending.request.scopes, &pending.request.resource)
    };
    if browser.as_deref() != Some(pending.browser.as_str()) {
        tracing::warn!(%client_id, "identity provider callback in another browser refused");
        facade
            .audit(refused("invalid_request", "another browser"))
            .await;
        return other_browser();
    }
    let Stage::AtProvider {
        nonce,
        code_verifier,
        ..
    } = &pending.stage
    else {
        facade
            .audit(refused("invalid_request", "no sign-in at the provider"))
            .await;
        return expired();
    };
    let provider = &settings.config.provider;
    let endpoints = match facade.discovery.endpoints(&facade.http, provider).await {
        Ok(endpoints) => endpoints,
        Err(error) => {
            tracing::warn!(%client_id, "identity provider unavailable at the callback: {error}");
            facade
                .audit(refused("temporarily_unavailable", &error.to_string()))
                .await;
            return provider_failure(&ExchangeError::Unreachable(error.to_string()));
        }
    };
    // RFC 9207: an answer naming another issuer, or none from a provider that
    // always names itself, is a mix-up; nothing of it is used.
    let wrong_issuer = match &params.iss {
        Some(iss) => !id_token::same_issuer(iss, &endpoints.issuer),
        None => endpoints.sends_iss,
    };
    if wrong_issuer {
        tracing::warn!(%client_id, "identity provider callback from another issuer refused");
        facade
            .audit(refused("invalid_request", "another issuer (RFC 9207)"))
            .await;
        return page::error_page(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "The answer did not come from the identity provider this server uses.",
        );
    }
    if let Some(error) = &params.error {
        let code = exchange::error_code(error);
        tracing::warn!(%client_id, provider_error = %code, "the identity provider did not sign the user in");
        facade
            .audit(refused(
                client_error(&code),
                &format!("the identity provider answered {code}"),
            ))
            .await;
        return redirect_error(
            settings,
            &RedirectError {
                redirect_uri: pending.request.redirect_uri.clone(),
                state: pending.request.state.clone(),
                error: client_error(&code),
                description: format!("the identity provider answered {code}"),
            },
        );
    }
    let Some(code) = params.code.as_deref().filter(|code| !code.is_empty()) else {
        tracing::warn!(%client_id, "identity provider callback without code refused");
        facade
            .audit(refused("invalid_request", "neither code nor error"))
            .await;
        return page::error_page(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "The identity provider sent neither a code nor an error.",
        );
    };
    let (subject, claims) = match sign_in(
        facade,
        settings,
        &endpoints,
        &pending,
        code,
        nonce,
        code_verifier,
    )
    .await
    {
        Ok(signed_in) => signed_in,
        Err(error) => {
            tracing::warn!(%client_id, "sign-in at the identity provider failed: {error}");
            facade
                .audit(refused("server_error", &error.to_string()))
                .await;
            return provider_failure(&error);
        }
    };
    let request = &pending.request;
    let remember = settings.config.consent.remember;
    if let Some(approved_by) = &pending.remembered_for
        && *approved_by != subject_digest(&subject)
    {
        // The page was skipped for someone else's approval: start again, and this
        // time the page is shown.
        tracing::warn!(%client_id, "a remembered consent was another user's; sign-in refused");
        facade
            .audit(
                refused("access_denied", "a remembered consent was another user's")
                    .subject(&subject),
            )
            .await;
        remembered.forget(request);
        let mut response = page::error_page(
            StatusCode::FORBIDDEN,
            "access_denied",
            "This browser remembered an approval by another account. Start the sign-in again from the application to see the consent page.",
        );
        response.headers_mut().append(
            http::header::SET_COOKIE,
            cookies::consent_cookie(
                settings,
                &remembered.to_cookie(&settings.key),
                remember.as_secs(),
            ),
        );
        return response;
    }
    let scopes = settings.scope_limit.granted(&request.scopes, &claims);
    if scopes.len() < request.scopes.len() {
        tracing::info!(%client_id, %subject, granted = %scopes.join(" "), "some requested scopes withheld: the user's claims do not allow them");
    }
    let grant = Grant::new(
        client_id.clone(),
        subject.clone(),
        request.resource.clone(),
        scopes,
    );
    let issued = Event::new(name::CODE_ISSUED)
        .client(&pending.client)
        .grant(&grant)
        .peer(peer);
    let code = match facade
        .grants
        .issue_code(
            grant,
            request.redirect_uri.clone(),
            request.code_challenge.clone(),
        )
        .await
    {
        Ok(code) => code,
        Err(error) => return error.page(),
    };
    tracing::info!(%client_id, %subject, "signed in at the identity provider; code issued");
    facade.audit(issued).await;
    let Ok(mut url) = Url::parse(&request.redirect_uri) else {
        return expired();
    };
    {
        let mut query = url.query_pairs_mut();
        query.append_pair("code", &code);
        if let Some(state) = &request.state {
            query.append_pair("state", state);
        }
        query.append_pair("iss", &settings.endpoints.issuer);
    }
    let mut response = see_other(url.as_str());
    if !remember.is_zero() {
        remembered.insert(request, &subject, remember);
        response.headers_mut().append(
            http::header::SET_COOKIE,
            cookies::consent_cookie(
                settings,
                &remembered.to_cookie(&settings.key),
                remember.as_secs(),
            ),
        );
    }
    response
}

/// Redeems the provider's code and names the user.
async fn sign_in(
    facade: &Facade,
    settings: &Settings,
    endpoints: &ProviderEndpoints,
    pending: &Pending,
    code: &str,
    nonce: &str,
    code_verifier: &str,
) -> Result<(String, Map<String, Value>), ExchangeError> {
    let provider = &settings.config.provider;
    let redirect_uri = settings.endpoints.url("callback");
    let tokens = exchange::redeem(
        &facade.http,
        endpoints,
        provider,
        &Redemption {
            code,
            redirect_uri: &redirect_uri,
            code_verifier,
            resource: &pending.request.resource,
        },
    )
    .await?;
    let openid = provider.scopes.iter().any(|scope| scope == "openid");
    match (&tokens.id_token, openid) {
        (Some(token), _) => {
            let jwks_uri = endpoints.jwks_uri.as_ref().ok_or_else(|| {
                ExchangeError::Answer("an ID token came but the provider has no jwks_uri".into())
            })?;
            let kid = id_token::kid_of(token);
            let keys = facade
                .provider_keys
                .get(&facade.http, jwks_uri, provider.timeout, kid.as_deref())
                .await
                .map_err(ExchangeError::Unreachable)?;
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |elapsed| elapsed.as_secs());
            id_token::verify(
                token,
                &keys.0,
                &Expected {
                    issuer: &endpoints.issuer,
                    client_id: &provider.client_id,
                    nonce,
                },
                now,
            )
            .map_err(|error| ExchangeError::Answer(error.to_string()))
        }
        // OpenID Connect Core §3.1.3.3: asked for, the ID token must come.
        (None, true) => Err(ExchangeError::Answer(
            "the token response has no id_token though openid was asked for".into(),
        )),
        (None, false) => {
            let url = endpoints.userinfo_endpoint.as_ref().ok_or_else(|| {
                ExchangeError::Answer(
                    "no ID token and no userinfo_endpoint to name the user".into(),
                )
            })?;
            exchange::userinfo_subject(&facade.http, url, provider, &tokens.access_token).await
        }
    }
}

/// The client's error for the provider's: the user's refusal stays a refusal, an
/// outage stays temporary, and the rest is mcpgate's problem with the provider.
fn client_error(provider_code: &str) -> &'static str {
    match provider_code {
        "access_denied"
        | "login_required"
        | "consent_required"
        | "interaction_required"
        | "account_selection_required" => "access_denied",
        "temporarily_unavailable" => "temporarily_unavailable",
        _ => "server_error",
    }
}

/// The page for a provider that failed: 502, its error code, nothing of its tokens.
fn provider_failure(error: &ExchangeError) -> Response {
    page::error_page(
        StatusCode::BAD_GATEWAY,
        error.code(),
        "The identity provider did not complete the sign-in. Start again from the application.",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_repeated_parameter_is_refused() {
        assert!(CallbackParams::from_query("code=a&state=b").is_some());
        assert!(CallbackParams::from_query("code=a&state=b&state=c").is_none());
        assert!(CallbackParams::from_query("code=a&x=1&x=2").is_some());
    }

    #[test]
    fn provider_errors_map_to_what_the_client_should_do() {
        assert_eq!(client_error("access_denied"), "access_denied");
        assert_eq!(client_error("login_required"), "access_denied");
        assert_eq!(
            client_error("temporarily_unavailable"),
            "temporarily_unavailable"
        );
        assert_eq!(client_error("invalid_scope"), "server_error");
    }
}
