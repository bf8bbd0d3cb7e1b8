//! The TLS client settings of HTTP upstreams. The platform verifier reads every CA
//! certificate of the system when it is made (milliseconds of file reads and
//! parsing, and some 80 KB of parsed roots): made once per build of the routes and
//! shared by all of them, not once per route. A reload builds anew, so it reads the
//! system's certificates as they are then.

use std::sync::{Arc, OnceLock};

use hyper_rustls::ConfigBuilderExt as _;
use rustls::ClientConfig;

/// The system's trusted roots, read on first use; one per build of the routes.
#[derive(Debug, Default)]
pub struct TlsRoots(OnceLock<Arc<ClientConfig>>);

impl TlsRoots {
    /// A client configuration verifying with the platform verifier (rustls, aws-lc-rs,
    /// safe default protocol versions), its roots read once per [`TlsRoots`].
    pub(crate) fn client_config(&self) -> Result<Arc<ClientConfig>, rustls::Error> {
        if let Some(config) = self.0.get() {
            return Ok(Arc::clone(config));
        }
        let config = ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()?
        .try_with_platform_verifier()?
        .with_no_client_auth();
        Ok(Arc::clone(self.0.get_or_init(|| Arc::new(config))))
    }
}

#[cfg(test)]
mod tests {
    use rustls::pki_types::pem::PemObject as _;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
    use rustls::{
        CertificateError, ClientConnection, RootCertStore, ServerConfig, ServerConnection,
    };

    use super::*;

    /// A self-signed server certificate for `upstream.test` (P-256, not a CA, valid
    /// until 2126) and its key, made for this test only: no system trusts it.
    const CERT: &str = "\
-----BEGIN CERTIFICATE-----
MIIBxjCCAWugAwIBAgIUDLzcSqDQ0oAWGa3lf54Ejd3atwwwCgYIKoZIzj0EAwIw
GDEWMBQGA1UEAwwNdXBzdHJlYW0udGVzdDAgFw0yNjEyMDgwMTEwNThaGA8yMTI2
MTExNDAxMTA1OFowGDEWMBQGA1UEAwwNdXBzdHJlYW0udGVzdDBZMBMGByqGSM49
AgEGCCqGSM49AwEHA0IABK7yJFRG+ju77NAzg+4GVT0ui9zIy6owQ1f9HJa42OKH
rhgjunLaB4PVfD8lXDH6iyui8/NhXb4J8rWPYcANF4+jgZAwgY0wHQYDVR0OBBYE
FAdwKJyF/pRzrK7H/tN4TlpzyubXMB8GA1UdIwQYMBaAFAdwKJyF/pRzrK7H/tN4
TlpzyubXMBgGA1UdEQQRMA+CDXVwc3RyZWFtLnRlc3QwDAYDVR0TAQH/BAIwADAO
BgNVHQ8BAf8EBAMCB4AwEwYDVR0lBAwwCgYIKwYBBQUHAwEwCgYIKoZIzj0EAwID
SQAwRgIhAM8wkFI3Bldm1DMC4BzNjS/jdWZN1vRybaed6NmOnsVwAiEArsKTxvky
4BPSmtID+ktgiIDyTmxQnI1UmFQd6q/OUqg=
-----END CERTIFICATE-----
";
    const KEY: &str = "\
-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg1nCF9ORNY6xxdZfR
fCvZL/lX93bLYZwA1QSx7CTvYgqhRANCAASu8iRURvo7u+zQM4PuBlU9LovcyMuq
MENX/RyWuNjih64YI7py2geD1Xw/JVwx+osrovPzYV2+CfK1j2HADReP
-----END PRIVATE KEY-----
";

    /// A TLS handshake in memory between `client` and a server showing [`CERT`].
    fn handshake(client: Arc<ClientConfig>) -> Result<(), rustls::Error> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let server = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                vec![CertificateDer::from_pem_slice(CERT.as_bytes()).unwrap()],
                PrivateKeyDer::from_pem_slice(KEY.as_bytes()).unwrap(),
            )
            .unwrap();
        let name = ServerName::try_from("upstream.test").unwrap();
        let mut client = ClientConnection::new(client, name).unwrap();
        let mut server = ServerConnection::new(Arc::new(server)).unwrap();
        for _ in 0..10 {
            let mut bytes = Vec::new();
            client.write_tls(&mut bytes).unwrap();
            server.read_tls(&mut bytes.as_slice()).unwrap();
            server.process_new_packets()?;
            let mut bytes = Vec::new();
            server.write_tls(&mut bytes).unwrap();
            client.read_tls(&mut bytes.as_slice()).unwrap();
            client.process_new_packets()?;
            if !client.is_handshaking() {
                return Ok(());
            }
        }
        panic!("the handshake did not finish")
    }

    #[test]
    fn the_shared_configuration_refuses_a_server_the_system_does_not_trust() {
        let shared = TlsRoots::default().client_config().unwrap();
        assert_eq!(
            handshake(shared),
            Err(rustls::Error::InvalidCertificate(
                CertificateError::UnknownIssuer
            ))
        );
        // The same server, trusted: the handshake itself works.
        let mut roots = RootCertStore::empty();
        roots
            .add(CertificateDer::from_pem_slice(CERT.as_bytes()).unwrap())
            .unwrap();
        let trusting = ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
        assert_eq!(handshake(Arc::new(trusting)), Ok(()));
    }

    #[test]
    fn the_roots_are_read_once_per_build_and_shared() {
        let roots = TlsRoots::default();
        let first = roots.client_config().unwrap();
        let second = roots.client_config().unwrap();
        assert!(Arc::ptr_eq(&first, &second));
        // Another build (a reload) reads the roots again.
        let other = TlsRoots::default().client_config().unwrap();
        assert!(!Arc::ptr_eq(&first, &other));
    }
}
