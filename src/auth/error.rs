//! Why a request was not authenticated. Each reason has one stable code, used in
//! `error_description`, logs, the audit log and the `auth_failures` metric; none ever
//! echoes the token.

use std::sync::LazyLock;

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
    /// One of mcpgate's own tokens, and the shared state (Redis) cannot say whether
    /// its grant was revoked (`revocations_unavailable`).
    #[error("cannot check whether the token's grant was revoked: the shared state is unavailable")]
    RevocationsUnavailable,
}

impl Unavailability {
    /// Every variant, in declaration order (the metrics' label set is built from it).
    pub const ALL: [Self; 3] = [
        Self::KeysUnavailable,
        Self::IntrospectionUnavailable,
        Self::RevocationsUnavailable,
    ];

    /// The stable reason code: the audit record's and the metric's label.
    pub fn code(self) -> &'static str {
        match self {
            Self::KeysUnavailable => "keys_unavailable",
            Self::IntrospectionUnavailable => "introspection_unavailable",
            Self::RevocationsUnavailable => "revocations_unavailable",
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

    /// One error of each kind: every reason code there is.
    pub fn every_kind() -> impl Iterator<Item = Self> {
        [Self::Missing, Self::TooManyAttempts]
            .into_iter()
            .chain(RequestProblem::ALL.map(Self::InvalidRequest))
            .chain(TokenProblem::ALL.map(Self::InvalidToken))
            .chain(Unavailability::ALL.map(Self::Unavailable))
    }

    /// Every reason code, for the `auth_failures` metric's label set.
    pub fn reasons() -> &'static [&'static str] {
        static REASONS: LazyLock<Vec<&'static str>> = LazyLock::new(|| {
            AuthError::every_kind()
                .map(|error| error.reason())
                .collect()
        });
        &REASONS
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
    /// Every variant, in declaration order (the metrics' label set is built from it).
    pub const ALL: [Self; 4] = [
        Self::DuplicateAuthorization,
        Self::TokenInQuery,
        Self::MalformedHeader,
        Self::HeaderTooLarge,
    ];

    /// The stable reason code: the audit record's and the metric's label.
    pub fn code(self) -> &'static str {
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
    /// An access token of mcpgate's own authorization server whose grant was revoked
    /// (a revocation, a replayed code or a reused refresh token) (`revoked`).
    #[error("token has been revoked")]
    Revoked,
}

impl TokenProblem {
    /// Every variant, in declaration order (the metrics' label set is built from it).
    pub const ALL: [Self; 15] = [
        Self::Malformed,
        Self::BadAlgorithm,
        Self::UnknownKid,
        Self::BadSignature,
        Self::BadHeader,
        Self::BadType,
        Self::Expired,
        Self::NotYetValid,
        Self::BadIssuer,
        Self::BadAudience,
        Self::BadClaims,
        Self::Inactive,
        Self::UnknownApiKey,
        Self::BadApiKey,
        Self::Revoked,
    ];

    /// The stable reason code: the audit record's and the metric's label.
    pub fn code(self) -> &'static str {
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
            Self::Revoked => "revoked",
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
mod tests {
    use super::*;

    /// Where each variant sits in its `ALL`. The matches are exhaustive: a new variant
    /// does not compile until it is placed here, which is the reminder to list it in
    /// `ALL` (at that place, or the test fails), so that its reason code is a label the
    /// metrics know.
    fn position(error: AuthError) -> usize {
        match error {
            AuthError::Missing => 0,
            AuthError::TooManyAttempts => 1,
            AuthError::InvalidRequest(problem) => match problem {
                RequestProblem::DuplicateAuthorization => 0,
                RequestProblem::TokenInQuery => 1,
                RequestProblem::MalformedHeader => 2,
                RequestProblem::HeaderTooLarge => 3,
            },
            AuthError::InvalidToken(problem) => match problem {
                TokenProblem::Malformed => 0,
                TokenProblem::BadAlgorithm => 1,
                TokenProblem::UnknownKid => 2,
                TokenProblem::BadSignature => 3,
                TokenProblem::BadHeader => 4,
                TokenProblem::BadType => 5,
                TokenProblem::Expired => 6,
                TokenProblem::NotYetValid => 7,
                TokenProblem::BadIssuer => 8,
                TokenProblem::BadAudience => 9,
                TokenProblem::BadClaims => 10,
                TokenProblem::Inactive => 11,
                TokenProblem::UnknownApiKey => 12,
                TokenProblem::BadApiKey => 13,
                TokenProblem::Revoked => 14,
            },
            AuthError::Unavailable(why) => match why {
                Unavailability::KeysUnavailable => 0,
                Unavailability::IntrospectionUnavailable => 1,
                Unavailability::RevocationsUnavailable => 2,
            },
        }
    }

    #[test]
    fn every_kind_lists_each_variant_in_its_place() {
        for (at, problem) in RequestProblem::ALL.into_iter().enumerate() {
            assert_eq!(position(problem.into()), at, "{problem:?}");
        }
        for (at, problem) in TokenProblem::ALL.into_iter().enumerate() {
            assert_eq!(position(problem.into()), at, "{problem:?}");
        }
        for (at, why) in Unavailability::ALL.into_iter().enumerate() {
            assert_eq!(position(AuthError::Unavailable(why)), at, "{why:?}");
        }
        assert_eq!(position(AuthError::Missing), 0);
        assert_eq!(position(AuthError::TooManyAttempts), 1);
        let all: Vec<AuthError> = AuthError::every_kind().collect();
        // Each kind has a reason code of its own.
        let mut reasons = AuthError::reasons().to_vec();
        reasons.sort_unstable();
        reasons.dedup();
        assert_eq!(reasons.len(), all.len(), "two kinds share a reason code");
    }
}
