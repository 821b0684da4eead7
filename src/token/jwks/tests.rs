use serde_json::json;

use super::*;
use crate::config::AlgorithmSet;

fn issuer(algorithms: &[&str]) -> IssuerConfig {
    IssuerConfig {
        issuer: Arc::from("https://as-a.test"),
        jwks_uri: "https://as-a.test/jwks".parse().unwrap(),
        jwks_ca_file: None,
        audiences: vec!["https://fhir.test".into()],
        algorithms: AlgorithmSet::parse(algorithms).unwrap(),
        patient_claim: "patient".into(),
        introspection: None,
    }
}

// A P-256 public point (x, y) and a 2048-bit RSA modulus, generated once for these tests.
const EC_X: &str = "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU";
const EC_Y: &str = "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0";

fn rsa_n(bytes: usize) -> String {
    // Odd modulus with the top bit set; the value need not be a real key to be parsed.
    let mut n = vec![0xc3u8; bytes];
    n[bytes - 1] = 0x01;
    URL_SAFE_NO_PAD.encode(n)
}

fn ec(kid: &str) -> Value {
    json!({"kty": "EC", "crv": "P-256", "x": EC_X, "y": EC_Y, "kid": kid, "use": "sig"})
}

type Usable<'a> = Vec<(&'a str, Vec<Algorithm>)>;

/// Parses one JWKS and checks the usable keys and the rejected count.
#[track_caller]
fn check(keys: Value, algorithms: &[&str], expected: Result<(Usable<'_>, u64), &str>) {
    let body = serde_json::to_vec(&json!({ "keys": keys })).unwrap();
    let actual = parse_key_set(&body, &issuer(algorithms)).map(|(set, rejected)| {
        let keys: Vec<(String, Vec<Algorithm>)> = set
            .keys
            .iter()
            .map(|k| (k.kid.clone().unwrap_or_default(), k.algorithms.clone()))
            .collect();
        (keys, rejected)
    });
    match (actual, expected) {
        (Ok((keys, rejected)), Ok((want, want_rejected))) => {
            let want: Vec<(String, Vec<Algorithm>)> =
                want.into_iter().map(|(k, a)| (k.to_owned(), a)).collect();
            assert_eq!((keys, rejected), (want, want_rejected));
        }
        (Err(err), Err(want)) => assert!(err.to_string().contains(want), "{err}"),
        (actual, expected) => panic!(
            "got {:?}, want {expected:?}",
            actual.map(|_| ()).map_err(|e| e.to_string())
        ),
    }
}

#[test]
fn algorithms_are_allow_list_intersect_family_intersect_jwk_alg() {
    check(
        json!([ec("e1")]),
        &["ES256", "RS256"],
        Ok((vec![("e1", vec![Algorithm::ES256])], 0)),
    );
    let rsa = || json!({"kty": "RSA", "n": rsa_n(256), "e": "AQAB", "kid": "r1"});
    check(
        json!([rsa()]),
        &["ES256", "RS256", "PS256"],
        Ok((vec![("r1", vec![Algorithm::RS256, Algorithm::PS256])], 0)),
    );
    let mut pinned = rsa();
    pinned["alg"] = json!("PS256");
    check(
        json!([pinned]),
        &["RS256", "PS256"],
        Ok((vec![("r1", vec![Algorithm::PS256])], 0)),
    );
    // An ES256-only issuer has no use for an RSA key: ignored, and then nothing is usable.
    check(json!([rsa()]), &["ES256"], Err("no usable key"));
    let p384 = json!({"kty": "EC", "crv": "P-384", "x": EC_X, "y": EC_Y, "kid": "p"});
    check(
        json!([p384, ec("e1")]),
        &["ES256"],
        Ok((vec![("e1", vec![Algorithm::ES256])], 0)),
    );
}

#[test]
fn dangerous_and_foreign_entries() {
    let mut private = ec("priv");
    private["d"] = json!("AAAA");
    let enc = json!({"kty": "RSA", "use": "enc", "n": rsa_n(256), "e": "AQAB", "kid": "enc"});
    let oct = json!({"kty": "oct", "k": "c2VjcmV0", "kid": "sym"});
    let short_rsa = json!({"kty": "RSA", "n": rsa_n(128), "e": "AQAB", "kid": "short"});
    let no_verify = json!({"kty": "EC", "crv": "P-256", "x": EC_X, "y": EC_Y, "kid": "ops", "key_ops": ["encrypt"]});
    let missing_y = json!({"kty": "EC", "crv": "P-256", "x": EC_X, "kid": "half"});
    check(
        json!([
            private,
            enc,
            oct,
            short_rsa,
            no_verify,
            missing_y,
            ec("good"),
            "not an object"
        ]),
        &["ES256", "RS256"],
        Ok((vec![("good", vec![Algorithm::ES256])], 4)),
    );
}

#[test]
fn documents_that_must_never_replace_good_keys() {
    for body in [
        &b"<html>"[..],
        b"{\"keys\":{}}",
        b"{}",
        b"{\"keys\":[]}",
        b"{\"keys\":[{\"kty\":\"oct\",\"k\":\"AA\"}]}",
    ] {
        assert!(
            parse_key_set(body, &issuer(&["ES256"])).is_err(),
            "{}",
            String::from_utf8_lossy(body)
        );
    }
}

#[test]
fn selection_by_kid_and_algorithm() {
    let body = serde_json::to_vec(&json!({"keys": [ec("e1"), ec("e2")]})).unwrap();
    let (set, _) = parse_key_set(&body, &issuer(&["ES256", "RS256"])).unwrap();
    assert!(matches!(
        set.select(Some("e1"), Algorithm::ES256),
        KeySelection::Found(_)
    ));
    assert!(matches!(
        set.select(Some("e1"), Algorithm::RS256),
        KeySelection::AlgNotAllowed
    ));
    assert!(matches!(
        set.select(Some("zz"), Algorithm::ES256),
        KeySelection::Unknown
    ));
    // Two candidates without a kid: ambiguous, refused rather than tried one by one.
    assert!(matches!(
        set.select(None, Algorithm::ES256),
        KeySelection::Unknown
    ));
}

#[test]
fn content_types() {
    let value = |s: &'static str| http::HeaderValue::from_static(s);
    assert!(is_json(Some(&value("application/json"))));
    assert!(is_json(Some(&value(
        "application/jwk-set+json; charset=utf-8"
    ))));
    assert!(!is_json(Some(&value("text/html"))));
    assert!(!is_json(None));
}

#[test]
fn cache_lifetime_follows_cache_control_within_bounds() {
    let ten_minutes = Duration::from_secs(600);
    let check = |header: Option<&'static str>, default: Duration, expected: u64| {
        let value = header.map(http::HeaderValue::from_static);
        assert_eq!(
            cache_lifetime(value.as_ref(), default),
            Duration::from_secs(expected),
            "{header:?}"
        );
    };
    check(None, ten_minutes, 600);
    check(Some("max-age=300"), ten_minutes, 300);
    check(Some("public, max-age=120"), ten_minutes, 120);
    check(Some("max-age=0"), ten_minutes, 60);
    check(Some("max-age=31536000"), ten_minutes, 3600);
    check(Some("no-store"), ten_minutes, 60);
    check(Some("no-cache, max-age=900"), ten_minutes, 60);
    check(Some("private"), ten_minutes, 600);
    check(Some("max-age=0"), Duration::from_secs(1), 1);
}
