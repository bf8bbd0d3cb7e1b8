//! Why a request was not authenticated. Each reason has one stable code, used in
//! `error_description`, logs and (later) the audit log; none ever echoes the token.

/// The outcome classes of RFC 6750 §3.1, each mapped to one status by `server/`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No credentials at all: 401 with a bare challenge (no `error`).
    #[error("no credentials")]
    Missing,
    /// The credentials could not be read: 400 `invalid_request`.
    #[error("invalid request: {0}")]
    InvalidRequest(RequestProblem),
    /// A token was read but is not acceptable: 401 `invalid_token`.
    #[error("invalid token: {0}")]
    InvalidToken(TokenProblem),
    /// Too many failed API-key attempts for one key id: 429, without running argon2.
    #[error("too many failed attempts")]
    TooManyAttempts,
    /// The token cannot be judged right now (keys stale, introspection down): 503,
    /// never a silent allow and never `invalid_token`.
    #[error("cannot verify tokens: {0}")]
    Unavailable(Unavailability),
}

/// Why tokens cannot be verified at the moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Unavailability {
    /// No usable JWKS: never fetched since start, or stale beyond `max_stale`
    /// (`keys_unavailable`).
    #[error(
        "signing keys unavailable: the JWKS endpoint has not answered (at start, or for longer than max_stale)"
    )]
    KeysUnavailable,
    /// The introspection endpoint did not answer usably (`introspection_unavailable`).
    #[error("the token introspection endpoint is unavailable")]
    IntrospectionUnavailable,
}

impl Unavailability {
    pub(crate) fn code(self) -> &'static str {
        match self {
            Self::KeysUnavailable => "keys_unavailable",
            Self::IntrospectionUnavailable => "introspection_unavailable",
        }
    }
}

impl AuthError {
    /// The stable reason code (`missing`, `malformed`, `bad_signature`, …).
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Missing => "missing",
            Self::InvalidRequest(problem) => problem.code(),
            Self::InvalidToken(problem) => problem.code(),
            Self::Unavailable(why) => why.code(),
            Self::TooManyAttempts => "rate_limited",
        }
    }
}

/// Malformed credentials (400).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RequestProblem {
    /// Two or more `Authorization` headers; which one counts would be ambiguous
    /// (`duplicate_authorization`).
    #[error("more than one Authorization header")]
    DuplicateAuthorization,
    /// An `access_token` query parameter: refused outright, it leaks into logs
    /// (`token_in_query`).
    #[error("access tokens are not accepted in the query string")]
    TokenInQuery,
    /// A bearer value that is not a token68, or a header that is not visible ASCII
    /// (`malformed_header`).
    #[error("malformed Authorization header")]
    MalformedHeader,
    /// Over [`MAX_AUTHORIZATION_BYTES`](crate::auth::bearer::MAX_AUTHORIZATION_BYTES),
    /// refused before parsing (`header_too_large`).
    #[error("Authorization header too large")]
    HeaderTooLarge,
}

impl RequestProblem {
    pub(crate) fn code(self) -> &'static str {
        match self {
            Self::DuplicateAuthorization => "duplicate_authorization",
            Self::TokenInQuery => "token_in_query",
            Self::MalformedHeader => "malformed_header",
            Self::HeaderTooLarge => "header_too_large",
        }
    }
}

