//! Remembered consent: after a sign-in the browser keeps a signed note that this
//! user allowed this client, with this redirect URI, these scopes and this resource,
//! so the next identical request skips the page.
//!
//! The note lives in one cookie of bounded size: at most [`MAX_ENTRIES`] entries
//! (the newest kept), each a few digests and an expiry, the whole MAC'd with the
//! façade's key. Nothing about the user is readable in it: every field is a digest.
//! The user is not known before the provider's sign-in, so a remembered consent is
//! only a claim until the callback: there the signed-in subject must be the one the
//! note was written for, or the sign-in is refused.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::authorize::AuthorizationRequest;
use super::secret::SecretKey;

/// Most consents one browser remembers; older ones are dropped first, so the
/// cookie never grows past a couple of kilobytes.
pub(crate) const MAX_ENTRIES: usize = 12;
/// The MAC's purpose, so no other MAC of the façade's key can stand in for it.
const PURPOSE: &str = "remembered-consent";

/// One remembered consent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Entry {
    /// Digest of client id, redirect URI, resource and the sorted scopes.
    r: String,
    /// Digest of the user's subject.
    u: String,
    /// Expiry, seconds since the epoch.
    e: u64,
}

/// The consents a browser remembers (decoded from its cookie, checked).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Remembered {
    entries: Vec<Entry>,
}

impl Remembered {
    /// Reads a cookie value; a value that is malformed, forged or signed with
    /// another key is an empty memory.
    pub(crate) fn from_cookie(value: &str, key: &SecretKey) -> Self {
        let Some((payload, tag)) = value.split_once('.') else {
            return Self::default();
        };
        if !key.verify(PURPOSE, &[payload], tag) {
            return Self::default();
        }
        let entries = URL_SAFE_NO_PAD
            .decode(payload)
            .ok()
            .and_then(|bytes| serde_json::from_slice::<Vec<Entry>>(&bytes).ok())
            .unwrap_or_default();
        let now = now();
        Self {
            entries: entries
                .into_iter()
                .filter(|entry| entry.e > now)
                .take(MAX_ENTRIES)
                .collect(),
        }
    }

    /// The subject digest the request was allowed for, if it was.
    pub(crate) fn find(&self, request: &AuthorizationRequest) -> Option<String> {
        let wanted = request_digest(request);
        self.entries
            .iter()
            .find(|entry| entry.r == wanted)
            .map(|entry| entry.u.clone())
    }

    /// Remembers that `subject` allowed `request` for `ttl`, newest first.
    pub(crate) fn insert(&mut self, request: &AuthorizationRequest, subject: &str, ttl: Duration) {
        let r = request_digest(request);
        self.entries.retain(|entry| entry.r != r);
        self.entries.insert(
            0,
            Entry {
                r,
                u: subject_digest(subject),
                e: now().saturating_add(ttl.as_secs()),
            },
        );
        self.entries.truncate(MAX_ENTRIES);
    }

    /// Forgets whatever was remembered for `request`.
    pub(crate) fn forget(&mut self, request: &AuthorizationRequest) {
        let r = request_digest(request);
        self.entries.retain(|entry| entry.r != r);
    }

    /// The cookie value: the entries and their MAC.
    pub(crate) fn to_cookie(&self, key: &SecretKey) -> String {
        let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&self.entries).unwrap_or_default());
        let tag = key.mac(PURPOSE, &[&payload]);
        format!("{payload}.{tag}")
    }
}

/// The digest a subject is remembered by.
pub(crate) fn subject_digest(subject: &str) -> String {
    digest(&["subject", subject])
}

fn request_digest(request: &AuthorizationRequest) -> String {
    let mut scopes = request.scopes.clone();
    scopes.sort();
    let scopes = scopes.join(" ");
    digest(&[
        "consent",
        &request.client_id,
        &request.redirect_uri,
        &request.resource,
        &scopes,
    ])
}

