use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::json;

use super::*;
use crate::config::{AlgorithmSet, TokenBounds};
use crate::jose::jwk::tests::{EC_X, EC_Y, b64, p384_point, rsa_n};

fn issuer(algorithms: &[&str]) -> IssuerConfig {
    IssuerConfig {
        issuer: Arc::from("https://as-a.test"),
        jwks_uri: Some("https://as-a.test/jwks".parse().unwrap()),
        jwks_ca_file: None,
        audiences: vec!["https://fhir.test".into()],
        algorithms: AlgorithmSet::parse(algorithms).unwrap(),
        patient_claim: "patient".into(),
        introspection: None,
    }
}

/// A usable ES256 key with `kid`, as a fetched set would hold it.
pub(in crate::token) fn key(kid: &str) -> Arc<VerificationKey> {
    let body = serde_json::to_vec(&json!({ "keys": [ec(kid)] })).unwrap();
    let set = parse_key_set(&body, &issuer(&["ES256"]))
        .and_then(Entries::into_key_set)
        .unwrap();
    Arc::clone(&set.keys[0])
}

fn ec(kid: &str) -> Value {
    json!({"kty": "EC", "crv": "P-256", "x": EC_X, "y": EC_Y, "kid": kid, "use": "sig"})
}

fn rsa(n: &str, e: &str) -> Value {
    json!({"kty": "RSA", "n": n, "e": e, "kid": "r"})
}

/// What `parse_key` should make of one entry.
#[derive(Debug, PartialEq)]
enum Expect {
    Usable,
    Ignored,
    Rejected(KeyRejection),
}

/// Parses one JWKS entry for an issuer allowing every supported algorithm.
#[track_caller]
fn check_key(entry: Value, expected: Expect) {
    let issuer = issuer(&["ES256", "ES384", "RS256", "PS256", "EdDSA"]);
    let actual = match parse_key(&entry, &issuer) {
        KeyVerdict::Usable(_) => Expect::Usable,
        KeyVerdict::Ignored => Expect::Ignored,
        KeyVerdict::Rejected(reason) => Expect::Rejected(reason),
    };
    assert_eq!(actual, expected, "{entry}");
}

#[test]
fn foreign_entries_are_ignored_and_dangerous_ones_rejected() {
    use Expect::{Ignored, Rejected};
    let mut private = ec("priv");
    private["d"] = json!("AAAA");
    let mut private_rsa = rsa(&rsa_n(256), "AQAB");
    private_rsa["p"] = json!("AAAA");
    for (entry, expected) in [
        (private, Rejected(KeyRejection::PrivateMembers)),
        (private_rsa, Rejected(KeyRejection::PrivateMembers)),
        (json!("not an object"), Rejected(KeyRejection::NotAnObject)),
        (json!([ec("e")]), Rejected(KeyRejection::NotAnObject)),
        // A symmetric key is a published secret: an alarm, as private members are.
        (
            json!({"kty": "oct", "k": "c2VjcmV0"}),
            Rejected(KeyRejection::PrivateMembers),
        ),
        (
            json!({"kty": "RSA", "use": "enc", "n": rsa_n(256), "e": "AQAB"}),
            Ignored,
        ),
        (json!({"kty": "foo", "x": EC_X}), Ignored),
        (json!({"x": EC_X}), Ignored),
        (
            json!({"kty": "EC", "crv": "P-256", "x": EC_X, "y": EC_Y, "key_ops": ["encrypt"]}),
            Ignored,
        ),
        (
            json!({"kty": "EC", "crv": "P-256", "x": EC_X, "y": EC_Y, "alg": "XYZ"}),
            Ignored,
        ),
        (
            json!({"kty": "EC", "crv": "P-256", "x": EC_X, "y": EC_Y, "alg": "ES384"}),
            Ignored,
        ),
    ] {
        check_key(entry, expected);
    }
}

