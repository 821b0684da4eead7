//! TLS for both directions. The listener side builds a rustls `ServerConfig` that speaks only
//! TLS 1.2 and 1.3 with rustls's AEAD suites, offers h2 and http/1.1 by ALPN, and, with a client
//! CA, verifies client certificates (an invalid certificate fails the handshake in both
//! `required` and `optional` modes). `ClientIdentity` is what the handshake proved about the
//! client. The client side verifies upstream and JWKS servers and never has an "accept any
//! certificate" mode.

pub mod dev_ca;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::config::{ClientAuth, TlsFiles};

/// A TLS setup problem, reported at start with the file concerned.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A PEM file could not be read or held nothing usable.
    #[error("{path}: {message}")]
    File {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },
    /// rustls refused the combination (mismatched key, bad CA).
    #[error("TLS configuration refused: {0}")]
    Rustls(String),
}

fn file_error(path: &Path, message: impl Into<String>) -> TlsError {
    TlsError::File {
        path: path.to_path_buf(),
        message: message.into(),
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// Reads every certificate in a PEM file.
pub fn load_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|err| file_error(path, format!("cannot read certificates: {err}")))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|err| file_error(path, format!("invalid PEM certificate: {err}")))?;
    if certs.is_empty() {
        return Err(file_error(path, "no certificate found"));
    }
    Ok(certs)
}

fn load_private_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(path)
        .map_err(|err| file_error(path, format!("cannot read the private key: {err}")))
}

fn root_store(path: &Path) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in load_certificates(path)? {
        roots
            .add(cert)
            .map_err(|err| file_error(path, format!("unusable CA certificate: {err}")))?;
    }
    Ok(roots)
}

/// Refuses a leaf certificate that has already expired (R-T04).
fn check_not_expired(path: &Path, leaf: &CertificateDer<'_>) -> Result<(), TlsError> {
    let (_, cert) = x509_parser::parse_x509_certificate(leaf.as_ref())
        .map_err(|_| file_error(path, "the certificate cannot be parsed"))?;
    if !cert.validity().is_valid() {
        return Err(file_error(
            path,
            "the certificate is expired or not yet valid",
        ));
    }
    Ok(())
}

/// Builds the listener's TLS configuration from files.
pub fn server_config(files: &TlsFiles) -> Result<Arc<ServerConfig>, TlsError> {
    let chain = load_certificates(&files.cert_file)?;
    check_not_expired(&files.cert_file, &chain[0])?;
    let key = load_private_key(&files.key_file)?;
    let builder = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|err| TlsError::Rustls(err.to_string()))?;
    let builder = match &files.client_ca {
        None => builder.with_no_client_auth(),
        Some(client_ca) => {
            let roots = Arc::new(root_store(&client_ca.ca_file)?);
            let verifier = WebPkiClientVerifier::builder_with_provider(roots, provider());
            let verifier = match client_ca.auth {
                ClientAuth::Required => verifier,
                // A presented certificate is still verified: an invalid one is a failed
                // handshake, never a silent downgrade to "no certificate" (N-05).
                ClientAuth::Optional => verifier.allow_unauthenticated(),
            };
            builder.with_client_cert_verifier(
                verifier
                    .build()
                    .map_err(|err| TlsError::Rustls(err.to_string()))?,
            )
        }
    };
    let mut config = builder.with_single_cert(chain, key).map_err(|err| {
        TlsError::Rustls(format!("certificate and key do not fit together: {err}"))
    })?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// A client configuration that trusts `ca_file` alone, or the public web PKI without one.
pub fn https_client_config(ca_file: Option<&Path>) -> Result<ClientConfig, TlsError> {
    let roots = match ca_file {
        Some(path) => root_store(path)?,
        None => RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        },
    };
    let config = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|err| TlsError::Rustls(err.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(config)
}

/// What the TLS handshake proved about the client.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ClientIdentity {
    thumbprint: Option<CertThumbprint>,
}

/// RFC 8705 §3.1: base64url (no padding) of the SHA-256 of the leaf certificate's DER.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertThumbprint(String);

impl CertThumbprint {
    /// The thumbprint of a DER certificate.
    pub fn of(der: &[u8]) -> Self {
        Self(URL_SAFE_NO_PAD.encode(crate::jose::sha256(der)))
    }

    /// The encoded thumbprint.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl ClientIdentity {
    /// No client certificate (plain TLS, or `client_auth: optional` without one).
    pub fn anonymous() -> Self {
        Self::default()
    }

    /// The identity of a verified peer chain (leaf first).
    pub fn from_peer_certificates(chain: Option<&[CertificateDer<'_>]>) -> Self {
        let thumbprint = chain
            .and_then(|chain| chain.first())
            .map(|leaf| CertThumbprint::of(leaf.as_ref()));
        Self { thumbprint }
    }

    /// The client certificate's thumbprint, if one was presented and verified.
    pub fn thumbprint(&self) -> Option<&CertThumbprint> {
        self.thumbprint.as_ref()
    }
}
