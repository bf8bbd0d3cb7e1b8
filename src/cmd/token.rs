//! `mcpgate token`: a development JWT signed with a symmetric secret.

use anyhow::{Context, bail};
use jsonwebtoken::{Algorithm, AlgorithmFamily};
use mcpgate::auth::mint::{TokenRequest, mint};
use mcpgate::config;

use crate::cli::TokenArgs;

pub(crate) fn token(args: TokenArgs) -> anyhow::Result<()> {
    let config = match &args.config {
        Some(path) => Some(config::load(path)?),
        None => None,
    };
    let provider = config.as_ref().and_then(|config| {
        config
            .auth
            .oauth
            .jwks
            .iter()
            .find(|provider| provider.secret.is_some())
    });
    let secret = match (&args.secret, provider.and_then(|p| p.secret.as_ref())) {
        (Some(secret), _) => secret.clone(),
        (None, Some(secret)) => secret.expose().to_owned(),
        (None, None) => bail!(
            "no secret: pass --secret (or MCPGATE_TOKEN_SECRET), or --config with a symmetric auth.oauth.jwks entry"
        ),
    };
    if secret.len() < mcpgate::auth::key_source::MIN_HMAC_SECRET_BYTES {
        bail!(
            "the secret is {} bytes; at least {} are required",
            secret.len(),
            mcpgate::auth::key_source::MIN_HMAC_SECRET_BYTES
        );
    }
    let algorithm = args
        .alg
        .or_else(|| provider.and_then(|p| p.symmetric_algorithm))
        .unwrap_or(Algorithm::HS256);
    if algorithm.family() != AlgorithmFamily::Hmac {
        bail!("--alg must be HS256, HS384 or HS512");
    }
    let audience = match (&args.aud, &config) {
        (Some(aud), _) => aud.clone(),
        (None, Some(config)) => config
            .choose_route(args.route.as_deref())?
            .accepted_audiences()
            .into_iter()
            .next()
            .context("the config accepts no audience")?,
        (None, None) => bail!("--aud is required without --config"),
    };
    let issuer = args.iss.clone().or_else(|| {
        config
            .as_ref()
            .and_then(|config| config.auth.oauth.issuers.first().cloned())
    });
    let scopes = args
        .scopes
        .iter()
        .flat_map(|scopes| scopes.split_whitespace())
        .map(str::to_owned)
        .collect();
    let request = TokenRequest {
        subject: args.sub.clone(),
        scopes,
        audience,
        issuer,
        client_id: args.client_id.clone(),
        lifetime: args.ttl,
        key_id: args
            .kid
            .clone()
            .or_else(|| provider.and_then(|p| p.header_key_id.clone())),
        algorithm,
    };
    println!("{}", mint(secret.as_bytes(), &request)?);
    Ok(())
}
