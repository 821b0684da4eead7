use super::*;

fn b64(text: &str) -> String {
    URL_SAFE_NO_PAD.encode(text)
}

fn token(header: &str, payload: &str) -> String {
    format!("{}.{}.{}", b64(header), b64(payload), b64("sig"))
}

#[track_caller]
fn check(token: &str, expected: Result<(&str, Option<&str>), JwsFault>) {
    let actual = parse(token).map(|jws| (jws.header.alg, jws.header.kid));
    let expected = expected.map(|(alg, kid)| (alg.to_owned(), kid.map(str::to_owned)));
    assert_eq!(actual, expected, "{token}");
}

#[test]
fn accepts_a_well_formed_jws() {
    check(
        &token(r#"{"alg":"ES256","kid":"k1"}"#, r#"{"sub":"a"}"#),
        Ok(("ES256", Some("k1"))),
    );
}

#[test]
fn hands_back_the_signed_parts_as_received() {
    let text = token(
        r#"{"alg":"ES256","typ":"dpop+jwt","jwk":{"kty":"EC"}}"#,
        r#"{"jti":"j"}"#,
    );
    let jws = parse(&text).unwrap();
    let (input, signature) = text.rsplit_once('.').unwrap();
    assert_eq!((jws.signing_input, jws.signature), (input, signature));
    assert_eq!(jws.header.typ.as_deref(), Some("dpop+jwt"));
    assert_eq!(
        jws.header.member("jwk"),
        Some(&serde_json::json!({"kty": "EC"}))
    );
    assert_eq!(jws.claims.get("jti"), Some(&Value::from("j")));
}

#[test]
fn refuses_structural_faults() {
    let good = token(r#"{"alg":"ES256"}"#, "{}");
    let (header, rest) = good.split_once('.').unwrap();
    let (payload, signature) = rest.split_once('.').unwrap();
    let padded = format!("{header}=.{payload}.{signature}");
    let standard_alphabet = format!("{header}.{payload}.{}", signature.replace('-', "+") + "+/");
    for malformed in [
        format!("{header}.{payload}."),
        format!("{header}.{payload}"),
        format!("{good}.x"),
        format!("{good}.x.y"),
        format!(".{payload}.{signature}"),
        format!("{header}..{signature}"),
        padded,
        standard_alphabet,
        format!("{header}.{payload}.{signature} x"),
        format!(" {good}"),
        token("[1]", "{}"),
        token(r#"{"alg":5}"#, "{}"),
        token(r#"{"alg":"ES256","kid":5}"#, "{}"),
        token(r#"{"alg":"ES256","typ":["JWT"]}"#, "{}"),
        token(r#"{"alg":"ES256"}"#, "not json"),
        token(r#"{"alg":"ES256"}"#, "[1,2]"),
    ] {
        check(&malformed, Err(JwsFault::Malformed));
    }
}

#[test]
fn alg_is_required() {
    check(&token(r#"{"kid":"k"}"#, "{}"), Err(JwsFault::AlgMissing));
    check(&token("{}", "{}"), Err(JwsFault::AlgMissing));
}

#[test]
fn refuses_non_canonical_trailing_bits() {
    // "sig" encodes to "c2ln"; "c2lm" differs only in bits that a lax decoder ignores for
    // a two-character tail, so build a 2-byte payload whose last char carries spare bits.
    let canonical = URL_SAFE_NO_PAD.encode([0xffu8, 0xf0]); // "__A"
    assert_eq!(canonical, "__A");
    let header = b64(r#"{"alg":"ES256"}"#);
    let payload = b64("{}");
    check(&format!("{header}.{payload}.__A"), Ok(("ES256", None)));
    check(&format!("{header}.{payload}.__B"), Err(JwsFault::Malformed));
}

#[test]
fn refuses_duplicate_members_at_any_depth() {
    for (header, payload) in [
        (r#"{"alg":"ES256","alg":"none"}"#, "{}"),
        (r#"{"alg":"ES256","kid":"a","kid":"b"}"#, "{}"),
        (r#"{"alg":"ES256","jwk":{"x":"a","x":"b"}}"#, "{}"),
        (r#"{"alg":"ES256"}"#, r#"{"sub":"a","sub":"b"}"#),
        (r#"{"alg":"ES256"}"#, r#"{"cnf":{"jkt":"a","jkt":"b"}}"#),
    ] {
        check(&token(header, payload), Err(JwsFault::DuplicateMember));
    }
}

#[test]
fn refuses_header_features_it_does_not_implement() {
    for header in [
        r#"{"alg":"ES256","crit":["exp"],"exp":1}"#,
        r#"{"alg":"RSA-OAEP-256","enc":"A256GCM"}"#,
        r#"{"alg":"ES256","zip":"DEF"}"#,
        r#"{"alg":"ES256","cty":"JWT"}"#,
    ] {
        check(&token(header, "{}"), Err(JwsFault::UnsupportedHeader));
    }
}

#[test]
fn deep_nesting_is_refused_without_overflow() {
    let deep = format!("{{\"x\":{}{}}}", "[".repeat(10_000), "]".repeat(10_000));
    check(
        &token(r#"{"alg":"ES256"}"#, &deep),
        Err(JwsFault::Malformed),
    );
}
