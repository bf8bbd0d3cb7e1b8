//! The façade's secret key and what it makes: random identifiers, and MACs that
//! bind a CSRF token to one pending request in one browser, or a cookie's content
//! to this server.

use std::sync::Arc;

use super::random::random_bytes;
use aws_lc_rs::hmac;
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};

use crate::auth::seal::Sealer;
use crate::config::{ConfigError, Secret};

/// Shortest key accepted, in bytes (HMAC-SHA-256's block of entropy).
const MIN_KEY_BYTES: usize = 32;

/// The key every MAC of the façade is made with.
#[derive(Clone)]
pub(crate) struct SecretKey {
    key: hmac::Key,
    /// What shared state is encrypted with in Redis (derived, not the MAC key).
    sealer: Arc<Sealer>,
}

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretKey(***)")
    }
}

impl SecretKey {
    /// From `authorization_server.secret_key` (base64 or base64url), or a fresh
    /// random key when unset.
    pub(crate) fn from_config(secret: Option<&Secret>) -> Result<Self, ConfigError> {
        let bytes = match secret {
            Some(secret) => {
                let text = secret.expose().trim();
                let decoded = STANDARD
                    .decode(text)
                    .or_else(|_| URL_SAFE_NO_PAD.decode(text))
                    .map_err(|_| invalid("is not base64"))?;
                if decoded.len() < MIN_KEY_BYTES {
                    return Err(invalid("must decode to at least 32 bytes"));
                }
                decoded
            }
            None => random_bytes::<32>().to_vec(),
        };
        Ok(Self {
            key: hmac::Key::new(hmac::HMAC_SHA256, &bytes),
            sealer: Arc::new(Sealer::derive(&bytes)),
        })
    }

    /// The key records kept in Redis are encrypted with.
    pub(crate) fn sealer(&self) -> Arc<Sealer> {
        Arc::clone(&self.sealer)
    }

    /// A MAC over `parts`, each length-prefixed so that no two lists of parts
    /// collide, as base64url.
    pub(crate) fn mac(&self, purpose: &str, parts: &[&str]) -> String {
        let mut context = hmac::Context::with_key(&self.key);
        for part in std::iter::once(purpose).chain(parts.iter().copied()) {
            context.update(&(part.len() as u64).to_be_bytes());
            context.update(part.as_bytes());
        }
        URL_SAFE_NO_PAD.encode(context.sign().as_ref())
    }

    /// Whether `tag` is the MAC of `parts`, compared in constant time.
    pub(crate) fn verify(&self, purpose: &str, parts: &[&str], tag: &str) -> bool {
        let expected = self.mac(purpose, parts);
        aws_lc_rs::constant_time::verify_slices_are_equal(expected.as_bytes(), tag.as_bytes())
            .is_ok()
    }
}

fn invalid(message: &str) -> ConfigError {
    ConfigError::Invalid {
        key: "authorization_server.secret_key".into(),
        message: message.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn macs_bind_every_part_and_the_purpose() {
        let key = SecretKey::from_config(None).unwrap();
        let tag = key.mac("csrf", &["request", "browser"]);
        assert!(key.verify("csrf", &["request", "browser"], &tag));
        assert!(!key.verify("csrf", &["request", "other"], &tag));
        assert!(!key.verify("cookie", &["request", "browser"], &tag));
        assert!(!key.verify("csrf", &["requestbrowser"], &tag));
        assert!(!key.verify("csrf", &["request", "browser"], ""));
        let other = SecretKey::from_config(None).unwrap();
        assert!(!other.verify("csrf", &["request", "browser"], &tag));
    }

    #[test]
    fn a_configured_key_is_stable_and_checked() {
        let secret = Secret::new(STANDARD.encode([7u8; 32]));
        let one = SecretKey::from_config(Some(&secret)).unwrap();
        let two = SecretKey::from_config(Some(&secret)).unwrap();
        assert_eq!(one.mac("p", &["x"]), two.mac("p", &["x"]));
        let short = Secret::new(STANDARD.encode([7u8; 16]));
        let error = SecretKey::from_config(Some(&short))
            .unwrap_err()
            .to_string();
        assert!(
            error.starts_with("authorization_server.secret_key:"),
            "{error}"
        );
        assert!(SecretKey::from_config(Some(&Secret::new("not base64!"))).is_err());
    }
}
