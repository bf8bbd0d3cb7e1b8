//! Key providers: a symmetric secret (fixed) or a remote JWKS. A remote set is
//! fetched at start, refreshed in the background (honouring `Cache-Control: max-age`
//! within bounds), refetched once when a token names an unknown `kid` (single-flight;
//! only these refetches are rate-limited, so a key rotated in just after another fetch
//! is picked up at once), kept through IdP outages up to `max_stale`, then failed
//! closed.
//! Sets are published with `arc-swap`: the verify path reads the current one without
//! waiting on a lock or the network.
//!
//! Written here rather than taken from a crate: the JWKS crates either refetch on
//! every unknown `kid` without a rate limit or pin old jsonwebtoken/reqwest versions.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use arc_swap::ArcSwap;
use futures_util::StreamExt;
use jsonwebtoken::Algorithm;
use tokio::time::Instant;
use url::Url;

use super::LocalIssuer;
use super::claim_map::TokenProfile;
use super::key_source::KeySource;
use super::keys::KeySet;
use crate::config::{ClaimScopesConfig, ConfigError, JwksProviderConfig};
use crate::telemetry::metrics::metrics;

/// Largest JWKS document read; real ones are a few KiB.
pub const MAX_JWKS_BYTES: usize = 256 * 1024;
/// Longest a JWKS fetch may take.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
/// First retry delay after a failed fetch; doubles up to the refresh interval.
const FIRST_RETRY: Duration = Duration::from_secs(1);