/// One defect, one reason: a DPoP proof's `jwk` meets the rules a JWKS entry meets, in `jose::jwk`.
#[test]
fn a_dpop_jwk_and_a_jwks_entry_with_the_same_defect_are_refused_for_the_same_reason() {
    use crate::binding::dpop::{self, DpopFault, ProofSettings};
    use crate::token::BearerToken;
    use KeyRejection::*;
    let p256 = |x: &str, y: &str| json!({"kty": "EC", "crv": "P-256", "x": x, "y": y});
    let mut private = p256(EC_X, EC_Y);
    private["d"] = json!("AAAA");
    let mut off_curve = URL_SAFE_NO_PAD.decode(EC_Y).unwrap();
    off_curve[31] ^= 1;
    let mut padded = vec![0u8];
    padded.extend(URL_SAFE_NO_PAD.decode(rsa_n(256)).unwrap());
    for (jwk, reason) in [
        (private, PrivateMembers),
        (json!({"kty": "oct", "k": "c2VjcmV0"}), PrivateMembers),
        (rsa(&rsa_n(128), "AQAB"), RsaModulusTooShort),
        (rsa(&b64(&padded), "AQAB"), Malformed),
        (rsa(&rsa_n(256), "AQ"), RsaExponent),
        (
            json!({"kty": "EC", "crv": "secp256k1", "x": EC_X, "y": EC_Y}),
            CurveUnsupported,
        ),
        (p256(&b64(&[7; 31]), EC_Y), KeyLength),
        (p256(EC_X, &b64(&off_curve)), PointInvalid),
        (
            json!({"kty": "OKP", "crv": "Ed25519", "x": b64(&[7; 31])}),
            KeyLength,
        ),
        (json!("key"), NotAnObject),
    ] {
        let body = serde_json::to_vec(&json!({ "keys": [jwk] })).unwrap();
        let entries = parse_key_set(&body, &issuer(&["ES256", "PS256", "EdDSA"])).unwrap();
        let from_jwks: Vec<KeyRejection> = entries.rejected.iter().map(|r| r.reason).collect();
        // The key is refused before any signature work, so the proof need not be signed.
        let header = json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": jwk});
        let proof = format!(
            "{}.{}.{}",
            b64(header.to_string().as_bytes()),
            b64(b"{}"),
            b64(b"sig")
        );
        let from_dpop = dpop::verify_proof(
            &proof,
            &http::Method::GET,
            "https://gw.test/",
            BearerToken::new("token").digest(),
            None,
            0,
            &ProofSettings::default(),
        );
        assert_eq!(
            (from_jwks, from_dpop.map(drop)),
            (vec![reason], Err(DpopFault::Key(reason))),
            "{jwk}"
        );
    }
}

type Usable<'a> = Vec<(&'a str, Vec<Algorithm>)>;

