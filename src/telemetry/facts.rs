//! What telemetry reads from one finished request. The audit record gives these
//! facts (`audit` converts its record), so that metrics and traces describe the same
//! request without telemetry knowing the record's type.

/// One request, as metrics and its trace span see it. Text fields borrow from the
/// record; an absent or empty value is unknown.
#[derive(Debug, Clone, Copy, Default)]
pub struct RequestFacts<'a> {
    /// mcpgate's own id for the request.
    pub request_id: &'a str,
    /// The HTTP method (`POST`, `GET`, `DELETE`).
    pub http_method: &'a str,
    /// The JSON-RPC method (`batch` for a batch), when one was read.
    pub method: Option<&'a str>,
    /// The tool a `tools/call` names.
    pub tool: Option<&'a str>,
    /// The resource URI a `resources/read` or `subscribe` names.
    pub resource: Option<&'a str>,
    /// The prompt a `prompts/get` names.
    pub prompt: Option<&'a str>,
    /// The route (`routes[].name`) the request was for.
    pub route: Option<&'a std::sync::Arc<str>>,
    /// The MCP session the request belongs to.
    pub session_id: Option<&'a str>,
    /// The OAuth client the token was issued to.
    pub oauth_client_id: Option<&'a str>,
    /// The granted scopes, space-separated.
    pub scopes: Option<&'a str>,
    /// Who made the request (the token's `sub`, or an API key's id).
    pub subject: Option<&'a str>,
    /// `ok`, `disabled` (no credential source), or an authentication failure reason.
    pub auth_result: &'a str,
    /// How the caller authenticated (`jwt`, `introspection`, `api_key`).
    pub auth_method: Option<&'a str>,
    /// `allow` (forwarded) or `deny`.
    pub decision: &'static str,
    /// 0 while there is no response.
    pub status: u16,
    /// Why mcpgate refused, as the client was told.
    pub reason: Option<&'a str>,
    /// Time from the request's arrival to its response head, in milliseconds.
    pub latency_ms: f64,
    /// The wait for the upstream's response head, when the request was forwarded.
    pub upstream_latency_ms: Option<f64>,
}