/// Why a JWKS could not be fetched.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// The connection or the request failed (DNS, TLS, timeout, refused).
    #[error("request failed: {}", crate::error_chain(.0))]
    Http(#[from] reqwest::Error),
    /// The endpoint answered with this non-success HTTP status.
    #[error("answered HTTP {0}")]
    Status(u16),
    /// The body exceeded [`MAX_JWKS_BYTES`]; reading stopped there.
    #[error("document larger than {MAX_JWKS_BYTES} bytes")]
    TooLarge,
    /// The body is not JSON.
    #[error("not a JSON document: {0}")]
    Json(#[from] serde_json::Error),
    /// JSON, but not a JWKS: it has no `keys` array.
    #[error("{0}")]
    Shape(&'static str),
}

/// A published key set and when it was fetched (`None` for a fixed set).
pub struct Snapshot {
    pub(crate) keys: KeySet,
    fetched_at: Option<Instant>,
}

/// One configured key source.
pub struct Provider {
    /// The config key naming this provider, for logs and errors.
    pub label: String,
    /// Tokens verified by this provider must carry this `iss`; other issuers' tokens
    /// never reach its keys.
    pub issuer: Option<String>,
    /// Refuse tokens whose `typ` is not `at+jwt` (RFC 9068 §4).
    pub require_at_jwt: bool,
    /// How the tokens this provider verifies are read (audience, scopes, client id).
    pub profile: TokenProfile,
    /// Tokens naming its issuer are verified by it alone, never by a provider that
    /// accepts any issuer (mcpgate's own tokens, when it is the authorization server).
    pub(crate) exclusive: bool,
    current: ArcSwap<Snapshot>,
    remote: Option<RemoteSource>,
}

struct RemoteSource {
    url: Url,
    allowed: Vec<Algorithm>,
    refresh_interval: Duration,
    min_refetch_interval: Duration,
    max_stale: Duration,
    /// Serialises fetches (concurrent unknown-`kid` refetches share one request) and
    /// holds what they mean for the next unknown-`kid` refetch.
    ledger: tokio::sync::Mutex<FetchLedger>,
    /// Fetches begun so far. Read before queueing for `ledger`, it tells the fetches
    /// that began after a caller saw an unknown `kid` from those that began before.
    started: AtomicU64,
    /// Bumped on every successful fetch, so a waiter can tell a new set was published.
    generation: AtomicU64,
}

/// What the fetches so far mean for an unknown-`kid` refetch. Only these refetches are
/// rate-limited: the start-up fetch, scheduled refreshes and retries after a failure
/// do not close the window, or a key that a provider publishes and signs with right
/// after one of them would be refused for up to `min_refetch_interval`.
#[derive(Debug, Default)]
struct FetchLedger {
    /// Sequence number (the count in `started`) of the last fetch that published a set.
    last_published: u64,
    /// When the last unknown-`kid` refetch began, whether it succeeded or not (so a
    /// flood of unknown kids during an outage costs one fetch per window too).
    last_kid_refetch: Option<Instant>,
}

/// The counters of a [`RemoteSource`] when an unknown `kid` was seen.
#[derive(Debug, Clone, Copy)]
struct Seen {
    generation: u64,
    started: u64,
}

/// What an unknown `kid` leads to.
#[derive(Debug, PartialEq, Eq)]
enum KidRefetch {
    /// A fetch that began after the `kid` was seen has published: it holds what the
    /// provider publishes now, and another would fetch the same.
    Covered,
    /// An unknown-`kid` refetch began less than `min_refetch_interval` ago.
    RateLimited,
    Fetch,
}

impl FetchLedger {
    /// `seen_started`: the value of `started` when the unknown `kid` was seen.
    fn decide(&self, seen_started: u64, now: Instant, window: Duration) -> KidRefetch {
        if self.last_published > seen_started {
            return KidRefetch::Covered;
        }
        match self.last_kid_refetch {
            Some(at) if now.saturating_duration_since(at) < window => KidRefetch::RateLimited,
            _ => KidRefetch::Fetch,
        }
    }
}

impl Provider {
    /// Builds a provider from config, without global `claim_scopes`.
    pub fn from_config(label: String, config: &JwksProviderConfig) -> Result<Self, ConfigError> {
        Self::with_global_claims(label, config, &ClaimScopesConfig::default())
    }

    /// Builds a provider from config, the `global` claim mappings applying before its
    /// own. A remote one starts empty: call [`Provider::fetch`]. `label` is the
    /// entry's key (`auth.oauth.jwks[0]`), which errors name.
    pub fn with_global_claims(
        label: String,
        config: &JwksProviderConfig,
        global: &ClaimScopesConfig,
    ) -> Result<Self, ConfigError> {
        let (keys, remote) = match config.key_source(&label)? {
            KeySource::Secret(key) => {
                let set = KeySet::symmetric(
                    key.secret.expose().as_bytes(),
                    key.algorithm,
                    key.header_key_id,
                );
                (set, None)
            }
            KeySource::Remote(source) => {
                let remote = RemoteSource {
                    url: source.url,
                    allowed: source.algorithms,
                    refresh_interval: source.refresh_interval,
                    min_refetch_interval: source.min_refetch_interval,
                    max_stale: source.max_stale,
                    ledger: tokio::sync::Mutex::new(FetchLedger::default()),
                    started: AtomicU64::new(0),
                    generation: AtomicU64::new(0),
                };
                (KeySet::default(), Some(remote))
            }
        };
        Ok(Self {
            label,
            issuer: config.issuer.clone(),
            require_at_jwt: config.require_at_jwt,
            profile: TokenProfile::from_config(config, global),
            exclusive: false,
            current: ArcSwap::from_pointee(Snapshot {
                keys,
                fetched_at: None,
            }),
            remote,
        })
    }

    /// The provider of mcpgate's own access tokens: a fixed key set, its issuer
    /// only, `at+jwt` only, audiences its own. Global claim mappings still apply.
    pub(crate) fn local(
        issuer: &LocalIssuer,
        global: &ClaimScopesConfig,
        rule_claims: Arc<[String]>,
    ) -> Result<Self, ConfigError> {
        let (keys, _) = KeySet::from_jwks(&issuer.jwks, &[Algorithm::ES256])
            .map_err(|message| ConfigError::invalid("authorization_server.signing_key", message))?;
        let mut profile = TokenProfile::from_config(&JwksProviderConfig::default(), global);
        profile.audiences = Some(issuer.audiences.clone());
        profile.rule_claims = rule_claims;
        Ok(Self {
            label: "authorization_server".to_owned(),
            issuer: Some(issuer.issuer.clone()),
            require_at_jwt: true,
            profile,
            exclusive: true,
            current: ArcSwap::from_pointee(Snapshot {
                keys,
                fetched_at: None,
            }),
            remote: None,
        })
    }

    /// The current key set, or `None` when a remote set is older than `max_stale`
    /// (or was never fetched): then this provider verifies nothing (fail closed).
    pub fn keys(&self) -> Option<arc_swap::Guard<Arc<Snapshot>>> {
        let snapshot = self.current.load();
        match &self.remote {
            None => Some(snapshot),
            Some(remote) => match snapshot.fetched_at {
                Some(at) if at.elapsed() <= remote.max_stale => Some(snapshot),
                _ => None,
            },
        }
    }

    /// The configured refresh interval (zero for a fixed set).
    pub fn refresh_interval(&self) -> Duration {
        self.remote
            .as_ref()
            .map_or(Duration::ZERO, |remote| remote.refresh_interval)
    }

    /// Whether a token verified earlier with key `kid` may still be trusted: the keys
    /// are not stale and the key is still published (a key dropped from the JWKS stops
    /// cached tokens at once, not when the cache entry expires).
    pub fn still_vouches_for(&self, kid: Option<&str>) -> bool {
        self.keys()
            .is_some_and(|snapshot| kid.is_none_or(|kid| snapshot.keys.has_kid(kid)))
    }

    pub(crate) fn is_remote(&self) -> bool {
        self.remote.is_some()
    }

    /// The number of usable keys, for logs and readiness.
    pub fn key_count(&self) -> usize {
        self.keys().map_or(0, |snapshot| snapshot.keys.len())
    }

    /// Time since the last successful fetch (`None` for a fixed set or before the first).
    pub fn key_age(&self) -> Option<Duration> {
        self.current.load().fetched_at.map(|at| at.elapsed())
    }

    /// Why this provider cannot verify tokens now (`None`: it can): a remote set never
    /// fetched, stale beyond `max_stale`, or without a usable key.
    pub fn unready_reason(&self) -> Option<String> {
        let remote = self.remote.as_ref()?;
        let label = &self.label;
        match self.key_age() {
            None => Some(format!("{label}: JWKS not fetched yet")),
            Some(age) if age > remote.max_stale => Some(format!(
                "{label}: JWKS stale (last fetched {} ago, max_stale {})",
                humantime::format_duration(Duration::from_secs(age.as_secs())),
                humantime::format_duration(remote.max_stale)
            )),
            Some(_) if self.key_count() == 0 => {
                Some(format!("{label}: JWKS holds no usable signing key"))
            }
            Some(_) => None,
        }
    }

    /// Fetches the remote JWKS and publishes it; returns the `Cache-Control: max-age`
    /// it was served with. A no-op for a symmetric provider.
    pub async fn fetch(&self, client: &reqwest::Client) -> Result<Option<Duration>, FetchError> {
        let Some(remote) = &self.remote else {
            return Ok(None);
        };
        let mut ledger = remote.ledger.lock().await;
        self.fetch_locked(remote, &mut ledger, client).await
    }

    /// One fetch, with `ledger` (the fetch lock) held.
    async fn fetch_locked(
        &self,
        remote: &RemoteSource,
        ledger: &mut FetchLedger,
        client: &reqwest::Client,
    ) -> Result<Option<Duration>, FetchError> {
        let sequence = remote.started.fetch_add(1, Ordering::SeqCst) + 1;
        let result = self.download_and_publish(remote, client).await;
        if result.is_ok() {
            ledger.last_published = sequence;
        }
        metrics().jwks_fetch(&self.label, result.is_ok());
        result
    }

    async fn download_and_publish(
        &self,
        remote: &RemoteSource,
        client: &reqwest::Client,
    ) -> Result<Option<Duration>, FetchError> {
        let (document, max_age) = fetch_document(client, &remote.url).await?;
        let (set, skipped) =
            KeySet::from_jwks(&document, &remote.allowed).map_err(FetchError::Shape)?;
        for (kid, reason) in skipped {
            tracing::debug!(provider = %self.label, ?kid, ?reason, "JWK skipped");
        }
        self.current.store(Arc::new(Snapshot {
            keys: set,
            fetched_at: Some(Instant::now()),
        }));
        remote.generation.fetch_add(1, Ordering::SeqCst);
        Ok(max_age)
    }

    /// Called when a token names a `kid` no current key has. Fetches the set again
    /// unless a fetch that began since has published, or an unknown-`kid` refetch began
    /// within `min_refetch_interval` (other fetches do not count); concurrent callers
    /// wait for one shared fetch. Returns whether a new set was published since the call.
    pub async fn refetch_for_unknown_kid(self: &Arc<Self>, client: &reqwest::Client) -> bool {
        let Some(remote) = &self.remote else {
            return false;
        };
        let seen = Seen {
            generation: remote.generation.load(Ordering::SeqCst),
            started: remote.started.load(Ordering::SeqCst),
        };
        let (provider, client) = (Arc::clone(self), client.clone());
        // In a task of its own: a client that hangs up must not cancel a refetch that
        // has already closed the window for every other request.
        tokio::spawn(async move { provider.refetch_after(seen, &client).await })
            .await
            .unwrap_or(false)
    }

    async fn refetch_after(&self, seen: Seen, client: &reqwest::Client) -> bool {
        let Some(remote) = &self.remote else {
            return false;
        };
        let mut ledger = remote.ledger.lock().await;
        let published_since = || remote.generation.load(Ordering::SeqCst) != seen.generation;
        let now = Instant::now();
        match ledger.decide(seen.started, now, remote.min_refetch_interval) {
            KidRefetch::Covered => return true,
            KidRefetch::RateLimited => return published_since(),
            KidRefetch::Fetch => ledger.last_kid_refetch = Some(now),
        }
        match self.fetch_locked(remote, &mut ledger, client).await {
            Ok(_) => {
                tracing::info!(provider = %self.label, "JWKS refetched for an unknown kid");
                true
            }
            Err(error) => {
                tracing::warn!(provider = %self.label, %error, "JWKS refetch for an unknown kid failed");
                // A fetch that was under way when the kid was seen may have published.
                published_since()
            }
        }
    }

    /// Keeps the remote set fresh until the returned handle is aborted: every
    /// `refresh_interval` (sooner if `Cache-Control: max-age` says so, never more often
    /// than `min_refetch_interval`); after a failure, retries with backoff and keeps
    /// the previous keys. `first_delay` is zero when the start-up fetch failed.
    /// While refreshed, the provider's keys are exported as metrics: the providers of
    /// the gateway in service are the ones refreshed.
    pub fn spawn_refresh(
        self: &Arc<Self>,
        client: reqwest::Client,
        first_delay: Duration,
    ) -> Option<tokio::task::JoinHandle<()>> {
        let remote = self.remote.as_ref()?;
        metrics().track_jwks(self);
        let (interval, floor) = (remote.refresh_interval, remote.min_refetch_interval);
        let provider = Arc::clone(self);
        Some(tokio::spawn(async move {
            let mut delay = first_delay;
            let mut backoff = FIRST_RETRY;
            loop {
                tokio::time::sleep(delay).await;
                match provider.fetch(&client).await {
                    Ok(max_age) => {
                        backoff = FIRST_RETRY;
                        delay = next_refresh(interval, floor, max_age);
                        tracing::debug!(provider = %provider.label, keys = provider.key_count(), "JWKS refreshed");
                    }
                    Err(error) => {
                        delay = backoff;
                        backoff = (backoff * 2).min(interval);
                        tracing::warn!(
                            provider = %provider.label,
                            %error,
                            retry_in = %humantime::format_duration(delay),
                            "JWKS fetch failed; keeping the previous keys"
                        );
                    }
                }
            }
        }))
    }
}

impl crate::telemetry::metrics::KeySetGauge for Provider {
    fn label(&self) -> &str {
        &self.label
    }

    fn key_count(&self) -> usize {
        Provider::key_count(self)
    }

    fn key_age(&self) -> Option<Duration> {
        Provider::key_age(self)
    }
}

/// `max-age` may shorten the refresh interval, never below the refetch floor; it never
/// lengthens it (a long CDN max-age must not slow down key rotation).
fn next_refresh(interval: Duration, floor: Duration, max_age: Option<Duration>) -> Duration {
    match max_age {
        Some(max_age) => max_age.clamp(floor.min(interval), interval),
        None => interval,
    }
}

/// The HTTP client for identity-provider calls: no redirects (a JWKS URL that
/// redirects is a misconfiguration or an attack), no ambient proxy, short timeouts.
pub fn idp_client() -> Result<reqwest::Client, reqwest::Error> {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .timeout(FETCH_TIMEOUT)
        .connect_timeout(FETCH_TIMEOUT)
        .user_agent(concat!("mcpgate/", env!("CARGO_PKG_VERSION")))
        .build()
}

async fn fetch_document(
    client: &reqwest::Client,
    url: &Url,
) -> Result<(serde_json::Value, Option<Duration>), FetchError> {
    let response = client
        .get(url.clone())
        .header(
            http::header::ACCEPT,
            "application/json, application/jwk-set+json",
        )
        .send()
        .await?;
    let status = response.status();
    if !status.is_success() {
        return Err(FetchError::Status(status.as_u16()));
    }
    let max_age = response
        .headers()
        .get(http::header::CACHE_CONTROL)
        .and_then(|value| value.to_str().ok())
        .and_then(max_age);
    if response
        .content_length()
        .is_some_and(|len| len > MAX_JWKS_BYTES as u64)
    {
        return Err(FetchError::TooLarge);
    }
    let mut body = Vec::new();
    let mut stream = response.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk?;
        if body.len() + chunk.len() > MAX_JWKS_BYTES {
            return Err(FetchError::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok((serde_json::from_slice(&body)?, max_age))
}

/// `max-age=N` from a `Cache-Control` value (RFC 9111 §5.2.2.1).
fn max_age(cache_control: &str) -> Option<Duration> {
    cache_control.split(',').find_map(|directive| {
        let (name, value) = directive.trim().split_once('=')?;
        if name.trim().eq_ignore_ascii_case("max-age") {
            value
                .trim()
                .trim_matches('"')
                .parse::<u64>()
                .ok()
                .map(Duration::from_secs)
        } else {
            None
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicBool, AtomicUsize};

    const HOUR: Duration = Duration::from_secs(3600);

    /// A JWKS endpoint in the test process: serves one RSA key under each `kid` in
    /// `kids`, counts fetches, answers 500 while `failing`.
    #[derive(Clone)]
    struct Idp {
        url: Url,
        kids: Arc<Mutex<Vec<&'static str>>>,
        fetches: Arc<AtomicUsize>,
        failing: Arc<AtomicBool>,
        /// Answers wait while a test holds this for writing.
        gate: Arc<tokio::sync::RwLock<()>>,
    }

    impl Idp {
        async fn start(kids: &[&'static str]) -> Self {
            let pem = std::fs::read(
                std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                    .join("tests/fixtures/rsa_private.pem"),
            )
            .unwrap();
            let key = jsonwebtoken::EncodingKey::from_rsa_pem(&pem).unwrap();
            let jwk = jsonwebtoken::jwk::Jwk::from_encoding_key(&key, Algorithm::RS256).unwrap();
            let jwk = serde_json::to_value(jwk).unwrap();
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let idp = Self {
                url: Url::parse(&format!("http://{}/jwks", listener.local_addr().unwrap()))
                    .unwrap(),
                kids: Arc::new(Mutex::new(kids.to_vec())),
                fetches: Arc::default(),
                failing: Arc::default(),
                gate: Arc::default(),
            };
            let state = idp.clone();
            let router = axum::Router::new().route(
                "/jwks",
                axum::routing::get(move || {
                    let (state, jwk) = (state.clone(), jwk.clone());
                    async move {
                        state.fetches.fetch_add(1, Ordering::SeqCst);
                        drop(state.gate.read().await);
                        if state.failing.load(Ordering::SeqCst) {
                            return Err(http::StatusCode::INTERNAL_SERVER_ERROR);
                        }
                        let keys: Vec<serde_json::Value> = state
                            .kids
                            .lock()
                            .unwrap()
                            .iter()
                            .map(|kid| {
                                let mut jwk = jwk.clone();
                                jwk["kid"] = (*kid).into();
                                jwk
                            })
                            .collect();
                        Ok(axum::Json(serde_json::json!({ "keys": keys })))
                    }
                }),
            );
            tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
            idp
        }

        fn fetches(&self) -> usize {
            self.fetches.load(Ordering::SeqCst)
        }

        /// The provider publishes `kid` first, keeping the others.
        fn rotate_in(&self, kid: &'static str) {
            self.kids.lock().unwrap().insert(0, kid);
        }

        fn set_failing(&self, failing: bool) {
            self.failing.store(failing, Ordering::SeqCst);
        }
    }

    /// A provider for `idp` whose scheduled refresh never comes during a test; its
    /// start-up fetch done.
    async fn started(
        idp: &Idp,
        min_refetch_interval: Duration,
    ) -> (Arc<Provider>, reqwest::Client) {
        let config = JwksProviderConfig {
            url: Some(idp.url.clone()),
            algorithms: vec![Algorithm::RS256],
            refresh_interval: HOUR,
            min_refetch_interval,
            ..JwksProviderConfig::default()
        };
        let provider = Arc::new(Provider::from_config("test".into(), &config).unwrap());
        let client = idp_client().unwrap();
        provider.fetch(&client).await.unwrap();
        assert_eq!(idp.fetches(), 1);
        (provider, client)
    }

    #[test]
    fn only_unknown_kid_refetches_close_the_window() {
        let (window, start) = (Duration::from_secs(30), Instant::now());
        let second = Duration::from_secs(1);
        // The start-up fetch (sequence 1) published just now: it does not close the window.
        let mut ledger = FetchLedger {
            last_published: 1,
            last_kid_refetch: None,
        };
        assert_eq!(ledger.decide(1, start, window), KidRefetch::Fetch);
        // Nor does a scheduled refresh (sequence 2), or any number of them.
        ledger.last_published = 2;
        assert_eq!(ledger.decide(2, start + second, window), KidRefetch::Fetch);
        // An unknown-kid refetch does, for `window` from when it began.
        ledger.last_kid_refetch = Some(start + second);
        assert_eq!(
            ledger.decide(2, start + 30 * second, window),
            KidRefetch::RateLimited
        );
        assert_eq!(
            ledger.decide(2, start + 31 * second, window),
            KidRefetch::Fetch
        );
    }

    #[test]
    fn a_fetch_begun_after_the_kid_was_seen_covers_it() {
        let now = Instant::now();
        let ledger = FetchLedger {
            last_published: 3,
            last_kid_refetch: Some(now),
        };
        // Seen while fetch 2 ran or before: fetch 3 began later and published.
        assert_eq!(ledger.decide(2, now, HOUR), KidRefetch::Covered);
        // Seen while fetch 3 ran: it may predate the new key, and the window is closed.
        assert_eq!(ledger.decide(3, now, HOUR), KidRefetch::RateLimited);
        // The window open, a fetch that began before the kid was seen does not count.
        let without_refetch = FetchLedger {
            last_published: 3,
            last_kid_refetch: None,
        };
        assert_eq!(without_refetch.decide(3, now, HOUR), KidRefetch::Fetch);
    }

    #[tokio::test]
    async fn a_key_rotated_in_right_after_the_start_up_fetch_is_fetched_at_once() {
        let idp = Idp::start(&["old"]).await;
        let (provider, client) = started(&idp, HOUR).await;
        idp.rotate_in("new");
        assert!(provider.refetch_for_unknown_kid(&client).await);
        assert!(provider.still_vouches_for(Some("new")));
        assert_eq!(idp.fetches(), 2);
        // That refetch closed the window: another unknown kid waits for it.
        idp.rotate_in("newer");
        assert!(!provider.refetch_for_unknown_kid(&client).await);
        assert!(!provider.still_vouches_for(Some("newer")));
        assert_eq!(idp.fetches(), 2);
    }

    #[tokio::test]
    async fn scheduled_refreshes_and_failed_retries_leave_the_window_open() {
        let idp = Idp::start(&["old"]).await;
        let (provider, client) = started(&idp, HOUR).await;
        // A scheduled refresh, then a failed one and its failed retry (the refresher
        // calls `fetch` for each); the last good keys stay.
        provider.fetch(&client).await.unwrap();
        idp.set_failing(true);
        assert!(provider.fetch(&client).await.is_err());
        assert!(provider.fetch(&client).await.is_err());
        assert!(provider.still_vouches_for(Some("old")));
        idp.set_failing(false);
        idp.rotate_in("new");
        assert!(provider.refetch_for_unknown_kid(&client).await);
        assert!(provider.still_vouches_for(Some("new")));
        assert_eq!(idp.fetches(), 5);
    }

    #[tokio::test]
    async fn the_window_reopens_after_min_refetch_interval() {
        let window = Duration::from_millis(100);
        let idp = Idp::start(&["old"]).await;
        let (provider, client) = started(&idp, window).await;
        idp.rotate_in("new");
        assert!(provider.refetch_for_unknown_kid(&client).await);
        tokio::time::sleep(window + Duration::from_millis(50)).await;
        idp.rotate_in("newer");
        assert!(provider.refetch_for_unknown_kid(&client).await);
        assert!(provider.still_vouches_for(Some("newer")));
        assert_eq!(idp.fetches(), 3);
    }

    #[tokio::test]
    async fn a_refetch_completes_when_its_caller_hangs_up() {
        let idp = Idp::start(&["old"]).await;
        let (provider, client) = started(&idp, HOUR).await;
        idp.rotate_in("new");
        let held = idp.gate.clone().write_owned().await;
        // The request that saw the kid goes away while the IdP has not answered yet.
        let call = provider.refetch_for_unknown_kid(&client);
        let hung_up = tokio::time::timeout(Duration::from_millis(100), call).await;
        assert!(hung_up.is_err());
        let mut waited = 0;
        while idp.fetches() < 2 {
            assert!(waited < 500, "the refetch never reached the IdP");
            tokio::time::sleep(Duration::from_millis(10)).await;
            waited += 1;
        }
        drop(held);
        // The refetch closed the window, so it must publish what it fetched: no other
        // request could fetch the new key before the window ends.
        let mut waited = 0;
        while !provider.still_vouches_for(Some("new")) {
            assert!(waited < 500, "the abandoned refetch never published");
            tokio::time::sleep(Duration::from_millis(10)).await;
            waited += 1;
        }
        assert!(!provider.refetch_for_unknown_kid(&client).await);
        assert_eq!(idp.fetches(), 2);
    }

    /// `count` concurrent unknown-kid refetches; how many reported a new set.
    async fn flood(provider: &Arc<Provider>, client: &reqwest::Client, count: usize) -> usize {
        let tasks: Vec<_> = (0..count)
            .map(|_| {
                let (provider, client) = (Arc::clone(provider), client.clone());
                tokio::spawn(async move { provider.refetch_for_unknown_kid(&client).await })
            })
            .collect();
        let mut refreshed = 0;
        for task in tasks {
            refreshed += usize::from(task.await.unwrap());
        }
        refreshed
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_flood_of_unknown_kids_shares_one_fetch() {
        let idp = Idp::start(&["old"]).await;
        let (provider, client) = started(&idp, HOUR).await;
        flood(&provider, &client, 500).await;
        assert_eq!(idp.fetches(), 2);
        assert_eq!(flood(&provider, &client, 500).await, 0);
        assert_eq!(idp.fetches(), 2);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_flood_during_an_outage_costs_one_fetch_and_keeps_the_keys() {
        let idp = Idp::start(&["old"]).await;
        let (provider, client) = started(&idp, HOUR).await;
        idp.set_failing(true);
        assert_eq!(flood(&provider, &client, 500).await, 0);
        assert_eq!(flood(&provider, &client, 500).await, 0);
        assert_eq!(idp.fetches(), 2);
        assert!(provider.still_vouches_for(Some("old")));
        assert_eq!(provider.key_count(), 1);
    }

    #[test]
    fn reads_max_age_among_other_directives() {
        assert_eq!(
            max_age("public, max-age=300, must-revalidate"),
            Some(Duration::from_secs(300))
        );
        assert_eq!(max_age("MAX-AGE=\"60\""), Some(Duration::from_secs(60)));
        assert_eq!(max_age("no-cache"), None);
        assert_eq!(max_age("max-age=soon"), None);
    }

    #[test]
    fn max_age_shortens_within_bounds_but_never_lengthens() {
        let (interval, floor) = (Duration::from_secs(600), Duration::from_secs(30));
        assert_eq!(next_refresh(interval, floor, None), interval);
        assert_eq!(
            next_refresh(interval, floor, Some(Duration::from_secs(120))),
            Duration::from_secs(120)
        );
        assert_eq!(
            next_refresh(interval, floor, Some(Duration::from_secs(1))),
            floor
        );
        assert_eq!(
            next_refresh(interval, floor, Some(Duration::from_secs(86_400))),
            interval
        );
    }

    #[test]
    fn jwks_gauges_follow_live_providers_one_per_label() {
        let value = |text: &str, series: &str| -> Option<f64> {
            text.lines().find_map(|line| {
                let rest = line.strip_prefix(series)?.strip_prefix(' ')?;
                rest.parse().ok()
            })
        };
        let config: crate::config::JwksProviderConfig =
            serde_json::from_value(serde_json::json!({"url": "http://127.0.0.1:9/jwks"})).unwrap();
        let provider =
            |label: &str| Arc::new(Provider::from_config(label.to_owned(), &config).unwrap());
        let metrics = crate::telemetry::metrics::Metrics::new();
        assert!(!metrics.encode().contains("mcpgate_jwks_keys"));
        let old = provider("auth.oauth.jwks[0]");
        let new = provider("auth.oauth.jwks[0]");
        let other = provider("auth.oauth.jwks[1]");
        metrics.track_jwks(&old);
        metrics.track_jwks(&new);
        metrics.track_jwks(&other);
        let text = metrics.encode();
        assert_eq!(text.matches("mcpgate_jwks_keys{").count(), 2, "{text}");
        assert_eq!(
            value(&text, r#"mcpgate_jwks_keys{provider="auth.oauth.jwks[0]"}"#),
            Some(0.0)
        );
        // Never fetched: no age to report.
        assert!(!text.contains("mcpgate_jwks_key_age_seconds{"));
        drop((old, new));
        let text = metrics.encode();
        assert_eq!(text.matches("mcpgate_jwks_keys{").count(), 1, "{text}");
        assert!(text.contains(r#"provider="auth.oauth.jwks[1]""#));
    }
}
