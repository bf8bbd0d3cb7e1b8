//! How mcpgate authenticates itself, as an OAuth client, to an authorization
//! server's endpoints (introspection, token).

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use crate::config::ClientAuthMethod;

/// Adds the client's credentials to a form request: an `Authorization: Basic`
/// header, or `client_id`/`client_secret` form fields, per `method`.
pub fn authenticate(
    request: reqwest::RequestBuilder,
    form: &mut url::form_urlencoded::Serializer<'_, String>,
    method: ClientAuthMethod,
    client_id: &str,
    client_secret: &str,
) -> reqwest::RequestBuilder {
    match method {
        ClientAuthMethod::ClientSecretPost => {
            form.append_pair("client_id", client_id);
            form.append_pair("client_secret", client_secret);
            request
        }
        ClientAuthMethod::ClientSecretBasic => request.header(
            http::header::AUTHORIZATION,
            basic_authorization(client_id, client_secret),
        ),
    }
}

/// RFC 6749 §2.3.1: both parts are form-encoded before they are joined, so a `:` in
/// the id cannot move the boundary.
pub fn basic_authorization(client_id: &str, client_secret: &str) -> String {
    let encode =
        |text: &str| url::form_urlencoded::byte_serialize(text.as_bytes()).collect::<String>();
    let credentials = format!("{}:{}", encode(client_id), encode(client_secret));
    format!("Basic {}", STANDARD.encode(credentials))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_credentials_are_form_encoded_first() {
        // "a:b" + ":" + "p w" → "a%3Ab:p+w"
        assert_eq!(
            basic_authorization("a:b", "p w"),
            format!("Basic {}", STANDARD.encode("a%3Ab:p+w"))
        );
    }
}
