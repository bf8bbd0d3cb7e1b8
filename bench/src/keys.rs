//! Signing keys and tokens. Keys are made fresh for every run, so nothing secret is
//! kept in the repository; the public halves are served as a JWKS by the upstream
//! process, the way an identity provider serves them.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, anyhow};
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair, RSA_PKCS1_SHA256, RsaKeyPair,
};
use aws_lc_rs::{hmac, rand};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::HeaderValue;
use serde_json::json;

pub const RSA_KID: &str = "rsa-1";
pub const EC_KID: &str = "ec-1";
pub const HMAC_KID: &str = "hs-1";

/// Scopes of every benchmark token: enough for `tools/call` and `tools/list`, but not
/// `admin`, so the `hidden_*` half of a tool list is filtered out.
pub const TOKEN_SCOPES: &str = "mcp:connect mcp:tools:read mcp:tools:execute";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Alg {
    Hs256,
    Rs256,
    Es256,
}

impl Alg {
    pub fn name(self) -> &'static str {
        match self {
            Self::Hs256 => "HS256",
            Self::Rs256 => "RS256",
            Self::Es256 => "ES256",
        }
    }

    fn kid(self) -> &'static str {
        match self {
            Self::Hs256 => HMAC_KID,
            Self::Rs256 => RSA_KID,
            Self::Es256 => EC_KID,
        }
    }
}

/// What a token is issued for: mcpgate checks `iss` and `aud` exactly.
#[derive(Debug, Clone)]
pub struct Audience {
    pub issuer: String,
    pub audience: String,
}

pub struct Keys {
    rsa: RsaKeyPair,
    ec: EcdsaKeyPair,
    hmac: hmac::Key,
    /// The HMAC secret as mcpgate's config takes it: its bytes are the key.
    pub hmac_secret: String,
    /// `{"keys":[…]}` with the RSA and EC public keys.
    pub jwks: String,
    /// The RSA public key as a JWK, for the raw verification baseline.
    pub rsa_jwk: serde_json::Value,
}

impl Keys {
    pub fn generate() -> Result<Self> {
        let rsa = RsaKeyPair::generate(KeySize::Rsa2048).map_err(|_| anyhow!("RSA keygen"))?;
        let pkcs8 =
            EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new())
                .map_err(|_| anyhow!("EC keygen"))?;
        let ec = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref())
            .map_err(|_| anyhow!("EC key"))?;

        let mut secret = [0u8; 32];
        rand::fill(&mut secret).map_err(|_| anyhow!("random secret"))?;
        // 43 base64url characters: over mcpgate's 32-byte minimum, and plain YAML.
        let hmac_secret = URL_SAFE_NO_PAD.encode(secret);
        let hmac = hmac::Key::new(hmac::HMAC_SHA256, hmac_secret.as_bytes());

        let public = rsa.public_key();
        let rsa_jwk = json!({
            "kty": "RSA", "kid": RSA_KID, "use": "sig", "alg": "RS256",
            "n": URL_SAFE_NO_PAD.encode(public.modulus().big_endian_without_leading_zero()),
            "e": URL_SAFE_NO_PAD.encode(public.exponent().big_endian_without_leading_zero()),
        });
        // SEC1 uncompressed point: 0x04 || x || y, 32 bytes each for P-256.
        let point = ec.public_key().as_ref();
        anyhow::ensure!(point.len() == 65 && point[0] == 4, "unexpected EC point");
        let ec_jwk = json!({
            "kty": "EC", "kid": EC_KID, "use": "sig", "alg": "ES256", "crv": "P-256",
            "x": URL_SAFE_NO_PAD.encode(&point[1..33]),
            "y": URL_SAFE_NO_PAD.encode(&point[33..65]),
        });
        let jwks = json!({ "keys": [rsa_jwk, ec_jwk] }).to_string();
        Ok(Self {
            rsa,
            ec,
            hmac,
            hmac_secret,
            jwks,
            rsa_jwk,
        })
    }

    /// A compact JWS access token (RFC 9068 `at+jwt`) valid for two hours, unique by
    /// `jti`, so two tokens with different serials never share a cache entry.
    pub fn mint(&self, alg: Alg, to: &Audience, serial: u64) -> Result<String> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .context("clock before 1970")?
            .as_secs();
        let header = json!({ "alg": alg.name(), "typ": "at+jwt", "kid": alg.kid() });
        let claims = json!({
            "iss": to.issuer,
            "aud": to.audience,
            "sub": "bench-user",
            "client_id": "mcpgate-bench",
            "scope": TOKEN_SCOPES,
            "iat": now,
            "exp": now + 2 * 3600,
            "jti": format!("bench-{serial}"),
        });
        let mut token = URL_SAFE_NO_PAD.encode(header.to_string());
        token.push('.');
        token.push_str(&URL_SAFE_NO_PAD.encode(claims.to_string()));
        let signature = self.sign(alg, token.as_bytes())?;
        token.push('.');
        token.push_str(&URL_SAFE_NO_PAD.encode(signature));
        Ok(token)
    }

    fn sign(&self, alg: Alg, input: &[u8]) -> Result<Vec<u8>> {
        let rng = SystemRandom::new();
        match alg {
            Alg::Hs256 => Ok(hmac::sign(&self.hmac, input).as_ref().to_vec()),
            Alg::Rs256 => {
                let mut signature = vec![0; self.rsa.public_modulus_len()];
                self.rsa
                    .sign(&RSA_PKCS1_SHA256, &rng, input, &mut signature)
                    .map_err(|_| anyhow!("RSA signing failed"))?;
                Ok(signature)
            }
            Alg::Es256 => Ok(self
                .ec
                .sign(&rng, input)
                .map_err(|_| anyhow!("EC signing failed"))?
                .as_ref()
                .to_vec()),
        }
    }
}

