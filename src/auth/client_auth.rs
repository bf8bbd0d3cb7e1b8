//! How mcpgate authenticates itself, as an OAuth client, to an authorization
//! server's endpoints (introspection, token).

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use http::StatusCode;
use url::Url;

use crate::config::ClientAuthMethod;

/// mcpgate's client credentials at an authorization server.
#[derive(Clone, Copy)]
pub struct ClientCredentials<'a> {
    pub(crate) method: ClientAuthMethod,
    pub(crate) client_id: &'a str,
    pub(crate) client_secret: &'a str,
}

/// POSTs `fields` as a form to an authorization server's endpoint, authenticated by
/// `credentials`, and reads the answer whatever its status (an OAuth error names the
/// problem), refusing one over `limit` bytes. `Err` says why, for logs.
pub async fn post_form(
    client: &reqwest::Client,
    url: &Url,
    timeout: Duration,
    credentials: ClientCredentials<'_>,
    fields: &[(&str, &str)],
    limit: usize,
) -> Result<(StatusCode, Bytes), String> {
    post_form_as(client, url, timeout, Some(credentials), fields, limit).await
}

/// [`post_form`] for a public client too: with `credentials` `None` nothing
/// authenticates the request (the fields carry `client_id`, PKCE the proof).
pub async fn post_form_as(
    client: &reqwest::Client,
    url: &Url,
    timeout: Duration,
    credentials: Option<ClientCredentials<'_>>,
    fields: &[(&str, &str)],
    limit: usize,
) -> Result<(StatusCode, Bytes), String> {
    let mut request = client
        .post(url.clone())
        .timeout(timeout)
        .header(http::header::ACCEPT, "application/json")
        .header(
            http::header::CONTENT_TYPE,
            "application/x-www-form-urlencoded",
        );
    // Built before any await: the form serializer is not `Send`.
    let body = {
        let mut form = url::form_urlencoded::Serializer::new(String::new());
        for (name, value) in fields {
            form.append_pair(name, value);
        }
        match credentials {
            Some(ClientCredentials {
                method: ClientAuthMethod::ClientSecretPost,
                client_id,
                client_secret,
            }) => {
                form.append_pair("client_id", client_id);
                form.append_pair("client_secret", client_secret);
            }
            Some(ClientCredentials {
                method: ClientAuthMethod::ClientSecretBasic,
                client_id,
                client_secret,
            }) => {
                request = request.header(
                    http::header::AUTHORIZATION,
                    basic_authorization(client_id, client_secret),
                );
            }
            None => {}
        }
        form.finish()
    };
    let response = request
        .body(body)
        .send()
        .await
        .map_err(|error| crate::error_chain(&error))?;
    let status = response.status();
    let too_large = || "response too large".to_owned();
    if response
        .content_length()
        .is_some_and(|len| len > limit as u64)
    {
        return Err(too_large());
    }
    let body = response
        .bytes()
        .await
        .map_err(|error| crate::error_chain(&error))?;
    if body.len() > limit {
        return Err(too_large());
    }
    Ok((status, body))
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
