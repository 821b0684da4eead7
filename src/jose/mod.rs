//! The JOSE core shared by access tokens (`token`) and DPoP proofs (`binding::dpop`): one strict
//! compact-JWS parser (`compact`), one JWK → public key conversion with each algorithm's key
//! rules and one private-member check (`jwk`), one NumericDate rule (`time`), and the names of
//! the signature algorithms phigate verifies. A rule tightened here is tightened for both
//! callers at once. This module never chooses a trusted key, never fetches anything and never
//! decides what a token or proof may do: its callers do.

pub mod compact;
pub mod jwk;
pub mod time;

use jsonwebtoken::Algorithm;

/// An asymmetric JWS `alg` name (RFC 7518 §3.1, RFC 8037 §3.1) as an [`Algorithm`]; `none` and
/// HMAC are never one, whatever a caller's allow-list says (RFC 8725 §3.1).
pub fn algorithm(name: &str) -> Option<Algorithm> {
    match name {
        // RFC 9864: the fully specified name for EdDSA over Ed25519.
        "Ed25519" => Some(Algorithm::EdDSA),
        "HS256" | "HS384" | "HS512" => None,
        other => other.parse().ok(),
    }
}

/// SHA-256 of `bytes`: RFC 7638 thumbprints, RFC 8705 `x5t#S256`, token digests.
pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes);
    let mut out = [0u8; 32];
    out.copy_from_slice(digest.as_ref());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check(name: &str, expected: Option<Algorithm>) {
        assert_eq!(algorithm(name), expected, "{name}");
    }

    #[test]
    fn only_asymmetric_names_are_algorithms() {
        check("ES256", Some(Algorithm::ES256));
        check("PS256", Some(Algorithm::PS256));
        check("EdDSA", Some(Algorithm::EdDSA));
        check("Ed25519", Some(Algorithm::EdDSA));
        for refused in [
            "none", "None", "HS256", "HS384", "HS512", "es256", "ES512", "",
        ] {
            check(refused, None);
        }
    }
}