/// 16 bytes of SHA-256 over length-prefixed parts, base64url.
fn digest(parts: &[&str]) -> String {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update((part.len() as u64).to_be_bytes());
        hasher.update(part.as_bytes());
    }
    let full = hasher.finalize();
    URL_SAFE_NO_PAD.encode(full.get(..16).unwrap_or_default())
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(client: &str, scopes: &[&str]) -> AuthorizationRequest {
        AuthorizationRequest {
            client_id: client.into(),
            redirect_uri: "http://127.0.0.1/cb".into(),
            state: None,
            code_challenge: "c".into(),
            scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
            resource: "https://mcp.example.com/mcp".into(),
        }
    }

    const DAY: Duration = Duration::from_secs(86_400);

    #[test]
    fn a_remembered_consent_is_found_for_the_same_request_only() {
        let key = SecretKey::from_config(None).unwrap();
        let mut memory = Remembered::default();
        memory.insert(&request("tool", &["b", "a"]), "alice", DAY);
        let memory = Remembered::from_cookie(&memory.to_cookie(&key), &key);
        assert_eq!(
            memory.find(&request("tool", &["a", "b"])),
            Some(subject_digest("alice"))
        );
        assert_eq!(memory.find(&request("tool", &["a"])), None, "other scopes");
        assert_eq!(
            memory.find(&request("tool", &["a", "b", "c"])),
            None,
            "more scopes"
        );
        assert_eq!(
            memory.find(&request("other", &["a", "b"])),
            None,
            "other client"
        );
        let mut moved = request("tool", &["a", "b"]);
        moved.redirect_uri = "http://127.0.0.1/other".into();
        assert_eq!(memory.find(&moved), None, "other redirect URI");
    }

    #[test]
    fn a_forged_or_foreign_cookie_remembers_nothing() {
        let key = SecretKey::from_config(None).unwrap();
        let mut memory = Remembered::default();
        memory.insert(&request("tool", &["a"]), "alice", DAY);
        let cookie = memory.to_cookie(&key);
        let other_key = SecretKey::from_config(None).unwrap();
        assert_eq!(
            Remembered::from_cookie(&cookie, &other_key),
            Remembered::default()
        );
        let (payload, tag) = cookie.split_once('.').unwrap();
        let tampered = format!("{}A.{tag}", payload);
        assert_eq!(
            Remembered::from_cookie(&tampered, &key),
            Remembered::default()
        );
        assert_eq!(
            Remembered::from_cookie("garbage", &key),
            Remembered::default()
        );
        assert_eq!(Remembered::from_cookie("", &key), Remembered::default());
    }

    #[test]
    fn the_cookie_stays_small_and_expired_entries_go() {
        let key = SecretKey::from_config(None).unwrap();
        let mut memory = Remembered::default();
        for index in 0..100 {
            memory.insert(
                &request(&format!("client-{index}"), &["a", "b", "c"]),
                "alice",
                DAY,
            );
        }
        let cookie = memory.to_cookie(&key);
        assert!(cookie.len() < 2048, "{} bytes", cookie.len());
        let memory = Remembered::from_cookie(&cookie, &key);
        assert!(
            memory
                .find(&request("client-99", &["a", "b", "c"]))
                .is_some(),
            "newest kept"
        );
        assert!(
            memory
                .find(&request("client-0", &["a", "b", "c"]))
                .is_none(),
            "oldest dropped"
        );

        let mut expired = Remembered::default();
        expired.insert(&request("tool", &["a"]), "alice", Duration::ZERO);
        let expired = Remembered::from_cookie(&expired.to_cookie(&key), &key);
        assert_eq!(expired.find(&request("tool", &["a"])), None);
    }

    #[test]
    fn forgetting_removes_one_entry() {
        let mut memory = Remembered::default();
        memory.insert(&request("tool", &["a"]), "alice", DAY);
        memory.insert(&request("other", &["a"]), "alice", DAY);
        memory.forget(&request("tool", &["a"]));
        assert!(memory.find(&request("tool", &["a"])).is_none());
        assert!(memory.find(&request("other", &["a"])).is_some());
    }
}
