//! The keyed MAC behind values phigate issues and later takes back — DPoP server nonces and
//! sealed links — and behind the audit trail's chain: HMAC-SHA-256 over a secret the operator
//! shares between replicas, or a random one per process. One home, so every kind is keyed and
//! checked alike.

use aws_lc_rs::hmac;

/// An HMAC-SHA-256 key.
pub struct MacKey(hmac::Key);

impl MacKey {
    /// A key from `secret` (share it between replicas).
    pub fn new(secret: &[u8]) -> Self {
        Self(hmac::Key::new(hmac::HMAC_SHA256, secret))
    }

    /// A key from 32 random bytes (one replica).
    pub fn random() -> Result<Self, aws_lc_rs::error::Unspecified> {
        let mut secret = [0u8; 32];
        aws_lc_rs::rand::fill(&mut secret)?;
        Ok(Self::new(&secret))
    }

    /// The tag of `message`.
    pub fn sign(&self, message: &[u8]) -> hmac::Tag {
        hmac::sign(&self.0, message)
    }

    /// Whether `tag` is the tag of `message`, compared in constant time.
    pub fn verify(&self, message: &[u8], tag: &[u8]) -> bool {
        hmac::verify(&self.0, message, tag).is_ok()
    }
}
