//! The façade's two cookies: one that ties a sign-in to the browser that started
//! it, and one that remembers the consents given in that browser. Both are
//! `HttpOnly`, `SameSite=Lax` (sent on the provider's redirect back, a top-level
//! navigation, never on a cross-site form post) and, over https, `Secure` with the
//! `__Host-` prefix (no `Domain`, path `/`).

use http::{HeaderMap, HeaderValue, header};

use super::settings::Settings;

/// The cookie that ties a sign-in to the browser that started it.
const BROWSER_COOKIE: &str = "mcpgate_browser";
/// With `Secure`, the `__Host-` prefix also forbids a `Domain` and any path but `/`.
const SECURE_BROWSER_COOKIE: &str = "__Host-mcpgate_browser";
/// A browser cookie's life: long enough for a sign-in, not a tracking id.
const BROWSER_COOKIE_MAX_AGE: u32 = 3600;
/// The remembered-consent cookie (see `remembered`).
const CONSENT_COOKIE: &str = "mcpgate_consent";
/// Its name over https.
const SECURE_CONSENT_COOKIE: &str = "__Host-mcpgate_consent";

/// The browser id from its cookie, if it sent one that looks like ours.
pub(crate) fn browser_id(headers: &HeaderMap, settings: &Settings) -> Option<String> {
    named(headers, cookie_name(settings)).filter(|value| {
        value.len() == 43
            && value
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    })
}

fn cookie_name(settings: &Settings) -> &'static str {
    if settings.secure_cookies {
        SECURE_BROWSER_COOKIE
    } else {
        BROWSER_COOKIE
    }
}

/// `SameSite=Lax`: sent on the provider's redirect back (a top-level navigation),
/// never on a cross-site form post.
pub(crate) fn browser_cookie(settings: &Settings, value: &str) -> HeaderValue {
    let secure = if settings.secure_cookies {
        "; Secure"
    } else {
        ""
    };
    let text = format!(
        "{}={value}; Path=/; Max-Age={BROWSER_COOKIE_MAX_AGE}; HttpOnly; SameSite=Lax{secure}",
        cookie_name(settings)
    );
    HeaderValue::from_str(&text).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// The value of the remembered-consent cookie, if the browser sent one.
pub(crate) fn consent(headers: &HeaderMap, settings: &Settings) -> Option<String> {
    let name = if settings.secure_cookies {
        SECURE_CONSENT_COOKIE
    } else {
        CONSENT_COOKIE
    };
    named(headers, name)
}

/// The remembered-consent cookie with `value`, kept `max_age` seconds.
pub(crate) fn consent_cookie(settings: &Settings, value: &str, max_age: u64) -> HeaderValue {
    let (name, secure) = if settings.secure_cookies {
        (SECURE_CONSENT_COOKIE, "; Secure")
    } else {
        (CONSENT_COOKIE, "")
    };
    let text = format!("{name}={value}; Path=/; Max-Age={max_age}; HttpOnly; SameSite=Lax{secure}");
    HeaderValue::from_str(&text).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// The value of the cookie `name`, from any `Cookie` header.
fn named(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(cookie::Cookie::split_parse)
        .filter_map(Result::ok)
        .find(|cookie| cookie.name() == name)
        .map(|cookie| cookie.value().to_owned())
}
