//! The authorization-server façade's test helpers, shared by the files that sign
//! users in through it: a browser that follows no redirects, the steps of a
//! sign-in (authorization request, consent, the provider's callback), and an
//! OpenID provider in the test process.

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::State;
use axum::routing::{get, post};
use http::HeaderMap;
use jsonwebtoken::Algorithm;
use reqwest::header::{COOKIE, LOCATION, SET_COOKIE};
use reqwest::redirect::Policy;
use serde_json::{Value, json};
use url::Url;

use super::{Gateway, Keys, now, spawn_router};

pub const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
pub const CLIENT_REDIRECT: &str = "http://127.0.0.1/callback";

pub fn browser() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .redirect(Policy::none())
        .build()
        .unwrap()
}

pub fn authorize_url(gateway: &Gateway, extra: &str) -> String {
    format!(
        "{}/oauth/authorize?response_type=code&client_id=tool&redirect_uri={}&code_challenge={CHALLENGE}&code_challenge_method=S256&state=st8&scope=mcp:read%20mcp:write{extra}",
        gateway.base,
        urlencode(CLIENT_REDIRECT),
    )
}

pub fn urlencode(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

pub fn form(fields: &[(&str, &str)]) -> String {
    let mut form = url::form_urlencoded::Serializer::new(String::new());
    for (name, value) in fields {
        form.append_pair(name, value);
    }
    form.finish()
}

pub fn location(response: &reqwest::Response) -> Url {
    let location = response.headers()[LOCATION].to_str().unwrap();
    Url::parse(location).unwrap()
}

pub fn query(url: &Url, name: &str) -> Option<String> {
    url.query_pairs()
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.into_owned())
}

/// A sign-in that reached the consent page: its URL, request id, the browser's
/// cookie and the page's CSRF token.
pub struct AtConsent {
    pub page_url: String,
    pub request: String,
    pub cookie: String,
    pub csrf: String,
}

pub async fn to_consent(gateway: &Gateway) -> AtConsent {
    to_consent_with(gateway, "").await
}

/// [`to_consent`] with `extra` query parameters (`&resource=…`) on the
/// authorization request.
pub async fn to_consent_with(gateway: &Gateway, extra: &str) -> AtConsent {
    let client = browser();
    let response = client
        .get(authorize_url(gateway, extra))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 303);
    let cookie = response.headers()[SET_COOKIE].to_str().unwrap().to_owned();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Lax"),
        "{cookie}"
    );
    let cookie = cookie.split(';').next().unwrap().to_owned();
    let page_url = location(&response);
    assert_eq!(page_url.path(), "/oauth/consent");
    let request = query(&page_url, "request").unwrap();
    let page = client
        .get(page_url.as_str())
        .header(COOKIE, &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    AtConsent {
        page_url: page_url.to_string(),
        request,
        cookie,
        csrf: csrf_of(&html),
    }
}

pub fn csrf_of(html: &str) -> String {
    let marker = "name=\"csrf\" value=\"";
    let start = html.find(marker).unwrap() + marker.len();
    html[start..].split('"').next().unwrap().to_owned()
}

pub async fn decide(
    gateway: &Gateway,
    request: &str,
    cookie: Option<&str>,
    csrf: &str,
    decision: &str,
) -> reqwest::Response {
    let mut post = browser()
        .post(format!("{}/oauth/consent", gateway.base))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form(&[
            ("request", request),
            ("csrf", csrf),
            ("decision", decision),
        ]));
    if let Some(cookie) = cookie {
        post = post.header(COOKIE, cookie);
    }
    post.send().await.unwrap()
}

/// One request at the fake provider's token endpoint: its `Authorization` header and form.
pub type TokenRequest = (Option<String>, Vec<(String, String)>);
pub type Received = Arc<Mutex<Vec<TokenRequest>>>;

/// An OpenID provider in the test process: discovery, a token endpoint answering
/// whatever the test set, and a JWKS with the test RSA key as `rsa-1`.
pub struct FakeProvider {
    pub issuer: String,
    pub answer: Arc<Mutex<Value>>,
    pub received: Received,
}

#[derive(Clone)]
pub struct ProviderState {
    pub answer: Arc<Mutex<Value>>,
    pub received: Received,
}

impl FakeProvider {
    pub async fn start() -> Self {
        let answer = Arc::new(Mutex::new(json!({"error": "invalid_grant"})));
        let received: Received = Arc::default();
        let state = ProviderState {
            answer: Arc::clone(&answer),
            received: Arc::clone(&received),
        };
        let router = Router::new()
            .route(
                "/.well-known/openid-configuration",
                // The issuer is the address it was asked at (the port is known only
                // once the router is served).
                get(|headers: HeaderMap| async move {
                    let issuer = format!("http://{}", headers["host"].to_str().unwrap());
                    axum::Json(json!({
                        "issuer": issuer,
                        "authorization_response_iss_parameter_supported": true,
                        "authorization_endpoint": format!("{issuer}/authorize"),
                        "token_endpoint": format!("{issuer}/token"),
                        "jwks_uri": format!("{issuer}/jwks"),
                    }))
                }),
            )
            .route(
                "/token",
                post(
                    |State(state): State<ProviderState>, headers: HeaderMap, body: String| async move {
                        let authorization = headers
                            .get("authorization")
                            .map(|value| value.to_str().unwrap().to_owned());
                        let form = url::form_urlencoded::parse(body.as_bytes())
                            .into_owned()
                            .collect();
                        state.received.lock().unwrap().push((authorization, form));
                        let answer = state.answer.lock().unwrap().clone();
                        let status = if answer.get("error").is_some() { 400 } else { 200 };
                        (
                            http::StatusCode::from_u16(status).unwrap(),
                            axum::Json(answer),
                        )
                    },
                ),
            )
            .route(
                "/jwks",
                get(|| async { axum::Json(Keys::load().jwks()) }),
            )
            // GitHub-like: the user's id is a number, under `id`.
            .route(
                "/userinfo",
                get(|headers: HeaderMap| async move {
                    let bearer = headers.get("authorization").map(|v| v.to_str().unwrap());
                    // As GitHub's API does: no User-Agent, no answer.
                    if headers.get("user-agent").is_none() {
                        return Err(http::StatusCode::FORBIDDEN);
                    }
                    if bearer == Some("Bearer provider-access-token") {
                        Ok(axum::Json(json!({"id": 4242, "login": "alice"})))
                    } else {
                        Err(http::StatusCode::UNAUTHORIZED)
                    }
                }),
            )
            .with_state(state);
        let addr = spawn_router(router).await;
        Self {
            issuer: format!("http://{addr}"),
            answer,
            received,
        }
    }

