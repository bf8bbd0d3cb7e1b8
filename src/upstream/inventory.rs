//! The upstream seen from the other side: mcpgate as an MCP client, asking the
//! upstream what it offers (tools, prompts, resources) so that `mcpgate policy` can
//! show what each requires and where the config and the server disagree.
//!
//! One short session: `initialize`, `notifications/initialized`, the lists the
//! server's capabilities advertise (every page), then `DELETE` of the session.

use std::time::Duration;

use serde_json::Value;

use super::Upstream;
use super::client::{Client, ClientError};
use crate::config::UpstreamConfig;

/// Why the upstream could not be listed (the client's errors).
pub type InventoryError = ClientError;

/// What an MCP server offers, as listed by it.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Inventory {
    /// `serverInfo.name` from the `initialize` result.
    pub server_name: Option<String>,
    /// `protocolVersion` from the `initialize` result: the negotiated version.
    pub protocol_version: String,
    /// `tools/list` → `tools[].name`, in server order.
    pub tools: Vec<String>,
    /// `prompts/list` → `prompts[].name`.
    pub prompts: Vec<String>,
    /// `resources/list` → `resources[].uri`.
    pub resources: Vec<String>,
    /// `resources/templates/list` → `resourceTemplates[].uriTemplate`.
    pub resource_templates: Vec<String>,
}

/// Connects to the configured upstream as an MCP client and lists what it offers.
/// A GraphQL upstream is built with the default `max_scope_combinations`; to list
/// one built from a whole configuration, build it and call [`inventory_of`].
pub async fn fetch_inventory(config: &UpstreamConfig) -> Result<Inventory, InventoryError> {
    // The same upstream the gateway forwards to: its credentials, its transport (a
    // stdio child is started for this one session and stopped after it).
    let upstream = Upstream::from_config(config, crate::config::DEFAULT_MAX_SCOPE_COMBINATIONS)?;
    upstream.check_credentials().await?;
    let inventory = inventory_of(&upstream, config.timeout).await;
    upstream.shutdown().await;
    inventory
}

/// Lists what an upstream already built offers, in one short MCP session (a
/// GraphQL upstream answers in-process). `timeout` bounds each exchange.
pub async fn inventory_of(
    upstream: &Upstream,
    timeout: Duration,
) -> Result<Inventory, InventoryError> {
    let mut client = Client::new(upstream, timeout);
    let inventory = inventory(&mut client).await;
    // Also after a failure: the server may hold state for the session.
    client.end_session().await;
    inventory
}

async fn inventory(client: &mut Client<'_>) -> Result<Inventory, InventoryError> {
    let init = client.initialize("mcpgate-policy").await?;
    let protocol_version = init
        .get("protocolVersion")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let server_name = init
        .get("serverInfo")
        .and_then(|info| info.get("name"))
        .and_then(Value::as_str)
        .map(str::to_owned);
    let capabilities = init
        .get("capabilities")
        .and_then(Value::as_object)
        .ok_or_else(|| not_mcp("initialize", "the result has no capabilities object"))?;
    let offers = |name: &str| capabilities.get(name).is_some_and(|value| !value.is_null());
    let (tools, prompts, resources) = (offers("tools"), offers("prompts"), offers("resources"));
    let mut inventory = Inventory {
        server_name,
        protocol_version,
        ..Inventory::default()
    };
    if tools {
        inventory.tools = names(client, "tools/list", "tools", "name").await?;
    }
    if prompts {
        inventory.prompts = names(client, "prompts/list", "prompts", "name").await?;
    }
    if resources {
        inventory.resources = names(client, "resources/list", "resources", "uri").await?;
        inventory.resource_templates = names(
            client,
            "resources/templates/list",
            "resourceTemplates",
            "uriTemplate",
        )
        .await?;
    }
    Ok(inventory)
}

/// Every page of a list: `result[key][].field`, in server order.
async fn names(
    client: &mut Client<'_>,
    method: &str,
    key: &str,
    field: &str,
) -> Result<Vec<String>, InventoryError> {
    let items = client.list_all(method, key).await?;
    items
        .iter()
        .enumerate()
        .map(|(index, item)| {
            item.get(field)
                .and_then(Value::as_str)
                .map(str::to_owned)
                .ok_or_else(|| not_mcp(method, format!("{key}[{index}].{field} is not a string")))
        })
        .collect()
}

fn not_mcp(method: &str, reason: impl Into<String>) -> InventoryError {
    InventoryError::NotMcp {
        method: method.to_owned(),
        reason: reason.into(),
    }
}
