use std::time::Duration;

use serde_json::json;

use super::*;
use crate::config::{AlgorithmSet, ClockSkew};

const NOW: i64 = 1_800_000_000;

fn issuer() -> IssuerConfig {
    IssuerConfig {
        issuer: Arc::from("https://as-a.test"),
        jwks_uri: Some("https://as-a.test/jwks".parse().unwrap()),
        jwks_ca_file: None,
        audiences: vec!["https://fhir.test".into()],
        algorithms: AlgorithmSet::parse(&["ES256"]).unwrap(),
        patient_claim: "patient".into(),
        introspection: None,
    }
}

fn bounds() -> TokenBounds {
    TokenBounds {
        clock_skew: ClockSkew::new(Duration::from_secs(30)).unwrap(),
        max_lifetime: Duration::from_secs(900),
        ..TokenBounds::default()
    }
}

fn good() -> Value {
    json!({
        "iss": "https://as-a.test", "aud": "https://fhir.test", "sub": "u-1", "client_id": "app-1",
        "scope": "patient/Patient.r", "iat": NOW, "exp": NOW + 300, "jti": "j-1",
    })
}

/// Applies `edit` to the good claims and validates them.
#[track_caller]
fn check(
    edit: impl FnOnce(&mut Map<String, Value>),
    typ: Option<&str>,
    expected: Result<(), TokenFault>,
) {
    let Value::Object(mut claims) = good() else {
        unreachable!()
    };
    edit(&mut claims);
    let actual = validate(&claims, typ, &issuer(), &bounds(), NOW).map(drop);
    assert_eq!(actual, expected);
}

fn set(name: &'static str, value: Value) -> impl FnOnce(&mut Map<String, Value>) {
    move |claims| {
        claims.insert(name.into(), value);
    }
}

fn remove(name: &'static str) -> impl FnOnce(&mut Map<String, Value>) {
    move |claims| {
        claims.remove(name);
    }
}

#[test]
fn good_claims_give_a_verified_token() {
    let Value::Object(claims) = good() else {
        unreachable!()
    };
    let token = validate(&claims, Some("at+jwt"), &issuer(), &bounds(), NOW).unwrap();
    assert_eq!(token.subject, Subject::parse("u-1"));
    assert_eq!(token.client_id, ClientId::parse("app-1"));
    assert_eq!(token.jti, Jti::parse("j-1"));
    assert_eq!(token.scopes.to_header_value(), "patient/Patient.r");
}

#[test]
fn time_claims() {
    check(set("exp", json!(NOW - 31)), None, Err(TokenFault::Expired));
    check(set("exp", json!(NOW - 29)), None, Ok(()));
    check(remove("exp"), None, Err(TokenFault::ExpMissing));
    check(
        set("exp", json!("soon")),
        None,
        Err(TokenFault::MalformedClaims),
    );
    check(
        set("exp", json!(1e308)),
        None,
        Err(TokenFault::MalformedClaims),
    );
    check(
        set("nbf", json!(NOW + 3600)),
        None,
        Err(TokenFault::NotYetValid),
    );
    check(set("nbf", json!(NOW + 20)), None, Ok(()));
    check(
        set("iat", json!(NOW + 90)),
        None,
        Err(TokenFault::IssuedInFuture),
    );
    check(set("iat", json!(NOW + 20)), None, Ok(()));
    check(
        set("iat", json!(1e308)),
        None,
        Err(TokenFault::MalformedClaims),
    );
    check(set("iat", json!(0)), None, Err(TokenFault::LifetimeTooLong));
    check(
        set("exp", json!(4_102_444_800_i64)),
        None,
        Err(TokenFault::LifetimeTooLong),
    );
    check(
        |c| {
            c.remove("iat");
            c.insert("exp".into(), json!(NOW + 3600));
        },
        None,
        Err(TokenFault::LifetimeTooLong),
    );
    check(set("exp", json!((NOW + 300) as f64 + 0.5)), None, Ok(()));
    check(
        set("exp", json!(i64::MAX)),
        None,
        Err(TokenFault::LifetimeTooLong),
    );
    check(
        set("iat", json!(i64::MIN)),
        None,
        Err(TokenFault::LifetimeTooLong),
    );
}

#[test]
fn issuer_games() {
    for iss in [
        "https://as-a.test/",
        "HTTPS://AS-A.TEST",
        "https://as-a.test.evil",
        "https://as-a.test#x",
        "https://as-a.test\u{0}",
    ] {
        check(
            set("iss", json!(iss)),
            None,
            Err(TokenFault::IssuerMismatch),
        );
    }
    check(
        set("iss", json!(["https://as-a.test"])),
        None,
        Err(TokenFault::IssuerMismatch),
    );
    check(remove("iss"), None, Err(TokenFault::IssuerMismatch));
}

