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
    #[error(
        "signing keys unavailable: the JWKS endpoint has not answered (at start, or for longer than max_stale)"
    )]
    KeysUnavailable,
    #[error("the token introspection endpoint is unavailable")]
    IntrospectionUnavailable,
}

impl Unavailability {
    pub const ALL: [Self; 2] = [Self::KeysUnavailable, Self::IntrospectionUnavailable];

    pub fn code(self) -> &'static str {
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
    #[error("more than one Authorization header")]
    DuplicateAuthorization,
    #[error("access tokens are not accepted in the query string")]
    TokenInQuery,
    #[error("malformed Authorization header")]
    MalformedHeader,
    #[error("Authorization header too large")]
    HeaderTooLarge,
}

impl RequestProblem {
    pub const ALL: [Self; 4] = [
        Self::DuplicateAuthorization,
        Self::TokenInQuery,
        Self::MalformedHeader,
        Self::HeaderTooLarge,
    ];

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
    #[error("token is not a well-formed JWT")]
    Malformed,
    #[error("token algorithm is not accepted")]
    BadAlgorithm,
    #[error("token signing key is unknown")]
    UnknownKid,
    #[error("token signature is invalid")]
    BadSignature,
    #[error("token header is not accepted")]
    BadHeader,
    #[error("token type is not accepted")]
    BadType,
    #[error("token has expired")]
    Expired,
    #[error("token is not valid yet")]
    NotYetValid,
    #[error("token issuer is not accepted")]
    BadIssuer,
    #[error("token audience is not accepted")]
    BadAudience,
    #[error("token claims are malformed")]
    BadClaims,
    #[error("token is not active")]
    Inactive,
    #[error("API key is unknown")]
    UnknownApiKey,
    #[error("API key is invalid")]
    BadApiKey,
}

impl TokenProblem {
    pub const ALL: [Self; 14] = [
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
    ];

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
            },
            AuthError::Unavailable(why) => match why {
                Unavailability::KeysUnavailable => 0,
                Unavailability::IntrospectionUnavailable => 1,
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