/// Parses one JWKS and checks the usable keys and the rejected count.
#[track_caller]
fn check(keys: Value, algorithms: &[&str], expected: Result<(Usable<'_>, usize), &str>) {
    let body = serde_json::to_vec(&json!({ "keys": keys })).unwrap();
    let actual = parse_key_set(&body, &issuer(algorithms)).and_then(|entries| {
        let rejected = entries.rejected.len();
        let set = entries.into_key_set()?;
        let keys: Vec<(String, Vec<Algorithm>)> = set
            .keys
            .iter()
            .map(|k| (k.kid.clone().unwrap_or_default(), k.algorithms.clone()))
            .collect();
        Ok((keys, rejected))
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
    let (x, y) = p384_point();
    let p384 = json!({"kty": "EC", "crv": "P-384", "x": x, "y": y, "kid": "p"});
    check(
        json!([p384, ec("e1")]),
        &["ES256"],
        Ok((vec![("e1", vec![Algorithm::ES256])], 0)),
    );
    // The same key listed twice is one key, not an ambiguous kid.
    let mut labelled = ec("e1");
    labelled["alg"] = json!("ES256");
    check(
        json!([ec("e1"), labelled, ec("e2")]),
        &["ES256"],
        Ok((
            vec![
                ("e1", vec![Algorithm::ES256]),
                ("e2", vec![Algorithm::ES256]),
            ],
            0,
        )),
    );
    // A weak key is counted even where the allow-list would never have used it.
    let weak = json!({"kty": "RSA", "n": rsa_n(128), "e": "AQAB", "kid": "weak"});
    check(
        json!([weak, ec("e1")]),
        &["ES256"],
        Ok((vec![("e1", vec![Algorithm::ES256])], 1)),
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
    let p521 = json!({"kty": "EC", "crv": "P-521", "x": EC_X, "y": EC_Y, "kid": "p521"});
    check(
        json!([
            private,
            enc,
            oct,
            short_rsa,
            no_verify,
            missing_y,
            p521,
            ec("good"),
            "not an object"
        ]),
        &["ES256", "RS256"],
        Ok((vec![("good", vec![Algorithm::ES256])], 6)),
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
        let result = parse_key_set(body, &issuer(&["ES256"])).and_then(Entries::into_key_set);
        assert!(result.is_err(), "{}", String::from_utf8_lossy(body));
    }
    // A set of only weak keys is refused whole, and its rejections are still reported.
    let body = serde_json::to_vec(&json!({"keys": [
        {"kty": "RSA", "n": rsa_n(128), "e": "AQAB", "kid": "weak"},
        {"kty": "EC", "crv": "secp256k1", "x": EC_X, "y": EC_Y, "kid": "k1"},
    ]}))
    .unwrap();
    let entries = parse_key_set(&body, &issuer(&["ES256", "RS256"])).unwrap();
    let reasons: Vec<_> = entries.rejected.iter().map(|r| r.reason).collect();
    assert_eq!(
        reasons,
        [
            KeyRejection::RsaModulusTooShort,
            KeyRejection::CurveUnsupported
        ]
    );
    assert!(entries.into_key_set().is_err());
}

#[test]
fn each_rejected_entry_is_counted_once_across_refreshes() {
    let metrics = Arc::new(Metrics::new());
    let client = crate::tls::https_client(None).unwrap();
    let issuer = issuer(&["ES256", "RS256"]);
    let keys = IssuerKeys::new(
        issuer.clone(),
        KeySource::Configured("https://as-a.test/jwks".parse().unwrap()),
        TokenBounds::default(),
        client,
        Arc::clone(&metrics),
    );
    let counted = |metrics: &Metrics| {
        metrics
            .render(crate::telemetry::Exposition::PrometheusText)
            .lines()
            .find_map(|line| {
                line.strip_prefix("phigate_jwks_keys_rejected_total{issuer=\"https://as-a.test\"} ")
                    .map(str::to_owned)
            })
            .unwrap_or_default()
    };
    assert_eq!(counted(&metrics), "0", "present at zero from the start");
    let weak = |kid: &str| json!({"kty": "RSA", "n": rsa_n(128), "e": "AQAB", "kid": kid});
    let parse = |keys: Value| {
        let body = serde_json::to_vec(&json!({ "keys": keys })).unwrap();
        parse_key_set(&body, &issuer).unwrap().rejected
    };
    keys.note_rejections(&parse(json!([weak("w1"), weak("w2"), ec("good")])));
    assert_eq!(counted(&metrics), "2");
    // The same entries at the next refresh: nothing new.
    keys.note_rejections(&parse(json!([weak("w1"), weak("w2"), ec("good")])));
    assert_eq!(counted(&metrics), "2");
    // Another entry under a kid already seen is another entry.
    let mut changed = weak("w1");
    changed["e"] = json!("AQ");
    keys.note_rejections(&parse(json!([weak("w1"), changed])));
    assert_eq!(counted(&metrics), "3");
}

#[test]
fn selection_by_kid_and_algorithm() {
    let body = serde_json::to_vec(&json!({"keys": [ec("e1"), ec("e2")]})).unwrap();
    let set = parse_key_set(&body, &issuer(&["ES256", "RS256"]))
        .and_then(Entries::into_key_set)
        .unwrap();
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

/// Whether two JWKS entries are the same key to a cached verification.
#[track_caller]
fn check_same_key(first: Value, second: Value, algorithms: &[&str], expected: bool) {
    let set = |entry: &Value| {
        let body = serde_json::to_vec(&json!({ "keys": [entry] })).unwrap();
        parse_key_set(&body, &issuer(algorithms))
            .and_then(Entries::into_key_set)
            .unwrap()
    };
    let (first_set, second_set) = (set(&first), set(&second));
    assert_eq!(
        second_set.holds(&first_set.keys[0]),
        expected,
        "{first} / {second}"
    );
    assert!(first_set.holds(&first_set.keys[0]));
}

#[test]
fn a_key_stays_the_same_key_only_with_its_kid_material_and_algorithms() {
    // RFC 7638 §3.3: member order and members beside the key material change nothing.
    let reordered =
        json!({"y": EC_Y, "x": EC_X, "crv": "P-256", "kty": "EC", "kid": "e1", "x5t": "AAAA"});
    check_same_key(ec("e1"), reordered, &["ES256"], true);
    check_same_key(ec("e1"), ec("e2"), &["ES256"], false);
    let (x, y) = p384_point();
    let other = json!({"kty": "EC", "crv": "P-384", "x": x, "y": y, "kid": "e1"});
    check_same_key(ec("e1"), other, &["ES256", "ES384"], false);
    // The same RSA material relabelled for another algorithm verifies other tokens.
    let rsa = || json!({"kty": "RSA", "n": rsa_n(256), "e": "AQAB", "kid": "r1"});
    let mut relabelled = rsa();
    relabelled["alg"] = json!("PS256");
    check_same_key(rsa(), rsa(), &["RS256", "PS256"], true);
    check_same_key(rsa(), relabelled, &["RS256", "PS256"], false);
}
