//! What the admin listener shows of the façade and the one thing it changes: the
//! clients it knows, the grants in force, and revoking them (per grant, per user
//! or per client). Answers are JSON values; the listener (`server::admin`) routes
//! them. Nothing here reveals a secret: clients are listed without their secret
//! hash, grants by id.

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
    /// With Redis, grants are not enumerated (a key scan); only a grant id works.
    #[error("with the Redis store, grants are not listed: revoke by grant_id")]
    NotListable,
    #[error("the authorization server's storage did not answer; try again")]
    Unavailable,
}

impl Selector {
    fn matches(&self, grant: &Grant) -> bool {
        self.grant_id.as_ref().is_none_or(|id| *id == grant.id)
            && self.subject.as_ref().is_none_or(|s| *s == grant.subject)
            && self
                .client_id
                .as_ref()
                .is_none_or(|id| *id == grant.client_id)
    }

    fn count(&self) -> usize {
        [&self.grant_id, &self.subject, &self.client_id]
            .iter()
            .filter(|field| field.is_some())
            .count()
    }
}

/// `GET /authorization-server/grants?subject=…&client_id=…`: the grants in force
/// for a user, a client, or both, oldest first.
pub(crate) fn grants(facade: &Facade, selector: &Selector) -> Result<Value, AdminError> {
    if selector.grant_id.is_some() || (selector.subject.is_none() && selector.client_id.is_none()) {
        return Err(AdminError::NoSelector);
    }
    let grants: Vec<Value> = facade
        .grants
        .list(|grant| selector.matches(grant))
        .ok_or(AdminError::NotListable)?
        .iter()
        .map(|grant| grant_json(grant))
        .collect();
    Ok(json!({ "grants": grants }))
}

/// `POST /authorization-server/grants/revoke`: ends one grant, or every grant of a
/// user or of a client, each with a `grant_revoked` record (reason `admin`).
/// Answers the ids revoked (none is not an error: the grant may have ended).
pub(crate) async fn revoke(facade: &Facade, selector: &Selector) -> Result<Value, AdminError> {
    if selector.count() != 1 {
        return Err(AdminError::NotOne);
    }
    let grants = match (
        &selector.grant_id,
        facade.grants.list(|grant| selector.matches(grant)),
    ) {
        (_, Some(grants)) => grants,
        // Redis: one grant by id, looked up directly.
        (Some(id), None) => facade
            .grants
            .get(id)
            .await
            .map_err(|_| AdminError::Unavailable)?
            .into_iter()
            .collect(),
        (None, None) => return Err(AdminError::NotListable),
    };
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
