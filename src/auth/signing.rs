//! The keys mcpgate signs its own JWTs with (ES256): the façade's access tokens
//! and the identity assertions sent upstream, each with its own key and JWKS, so
//! that anyone, the gateway included, can verify them offline.
//!
//! The current key signs; previous keys (after a rotation) are still published and
//! accepted until the operator removes them, so tokens they signed run out their
//! short lifetime instead of failing at once.

use std::io::Write;
use std::path::Path;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::Serialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::config::{AuthorizationServerConfig, ConfigError, Secret};

/// The type of mcpgate's access tokens (RFC 9068 §2.1).
pub(crate) const ACCESS_TOKEN_TYPE: &str = "at+jwt";

/// One P-256 public key as a JWK, with its RFC 7638 thumbprint as `kid`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PublicKey {
    pub(crate) kid: String,
    /// The JWK's `x` and `y`, base64url.
    pub(crate) x: String,
    pub(crate) y: String,
}

impl PublicKey {
    /// From an uncompressed SEC1 point (`04 || X || Y`).
    fn from_point(point: &[u8]) -> Option<Self> {
        let (&tag, coordinates) = point.split_first()?;
        if tag != 4 || coordinates.len() != 64 {
            return None;
        }
        let (x, y) = coordinates.split_at(32);
        let x = URL_SAFE_NO_PAD.encode(x);
        let y = URL_SAFE_NO_PAD.encode(y);
        // RFC 7638 §3.2: the required members, in lexicographic order, no spaces.
        let canonical = format!(r#"{{"crv":"P-256","kty":"EC","x":"{x}","y":"{y}"}}"#);
        let kid = URL_SAFE_NO_PAD.encode(Sha256::digest(canonical.as_bytes()));
        Some(Self { kid, x, y })
    }

    /// The JWK published at `jwks_uri`.
    pub(crate) fn jwk(&self) -> Value {
        json!({
            "kty": "EC",
            "crv": "P-256",
            "x": self.x,
            "y": self.y,
            "kid": self.kid,
            "use": "sig",
            "alg": "ES256",
        })
    }
}

/// Where a key set comes from: an inline PEM, else a file (made when missing),
/// else a key made once per process and kept in `process_key`, one cell per
/// section so that each signs with its own key.
pub(crate) struct KeySources<'a> {
    pub(crate) inline: Option<&'a Secret>,
    pub(crate) file: Option<&'a Path>,
    /// Keys signed with before a rotation: published, never used to sign.
    pub(crate) previous: &'a [Secret],
    pub(crate) process_key: &'static std::sync::OnceLock<Vec<u8>>,
}

/// The signing key and the published set.
pub(crate) struct SigningKeys {
    encoding: EncodingKey,
    /// The JWT `typ` every token signed with these keys carries (RFC 8725 §3.11).
    typ: &'static str,
    current: PublicKey,
    previous: Vec<PublicKey>,
    jwks: Bytes,
}

impl std::fmt::Debug for SigningKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKeys")
            .field("kid", &self.current.kid)
            .field("previous", &self.previous.len())
            .finish()
    }
}

impl SigningKeys {
    /// The façade's keys: `signing_key`, else `signing_key_file` (made when
    /// missing), else a key for this process only.
    pub(crate) fn from_config(section: &AuthorizationServerConfig) -> Result<Self, ConfigError> {
        static KEY: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
        Self::from_sources(
            KeySources {
                inline: section.signing_key.as_ref(),
                file: section.signing_key_file.as_deref(),
                previous: &section.previous_signing_keys,
                process_key: &KEY,
            },
            "authorization_server",
            ACCESS_TOKEN_TYPE,
        )
    }

    /// Keys from `sources`; `section` names the config section in errors and logs,
    /// `typ` is the JWT type every token signed with them carries.
    pub(crate) fn from_sources(
        sources: KeySources<'_>,
        section: &str,
        typ: &'static str,
    ) -> Result<Self, ConfigError> {
        let pkcs8 = match (sources.inline, sources.file) {
            (Some(pem), _) => pem_to_pkcs8(pem.expose(), &format!("{section}.signing_key"))?,
            (None, Some(path)) => load_or_create(path, &format!("{section}.signing_key_file"))?,
            (None, None) => process_key(sources.process_key, section)?,
        };
        Self::build(&pkcs8, sources.previous, section, typ)
    }