#[test]
fn audience_games() {
    check(remove("aud"), None, Err(TokenFault::AudienceMismatch));
    for aud in [
        json!([]),
        json!([""]),
        json!("https://fhir.test/"),
        json!("https://fhir.test.evil"),
        json!(["https://other"]),
        json!(123),
        json!(["https://fhir.test", 5]),
    ] {
        check(set("aud", aud), None, Err(TokenFault::AudienceMismatch));
    }
    check(
        set("aud", json!(["https://other", "https://fhir.test"])),
        None,
        Ok(()),
    );
}

#[test]
fn token_types() {
    for typ in ["at+jwt", "AT+JWT", "application/at+jwt", "JWT", "jwt"] {
        check(|_| {}, Some(typ), Ok(()));
    }
    for typ in ["dpop+jwt", "logout+jwt", "JWE", ""] {
        check(|_| {}, Some(typ), Err(TokenFault::TypMismatch));
    }
}

#[test]
fn scope_claims() {
    check(
        set("scp", json!(["patient/Patient.r"])),
        None,
        Err(TokenFault::ScopeAmbiguous),
    );
    check(
        |c| {
            c.remove("scope");
            c.insert("scp".into(), json!(["patient/Patient.r"]));
        },
        None,
        Ok(()),
    );
    check(
        set("scope", json!("patient/Patient.r\tuser/x.r")),
        None,
        Err(TokenFault::MalformedClaims),
    );
}

#[test]
fn identity_claims_are_short_printable_ascii() {
    let long = "a".repeat(256);
    let longest = "a".repeat(255);
    // Every claim phigate copies into a header or a log line: sub, client_id, azp, jti.
    for name in ["sub", "client_id", "jti"] {
        for (value, expected) in [
            (json!("u-1"), Ok(())),
            (json!("https://as-a.test/users/a@b.test|x y"), Ok(())),
            (json!(longest.as_str()), Ok(())),
            (
                json!(long.as_str()),
                Err(TokenFault::IdentityClaimMalformed),
            ),
            (json!(""), Err(TokenFault::IdentityClaimMalformed)),
            (json!(" u-1"), Err(TokenFault::IdentityClaimMalformed)),
            (json!("u-1 "), Err(TokenFault::IdentityClaimMalformed)),
            (
                json!("u-1\r\nX-Injected: 1"),
                Err(TokenFault::IdentityClaimMalformed),
            ),
            (
                json!("u-1\n{\"forged\":1}"),
                Err(TokenFault::IdentityClaimMalformed),
            ),
            (json!("u\t1"), Err(TokenFault::IdentityClaimMalformed)),
            (json!("u\u{0}1"), Err(TokenFault::IdentityClaimMalformed)),
            (json!("u\u{7f}1"), Err(TokenFault::IdentityClaimMalformed)),
            (json!("é"), Err(TokenFault::IdentityClaimMalformed)),
            (json!(42), Err(TokenFault::IdentityClaimMalformed)),
            (json!(null), Err(TokenFault::IdentityClaimMalformed)),
            (json!(["u-1"]), Err(TokenFault::IdentityClaimMalformed)),
            (
                json!({"id": "u-1"}),
                Err(TokenFault::IdentityClaimMalformed),
            ),
        ] {
            check(set(name, value), None, expected);
        }
    }
    // `azp` is read when `client_id` is absent, under the same rules.
    let azp = |value: Value| {
        move |claims: &mut Map<String, Value>| {
            claims.remove("client_id");
            claims.insert("azp".into(), value);
        }
    };
    check(azp(json!("kc-app")), None, Ok(()));
    check(
        azp(json!("a".repeat(256))),
        None,
        Err(TokenFault::IdentityClaimMalformed),
    );
    check(
        azp(json!("kc\r\napp")),
        None,
        Err(TokenFault::IdentityClaimMalformed),
    );
    check(azp(json!(7)), None, Err(TokenFault::IdentityClaimMalformed));
}

#[test]
fn the_launch_patient_is_one_fhir_id() {
    let longest = "a".repeat(64);
    let long = "a".repeat(65);
    for (value, expected) in [
        (json!("123"), Ok(Some("123"))),
        (json!("pat-9.A"), Ok(Some("pat-9.A"))),
        (json!(longest.as_str()), Ok(Some(longest.as_str()))),
        (json!("123,456"), Err(TokenFault::PatientClaimMalformed)),
        (json!("123 "), Err(TokenFault::PatientClaimMalformed)),
        (json!(" 123"), Err(TokenFault::PatientClaimMalformed)),
        (json!("123/../456"), Err(TokenFault::PatientClaimMalformed)),
        (json!("Patient/123"), Err(TokenFault::PatientClaimMalformed)),
        (json!("123?x=1"), Err(TokenFault::PatientClaimMalformed)),
        (json!("123#x"), Err(TokenFault::PatientClaimMalformed)),
        (json!("123%2C456"), Err(TokenFault::PatientClaimMalformed)),
        (json!("123_4"), Err(TokenFault::PatientClaimMalformed)),
        (json!("123\n"), Err(TokenFault::PatientClaimMalformed)),
        (json!("१२३"), Err(TokenFault::PatientClaimMalformed)),
        (json!("."), Err(TokenFault::PatientClaimMalformed)),
        (json!(".."), Err(TokenFault::PatientClaimMalformed)),
        (json!(long.as_str()), Err(TokenFault::PatientClaimMalformed)),
        (json!(""), Err(TokenFault::PatientClaimMalformed)),
        (json!(123), Err(TokenFault::PatientClaimMalformed)),
        (json!(null), Err(TokenFault::PatientClaimMalformed)),
        (json!(["123"]), Err(TokenFault::PatientClaimMalformed)),
        (json!({"id": "123"}), Err(TokenFault::PatientClaimMalformed)),
    ] {
        check_patient(value, expected);
    }
}

