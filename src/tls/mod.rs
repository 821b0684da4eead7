//! TLS for both directions. The listener side builds a rustls `ServerConfig` that speaks only
//! TLS 1.2 and 1.3 with rustls's AEAD suites, offers h2 and http/1.1 by ALPN, and, with a client
//! CA, verifies client certificates (an invalid certificate fails the handshake in both
//! `required` and `optional` modes). `ClientIdentity` is what the handshake proved about the
//! client, and `HandshakeFailure` why a handshake failed. `Material` keeps the listener's
//! certificate, key, client CAs and CRLs, refusing a bad file while the last good one serves,
//! and `LiveConfig` hands each new connection the current configuration, so a reload never
//! touches a connection already open. The client side verifies upstream and JWKS servers and
//! never has an "accept any certificate" mode.

mod crl;
pub mod dev_ca;
mod freshness;
mod handshake;
mod material;
mod upstream;

pub use self::crl::Crl;
pub use self::freshness::Freshness;
pub use self::handshake::HandshakeFailure;
pub use self::material::{
    Attempt, Change, CrlStatus, LiveConfig, Material, Outcome, Part, read_attempt,
};

use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rustls::client::WebPkiServerVerifier;
use rustls::{ClientConfig, RootCertStore};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;

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
    /// Where the CAs' revocation lists come from; none means revocation is not checked.
    pub crls: Vec<CrlSource>,
    /// How long a CRL source may go without a good read before handshakes fail closed.
    pub crl_max_stale: Duration,
}

/// One source of a client CA's certificate revocation list.
#[derive(Debug, Clone)]
pub struct CrlSource {
    /// Where it is read from.
    pub location: CrlLocation,
    /// How often it is read again (a file also on every change and SIGHUP).
    pub refresh: Duration,
}

/// Where a CRL is read from.
#[derive(Debug, Clone)]
pub enum CrlLocation {
    /// A PEM or DER file.
    File(PathBuf),
    /// An HTTP(S) URL serving PEM or DER.
    Url {
        /// The CRL's URL.
        url: http::Uri,
        /// CA bundle for an `https` URL (the web PKI without one).
        ca_file: Option<PathBuf>,
    },
}

impl CrlLocation {
    /// The source's name in metrics and logs (no folder, credentials or query).
    pub fn label(&self) -> String {
        match self {
            Self::File(path) => crate::fetch::file_label(path),
            Self::Url { url, .. } => crate::fetch::url_label(url),
        }
    }
}

/// Whether mutual TLS is mandatory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    /// A client without a certificate from the CA cannot complete the handshake.
    Required,
    /// A client may present no certificate; one it presents must still be valid.
    Optional,
}

/// A TLS setup problem, reported at start (or refused at reload) with the file concerned.
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

/// A certificate, key, CA bundle or CRL file larger than this is refused.
const MAX_FILE_BYTES: u64 = 16 * 1024 * 1024;

/// Reads a file of the TLS material, refusing one too large to be one.
fn read_file(path: &Path) -> Result<Vec<u8>, TlsError> {
    use std::io::Read as _;
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|file| file.take(MAX_FILE_BYTES + 1).read_to_end(&mut bytes))
        .map_err(|err| file_error(path, format!("cannot read the file: {err}")))?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(file_error(path, "larger than 16 MiB"));
    }
    Ok(bytes)
}

/// Reads every certificate in a PEM file.
pub fn load_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    parse_certificates(path, &read_file(path)?)
}

/// The PEM text of `path`, once it is known to hold certificates only, for a client that
/// parses PEM itself (the Redis client's `redis_ca_file`).
pub fn read_pem_certificates(path: &Path) -> Result<Vec<u8>, TlsError> {
    let pem = read_file(path)?;
    parse_certificates(path, &pem)?;
    Ok(pem)
}

/// Every certificate in PEM text read from `path`; none is an error.
fn parse_certificates(path: &Path, pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|err| file_error(path, format!("invalid PEM certificate: {err}")))?;
    if certs.is_empty() {
        return Err(file_error(path, "no certificate found"));
    }
    Ok(certs)
}

fn root_store(path: &Path) -> Result<RootCertStore, TlsError> {
    root_store_of(path, &load_certificates(path)?)
}

fn root_store_of(
    path: &Path,
    certs: &[CertificateDer<'static>],
) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in certs {
        roots
            .add(cert.clone())
            .map_err(|err| file_error(path, format!("unusable CA certificate: {err}")))?;
    }
    Ok(roots)
}

/// A certificate's notAfter, or why it cannot be parsed.
pub fn not_after(der: &CertificateDer<'_>) -> Option<SystemTime> {
    let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref()).ok()?;
    Some(unix_time(cert.validity().not_after.timestamp()))
}

/// Now, in the Unix seconds CRL dates and the staleness bound are kept in.
pub fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// Unix seconds as a `SystemTime` (before the epoch reads as the epoch).
fn unix_time(seconds: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(u64::try_from(seconds).unwrap_or_default())
}

/// Refuses a certificate outside its validity period (R-T04); returns its notAfter.
fn check_not_expired(path: &Path, cert: &CertificateDer<'_>) -> Result<SystemTime, TlsError> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref())
        .map_err(|_| file_error(path, "the certificate cannot be parsed"))?;
    if !parsed.validity().is_valid() {
        return Err(file_error(
            path,
            "the certificate is expired or not yet valid",
        ));
    }
    Ok(unix_time(parsed.validity().not_after.timestamp()))
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
    /// A file of `listen.tls.client_crls`.
    Crl,
}

impl ServerFile {
    /// The configuration key.
    pub fn key(self) -> &'static str {
        match self {
            Self::Certificate => "listen.tls.cert_file",
            Self::Key => "listen.tls.key_file",
            Self::ClientCa => "listen.tls.client_ca_file",
            Self::Crl => "listen.tls.client_crls",
        }
    }
}

/// Told the end-entity certificate's notAfter after each successful server verification.
pub type OnExpiry = Arc<dyn Fn(SystemTime) + Send + Sync>;

/// A client configuration that trusts `ca_file` alone, or the public web PKI without one;
/// `on_expiry` hears each verified server certificate's notAfter.
pub fn https_client_config(
    ca_file: Option<&Path>,
    on_expiry: Option<OnExpiry>,
) -> Result<ClientConfig, TlsError> {
    let roots = match ca_file {
        Some(path) => root_store(path)?,
        None => RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        },
    };
    let builder = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|err| TlsError::Rustls(err.to_string()))?;
    let config = match on_expiry {
        None => builder.with_root_certificates(roots),
        Some(on_expiry) => {
            let webpki = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider())
                .build()
                .map_err(|err| TlsError::Rustls(err.to_string()))?;
            // Not a weakening: every decision is webpki's; the wrapper only reads the date.
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(upstream::ExpiryRecording::new(
                    webpki, on_expiry,
                )))
        }
    };
    Ok(config.with_no_client_auth())
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
    pooled_client(ca_file, false, None)
}

/// [`https_client`], speaking HTTP/2 only when `http2` (`upstream.http2`): ALPN `h2` over TLS,
/// prior knowledge over plain HTTP; `on_expiry` as in [`https_client_config`].
pub fn pooled_client<B>(
    ca_file: Option<&Path>,
    http2: bool,
    on_expiry: Option<OnExpiry>,
) -> Result<HttpsClient<B>, TlsError>
where
    B: http_body::Body + Send + 'static + Unpin,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let builder = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(https_client_config(ca_file, on_expiry)?)
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
