//! Tags every request with its client IP ([`crate::edge::client_ip`]), resolved
//! once under the running configuration, for whatever limits or records by address.

use axum::extract::{ConnectInfo, Request};
use std::net::SocketAddr;

use super::AppState;
use crate::edge::client_ip::ClientIp;

/// Tags `request` (see [`super::front`]). Without a peer (a router served without
/// the listener, as in unit tests) nothing is tagged.
pub(super) fn tag(state: &AppState, request: &mut Request) {
    if let Some(ConnectInfo(peer)) = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .copied()
    {
        let address = state
            .gateway
            .load()
            .first()
            .client_ip
            .resolve(peer.ip(), request.headers());
        request.extensions_mut().insert(ClientIp(address));
    }
}
