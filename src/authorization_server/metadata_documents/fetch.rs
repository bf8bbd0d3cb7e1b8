//! Fetching a document: one GET, bounded in size and time, never redirected, and
//! only to addresses checked beforehand. The host is resolved here, every address
//! it resolves to must be public, and the connection is pinned to exactly those
//! addresses, so a DNS answer that changes between the check and the connection
//! (rebinding) cannot point the request elsewhere.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use http::{StatusCode, header};
use url::{Host, Url};

use super::address;

/// The limits of one fetch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_bytes: usize,
    /// For everything: resolution, connection, TLS, headers and body.
    pub timeout: Duration,
    /// Tests only: loopback and private addresses are fetched too.
    pub allow_private: bool,
}

/// A document as served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fetched {
    pub body: Vec<u8>,
    pub cache_control: Option<String>,
}

/// Why a fetch failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FetchError {
    #[error("its host could not be resolved")]
    Resolve,
    #[error(
        "its host resolves to a private or reserved address ({0}), which mcpgate does not fetch from"
    )]
    PrivateAddress(IpAddr),
    #[error("fetching it took longer than {0:?}")]
    Timeout(Duration),
    #[error("it could not be fetched ({0})")]
    Request(String),
    #[error(
        "its URL answered with a redirect ({0}); a client metadata document must be served at its client_id URL"
    )]
    Redirect(u16),
    #[error("its URL answered with status {0}")]
    Status(u16),
    #[error("it is larger than {0} bytes")]
    TooLarge(usize),
}

/// GETs `url` within `limits`.
pub async fn fetch(url: &Url, limits: Limits) -> Result<Fetched, FetchError> {
    tokio::time::timeout(limits.timeout, fetch_unbounded(url, limits))
        .await
        .unwrap_or(Err(FetchError::Timeout(limits.timeout)))
}

async fn fetch_unbounded(url: &Url, limits: Limits) -> Result<Fetched, FetchError> {
    let port = url.port_or_known_default().unwrap_or(443);
    let mut builder = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        // A proxy would resolve the name itself, after our check.
        .no_proxy()
        .user_agent(concat!("mcpgate/", env!("CARGO_PKG_VERSION")))
        .timeout(limits.timeout);
    match url.host() {
        Some(Host::Ipv4(ip)) => vet(&[IpAddr::V4(ip)], limits)?,
        Some(Host::Ipv6(ip)) => vet(&[IpAddr::V6(ip)], limits)?,
        Some(Host::Domain(name)) => {
            let addresses: Vec<SocketAddr> = tokio::net::lookup_host((name, port))
                .await
                .map_err(|_| FetchError::Resolve)?
                .collect();
            let ips: Vec<IpAddr> = addresses.iter().map(SocketAddr::ip).collect();
            if ips.is_empty() {
                return Err(FetchError::Resolve);
            }
            vet(&ips, limits)?;
            builder = builder.resolve_to_addrs(name, &addresses);
        }
        None => return Err(FetchError::Resolve),
    }
    let client = builder
        .build()
        .map_err(|error| FetchError::Request(error.to_string()))?;
    let mut response = client
        .get(url.clone())
        .header(header::ACCEPT, "application/json")
        .send()
        .await
        .map_err(|error| FetchError::Request(describe(&error)))?;
    let status = response.status();
    if status.is_redirection() {
        return Err(FetchError::Redirect(status.as_u16()));
    }
    if status != StatusCode::OK {
        return Err(FetchError::Status(status.as_u16()));
    }
    if response
        .content_length()
        .is_some_and(|length| length > limits.max_bytes as u64)
    {
        return Err(FetchError::TooLarge(limits.max_bytes));
    }
    let cache_control = response
        .headers()
        .get(header::CACHE_CONTROL)
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned);
    // Read as it comes, and stop as soon as it is too much: the server may lie
    // about the length or send none.
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|error| FetchError::Request(describe(&error)))?
    {
        if body.len() + chunk.len() > limits.max_bytes {
            return Err(FetchError::TooLarge(limits.max_bytes));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Fetched {
        body,
        cache_control,
    })
}

/// Refuses the lot if any address is not public: an attacker's name may resolve
/// to one public and one private address and leave the choice to the connector.
fn vet(ips: &[IpAddr], limits: Limits) -> Result<(), FetchError> {
    if limits.allow_private {
        return Ok(());
    }
    match ips.iter().find(|ip| !address::is_public(**ip)) {
        Some(ip) => Err(FetchError::PrivateAddress(*ip)),
        None => Ok(()),
    }
}

/// A reqwest error without the URL (the page shows the client_id already).
fn describe(error: &reqwest::Error) -> String {
    if error.is_timeout() {
        "timed out".into()
    } else if error.is_connect() {
        "the connection failed".into()
    } else if error.is_body() || error.is_decode() {
        "the body could not be read".into()
    } else {
        "the request failed".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits {
        max_bytes: 100,
        timeout: Duration::from_secs(2),
        allow_private: false,
    };

    #[tokio::test]
    async fn private_literals_are_refused_before_any_connection() {
        for url in [
            "https://127.0.0.1:1/c",
            "https://[::1]:1/c",
            "https://169.254.169.254/latest",
            "https://[::ffff:10.0.0.1]/c",
            "https://0.0.0.0/c",
        ] {
            let error = fetch(&Url::parse(url).unwrap(), LIMITS).await.unwrap_err();
            assert!(
                matches!(error, FetchError::PrivateAddress(_)),
                "{url}: {error}"
            );
        }
    }

    #[tokio::test]
    async fn names_resolving_to_private_addresses_are_refused() {
        let error = fetch(&Url::parse("https://localhost:1/c").unwrap(), LIMITS)
            .await
            .unwrap_err();
        assert!(
            matches!(error, FetchError::PrivateAddress(ip) if ip.is_loopback()),
            "{error}"
        );
    }
}
