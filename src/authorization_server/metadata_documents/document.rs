//! A client metadata document, checked (draft-ietf-oauth-client-id-metadata-document
//! §4): JSON, naming itself by the URL it came from, with redirect URIs this
//! server would let any client register, and no shared secret (anyone can read
//! the document, so it cannot carry one, and a CIMD client here is public).

use serde_json::Value;

use super::super::clients::{Client, ClientKind};
use super::super::redirect_uri::{self, RedirectUriError};

/// Most redirect URIs a document may list.
const MAX_REDIRECT_URIS: usize = 20;
/// Longest client name kept, in characters (longer ones are cut).
pub(crate) const MAX_CLIENT_NAME: usize = 100;

/// Why a document cannot describe its client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum DocumentError {
    #[error("the document is not JSON")]
    NotJson,
    #[error("the document is not a JSON object")]
    NotObject,
    #[error("the document's client_id is not the URL it was fetched from")]
    ClientIdMismatch,
    #[error("the document has no redirect_uris")]
    NoRedirectUris,
    #[error("the document lists more than {MAX_REDIRECT_URIS} redirect_uris")]
    TooManyRedirectUris,
    #[error("redirect_uris[{index}] is not a string")]
    RedirectUriNotString { index: usize },
    #[error("redirect_uris[{index}]: {error}")]
    RedirectUri {
        index: usize,
        error: RedirectUriError,
    },
    #[error(
        "token_endpoint_auth_method must be `none` (a published document cannot hold a secret)"
    )]
    AuthMethod,
    #[error("the document must not contain a client_secret")]
    Secret,
    #[error("client_name is not a string")]
    ClientName,
}

/// Parses and checks the document fetched from `client_id`.
pub(crate) fn parse(
    client_id: &str,
    body: &[u8],
    custom_schemes: &[String],
) -> Result<Client, DocumentError> {
    let value: Value = serde_json::from_slice(body).map_err(|_| DocumentError::NotJson)?;
    check(client_id, &value, custom_schemes)
}

/// Checks a document already parsed (fetched or pinned in the configuration).
pub(crate) fn check(
    client_id: &str,
    document: &Value,
    custom_schemes: &[String],
) -> Result<Client, DocumentError> {
    let Value::Object(fields) = document else {
        return Err(DocumentError::NotObject);
    };
    // Exact string equality: no normalisation, no trailing-slash leniency.
    if fields.get("client_id").and_then(Value::as_str) != Some(client_id) {
        return Err(DocumentError::ClientIdMismatch);
    }
    if fields.contains_key("client_secret") || fields.contains_key("client_secret_expires_at") {
        return Err(DocumentError::Secret);
    }
    match fields.get("token_endpoint_auth_method") {
        None => {}
        Some(Value::String(method)) if method == "none" => {}
        Some(_) => return Err(DocumentError::AuthMethod),
    }
    let Some(Value::Array(uris)) = fields.get("redirect_uris") else {
        return Err(DocumentError::NoRedirectUris);
    };
    if uris.is_empty() {
        return Err(DocumentError::NoRedirectUris);
    }
    if uris.len() > MAX_REDIRECT_URIS {
        return Err(DocumentError::TooManyRedirectUris);
    }
    let mut redirect_uris = Vec::with_capacity(uris.len());
    for (index, uri) in uris.iter().enumerate() {
        let Value::String(uri) = uri else {
            return Err(DocumentError::RedirectUriNotString { index });
        };
        redirect_uri::check_registrable(uri, custom_schemes)
            .map_err(|error| DocumentError::RedirectUri { index, error })?;
        redirect_uris.push(uri.clone());
    }
    let client_name = match fields.get("client_name") {
        None | Some(Value::Null) => None,
        Some(Value::String(name)) => clean_name(name),
        Some(_) => return Err(DocumentError::ClientName),
    };
    Ok(Client {
        client_id: client_id.to_owned(),
        client_name,
        redirect_uris,
        kind: ClientKind::MetadataDocument,
        secret_hash: None,
    })
}

/// A name as the consent page may show it: no control characters (they can
/// reorder text, e.g. U+202E), trimmed, at most [`MAX_CLIENT_NAME`] characters.
pub(crate) fn clean_name(name: &str) -> Option<String> {
    let cleaned: String = name
        .chars()
        .filter(|c| !c.is_control() && !is_bidi_control(*c))
        .take(MAX_CLIENT_NAME)
        .collect();
    let trimmed = cleaned.trim();
    (!trimmed.is_empty()).then(|| trimmed.to_owned())
}

