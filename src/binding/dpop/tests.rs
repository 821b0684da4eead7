//! Proof verification tests after SECURITY.md §G: every proof is built here from a freshly
//! generated key and signed for real, so each refusal is caused by the one edit the case makes
//! and never by an accidental signature failure.

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED_SIGNING, ECDSA_P384_SHA384_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair,
    KeyPair, RSA_PSS_SHA256, RsaKeyPair, RsaPublicKeyComponents,
};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::Method;
use jsonwebtoken::EncodingKey;
use serde_json::json;

use super::*;
use crate::jose::sha256;
use crate::token::BearerToken;

const NOW: i64 = 1_800_000_000;
const HTU: &str = "https://gw.test:8443/Patient/123";
const TOKEN: &str = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ1LTEifQ.c2ln";
const NONCE: &str = "n-0123456789";

// === test keys ===

enum Signer {
    Ec(Vec<u8>),
    Ed(Vec<u8>),
    Rsa(RsaKeyPair),
}

struct Key {
    signer: Signer,
    jwk: Value,
}

impl Key {
    fn es256() -> Self {
        let _ = jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER.install_default();
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        let pair =
            EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref()).unwrap();
        // SEC 1 §2.3.3 uncompressed point: 0x04 || x || y.
        let point = pair.public_key().as_ref();
        let jwk =
            json!({"kty": "EC", "crv": "P-256", "x": b64(&point[1..33]), "y": b64(&point[33..65])});
        Self {
            signer: Signer::Ec(pkcs8.as_ref().to_vec()),
            jwk,
        }
    }

    fn ed25519() -> Self {
        let _ = jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER.install_default();
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).unwrap();
        let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap();
        let jwk = json!({"kty": "OKP", "crv": "Ed25519", "x": b64(pair.public_key().as_ref())});
        Self {
            signer: Signer::Ed(pkcs8.as_ref().to_vec()),
            jwk,
        }
    }

    fn ps256() -> Self {
        let _ = jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER.install_default();
        let pair = RsaKeyPair::generate(KeySize::Rsa2048).unwrap();
        let public = RsaPublicKeyComponents::<Vec<u8>>::from(pair.public_key());
        let jwk = json!({"kty": "RSA", "n": b64(&public.n), "e": b64(&public.e)});
        Self {
            signer: Signer::Rsa(pair),
            jwk,
        }
    }

    /// A public P-384 key, to show under an ES256 header.
    fn p384_jwk() -> Value {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P384_SHA384_FIXED_SIGNING, &rng).unwrap();
        let pair =
            EcdsaKeyPair::from_pkcs8(&ECDSA_P384_SHA384_FIXED_SIGNING, pkcs8.as_ref()).unwrap();
        let point = pair.public_key().as_ref();
        json!({"kty": "EC", "crv": "P-384", "x": b64(&point[1..49]), "y": b64(&point[49..97])})
    }

    fn alg(&self) -> &'static str {
        match self.signer {
            Signer::Ec(_) => "ES256",
            Signer::Ed(_) => "EdDSA",
            Signer::Rsa(_) => "PS256",
        }
    }

    fn sign(&self, input: &str) -> String {
        match &self.signer {
            Signer::Ec(der) => jsonwebtoken::crypto::sign(
                input.as_bytes(),
                &EncodingKey::from_ec_der(der),
                Algorithm::ES256,
            )
            .unwrap(),
            Signer::Ed(der) => jsonwebtoken::crypto::sign(
                input.as_bytes(),
                &EncodingKey::from_ed_der(der),
                Algorithm::EdDSA,
            )
            .unwrap(),
            Signer::Rsa(pair) => {
                let mut signature = vec![0; pair.public_modulus_len()];
                pair.sign(
                    &RSA_PSS_SHA256,
                    &SystemRandom::new(),
                    input.as_bytes(),
                    &mut signature,
                )
                .unwrap();
                b64(&signature)
            }
        }
    }

    /// The G fixture header: `{"typ":"dpop+jwt","alg":<alg>,"jwk":<public key>}`.
    fn header(&self) -> Value {
        json!({"typ": "dpop+jwt", "alg": self.alg(), "jwk": self.jwk})
    }

    /// Signs the exact JSON texts given, so duplicate members survive into the proof.
    fn sign_raw(&self, header: &str, claims: &str) -> String {
        let input = format!("{}.{}", b64(header.as_bytes()), b64(claims.as_bytes()));
        let signature = self.sign(&input);
        format!("{input}.{signature}")
    }

    fn proof(&self, header: &Value, claims: &Value) -> String {
        self.sign_raw(&header.to_string(), &claims.to_string())
    }

    /// The good proof with `edit` applied to its header and claims.
    fn edited(&self, edit: impl FnOnce(&mut Value, &mut Value)) -> String {
        let (mut header, mut claims) = (self.header(), good_claims());
        edit(&mut header, &mut claims);
        self.proof(&header, &claims)
    }
}

