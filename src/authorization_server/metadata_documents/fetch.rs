//! Fetching a document: one GET, bounded in size and time, never redirected, and
//! only to addresses checked first. The HTTP client resolves names through
//! [`VettingResolver`], which refuses a name when any of its addresses is not
//! public; the connection then goes to exactly the addresses it checked, so a DNS
//! answer that changes between the check and the connection (rebinding) cannot
//! point the request elsewhere. IP literals skip resolvers and are checked here.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use http::{StatusCode, header};
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use url::{Host, Url};

use super::address;

/// The limits of one fetch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Limits {
    pub(crate) max_bytes: usize,
    /// For everything: resolution, connection, TLS, headers and body.
    pub(crate) timeout: Duration,
    /// Tests only: loopback and private addresses are fetched too.
    pub(crate) allow_private: bool,
}

/// A document as served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Fetched {
    pub(crate) body: Vec<u8>,
    pub(crate) cache_control: Option<String>,
}

/// Why a fetch failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum FetchError {
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

/// A resolution the resolver refused; found again in reqwest's error chain.
#[derive(Debug, thiserror::Error)]
enum Refused {
    #[error("no address")]
    Unresolved,
    #[error("non-public address {0}")]
    Private(IpAddr),
}

/// Resolves with the system resolver and refuses names with any non-public address:
/// an attacker's name may resolve to one public and one private address and
/// leave the choice to the connector.
#[derive(Debug)]
struct VettingResolver;

impl Resolve for VettingResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let addresses: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0))
                .await
                .map_err(|_| Refused::Unresolved)?
                .collect();
            if addresses.is_empty() {
                return Err(Refused::Unresolved.into());
            }
            if let Some(ip) = addresses
                .iter()
                .map(SocketAddr::ip)
                .find(|ip| !address::is_public(*ip))
            {
                return Err(Refused::Private(ip).into());
            }
            let addrs: Addrs = Box::new(addresses.into_iter());
            Ok(addrs)
        })
    }
}

/// The HTTP clients documents are fetched with: one that only reaches public
/// addresses, and (built only when a test configuration asks) one that reaches any.
#[derive(Debug, Clone)]
pub(crate) struct Fetcher {
    /// `None` if it could not be built (no TLS roots): every fetch then fails.
    public_only: Option<reqwest::Client>,
    any_address: Option<reqwest::Client>,
}

impl Fetcher {
    /// `allow_private` builds the second client (`allow_private_addresses` at start).
    pub(crate) fn new(allow_private: bool) -> Self {
        let builder = || {
            reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                // A proxy would resolve the name itself, unchecked.
                .no_proxy()
                .user_agent(concat!("mcpgate/", env!("CARGO_PKG_VERSION")))
        };
        let built = |result: reqwest::Result<reqwest::Client>| match result {
            Ok(client) => Some(client),
            Err(error) => {
                tracing::error!(
                    "the HTTP client for metadata documents could not be built: {error}"
                );
                None
            }
        };
        Self {
            public_only: built(builder().dns_resolver(Arc::new(VettingResolver)).build()),
            any_address: allow_private.then(|| built(builder().build())).flatten(),
        }
    }

    /// GETs `url` within `limits`.
    pub(crate) async fn fetch(&self, url: &Url, limits: Limits) -> Result<Fetched, FetchError> {
        tokio::time::timeout(limits.timeout, self.fetch_unbounded(url, limits))
            .await
            .unwrap_or(Err(FetchError::Timeout(limits.timeout)))
    }

    async fn fetch_unbounded(&self, url: &Url, limits: Limits) -> Result<Fetched, FetchError> {
        let client = match (&self.any_address, limits.allow_private) {
            (Some(any), true) => any,
            // Allowed by a reload after a start without it: stay strict.
            _ => {
                match url.host() {
                    Some(Host::Ipv4(ip)) => vet(IpAddr::V4(ip))?,
                    Some(Host::Ipv6(ip)) => vet(IpAddr::V6(ip))?,
                    Some(Host::Domain(_)) => {}
                    None => return Err(FetchError::Resolve),
                }
                self.public_only
                    .as_ref()
                    .ok_or_else(|| FetchError::Request("no HTTP client".into()))?
            }
        };
        let mut response = client
            .get(url.clone())
            .header(header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(|error| classify(&error))?;
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
        while let Some(chunk) = response.chunk().await.map_err(|error| classify(&error))? {
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
}

fn vet(ip: IpAddr) -> Result<(), FetchError> {
    if address::is_public(ip) {
        Ok(())
    } else {
        Err(FetchError::PrivateAddress(ip))
    }
}

/// The resolver's refusal if it caused `error`, else a description without the URL.
fn classify(error: &reqwest::Error) -> FetchError {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(cause) = source {
        if let Some(refused) = cause.downcast_ref::<Refused>() {
            return match refused {
                Refused::Unresolved => FetchError::Resolve,
                Refused::Private(ip) => FetchError::PrivateAddress(*ip),
            };
        }
        source = cause.source();
    }
    FetchError::Request(describe(error))
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
            let error = Fetcher::new(false)
                .fetch(&Url::parse(url).unwrap(), LIMITS)
                .await
                .unwrap_err();
            assert!(
                matches!(error, FetchError::PrivateAddress(_)),
                "{url}: {error}"
            );
        }
    }

    #[tokio::test]
    async fn names_resolving_to_private_addresses_are_refused() {
        let error = Fetcher::new(false)
            .fetch(&Url::parse("https://localhost:1/c").unwrap(), LIMITS)
            .await
            .unwrap_err();
        assert!(
            matches!(error, FetchError::PrivateAddress(ip) if ip.is_loopback()),
            "{error}"
        );
    }
}