/// Unicode format characters that change the direction of the text around them.
fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const ID: &str = "https://app.example/client.json";

    fn good() -> Value {
        json!({
            "client_id": ID,
            "client_name": "App",
            "redirect_uris": ["https://app.example/cb", "http://127.0.0.1/cb"],
            "token_endpoint_auth_method": "none",
            "logo_uri": "https://app.example/logo.png",
        })
    }

    fn with(field: &str, value: Value) -> Value {
        let mut doc = good();
        doc[field] = value;
        doc
    }

    #[test]
    fn a_good_document_makes_a_public_cimd_client() {
        let client = check(ID, &good(), &[]).unwrap();
        assert_eq!(client.kind, ClientKind::MetadataDocument);
        assert_eq!(client.client_name.as_deref(), Some("App"));
        assert_eq!(client.redirect_uris.len(), 2);
        assert_eq!(client.secret_hash, None);
        assert_eq!(client.verified_host().as_deref(), Some("app.example"));
        let bytes = serde_json::to_vec(&good()).unwrap();
        assert!(parse(ID, &bytes, &[]).is_ok());
    }

    #[test]
    fn bad_documents_are_refused_for_their_reason() {
        use DocumentError::*;
        assert_eq!(parse(ID, b"<html>", &[]), Err(NotJson));
        assert_eq!(check(ID, &json!([1]), &[]), Err(NotObject));
        for other in [
            json!("https://app.example/client.json/"),
            json!("https://APP.example/client.json"),
            json!("https://other.example/client.json"),
            json!(null),
        ] {
            assert_eq!(
                check(ID, &with("client_id", other), &[]),
                Err(ClientIdMismatch)
            );
        }
        let mut no_uris = good();
        no_uris.as_object_mut().unwrap().remove("redirect_uris");
        assert_eq!(check(ID, &no_uris, &[]), Err(NoRedirectUris));
        assert_eq!(
            check(ID, &with("redirect_uris", json!([])), &[]),
            Err(NoRedirectUris)
        );
        assert_eq!(
            check(
                ID,
                &with("redirect_uris", json!("https://app.example/cb")),
                &[]
            ),
            Err(NoRedirectUris)
        );
        assert_eq!(
            check(
                ID,
                &with("redirect_uris", json!(["https://app.example/cb", 3])),
                &[]
            ),
            Err(RedirectUriNotString { index: 1 })
        );
        assert!(matches!(
            check(
                ID,
                &with(
                    "redirect_uris",
                    json!(["https://app.example/cb", "http://evil.example/cb"])
                ),
                &[]
            ),
            Err(RedirectUri { index: 1, .. })
        ));
        assert!(matches!(
            check(
                ID,
                &with("redirect_uris", json!(["javascript:alert(1)"])),
                &[]
            ),
            Err(RedirectUri { index: 0, .. })
        ));
        let many: Vec<String> = (0..21)
            .map(|i| format!("https://app.example/{i}"))
            .collect();
        assert_eq!(
            check(ID, &with("redirect_uris", json!(many)), &[]),
            Err(TooManyRedirectUris)
        );
        for method in [
            "client_secret_basic",
            "client_secret_post",
            "private_key_jwt",
        ] {
            assert_eq!(
                check(ID, &with("token_endpoint_auth_method", json!(method)), &[]),
                Err(AuthMethod)
            );
        }
        assert_eq!(
            check(ID, &with("client_secret", json!("s")), &[]),
            Err(Secret)
        );
        assert_eq!(
            check(ID, &with("client_name", json!(7)), &[]),
            Err(ClientName)
        );
    }

    #[test]
    fn names_are_cleaned_and_bounded() {
        assert_eq!(clean_name("  A\u{0}pp\n "), Some("App".into()));
        assert_eq!(
            clean_name("evil\u{202e}txt.exe"),
            Some("eviltxt.exe".into())
        );
        assert_eq!(clean_name("\u{7}"), None);
        assert_eq!(
            clean_name(&"x".repeat(500)).unwrap().chars().count(),
            MAX_CLIENT_NAME
        );
        let client = check(ID, &with("client_name", json!("\u{1b}[31mApp")), &[]).unwrap();
        assert_eq!(client.client_name.as_deref(), Some("[31mApp"));
    }
}
