//! API keys: `mcpk_<id>_<secret>`. The prefix routes a bearer value here without
//! guessing from its shape (a long opaque key with two dots is still a key, never a
//! JWT); the id finds the stored argon2id hash. Successful verifications are cached
//! by the key's SHA-256, and failures per id are rate-limited, because argon2 costs
//! tens of milliseconds: unbounded, it would be a denial-of-service lever.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use argon2::password_hash::phc::PasswordHash;
use argon2::{ARGON2ID_IDENT, Argon2, PasswordHasher, PasswordVerifier};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore;

use super::error::{AuthError, TokenProblem};
use super::principal::{AuthMethod, Principal, Scopes};
use crate::config::{ApiKeyConfig, ConfigError, check_scope_token};
use crate::telemetry::metrics::{TokenCache, metrics};

/// Every API key starts with this.
pub const KEY_PREFIX: &str = "mcpk_";
/// Failed verifications allowed per key id within [`FAILURE_WINDOW`].
pub const MAX_FAILURES: u32 = 10;
/// The window over which [`MAX_FAILURES`] counts, from a key id's first uncached attempt.
pub const FAILURE_WINDOW: Duration = Duration::from_secs(60);
const SECRET_BYTES: usize = 32;

/// Whether a bearer value is an API key (by prefix, never by shape).
pub fn is_api_key(token: &str) -> bool {
    token.starts_with(KEY_PREFIX)
}

/// `[A-Za-z0-9.-]{1,64}`: no `_`, which separates the id from the secret.
pub fn is_valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-')
}

/// Parses and checks a configured hash: a PHC string for argon2id.
pub fn parse_hash(hash: &str) -> Result<PasswordHash, String> {
    let parsed =
        PasswordHash::new(hash).map_err(|error| format!("not a PHC hash string: {error}"))?;
    if parsed.algorithm != ARGON2ID_IDENT {
        return Err(format!(
            "algorithm is {}, expected argon2id",
            parsed.algorithm
        ));
    }
    Ok(parsed)
}

/// A new key for `id` and the PHC hash to put in the config.
pub fn generate(id: &str) -> Result<(String, String), String> {
    if !is_valid_id(id) {
        return Err("the id must be 1-64 characters of A-Z a-z 0-9 . -".to_owned());
    }
    let mut secret = [0u8; SECRET_BYTES];
    rand::rng().fill_bytes(&mut secret);
    let key = format!("{KEY_PREFIX}{id}_{}", URL_SAFE_NO_PAD.encode(secret));
    let hash = Argon2::default()
        .hash_password(key.as_bytes())
        .map_err(|error| format!("hashing failed: {error}"))?;
    Ok((key, hash.to_string()))
}

struct StoredKey {
    hash: String,
    scopes: Scopes,
}

/// The configured keys and what has been learned about them at run time.
pub struct ApiKeyStore {
    keys: HashMap<String, StoredKey>,
    verified: moka::sync::Cache<[u8; 32], Arc<Principal>>,
    /// Per key id, the guesses left in the current [`FAILURE_WINDOW`] (which starts
    /// at the id's first uncached attempt).
    attempts: moka::sync::Cache<String, Arc<Attempts>>,
}

/// The failure budget of one key id in one window, reserved before argon2 runs.
///
/// Checking a counter and adding to it after the hash let a burst through: every
/// concurrent guess read the counter before any of them had failed. Here each
/// verification holds one of [`MAX_FAILURES`] permits while argon2 runs. A wrong
/// secret keeps its permit for good; a right one gives it back, so successful
/// use never eats into the budget. An attempt that finds every remaining permit
/// in use waits for one to be settled rather than being refused while the
/// guesses ahead of it may still turn out right (a client's own burst with a
/// key not yet cached is not locked out). Once [`MAX_FAILURES`] have failed the
/// budget is closed: waiting and later attempts get `429`.
struct Attempts {
    permits: Arc<Semaphore>,
    failures: AtomicU32,
}

impl Default for Attempts {
    fn default() -> Self {
        Self {
            permits: Arc::new(Semaphore::new(MAX_FAILURES as usize)),
            failures: AtomicU32::new(0),
        }
    }
}