    fn build(
        pkcs8: &[u8],
        previous_keys: &[Secret],
        section: &str,
        typ: &'static str,
    ) -> Result<Self, ConfigError> {
        let signing_key = format!("{section}.signing_key");
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8)
            .map_err(|_| invalid(&signing_key, "is not an EC P-256 PKCS#8 private key"))?;
        let current = PublicKey::from_point(pair.public_key().as_ref())
            .ok_or_else(|| invalid(&signing_key, "has no P-256 public key"))?;
        let encoding = EncodingKey::from_ec_der(pkcs8);
        let mut previous = Vec::new();
        for (index, pem) in previous_keys.iter().enumerate() {
            let key = format!("{section}.previous_signing_keys[{index}]");
            let der = pem_to_pkcs8(pem.expose(), &key)?;
            let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &der)
                .map_err(|_| invalid(&key, "is not an EC P-256 PKCS#8 private key"))?;
            let public = PublicKey::from_point(pair.public_key().as_ref())
                .ok_or_else(|| invalid(&key, "has no P-256 public key"))?;
            if public != current {
                previous.push(public);
            }
        }
        let keys: Vec<Value> = std::iter::once(&current)
            .chain(&previous)
            .map(PublicKey::jwk)
            .collect();
        let jwks = Bytes::from(serde_json::to_vec(&json!({ "keys": keys })).unwrap_or_default());
        Ok(Self {
            encoding,
            typ,
            current,
            previous,
            jwks,
        })
    }

    /// Signs `claims` as a token of this key set's type.
    pub(crate) fn sign<T: Serialize>(
        &self,
        claims: &T,
    ) -> Result<String, jsonwebtoken::errors::Error> {
        let mut header = Header::new(Algorithm::ES256);
        header.typ = Some(self.typ.to_owned());
        header.kid = Some(self.current.kid.clone());
        jsonwebtoken::encode(&header, claims, &self.encoding)
    }

    /// Every key a token of ours may be signed with (the current one first).
    pub(crate) fn public_keys(&self) -> impl Iterator<Item = &PublicKey> {
        std::iter::once(&self.current).chain(&self.previous)
    }

    /// The JWKS document, rendered once.
    pub(crate) fn jwks(&self) -> &Bytes {
        &self.jwks
    }
}

fn pem_to_pkcs8(text: &str, key: &str) -> Result<Vec<u8>, ConfigError> {
    let block = pem::parse(text.trim()).map_err(|_| invalid(key, "is not a PEM block"))?;
    if block.tag() != "PRIVATE KEY" {
        return Err(invalid(
            key,
            "must be a PKCS#8 `PRIVATE KEY` PEM block (openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256)",
        ));
    }
    Ok(block.into_contents())
}

fn generate(section: &str) -> Result<Vec<u8>, ConfigError> {
    EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new())
        .map(|document| document.as_ref().to_vec())
        .map_err(|_| {
            invalid(
                &format!("{section}.signing_key"),
                "a key could not be generated",
            )
        })
}

/// The key of this process, made on first use: a reload keeps it (tokens stay
/// valid), a restart does not.
fn process_key(
    key: &'static std::sync::OnceLock<Vec<u8>>,
    section: &str,
) -> Result<Vec<u8>, ConfigError> {
    if let Some(key) = key.get() {
        return Ok(key.clone());
    }
    tracing::warn!(
        "{section}: no signing_key_file; tokens are signed with a key of this process only \
         and stop verifying after a restart"
    );
    let fresh = generate(section)?;
    Ok(key.get_or_init(|| fresh).clone())
}

