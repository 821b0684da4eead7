use std::time::Duration;

use serde_json::json;

use super::{GrantError, GrantSettings, TokenRequest};

const JKT: &str = "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I";

fn settings() -> GrantSettings {
    GrantSettings {
        audience: "https://fhir.phigate.demo".to_owned(),
        lifetime: Duration::from_secs(300),
    }
}

#[test]
fn a_client_credentials_request_becomes_the_claims_and_response_it_names() {
    let cases = [
        (
            "grant_type=client_credentials&client_id=bulk-exporter&scope=system%2F*.rs",
            json!({"scope": "system/*.rs", "aud": "https://fhir.phigate.demo"}),
            json!({"token_type": "Bearer", "scope": "system/*.rs"}),
        ),
        (
            "grant_type=client_credentials&client_id=patient-app&scope=launch%2Fpatient+patient%2FPatient.r\
             &patient=123&dpop_jkt=0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I",
            json!({"scope": "launch/patient patient/Patient.r", "patient": "123", "cnf": {"jkt": JKT}}),
            json!({"token_type": "DPoP", "patient": "123"}),
        ),
        (
            "client_id=acme-lab&grant_type=client_credentials&scope=system/Patient.r\
             &cnf_x5t_s256=0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I&client_secret=ignored",
            json!({"cnf": {"x5t#S256": JKT}}),
            json!({"token_type": "Bearer"}),
        ),
        (
            "grant_type=client_credentials&client_id=c&scope=s&resource=https%3A%2F%2Fother.example%2Ffhir",
            json!({"aud": "https://other.example/fhir", "sub": "c", "client_id": "c"}),
            json!({"expires_in": 300}),
        ),
    ];
    for (form, claims_part, response_part) in cases {
        let request = TokenRequest::parse(form).unwrap_or_else(|err| panic!("{form}: {err:?}"));
        let claims = request.claims("https://issuer.phigate.demo", &settings(), 1_000);
        assert_eq!(claims["iss"], "https://issuer.phigate.demo");
        assert_eq!(claims["iat"], 1_000);
        assert_eq!(claims["exp"], 1_300);
        assert!(claims["jti"].as_str().is_some_and(|jti| jti.len() == 36));
        for (name, value) in claims_part.as_object().unwrap() {
            assert_eq!(&claims[name], value, "{form}: claim {name}");
        }
        let response = request.response("the.token.here", &settings());
        assert_eq!(response["access_token"], "the.token.here");
        assert_eq!(response["expires_in"], 300);
        for (name, value) in response_part.as_object().unwrap() {
            assert_eq!(&response[name], value, "{form}: member {name}");
        }
    }
}

#[test]
fn unbound_tokens_carry_no_cnf_and_no_patient_unless_asked() {
    let request =
        TokenRequest::parse("grant_type=client_credentials&client_id=c&scope=system/*.rs").unwrap();
    let claims = request.claims("https://issuer.phigate.demo", &settings(), 0);
    assert!(claims.get("cnf").is_none() && claims.get("patient").is_none());
    assert!(request.response("t", &settings()).get("patient").is_none());
}

#[test]
fn every_malformed_request_gets_its_rfc_6749_error_code() {
    let base = "grant_type=client_credentials&client_id=c&scope=s";
    let cases: [(String, &str); 18] = [
        ("client_id=c&scope=s".to_owned(), "invalid_request"),
        (
            "grant_type=password&client_id=c&scope=s".to_owned(),
            "unsupported_grant_type",
        ),
        (
            "grant_type=authorization_code&client_id=c&scope=s".to_owned(),
            "unsupported_grant_type",
        ),
        (
            format!("{base}&grant_type=client_credentials"),
            "invalid_request",
        ),
        (
            "grant_type=client_credentials&scope=s".to_owned(),
            "invalid_request",
        ),
        (
            "grant_type=client_credentials&client_id=&scope=s".to_owned(),
            "invalid_request",
        ),
        (
            "grant_type=client_credentials&client_id=a%20b&scope=s".to_owned(),
            "invalid_request",
        ),
        (
            format!(
                "grant_type=client_credentials&client_id={}&scope=s",
                "c".repeat(129)
            ),
            "invalid_request",
        ),
        (
            "grant_type=client_credentials&client_id=c".to_owned(),
            "invalid_scope",
        ),
        (
            "grant_type=client_credentials&client_id=c&scope=a%20%20b".to_owned(),
            "invalid_scope",
        ),
        (
            "grant_type=client_credentials&client_id=c&scope=a%22b".to_owned(),
            "invalid_scope",
        ),
        (format!("{base}&patient=1%2F2"), "invalid_request"),
        (
            format!("{base}&patient={}", "1".repeat(65)),
            "invalid_request",
        ),
        (
            format!("{base}&resource=http%3A%2F%2Fplain.example"),
            "invalid_target",
        ),
        (
            format!("{base}&resource=https%3A%2F%2Ffhir.example%23frag"),
            "invalid_target",
        ),
        (format!("{base}&dpop_jkt=short"), "invalid_request"),
        (
            format!("{base}&dpop_jkt={JKT}&cnf_x5t_s256={JKT}"),
            "invalid_request",
        ),
        // The last character of a SHA-256 thumbprint holds two unused bits, which must be zero.
        (
            format!("{base}&cnf_x5t_s256={}J", &JKT[..42]),
            "invalid_request",
        ),
    ];
    for (form, code) in cases {
        let err: GrantError = TokenRequest::parse(&form).expect_err(&form);
        assert_eq!(err.code, code, "{form}");
        let body = err.body();
        assert_eq!(body["error"], code);
        assert!(
            body["error_description"]
                .as_str()
                .is_some_and(|d| !d.is_empty())
        );
    }
}
