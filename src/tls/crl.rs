//! One certificate revocation list, accepted only when it can be trusted: PEM or DER, signed by
//! one of the configured client CAs (RFC 5280 §6.3.3 (f)), within its validity (`thisUpdate`
//! not in the future, `nextUpdate` not past). A list that fails any of these is refused whole,
//! never partly used: the caller keeps the previous one.

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, CertificateRevocationListDer};
use x509_parser::prelude::FromDer;
use x509_parser::revocation_list::CertificateRevocationList;

/// A CRL whose signature and dates were checked.
#[derive(Debug, Clone)]
pub struct Crl {
    der: CertificateRevocationListDer<'static>,
    this_update: i64,
    next_update: Option<i64>,
}

/// Why a CRL was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CrlError {
    /// Neither PEM holding a CRL nor a DER CRL.
    #[error("not a certificate revocation list (PEM or DER)")]
    Unparseable,
    /// No configured client CA signed it.
    #[error("not signed by any configured client CA")]
    NotSigned,
    /// `thisUpdate` is in the future: a clock problem, or a forged date.
    #[error("its thisUpdate is in the future")]
    NotYetValid,
    /// `nextUpdate` has passed.
    #[error("its nextUpdate has passed")]
    Expired,
}

impl Crl {
    /// Parses `bytes` and checks the list against `authorities` at `now` (unix seconds).
    pub fn parse(
        bytes: &[u8],
        authorities: &[CertificateDer<'_>],
        now: i64,
    ) -> Result<Self, CrlError> {
        let der: CertificateRevocationListDer<'static> = if bytes.starts_with(b"-----BEGIN") {
            CertificateRevocationListDer::from_pem_slice(bytes)
                .map_err(|_| CrlError::Unparseable)?
        } else {
            CertificateRevocationListDer::from(bytes.to_vec())
        };
        let (rest, crl) =
            CertificateRevocationList::from_der(der.as_ref()).map_err(|_| CrlError::Unparseable)?;
        if !rest.is_empty() {
            return Err(CrlError::Unparseable);
        }
        if !signed_by_one_of(&crl, authorities) {
            return Err(CrlError::NotSigned);
        }
        let this_update = crl.last_update().timestamp();
        let next_update = crl.next_update().map(|at| at.timestamp());
        if this_update > now {
            return Err(CrlError::NotYetValid);
        }
        if next_update.is_some_and(|next| next <= now) {
            return Err(CrlError::Expired);
        }
        Ok(Self {
            der,
            this_update,
            next_update,
        })
    }

    /// The DER encoding, for the verifier.
    pub fn der(&self) -> &CertificateRevocationListDer<'static> {
        &self.der
    }

    /// `thisUpdate`, unix seconds.
    pub fn this_update(&self) -> i64 {
        self.this_update
    }

    /// `nextUpdate`, unix seconds, when the list names one.
    pub fn next_update(&self) -> Option<i64> {
        self.next_update
    }
}

/// Whether a CA whose subject is the CRL's issuer signed it.
fn signed_by_one_of(
    crl: &CertificateRevocationList<'_>,
    authorities: &[CertificateDer<'_>],
) -> bool {
    authorities.iter().any(|der| {
        x509_parser::parse_x509_certificate(der.as_ref()).is_ok_and(|(_, ca)| {
            ca.subject().as_raw() == crl.issuer().as_raw()
                && crl.verify_signature(ca.public_key()).is_ok()
        })
    })
}

#[cfg(test)]
mod tests;
