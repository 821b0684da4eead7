//! The key rules every JWK meets, JWKS entry or DPoP `jwk` alike; the fixtures here also serve
//! the JWKS tests (`token::jwks`), which check what an issuer makes of the same keys.

use serde_json::json;

use super::*;

/// `x` of a P-256 public point generated once for these tests.
pub const EC_X: &str = "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU";
/// `y` of the same point.
pub const EC_Y: &str = "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0";

/// Base64url without padding, as JWK members are written.
pub fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// An odd modulus of `bytes` bytes with the top bit set; the value need not be a real key.
pub fn rsa_n(bytes: usize) -> String {
    let mut n = vec![0xc3u8; bytes];
    n[bytes - 1] = 0x01;
    b64(&n)
}

/// A fresh P-384 public point (x, y).
pub fn p384_point() -> (String, String) {
    use aws_lc_rs::signature::{ECDSA_P384_SHA384_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
    let pair = EcdsaKeyPair::generate(&ECDSA_P384_SHA384_FIXED_SIGNING).unwrap();
    let point = pair.public_key().as_ref();
    (b64(&point[1..49]), b64(&point[49..97]))
}

/// A fresh Ed25519 public key.
fn ed25519_x() -> String {
    use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair};
    b64(Ed25519KeyPair::generate().unwrap().public_key().as_ref())
}

fn rsa(n: &str, e: &str) -> Value {
    json!({"kty": "RSA", "n": n, "e": e})
}

fn ec(crv: &str, x: &str, y: &str) -> Value {
    json!({"kty": "EC", "crv": crv, "x": x, "y": y})
}

fn okp(crv: &str, x: &str) -> Value {
    json!({"kty": "OKP", "crv": crv, "x": x})
}

const ES256: &[Algorithm] = &[Algorithm::ES256];
const ES384: &[Algorithm] = &[Algorithm::ES384];
const EDDSA: &[Algorithm] = &[Algorithm::EdDSA];

/// What `public_key` makes of `jwk`: the algorithms it may verify, not a signing key, or why not.
#[track_caller]
fn check(jwk: Value, expected: Result<Option<&[Algorithm]>, KeyRejection>) {
    let actual = public_key(&jwk).map(|key| key.map(|key| key.algorithms));
    let expected = expected.map(|algorithms| algorithms.map(<[Algorithm]>::to_vec));
    assert_eq!(actual, expected, "{jwk}");
}

#[test]
fn rsa_keys_meet_the_floor_counted_in_real_bits() {
    use KeyRejection::*;
    let mut n_2047 = vec![0xc3u8; 256];
    n_2047[0] = 0x7f;
    n_2047[255] = 0x01;
    let mut padded_2048 = vec![0u8; 1];
    padded_2048.extend(URL_SAFE_NO_PAD.decode(rsa_n(256)).unwrap());
    let mut even = URL_SAFE_NO_PAD.decode(rsa_n(256)).unwrap();
    even[255] = 0x02;
    let mut n_8193 = vec![0xc3u8; 1025];
    n_8193[0] = 0x01;
    let usable = Ok(Some(RSA_FAMILY));
    for (jwk, expected) in [
        (rsa(&rsa_n(256), "AQAB"), usable),
        (rsa(&rsa_n(512), "AQAB"), usable),
        (rsa(&rsa_n(1024), "AQAB"), usable),
        (rsa(&rsa_n(128), "AQAB"), Err(RsaModulusTooShort)),
        (rsa(&rsa_n(255), "AQAB"), Err(RsaModulusTooShort)),
        // 256 bytes whose top bit is clear: 2047 bits.
        (rsa(&b64(&n_2047), "AQAB"), Err(RsaModulusTooShort)),
        (rsa("AA", "AQAB"), Err(RsaModulusTooShort)),
        (rsa(&b64(&n_8193), "AQAB"), Err(RsaModulusTooLong)),
        (rsa(&b64(&even), "AQAB"), Err(RsaModulusEven)),
        // RFC 7518 §2: a leading zero octet is not a minimal encoding, however long the rest.
        (rsa(&b64(&padded_2048), "AQAB"), Err(Malformed)),
        (rsa(&b64(&[0u8; 300]), "AQAB"), Err(Malformed)),
        (rsa(&rsa_n(256), "AAEAAQ"), Err(Malformed)),
        (rsa(&rsa_n(256), "Aw"), usable),
        (rsa(&rsa_n(256), &b64(&[0x7f, 0, 0, 0, 0, 0, 0, 1])), usable),
        (rsa(&rsa_n(256), "AQ"), Err(RsaExponent)),
        (rsa(&rsa_n(256), "Ag"), Err(RsaExponent)),
        (rsa(&rsa_n(256), "AQAA"), Err(RsaExponent)),
        (rsa(&rsa_n(256), ""), Err(RsaExponent)),
        (rsa(&rsa_n(256), "AA"), Err(RsaExponent)),
        (rsa(&rsa_n(256), &b64(&[1; 9])), Err(RsaExponent)),
        (rsa(&rsa_n(256), "AQAB="), Err(Malformed)),
        (rsa(&format!("{}=", rsa_n(256)), "AQAB"), Err(Malformed)),
        (rsa(&rsa_n(256).replace('w', "+"), "AQAB"), Err(Malformed)),
        (json!({"kty": "RSA", "e": "AQAB"}), Err(Malformed)),
        (json!({"kty": "RSA", "n": rsa_n(256)}), Err(Malformed)),
        (json!({"kty": "RSA", "n": 5, "e": "AQAB"}), Err(Malformed)),
    ] {
        check(jwk, expected);
    }
}