impl Attempts {
    /// One guess, reserved: waits while every remaining guess is being checked,
    /// and fails once the budget is spent.
    async fn reserve(self: &Arc<Self>) -> Result<Reservation, AuthError> {
        let permit = Arc::clone(&self.permits)
            .acquire_owned()
            .await
            .map_err(|_closed| AuthError::TooManyAttempts)?;
        Ok(Reservation {
            permit,
            attempts: Arc::clone(self),
        })
    }
}

/// A reserved guess. Dropped (a right secret, or a check that never finished),
/// it is given back; [`Reservation::fail`] spends it.
struct Reservation {
    permit: OwnedSemaphorePermit,
    attempts: Arc<Attempts>,
}

impl Reservation {
    /// A wrong secret: the guess is spent for the window, and the last one closes
    /// the budget.
    fn fail(self) {
        self.permit.forget();
        let failed = self.attempts.failures.fetch_add(1, Ordering::AcqRel) + 1;
        if failed >= MAX_FAILURES {
            self.attempts.permits.close();
        }
    }
}

/// `auth.api_keys`, as far as it is checked before the store is built (ids and
/// hashes are checked by [`ApiKeyStore::from_config`]): every scope a key carries is
/// a scope-token, `*` standing for all of them.
pub(crate) fn check_scopes(keys: &[ApiKeyConfig]) -> Result<(), ConfigError> {
    for (index, key) in keys.iter().enumerate() {
        for scope in key.scopes.iter().filter(|scope| *scope != "*") {
            check_scope_token(&format!("auth.api_keys[{index}].scopes"), scope)?;
        }
    }
    Ok(())
}

/// `auth.api_key_cache_ttl`: zero would make every request pay for argon2.
pub(crate) fn check_cache_ttl(cache_ttl: Duration) -> Result<(), ConfigError> {
    if cache_ttl.is_zero() {
        return Err(ConfigError::invalid(
            "auth.api_key_cache_ttl",
            "must be greater than 0",
        ));
    }
    Ok(())
}

