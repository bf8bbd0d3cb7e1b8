//! Random bytes and identifiers from the system's CSPRNG: the leaf every secret of
//! the façade (ids, PKCE verifiers, nonces) is made from.

use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// `N` bytes from the system's CSPRNG. A failing CSPRNG leaves nothing safe to
/// do; aws-lc aborts rather than return predictable bytes, so the zeroes are never used.
pub(crate) fn random_bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    if SystemRandom::new().fill(&mut bytes).is_err() {
        tracing::error!("the system random generator failed");
        std::process::abort();
    }
    bytes
}

/// A fresh identifier with 256 bits of entropy, base64url.
pub(crate) fn random_id() -> String {
    URL_SAFE_NO_PAD.encode(random_bytes::<32>())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_distinct() {
        assert_ne!(random_id(), random_id());
        assert_eq!(random_id().len(), 43);
    }
}