#[test]
fn ec_and_okp_keys_are_p256_p384_or_ed25519_of_exact_size_and_on_the_curve() {
    use KeyRejection::*;
    let (x384, y384) = p384_point();
    let x32 = URL_SAFE_NO_PAD.decode(EC_X).unwrap();
    let mut padded = vec![0u8];
    padded.extend(&x32);
    let mut off_curve = URL_SAFE_NO_PAD.decode(EC_Y).unwrap();
    off_curve[31] ^= 1;
    let ed = ed25519_x();
    for (jwk, expected) in [
        (ec("P-256", EC_X, EC_Y), Ok(Some(ES256))),
        (ec("P-384", &x384, &y384), Ok(Some(ES384))),
        (
            ec("P-521", &b64(&[1; 66]), &b64(&[1; 66])),
            Err(CurveUnsupported),
        ),
        (ec("secp256k1", EC_X, EC_Y), Err(CurveUnsupported)),
        (ec("p-256", EC_X, EC_Y), Err(CurveUnsupported)),
        (ec("brainpoolP256r1", EC_X, EC_Y), Err(CurveUnsupported)),
        (
            json!({"kty": "EC", "x": EC_X, "y": EC_Y}),
            Err(CurveUnsupported),
        ),
        (ec("P-256", &b64(&x32[1..]), EC_Y), Err(KeyLength)),
        // A coordinate is a fixed-size octet string (RFC 7518 §6.2.1.2), not an integer.
        (ec("P-256", &b64(&padded), EC_Y), Err(KeyLength)),
        (ec("P-256", EC_X, &x384), Err(KeyLength)),
        (ec("P-384", EC_X, EC_Y), Err(KeyLength)),
        (ec("P-384", &x384, EC_Y), Err(KeyLength)),
        (ec("P-256", EC_X, &b64(&off_curve)), Err(PointInvalid)),
        (
            ec("P-256", &b64(&[0; 32]), &b64(&[0; 32])),
            Err(PointInvalid),
        ),
        (
            json!({"kty": "EC", "crv": "P-256", "x": EC_X}),
            Err(Malformed),
        ),
        (ec("P-256", &format!("{EC_X}="), EC_Y), Err(Malformed)),
        (okp("Ed25519", &ed), Ok(Some(EDDSA))),
        (okp("Ed448", &b64(&[1; 57])), Err(CurveUnsupported)),
        (okp("X25519", &ed), Err(CurveUnsupported)),
        (json!({"kty": "OKP", "x": ed}), Err(CurveUnsupported)),
        (okp("Ed25519", &b64(&[1; 31])), Err(KeyLength)),
        (okp("Ed25519", &b64(&[1; 33])), Err(KeyLength)),
        (okp("Ed25519", &b64(&[1; 57])), Err(KeyLength)),
        (json!({"kty": "OKP", "crv": "Ed25519"}), Err(Malformed)),
    ] {
        check(jwk, expected);
    }
}

