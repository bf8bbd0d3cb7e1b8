//! What a completed sign-in grants, and the one-time and rotating secrets that
//! stand for it: the authorization code (single use, at most 60 s), and the refresh
//! token (rotated on every use). A replayed code or a reused refresh token means one
//! of the two copies is an attacker's, so the whole grant is revoked (RFC 6749
//! §4.1.2, OAuth 2.1 §4.3.1), and with it every access token it issued: the gateway
//! asks [`Grants::is_revoked`] of each façade token it accepts.
//!
//! Secrets are kept by their SHA-256 digest, never as issued. One process keeps
//! all of it in memory; replicas keep it in Redis (see [`super::shared`]), where a
//! code is spent and a refresh token rotated in one atomic step, so a replay on
//! another replica is caught as surely as on the same one.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use moka::sync::Cache;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::random::random_id;
use super::shared::{SharedState, Spent, Unavailable, key};

/// Longest an authorization code lives (OAuth 2.1 recommends at most a minute).
pub(crate) const CODE_TTL: Duration = Duration::from_secs(60);
/// How long a redeemed code is remembered, to catch a replay.
const USED_CODE_MEMORY: Duration = Duration::from_secs(600);
/// Most grants, codes and refresh tokens kept at once (each a few hundred bytes).
const CAPACITY: u64 = 500_000;

/// One user's permission for one client to use one resource with some scopes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Grant {
    /// Carried by every access token of the grant (`gid`), to revoke them together.
    pub(crate) id: String,
    pub(crate) client_id: String,
    /// The user, as the identity provider names them.
    pub(crate) subject: String,
    pub(crate) resource: String,
    /// The scopes granted: requested, approved, and allowed by the provider's claims.
    pub(crate) scopes: Vec<String>,
    /// When the user signed in for it (seconds since the Unix epoch).
    pub(crate) created: u64,
    /// Made for an identity assertion: no refresh token, so it lasts as long as
    /// its one access token.
    #[serde(default)]
    pub(crate) by_assertion: bool,
}

impl Grant {
    /// A new grant with a fresh id.
    pub(crate) fn new(
        client_id: String,
        subject: String,
        resource: String,
        scopes: Vec<String>,
    ) -> Self {
        Self {
            id: random_id(),
            client_id,
            subject,
            resource,
            scopes,
            created: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |since| since.as_secs()),
            by_assertion: false,
        }
    }
}

/// What a code is bound to besides its grant.
#[derive(Debug, Clone)]
struct CodeEntry {
    grant: Arc<Grant>,
    binding: CodeBinding,
}

/// The authorization request's values a code must be redeemed with.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct CodeBinding {
    redirect_uri: String,
    code_challenge: String,
}

/// How long a revocation is remembered: as long as an access token of the grant
/// can be valid, with room for clock skew.
fn revocation_memory(access_ttl: Duration) -> Duration {
    access_ttl + Duration::from_secs(120)
}

/// The checks a code's redemption makes, wherever the code was kept. A failed
/// check spends the code too: it was presented, so it is known.
fn check_code(
    grant: &Grant,
    binding: &CodeBinding,
    client_id: &str,
    redirect_uri: Option<&str>,
    code_verifier: &str,
    resource: Option<&str>,
) -> Result<(), GrantError> {
    if grant.client_id != client_id {
        return Err(GrantError::OtherClient);
    }
    if redirect_uri.is_some_and(|uri| uri != binding.redirect_uri) {
        return Err(GrantError::RedirectUri);
    }
    if !pkce_matches(code_verifier, &binding.code_challenge) {
        return Err(GrantError::Pkce);
    }
    if resource.is_some_and(|resource| resource != grant.resource) {
        return Err(GrantError::Resource);
    }
    Ok(())
}

