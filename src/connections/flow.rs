//! The connect flow, without its HTTP side. A connect link names a single-use,
//! short-lived reference to the user the elicitation was made for (never the
//! user's name, never a credential). Opening it starts an OpenID sign-in at the
//! callers' identity provider, bound to the browser by a cookie; the ID token's
//! issuer and subject must be the link's user, or the flow stops there. Only then
//! is the browser sent to the service, with PKCE and a fresh `state`; its code is
//! redeemed for the tokens the vault keeps.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::Connections;
use super::store::{Kind, Unavailable};
use super::token;
use super::vault::{Stored, User, now};
use crate::authorization_server::exchange::{self, Redemption};
use crate::authorization_server::id_token::{self, Expected};
use crate::authorization_server::provider::{Pkce, ProviderRequest, authorization_url};
use crate::authorization_server::random::random_id;

/// Where a flow stands.
#[derive(Serialize, Deserialize)]
enum Stage {
    /// Sent to the identity provider to sign in.
    SignIn { nonce: String, verifier: String },
    /// Signed in as the link's user; sent to the service.
    Service { verifier: String },
    /// Sent to the identity provider to sign in and manage one's connection.
    Manage { nonce: String, verifier: String },
}

#[derive(Serialize, Deserialize)]
struct Flow {
    /// The link's user; `None` while managing (whoever signs in).
    user: Option<User>,
    /// SHA-256 of the browser cookie's value.
    browser: [u8; 32],
    stage: Stage,
}

/// A user signed in on the manage page, behind the disconnect form's token.
#[derive(Serialize, Deserialize)]
struct Signed {
    user: User,
    /// SHA-256 of the browser cookie's value.
    browser: [u8; 32],
}

impl Connections {
    /// A fresh link reference for `user`.
    pub(super) async fn link(&self, user: &User) -> Result<String, Unavailable> {
        let reference = random_id();
        let key = self.vault.key_of("link", &[&reference]);
        self.vault.store.put(&key, Kind::Pending, user).await?;
        Ok(reference)
    }
}

/// Why the flow stopped (the page says it in plain words).
#[derive(Debug, thiserror::Error)]
pub enum FlowError {
    /// The link was used, expired, or never made.
    #[error("this connect link is not valid: it was used already, has expired, or was altered")]
    UnknownLink,
    /// No flow has this `state`.
    #[error("this sign-in is not in progress any more (it was used already or has expired)")]
    UnknownFlow,
    /// The browser cookie is not the flow's.
    #[error("this sign-in was started in another browser")]
    OtherBrowser,
    /// The provider sent the browser back with an error.
    #[error("the identity provider or the service answered with an error: {0}")]
    Denied(String),
    /// The sign-in's code or ID token did not check out.
    #[error("the sign-in could not be checked: {0}")]
    SignIn(String),
    /// The signed-in user is not the link's.
    #[error(
        "you signed in as another user than the one this link was made for; the link only \
         works for the user whose MCP client asked for it"
    )]
    WrongUser,
    /// The store cannot answer now.
    #[error("the connection's storage cannot be reached; try again in a moment")]
    Unavailable(String),
    /// The service did not redeem its code.
    #[error("the service did not grant a token: {0}")]
    Service(String),
}

impl FlowError {
    /// The page's status.
    pub fn status(&self) -> u16 {
        match self {
            Self::UnknownLink | Self::UnknownFlow | Self::Denied(_) => 400,
            Self::OtherBrowser | Self::WrongUser => 403,
            Self::SignIn(_) | Self::Service(_) => 502,
            Self::Unavailable(_) => 503,
        }
    }
}

impl From<Unavailable> for FlowError {
    fn from(error: Unavailable) -> Self {
        Self::Unavailable(error.to_string())
    }
}

/// A flow started: where the browser goes, and its cookie's value.
#[derive(Debug)]
pub struct Started {
    /// The identity provider's authorization request.
    pub location: String,
    /// The browser cookie's value.
    pub browser: String,
}

/// What the callback did.
#[derive(Debug)]
pub enum CallbackOutcome {
    /// Signed in: on to the service.
    ToService(String),
    /// The service's tokens are kept.
    Connected,
    /// Signed in to manage: the disconnect form's token, and whether the user
    /// has a connection.
    Manage {
        /// The form's single-use token.
        form: String,
        /// Whether there is a connection to remove.
        connected: bool,
    },
}

