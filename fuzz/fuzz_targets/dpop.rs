//! DPoP proof verification (`binding::dpop::verify_proof`, RFC 9449 §4.3) and `htu`
//! normalisation, for a fixed access token, public URL and time.
//!
//! Input: a first line `METHOD HTU [NONCE]` (the request the proof must be for, and the nonce
//! the server demands, if any), then either `raw` and a proof as sent in the `DPoP` header, or
//! `json` and a JOSE header and claims object, one per line, that the target signs with its
//! own Ed25519 key (adding that key as `jwk` when the header has none), so mutations get past
//! the signature into the claim checks.
#![no_main]

use std::sync::LazyLock;

use aws_lc_rs::signature::Ed25519KeyPair;
use http::Method;
use libfuzzer_sys::fuzz_target;
use phigate::binding::dpop::{self, ProofSettings};
use phigate::token::BearerToken;
use phigate_fuzz::jws;

/// 2027-01-15T08:00:00Z: the seeds' proofs are made at this time.
const NOW: i64 = 1_800_000_000;

/// The access token the proofs accompany; its `ath` is `lA6t…` in the seeds.
static TOKEN: LazyLock<BearerToken> = LazyLock::new(|| BearerToken::new("access-token-1"));
static KEY: LazyLock<Ed25519KeyPair> = LazyLock::new(jws::key);

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut lines = text.splitn(3, '\n');
    let (Some(request), Some(mode), Some(rest)) = (lines.next(), lines.next(), lines.next()) else {
        return;
    };
    let mut request = request.split(' ');
    let (Some(method), Some(htu)) = (request.next(), request.next()) else {
        return;
    };
    let nonce = request.next();
    let Ok(method) = Method::from_bytes(method.as_bytes()) else {
        return;
    };
    let proof = match mode {
        "raw" => rest.to_owned(),
        "json" => {
            let (header, claims) = rest.split_once('\n').unwrap_or((rest, ""));
            jws::signed(&KEY, header, claims)
        }
        _ => return,
    };
    let settings = ProofSettings::default();
    let verified = dpop::verify_proof(&proof, &method, htu, TOKEN.digest(), nonce, NOW, &settings);
    if let Ok(verified) = verified {
        // A proof that passes carries what the caller relies on: a key thumbprint (RFC 7638,
        // 43 base64url characters), a jti for the replay store, an iat inside the window.
        assert_eq!(verified.jkt.len(), 43, "{verified:?}");
        assert!(!verified.jti.is_empty() && verified.jti.len() <= 256);
        assert!((NOW - 60..=NOW + 10).contains(&verified.iat));
        if let Some(expected) = nonce {
            assert_eq!(verified.nonce.as_deref(), Some(expected));
        }
    }
    // The normal form is a fixed point: comparing two normal forms cannot depend on the order.
    if let Some(normal) = dpop::normalise_htu(htu) {
        assert_eq!(
            dpop::normalise_htu(&normal).as_ref(),
            Some(&normal),
            "{htu:?}"
        );
    }
});