/// Reads the key file, or creates it (mode 0600, never replacing a file that
/// appears meanwhile) with a fresh key.
fn load_or_create(path: &Path, key: &str) -> Result<Vec<u8>, ConfigError> {
    match std::fs::read_to_string(path) {
        Ok(text) => pem_to_pkcs8(&text, key),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            let pkcs8 = generate(key)?;
            let text = pem::encode(&pem::Pem::new("PRIVATE KEY", pkcs8.clone()));
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create_new(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
            let mut file = options.open(path).map_err(|error| {
                invalid(key, &format!("cannot create {}: {error}", path.display()))
            })?;
            file.write_all(text.as_bytes()).map_err(|error| {
                invalid(key, &format!("cannot write {}: {error}", path.display()))
            })?;
            tracing::info!(path = %path.display(), "authorization_server: signing key generated");
            Ok(pkcs8)
        }
        Err(error) => Err(invalid(
            key,
            &format!("cannot read {}: {error}", path.display()),
        )),
    }
}

fn invalid(key: &str, message: &str) -> ConfigError {
    ConfigError::Invalid {
        key: key.to_owned(),
        message: message.to_owned(),
    }
}

/// A PEM for tests and `Secret` plumbing.
#[cfg(test)]
pub(crate) fn test_pem() -> Secret {
    let pkcs8 = generate("test").unwrap();
    Secret::new(pem::encode(&pem::Pem::new("PRIVATE KEY", pkcs8)))
}

#[cfg(test)]
mod tests {
    use jsonwebtoken::{DecodingKey, Validation};

    use super::*;

    fn section(
        signing_key: Option<Secret>,
        file: Option<std::path::PathBuf>,
    ) -> AuthorizationServerConfig {
        let mut section: AuthorizationServerConfig = serde_json::from_value(json!({
            "provider": {"issuer": "https://idp.example.com", "client_id": "m"}
        }))
        .unwrap();
        section.signing_key = signing_key;
        section.signing_key_file = file;
        section
    }

    #[test]
    fn tokens_verify_with_the_published_key() {
        let keys = SigningKeys::from_config(&section(Some(test_pem()), None)).unwrap();
        let token = keys
            .sign(&json!({"sub": "alice", "exp": 4_000_000_000u64}))
            .unwrap();
        let header = jsonwebtoken::decode_header(&token).unwrap();
        assert_eq!(header.typ.as_deref(), Some("at+jwt"));
        assert_eq!(header.alg, Algorithm::ES256);
        let jwks: Value = serde_json::from_slice(keys.jwks()).unwrap();
        let jwk = &jwks["keys"][0];
        assert_eq!(header.kid.as_deref(), jwk["kid"].as_str());
        let decoding =
            DecodingKey::from_ec_components(jwk["x"].as_str().unwrap(), jwk["y"].as_str().unwrap())
                .unwrap();
        let mut validation = Validation::new(Algorithm::ES256);
        validation.validate_aud = false;
        let data = jsonwebtoken::decode::<Value>(&token, &decoding, &validation).unwrap();
        assert_eq!(data.claims["sub"], "alice");
    }

    #[test]
    fn a_key_file_is_made_once_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key.pem");
        let first = SigningKeys::from_config(&section(None, Some(path.clone()))).unwrap();
        let second = SigningKeys::from_config(&section(None, Some(path.clone()))).unwrap();
        assert_eq!(first.current, second.current);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn previous_keys_are_published_after_the_current_one() {
        let old = test_pem();
        let mut config = section(Some(test_pem()), None);
        config.previous_signing_keys = vec![old.clone(), config.signing_key.clone().unwrap()];
        let keys = SigningKeys::from_config(&config).unwrap();
        let jwks: Value = serde_json::from_slice(keys.jwks()).unwrap();
        assert_eq!(
            jwks["keys"].as_array().unwrap().len(),
            2,
            "the current key is not listed twice"
        );
        assert_eq!(keys.public_keys().count(), 2);
    }

    #[test]
    fn bad_keys_name_their_key() {
        let error = SigningKeys::from_config(&section(Some(Secret::new("nope")), None))
            .unwrap_err()
            .to_string();
        assert!(
            error.starts_with("authorization_server.signing_key:"),
            "{error}"
        );
        let rsa_like = Secret::new(pem::encode(&pem::Pem::new(
            "RSA PRIVATE KEY",
            vec![1, 2, 3],
        )));
        let error = SigningKeys::from_config(&section(Some(rsa_like), None))
            .unwrap_err()
            .to_string();
        assert!(error.contains("PKCS#8"), "{error}");
    }
}