fn digest(text: &str) -> [u8; 32] {
    Sha256::digest(text.as_bytes()).into()
}

impl Connections {
    /// Opens a link: the sign-in begins.
    pub async fn start(&self, link: &str) -> Result<Started, FlowError> {
        let key = self.vault.key_of("link", &[link]);
        let user: User = self
            .vault
            .store
            .take(&key, Kind::Pending)
            .await?
            .ok_or(FlowError::UnknownLink)?;
        self.begin_sign_in(Some(user)).await
    }

    /// The manage page: the sign-in begins, for whoever signs in.
    pub async fn start_manage(&self) -> Result<Started, FlowError> {
        self.begin_sign_in(None).await
    }

    async fn begin_sign_in(&self, user: Option<User>) -> Result<Started, FlowError> {
        let endpoints = self
            .discovery
            .endpoints(&self.http, &self.sign_in)
            .await
            .map_err(|error| FlowError::SignIn(error.to_string()))?;
        let browser = random_id();
        let state = random_id();
        let nonce = random_id();
        let pkce = Pkce::generate();
        let location = authorization_url(
            &endpoints,
            &self.sign_in,
            &ProviderRequest {
                redirect_uri: &self.callback_url(),
                state: &state,
                nonce: &nonce,
                code_challenge: &pkce.challenge,
                resource: "",
            },
        );
        let stage = if user.is_some() {
            Stage::SignIn {
                nonce,
                verifier: pkce.verifier,
            }
        } else {
            Stage::Manage {
                nonce,
                verifier: pkce.verifier,
            }
        };
        let flow = Flow {
            user,
            browser: digest(&browser),
            stage,
        };
        self.vault
            .store
            .put(&self.vault.key_of("flow", &[&state]), Kind::Pending, &flow)
            .await?;
        Ok(Started {
            location: location.into(),
            browser,
        })
    }

    /// The redirect back from the identity provider or the service.
    pub async fn callback(
        &self,
        state: &str,
        code: Option<&str>,
        error: Option<&str>,
        browser: Option<&str>,
    ) -> Result<CallbackOutcome, FlowError> {
        let flow: Flow = self
            .vault
            .store
            .take(&self.vault.key_of("flow", &[state]), Kind::Pending)
            .await?
            .ok_or(FlowError::UnknownFlow)?;
        // Compared as digests of fixed length: no timing says how much matched.
        if browser.map(digest) != Some(flow.browser) {
            return Err(FlowError::OtherBrowser);
        }
        if let Some(error) = error {
            return Err(FlowError::Denied(exchange::error_code(error)));
        }
        let code = code.ok_or_else(|| FlowError::Denied("no code".into()))?;
        let Some(user) = flow.user.clone() else {
            let Stage::Manage { nonce, verifier } = &flow.stage else {
                return Err(FlowError::UnknownFlow);
            };
            let user = self.signed_in(code, nonce, verifier).await?;
            return self.managing(user, flow.browser).await;
        };
        match &flow.stage {
            Stage::SignIn { nonce, verifier } => {
                let signed_in = self.signed_in(code, nonce, verifier).await?;
                if !id_token::same_issuer(&signed_in.issuer, &user.issuer)
                    || signed_in.subject != user.subject
                {
                    tracing::warn!(
                        connection = %self.config.name,
                        "a connect link was opened by another user than the one it was made for"
                    );
                    return Err(FlowError::WrongUser);
                }
                self.to_service(user, flow.browser)
                    .await
                    .map(CallbackOutcome::ToService)
            }
            Stage::Manage { .. } => Err(FlowError::UnknownFlow),
            Stage::Service { verifier } => {
                let granted = token::redeem(
                    &self.http,
                    &self.config.provider,
                    code,
                    &self.callback_url(),
                    verifier,
                )
                .await
                .map_err(|error| FlowError::Service(error.to_string()))?;
                let now = now();
                self.vault
                    .put(
                        &user,
                        &Stored {
                            access_token: granted.access_token,
                            refresh_token: granted.refresh_token,
                            expires_at: granted.expires_in.map(|secs| now.saturating_add(secs)),
                            scope: granted.scope,
                            connected_at: now,
                        },
                    )
                    .await?;
                tracing::info!(connection = %self.config.name, "a user connected");
                Ok(CallbackOutcome::Connected)
            }
        }
    }

