//! Why a client's TLS handshake failed, in a few fixed reasons an operator can act on: clients
//! too old or too new for the protocol versions or suites phigate speaks, certificates one side
//! refused (a client's, or ours, which the client reports by alert), garbage such as plaintext
//! HTTP on the TLS port, and peers that hung up or stalled. The reason feeds a metric label, so
//! it never carries anything the peer sent.

use rustls::{AlertDescription, Error, PeerIncompatible};

/// The reason a handshake failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandshakeFailure {
    /// The client offers no TLS version phigate accepts (1.2, 1.3).
    ProtocolVersion,
    /// No cipher suite, key exchange group, signature scheme or required extension in common.
    NoSharedCipher,
    /// A certificate was refused: the client's by phigate (missing, untrusted, revoked,
    /// expired), or phigate's by the client (which says so in an alert).
    BadCertificate,
    /// Not a well-formed TLS handshake (plaintext HTTP on the TLS port, a scanner's probe).
    Malformed,
    /// The peer closed the connection before the handshake finished.
    Closed,
    /// The handshake did not finish within its deadline.
    Timeout,
    /// Anything else.
    Other,
}

impl HandshakeFailure {
    /// Every reason, so the metric shows each at zero from the start.
    pub const ALL: [Self; 7] = [
        Self::ProtocolVersion,
        Self::NoSharedCipher,
        Self::BadCertificate,
        Self::Malformed,
        Self::Closed,
        Self::Timeout,
        Self::Other,
    ];

    /// Classifies the error a handshake ended with (tokio-rustls wraps rustls's in an I/O error).
    pub fn of(err: &std::io::Error) -> Self {
        if let Some(tls) = err.get_ref().and_then(|e| e.downcast_ref::<Error>()) {
            return Self::of_rustls(tls);
        }
        match err.kind() {
            std::io::ErrorKind::UnexpectedEof
            | std::io::ErrorKind::ConnectionReset
            | std::io::ErrorKind::ConnectionAborted
            | std::io::ErrorKind::BrokenPipe => Self::Closed,
            std::io::ErrorKind::TimedOut => Self::Timeout,
            _ => Self::Other,
        }
    }

    fn of_rustls(err: &Error) -> Self {
        match err {
            Error::PeerIncompatible(incompatible) => Self::of_incompatible(incompatible),
            Error::AlertReceived(alert) => Self::of_alert(*alert),
            Error::InvalidCertificate(_)
            | Error::NoCertificatesPresented
            | Error::InvalidCertRevocationList(_) => Self::BadCertificate,
            Error::InvalidMessage(_)
            | Error::UnsupportedNameType
            | Error::InappropriateMessage { .. }
            | Error::InappropriateHandshakeMessage { .. }
            | Error::PeerMisbehaved(_)
            | Error::PeerSentOversizedRecord
            | Error::DecryptError => Self::Malformed,
            _ => Self::Other,
        }
    }

    fn of_incompatible(incompatible: &PeerIncompatible) -> Self {
        match incompatible {
            PeerIncompatible::ServerDoesNotSupportTls12Or13
            | PeerIncompatible::SupportedVersionsExtensionRequired
            | PeerIncompatible::Tls12NotOffered
            | PeerIncompatible::Tls12NotOfferedOrEnabled
            | PeerIncompatible::Tls13RequiredForQuic
            | PeerIncompatible::ServerTlsVersionIsDisabledByOurConfig => Self::ProtocolVersion,
            _ => Self::NoSharedCipher,
        }
    }

    /// The client refused something and told us why.
    fn of_alert(alert: AlertDescription) -> Self {
        match alert {
            AlertDescription::ProtocolVersion => Self::ProtocolVersion,
            AlertDescription::HandshakeFailure | AlertDescription::InsufficientSecurity => {
                Self::NoSharedCipher
            }
            AlertDescription::BadCertificate
            | AlertDescription::UnsupportedCertificate
            | AlertDescription::CertificateRevoked
            | AlertDescription::CertificateExpired
            | AlertDescription::CertificateUnknown
            | AlertDescription::UnknownCA
            | AlertDescription::CertificateRequired
            | AlertDescription::BadCertificateStatusResponse => Self::BadCertificate,
            AlertDescription::DecodeError | AlertDescription::IllegalParameter => Self::Malformed,
            AlertDescription::CloseNotify | AlertDescription::UserCanceled => Self::Closed,
            _ => Self::Other,
        }
    }

    /// The metric label.
    pub fn reason(self) -> &'static str {
        match self {
            Self::ProtocolVersion => "protocol_version",
            Self::NoSharedCipher => "no_shared_cipher",
            Self::BadCertificate => "bad_certificate",
            Self::Malformed => "malformed",
            Self::Closed => "closed",
            Self::Timeout => "timeout",
            Self::Other => "other",
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io;

    use rustls::{CertificateError, InvalidMessage};

    use super::*;

    #[track_caller]
    fn check(err: io::Error, expected: &str) {
        assert_eq!(HandshakeFailure::of(&err).reason(), expected, "{err:?}");
    }

    fn tls(err: Error) -> io::Error {
        // What tokio-rustls hands back.
        io::Error::new(io::ErrorKind::InvalidData, err)
    }

    #[test]
    fn errors_map_to_a_few_fixed_reasons() {
        use PeerIncompatible as P;
        check(
            tls(Error::PeerIncompatible(P::Tls12NotOffered)),
            "protocol_version",
        );
        check(
            tls(Error::PeerIncompatible(
                P::SupportedVersionsExtensionRequired,
            )),
            "protocol_version",
        );
        check(
            tls(Error::AlertReceived(AlertDescription::ProtocolVersion)),
            "protocol_version",
        );
        check(
            tls(Error::PeerIncompatible(P::NoCipherSuitesInCommon)),
            "no_shared_cipher",
        );
        check(
            tls(Error::PeerIncompatible(P::NoKxGroupsInCommon)),
            "no_shared_cipher",
        );
        check(
            tls(Error::AlertReceived(AlertDescription::HandshakeFailure)),
            "no_shared_cipher",
        );
        check(
            tls(Error::InvalidCertificate(CertificateError::UnknownIssuer)),
            "bad_certificate",
        );
        check(tls(Error::NoCertificatesPresented), "bad_certificate");
        check(
            tls(Error::AlertReceived(AlertDescription::UnknownCA)),
            "bad_certificate",
        );
        check(
            tls(Error::AlertReceived(AlertDescription::CertificateExpired)),
            "bad_certificate",
        );
        check(
            tls(Error::InvalidMessage(InvalidMessage::InvalidContentType)),
            "malformed",
        );
        check(
            tls(Error::AlertReceived(AlertDescription::CloseNotify)),
            "closed",
        );
        check(io::Error::from(io::ErrorKind::UnexpectedEof), "closed");
        check(io::Error::from(io::ErrorKind::ConnectionReset), "closed");
        check(io::Error::from(io::ErrorKind::TimedOut), "timeout");
        check(tls(Error::NoApplicationProtocol), "other");
        check(io::Error::other("anything"), "other");
    }

    #[test]
    fn reasons_are_distinct() {
        let mut reasons: Vec<_> = HandshakeFailure::ALL.iter().map(|f| f.reason()).collect();
        reasons.sort_unstable();
        reasons.dedup();
        assert_eq!(reasons.len(), HandshakeFailure::ALL.len());
    }
}
