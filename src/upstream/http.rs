//! Streamable HTTP upstream: pooled connections, MCP headers passed through on an
//! allowlist, the upstream's own credentials added, responses (JSON or SSE) streamed
//! back as they arrive.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Response, Uri};
use http_body_util::Full;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use super::HttpUpstreamConfig;
use super::credentials::UpstreamCredentials;
use super::tls::TlsRoots;
use crate::config::ConfigError;

/// Request headers a client may pass to the upstream. An allowlist rather than a
/// blocklist: the client's `Authorization`, cookies, API-key headers and hop-by-hop
/// headers can never reach the upstream by omission. Any `mcp-*` header also passes
/// (`Mcp-Session-Id`, `MCP-Protocol-Version`, `Mcp-Method`, `Mcp-Name`, …).
const FORWARDED_REQUEST_HEADERS: &[&str] =
    &["accept", "content-type", "last-event-id", "user-agent"];

/// Response headers never copied back: hop-by-hop (RFC 9110 §7.6.1) and framing,
/// which hyper sets for the streamed body itself.
const DROPPED_RESPONSE_HEADERS: [HeaderName; 8] = [
    http::header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    http::header::PROXY_AUTHENTICATE,
    HeaderName::from_static("proxy-connection"),
    http::header::TE,
    http::header::TRAILER,
    http::header::TRANSFER_ENCODING,
    http::header::UPGRADE,
];

/// Why the upstream did not answer. `Display` is what clients see: it never names
/// the upstream's address; `detail` (for logs) does.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// No connection or a broken one; the cause (for logs, never for clients).
    #[error("upstream unreachable")]
    Unreachable(String),
    /// No answer within the upstream's request timeout.
    #[error("upstream did not answer within {}", humantime::format_duration(*.0))]
    Timeout(Duration),
    /// mcpgate could not get its own token for the upstream.
    #[error("upstream credentials unavailable")]
    Credentials(String),
}

impl UpstreamError {
    /// Which failure this is, for the metrics.
    pub fn kind(&self) -> FailureKind {
        match self {
            Self::Unreachable(_) => FailureKind::Unreachable,
            Self::Timeout(_) => FailureKind::Timeout,
            Self::Credentials(_) => FailureKind::Credentials,
        }
    }

    /// The full cause, for the gateway's own logs.
    pub fn detail(&self) -> String {
        match self {
            Self::Unreachable(cause) => format!("upstream unreachable: {cause}"),
            Self::Timeout(_) => self.to_string(),
            Self::Credentials(cause) => cause.clone(),
        }
    }
}

/// How the upstream failed to give a usable answer: the `upstream_errors{kind}`
/// label. An [`UpstreamError`] is one of the first three; `Unreadable` is an answer
/// that came but could not be passed on (a list answer mcpgate cannot filter).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// No connection, or the connection failed before an answer.
    Unreachable,
    /// No response head within `upstream.timeout`.
    Timeout,
    /// mcpgate's own credentials for the upstream could not be obtained.
    Credentials,
    /// An answer came but could not be passed on.
    Unreadable,
}

impl FailureKind {
    /// Every kind, in declaration order.
    pub const ALL: [Self; 4] = [
        Self::Unreachable,
        Self::Timeout,
        Self::Credentials,
        Self::Unreadable,
    ];

    /// Every label, for the metrics' label set.
    pub const LABELS: [&'static str; Self::ALL.len()] = {
        // A kind added to `ALL` does not compile until it is added here.
        let [a, b, c, d] = Self::ALL;
        [a.label(), b.label(), c.label(), d.label()]
    };

    /// The metric label.
    pub const fn label(self) -> &'static str {
        match self {
            Self::Unreachable => "unreachable",
            Self::Timeout => "timeout",
            Self::Credentials => "credentials",
            Self::Unreadable => "unreadable",
        }
    }
}

/// A Streamable HTTP MCP server.
pub struct HttpUpstream {
    /// hyper's pooled client rather than reqwest: it follows no redirect (one would
    /// resend the upstream's credentials elsewhere), and per request it skips
    /// reqwest's URL re-parsing and middleware layers, which cost more than the hop.
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    uri: Uri,
    headers: HeaderMap,
    timeout: Duration,
    credentials: Option<Arc<UpstreamCredentials>>,
}