impl ApiKeyStore {
    pub(crate) fn from_config(
        keys: &[ApiKeyConfig],
        cache_ttl: Duration,
    ) -> Result<Self, ConfigError> {
        let mut map = HashMap::new();
        for (index, key) in keys.iter().enumerate() {
            let at = format!("auth.api_keys[{index}]");
            if !is_valid_id(&key.id) {
                return Err(ConfigError::invalid(
                    format!("{at}.id"),
                    "must be 1-64 characters of A-Z a-z 0-9 . -",
                ));
            }
            parse_hash(key.hash.expose())
                .map_err(|message| ConfigError::invalid(format!("{at}.hash"), message))?;
            let scopes = if key.scopes.iter().any(|scope| scope == "*") {
                Scopes::all()
            } else {
                Scopes::new(key.scopes.iter().cloned())
            };
            let stored = StoredKey {
                hash: key.hash.expose().to_owned(),
                scopes,
            };
            if map.insert(key.id.clone(), stored).is_some() {
                return Err(ConfigError::invalid(
                    format!("{at}.id"),
                    format!("duplicate id {:?}", key.id),
                ));
            }
        }
        Ok(Self {
            keys: map,
            verified: moka::sync::Cache::builder()
                .max_capacity(10_000)
                .time_to_live(cache_ttl)
                .build(),
            attempts: moka::sync::Cache::builder()
                .max_capacity(10_000)
                .time_to_live(FAILURE_WINDOW)
                .build(),
        })
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Whether a key was verified and is still remembered.
    pub(crate) fn is_cached(&self, digest: &[u8; 32]) -> bool {
        self.verified.contains_key(digest)
    }

    /// Verifies a key (cached on success).
    pub async fn verify(&self, token: &str, digest: [u8; 32]) -> Result<Arc<Principal>, AuthError> {
        let remembered = self.verified.get(&digest);
        metrics().token_cache(TokenCache::ApiKey, remembered.is_some());
        if let Some(principal) = remembered {
            return Ok(principal);
        }
        let id = token
            .strip_prefix(KEY_PREFIX)
            .and_then(|rest| rest.split_once('_'))
            .map(|(id, _)| id)
            .ok_or(TokenProblem::BadApiKey)?;
        let stored = self.keys.get(id).ok_or(TokenProblem::UnknownApiKey)?;
        let attempts = self.attempts.get_with(id.to_owned(), Default::default);
        let reservation = attempts.reserve().await?;
        // While this attempt waited, another may have verified the same key.
        if let Some(principal) = self.verified.get(&digest) {
            return Ok(principal);
        }
        let (hash, candidate) = (stored.hash.clone(), token.to_owned());
        // argon2 is deliberately slow: keep it off the async workers. A wrong guess
        // is spent where it is checked, so a client that hangs up meanwhile still
        // spends it.
        let matched = tokio::task::spawn_blocking(move || {
            let matched = parse_hash(&hash).is_ok_and(|hash| {
                Argon2::default()
                    .verify_password(candidate.as_bytes(), &hash)
                    .is_ok()
            });
            if matched {
                Some(reservation)
            } else {
                reservation.fail();
                None
            }
        })
        .await
        .ok()
        .flatten();
        let Some(reservation) = matched else {
            return Err(TokenProblem::BadApiKey.into());
        };
        let principal = Arc::new(Principal {
            issuer: None,
            subject: Some(format!("api-key:{id}")),
            client_id: None,
            scopes: stored.scopes.clone(),
            expires_at: None,
            method: AuthMethod::ApiKey,
            key_id: None,
            api_key_id: Some(id.to_owned()),
            // An API key carries no claims: claim conditions never match it.
            claims: serde_json::Map::new(),
            grant_id: None,
            _verified: crate::auth::principal::Verified,
        });
        self.verified.insert(digest, Arc::clone(&principal));
        // Given back once the key is cached: an attempt that waited for it finds it there.
        drop(reservation);
        Ok(principal)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Secret;

    #[test]
    fn generated_keys_carry_their_id_and_verify_against_their_hash() {
        let (key, hash) = generate("ci-pipeline").unwrap();
        assert!(key.starts_with("mcpk_ci-pipeline_"));
        assert!(hash.starts_with("$argon2id$v=19$"));
        let parsed = parse_hash(&hash).unwrap();
        assert!(
            Argon2::default()
                .verify_password(key.as_bytes(), &parsed)
                .is_ok()
        );
        assert!(
            Argon2::default()
                .verify_password(b"mcpk_ci-pipeline_wrong", &parsed)
                .is_err()
        );
    }

    #[test]
    fn ids_and_hashes_are_checked_at_load() {
        assert!(generate("has_underscore").is_err());
        assert!(parse_hash("$argon2i$v=19$m=16,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2g").is_err());
        assert!(parse_hash("plain-text").is_err());
        let config = |id: &str, hash: &str| ApiKeyConfig {
            id: id.to_owned(),
            hash: Secret::new(hash),
            scopes: vec![],
        };
        let (_, hash) = generate("a").unwrap();
        let twice = [config("a", &hash), config("a", &hash)];
        let error = ApiKeyStore::from_config(&twice, Duration::from_secs(1))
            .err()
            .unwrap();
        assert_eq!(error.to_string(), "auth.api_keys[1].id: duplicate id \"a\"");
        let bad = [config("a", "nope")];
        let error = ApiKeyStore::from_config(&bad, Duration::from_secs(1))
            .err()
            .unwrap();
        assert!(error.to_string().starts_with("auth.api_keys[0].hash: "));
    }

    /// Whether `reserve` has answered yet (without waiting for it).
    fn answered(
        reservation: &mut std::pin::Pin<Box<impl Future<Output = Result<Reservation, AuthError>>>>,
    ) -> Option<Result<Reservation, AuthError>> {
        use futures_util::FutureExt;
        reservation.as_mut().now_or_never()
    }

    #[tokio::test]
    async fn a_burst_gets_no_more_guesses_than_the_limit() {
        let attempts = Arc::new(Attempts::default());
        let mut held = Vec::new();
        for _ in 0..MAX_FAILURES {
            held.push(attempts.reserve().await.unwrap());
        }
        // Every guess of the window is being checked: the next one waits...
        let mut waiting = Box::pin(attempts.reserve());
        assert!(answered(&mut waiting).is_none());
        // ...and once they have all failed, it is refused, as is any later one.
        for reservation in held {
            reservation.fail();
        }
        assert!(matches!(
            answered(&mut waiting),
            Some(Err(AuthError::TooManyAttempts))
        ));
        assert!(matches!(
            attempts.reserve().await,
            Err(AuthError::TooManyAttempts)
        ));
        assert_eq!(attempts.failures.load(Ordering::Acquire), MAX_FAILURES);
    }

    #[tokio::test]
    async fn right_secrets_give_their_guess_back() {
        let attempts = Arc::new(Attempts::default());
        for _ in 0..3 * MAX_FAILURES {
            drop(attempts.reserve().await.unwrap());
        }
        let mut held = Vec::new();
        for _ in 0..MAX_FAILURES {
            held.push(attempts.reserve().await.unwrap());
        }
        let mut waiting = Box::pin(attempts.reserve());
        assert!(answered(&mut waiting).is_none());
        // A right secret among the guesses in flight: the waiting one takes its place.
        drop(held.pop().unwrap());
        let reservation = answered(&mut waiting).unwrap().unwrap();
        // One check that never finished (dropped) is given back too.
        drop(reservation);
        for reservation in held {
            reservation.fail();
        }
        assert_eq!(attempts.failures.load(Ordering::Acquire), MAX_FAILURES - 1);
        let last = attempts.reserve().await.unwrap();
        last.fail();
        assert!(matches!(
            attempts.reserve().await,
            Err(AuthError::TooManyAttempts)
        ));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_wrong_secrets_for_one_id_run_argon2_at_most_the_limit() {
        let (key, hash) = generate("ci").unwrap();
        let config = [ApiKeyConfig {
            id: "ci".to_owned(),
            hash: Secret::new(&hash),
            scopes: vec![],
        }];
        let store = ApiKeyStore::from_config(&config, Duration::from_secs(60)).unwrap();
        let guesses: Vec<String> = (0..3 * MAX_FAILURES)
            .map(|n| format!("mcpk_ci_guess-{n}"))
            .collect();
        let answers = futures_util::future::join_all(
            guesses
                .iter()
                .map(|guess| store.verify(guess, crate::auth::cache::digest(guess))),
        )
        .await;
        let refused = |wanted: &AuthError| {
            answers
                .iter()
                .filter(|a| a.as_ref().err() == Some(wanted))
                .count()
        };
        let bad: AuthError = TokenProblem::BadApiKey.into();
        assert_eq!(refused(&bad), MAX_FAILURES as usize);
        assert_eq!(
            refused(&AuthError::TooManyAttempts),
            2 * MAX_FAILURES as usize
        );
        // The right secret, not cached yet, is refused too until the window ends.
        assert_eq!(
            store
                .verify(&key, crate::auth::cache::digest(&key))
                .await
                .err(),
            Some(AuthError::TooManyAttempts)
        );
    }

    #[tokio::test]
    async fn a_wrong_guess_is_spent_even_when_the_client_hangs_up() {
        let (_, hash) = generate("ci").unwrap();
        let config = [ApiKeyConfig {
            id: "ci".to_owned(),
            hash: Secret::new(&hash),
            scopes: vec![],
        }];
        let store = ApiKeyStore::from_config(&config, Duration::from_secs(60)).unwrap();
        let guess = "mcpk_ci_guess";
        // Dropped while argon2 runs, as when the connection goes away.
        let verify = store.verify(guess, crate::auth::cache::digest(guess));
        assert!(
            tokio::time::timeout(Duration::from_millis(1), verify)
                .await
                .is_err()
        );
        let attempts = store.attempts.get("ci").unwrap();
        for _ in 0..500 {
            if attempts.failures.load(Ordering::Acquire) == 1 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("the abandoned wrong guess was never counted");
    }

    #[test]
    fn shape_does_not_decide_what_is_a_key() {
        let jwt_shaped = format!("{}.{}.{}", "a".repeat(40), "b".repeat(40), "c".repeat(40));
        assert!(!is_api_key(&jwt_shaped));
        assert!(is_api_key(&format!("mcpk_ci_{jwt_shaped}")));
    }
}