    /// Redeems the sign-in's code and checks its ID token: the user it names.
    async fn signed_in(&self, code: &str, nonce: &str, verifier: &str) -> Result<User, FlowError> {
        let failed = |reason: String| FlowError::SignIn(reason);
        let endpoints = self
            .discovery
            .endpoints(&self.http, &self.sign_in)
            .await
            .map_err(|error| failed(error.to_string()))?;
        let redirect_uri = self.callback_url();
        let tokens = exchange::redeem(
            &self.http,
            &endpoints,
            &self.sign_in,
            &Redemption {
                code,
                redirect_uri: &redirect_uri,
                code_verifier: verifier,
                resource: "",
            },
        )
        .await
        .map_err(|error| failed(error.to_string()))?;
        let id_token = tokens
            .id_token
            .ok_or_else(|| failed("the identity provider sent no ID token".into()))?;
        let jwks_uri = endpoints
            .jwks_uri
            .as_ref()
            .ok_or_else(|| failed("the identity provider has no jwks_uri".into()))?;
        let keys = self
            .keys
            .get(
                &self.http,
                jwks_uri,
                self.sign_in.timeout,
                id_token::kid_of(&id_token).as_deref(),
            )
            .await
            .map_err(failed)?;
        let (subject, _) = id_token::verify(
            &id_token,
            &keys.0,
            &Expected {
                issuer: &endpoints.issuer,
                client_id: &self.sign_in.client_id,
                nonce,
            },
            now(),
        )
        .map_err(|error| failed(error.to_string()))?;
        // The user as the callers' tokens name them: the façade issues those
        // under its own issuer, with the provider's `sub`.
        let issuer = self
            .facade_issuer
            .clone()
            .unwrap_or_else(|| endpoints.issuer.clone());
        Ok(User { issuer, subject })
    }

    /// Signed in to manage: a single-use token for the disconnect form, bound to
    /// the browser, and what the page shows.
    async fn managing(&self, user: User, browser: [u8; 32]) -> Result<CallbackOutcome, FlowError> {
        let connected = self.vault.get(&user).await?.is_some();
        let form = random_id();
        let session = Signed { user, browser };
        self.vault
            .store
            .put(
                &self.vault.key_of("manage", &[&form]),
                Kind::Pending,
                &session,
            )
            .await?;
        Ok(CallbackOutcome::Manage { form, connected })
    }

    /// The disconnect form's POST: its token (single use) and the browser that
    /// signed in. Whether there was a connection.
    pub async fn disconnect_signed_in(
        &self,
        form: &str,
        browser: Option<&str>,
    ) -> Result<bool, FlowError> {
        let session: Signed = self
            .vault
            .store
            .take(&self.vault.key_of("manage", &[form]), Kind::Pending)
            .await?
            .ok_or(FlowError::UnknownFlow)?;
        if browser.map(digest) != Some(session.browser) {
            return Err(FlowError::OtherBrowser);
        }
        let user = session.user;
        let deleted = self.forget(&user).await?;
        tracing::info!(connection = %self.config.name, deleted, "a user disconnected");
        Ok(deleted)
    }

    /// The service's authorization request, as a new flow step.
    async fn to_service(&self, user: User, browser: [u8; 32]) -> Result<String, FlowError> {
        let provider = &self.config.provider;
        let endpoint = provider
            .authorization_endpoint
            .clone()
            .ok_or_else(|| FlowError::Service("no authorization endpoint".into()))?;
        let endpoints = crate::authorization_server::provider::ProviderEndpoints {
            issuer: provider.issuer.as_str().to_owned(),
            authorization_endpoint: endpoint,
            token_endpoint: provider
                .token_endpoint
                .clone()
                .ok_or_else(|| FlowError::Service("no token endpoint".into()))?,
            jwks_uri: None,
            userinfo_endpoint: None,
            sends_iss: false,
        };
        let state = random_id();
        let pkce = Pkce::generate();
        let location = authorization_url(
            &endpoints,
            provider,
            &ProviderRequest {
                redirect_uri: &self.callback_url(),
                state: &state,
                nonce: &random_id(),
                code_challenge: &pkce.challenge,
                resource: "",
            },
        );
        let next = Flow {
            user: Some(user),
            browser,
            stage: Stage::Service {
                verifier: pkce.verifier,
            },
        };
        self.vault
            .store
            .put(&self.vault.key_of("flow", &[&state]), Kind::Pending, &next)
            .await?;
        Ok(location.into())
    }
}