/// Why a code or refresh token was not accepted: `invalid_grant` to the client,
/// with the reason in the log.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum GrantError {
    #[error("the code is unknown or expired")]
    UnknownCode,
    #[error("the code was already used; its grant is revoked")]
    CodeReplayed,
    #[error("the code was issued to another client")]
    OtherClient,
    #[error("redirect_uri differs from the authorization request's")]
    RedirectUri,
    #[error("the PKCE code_verifier does not match the code_challenge")]
    Pkce,
    #[error("resource differs from the authorization request's")]
    Resource,
    #[error("the refresh token is unknown, expired or revoked")]
    UnknownRefreshToken,
    #[error("the refresh token was already used; its grant is revoked")]
    RefreshTokenReused,
}

/// What a refresh token stands for.
#[derive(Debug, Clone)]
struct RefreshEntry {
    grant_id: String,
}

/// The grants in force and their secrets: this process's memory, or Redis.
#[derive(Clone)]
pub(crate) enum Grants {
    Memory(Box<Memory>),
    /// `grant:<id>` (sealed), `code:<digest>` (grant id and sealed binding),
    /// `used-code:<digest>`, `refresh:<digest>`, `rotated:<digest>` (grant ids),
    /// `revoked:<id>`.
    Redis {
        state: SharedState,
        refresh_ttl: Duration,
        access_ttl: Duration,
    },
}

/// A code's or refresh token's outcome, or Redis's failure to say.
type Checked<T> = Result<Result<T, GrantError>, Unavailable>;

impl Grants {
    /// `refresh_ttl` bounds a grant's life without use; `access_ttl` how long a
    /// revocation must be remembered.
    pub(crate) fn new(
        refresh_ttl: Duration,
        access_ttl: Duration,
        shared: Option<SharedState>,
    ) -> Self {
        match shared {
            Some(state) => Self::Redis {
                state,
                refresh_ttl,
                access_ttl,
            },
            None => Self::Memory(Box::new(Memory::new(refresh_ttl, access_ttl))),
        }
    }

    /// Records `grant` and returns the authorization code for it.
    pub(crate) async fn issue_code(
        &self,
        grant: Grant,
        redirect_uri: String,
        code_challenge: String,
    ) -> Result<String, Unavailable> {
        let binding = CodeBinding {
            redirect_uri,
            code_challenge,
        };
        let (state, refresh_ttl) = match self {
            Self::Memory(memory) => return Ok(memory.issue_code(grant, binding)),
            Self::Redis {
                state, refresh_ttl, ..
            } => (state, refresh_ttl),
        };
        let code = random_id();
        state
            .put(&key("grant", &grant.id), &grant, *refresh_ttl)
            .await?;
        index(state, &grant, *refresh_ttl).await?;
        let code_key = key("code", &digest(&code));
        let record = format!("{} {}", grant.id, state.seal(&code_key, &binding));
        state.put_plain(&code_key, &record, CODE_TTL).await?;
        Ok(code)
    }

    /// Redeems a code once, on whichever replica, checking everything it is bound
    /// to. A second redemption revokes the grant.
    pub(crate) async fn redeem_code(
        &self,
        code: &str,
        client_id: &str,
        redirect_uri: Option<&str>,
        code_verifier: &str,
        resource: Option<&str>,
    ) -> Checked<Arc<Grant>> {
        let state = match self {
            Self::Memory(memory) => {
                return Ok(memory.redeem_code(
                    code,
                    client_id,
                    redirect_uri,
                    code_verifier,
                    resource,
                ));
            }
            Self::Redis { state, .. } => state,
        };
        let code_key = key("code", &digest(code));
        let used_key = key("used-code", &digest(code));
        let record = match state.spend(&code_key, &used_key, USED_CODE_MEMORY).await? {
            Spent::Now(record) => record,
            Spent::Before(grant_id) => {
                self.revoke(&grant_id).await?;
                return Ok(Err(GrantError::CodeReplayed));
            }
            Spent::Unknown => return Ok(Err(GrantError::UnknownCode)),
        };
        let Some((grant_id, sealed)) = record.split_once(' ') else {
            return Ok(Err(GrantError::UnknownCode));
        };
        let Some(binding) = state.open::<CodeBinding>(&code_key, sealed) else {
            return Ok(Err(GrantError::UnknownCode));
        };
        // Revoked or expired: `get` finds nothing.
        let Some(grant) = self.get(grant_id).await? else {
            return Ok(Err(GrantError::UnknownCode));
        };
        Ok(check_code(
            &grant,
            &binding,
            client_id,
            redirect_uri,
            code_verifier,
            resource,
        )
        .map(|()| grant))
    }

