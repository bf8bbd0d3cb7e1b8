//! `POST {issuer}/oauth/register` (RFC 7591 §3): the HTTP side of dynamic client
//! registration. In order: the per-address limit (before anything costs work),
//! the initial access token, the body's size, its metadata; then a fresh client
//! id, and for a confidential client a secret shown once and kept only as an
//! argon2id hash.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use argon2::{Argon2, PasswordHasher};
use aws_lc_rs::constant_time::verify_slices_are_equal;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, HeaderValue, StatusCode, header};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use super::clients::{Client, ClientKind};
use super::events::{Event, Peer, name};
use super::random::random_id;
use super::registration::metadata::{self, Registration};
use super::settings::Facade;

/// Largest registration body read; real ones are a few hundred bytes.
const MAX_BODY: usize = 16 * 1024;

pub(super) async fn register(State(facade): State<Arc<Facade>>, request: Request) -> Response {
    let settings = facade.settings();
    let config = &settings.config.registration;
    // The listener records every connection's peer; without one (never in
    // practice) all such requests share one budget.
    let peer =
        super::events::client_ip(request.extensions()).unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
    let refused = |error: &'static str, reason: &str| refused_record(peer, error, reason);
    if let Err(wait) = facade.registrations.check(peer, config.per_ip_per_minute) {
        tracing::warn!(%peer, "client registration refused: too many from this address");
        facade
            .audit(refused("too_many_requests", "too many from this address"))
            .await;
        let mut response = error(
            StatusCode::TOO_MANY_REQUESTS,
            "too_many_requests",
            "too many registrations from this address; try again later",
        );
        let seconds = wait.as_secs().max(1);
        if let Ok(value) = HeaderValue::from_str(&seconds.to_string()) {
            response.headers_mut().insert(header::RETRY_AFTER, value);
        }
        return response;
    }
    if let Some(expected) = &config.initial_access_token
        && !bearer_matches(request.headers(), expected.expose())
    {
        tracing::warn!(%peer, "client registration refused: no or a wrong initial access token");
        facade
            .audit(refused(
                "invalid_token",
                "no or a wrong initial access token",
            ))
            .await;
        let mut response = error(
            StatusCode::UNAUTHORIZED,
            "invalid_token",
            "registration needs the initial access token as a Bearer token",
        );
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer error=\"invalid_token\""),
        );
        return response;
    }
    let Ok(body) = axum::body::to_bytes(request.into_body(), MAX_BODY).await else {
        facade
            .audit(refused("invalid_client_metadata", "larger than 16 KiB"))
            .await;
        return error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "invalid_client_metadata",
            "the registration is larger than 16 KiB",
        );
    };
    let registration = match metadata::parse(&body, &settings.config.allowed_redirect_schemes) {
        Ok(registration) => registration,
        Err(refused) => {
            tracing::info!(%peer, "client registration refused: {refused}");
            let record = refused_record(peer, refused.code, &refused.description);
            facade.audit(record).await;
            return error(StatusCode::BAD_REQUEST, refused.code, &refused.description);
        }
    };
    let secret = registration.auth_method.has_secret().then(random_id);
    let secret_hash = match &secret {
        Some(secret) => match hash(secret.clone()).await {
            Some(hash) => Some(hash),
            None => {
                return error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "server_error",
                    "the client could not be registered",
                );
            }
        },
        None => None,
    };
    let client_id = random_id();
    let client = Client {
        client_id: client_id.clone(),
        client_name: registration.client_name.clone(),
        redirect_uris: registration.redirect_uris.clone(),
        kind: ClientKind::Registered,
        secret_hash,
    };
    let registered = Event::new(name::CLIENT_REGISTERED)
        .client(&client)
        .peer(Peer(Some(peer)));
    if facade.registered.insert(client).await.is_err() {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "temporarily_unavailable",
            "the client could not be registered; try again in a moment",
        );
    }
    facade.audit(registered).await;
    tracing::info!(
        %peer,
        client_id,
        client_name = registration.client_name.as_deref().unwrap_or(""),
        auth_method = registration.auth_method.as_str(),
        "client registered"
    );
    let body = response_body(&client_id, secret.as_deref(), &registration);
    json_response(StatusCode::CREATED, &body)
}

/// The record of a refused registration.
fn refused_record(peer: IpAddr, error: &'static str, reason: &str) -> Event {
    Event::new(name::REGISTRATION_REFUSED)
        .peer(Peer(Some(peer)))
        .error(error)
        .reason(reason)
}

/// Whether `Authorization: Bearer <token>` carries `expected`. The digests are
/// compared in constant time, so neither the content nor the length leaks.
fn bearer_matches(headers: &HeaderMap, expected: &str) -> bool {
    let Some(token) = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| {
            let (scheme, token) = value.split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
        })
    else {
        return false;
    };
    verify_slices_are_equal(
        &Sha256::digest(token.as_bytes()),
        &Sha256::digest(expected.as_bytes()),
    )
    .is_ok()
}

/// The argon2id hash of a new secret, off the async workers (it is slow on purpose).
async fn hash(secret: String) -> Option<String> {
    let hashed = tokio::task::spawn_blocking(move || {
        Argon2::default()
            .hash_password(secret.as_bytes())
            .map(|hash| hash.to_string())
    })
    .await;
    match hashed {
        Ok(Ok(hash)) => Some(hash),
        Ok(Err(error)) => {
            tracing::error!("client secret could not be hashed: {error}");
            None
        }
        Err(error) => {
            tracing::error!("client secret hashing failed: {error}");
            None
        }
    }
}

/// The RFC 7591 §3.2.1 response: the client's id, its secret once, and what was
/// registered.
fn response_body(client_id: &str, secret: Option<&str>, registration: &Registration) -> Value {
    let mut body = Map::new();
    body.insert("client_id".into(), json!(client_id));
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_secs());
    body.insert("client_id_issued_at".into(), json!(now));
    if let Some(secret) = secret {
        body.insert("client_secret".into(), json!(secret));
        // 0: the secret does not expire.
        body.insert("client_secret_expires_at".into(), json!(0));
    }
    body.insert("redirect_uris".into(), json!(registration.redirect_uris));
    body.insert("grant_types".into(), json!(registration.grant_types));
    body.insert("response_types".into(), json!(registration.response_types));
    body.insert(
        "token_endpoint_auth_method".into(),
        json!(registration.auth_method.as_str()),
    );
    if let Some(name) = &registration.client_name {
        body.insert("client_name".into(), json!(name));
    }
    Value::Object(body)
}

fn error(status: StatusCode, code: &str, description: &str) -> Response {
    json_response(
        status,
        &json!({"error": code, "error_description": description}),
    )
}

/// JSON that carries a secret or concerns one: never cached (RFC 7591 §3.2.1).
fn json_response(status: StatusCode, body: &Value) -> Response {
    let mut response = (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response();
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_initial_access_token_must_match_exactly() {
        let expected = "a-long-initial-token";
        let with = |value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(header::AUTHORIZATION, HeaderValue::from_str(value).unwrap());
            headers
        };
        assert!(bearer_matches(
            &with("Bearer a-long-initial-token"),
            expected
        ));
        assert!(bearer_matches(
            &with("bearer a-long-initial-token"),
            expected
        ));
        assert!(!bearer_matches(
            &with("Bearer a-long-initial-toke"),
            expected
        ));
        assert!(!bearer_matches(
            &with("Bearer a-long-initial-tokenx"),
            expected
        ));
        assert!(!bearer_matches(
            &with("Basic a-long-initial-token"),
            expected
        ));
        assert!(!bearer_matches(&HeaderMap::new(), expected));
    }
}