/// A token that was read but refused (401 `invalid_token`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenProblem {
    /// Not three base64url parts of JSON, or a header field of the wrong type
    /// (`malformed`).
    #[error("token is not a well-formed JWT")]
    Malformed,
    /// `alg` missing, unknown, or not allowed for the key that matched (`bad_algorithm`).
    #[error("token algorithm is not accepted")]
    BadAlgorithm,
    /// No configured key matches the `kid` (or the token has none and no key fits), even
    /// after a refetch (`unknown_kid`).
    #[error("token signing key is unknown")]
    UnknownKid,
    /// The signature does not verify with the selected key (`bad_signature`).
    #[error("token signature is invalid")]
    BadSignature,
    /// A JWE, compressed, nested (`cty: JWT`) or `crit` header: not a plain signed token
    /// (`bad_header`).
    #[error("token header is not accepted")]
    BadHeader,
    /// A `typ` other than `at+jwt` or `JWT`, or a plain JWT where `require_at_jwt` is set
    /// (`bad_type`).
    #[error("token type is not accepted")]
    BadType,
    /// `exp` is past, allowing for the configured leeway (`expired`).
    #[error("token has expired")]
    Expired,
    /// `nbf` or `iat` is in the future, allowing for the leeway (`not_yet_valid`).
    #[error("token is not valid yet")]
    NotYetValid,
    /// `iss` is not one of the configured issuers (`bad_issuer`).
    #[error("token issuer is not accepted")]
    BadIssuer,
    /// `aud` does not include this resource's audience (`bad_audience`).
    #[error("token audience is not accepted")]
    BadAudience,
    /// A required claim is missing or of the wrong type, e.g. no numeric `exp`
    /// (`bad_claims`).
    #[error("token claims are malformed")]
    BadClaims,
    /// Introspection answered `active: false` (`inactive`).
    #[error("token is not active")]
    Inactive,
    /// The API key's id is not configured (`unknown_api_key`).
    #[error("API key is unknown")]
    UnknownApiKey,
    /// Not of the API-key form, or its secret does not match the stored argon2id hash
    /// (`bad_api_key`).
    #[error("API key is invalid")]
    BadApiKey,
}

impl TokenProblem {
    pub(crate) fn code(self) -> &'static str {
        match self {
            Self::Malformed => "malformed",
            Self::BadAlgorithm => "bad_algorithm",
            Self::UnknownKid => "unknown_kid",
            Self::BadSignature => "bad_signature",
            Self::BadHeader => "bad_header",
            Self::BadType => "bad_type",
            Self::Expired => "expired",
            Self::NotYetValid => "not_yet_valid",
            Self::BadIssuer => "bad_issuer",
            Self::BadAudience => "bad_audience",
            Self::BadClaims => "bad_claims",
            Self::Inactive => "inactive",
            Self::UnknownApiKey => "unknown_api_key",
            Self::BadApiKey => "bad_api_key",
        }
    }
}

impl From<TokenProblem> for AuthError {
    fn from(problem: TokenProblem) -> Self {
        Self::InvalidToken(problem)
    }
}

impl From<RequestProblem> for AuthError {
    fn from(problem: RequestProblem) -> Self {
        Self::InvalidRequest(problem)
    }
}

#[cfg(test)]
mod metric_label_tests {
    #[test]
    fn every_failure_code_has_its_own_metric_label() {
        use crate::auth::{AuthError, RequestProblem, TokenProblem, Unavailability};
        use crate::telemetry::metrics::auth_reason_label;
        let errors = [
            AuthError::Missing,
            AuthError::TooManyAttempts,
            AuthError::InvalidRequest(RequestProblem::DuplicateAuthorization),
            AuthError::InvalidRequest(RequestProblem::TokenInQuery),
            AuthError::InvalidRequest(RequestProblem::MalformedHeader),
            AuthError::InvalidRequest(RequestProblem::HeaderTooLarge),
            AuthError::Unavailable(Unavailability::KeysUnavailable),
            AuthError::Unavailable(Unavailability::IntrospectionUnavailable),
            TokenProblem::Malformed.into(),
            TokenProblem::BadAlgorithm.into(),
            TokenProblem::UnknownKid.into(),
            TokenProblem::BadSignature.into(),
            TokenProblem::BadHeader.into(),
            TokenProblem::BadType.into(),
            TokenProblem::Expired.into(),
            TokenProblem::NotYetValid.into(),
            TokenProblem::BadIssuer.into(),
            TokenProblem::BadAudience.into(),
            TokenProblem::BadClaims.into(),
            TokenProblem::Inactive.into(),
            TokenProblem::UnknownApiKey.into(),
            TokenProblem::BadApiKey.into(),
        ];
        for error in errors {
            assert_eq!(auth_reason_label(error.reason()), error.reason());
        }
    }
}