    pub fn answer_with(&self, answer: Value) {
        *self.answer.lock().unwrap() = answer;
    }

    pub fn received(&self) -> Vec<TokenRequest> {
        self.received.lock().unwrap().clone()
    }
}

/// the provider.
pub struct AtProvider {
    pub cookie: String,
    pub state: String,
    pub nonce: String,
    pub code_challenge: String,
}

pub async fn to_provider(gateway: &Gateway) -> AtProvider {
    to_provider_with(gateway, "").await
}

/// [`to_provider`] with `extra` query parameters on the authorization request.
pub async fn to_provider_with(gateway: &Gateway, extra: &str) -> AtProvider {
    let at = to_consent_with(gateway, extra).await;
    let approved = decide(gateway, &at.request, Some(&at.cookie), &at.csrf, "approve").await;
    assert_eq!(approved.status(), 303);
    let to_idp = location(&approved);
    assert_eq!(to_idp.path(), "/authorize");
    AtProvider {
        cookie: at.cookie,
        state: query(&to_idp, "state").unwrap(),
        nonce: query(&to_idp, "nonce").unwrap(),
        code_challenge: query(&to_idp, "code_challenge").unwrap(),
    }
}

pub fn id_token_claims(provider: &FakeProvider, nonce: &str) -> Value {
    let now = now();
    json!({
        "iss": provider.issuer,
        "sub": "alice@idp",
        "aud": "mcpgate-at-idp",
        "nonce": nonce,
        "iat": now,
        "exp": now + 300,
    })
}

/// An ID token as providers sign them (`typ: JWT`).
pub fn signed(claims: &Value) -> String {
    id_token(&Keys::load().rsa, claims)
}

pub fn id_token(key: &jsonwebtoken::EncodingKey, claims: &Value) -> String {
    let mut header = jsonwebtoken::Header::new(Algorithm::RS256);
    header.kid = Some("rsa-1".into());
    jsonwebtoken::encode(&header, claims, key).unwrap()
}

pub async fn callback(
    gateway: &Gateway,
    params: &[(&str, &str)],
    cookie: Option<&str>,
) -> reqwest::Response {
    let mut get = browser().get(format!("{}/oauth/callback?{}", gateway.base, form(params)));
    if let Some(cookie) = cookie {
        get = get.header(COOKIE, cookie);
    }
    get.send().await.unwrap()
}

/// RFC 7636's example verifier: the one `CHALLENGE` was made from.
pub const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";

/// Lets the provider sign `sub` in for the sign-in at `at`, and returns the
/// callback's answer.
pub async fn sign_in_as(
    gateway: &Gateway,
    provider: &FakeProvider,
    at: &AtProvider,
    subject: &str,
    cookies: &str,
) -> reqwest::Response {
    let mut claims = id_token_claims(provider, &at.nonce);
    claims["sub"] = json!(subject);
    provider.answer_with(json!({
        "access_token": "provider-access-token",
        "token_type": "Bearer",
        "id_token": signed(&claims),
    }));
    callback(
        gateway,
        &[
            ("code", "provider-code"),
            ("state", &at.state),
            ("iss", &provider.issuer),
        ],
        Some(cookies),
    )
    .await
}

pub async fn post_form(
    gateway: &Gateway,
    path: &str,
    fields: &[(&str, &str)],
) -> reqwest::Response {
    browser()
        .post(format!("{}{path}", gateway.base))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form(fields))
        .send()
        .await
        .unwrap()
}

/// The cookie a response sets under `name`, as `name=value`.
pub fn set_cookie(response: &reqwest::Response, name: &str) -> Option<String> {
    response
        .headers()
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .find(|value| value.starts_with(&format!("{name}=")))
        .map(|value| value.split(';').next().unwrap().to_owned())
}

/// A completed sign-in of `subject` and the tokens its code was redeemed for.
pub async fn tokens_for(
    gateway: &Gateway,
    provider: &FakeProvider,
    subject: &str,
) -> (String, Value) {
    tokens_for_with(gateway, provider, subject, "").await
}

/// [`tokens_for`] with `extra` query parameters on the authorization request.
pub async fn tokens_for_with(
    gateway: &Gateway,
    provider: &FakeProvider,
    subject: &str,
    extra: &str,
) -> (String, Value) {
    let at = to_provider_with(gateway, extra).await;
    let back = sign_in_as(gateway, provider, &at, subject, &at.cookie).await;
    assert_eq!(back.status(), 303);
    let code = query(&location(&back), "code").unwrap();
    let redeem = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("code_verifier", VERIFIER),
        ("client_id", "tool"),
    ];
    let answer = post_form(gateway, "/oauth/token", &redeem).await;
    assert_eq!(answer.status(), 200);
    (code, answer.json().await.unwrap())
}
