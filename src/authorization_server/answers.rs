//! Answers the façade's handlers share: a `303` that is never cached, an error
//! sent back to the client's verified redirect URI, and the pages for a sign-in
//! that is gone or belongs to another browser.

use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};
use url::Url;

use super::authorize::RedirectError;
use super::page;
use super::settings::Settings;

/// An error sent back to the client's verified redirect URI, with `state` and `iss`.
pub(super) fn redirect_error(settings: &Settings, error: &RedirectError) -> Response {
    let Ok(mut url) = Url::parse(&error.redirect_uri) else {
        return page::error_page(StatusCode::BAD_REQUEST, error.error, &error.description);
    };
    {
        let mut query = url.query_pairs_mut();
        query
            .append_pair("error", error.error)
            .append_pair("error_description", &error.description);
        if let Some(state) = &error.state {
            query.append_pair("state", state);
        }
        query.append_pair("iss", &settings.endpoints.issuer);
    }
    see_other(url.as_str())
}

pub(super) fn expired() -> Response {
    page::error_page(
        StatusCode::BAD_REQUEST,
        "invalid_request",
        "This sign-in has expired or was already completed.",
    )
}

pub(super) fn other_browser() -> Response {
    page::error_page(
        StatusCode::FORBIDDEN,
        "invalid_request",
        "This sign-in was started in another browser.",
    )
}

pub(super) fn see_other(location: &str) -> Response {
    match HeaderValue::from_str(location) {
        Ok(value) => {
            let mut response = StatusCode::SEE_OTHER.into_response();
            response.headers_mut().insert(header::LOCATION, value);
            response
                .headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            response
        }
        Err(_) => page::error_page(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "The redirect target is not a valid URL.",
        ),
    }
}
