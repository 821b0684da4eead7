//! TLS for both directions. The listener side builds a rustls `ServerConfig` that speaks only
//! TLS 1.2 and 1.3 with rustls's AEAD suites, offers h2 and http/1.1 by ALPN, and, with a client
//! CA, verifies client certificates (an invalid certificate fails the handshake in both
//! `required` and `optional` modes). `ClientIdentity` is what the handshake proved about the
//! client, and `HandshakeFailure` why a handshake failed. The client side verifies upstream and
//! JWKS servers and never has an "accept any certificate" mode.

pub mod dev_ca;
mod handshake;

pub use self::handshake::HandshakeFailure;

use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// A TLS setup problem, reported at start with the file concerned.
/// Certificate files of the TLS listener.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// PEM certificate chain, leaf first.
    pub cert_file: PathBuf,
    /// PEM private key.
    pub key_file: PathBuf,
    /// Client CA for mutual TLS.
    pub client_ca: Option<ClientCa>,
}

/// Client-certificate authentication settings.
#[derive(Debug, Clone)]
pub struct ClientCa {
    /// PEM bundle of CAs that issue client certificates.
    pub ca_file: PathBuf,
    /// Whether a certificate is mandatory.
    pub auth: ClientAuth,
}

/// Whether mutual TLS is mandatory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    /// A client without a certificate from the CA cannot complete the handshake.
    Required,
    /// A client may present no certificate; one it presents must still be valid.
    Optional,
}

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
    /// The private key is not the certificate's.
    #[error("{key}: the private key does not match the certificate in {cert}")]
    KeyMismatch {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
    },
    /// rustls refused the combination (a bad CA).
    #[error("TLS configuration refused: {0}")]
    Rustls(String),
}

impl TlsError {
    /// The file the problem is in, when there is one (to name its configuration key).
    pub fn file(&self) -> Option<&Path> {
        match self {
            Self::File { path, .. } => Some(path),
            Self::KeyMismatch { key, .. } => Some(key),
            Self::Rustls(_) => None,
        }
    }

    /// What is wrong, without the path (the caller names the key and file).
    pub fn problem(&self) -> String {
        match self {
            Self::File { message, .. } => message.clone(),
            Self::KeyMismatch { cert, .. } => format!(
                "the private key does not match the certificate in {}",
                cert.display()
            ),
            Self::Rustls(message) => format!("TLS configuration refused: {message}"),
        }
    }
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

/// Refuses a leaf certificate that has already expired (R-T04); returns its notAfter.
fn check_not_expired(path: &Path, leaf: &CertificateDer<'_>) -> Result<SystemTime, TlsError> {
    let (_, cert) = x509_parser::parse_x509_certificate(leaf.as_ref())
        .map_err(|_| file_error(path, "the certificate cannot be parsed"))?;
    if !cert.validity().is_valid() {
        return Err(file_error(
            path,
            "the certificate is expired or not yet valid",
        ));
    }
    let seconds = cert.validity().not_after.timestamp();
    let since_epoch = Duration::from_secs(u64::try_from(seconds).unwrap_or_default());
    Ok(UNIX_EPOCH + since_epoch)
}

/// The listener's TLS configuration, and when its certificate expires.
pub struct ServerTls {
    /// The rustls configuration.
    pub config: Arc<ServerConfig>,
    /// The leaf certificate's notAfter, for `phigate_tls_certificate_expiry_seconds`.
    pub not_after: SystemTime,
}

/// Which of the listener's files a problem is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerFile {
    /// `listen.tls.cert_file`.
    Certificate,
    /// `listen.tls.key_file` (also when it does not match the certificate).
    Key,
    /// `listen.tls.client_ca_file`.
    ClientCa,
}

impl ServerFile {
    /// The configuration key.
    pub fn key(self) -> &'static str {
        match self {
            Self::Certificate => "listen.tls.cert_file",
            Self::Key => "listen.tls.key_file",
            Self::ClientCa => "listen.tls.client_ca_file",
        }
    }
}

/// Builds the listener's TLS configuration from files; every file's problem is reported, not
/// only the first.
pub fn server_config(files: &TlsFiles) -> Result<ServerTls, Vec<(ServerFile, TlsError)>> {
    let chain = load_certificates(&files.cert_file).and_then(|chain| {
        check_not_expired(&files.cert_file, &chain[0]).map(|not_after| (chain, not_after))
    });
    let key = load_private_key(&files.key_file);
    let roots = files
        .client_ca
        .as_ref()
        .map(|client_ca| root_store(&client_ca.ca_file).map(Arc::new))
        .transpose();
    match (chain, key, roots) {
        (Ok((chain, not_after)), Ok(key), Ok(roots)) => assemble(files, chain, key, roots)
            .map(|config| ServerTls { config, not_after })
            .map_err(|err| vec![(ServerFile::Key, err)]),
        (chain, key, roots) => Err([
            chain.err().map(|e| (ServerFile::Certificate, e)),
            key.err().map(|e| (ServerFile::Key, e)),
            roots.err().map(|e| (ServerFile::ClientCa, e)),
        ]
        .into_iter()
        .flatten()
        .collect()),
    }
}

fn assemble(
    files: &TlsFiles,
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    roots: Option<Arc<RootCertStore>>,
) -> Result<Arc<ServerConfig>, TlsError> {
    let builder = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|err| TlsError::Rustls(err.to_string()))?;
    let builder = match (&files.client_ca, roots) {
        (Some(client_ca), Some(roots)) => {
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
        _ => builder.with_no_client_auth(),
    };
    let mut config = builder
        .with_single_cert(chain, key)
        .map_err(|_| TlsError::KeyMismatch {
            cert: files.cert_file.clone(),
            key: files.key_file.clone(),
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

/// The one pooled HTTP(S) client every outbound call uses (upstream, JWKS, introspection,
/// revocation): certificates verified against `ca_file` or the web PKI, HTTP/1.1, and the same
/// timers everywhere — both the request timer and the pool timer, or idle pooled connections
/// never close (DEPENDENCIES.md).
pub fn https_client<B>(ca_file: Option<&Path>) -> Result<HttpsClient<B>, TlsError>
where
    B: http_body::Body + Send + 'static + Unpin,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    pooled_client(ca_file, false)
}

/// [`https_client`], speaking HTTP/2 only when `http2` (`upstream.http2`): ALPN `h2` over TLS,
/// prior knowledge over plain HTTP.
pub fn pooled_client<B>(ca_file: Option<&Path>, http2: bool) -> Result<HttpsClient<B>, TlsError>
where
    B: http_body::Body + Send + 'static + Unpin,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let builder = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(https_client_config(ca_file)?)
        .https_or_http();
    let connector = if http2 {
        builder.enable_http2().build()
    } else {
        builder.enable_http1().build()
    };
    let mut client = Client::builder(TokioExecutor::new());
    client
        .timer(TokioTimer::new())
        .pool_timer(TokioTimer::new())
        .pool_idle_timeout(POOL_IDLE_TIMEOUT)
        .http2_only(http2);
    Ok(client.build(connector))
}

/// How long an idle pooled connection is kept.
const POOL_IDLE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// A pooled client over HTTP or verified HTTPS.
pub type HttpsClient<B> = Client<HttpsConnector<HttpConnector>, B>;

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
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, der);
        Self(URL_SAFE_NO_PAD.encode(digest.as_ref()))
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
