//! What the façade leaves behind at each step: one audit record and one count of
//! `mcpgate_authorization_server_events_total{event}`, from the same [`Event`].

use std::net::{IpAddr, SocketAddr};
use std::time::SystemTime;

use axum::extract::{ConnectInfo, FromRequestParts};
use http::request::Parts;

use super::clients::{Client, ClientKind};
use super::grants::Grant;
use crate::audit::FacadeRecord;
use crate::edge::client_ip::ClientIp;
use crate::telemetry::metrics::metrics;

/// The façade's events, by the name records and metrics give them.
pub(crate) mod name {
    pub(crate) const CLIENT_REGISTERED: &str = "client_registered";
    pub(crate) const CONSENT_SHOWN: &str = "consent_shown";
    pub(crate) const CONSENT_APPROVED: &str = "consent_approved";
    pub(crate) const CONSENT_DENIED: &str = "consent_denied";
    pub(crate) const CODE_ISSUED: &str = "code_issued";
    pub(crate) const CODE_REDEEMED: &str = "code_redeemed";
    pub(crate) const CODE_REPLAYED: &str = "code_replayed";
    pub(crate) const ASSERTION_REDEEMED: &str = "assertion_redeemed";
    pub(crate) const TOKEN_ISSUED: &str = "token_issued";
    pub(crate) const TOKEN_REFRESHED: &str = "token_refreshed";
    pub(crate) const REFRESH_TOKEN_REUSED: &str = "refresh_token_reused";
    pub(crate) const GRANT_REVOKED: &str = "grant_revoked";
    pub(crate) const AUTHORIZE_REFUSED: &str = "authorize_refused";
    pub(crate) const CALLBACK_REFUSED: &str = "callback_refused";
    pub(crate) const TOKEN_REFUSED: &str = "token_refused";
    pub(crate) const REVOCATION_REFUSED: &str = "revocation_refused";
    pub(crate) const REGISTRATION_REFUSED: &str = "registration_refused";
}

/// Every event name: the label values of the events metric.
pub(crate) const EVENTS: &[&str] = &[
    name::CLIENT_REGISTERED,
    name::CONSENT_SHOWN,
    name::CONSENT_APPROVED,
    name::CONSENT_DENIED,
    name::CODE_ISSUED,
    name::CODE_REDEEMED,
    name::CODE_REPLAYED,
    name::ASSERTION_REDEEMED,
    name::TOKEN_ISSUED,
    name::TOKEN_REFRESHED,
    name::REFRESH_TOKEN_REUSED,
    name::GRANT_REVOKED,
    name::AUTHORIZE_REFUSED,
    name::CALLBACK_REFUSED,
    name::TOKEN_REFUSED,
    name::REVOCATION_REFUSED,
    name::REGISTRATION_REFUSED,
];

/// Why a grant ended (`reason` of `grant_revoked`).
pub(crate) mod why {
    /// The client asked, at the revocation endpoint.
    pub(crate) const CLIENT: &str = "client";
    pub(crate) const CODE_REPLAY: &str = "code_replay";
    pub(crate) const REFRESH_REUSE: &str = "refresh_reuse";
    /// The operator, on the admin listener.
    pub(crate) const ADMIN: &str = "admin";
}

/// One event being described. Built with what is known, then given to
/// `Facade::audit`.
#[derive(Debug)]
pub(crate) struct Event(FacadeRecord);

impl Event {
    pub(crate) fn new(event: &'static str) -> Self {
        Self(FacadeRecord::new(event, SystemTime::now()))
    }

    /// The client, found.
    pub(crate) fn client(mut self, client: &Client) -> Self {
        self.0.client_id = Some(client.client_id.clone());
        self.0.client_kind = Some(kind(client.kind));
        self
    }

    /// The client as named, not (yet) found; cut to 200 characters (it came from
    /// the request).
    pub(crate) fn client_id(mut self, client_id: Option<&str>) -> Self {
        self.0.client_id = client_id.map(|id| id.chars().take(200).collect());
        self
    }

