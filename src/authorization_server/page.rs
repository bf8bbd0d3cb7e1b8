//! The two HTML pages the façade shows (consent and error), and the headers every
//! one of them carries: no script at all, no framing (clickjacking a consent page
//! is approving for the user), no referrer to other sites (the URL holds a request
//! id), no caching.

use askama::Template;
use axum::response::{Html, IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use http::{HeaderValue, StatusCode, header};
use sha2::{Digest, Sha256};

use super::clients::ClientKind;

/// The one style sheet, inline (the pages load nothing else).
const STYLE: &str = include_str!("../../templates/authorization_server/style.css");

/// The consent page.
#[derive(Template)]
#[template(path = "authorization_server/consent.html")]
pub(crate) struct ConsentPage<'a> {
    pub(crate) style: &'a str,
    pub(crate) client_label: &'a str,
    pub(crate) name_verified: bool,
    pub(crate) client_id: &'a str,
    pub(crate) kind: &'a str,
    pub(crate) redirect_host: &'a str,
    pub(crate) server_name: &'a str,
    pub(crate) resource: &'a str,
    /// Each requested scope with the operator's description of it.
    pub(crate) scopes: Vec<(&'a str, Option<&'a str>)>,
    pub(crate) warnings: Vec<String>,
    pub(crate) action: &'a str,
    pub(crate) request_id: &'a str,
    pub(crate) csrf: &'a str,
}

/// The error page for problems that must not be redirected to the client.
#[derive(Template)]
#[template(path = "authorization_server/error.html")]
struct ErrorPage<'a> {
    style: &'a str,
    message: &'a str,
    code: &'a str,
}

/// A page that only tells something (the connect flow's outcome).
#[derive(Template)]
#[template(path = "authorization_server/notice.html")]
struct NoticePage<'a> {
    style: &'a str,
    title: &'a str,
    message: &'a str,
}

/// A plain page with a title and one paragraph, with the page headers.
pub(crate) fn notice_page(status: StatusCode, title: &str, message: &str) -> Response {
    let page = NoticePage {
        style: STYLE,
        title,
        message,
    };
    let html = page.render().unwrap_or_else(|_| title.to_owned());
    with_page_headers(status, html)
}

/// A user's connection, with the disconnect form (the connect flow's manage page).
#[derive(Template)]
#[template(path = "authorization_server/manage.html")]
struct ManagePage<'a> {
    style: &'a str,
    name: &'a str,
    connected: bool,
    action: &'a str,
    form: &'a str,
}

/// The manage page, with the page headers.
pub(crate) fn manage_page(name: &str, connected: bool, action: &str, form: &str) -> Response {
    let page = ManagePage {
        style: STYLE,
        name,
        connected,
        action,
        form,
    };
    match page.render() {
        Ok(html) => with_page_headers(StatusCode::OK, html),
        Err(_) => error_page(
            StatusCode::INTERNAL_SERVER_ERROR,
            "server_error",
            "The page could not be shown.",
        ),
    }
}

/// How the page describes the way a client became known.
pub(crate) fn kind_text(kind: ClientKind, verified_host: Option<&str>) -> String {
    match (kind, verified_host) {
        (ClientKind::Configured, _) => "listed by the administrator of this server".into(),
        (ClientKind::MetadataDocument, Some(host)) => {
            format!("published by {host} (its client ID is a document there)")
        }
        (ClientKind::MetadataDocument, None) => "a client metadata document".into(),
        (ClientKind::Registered, _) => {
            "registered itself with this server; nobody has verified who runs it".into()
        }
    }
}

impl ConsentPage<'_> {
    pub(crate) fn style() -> &'static str {
        STYLE
    }

    /// The page as a `200` with the page headers.
    pub(crate) fn respond(&self) -> Response {
        match self.render() {
            Ok(html) => with_page_headers(StatusCode::OK, html),
            Err(error) => {
                tracing::error!("consent page did not render: {error}");
                error_page(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "server_error",
                    "The page could not be shown.",
                )
            }
        }
    }
}

/// An error page with `status`; `code` is the OAuth error code, shown for support.
pub(crate) fn error_page(status: StatusCode, code: &str, message: &str) -> Response {
    let page = ErrorPage {
        style: STYLE,
        message,
        code,
    };
    let html = page
        .render()
        .unwrap_or_else(|_| "Sign-in cannot continue.".to_owned());
    with_page_headers(status, html)
}

fn with_page_headers(status: StatusCode, html: String) -> Response {
    let mut response = (status, Html(html)).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_SECURITY_POLICY, content_security_policy());
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    // Not `no-referrer`: under it browsers send `Origin: null` with the consent
    // form, and the same-origin check refuses the user's own decision.
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}

/// Nothing may load but the inline style sheet, named by its digest; no script
/// runs; no page may frame this one. `form-action` is left out on purpose: the
/// consent form's answer redirects to the identity provider or the client, and
/// browsers apply `form-action` to that redirect.
fn content_security_policy() -> HeaderValue {
    let digest = STANDARD.encode(Sha256::digest(STYLE.as_bytes()));
    let policy = format!(
        "default-src 'none'; style-src 'sha256-{digest}'; frame-ancestors 'none'; base-uri 'none'"
    );
    HeaderValue::from_str(&policy)
        .unwrap_or_else(|_| HeaderValue::from_static("default-src 'none'; frame-ancestors 'none'"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page<'a>(name: &'a str, warnings: Vec<String>) -> ConsentPage<'a> {
        ConsentPage {
            style: STYLE,
            client_label: name,
            name_verified: false,
            client_id: "https://client.example/meta.json",
            kind: "published by client.example",
            redirect_host: "client.example",
            server_name: "Tools",
            resource: "https://mcp.example.com/mcp",
            scopes: vec![("mcp:read", Some("Read <things>")), ("mcp:write", None)],
            warnings,
            action: "/oauth/consent",
            request_id: "req",
            csrf: "tok",
        }
    }

    #[test]
    fn everything_the_client_controls_is_escaped() {
        let html = page("<script>alert(1)</script>", vec!["careful & <b>".into()])
            .render()
            .unwrap();
        assert!(!html.contains("<script>"), "{html}");
        assert!(
            html.contains("&#60;script&#62;") || html.contains("&lt;script&gt;"),
            "{html}"
        );
        assert!(!html.contains("<b>"));
        assert!(html.contains("name=\"csrf\" value=\"tok\""));
        assert!(html.contains("mcp:read"));
        assert!(!html.contains("Read <things>"));
    }

    #[test]
    fn pages_carry_the_security_headers() {
        let response = page("Tool", vec![]).respond();
        let headers = response.headers();
        let csp = headers[header::CONTENT_SECURITY_POLICY].to_str().unwrap();
        assert!(csp.contains("default-src 'none'"));
        assert!(csp.contains("frame-ancestors 'none'"));
        assert!(!csp.contains("script-src"));
        assert_eq!(headers[header::X_FRAME_OPTIONS], "DENY");
        assert_eq!(headers[header::REFERRER_POLICY], "same-origin");
        assert_eq!(headers[header::CACHE_CONTROL], "no-store");
        let error = error_page(StatusCode::BAD_REQUEST, "invalid_request", "<x>");
        assert_eq!(error.status(), StatusCode::BAD_REQUEST);
        assert_eq!(error.headers()[header::X_FRAME_OPTIONS], "DENY");
    }
}