impl std::fmt::Debug for HttpUpstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpUpstream")
            .field("uri", &self.uri)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl HttpUpstream {
    /// `tls` holds the system's roots, read once for every upstream of a build.
    pub(crate) fn from_config(
        config: &HttpUpstreamConfig,
        connect_timeout: Duration,
        timeout: Duration,
        tls: &TlsRoots,
    ) -> Result<Self, ConfigError> {
        let uri: Uri = config
            .url
            .as_str()
            .parse()
            .map_err(|error| ConfigError::invalid("upstream.url", format!("{error}")))?;
        let mut http = HttpConnector::new();
        // https:// is handled by the TLS layer around it.
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(connect_timeout));
        let tls_config = tls.client_config().map_err(|error| {
            ConfigError::invalid("upstream", format!("cannot set up TLS: {error}"))
        })?;
        let tls = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config((*tls_config).clone())
            .https_or_http()
            .enable_http1()
            .enable_http2()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(90))
            .build(tls);
        let mut headers = HeaderMap::new();
        for (name, value) in &config.headers {
            let key = format!("upstream.headers.{name}");
            let name = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| ConfigError::invalid(&key, "not a valid HTTP header name"))?;
            let mut value = HeaderValue::from_str(value.expose())
                .map_err(|_| ConfigError::invalid(&key, "not a valid HTTP header value"))?;
            value.set_sensitive(true);
            headers.insert(name, value);
        }
        // mcpgate's own upstream token is fetched with an ordinary HTTP client, made
        // only where there is one to fetch (each client reads the system's roots).
        let credentials = config
            .oauth
            .clone()
            .map(|oauth| {
                reqwest::Client::builder()
                    .redirect(reqwest::redirect::Policy::none())
                    .no_proxy()
                    .connect_timeout(connect_timeout)
                    .build()
                    .map(|client| UpstreamCredentials::new(oauth, client))
                    .map_err(|error| {
                        ConfigError::invalid(
                            "upstream",
                            format!("cannot build HTTP client: {error}"),
                        )
                    })
            })
            .transpose()?;
        Ok(Self {
            client,
            uri,
            headers,
            timeout,
            credentials,
        })
    }

    /// mcpgate's own token source for the upstream, when `upstream.oauth` is set.
    pub fn credentials(&self) -> Option<&Arc<UpstreamCredentials>> {
        self.credentials.as_ref()
    }

    /// Sends one request upstream and returns its response with the body still streaming.
    /// `own_headers` are mcpgate's (request id, trace context): they replace any the
    /// client sent under the same names.
    pub async fn forward(
        &self,
        method: Method,
        client_headers: &HeaderMap,
        own_headers: HeaderMap,
        body: Bytes,
    ) -> Result<Response<Body>, UpstreamError> {
        let mut headers = HeaderMap::new();
        for (name, value) in client_headers {
            if is_forwarded(name) && !own_headers.contains_key(name) {
                headers.append(name.clone(), value.clone());
            }
        }
        headers.extend(own_headers);
        for (name, value) in &self.headers {
            headers.insert(name.clone(), value.clone());
        }
        let token = match &self.credentials {
            Some(credentials) => {
                let token = credentials
                    .authorization()
                    .await
                    .map_err(|error| UpstreamError::Credentials(error.to_string()))?;
                headers.insert(http::header::AUTHORIZATION, token.clone());
                Some(token)
            }
            None => None,
        };
        let mut request = Request::new(Full::new(body));
        *request.method_mut() = method;
        *request.uri_mut() = self.uri.clone();
        *request.headers_mut() = headers;
        let response = match tokio::time::timeout(self.timeout, self.client.request(request)).await
        {
            Err(_) => return Err(UpstreamError::Timeout(self.timeout)),
            Ok(Err(error)) => return Err(UpstreamError::Unreachable(crate::error_chain(&error))),
            Ok(Ok(response)) => response,
        };
        if response.status() == http::StatusCode::UNAUTHORIZED
            && let (Some(credentials), Some(token)) = (&self.credentials, &token)
        {
            // Revoked or rotated early: this request fails, the next gets a new token.
            credentials.invalidate(token);
        }

        let (mut parts, incoming) = response.into_parts();
        // Looked for before anything is removed: an answer rarely carries one.
        if parts
            .headers
            .keys()
            .any(|name| DROPPED_RESPONSE_HEADERS.contains(name))
        {
            for name in &DROPPED_RESPONSE_HEADERS {
                parts.headers.remove(name);
            }
        }
        // Streamed frame by frame: an SSE response reaches the client event by event.
        Ok(Response::from_parts(parts, Body::new(incoming)))
    }
}

fn is_forwarded(name: &HeaderName) -> bool {
    // The session id is mcpgate's to send (the upstream's id for the checked session).
    *name != crate::mcp::session::SESSION_HEADER
        && (name.as_str().starts_with("mcp-") || FORWARDED_REQUEST_HEADERS.contains(&name.as_str()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_failure_kind_is_listed_with_its_label() {
        // Exhaustive: a new kind does not compile until it is placed here, the
        // reminder to list it in `ALL` (and so in the metrics' label set).
        let position = |kind: FailureKind| match kind {
            FailureKind::Unreachable => 0,
            FailureKind::Timeout => 1,
            FailureKind::Credentials => 2,
            FailureKind::Unreadable => 3,
        };
        for (at, kind) in FailureKind::ALL.into_iter().enumerate() {
            assert_eq!(position(kind), at, "{kind:?}");
            assert_eq!(FailureKind::LABELS.get(at), Some(&kind.label()));
        }
        let errors = [
            UpstreamError::Unreachable("refused".into()),
            UpstreamError::Timeout(Duration::from_secs(1)),
            UpstreamError::Credentials("no token".into()),
        ];
        let labels: Vec<&str> = errors.iter().map(|error| error.kind().label()).collect();
        assert_eq!(labels, ["unreachable", "timeout", "credentials"]);
    }
}
