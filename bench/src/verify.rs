//! The crypto limit: how many RS256 signatures one core verifies per second with the
//! code mcpgate calls for it (`jsonwebtoken::crypto::verify` on a key built from the
//! JWK, aws-lc-rs underneath). No gateway can verify fresh tokens faster than this.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use hdrhistogram::Histogram;
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, DecodingKey};

pub struct Verified {
    pub count: u64,
    pub elapsed: Duration,
    /// Nanoseconds per verification.
    pub latency: Histogram<u64>,
}

impl Verified {
    /// Verifications per second.
    pub fn rate(&self) -> f64 {
        self.count as f64 / self.elapsed.as_secs_f64()
    }
}

/// Verifies `token` against `jwk` over and over on the calling thread for `duration`.
pub fn run(token: &str, jwk: &serde_json::Value, duration: Duration) -> Result<Verified> {
    let jwk: Jwk = serde_json::from_value(jwk.clone()).context("RSA JWK")?;
    let key = DecodingKey::from_jwk(&jwk).context("RSA decoding key")?;
    // As mcpgate does: the signing input is the token up to the last dot.
    let (signing_input, signature) = token.rsplit_once('.').context("token has no signature")?;
    let mut latency =
        Histogram::new_with_bounds(1, 1_000_000_000, 3).context("histogram bounds")?;
    let start = Instant::now();
    let mut count = 0u64;
    while start.elapsed() < duration {
        let one = Instant::now();
        let valid = jsonwebtoken::crypto::verify(
            signature,
            signing_input.as_bytes(),
            &key,
            Algorithm::RS256,
        )?;
        latency.saturating_record(u64::try_from(one.elapsed().as_nanos()).unwrap_or(u64::MAX));
        if !valid {
            bail!("the benchmark's own RS256 token did not verify");
        }
        count += 1;
    }
    Ok(Verified {
        count,
        elapsed: start.elapsed(),
        latency,
    })
}
