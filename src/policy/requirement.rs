//! The sender constraint a rule or a client demands of a token (RFC 8705 certificate binding,
//! RFC 9449 DPoP, or either). Policy owns the word; `binding` checks a token against it.

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