    /// The grant: its id, user, client, scopes and resource.
    pub(crate) fn grant(mut self, grant: &Grant) -> Self {
        let record = &mut self.0;
        record.grant_id = Some(grant.id.clone());
        record.subject = Some(grant.subject.clone());
        if record.client_id.is_none() {
            record.client_id = Some(grant.client_id.clone());
        }
        record.scopes = Some(grant.scopes.join(" "));
        record.resource = Some(grant.resource.clone());
        self
    }

    /// A grant known only by its id (revoked before it could be read).
    pub(crate) fn grant_id(mut self, grant_id: Option<String>) -> Self {
        self.0.grant_id = grant_id;
        self
    }

    pub(crate) fn subject(mut self, subject: &str) -> Self {
        self.0.subject = Some(subject.to_owned());
        self
    }

    /// What was asked for.
    pub(crate) fn request(mut self, scopes: &[String], resource: &str) -> Self {
        self.0.scopes = Some(scopes.join(" "));
        self.0.resource = Some(resource.to_owned());
        self
    }

    /// Scopes narrower than the grant's (a refresh that asked for fewer).
    pub(crate) fn scopes(mut self, scopes: &[String]) -> Self {
        self.0.scopes = Some(scopes.join(" "));
        self
    }

    pub(crate) fn peer(mut self, peer: Peer) -> Self {
        self.0.remote_addr = peer.0.map(|ip| ip.to_string());
        self
    }

    pub(crate) fn error(mut self, error: &'static str) -> Self {
        self.0.error = Some(error);
        self
    }

    pub(crate) fn reason(mut self, reason: impl Into<String>) -> Self {
        self.0.reason = Some(reason.into());
        self
    }

    /// Counts it and hands back the record to write.
    pub(crate) fn finish(self) -> FacadeRecord {
        metrics().authorization_server_event(self.0.event);
        self.0
    }
}

/// A client kind as records and the admin listing name it.
pub(crate) fn kind(kind: ClientKind) -> &'static str {
    match kind {
        ClientKind::Configured => "configured",
        ClientKind::MetadataDocument => "metadata_document",
        ClientKind::Registered => "registered",
    }
}

/// The client's address (the proxies' word for it when the peer is a trusted proxy,
/// see `edge::client_ip`), else the peer's, which the listener records for every
/// connection (absent only where a router is served without it, as in unit tests).
pub(crate) fn client_ip(extensions: &http::Extensions) -> Option<IpAddr> {
    extensions
        .get::<ClientIp>()
        .map(|ClientIp(address)| *address)
        .or_else(|| {
            extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|ConnectInfo(peer)| peer.ip())
        })
}

/// The client's address ([`client_ip`]).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Peer(pub(crate) Option<IpAddr>);

impl<S: Send + Sync> FromRequestParts<S> for Peer {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(Self(client_ip(&parts.extensions)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_grant_event_names_the_grant_never_a_secret() {
        let grant = Grant::new(
            "app".into(),
            "alice".into(),
            "https://r/mcp".into(),
            vec!["mcp:read".into(), "mcp:write".into()],
        );
        let record = Event::new(name::TOKEN_ISSUED)
            .grant(&grant)
            .peer(Peer(Some(IpAddr::from([127, 0, 0, 1]))))
            .finish();
        assert_eq!(record.event, "token_issued");
        assert_eq!(record.grant_id.as_deref(), Some(grant.id.as_str()));
        assert_eq!(record.client_id.as_deref(), Some("app"));
        assert_eq!(record.subject.as_deref(), Some("alice"));
        assert_eq!(record.scopes.as_deref(), Some("mcp:read mcp:write"));
        assert_eq!(record.remote_addr.as_deref(), Some("127.0.0.1"));
    }

    #[test]
    fn a_named_client_id_is_cut() {
        let long = "x".repeat(1000);
        let record = Event::new(name::TOKEN_REFUSED)
            .client_id(Some(&long))
            .finish();
        assert_eq!(record.client_id.map(|id| id.len()), Some(200));
        assert_eq!(record.client_kind, None);
    }
}
