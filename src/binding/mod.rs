//! Sender-constrained tokens: a token whose `cnf` binds it to a client certificate (RFC 8705)
//! is accepted only on a mutual-TLS connection presenting that certificate, and a rule or
//! client that demands binding refuses plain bearer tokens. Only the certificate proven in the
//! TLS handshake counts — never one passed in a header (RFC 9700 §4.13). A token bound to a
//! DPoP key (RFC 9449) is accepted only with the `DPoP` scheme and a fresh proof by that key.

pub mod dpop;
pub mod nonce;
pub mod replay;

pub use crate::policy::Requirement;
use http::{HeaderMap, Method};

use self::dpop::{DpopFault, ProofSettings};
use self::replay::{ProofUse, ReplayCache};
use crate::tls::ClientIdentity;
use crate::token::{Confirmation, TokenDigest, VerifiedToken};

/// How the request proved possession of the token's key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Binding {
    /// A plain bearer token.
    Bearer,
    /// RFC 8705: bound to the mutual-TLS client certificate.
    Mtls,
    /// RFC 9449: bound to a DPoP key.
    Dpop,
}

impl Binding {
    /// The name used in logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Bearer => "bearer",
            Self::Mtls => "mtls",
            Self::Dpop => "dpop",
        }
    }
}

/// Why a binding check failed; each is a documented reason code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BindingFault {
    /// A certificate-bound token on a connection without a client certificate.
    MissingCertificate,
    /// The connection's certificate is not the one the token is bound to.
    CertificateMismatch,
    /// A DPoP-bound token presented as a plain bearer token (RFC 9449 §7.2: rejected).
    DpopProofRequired,
    /// The rule or client demands a binding this token does not have.
    BindingRequired,
    /// `Authorization: DPoP` without exactly one `DPoP` proof header (RFC 9449 §4.3 item 1).
    ProofMissing,
    /// The proof failed a check.
    Proof(DpopFault),
    /// The proof key is not the key the token is bound to (RFC 9449 §6.1).
    ProofKeyMismatch,
    /// The DPoP scheme with a token that is not DPoP-bound.
    NotDpopBound,
    /// The replay store did not answer: phigate cannot rule out a replay.
    ReplayStoreUnavailable,
    /// Nonces are required and the proof lacks a current one (RFC 9449 §8).
    NonceRequired,
}

impl BindingFault {
    /// The reason code for logs and metrics.
    pub fn reason(self) -> &'static str {
        match self {
            Self::MissingCertificate => "binding_missing_cert",
            Self::CertificateMismatch => "binding_mismatch",
            Self::DpopProofRequired => "binding_dpop_required",
            Self::BindingRequired => "binding_required",
            Self::ProofMissing => "dpop_proof_missing",
            Self::Proof(fault) => fault.reason(),
            Self::ProofKeyMismatch => "dpop_key_mismatch",
            Self::NotDpopBound => "dpop_token_not_bound",
            Self::ReplayStoreUnavailable => "dpop_replay_store_unavailable",
            Self::NonceRequired => "dpop_nonce_required",
        }
    }
}

/// Checks DPoP proofs for tokens presented with the `DPoP` scheme.
pub struct DpopChecker {
    settings: ProofSettings,
    public_base_url: Option<String>,
    replay: ReplayCache,
    nonces: Option<nonce::NonceIssuer>,
}

impl DpopChecker {
    /// A checker comparing `htu` against `public_base_url` (no DPoP is accepted without one).
    pub fn new(
        settings: ProofSettings,
        public_base_url: Option<String>,
        replay: ReplayCache,
    ) -> Self {
        Self {
            settings,
            public_base_url,
            replay,
            nonces: None,
        }
    }

    /// Requires proofs to carry a nonce from `issuer`.
    pub fn with_nonces(mut self, issuer: nonce::NonceIssuer) -> Self {
        self.nonces = Some(issuer);
        self
    }

    /// The nonce to hand out in `DPoP-Nonce` (RFC 9449 §8.2), when nonces are on.
    pub fn current_nonce(&self) -> Option<String> {
        self.nonces.as_ref().map(nonce::NonceIssuer::current)
    }