/// The digest the gateway takes from the request's access token.
fn digest(token: &str) -> TokenDigest {
    *BearerToken::new(token).digest()
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// G-01's `P("GET", HTU, now, uuid, b64url(sha256(DT)))`.
fn good_claims() -> Value {
    json!({
        "jti": uuid::Uuid::new_v4().to_string(),
        "htm": "GET",
        "htu": HTU,
        "iat": NOW,
        "ath": b64(&sha256(TOKEN.as_bytes())),
        "nonce": NONCE,
    })
}

#[track_caller]
fn check(proof: &str, nonce: Option<&str>, expected: Result<(), DpopFault>) {
    let actual = verify_proof(
        proof,
        &Method::GET,
        HTU,
        &digest(TOKEN),
        nonce,
        NOW,
        &ProofSettings::default(),
    );
    assert_eq!(actual.map(drop), expected, "proof {proof}");
}

fn remove(value: &mut Value, name: &str) {
    value.as_object_mut().unwrap().remove(name);
}

type Edit = fn(&mut Value, &mut Value);

// === verify_proof ===

#[test]
fn g01_valid_proofs_yield_the_key_thumbprint() {
    for key in [Key::es256(), Key::ed25519(), Key::ps256()] {
        let claims = good_claims();
        let proof = key.proof(&key.header(), &claims);
        let verified = verify_proof(
            &proof,
            &Method::GET,
            HTU,
            &digest(TOKEN),
            Some(NONCE),
            NOW,
            &ProofSettings::default(),
        )
        .unwrap();
        assert_eq!(verified.jkt, jwk::thumbprint(&key.jwk).unwrap());
        assert_eq!(verified.jti, claims["jti"].as_str().unwrap());
        assert_eq!(
            (verified.iat, verified.nonce.as_deref()),
            (NOW, Some(NONCE))
        );
    }
}

#[test]
fn g05_missing_claims_and_header_members() {
    let key = Key::es256();
    let cases: [Edit; 8] = [
        |_, c| remove(c, "jti"),
        |_, c| remove(c, "htm"),
        |_, c| remove(c, "htu"),
        |_, c| remove(c, "iat"),
        |_, c| remove(c, "ath"),
        |h, _| remove(h, "jwk"),
        |h, _| remove(h, "typ"),
        |h, _| remove(h, "alg"),
    ];
    for edit in cases {
        check(&key.edited(edit), None, Err(DpopFault::MissingClaim));
    }
}

#[test]
fn g07_algorithms() {
    let key = Key::es256();
    let cases: [(Edit, Result<(), DpopFault>); 7] = [
        (
            |h, _| h["alg"] = json!("none"),
            Err(DpopFault::AlgNotAllowed),
        ),
        (
            |h, _| h["alg"] = json!("HS256"),
            Err(DpopFault::AlgNotAllowed),
        ),
        (
            |h, _| h["alg"] = json!("RS256"),
            Err(DpopFault::AlgNotAllowed),
        ),
        (
            |h, _| h["alg"] = json!("es256"),
            Err(DpopFault::AlgNotAllowed),
        ),
        (
            |h, _| h["jwk"] = Key::p384_jwk(),
            Err(DpopFault::AlgNotAllowed),
        ),
        (
            |h, _| h["jwk"]["alg"] = json!("ES384"),
            Err(DpopFault::AlgNotAllowed),
        ),
        (|h, _| h["alg"] = json!(256), Err(DpopFault::Malformed)),
    ];
    for (edit, expected) in cases {
        check(&key.edited(edit), None, expected);
    }
    // HMAC stays refused even when misconfigured as allowed.
    let settings = ProofSettings {
        algorithms: vec![Algorithm::HS256, Algorithm::ES256],
        ..ProofSettings::default()
    };
    let hs = key.edited(|h, _| h["alg"] = json!("HS256"));
    let refused = verify_proof(&hs, &Method::GET, HTU, &digest(TOKEN), None, NOW, &settings);
    assert_eq!(refused, Err(DpopFault::AlgNotAllowed));
}

#[test]
fn key_family_must_fit_the_algorithm() {
    let (ec, ed) = (Key::es256(), Key::ed25519());
    // RFC 9864's fully specified name for Ed25519 is EdDSA here.
    check(&ed.edited(|h, _| h["alg"] = json!("Ed25519")), None, Ok(()));
    check(
        &ed.edited(|h, _| h["alg"] = json!("ES256")),
        None,
        Err(DpopFault::AlgNotAllowed),
    );
    check(
        &ec.edited(|h, _| h["alg"] = json!("EdDSA")),
        None,
        Err(DpopFault::AlgNotAllowed),
    );
    // A 1024-bit modulus is too small for FAPI 2.0 whatever the signature.
    let weak: Edit = |h, _| {
        h["alg"] = json!("PS256");
        h["jwk"] = json!({"kty": "RSA", "n": b64(&[0xc1; 128]), "e": "AQAB"});
    };
    check(
        &ec.edited(weak),
        None,
        Err(DpopFault::Key(KeyRejection::RsaModulusTooShort)),
    );
    // RFC 7518 §6.3.1.1: a leading zero octet is not a minimal encoding.
    let padded: Edit = |h, _| {
        h["alg"] = json!("PS256");
        let mut n = vec![0];
        n.extend([0xc1; 256]);
        h["jwk"] = json!({"kty": "RSA", "n": b64(&n), "e": "AQAB"});
    };
    check(
        &ec.edited(padded),
        None,
        Err(DpopFault::Key(KeyRejection::Malformed)),
    );
    let short_x: Edit = |h, _| h["jwk"]["x"] = json!(b64(&[7; 31]));
    check(
        &ec.edited(short_x),
        None,
        Err(DpopFault::Key(KeyRejection::KeyLength)),
    );
}

#[test]
fn g09_private_or_symmetric_jwk_and_typ() {
    let key = Key::es256();
    let cases: [(Edit, Result<(), DpopFault>); 8] = [
        (
            |h, _| h["jwk"]["d"] = json!("AAAA"),
            Err(DpopFault::Key(KeyRejection::PrivateMembers)),
        ),
        (
            |h, _| h["jwk"] = json!({"kty": "oct", "k": "c2VjcmV0"}),
            Err(DpopFault::Key(KeyRejection::PrivateMembers)),
        ),
        (
            |h, _| h["jwk"] = json!({"kty": "oct"}),
            Err(DpopFault::Key(KeyRejection::PrivateMembers)),
        ),
        (
            |h, _| h["jwk"] = json!("key"),
            Err(DpopFault::Key(KeyRejection::NotAnObject)),
        ),
        (|h, _| h["typ"] = json!("JWT"), Err(DpopFault::TypMismatch)),
        (
            |h, _| h["typ"] = json!("application/dpop+jwt"),
            Err(DpopFault::TypMismatch),
        ),
        (|h, _| h["typ"] = json!("DPoP+JWT"), Ok(())),
        (|h, _| h["crit"] = json!(["exp"]), Err(DpopFault::Malformed)),
    ];
    for (edit, expected) in cases {
        check(&key.edited(edit), None, expected);
    }
}

#[test]
fn signatures() {
    let (signer, shown) = (Key::es256(), Key::es256());
    // Signed by another key than the one in the header.
    check(
        &signer.proof(&shown.header(), &good_claims()),
        None,
        Err(DpopFault::BadSignature),
    );
    // Claims swapped after signing.
    let proof = signer.proof(&signer.header(), &good_claims());
    let other = b64(good_claims().to_string().as_bytes());
    let parts: Vec<&str> = proof.split('.').collect();
    let swapped = format!("{}.{other}.{}", parts[0], parts[2]);
    check(&swapped, None, Err(DpopFault::BadSignature));
    let truncated = format!("{}.{}.{}", parts[0], parts[1], &parts[2][..40]);
    check(&truncated, None, Err(DpopFault::BadSignature));
}

#[test]
fn g11_htu_comparisons() {
    let key = Key::es256();
    for (htu, expected) in [
        (
            "https://gw.test:8443/Patient/456",
            Err(DpopFault::UriMismatch),
        ),
        (
            "https://evil.test:8443/Patient/123",
            Err(DpopFault::UriMismatch),
        ),
        ("https://evil.test/Patient/123", Err(DpopFault::UriMismatch)),
        (
            "http://gw.test:8443/Patient/123",
            Err(DpopFault::UriMismatch),
        ),
        (
            "https://gw.test:9443/Patient/123",
            Err(DpopFault::UriMismatch),
        ),
        ("https://gw.test/Patient/123", Err(DpopFault::UriMismatch)),
        (
            "https://gw.test:8443@evil.test/Patient/123",
            Err(DpopFault::UriMismatch),
        ),
        (
            "https://gw.test:8443/Patient/123/",
            Err(DpopFault::UriMismatch),
        ),
        ("/Patient/123", Err(DpopFault::UriMismatch)),
        ("https://gw.test:8443/Patient/123?x=1#f", Ok(())),
        ("HTTPS://GW.TEST:8443/Patient/123", Ok(())),
    ] {
        check(&key.edited(|_, c| c["htu"] = json!(htu)), None, expected);
    }
    // An explicit default port matches a public URL without one, both ways round.
    for (htu, expected_htu) in [
        (
            "https://gw.test:443/Patient/123",
            "https://gw.test/Patient/123",
        ),
        (
            "https://gw.test/Patient/123",
            "https://gw.test:443/Patient/123",
        ),
    ] {
        let proof = key.edited(|_, c| c["htu"] = json!(htu));
        let settings = ProofSettings::default();
        let verified = verify_proof(
            &proof,
            &Method::GET,
            expected_htu,
            &digest(TOKEN),
            None,
            NOW,
            &settings,
        );
        assert!(verified.is_ok(), "{htu} against {expected_htu}");
    }
}

#[test]
fn method_time_token_and_nonce() {
    let key = Key::es256();
    let cases: [(Edit, Option<&str>, Result<(), DpopFault>); 15] = [
        (
            |_, c| c["htm"] = json!("POST"),
            None,
            Err(DpopFault::MethodMismatch),
        ),
        (
            |_, c| c["htm"] = json!("get"),
            None,
            Err(DpopFault::MethodMismatch),
        ),
        (
            |_, c| c["iat"] = json!(NOW - 61),
            None,
            Err(DpopFault::Stale),
        ),
        (|_, c| c["iat"] = json!(NOW - 60), None, Ok(())),
        (|_, c| c["iat"] = json!(NOW + 10), None, Ok(())),
        (
            |_, c| c["iat"] = json!(NOW + 11),
            None,
            Err(DpopFault::Stale),
        ),
        // Refused as no date at all, never saturated into the window's edge.
        (
            |_, c| c["iat"] = json!(1e300),
            None,
            Err(DpopFault::Malformed),
        ),
        (|_, c| c["iat"] = json!(NOW as f64 + 0.9), None, Ok(())),
        (
            |_, c| c["iat"] = json!("1800000000"),
            None,
            Err(DpopFault::Malformed),
        ),
        (
            |_, c| c["ath"] = json!(b64(&[0; 32])),
            None,
            Err(DpopFault::AthMismatch),
        ),
        (|_, c| c["jti"] = json!(""), None, Err(DpopFault::Malformed)),
        (
            |_, c| remove(c, "nonce"),
            Some(NONCE),
            Err(DpopFault::NonceRequired),
        ),
        (
            |_, c| c["nonce"] = json!("old"),
            Some(NONCE),
            Err(DpopFault::NonceRequired),
        ),
        (|_, _| {}, Some(NONCE), Ok(())),
        (|_, c| remove(c, "nonce"), None, Ok(())),
    ];
    for (edit, nonce, expected) in cases {
        check(&key.edited(edit), nonce, expected);
    }
    // `ath` binds the proof to one token.
    let proof = key.edited(|_, _| {});
    let settings = ProofSettings::default();
    let other = verify_proof(
        &proof,
        &Method::GET,
        HTU,
        &digest("another"),
        None,
        NOW,
        &settings,
    );
    assert_eq!(other, Err(DpopFault::AthMismatch));
}

#[test]
fn structure_and_encoding() {
    let key = Key::es256();
    let proof = key.edited(|_, _| {});
    let parts: Vec<&str> = proof.split('.').collect();
    // An ES256 signature is 64 octets: 86 characters, the last holding 4 unused bits.
    let last = parts[2].chars().last().unwrap();
    let sloppy = if last == 'B' { 'C' } else { 'B' };
    let non_canonical = format!("{}{sloppy}", &parts[2][..parts[2].len() - 1]);
    let claims = good_claims().to_string();
    let header = key.header().to_string();
    let dup_header = header.replacen('{', r#"{"typ":"JWT","#, 1);
    let dup_claims = claims.replacen('{', r#"{"htu":"https://evil.test/","#, 1);
    for bad in [
        format!("{proof}.x"),
        format!("{}.{}", parts[0], parts[1]),
        format!("{}..{}", parts[0], parts[2]),
        format!("{}=.{}.{}", parts[0], parts[1], parts[2]),
        format!("{}.{}.{}==", parts[0], parts[1], parts[2]),
        format!("{}.{}.{non_canonical}", parts[0], parts[1]),
        // The standard alphabet is not base64url.
        format!("{}.{}.+{}", parts[0], parts[1], &parts[2][1..]),
        format!(" {proof}"),
        key.sign_raw(&dup_header, &claims),
        key.sign_raw(&header, &dup_claims),
        key.sign_raw(&header, "[1,2]"),
        key.sign_raw("not json", &claims),
    ] {
        check(&bad, None, Err(DpopFault::Malformed));
    }
}

#[test]
fn reasons_are_documented_codes() {
    assert_eq!(DpopFault::BadSignature.reason(), "dpop_signature_invalid");
    assert_eq!(DpopFault::NonceRequired.reason(), "dpop_nonce_required");
}

// === thumbprints ===

#[test]
fn g17_extra_members_and_order_do_not_change_the_thumbprint() {
    let key = Key::es256();
    let mut decorated = json!({"use": "sig", "key_ops": ["verify"], "kid": "k1", "alg": "ES256"});
    for (name, value) in key.jwk.as_object().unwrap().iter().rev() {
        decorated[name] = value.clone();
    }
    assert_eq!(jwk::thumbprint(&decorated), jwk::thumbprint(&key.jwk));
    // The decorated key also works inside a proof and yields the same jkt.
    let mut header = key.header();
    header["jwk"] = decorated;
    let proof = key.proof(&header, &good_claims());
    let settings = ProofSettings::default();
    let verified = verify_proof(
        &proof,
        &Method::GET,
        HTU,
        &digest(TOKEN),
        None,
        NOW,
        &settings,
    )
    .unwrap();
    assert_eq!(Some(verified.jkt), jwk::thumbprint(&key.jwk));
}

// === normalise_htu ===

#[test]
fn htu_normalisation() {
    for (input, expected) in [
        ("HTTPS://GW.Test:443/a?b#c", Some("https://gw.test/a")),
        ("http://gw.test:80", Some("http://gw.test/")),
        ("http://gw.test:443/", Some("http://gw.test:443/")),
        ("https://gw.test:8443/a", Some("https://gw.test:8443/a")),
        ("https://gw.test/a%2fb", Some("https://gw.test/a%2Fb")),
        ("https://gw.test/a%2", None),
        ("https://gw.test:/a", Some("https://gw.test/a")),
        ("https://[::1]:8443/a", Some("https://[::1]:8443/a")),
        // Found by the `dpop` fuzz target: `http` reads a port that is not a number as no
        // port, which made these the default port's URI. A port is digits (RFC 3986 §3.2.3).
        ("https://gw.t[:]", None),
        ("https://gw.test:evil/a", None),
        ("https://gw.test:+443/a", None),
        ("https://gw.test:99999/a", None),
        ("https://user@gw.test/a", None),
        ("ftp://gw.test/a", None),
        ("/relative", None),
        ("", None),
    ] {
        assert_eq!(normalise_htu(input).as_deref(), expected, "{input}");
        // The normal form is its own normal form, so comparing two never depends on order.
        if let Some(normal) = expected {
            assert_eq!(normalise_htu(normal).as_deref(), Some(normal), "{input}");
        }
    }
}
