//! Server-issued DPoP nonces (RFC 9449 §8): a nonce names a one-minute window and carries an
//! HMAC over it, so any replica holding the same secret can check it without shared state, and
//! a proof made long ago cannot be presented with a fresh nonce. The current and the previous
//! window are accepted, so a nonce handed out just before a window boundary still works.

use std::time::{SystemTime, UNIX_EPOCH};

use crate::mac::MacKey;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// Seconds one nonce window lasts.
const WINDOW_SECONDS: u64 = 60;

/// Issues and checks nonces.
pub struct NonceIssuer {
    key: MacKey,
}

impl NonceIssuer {
    /// An issuer keyed with `secret` (share it between replicas).
    pub fn new(secret: &[u8]) -> Self {
        Self {
            key: MacKey::new(secret),
        }
    }

    /// An issuer with a random secret (one replica).
    pub fn random() -> Result<Self, aws_lc_rs::error::Unspecified> {
        MacKey::random().map(|key| Self { key })
    }

    fn window_now() -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
            / WINDOW_SECONDS
    }

    fn nonce_for(&self, window: u64) -> String {
        let tag = self.key.sign(&window.to_be_bytes());
        format!("{window}.{}", URL_SAFE_NO_PAD.encode(&tag.as_ref()[..18]))
    }

    /// The nonce for the current window.
    pub fn current(&self) -> String {
        self.nonce_for(Self::window_now())
    }

    /// Whether `nonce` belongs to the current or the previous window.
    pub fn is_current(&self, nonce: &str) -> bool {
        self.is_valid_at(nonce, Self::window_now())
    }

    fn is_valid_at(&self, nonce: &str, window: u64) -> bool {
        let Some(claimed) = nonce
            .split_once('.')
            .and_then(|(w, _)| w.parse::<u64>().ok())
        else {
            return false;
        };
        (claimed == window || claimed.checked_add(1) == Some(window))
            && self.nonce_for(claimed) == nonce
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nonces_are_bound_to_their_window_and_secret() {
        let issuer = NonceIssuer::new(b"secret");
        let other = NonceIssuer::new(b"other secret");
        let nonce = issuer.nonce_for(1000);
        assert!(issuer.is_valid_at(&nonce, 1000));
        assert!(issuer.is_valid_at(&nonce, 1001));
        assert!(!issuer.is_valid_at(&nonce, 1002));
        assert!(!issuer.is_valid_at(&nonce, 999));
        assert!(!other.is_valid_at(&nonce, 1000));
        assert!(!issuer.is_valid_at("1000.forged", 1000));
        assert!(!issuer.is_valid_at("garbage", 1000));
        assert!(issuer.is_current(&issuer.current()));
    }
}
