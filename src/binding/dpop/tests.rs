use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
use http::Method;
use jsonwebtoken::EncodingKey;
use serde_json::json;

use super::*;

const NOW: i64 = 1_800_000_000;
const HTU: &str = "https://gw.test:8443/Patient/123";
const TOKEN: &str = "the.access.token";

struct Key {
    pkcs8: Vec<u8>,
    jwk: Value,
}

fn key() -> Key {
    let _ = jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER.install_default();
    let pkcs8 =
        EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new())
            .unwrap();
    let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref()).unwrap();
    let point = pair.public_key().as_ref();
    let jwk = json!({"kty": "EC", "crv": "P-256", "x": URL_SAFE_NO_PAD.encode(&point[1..33]), "y": URL_SAFE_NO_PAD.encode(&point[33..65])});
    Key {
        pkcs8: pkcs8.as_ref().to_vec(),
        jwk,
    }
}

fn claims() -> Value {
    json!({"jti": "p-1", "htm": "GET", "htu": HTU, "iat": NOW, "ath": URL_SAFE_NO_PAD.encode(sha256(TOKEN.as_bytes()))})
}

fn header(key: &Key) -> Value {
    json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": key.jwk})
}

fn sign(signer: &Key, header: &Value, claims: &Value) -> String {
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let signature = jsonwebtoken::crypto::sign(
        input.as_bytes(),
        &EncodingKey::from_ec_der(&signer.pkcs8),
        Algorithm::ES256,
    )
    .unwrap();
    format!("{input}.{signature}")
}

#[track_caller]
fn check(proof: &str, expected: Result<(), DpopFault>) {
    let actual = verify_proof(
        proof,
        &Method::GET,
        HTU,
        TOKEN,
        NOW,
        &ProofSettings::default(),
    )
    .map(drop);
    assert_eq!(actual, expected);
}

/// Applies `edit` to the good claims and header, signs with the key in the header.
#[track_caller]
fn check_edit(edit: impl FnOnce(&mut Value, &mut Value), expected: Result<(), DpopFault>) {
    let key = key();
    let (mut header, mut claims) = (header(&key), claims());
    edit(&mut header, &mut claims);
    check(&sign(&key, &header, &claims), expected);
}

#[test]
fn a_valid_proof_yields_its_thumbprint() {
    let key = key();
    let proof = sign(&key, &header(&key), &claims());
    let verified = verify_proof(
        &proof,
        &Method::GET,
        HTU,
        TOKEN,
        NOW,
        &ProofSettings::default(),
    )
    .unwrap();
    assert_eq!(verified.jkt, jwk_thumbprint(&key.jwk).unwrap());
    assert_eq!(verified.jti, "p-1");
}

#[test]
fn missing_claims_and_headers() {
    for claim in ["jti", "htm", "htu", "iat", "ath"] {
        check_edit(
            |_, c| drop(c.as_object_mut().unwrap().remove(claim)),
            Err(DpopFault::MissingClaim),
        );
    }
    check_edit(
        |h, _| drop(h.as_object_mut().unwrap().remove("jwk")),
        Err(DpopFault::MissingClaim),
    );
    check_edit(
        |h, _| drop(h.as_object_mut().unwrap().remove("typ")),
        Err(DpopFault::MissingClaim),
    );
    check_edit(
        |h, _| drop(h.as_object_mut().unwrap().remove("alg")),
        Err(DpopFault::MissingClaim),
    );
}

