//! What telemetry reads from one finished request. The audit record gives these
//! facts (`audit` converts its record), so that metrics and traces describe the same
//! request without telemetry knowing the record's type.

/// One request, as metrics and its trace span see it. Text fields borrow from the
/// record; an absent or empty value is unknown.
#[derive(Debug, Clone, Copy, Default)]
pub struct RequestFacts<'a> {
    /// mcpgate's own id for the request.
    pub request_id: &'a str,
    pub http_method: &'a str,
    /// The JSON-RPC method (`batch` for a batch), when one was read.
    pub method: Option<&'a str>,
    pub tool: Option<&'a str>,
    pub resource: Option<&'a str>,
    pub prompt: Option<&'a str>,
    pub session_id: Option<&'a str>,
    pub oauth_client_id: Option<&'a str>,
    /// The granted scopes, space-separated.
    pub scopes: Option<&'a str>,
    pub subject: Option<&'a str>,
    /// `ok`, `disabled` (no credential source), or an authentication failure reason.
    pub auth_result: &'a str,
    pub auth_method: Option<&'a str>,
    /// `allow` (forwarded) or `deny`.
    pub decision: &'static str,
    /// 0 while there is no response.
    pub status: u16,
    /// Why mcpgate refused, as the client was told.
    pub reason: Option<&'a str>,
    pub latency_ms: f64,
    /// The wait for the upstream's response head, when the request was forwarded.
    pub upstream_latency_ms: Option<f64>,
}
