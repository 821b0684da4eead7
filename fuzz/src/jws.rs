//! Compact JWSs assembled from JSON texts the fuzzer writes (never parsed here, so duplicate
//! members and odd spacing survive), signed with a fixed Ed25519 key so that DPoP proofs get
//! past their signature check and into claim checking.

use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// base64url without padding, as JOSE writes it.
pub fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// The fixed test key (a constant seed: the signatures are deterministic, so runs are too).
pub fn key() -> Ed25519KeyPair {
    Ed25519KeyPair::from_seed_unchecked(&[7; 32]).unwrap_or_else(|_| unreachable!("32-byte seed"))
}

/// The public JWK of [`key`].
pub fn public_jwk(key: &Ed25519KeyPair) -> String {
    format!(
        r#"{{"kty":"OKP","crv":"Ed25519","x":"{}"}}"#,
        b64(key.public_key().as_ref())
    )
}

/// `header.payload.signature`, the signature being `signature` as given.
pub fn unsigned(header: &str, payload: &str, signature: &[u8]) -> String {
    format!(
        "{}.{}.{}",
        b64(header.as_bytes()),
        b64(payload.as_bytes()),
        b64(signature)
    )
}

/// `header.payload` signed with `key`; a header object without a `jwk` member gets the key's.
pub fn signed(key: &Ed25519KeyPair, header: &str, payload: &str) -> String {
    let header = match header.strip_prefix('{') {
        Some(rest) if !header.contains("\"jwk\"") => {
            let comma = if rest.trim_start().starts_with('}') {
                ""
            } else {
                ","
            };
            format!("{{\"jwk\":{}{comma}{rest}", public_jwk(key))
        }
        _ => header.to_owned(),
    };
    let input = format!("{}.{}", b64(header.as_bytes()), b64(payload.as_bytes()));
    let signature = key.sign(input.as_bytes());
    format!("{input}.{}", b64(signature.as_ref()))
}
