//! What the admin listener shows of the façade and the one thing it changes: the
//! clients it knows, the grants in force, and revoking them (per grant, per user
//! or per client). Answers are JSON values; the listener (`server::admin`) routes
//! them. Nothing here reveals a secret: clients are listed without their secret
//! hash, grants by id.

use std::sync::Arc;

use serde::Deserialize;
use serde_json::{Value, json};

use super::clients::Client;
use super::events::{Event, name, why};
use super::grants::Grant;
use super::metadata_documents::usable_clients;
use super::settings::Facade;

/// Which grants a listing or a revocation is about.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Selector {
    pub(crate) grant_id: Option<String>,
    pub(crate) subject: Option<String>,
    pub(crate) client_id: Option<String>,
}

/// A request the admin endpoints cannot act on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum AdminError {
    #[error("name the grants: subject or client_id")]
    NoSelector,
    #[error("name exactly one of grant_id, subject or client_id")]
    NotOne,
    #[error("expected {0}")]
    Malformed(&'static str),
    #[error("the authorization server's storage did not answer; try again")]
    Unavailable,
}

impl Selector {
    fn count(&self) -> usize {
        [&self.grant_id, &self.subject, &self.client_id]
            .iter()
            .filter(|field| field.is_some())
            .count()
    }
}

/// `GET /authorization-server/grants?subject=…&client_id=…`: the grants in force
/// for a user, a client, or both, oldest first.
pub(crate) async fn grants(facade: &Facade, selector: &Selector) -> Result<Value, AdminError> {
    if selector.grant_id.is_some() || (selector.subject.is_none() && selector.client_id.is_none()) {
        return Err(AdminError::NoSelector);
    }
    let grants: Vec<Value> = selected(facade, selector)
        .await?
        .iter()
        .map(|grant| grant_json(grant))
        .collect();
    Ok(json!({ "grants": grants }))
}

/// The grants a selector names: one by id, or a user's or a client's.
async fn selected(facade: &Facade, selector: &Selector) -> Result<Vec<Arc<Grant>>, AdminError> {
    let found = match &selector.grant_id {
        Some(id) => facade
            .grants
            .get(id)
            .await
            .map(|grant| grant.into_iter().collect()),
        None => {
            facade
                .grants
                .list(selector.subject.as_deref(), selector.client_id.as_deref())
                .await
        }
    };
    found.map_err(|_| AdminError::Unavailable)
}

/// `POST /authorization-server/grants/revoke`: ends one grant, or every grant of a
/// user or of a client, each with a `grant_revoked` record (reason `admin`).
/// Answers the ids revoked (none is not an error: the grant may have ended).
pub(crate) async fn revoke(facade: &Facade, selector: &Selector) -> Result<Value, AdminError> {
    if selector.count() != 1 {
        return Err(AdminError::NotOne);
    }
    let grants = selected(facade, selector).await?;
    let mut revoked = Vec::with_capacity(grants.len());
    for grant in grants {
        facade
            .grants
            .revoke(&grant.id)
            .await
            .map_err(|_| AdminError::Unavailable)?;
        let event = Event::new(name::GRANT_REVOKED)
            .grant(&grant)
            .reason(why::ADMIN);
        facade.audit(event).await;
        revoked.push(grant.id.clone());
    }
    tracing::info!(grants = revoked.len(), "grants revoked by the operator");
    Ok(json!({ "revoked": revoked }))
}

/// `GET /authorization-server/clients`: configured, registered, and known by a
/// metadata document fetched lately (those the façade would use without fetching).
pub(crate) fn clients(facade: &Facade) -> Value {
    let settings = facade.settings();
    let mut clients: Vec<Client> = settings.clients.list();
    clients.extend(facade.registered.list().unwrap_or_default());
    clients.extend(usable_clients(&facade.documents));
    clients.sort_by(|a, b| a.client_id.cmp(&b.client_id));
    let clients: Vec<Value> = clients.iter().map(client_json).collect();
    json!({ "clients": clients })
}

fn grant_json(grant: &Grant) -> Value {
    let created = std::time::UNIX_EPOCH + std::time::Duration::from_secs(grant.created);
    json!({
        "id": grant.id,
        "client_id": grant.client_id,
        "subject": grant.subject,
        "scopes": grant.scopes,
        "resource": grant.resource,
        "created": humantime::format_rfc3339_seconds(created).to_string(),
    })
}

fn client_json(client: &Client) -> Value {
    json!({
        "client_id": client.client_id,
        "client_name": client.client_name,
        "kind": super::events::kind(client.kind),
        "redirect_uris": client.redirect_uris,
        "confidential": client.secret_hash.is_some(),
    })
}
