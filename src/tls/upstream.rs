//! The upstream's certificate, watched: a server verifier that leaves every decision to webpki
//! and, once webpki accepted a chain, reports the end-entity certificate's notAfter, so the
//! expiry of a certificate phigate only ever sees on the wire can be alerted on. It must never
//! accept anything webpki refused, nor report a certificate that failed verification.

use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::{DigitallySignedStruct, Error, SignatureScheme};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

use super::OnExpiry;

/// webpki's verifier, reporting each verified end-entity certificate's notAfter.
pub struct ExpiryRecording {
    inner: Arc<WebPkiServerVerifier>,
    on_expiry: OnExpiry,
}

impl ExpiryRecording {
    /// Wraps `inner`; `on_expiry` hears the notAfter of each certificate `inner` accepted.
    pub fn new(inner: Arc<WebPkiServerVerifier>, on_expiry: OnExpiry) -> Self {
        Self { inner, on_expiry }
    }
}

impl std::fmt::Debug for ExpiryRecording {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExpiryRecording")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl ServerCertVerifier for ExpiryRecording {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        let verified = self.inner.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        )?;
        if let Some(not_after) = super::not_after(end_entity) {
            (self.on_expiry)(not_after);
        }
        Ok(verified)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}