#[test]
fn private_and_symmetric_material_is_refused_before_anything_else() {
    let with = |mut jwk: Value, name: &str| {
        jwk[name] = json!("AAAA");
        jwk
    };
    let ed = ed25519_x();
    for name in ["d", "p", "q", "dp", "dq", "qi", "oth", "k"] {
        check(
            with(ec("P-256", EC_X, EC_Y), name),
            Err(KeyRejection::PrivateMembers),
        );
    }
    for jwk in [
        with(rsa(&rsa_n(256), "AQAB"), "p"),
        with(okp("Ed25519", &ed), "d"),
        // Even a key that is weak, for encryption, or of an unknown type: the leak is the alarm.
        with(rsa(&rsa_n(128), "AQAB"), "d"),
        with(json!({"kty": "EC", "crv": "P-256", "use": "enc"}), "d"),
        json!({"kty": "oct", "k": "c2VjcmV0"}),
        json!({"kty": "oct"}),
        json!({"kty": "foo", "k": "c2VjcmV0"}),
    ] {
        check(jwk, Err(KeyRejection::PrivateMembers));
    }
    for jwk in [json!("key"), json!([ec("P-256", EC_X, EC_Y)]), json!(null)] {
        check(jwk, Err(KeyRejection::NotAnObject));
    }
}

#[test]
fn keys_not_for_verifying_signatures_are_none() {
    let mut cases = Vec::new();
    for (member, value) in [
        ("use", json!("enc")),
        ("key_ops", json!(["encrypt"])),
        ("key_ops", json!("verify")),
    ] {
        let mut jwk = ec("P-256", EC_X, EC_Y);
        jwk[member] = value;
        cases.push(jwk);
    }
    // Intended use is read before strength: an encryption key on any curve is not ours.
    cases.push(json!({"kty": "EC", "crv": "P-521", "x": EC_X, "use": "enc"}));
    cases.push(json!({"kty": "foo", "x": EC_X}));
    cases.push(json!({"x": EC_X}));
    for jwk in cases {
        check(jwk, Ok(None));
    }
    let mut signing = ec("P-256", EC_X, EC_Y);
    signing["use"] = json!("sig");
    signing["key_ops"] = json!(["sign", "verify"]);
    check(signing, Ok(Some(ES256)));
}

#[test]
fn a_keys_own_alg_narrows_what_it_verifies() {
    let labelled = |mut jwk: Value, alg: Value| {
        jwk["alg"] = alg;
        jwk
    };
    let p256 = || ec("P-256", EC_X, EC_Y);
    let rsa = || rsa(&rsa_n(256), "AQAB");
    let ed = ed25519_x();
    check(
        labelled(rsa(), json!("PS256")),
        Ok(Some(&[Algorithm::PS256])),
    );
    check(labelled(p256(), json!("ES256")), Ok(Some(ES256)));
    // RFC 9864's fully specified name is the same algorithm.
    check(
        labelled(okp("Ed25519", &ed), json!("Ed25519")),
        Ok(Some(EDDSA)),
    );
    for label in [json!("ES384"), json!("XYZ"), json!("HS256"), json!(256)] {
        check(labelled(p256(), label), Ok(Some(&[])));
    }
}

#[test]
fn rfc7638_and_rfc8037_example_thumbprints() {
    // RFC 7638 §3.1.
    let rsa = json!({
        "kty": "RSA",
        "n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw",
        "e": "AQAB",
        "alg": "RS256",
        "kid": "2011-04-29"
    });
    // RFC 8037 §A.3.
    let okp =
        json!({"kty": "OKP", "crv": "Ed25519", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"});
    for (jwk, expected) in [
        (rsa, Some("NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs")),
        (okp, Some("kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k")),
        (json!({"kty": "oct", "k": "c2VjcmV0"}), None),
        (json!({"kty": "EC", "crv": "P-256", "x": "AA"}), None),
    ] {
        assert_eq!(thumbprint(&jwk).as_deref(), expected, "{jwk}");
    }
}
