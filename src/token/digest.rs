//! `TokenDigest`: the SHA-256 of an access token's text, computed once, when the token is read
//! from the request. Outside `token/` it stands for the token wherever one must be recognised:
//! the verified-token and introspection cache key, a revocation entry's `token_sha256`, and a
//! DPoP proof's `ath` (RFC 9449 §4.2). A digest cannot be turned back into a token, so it is
//! safe to pass around; it is still never logged (logs carry `jti`).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::jose;

/// SHA-256 of an access token's ASCII text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TokenDigest([u8; 32]);

impl TokenDigest {
    /// Hashes `token`; only `BearerToken` does, once per token read.
    pub(super) fn of(token: &str) -> Self {
        Self(jose::sha256(token.as_bytes()))
    }

    /// Reads a digest written as base64url without padding (a revocation entry, a DPoP `ath`):
    /// exactly 32 bytes in canonical form, so one digest has one spelling.
    pub fn from_base64url(text: &str) -> Option<Self> {
        let bytes = URL_SAFE_NO_PAD.decode(text).ok()?;
        bytes.try_into().ok().map(Self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check(text: &str, expected: Option<TokenDigest>) {
        assert_eq!(TokenDigest::from_base64url(text), expected, "{text}");
    }

    #[test]
    fn reads_only_the_canonical_base64url_of_32_bytes() {
        // RFC 9449 §4.2's example: the `ath` of its example access token.
        let token = "Kz~8mXK1EalYznwH-LC-1fBAo.4Ljp~zsPE_NeO.gxU";
        let ath = "fUHyO2r2Z3DZ53EsNrWBb0xWXoaNy59IiKCAqksmQEo";
        check(ath, Some(TokenDigest::of(token)));
        assert_ne!(TokenDigest::of(token), TokenDigest::of("another"));
        for refused in [
            &format!("{ath}="),
            // The standard alphabet is not base64url.
            &format!("+{}", &ath[1..]),
            &ath[..42],
            &format!("{ath}AA"),
            // The last character of 32 bytes carries two spare bits; they must be zero.
            &format!("{}R", &ath[..42]),
            "",
        ] {
            check(refused, None);
        }
    }
}
