//! Who owns a session: the identity of the principal that opened it, reduced to a
//! digest so that a store (Redis included) holds no user names.

use sha2::{Digest, Sha256};

use crate::auth::{AuthMethod, Principal};

/// A digest of issuer, subject and client id (or the API key's id): the same for
/// every token of the same principal, so a renewed token keeps its sessions.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Owner([u8; 16]);

impl Owner {
    /// `None` (authentication off): every caller is the same anonymous owner.
    pub fn of(principal: Option<&Principal>) -> Self {
        let mut hash = Sha256::new();
        match principal {
            None => hash.update(b"anonymous"),
            Some(principal) if principal.method == AuthMethod::ApiKey => {
                hash.update(b"api_key");
                field(&mut hash, principal.api_key_id.as_deref());
            }
            Some(principal) => {
                hash.update(b"token");
                field(&mut hash, principal.issuer.as_deref());
                field(&mut hash, principal.subject.as_deref());
                field(&mut hash, principal.client_id.as_deref());
            }
        }
        let digest = hash.finalize();
        let mut out = [0; 16];
        out.copy_from_slice(digest.get(..16).unwrap_or(&[0; 16]));
        Self(out)
    }

    /// The owner of a session opened on a route: the same principal's sessions on
    /// two routes are two owners, so a session id taken to another route is
    /// unknown there (its upstream is another server). A file without `routes:`
    /// keeps the plain digest.
    #[must_use]
    pub fn on_route(self, route: Option<&str>) -> Self {
        let Some(route) = route else {
            return self;
        };
        let mut hash = Sha256::new();
        hash.update(b"route");
        hash.update(self.0);
        field(&mut hash, Some(route));
        let digest = hash.finalize();
        let mut out = [0; 16];
        out.copy_from_slice(digest.get(..16).unwrap_or(&[0; 16]));
        Self(out)
    }

    /// The digest itself: what a server keeps per caller is keyed by it.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// As stored outside the process (Redis).
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    pub(crate) fn from_hex(text: &str) -> Option<Self> {
        let bytes = hex::decode(text).ok()?;
        Some(Self(bytes.try_into().ok()?))
    }
}

/// Length-prefixed, with absence distinct from an empty value, so that no two
/// different identities hash the same input (`("ab", "c")` vs `("a", "bc")`).
fn field(hash: &mut Sha256, value: Option<&str>) {
    match value {
        None => hash.update([0u8]),
        Some(value) => {
            hash.update([1u8]);
            hash.update((value.len() as u64).to_be_bytes());
            hash.update(value.as_bytes());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::Scopes;

    fn token(issuer: &str, subject: &str, client: &str) -> Principal {
        let mut principal = Principal::for_tests(subject, Scopes::new(["a"]));
        principal.issuer = Some(issuer.into());
        principal.client_id = Some(client.into());
        principal
    }

    #[test]
    fn identities_differ_by_every_field_and_by_boundaries() {
        let base = Owner::of(Some(&token("iss", "sub", "cli")));
        assert_ne!(base, Owner::of(Some(&token("iss2", "sub", "cli"))));
        assert_ne!(base, Owner::of(Some(&token("iss", "sub2", "cli"))));
        assert_ne!(base, Owner::of(Some(&token("iss", "sub", "cli2"))));
        assert_ne!(
            Owner::of(Some(&token("i", "ab", "c"))),
            Owner::of(Some(&token("i", "a", "bc")))
        );
        assert_ne!(base, Owner::of(None));
    }

    #[test]
    fn scopes_and_token_method_do_not_change_the_owner() {
        let mut other = token("iss", "sub", "cli");
        other.scopes = Scopes::new(["b", "c"]);
        other.method = AuthMethod::Introspection;
        assert_eq!(
            Owner::of(Some(&token("iss", "sub", "cli"))),
            Owner::of(Some(&other))
        );
    }

    #[test]
    fn an_api_key_is_not_a_token_with_the_same_names() {
        let mut key = token("iss", "sub", "cli");
        key.method = AuthMethod::ApiKey;
        key.api_key_id = Some("ci".into());
        assert_ne!(
            Owner::of(Some(&key)),
            Owner::of(Some(&token("iss", "sub", "cli")))
        );
        assert_eq!(
            Owner::from_hex(&Owner::of(Some(&key)).to_hex()),
            Some(Owner::of(Some(&key)))
        );
    }
}