    /// Verifies the request's proof for `token` (whose text hashes to `access_token`) and records
    /// it against replay.
    pub async fn check(
        &self,
        token: &VerifiedToken,
        access_token: &TokenDigest,
        headers: &HeaderMap,
        method: &Method,
        path: &str,
    ) -> Result<Binding, BindingFault> {
        let Confirmation::DpopKey(bound_key) = &token.confirmation else {
            return Err(BindingFault::NotDpopBound);
        };
        let mut proofs = headers.get_all("dpop").iter();
        let (Some(proof), None) = (proofs.next(), proofs.next()) else {
            return Err(BindingFault::ProofMissing);
        };
        if proof.len() > crate::token::bearer::MAX_AUTHORIZATION_BYTES {
            return Err(BindingFault::Proof(DpopFault::Malformed));
        }
        let proof = proof
            .to_str()
            .map_err(|_| BindingFault::Proof(DpopFault::Malformed))?;
        // Without a configured public URL phigate cannot know what `htu` must be: fail closed.
        let base = self
            .public_base_url
            .as_deref()
            .ok_or(BindingFault::Proof(DpopFault::UriMismatch))?;
        let htu = format!("{base}{path}");
        let verified = dpop::verify_proof(
            proof,
            method,
            &htu,
            access_token,
            // Nonces are checked below against the current and previous window.
            None,
            unix_now(),
            &self.settings,
        )
        .map_err(BindingFault::Proof)?;
        if &verified.jkt != bound_key {
            return Err(BindingFault::ProofKeyMismatch);
        }
        if let Some(nonces) = &self.nonces
            && !verified
                .nonce
                .as_deref()
                .is_some_and(|n| nonces.is_current(n))
        {
            return Err(BindingFault::NonceRequired);
        }
        match self.replay.record(&verified.jkt, &verified.jti).await {
            ProofUse::First => Ok(Binding::Dpop),
            ProofUse::Replay => Err(BindingFault::Proof(DpopFault::Replayed)),
            ProofUse::Unknown => Err(BindingFault::ReplayStoreUnavailable),
        }
    }
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// Checks the token's confirmation against what the connection proved.
pub fn check(token: &VerifiedToken, identity: &ClientIdentity) -> Result<Binding, BindingFault> {
    match &token.confirmation {
        Confirmation::None => Ok(Binding::Bearer),
        Confirmation::Certificate(expected) => {
            let presented = identity
                .thumbprint()
                .ok_or(BindingFault::MissingCertificate)?;
            // Thumbprints are public values; equality needs no constant-time comparison.
            if presented.as_str() == expected {
                Ok(Binding::Mtls)
            } else {
                Err(BindingFault::CertificateMismatch)
            }
        }
        Confirmation::DpopKey(_) => Err(BindingFault::DpopProofRequired),
    }
}

/// Enforces a rule's or client's demand for a sender-constrained token.
pub fn enforce(required: Option<Requirement>, binding: Binding) -> Result<(), BindingFault> {
    let satisfied = match (required, binding) {
        (None, _) => true,
        (Some(Requirement::Mtls), Binding::Mtls) | (Some(Requirement::Dpop), Binding::Dpop) => true,
        (Some(Requirement::Any), Binding::Mtls | Binding::Dpop) => true,
        (Some(_), _) => false,
    };
    if satisfied {
        Ok(())
    } else {
        Err(BindingFault::BindingRequired)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requirements() {
        assert_eq!(enforce(None, Binding::Bearer), Ok(()));
        assert_eq!(enforce(Some(Requirement::Mtls), Binding::Mtls), Ok(()));
        assert_eq!(
            enforce(Some(Requirement::Mtls), Binding::Bearer),
            Err(BindingFault::BindingRequired)
        );
        assert_eq!(
            enforce(Some(Requirement::Mtls), Binding::Dpop),
            Err(BindingFault::BindingRequired)
        );
        assert_eq!(enforce(Some(Requirement::Any), Binding::Dpop), Ok(()));
        assert_eq!(
            enforce(Some(Requirement::Any), Binding::Bearer),
            Err(BindingFault::BindingRequired)
        );
        assert_eq!(
            enforce(Some(Requirement::Dpop), Binding::Mtls),
            Err(BindingFault::BindingRequired)
        );
    }
}