    /// A new refresh token for a grant.
    pub(crate) async fn issue_refresh_token(&self, grant: &Grant) -> Result<String, Unavailable> {
        let (state, refresh_ttl) = match self {
            Self::Memory(memory) => return Ok(memory.issue_refresh_token(grant)),
            Self::Redis {
                state, refresh_ttl, ..
            } => (state, refresh_ttl),
        };
        let token = random_id();
        state
            .put_plain(&key("refresh", &digest(&token)), &grant.id, *refresh_ttl)
            .await?;
        Ok(token)
    }

    /// Spends a refresh token for `client_id` and returns its grant with the next
    /// token. A token spent before, on any replica, revokes the grant.
    pub(crate) async fn rotate_refresh_token(
        &self,
        token: &str,
        client_id: &str,
    ) -> Checked<(Arc<Grant>, String)> {
        let (state, refresh_ttl) = match self {
            Self::Memory(memory) => return Ok(memory.rotate_refresh_token(token, client_id)),
            Self::Redis {
                state, refresh_ttl, ..
            } => (state, refresh_ttl),
        };
        let refresh_key = key("refresh", &digest(token));
        let rotated_key = key("rotated", &digest(token));
        let grant_id = match state
            .spend(&refresh_key, &rotated_key, *refresh_ttl)
            .await?
        {
            Spent::Now(grant_id) => grant_id,
            Spent::Before(grant_id) => {
                // As in memory: a retry after a revocation is not a reuse.
                if self.is_revoked(&grant_id).await? {
                    return Ok(Err(GrantError::UnknownRefreshToken));
                }
                self.revoke(&grant_id).await?;
                return Ok(Err(GrantError::RefreshTokenReused));
            }
            Spent::Unknown => return Ok(Err(GrantError::UnknownRefreshToken)),
        };
        let Some(grant) = self.get(&grant_id).await? else {
            return Ok(Err(GrantError::UnknownRefreshToken));
        };
        if grant.client_id != client_id {
            return Ok(Err(GrantError::OtherClient));
        }
        // In use: the grant lives another `refresh_ttl`.
        state.touch(&key("grant", &grant.id), *refresh_ttl).await?;
        let next = self.issue_refresh_token(&grant).await?;
        Ok(Ok((grant, next)))
    }

    /// The grant a refresh token stands for, without spending it (revocation).
    pub(crate) async fn grant_of_refresh_token(
        &self,
        token: &str,
    ) -> Result<Option<Arc<Grant>>, Unavailable> {
        let state = match self {
            Self::Memory(memory) => return Ok(memory.grant_of_refresh_token(token)),
            Self::Redis { state, .. } => state,
        };
        match state.get_plain(&key("refresh", &digest(token))).await? {
            Some(grant_id) => self.get(&grant_id).await,
            None => Ok(None),
        }
    }

    /// The grant with this id, while in force.
    pub(crate) async fn get(&self, grant_id: &str) -> Result<Option<Arc<Grant>>, Unavailable> {
        let state = match self {
            Self::Memory(memory) => return Ok(memory.get(grant_id)),
            Self::Redis { state, .. } => state,
        };
        if self.is_revoked(grant_id).await? {
            return Ok(None);
        }
        let grant = state.get::<Grant>(&key("grant", grant_id)).await?;
        // A record under another id's key is not that grant.
        Ok(grant.filter(|grant| grant.id == grant_id).map(Arc::new))
    }

    /// Ends a grant: its refresh tokens stop working, and so do its access tokens
    /// at the MCP endpoint, on every replica.
    pub(crate) async fn revoke(&self, grant_id: &str) -> Result<(), Unavailable> {
        let (state, access_ttl) = match self {
            Self::Memory(memory) => {
                memory.revoke(grant_id);
                return Ok(());
            }
            Self::Redis {
                state, access_ttl, ..
            } => (state, access_ttl),
        };
        state
            .put_plain(
                &key("revoked", grant_id),
                "1",
                revocation_memory(*access_ttl),
            )
            .await?;
        state.delete(&key("grant", grant_id)).await?;
        tracing::warn!(grant = %grant_id, "grant revoked");
        Ok(())
    }

