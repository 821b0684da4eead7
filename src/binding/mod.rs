//! Sender-constrained tokens: a token whose `cnf` binds it to a client certificate (RFC 8705)
//! is accepted only on a mutual-TLS connection presenting that certificate, and a rule or
//! client that demands binding refuses plain bearer tokens. Only the certificate proven in the
//! TLS handshake counts — never one passed in a header (RFC 9700 §4.13).

use crate::tls::ClientIdentity;
use crate::token::{Confirmation, VerifiedToken};

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

/// What a rule or client demands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Requirement {
    /// A certificate-bound token over mutual TLS.
    Mtls,
    /// A DPoP-bound token with a valid proof.
    Dpop,
    /// Either.
    Any,
}

impl Requirement {
    /// Parses `mtls`, `dpop` or `any`.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "mtls" => Some(Self::Mtls),
            "dpop" => Some(Self::Dpop),
            "any" => Some(Self::Any),
            _ => None,
        }
    }

    /// The configured name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Mtls => "mtls",
            Self::Dpop => "dpop",
            Self::Any => "any",
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
}

impl BindingFault {
    /// The reason code for logs and metrics.
    pub fn reason(self) -> &'static str {
        match self {
            Self::MissingCertificate => "binding_missing_cert",
            Self::CertificateMismatch => "binding_mismatch",
            Self::DpopProofRequired => "binding_dpop_required",
            Self::BindingRequired => "binding_required",
        }
    }
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