#[test]
fn algorithms_keys_and_types() {
    check_edit(
        |h, _| h["alg"] = json!("none"),
        Err(DpopFault::AlgNotAllowed),
    );
    check_edit(
        |h, _| h["alg"] = json!("HS256"),
        Err(DpopFault::AlgNotAllowed),
    );
    check_edit(
        |h, _| h["alg"] = json!("RS256"),
        Err(DpopFault::AlgNotAllowed),
    );
    check_edit(
        |h, _| h["jwk"]["crv"] = json!("P-384"),
        Err(DpopFault::AlgNotAllowed),
    );
    check_edit(
        |h, _| h["jwk"]["d"] = json!("AAAA"),
        Err(DpopFault::PrivateKey),
    );
    check_edit(
        |h, _| h["jwk"] = json!({"kty": "oct", "k": "c2VjcmV0"}),
        Err(DpopFault::PrivateKey),
    );
    check_edit(|h, _| h["typ"] = json!("JWT"), Err(DpopFault::TypMismatch));
    check_edit(|h, _| h["typ"] = json!("DPoP+JWT"), Ok(()));
    // Signed by another key than the one in the header.
    let (signer, shown) = (key(), key());
    check(
        &sign(&signer, &header(&shown), &claims()),
        Err(DpopFault::BadSignature),
    );
}

#[test]
fn method_uri_time_and_token_binding() {
    check_edit(
        |_, c| c["htm"] = json!("POST"),
        Err(DpopFault::MethodMismatch),
    );
    for htu in [
        "https://gw.test:8443/Patient/456",
        "https://evil.test:8443/Patient/123",
        "http://gw.test:8443/Patient/123",
        "https://gw.test:9443/Patient/123",
        "https://other-rs.test/Patient/123",
    ] {
        check_edit(|_, c| c["htu"] = json!(htu), Err(DpopFault::UriMismatch));
    }
    for htu in [
        "https://gw.test:8443/Patient/123?x=1#f",
        "HTTPS://GW.TEST:8443/Patient/123",
    ] {
        check_edit(|_, c| c["htu"] = json!(htu), Ok(()));
    }
    check_edit(|_, c| c["iat"] = json!(NOW - 61), Err(DpopFault::Stale));
    check_edit(|_, c| c["iat"] = json!(NOW + 11), Err(DpopFault::Stale));
    check_edit(|_, c| c["iat"] = json!(NOW + 9), Ok(()));
    check_edit(|_, c| c["ath"] = json!("AAAA"), Err(DpopFault::AthMismatch));
}

#[test]
fn structural_faults() {
    let key = key();
    let proof = sign(&key, &header(&key), &claims());
    check(&format!("{proof}.x"), Err(DpopFault::Malformed));
    check(&proof.replacen('.', "=.", 1), Err(DpopFault::Malformed));
    let duplicate = format!(
        "{{\"typ\":\"dpop+jwt\",\"typ\":\"JWT\",\"alg\":\"ES256\",\"jwk\":{}}}",
        key.jwk
    );
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(duplicate),
        URL_SAFE_NO_PAD.encode(claims().to_string())
    );
    check(&format!("{input}.AAAA"), Err(DpopFault::Malformed));
}

#[test]
fn thumbprints_follow_rfc_7638() {
    // RFC 7638 §3.1's example key and thumbprint.
    let rfc = json!({
        "kty": "RSA",
        "n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw",
        "e": "AQAB",
        "alg": "RS256",
        "kid": "2011-04-29"
    });
    assert_eq!(
        jwk_thumbprint(&rfc).as_deref(),
        Some("NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs")
    );
    let k = key();
    let mut decorated = json!({"use": "sig", "key_ops": ["verify"], "kid": "k1", "alg": "ES256"});
    for (name, value) in k.jwk.as_object().unwrap().iter().rev() {
        decorated[name] = value.clone();
    }
    assert_eq!(jwk_thumbprint(&decorated), jwk_thumbprint(&k.jwk));
}

#[test]
fn htu_normalisation() {
    assert_eq!(
        normalise_htu("HTTPS://GW.Test:443/a?b#c").as_deref(),
        Some("https://gw.test/a")
    );
    assert_eq!(
        normalise_htu("http://gw.test:80").as_deref(),
        Some("http://gw.test/")
    );
    assert_eq!(
        normalise_htu("https://gw.test:8443/a").as_deref(),
        Some("https://gw.test:8443/a")
    );
    assert_eq!(normalise_htu("/relative"), None);
}