    /// The grant a redeemed code was for: after [`GrantError::CodeReplayed`], the
    /// grant that replay revoked.
    pub(crate) async fn grant_of_used_code(
        &self,
        code: &str,
    ) -> Result<Option<String>, Unavailable> {
        match self {
            Self::Memory(memory) => Ok(memory.grant_of_used_code(code)),
            Self::Redis { state, .. } => state.get_plain(&key("used-code", &digest(code))).await,
        }
    }

    /// The grant a rotated refresh token was for: after
    /// [`GrantError::RefreshTokenReused`], the grant that reuse revoked.
    pub(crate) async fn grant_of_rotated_token(
        &self,
        token: &str,
    ) -> Result<Option<String>, Unavailable> {
        match self {
            Self::Memory(memory) => Ok(memory.grant_of_rotated_token(token)),
            Self::Redis { state, .. } => state.get_plain(&key("rotated", &digest(token))).await,
        }
    }

    /// The grants in force of a user, of a client, or both, oldest first (the
    /// admin listing). With Redis, read through the per-user and per-client
    /// indexes written when a grant is recorded, never a key scan.
    pub(crate) async fn list(
        &self,
        subject: Option<&str>,
        client_id: Option<&str>,
    ) -> Result<Vec<Arc<Grant>>, Unavailable> {
        let selected = |grant: &Grant| {
            subject.is_none_or(|subject| grant.subject == subject)
                && client_id.is_none_or(|client| grant.client_id == client)
        };
        let state = match self {
            Self::Memory(memory) => return Ok(memory.list(selected)),
            Self::Redis { state, .. } => state,
        };
        let index_key = match (subject, client_id) {
            (Some(subject), _) => key("subject-grants", &digest(subject)),
            (None, Some(client)) => key("client-grants", &digest(client)),
            (None, None) => return Ok(Vec::new()),
        };
        let mut grants = Vec::new();
        for id in state.members(&index_key).await? {
            // Revoked, expired, or another grant's record: not listed.
            if let Some(grant) = self.get(&id).await?
                && selected(&grant)
            {
                grants.push(grant);
            }
        }
        grants.sort_by(|a, b| (a.created, &a.id).cmp(&(b.created, &b.id)));
        Ok(grants)
    }

    /// Records a grant that has no code or refresh token (an ID-JAG's), so that
    /// it can be listed and revoked while its access tokens live.
    pub(crate) async fn record(&self, grant: Grant) -> Result<Arc<Grant>, Unavailable> {
        match self {
            Self::Memory(memory) => {
                let grant = Arc::new(grant);
                memory.grants.insert(grant.id.clone(), Arc::clone(&grant));
                Ok(grant)
            }
            Self::Redis {
                state, access_ttl, ..
            } => {
                state
                    .put(&key("grant", &grant.id), &grant, *access_ttl)
                    .await?;
                index(state, &grant, *access_ttl).await?;
                Ok(Arc::new(grant))
            }
        }
    }

    /// Spends an identity assertion's `jti` (per issuer), remembered for `ttl`
    /// (until the assertion expires): `false` when it was spent before, on
    /// whichever replica.
    pub(crate) async fn spend_assertion(
        &self,
        issuer: &str,
        jti: &str,
        ttl: Duration,
    ) -> Result<bool, Unavailable> {
        let spent = key("assertion", &digest(&format!("{issuer} {jti}")));
        match self {
            Self::Memory(memory) => Ok(memory.assertions.entry(spent).or_insert(()).is_fresh()),
            Self::Redis { state, .. } => state.claim(&spent, ttl).await,
        }
    }

    /// Whether a grant was revoked (its access tokens are refused): one `EXISTS`
    /// with Redis, so a revocation on another replica counts at once.
    pub(crate) async fn is_revoked(&self, grant_id: &str) -> Result<bool, Unavailable> {
        match self {
            Self::Memory(memory) => Ok(memory.is_revoked(grant_id)),
            Self::Redis { state, .. } => state.exists(&key("revoked", grant_id)).await,
        }
    }
}

