//! Encryption at rest for what the façade keeps in Redis: a sign-in in progress
//! holds mcpgate's PKCE verifier and nonce for the provider, a grant names its
//! user. Whoever reads Redis (a backup, a shared instance, a `MONITOR`) must learn
//! none of it, nor forge a record a replica would accept.
//!
//! AES-256-GCM under a key derived (HKDF-SHA-256) from `authorization_server.secret_key`,
//! a fresh random 96-bit nonce per record, and the record's Redis key as associated
//! data, so a sealed value moved to another key does not open.

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use aws_lc_rs::hkdf::{HKDF_SHA256, Salt};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use super::random::random_bytes;

/// HKDF's `info`: this key does nothing else than seal stored records.
const PURPOSE: &[u8] = b"mcpgate authorization_server state at rest v1";
/// First bytes of a sealed value: a record of another format (a future mcpgate
/// during a rolling upgrade) is not opened as this one.
const FORMAT: &str = "1.";

/// The key records are sealed with.
pub(crate) struct Sealer {
    key: LessSafeKey,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sealer(***)")
    }
}

impl Sealer {
    /// Derives the sealing key from the façade's secret key bytes.
    pub(crate) fn derive(secret: &[u8]) -> Self {
        Self::derive_for(PURPOSE, secret)
    }

    /// Derives a sealing key for another `purpose` (HKDF `info`), so that one
    /// secret given to two uses never opens the other's records.
    pub(crate) fn derive_for(purpose: &[u8], secret: &[u8]) -> Self {
        let prk = Salt::new(HKDF_SHA256, &[]).extract(secret);
        let info = [purpose];
        // Neither step can fail: 32 bytes is far below HKDF's limit, and the
        // length is the algorithm's own.
        let key = prk
            .expand(&info, &AES_256_GCM)
            .map(UnboundKey::from)
            .map(LessSafeKey::new);
        match key {
            Ok(key) => Self { key },
            Err(_) => {
                tracing::error!("deriving the state sealing key failed");
                std::process::abort();
            }
        }
    }

    /// `1.` and base64url(nonce ‖ ciphertext ‖ tag), bound to `context` (the Redis key).
    pub(crate) fn seal(&self, context: &str, plaintext: &[u8]) -> String {
        let nonce_bytes = random_bytes::<NONCE_LEN>();
        let mut sealed = plaintext.to_vec();
        let nonce = Nonce::assume_unique_for_key(nonce_bytes);
        if self
            .key
            .seal_in_place_append_tag(nonce, Aad::from(context.as_bytes()), &mut sealed)
            .is_err()
        {
            // Only for inputs past GCM's limit (64 GiB); records are bytes to kilobytes.
            tracing::error!("sealing a state record failed");
            std::process::abort();
        }
        let mut out = Vec::with_capacity(NONCE_LEN + sealed.len());
        out.extend_from_slice(&nonce_bytes);
        out.extend_from_slice(&sealed);
        format!("{FORMAT}{}", URL_SAFE_NO_PAD.encode(out))
    }

    /// The plaintext of a value [`Self::seal`] made for `context` with this key;
    /// `None` for anything else (tampered, another key, another context, malformed).
    pub(crate) fn open(&self, context: &str, sealed: &str) -> Option<Vec<u8>> {
        let bytes = URL_SAFE_NO_PAD.decode(sealed.strip_prefix(FORMAT)?).ok()?;
        let (nonce, ciphertext) = bytes.split_at_checked(NONCE_LEN)?;
        let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
        let mut in_out = ciphertext.to_vec();
        let plaintext = self
            .key
            .open_in_place(nonce, Aad::from(context.as_bytes()), &mut in_out)
            .ok()?;
        Some(plaintext.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_record_opens_with_its_key_and_context() {
        let sealer = Sealer::derive(&[7u8; 32]);
        let sealed = sealer.seal("mcpgate:as:pending:a", b"the verifier");
        assert!(!sealed.contains("verifier"));
        assert_eq!(
            sealer.open("mcpgate:as:pending:a", &sealed).as_deref(),
            Some(b"the verifier".as_slice())
        );
        // Fresh nonce each time: the same record never seals the same way twice.
        assert_ne!(sealed, sealer.seal("mcpgate:as:pending:a", b"the verifier"));
        // The same key derived again (another replica with the same secret_key).
        let replica = Sealer::derive(&[7u8; 32]);
        assert!(replica.open("mcpgate:as:pending:a", &sealed).is_some());
    }

    #[test]
    fn a_tampered_record_is_refused() {
        let sealer = Sealer::derive(&[7u8; 32]);
        let sealed = sealer.seal("k", b"the verifier");
        let body = sealed.strip_prefix(FORMAT).unwrap();
        let mut bytes = URL_SAFE_NO_PAD.decode(body).unwrap();
        for at in [0, NONCE_LEN, bytes.len() - 1] {
            bytes[at] ^= 1;
            let tampered = format!("{FORMAT}{}", URL_SAFE_NO_PAD.encode(&bytes));
            assert_eq!(sealer.open("k", &tampered), None, "byte {at}");
            bytes[at] ^= 1;
        }
        assert_eq!(sealer.open("k", &sealed[..sealed.len() - 2]), None);
        assert_eq!(sealer.open("k", "1."), None);
        assert_eq!(sealer.open("k", "1.!!"), None);
        assert_eq!(sealer.open("k", body), None, "without its format");
    }

    #[test]
    fn another_key_or_context_is_refused() {
        let sealer = Sealer::derive(&[7u8; 32]);
        let sealed = sealer.seal("k", b"the verifier");
        assert_eq!(Sealer::derive(&[8u8; 32]).open("k", &sealed), None);
        assert_eq!(sealer.open("other", &sealed), None);
    }
}
