//! The method names MCP defines, from 2024-11-05 to 2026-07-28. A vocabulary with
//! no imports, so that the parser, the look-alike check and the metrics' labels
//! read the same list.

/// Client notifications mcpgate passes on. Anything else a client might notify is
/// refused rather than handed to an upstream that might act on it.
pub const ACCEPTED_NOTIFICATIONS: &[&str] = &[
    "notifications/initialized",
    "notifications/cancelled",
    "notifications/progress",
    "notifications/roots/list_changed",
    "notifications/tasks/status",
];

/// Requests a client sends a server, in any revision from 2024-11-05 to 2026-07-28
/// (the tasks extension included). Any other method is unknown to mcpgate.
pub const CLIENT_REQUESTS: &[&str] = &[
    "initialize",
    "ping",
    "server/discover",
    "subscriptions/listen",
    "tools/list",
    "tools/call",
    "resources/list",
    "resources/templates/list",
    "resources/read",
    "resources/subscribe",
    "resources/unsubscribe",
    "prompts/list",
    "prompts/get",
    "completion/complete",
    "logging/setLevel",
    "tasks/get",
    "tasks/result",
    "tasks/list",
    "tasks/cancel",
    "tasks/update",
];

/// Every other method name MCP defines (server requests and notifications): a
/// client has no business sending a near-miss of these either.
pub const OTHER_METHODS: &[&str] = &[
    "sampling/createMessage",
    "elicitation/create",
    "roots/list",
    "notifications/message",
    "notifications/resources/updated",
    "notifications/resources/list_changed",
    "notifications/tools/list_changed",
    "notifications/prompts/list_changed",
    "notifications/elicitation/complete",
    "notifications/subscriptions/acknowledged",
];