/// Grants in this process's memory.
#[derive(Clone)]
pub(crate) struct Memory {
    grants: Cache<String, Arc<Grant>>,
    codes: Cache<String, CodeEntry>,
    /// Redeemed code digest → its grant id, to revoke on a replay.
    used_codes: Cache<String, String>,
    refresh: Cache<String, RefreshEntry>,
    /// Rotated refresh token digest → its grant id, to revoke on a reuse.
    rotated: Cache<String, String>,
    /// Revoked grant ids, kept while an access token of theirs could still be valid.
    revoked: Cache<String, ()>,
    /// Spent identity assertions, kept while they could still be valid.
    assertions: Cache<String, ()>,
}

impl Memory {
    fn new(refresh_ttl: Duration, access_ttl: Duration) -> Self {
        Self {
            grants: Cache::builder()
                .max_capacity(CAPACITY)
                .time_to_idle(refresh_ttl)
                .expire_after(AssertionGrants { access_ttl })
                .build(),
            codes: expiring(CODE_TTL),
            used_codes: expiring(USED_CODE_MEMORY),
            refresh: expiring(refresh_ttl),
            rotated: expiring(refresh_ttl),
            revoked: expiring(revocation_memory(access_ttl)),
            assertions: expiring(Duration::from_secs(
                super::id_jag::MAX_LIFETIME_SECS + 2 * super::id_jag::LEEWAY_SECS,
            )),
        }
    }

    fn issue_code(&self, grant: Grant, binding: CodeBinding) -> String {
        let code = random_id();
        let grant = Arc::new(grant);
        self.grants.insert(grant.id.clone(), Arc::clone(&grant));
        self.codes
            .insert(digest(&code), CodeEntry { grant, binding });
        code
    }

    fn redeem_code(
        &self,
        code: &str,
        client_id: &str,
        redirect_uri: Option<&str>,
        code_verifier: &str,
        resource: Option<&str>,
    ) -> Result<Arc<Grant>, GrantError> {
        let key = digest(code);
        let Some(entry) = self.codes.remove(&key) else {
            if let Some(grant_id) = self.used_codes.get(&key) {
                self.revoke(&grant_id);
                return Err(GrantError::CodeReplayed);
            }
            return Err(GrantError::UnknownCode);
        };
        self.used_codes.insert(key, entry.grant.id.clone());
        check_code(
            &entry.grant,
            &entry.binding,
            client_id,
            redirect_uri,
            code_verifier,
            resource,
        )?;
        if self.is_revoked(&entry.grant.id) {
            return Err(GrantError::UnknownCode);
        }
        Ok(entry.grant)
    }

    /// A new refresh token for a grant.
    fn issue_refresh_token(&self, grant: &Grant) -> String {
        let token = random_id();
        self.refresh.insert(
            digest(&token),
            RefreshEntry {
                grant_id: grant.id.clone(),
            },
        );
        token
    }

    /// Spends a refresh token for `client_id` and returns its grant with the next
    /// token. A token spent before revokes the grant.
    fn rotate_refresh_token(
        &self,
        token: &str,
        client_id: &str,
    ) -> Result<(Arc<Grant>, String), GrantError> {
        let key = digest(token);
        let Some(entry) = self.refresh.remove(&key) else {
            if let Some(grant_id) = self.rotated.get(&key) {
                // A grant already revoked has nothing left to protect: a client
                // retrying its refresh after a revocation is not a thief.
                if self.is_revoked(&grant_id) {
                    return Err(GrantError::UnknownRefreshToken);
                }
                self.revoke(&grant_id);
                return Err(GrantError::RefreshTokenReused);
            }
            return Err(GrantError::UnknownRefreshToken);
        };
        self.rotated.insert(key, entry.grant_id.clone());
        let grant = self
            .grants
            .get(&entry.grant_id)
            .filter(|grant| !self.is_revoked(&grant.id))
            .ok_or(GrantError::UnknownRefreshToken)?;
        if grant.client_id != client_id {
            return Err(GrantError::OtherClient);
        }
        let next = self.issue_refresh_token(&grant);
        Ok((grant, next))
    }

