//! Values computed from the file that several parts of the gateway agree on.

use std::net::SocketAddr;

use url::Url;

use super::{Config, ServerConfig};

/// The RFC 9728 well-known prefix.
pub const METADATA_WELL_KNOWN: &str = "/.well-known/oauth-protected-resource";

impl ServerConfig {
    /// `public_url`, or `http://<listen>/mcp` when unset.
    #[allow(clippy::expect_used)] // An IP address and a port always make a URL authority.
    pub fn public_url(&self) -> Url {
        match &self.public_url {
            Some(url) => url.clone(),
            None => {
                // Without an IPv6 zone (`%3`), which a URL cannot carry and a client
                // elsewhere could not use.
                let listen = self.listen;
                let text = format!("http://{}/mcp", SocketAddr::new(listen.ip(), listen.port()));
                Url::parse(&text).expect("an IP address and a port are a valid URL authority")
            }
        }
    }
}

impl Config {
    /// The canonical resource URI: `server.public_url`, or `http://<listen>/mcp` when unset
    /// (allowed only on loopback listen addresses with OAuth on; see `validate`).
    pub fn public_url(&self) -> Url {
        self.server.public_url()
    }

    /// The MCP endpoint path: the path of the public URL.
    pub fn mcp_path(&self) -> String {
        self.public_url().path().to_owned()
    }

    /// Paths the RFC 9728 document is served at: the override, or the path-aware URL
    /// (RFC 9728 §3.1) and the root one.
    pub fn metadata_paths(&self) -> Vec<String> {
        if let Some(path) = &self.server.metadata_path {
            return vec![path.clone()];
        }
        let mcp_path = self.mcp_path();
        let path_aware = format!("{METADATA_WELL_KNOWN}{}", mcp_path.trim_end_matches('/'));
        if path_aware == METADATA_WELL_KNOWN {
            vec![path_aware]
        } else {
            vec![path_aware, METADATA_WELL_KNOWN.to_owned()]
        }
    }

    /// The URL advertised as `resource_metadata` in challenges: the first metadata path
    /// on the public URL's origin.
    pub fn metadata_url(&self) -> String {
        let public = self.public_url();
        let origin = public.origin().ascii_serialization();
        let path = self
            .metadata_paths()
            .into_iter()
            .next()
            .unwrap_or_else(|| METADATA_WELL_KNOWN.to_owned());
        format!("{origin}{path}")
    }

    /// `aud` values a token may carry: the configured ones, else the public URL.
    pub fn accepted_audiences(&self) -> Vec<String> {
        if self.auth.oauth.audiences.is_empty() {
            vec![self.public_url().to_string()]
        } else {
            self.auth.oauth.audiences.clone()
        }
    }

    /// `authorization_servers` of the RFC 9728 document: configured, else the issuers.
    pub fn advertised_authorization_servers(&self) -> Vec<String> {
        let oauth = &self.auth.oauth;
        if oauth.authorization_servers.is_empty() {
            oauth.issuers.clone()
        } else {
            // Verbatim: an AS identifier must equal its metadata's `issuer` (RFC 8414 §3.3),
            // trailing slash and all, so it is never normalised.
            oauth.authorization_servers.clone()
        }
    }
}