/// `Bearer <token>` ready to put on a request: converted once, not per request.
pub fn bearer(token: &str) -> Result<HeaderValue> {
    HeaderValue::from_str(&format!("Bearer {token}")).context("token is not a header value")
}

/// Mints one token per serial in `serials`, on `threads` OS threads. RSA signing
/// costs far more than verifying (a private-key operation), so this runs while no
/// load runs and never competes with a measurement for CPU.
pub fn mint_pool(
    keys: &Arc<Keys>,
    alg: Alg,
    to: &Audience,
    serials: std::ops::Range<u64>,
    threads: usize,
    cpus: &[usize],
) -> Result<Vec<HeaderValue>> {
    let threads = threads.max(1) as u64;
    let count = serials.end.saturating_sub(serials.start);
    let per_thread = count.div_ceil(threads);
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let keys = Arc::clone(keys);
            let to = to.clone();
            let cpus = cpus.to_vec();
            let serials = serials.clone();
            std::thread::spawn(move || -> Result<Vec<HeaderValue>> {
                // The harness is pinned away from the gateway's core; minting happens
                // while no load runs, so it may use every core.
                crate::measure::pin_current_thread(&cpus);
                let first = serials.start + t * per_thread;
                let last = (first + per_thread).min(serials.end);
                (first..last)
                    .map(|serial| bearer(&keys.mint(alg, &to, serial)?))
                    .collect()
            })
        })
        .collect();
    let mut pool = Vec::with_capacity(usize::try_from(count).unwrap_or(0));
    for handle in handles {
        let part = handle
            .join()
            .map_err(|_| anyhow!("token minting thread panicked"))??;
        pool.extend(part);
    }
    Ok(pool)
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::jwk::JwkSet;
    use jsonwebtoken::{Algorithm, DecodingKey};

    /// Every minted token verifies with the key its `kid` names in the served JWKS
    /// (or the shared secret), as mcpgate will verify it.
    #[test]
    fn minted_tokens_verify_against_the_published_keys() {
        let keys = Keys::generate().unwrap();
        let set: JwkSet = serde_json::from_str(&keys.jwks).unwrap();
        let to = Audience {
            issuer: "https://issuer.example/".into(),
            audience: "https://mcp.example/mcp".into(),
        };
        for (alg, algorithm) in [
            (Alg::Hs256, Algorithm::HS256),
            (Alg::Rs256, Algorithm::RS256),
            (Alg::Es256, Algorithm::ES256),
        ] {
            let token = keys.mint(alg, &to, 7).unwrap();
            let key = match alg {
                Alg::Hs256 => DecodingKey::from_secret(keys.hmac_secret.as_bytes()),
                _ => DecodingKey::from_jwk(set.find(alg.kid()).unwrap()).unwrap(),
            };
            let (input, signature) = token.rsplit_once('.').unwrap();
            assert!(
                jsonwebtoken::crypto::verify(signature, input.as_bytes(), &key, algorithm).unwrap(),
                "{alg:?}"
            );
        }
        assert_ne!(
            keys.mint(Alg::Rs256, &to, 1).unwrap(),
            keys.mint(Alg::Rs256, &to, 2).unwrap()
        );
    }
}