    /// The grant a refresh token stands for, without spending it (revocation).
    fn grant_of_refresh_token(&self, token: &str) -> Option<Arc<Grant>> {
        let entry = self.refresh.get(&digest(token))?;
        self.grants.get(&entry.grant_id)
    }

    /// The grant with this id, while in force.
    fn get(&self, grant_id: &str) -> Option<Arc<Grant>> {
        self.grants
            .get(grant_id)
            .filter(|grant| !self.is_revoked(&grant.id))
    }

    /// Ends a grant: its refresh tokens stop working, and so do its access tokens
    /// at the MCP endpoint.
    fn revoke(&self, grant_id: &str) {
        self.revoked.insert(grant_id.to_owned(), ());
        self.grants.invalidate(grant_id);
        tracing::warn!(grant = %grant_id, "grant revoked");
    }

    /// The grant a redeemed code was for: after [`GrantError::CodeReplayed`], the
    /// grant that replay revoked.
    pub(crate) fn grant_of_used_code(&self, code: &str) -> Option<String> {
        self.used_codes.get(&digest(code))
    }

    /// The grant a rotated refresh token was for: after
    /// [`GrantError::RefreshTokenReused`], the grant that reuse revoked.
    pub(crate) fn grant_of_rotated_token(&self, token: &str) -> Option<String> {
        self.rotated.get(&digest(token))
    }

    /// The grants in force that `select` picks, oldest first (the admin listing;
    /// a scan, which an operator's occasional look can afford).
    pub(crate) fn list(&self, select: impl Fn(&Grant) -> bool) -> Vec<Arc<Grant>> {
        let mut grants: Vec<Arc<Grant>> = self
            .grants
            .iter()
            .map(|(_, grant)| grant)
            .filter(|grant| select(grant) && !self.is_revoked(&grant.id))
            .collect();
        grants.sort_by(|a, b| (a.created, &a.id).cmp(&(b.created, &b.id)));
        grants
    }

    /// Whether a grant was revoked (its access tokens are refused).
    fn is_revoked(&self, grant_id: &str) -> bool {
        self.revoked.contains_key(grant_id)
    }
}

/// An assertion's grant is forgotten with its access token (nothing can renew it).
struct AssertionGrants {
    access_ttl: Duration,
}

impl moka::Expiry<String, Arc<Grant>> for AssertionGrants {
    fn expire_after_create(
        &self,
        _id: &String,
        grant: &Arc<Grant>,
        _created_at: std::time::Instant,
    ) -> Option<Duration> {
        grant.by_assertion.then_some(self.access_ttl)
    }
}

/// Adds a grant to the per-user and per-client indexes the admin listing reads.
async fn index(state: &SharedState, grant: &Grant, ttl: Duration) -> Result<(), Unavailable> {
    state
        .index(
            &key("subject-grants", &digest(&grant.subject)),
            &grant.id,
            ttl,
        )
        .await?;
    state
        .index(
            &key("client-grants", &digest(&grant.client_id)),
            &grant.id,
            ttl,
        )
        .await
}

/// A bounded cache whose entries expire `ttl` after they are written.
fn expiring<V: Clone + Send + Sync + 'static>(ttl: Duration) -> Cache<String, V> {
    Cache::builder()
        .max_capacity(CAPACITY)
        .time_to_live(ttl)
        .build()
}

/// `BASE64URL(SHA256(verifier)) == challenge` (RFC 7636 §4.6), on a verifier of
/// 43 to 128 unreserved characters.
pub(crate) fn pkce_matches(verifier: &str, challenge: &str) -> bool {
    let well_formed = (43..=128).contains(&verifier.len())
        && verifier
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'));
    if !well_formed {
        return false;
    }
    let computed = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
    aws_lc_rs::constant_time::verify_slices_are_equal(computed.as_bytes(), challenge.as_bytes())
        .is_ok()
}

