//! The staleness bound on client-certificate revocation, enforced in the handshake: while any
//! configured CRL is past its `nextUpdate` or has gone `client_crl_max_stale` without a good
//! read, a client that presents a certificate fails its handshake, whatever webpki would say;
//! the moment a fresh CRL moves the bound on, handshakes succeed again. A client presenting no
//! certificate (`client_auth: optional`) is not affected: there is nothing to check. This gate
//! only ever refuses; every acceptance is webpki's.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use rustls::client::danger::HandshakeSignatureValid;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{CertificateError, DigitallySignedStruct, DistinguishedName, Error, SignatureScheme};
use rustls_pki_types::{CertificateDer, UnixTime};

/// The moment (unix seconds) from which the CRLs no longer count as current.
#[derive(Debug)]
pub struct Freshness {
    stale_from: AtomicI64,
}

impl Freshness {
    /// Stale from the start: nothing vouches for any certificate until a CRL is held.
    pub fn stale() -> Self {
        Self {
            stale_from: AtomicI64::new(i64::MIN),
        }
    }

    /// Moves the bound (the earliest moment any CRL goes stale).
    pub fn set_stale_from(&self, unix_seconds: i64) {
        self.stale_from.store(unix_seconds, Ordering::Release);
    }

    /// The current bound.
    pub fn stale_from(&self) -> i64 {
        self.stale_from.load(Ordering::Acquire)
    }

    /// Whether the CRLs are current at `now`.
    pub fn is_fresh_at(&self, now: UnixTime) -> bool {
        i64::try_from(now.as_secs()).is_ok_and(|now| now < self.stale_from())
    }
}

/// A client verifier that refuses every certificate while the CRLs are stale, then asks webpki.
#[derive(Debug)]
pub struct FreshCrls {
    inner: Arc<dyn ClientCertVerifier>,
    freshness: Arc<Freshness>,
}

impl FreshCrls {
    /// Puts the staleness bound in front of `inner`.
    pub fn new(inner: Arc<dyn ClientCertVerifier>, freshness: Arc<Freshness>) -> Self {
        Self { inner, freshness }
    }
}

impl ClientCertVerifier for FreshCrls {
    fn offer_client_auth(&self) -> bool {
        self.inner.offer_client_auth()
    }

    fn client_auth_mandatory(&self) -> bool {
        self.inner.client_auth_mandatory()
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, Error> {
        if !self.freshness.is_fresh_at(now) {
            // Fail closed: a revocation we cannot see might be exactly this certificate's.
            return Err(Error::InvalidCertificate(
                CertificateError::ExpiredRevocationList,
            ));
        }
        self.inner
            .verify_client_cert(end_entity, intermediates, now)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check(stale_from: i64, now: u64, fresh: bool) {
        let freshness = Freshness::stale();
        freshness.set_stale_from(stale_from);
        assert_eq!(
            freshness.is_fresh_at(UnixTime::since_unix_epoch(std::time::Duration::from_secs(
                now
            ))),
            fresh
        );
    }

    #[test]
    fn fresh_only_strictly_before_the_bound() {
        check(i64::MIN, 0, false);
        check(1000, 999, true);
        check(1000, 1000, false);
        check(1000, 5000, false);
        check(i64::MAX, u64::MAX, false);
        check(i64::MAX, 5000, true);
    }
}