/// Checks the launch patient `value` through both ways a token is read: a verified JWT and an
/// introspection answer (`resolve_patient` takes the patient from there).
#[track_caller]
fn check_patient(value: Value, expected: Result<Option<&str>, TokenFault>) {
    let Value::Object(mut claims) = good() else {
        unreachable!()
    };
    claims.insert("patient".into(), value);
    let validated = validate(&claims, None, &issuer(), &bounds(), NOW);
    assert_eq!(
        validated.map(|t| t.patient),
        expected.map(|p| p.map(str::to_owned)),
        "{claims:?}"
    );
    claims.insert("active".into(), json!(true));
    let introspected = from_introspection(&claims, &issuer(), &bounds(), NOW);
    assert_eq!(
        introspected.map(|t| t.patient),
        expected.map(|p| p.map(str::to_owned)),
        "introspection {claims:?}"
    );
}

#[test]
fn the_patient_claim_name_is_the_issuers() {
    let mut issuer = issuer();
    issuer.patient_claim = "launch_patient".into();
    let Value::Object(mut claims) = good() else {
        unreachable!()
    };
    // Another claim named `patient` is not read, whatever its shape.
    claims.insert("patient".into(), json!("123,456"));
    claims.insert("launch_patient".into(), json!("123"));
    let token = validate(&claims, None, &issuer, &bounds(), NOW).unwrap();
    assert_eq!(token.patient.as_deref(), Some("123"));
    claims.insert("launch_patient".into(), json!("123,456"));
    assert_eq!(
        validate(&claims, None, &issuer, &bounds(), NOW).map(drop),
        Err(TokenFault::PatientClaimMalformed)
    );
}

#[test]
fn introspection_answers_follow_the_identity_rules() {
    for (name, value) in [
        ("sub", json!("u-1\r\nX: 1")),
        ("client_id", json!("a".repeat(256))),
        ("jti", json!("")),
        ("sub", json!(5)),
    ] {
        let Value::Object(mut claims) = good() else {
            unreachable!()
        };
        claims.insert("active".into(), json!(true));
        claims.insert(name.into(), value);
        assert_eq!(
            from_introspection(&claims, &issuer(), &bounds(), NOW).map(drop),
            Err(TokenFault::IdentityClaimMalformed),
            "{name}"
        );
    }
}

#[test]
fn azp_stands_in_for_a_missing_client_id() {
    let Value::Object(mut claims) = good() else {
        unreachable!()
    };
    claims.remove("client_id");
    claims.insert("azp".into(), json!("kc-app"));
    let token = validate(&claims, None, &issuer(), &bounds(), NOW).unwrap();
    assert_eq!(token.client_id, ClientId::parse("kc-app"));
}

#[test]
fn an_introspected_dpop_token_must_name_its_key() {
    #[track_caller]
    fn check(
        token_type: Option<&str>,
        cnf: Option<Value>,
        expected: Result<Confirmation, TokenFault>,
    ) {
        let Value::Object(mut claims) = good() else {
            unreachable!()
        };
        claims.insert("active".into(), json!(true));
        if let Some(token_type) = token_type {
            claims.insert("token_type".into(), json!(token_type));
        }
        if let Some(cnf) = cnf {
            claims.insert("cnf".into(), cnf);
        }
        let actual = from_introspection(&claims, &issuer(), &bounds(), NOW).map(|t| t.confirmation);
        assert_eq!(actual, expected, "{token_type:?}");
    }
    let jkt = || Some(json!({"jkt": "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"}));
    let bound = Ok(Confirmation::DpopKey(
        "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I".into(),
    ));
    check(Some("DPoP"), jkt(), bound.clone());
    check(Some("dpop"), jkt(), bound.clone());
    check(Some("Bearer"), jkt(), bound.clone());
    check(None, jkt(), bound);
    check(Some("DPoP"), None, Err(TokenFault::TypMismatch));
    check(
        Some("DPoP"),
        Some(json!({"x5t#S256": "abc"})),
        Err(TokenFault::TypMismatch),
    );
    check(Some("Bearer"), None, Ok(Confirmation::None));
    check(None, None, Ok(Confirmation::None));
}