fn digest(secret: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(secret.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    // RFC 7636 Appendix B.
    const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
    const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";

    // The memory store; the Redis one is exercised against a real Redis by
    // tests/authorization_server_replicas.rs.
    fn grants() -> Memory {
        Memory::new(Duration::from_secs(3600), Duration::from_secs(300))
    }

    fn binding() -> CodeBinding {
        CodeBinding {
            redirect_uri: "https://c/cb".into(),
            code_challenge: CHALLENGE.into(),
        }
    }

    fn grant() -> Grant {
        Grant::new(
            "c".into(),
            "alice".into(),
            "https://r/mcp".into(),
            vec!["mcp:read".into()],
        )
    }

    #[test]
    fn pkce_follows_rfc_7636() {
        assert!(pkce_matches(VERIFIER, CHALLENGE));
        assert!(!pkce_matches(CHALLENGE, CHALLENGE));
        assert!(!pkce_matches("short", CHALLENGE));
        assert!(!pkce_matches(&format!("{VERIFIER}+"), CHALLENGE));
    }

    #[test]
    fn a_code_is_redeemed_once_and_a_replay_revokes_its_grant() {
        let grants = grants();
        let code = grants.issue_code(grant(), binding());
        let redeemed = grants
            .redeem_code(
                &code,
                "c",
                Some("https://c/cb"),
                VERIFIER,
                Some("https://r/mcp"),
            )
            .unwrap();
        assert!(!grants.is_revoked(&redeemed.id));
        assert_eq!(
            grants.redeem_code(&code, "c", Some("https://c/cb"), VERIFIER, None),
            Err(GrantError::CodeReplayed)
        );
        assert!(grants.is_revoked(&redeemed.id));
        assert!(grants.get(&redeemed.id).is_none());
    }

    #[test]
    fn a_code_is_bound_to_client_redirect_pkce_and_resource() {
        let grants = grants();
        // (client, redirect_uri, verifier, resource, expected)
        type Case<'a> = (
            &'a str,
            Option<&'a str>,
            &'a str,
            Option<&'a str>,
            GrantError,
        );
        let cases: [Case<'_>; 4] = [
            ("other", None, VERIFIER, None, GrantError::OtherClient),
            (
                "c",
                Some("https://c/other"),
                VERIFIER,
                None,
                GrantError::RedirectUri,
            ),
            ("c", None, "x".repeat(43).leak(), None, GrantError::Pkce),
            (
                "c",
                None,
                VERIFIER,
                Some("https://other/mcp"),
                GrantError::Resource,
            ),
        ];
        for (client, redirect, verifier, resource, expected) in cases {
            let code = grants.issue_code(grant(), binding());
            assert_eq!(
                grants.redeem_code(&code, client, redirect, verifier, resource),
                Err(expected.clone())
            );
            // Spent by the failed attempt: the right one now counts as a replay.
            assert_eq!(
                grants.redeem_code(&code, "c", None, VERIFIER, None),
                Err(GrantError::CodeReplayed),
                "{expected}"
            );
        }
        assert_eq!(
            grants.redeem_code("never-issued", "c", None, VERIFIER, None),
            Err(GrantError::UnknownCode)
        );
    }

    #[test]
    fn refresh_tokens_rotate_and_a_reuse_revokes_the_grant() {
        let grants = grants();
        let code = grants.issue_code(grant(), binding());
        let grant = grants
            .redeem_code(&code, "c", None, VERIFIER, None)
            .unwrap();
        let first = grants.issue_refresh_token(&grant);
        let (same, second) = grants.rotate_refresh_token(&first, "c").unwrap();
        assert_eq!(same.id, grant.id);
        assert_ne!(first, second);
        assert!(matches!(
            grants.rotate_refresh_token(&second, "other"),
            Err(GrantError::OtherClient)
        ));
        // `second` was spent by the wrong client; the grant itself stands.
        assert!(!grants.is_revoked(&grant.id));
        assert_eq!(
            grants.rotate_refresh_token(&first, "c").unwrap_err(),
            GrantError::RefreshTokenReused
        );
        assert!(grants.is_revoked(&grant.id));
        assert_eq!(
            grants.rotate_refresh_token("unknown", "c").unwrap_err(),
            GrantError::UnknownRefreshToken
        );
    }

    #[test]
    fn grants_are_listed_by_what_selects_them_and_replays_name_their_grant() {
        let grants = grants();
        let mut ids = Vec::new();
        for (client, subject) in [("c", "alice"), ("c", "bob"), ("d", "alice")] {
            let grant = Grant::new(
                client.into(),
                subject.into(),
                "https://r/mcp".into(),
                vec![],
            );
            ids.push(grant.id.clone());
            grants.issue_code(grant, binding());
        }
        let of = |select: &dyn Fn(&Grant) -> bool| {
            let mut found: Vec<String> = grants
                .list(select)
                .iter()
                .map(|grant| grant.id.clone())
                .collect();
            found.sort();
            found
        };
        let mut alice = vec![ids[0].clone(), ids[2].clone()];
        alice.sort();
        assert_eq!(of(&|grant| grant.subject == "alice"), alice);
        assert_eq!(of(&|grant| grant.client_id == "d"), vec![ids[2].clone()]);
        grants.revoke(&ids[2]);
        assert_eq!(of(&|grant| grant.subject == "alice"), vec![ids[0].clone()]);

        let code = grants.issue_code(grant(), binding());
        assert_eq!(grants.grant_of_used_code(&code), None);
        let redeemed = grants
            .redeem_code(&code, "c", None, VERIFIER, None)
            .unwrap();
        assert_eq!(grants.grant_of_used_code(&code), Some(redeemed.id.clone()));
        let first = grants.issue_refresh_token(&redeemed);
        grants.rotate_refresh_token(&first, "c").unwrap();
        assert_eq!(
            grants.grant_of_rotated_token(&first),
            Some(redeemed.id.clone())
        );
    }

    #[test]
    fn a_revoked_grant_refreshes_no_more() {
        let grants = grants();
        let code = grants.issue_code(grant(), binding());
        let grant = grants
            .redeem_code(&code, "c", None, VERIFIER, None)
            .unwrap();
        let token = grants.issue_refresh_token(&grant);
        assert_eq!(grants.grant_of_refresh_token(&token).unwrap().id, grant.id);
        grants.revoke(&grant.id);
        assert_eq!(
            grants.rotate_refresh_token(&token, "c").unwrap_err(),
            GrantError::UnknownRefreshToken
        );
        // The client retries: still unknown, not a reuse (nothing more is revoked).
        assert_eq!(
            grants.rotate_refresh_token(&token, "c").unwrap_err(),
            GrantError::UnknownRefreshToken
        );
    }

    #[tokio::test]
    async fn an_assertion_is_spent_once_per_issuer() {
        let grants = Grants::new(Duration::from_secs(60), Duration::from_secs(60), None);
        let ttl = Duration::from_secs(60);
        assert!(grants.spend_assertion("https://a", "j", ttl).await.unwrap());
        assert!(!grants.spend_assertion("https://a", "j", ttl).await.unwrap());
        assert!(grants.spend_assertion("https://b", "j", ttl).await.unwrap());
        assert!(grants.spend_assertion("https://a", "k", ttl).await.unwrap());
        let grant = grants.record(grant()).await.unwrap();
        assert_eq!(grants.get(&grant.id).await.unwrap(), Some(grant.clone()));
        grants.revoke(&grant.id).await.unwrap();
        assert!(grants.is_revoked(&grant.id).await.unwrap());
    }

    #[tokio::test]
    async fn an_assertions_grant_is_forgotten_with_its_access_token() {
        let grants = Grants::new(Duration::from_secs(60), Duration::from_millis(300), None);
        let mut by_assertion = grant();
        by_assertion.by_assertion = true;
        let by_assertion = grants.record(by_assertion).await.unwrap();
        let by_code = grants.record(grant()).await.unwrap();
        assert!(grants.get(&by_assertion.id).await.unwrap().is_some());
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(grants.get(&by_assertion.id).await.unwrap(), None);
        assert_eq!(grants.get(&by_code.id).await.unwrap(), Some(by_code));
    }
}
