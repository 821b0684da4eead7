//! Token verification end to end: algorithms, claims, structural attacks, credential transport.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use http::Method;
use jsonwebtoken::Algorithm;
use phigate::demo::DevIssuer;
use serde_json::json;

use crate::support::client::raw_tls;
use crate::support::{
    BARE_CHALLENGE, Harness, INVALID_TOKEN, ISSUER, Options, assert_denied, assert_no_leak,
};

const SMART_POLICY: &str = include_str!("../../policies/smart-v2.yaml");

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Sends `token` to a scoped route and asserts the uniform 401 with nothing forwarded or leaked.
async fn assert_invalid(harness: &Harness, token: &str) {
    let response = harness.client().get_with_token("/Patient/123", token).await;
    assert_denied(harness, &response, 401, Some(INVALID_TOKEN));
    assert_no_leak(&response, &[token, "u-1", "app-1", &harness.upstream.url()]);
}

#[tokio::test]
async fn valid_token_is_forwarded_for_every_supported_algorithm() {
    let harness = Harness::start().await;
    let keys = [
        (Algorithm::ES256, "dev-es256-1"),
        (Algorithm::ES384, "es384"),
        (Algorithm::RS256, "rs256"),
        (Algorithm::PS256, "ps256"),
        (Algorithm::EdDSA, "ed25519"),
    ];
    // Published together, so one unknown-kid refetch picks them all up.
    for (alg, kid) in &keys[1..] {
        harness.issuer.add_key(*alg, kid).unwrap();
    }
    for (alg, kid) in keys {
        harness.issuer.set_signing_key(kid).unwrap();
        let response = harness
            .client()
            .get_with_token("/Patient/123", &harness.token("patient/Patient.r"))
            .await;
        assert_eq!(response.status, 200, "{alg:?}: {}", response.text());
        assert_eq!(response.json()["id"], "123");
    }
    assert_eq!(harness.upstream.received().len(), 5);
}

#[tokio::test]
async fn expired_token_is_401_invalid_token() {
    let harness = Harness::start().await;
    let mut claims = harness.claims("patient/Patient.r");
    let now = claims["iat"].as_i64().unwrap();
    claims["iat"] = json!(now - 600);
    claims["exp"] = json!(now - 31);
    assert_invalid(&harness, &harness.mint(&claims)).await;
}

#[tokio::test]
async fn claim_faults_are_401_invalid_token() {
    let harness = Harness::start().await;
    let base = harness.claims("patient/Patient.r");
    let now = base["iat"].as_i64().unwrap();
    let edits: Vec<(&str, serde_json::Value)> = vec![
        ("nbf", json!(now + 3600)),
        ("iat", json!(now + 90)),
        ("exp", json!(now + 3600)),
        ("iss", json!("https://as-a.test/")),
        ("iss", json!([ISSUER])),
        ("aud", json!("https://fhir.test.evil")),
        ("aud", json!([])),
        ("aud", json!(123)),
        ("scp", json!(["patient/Patient.r"])),
        ("sub", json!(42)),
        ("exp", json!(1e308)),
    ];
    for (name, value) in edits {
        let mut claims = base.clone();
        claims[name] = value;
        assert_invalid(&harness, &harness.mint(&claims)).await;
    }
    let mut claims = base.clone();
    claims.as_object_mut().unwrap().remove("exp");
    assert_invalid(&harness, &harness.mint(&claims)).await;
    let mut claims = base;
    claims.as_object_mut().unwrap().remove("aud");
    assert_invalid(&harness, &harness.mint(&claims)).await;
}

/// Whether `/metrics` counted a denial with `reason`.
async fn counted_denial(harness: &Harness, reason: &str) -> bool {
    let (_, metrics) = harness.admin_get("/metrics").await;
    metrics.contains(&format!("decision=\"deny\",reason=\"{reason}\""))
}

#[tokio::test]
async fn a_launch_patient_that_is_not_one_fhir_id_is_401_invalid_token() {
    let harness = Harness::with(Options {
        policy: SMART_POLICY.to_owned(),
        ..Options::default()
    })
    .await;
    let client = harness.client();
    let base = harness.claims("launch/patient patient/Patient.r patient/Observation.rs");
    let patients = [
        json!("123,456"),
        json!("123 "),
        json!("123/../456"),
        json!("Patient/123"),
        json!("123%2C456"),
        json!("123\n"),
        json!(".."),
        json!("a".repeat(65)),
        json!(""),
        json!(123),
        json!(["123", "456"]),
        json!(null),
    ];
    for patient in patients {
        let mut claims = base.clone();
        claims["patient"] = patient.clone();
        let token = harness.mint(&claims);
        // Never a wider search: the read, and the searches a patient list would widen.
        for path in [
            "/Patient/123",
            "/Observation?patient=123",
            "/Observation?patient=123,456",
        ] {
            let response = client.get_with_token(path, &token).await;
            assert_denied(&harness, &response, 401, Some(INVALID_TOKEN));
            assert_no_leak(
                &response,
                &[&token, "u-1", "app-1", &harness.upstream.url()],
            );
        }
    }
    assert!(counted_denial(&harness, "patient_claim_malformed").await);
    // The same token with one FHIR id (64 characters at most) is fine.
    for patient in ["123", &"a".repeat(64)] {
        let mut claims = base.clone();
        claims["patient"] = json!(patient);
        let response = client
            .get_with_token(&format!("/Patient/{patient}"), &harness.mint(&claims))
            .await;
        assert_ne!(response.status, 401, "{patient}: {}", response.text());
    }
}

#[tokio::test]
async fn identity_claims_outside_their_shape_are_401_invalid_token() {
    let harness = Harness::start().await;
    let base = harness.claims("patient/Patient.r");
    let long = "a".repeat(256);
    let edits: Vec<(&str, serde_json::Value)> = vec![
        ("sub", json!("u-1\r\nX-Phigate-Scopes: system/*.rs")),
        ("sub", json!("u-1\n{\"decision\":\"allow\"}")),
        ("sub", json!(long.as_str())),
        ("sub", json!("")),
        ("sub", json!(" u-1")),
        ("sub", json!("u-1 ")),
        ("sub", json!(["u-1"])),
        ("client_id", json!("app\t1")),
        ("client_id", json!("app-é")),
        ("client_id", json!(long.as_str())),
        ("client_id", json!(null)),
        ("jti", json!("j\u{0}1")),
        ("jti", json!(long.as_str())),
        ("jti", json!(7)),
    ];
    for (name, value) in edits {
        let mut claims = base.clone();
        claims[name] = value;
        assert_invalid(&harness, &harness.mint(&claims)).await;
    }
    // `azp` stands in for a missing `client_id`, under the same rules.
    for azp in [json!("kc\u{7f}app"), json!(long.as_str()), json!(5)] {
        let mut claims = base.clone();
        claims.as_object_mut().unwrap().remove("client_id");
        claims["azp"] = azp;
        assert_invalid(&harness, &harness.mint(&claims)).await;
    }
    assert!(counted_denial(&harness, "identity_claim_malformed").await);
    let mut claims = base;
    claims["sub"] = json!("a".repeat(255));
    let response = harness
        .client()
        .get_with_token("/Patient/123", &harness.mint(&claims))
        .await;
    assert_eq!(response.status, 200, "{}", response.text());
}

#[tokio::test]
async fn alg_none_and_hmac_with_the_public_key_are_refused() {
    let harness = Harness::start().await;
    let claims = serde_json::to_vec(&harness.claims("patient/Patient.r")).unwrap();
    let none = format!(
        "{}.{}.",
        b64(br#"{"alg":"none","typ":"at+jwt"}"#),
        b64(&claims)
    );
    assert_invalid(&harness, &none).await;
    let none_with_sig = format!(
        "{}.{}.{}",
        b64(br#"{"alg":"none"}"#),
        b64(&claims),
        b64(b"x")
    );
    assert_invalid(&harness, &none_with_sig).await;
    // RS/HS confusion: HMAC keyed with each spelling of the issuer's public key.
    let jwks = harness.issuer.jwks();
    let jwk = &jwks["keys"][0];
    let secrets = [
        serde_json::to_vec(jwk).unwrap(),
        jwk["x"].as_str().unwrap().as_bytes().to_vec(),
        b"\n".to_vec(),
    ];
    for secret in secrets {
        let header = b64(br#"{"alg":"HS256","typ":"at+jwt","kid":"dev-es256-1"}"#);
        let input = format!("{header}.{}", b64(&claims));
        let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, &secret);
        let tag = aws_lc_rs::hmac::sign(&key, input.as_bytes());
        assert_invalid(&harness, &format!("{input}.{}", b64(tag.as_ref()))).await;
    }
}

#[tokio::test]
async fn structural_attacks_are_401_invalid_token() {
    let harness = Harness::start().await;
    let good = harness.token("patient/Patient.r");
    let parts: Vec<&str> = good.split('.').collect();
    let (header, payload, signature) = (parts[0], parts[1], parts[2]);
    let mut flipped = signature.to_owned();
    let last = if flipped.ends_with('A') { "B" } else { "A" };
    flipped.replace_range(flipped.len() - 1.., last);
    let zero_sig = b64(&[0u8; 64]);
    let cases = [
        format!("{header}.{payload}."),
        format!("{header}.{payload}"),
        format!("{good}.extra"),
        format!("{good}.a.b"),
        format!(".{payload}.{signature}"),
        // SECURITY.md B-09: padding on any segment, and a space within one, are one token the
        // strict JWS decoder refuses, not a malformed header (two whole tokens are, below).
        format!("{header}.{payload}.{signature}="),
        format!("{header}.{payload}.{signature}=="),
        format!("{header}=.{payload}.{signature}"),
        format!("{header}.{payload}==.{signature}"),
        format!("{header}.{} {}.{signature}", &payload[..10], &payload[10..]),
        format!("{good} x"),
        format!("{good}x y"),
        format!("{good}=x"),
        format!("={good}"),
        format!("{header}.{payload}.{flipped}"),
        format!("{header}.{payload}.{zero_sig}"),
        format!("{header}.{payload}.{}", &signature[1..]),
        format!(
            "{}.{payload}.{signature}",
            b64(br#"{"alg":"ES256","alg":"none","kid":"dev-es256-1"}"#)
        ),
        format!(
            "{}.{payload}.{signature}",
            b64(br#"{"alg":"RSA-OAEP-256","enc":"A256GCM"}"#)
        ),
        "not-a-jwt".to_owned(),
    ];
    for token in &cases {
        assert_invalid(&harness, token).await;
    }
}

#[tokio::test]
async fn foreign_signer_and_header_key_hints_are_refused() {
    let harness = Harness::start().await;
    // An attacker issuer with the same iss and kid: its key is not in our JWKS.
    let attacker = DevIssuer::start("127.0.0.1:0".parse().unwrap(), ISSUER)
        .await
        .unwrap();
    let claims = harness.claims("patient/Patient.r");
    assert_invalid(&harness, &attacker.mint(&claims)).await;
    let attacker_jwk = attacker.jwks()["keys"][0].clone();
    let header = json!({"alg": "ES256", "typ": "at+jwt", "kid": "dev-es256-1", "jwk": attacker_jwk, "jku": attacker.jwks_uri()});
    let token = attacker.sign_raw("dev-es256-1", &header, &claims).unwrap();
    let fetches = attacker.fetch_count();
    assert_invalid(&harness, &token).await;
    assert_eq!(
        attacker.fetch_count(),
        fetches,
        "a jku in a token must never be fetched"
    );
    attacker.shutdown();
}

#[tokio::test]
async fn token_types_and_unknown_issuers() {
    let harness = Harness::start().await;
    let claims = harness.claims("patient/Patient.r");
    for (typ, status) in [
        ("at+jwt", 200),
        ("AT+JWT", 200),
        ("application/at+jwt", 200),
        ("JWT", 200),
        ("dpop+jwt", 401),
    ] {
        let header = json!({"alg": "ES256", "typ": typ, "kid": "dev-es256-1"});
        let token = harness
            .issuer
            .sign_raw("dev-es256-1", &header, &claims)
            .unwrap();
        let response = harness
            .client()
            .get_with_token("/Patient/123", &token)
            .await;
        assert_eq!(response.status, status, "typ {typ}");
    }
    harness.upstream.clear_received();
    let mut other = claims.clone();
    other["iss"] = json!("https://as-b.test");
    assert_invalid(&harness, &harness.mint(&other)).await;
    let header = json!({"alg": "ES256", "kid": "dev-es256-1", "crit": ["exp"]});
    assert_invalid(
        &harness,
        &harness
            .issuer
            .sign_raw("dev-es256-1", &header, &claims)
            .unwrap(),
    )
    .await;
}

#[tokio::test]
async fn scope_claim_shapes() {
    let harness = Harness::start().await;
    let mut claims = harness.claims("");
    let object = claims.as_object_mut().unwrap();
    object.remove("scope");
    object.insert("scp".into(), json!(["user/Patient.r"]));
    let response = harness
        .client()
        .get_with_token("/Patient/123", &harness.mint(&claims))
        .await;
    assert_eq!(response.status, 200);
    // A homoglyph scope is not the scope: refused for scope, with the rule's scopes named.
    let token = harness.token("patient/P\u{0430}tient.r");
    let response = harness
        .client()
        .get_with_token("/Patient/123", &token)
        .await;
    assert!(
        matches!(response.status.as_u16(), 401 | 403),
        "{}",
        response.status
    );
}

#[tokio::test]
async fn credential_transport_rules() {
    let harness = Harness::start().await;
    let token = harness.token("patient/Patient.r");
    let client = harness.client();
    let bearer = format!("Bearer {token}");
    let bad_request = Some("Bearer realm=\"phigate\", error=\"invalid_request\"");
    let bare = Some(BARE_CHALLENGE);

    let response = client
        .get(&format!("/Patient/123?access_token={token}"))
        .await;
    assert_denied(&harness, &response, 400, bad_request);
    assert_no_leak(&response, &[&token]);
    let response = client
        .send(
            Method::GET,
            &format!("/Patient/123?access_token={token}"),
            &[("authorization", &bearer)],
            Bytes::new(),
        )
        .await;
    assert_denied(&harness, &response, 400, bad_request);
    let response = client
        .send(
            Method::GET,
            "/Patient/123",
            &[("authorization", &bearer), ("authorization", &bearer)],
            Bytes::new(),
        )
        .await;
    assert_denied(&harness, &response, 400, bad_request);
    for scheme in ["Basic dXNlcjpwYXNz", "Negotiate abc", "MAC x"] {
        let response = client
            .send(
                Method::GET,
                "/Patient/123",
                &[("authorization", scheme)],
                Bytes::new(),
            )
            .await;
        assert_denied(&harness, &response, 401, bare);
        assert_no_leak(&response, &["dXNlcjpwYXNz"]);
    }
    let response = client.get("/Patient/123").await;
    assert_denied(&harness, &response, 401, bare);
    assert_eq!(response.json()["issue"][0]["code"], "login");
    let huge = format!("Bearer {}", "a".repeat(64 * 1024));
    let result = client
        .try_send(
            Method::GET,
            "/Patient/123",
            &[("authorization", &huge)],
            Bytes::new(),
        )
        .await;
    if let Ok(response) = result {
        assert!(
            matches!(response.status.as_u16(), 431 | 400),
            "{}",
            response.status
        );
    }
    assert!(harness.upstream.received().is_empty());
    // RFC 9110 §11.1: the scheme is case-insensitive, and 1*SP may separate it from the token.
    for value in [format!("bEaReR {token}"), format!("Bearer  {token}")] {
        let response = client
            .send(
                Method::GET,
                "/Patient/123",
                &[("authorization", &value)],
                Bytes::new(),
            )
            .await;
        assert_eq!(response.status, 200);
    }
}

const BAD_REQUEST: Option<&str> = Some("Bearer realm=\"phigate\", error=\"invalid_request\"");

#[tokio::test]
async fn malformed_authorization_is_400_invalid_request() {
    let harness = Harness::start().await;
    let token = harness.token("patient/Patient.r");
    let client = harness.client();
    let h2 = harness.h2_client();
    let values = [
        format!("Bearer {token} {token}"),
        format!("Bearer {token} x.y"),
        format!("Bearer {token}  x"),
        format!("Bearer \"{token}\""),
        format!("Bearer token=\"{token}\""),
        format!("Bearer {token}!"),
        format!("Bearer {token};"),
        format!("Bearer {token}, Basic dXNlcjpwYXNz"),
        format!("Bearer {token},Basic dXNlcjpwYXNz"),
        format!("Bearer, {token}"),
        format!("Bearer,{token}"),
        format!("DPoP {token} {token}"),
        format!("DPoP \"{token}\""),
        format!("DPoP {token}, Bearer {token}"),
        "Bearer".to_owned(),
        "Bearer ==".to_owned(),
        "DPoP".to_owned(),
    ];
    for value in &values {
        for client in [&client, &h2] {
            let response = client
                .send(
                    Method::GET,
                    "/Patient/123",
                    &[("authorization", value)],
                    Bytes::new(),
                )
                .await;
            assert_denied(&harness, &response, 400, BAD_REQUEST);
            assert_eq!(response.json()["issue"][0]["code"], "invalid", "{value}");
            assert_no_leak(&response, &[&token]);
        }
    }
    // HTTP/2 carries a field value as sent: trailing whitespace reaches phigate and is refused.
    for value in [format!("Bearer {token} "), format!("Bearer {token}\t")] {
        let response = h2
            .send(
                Method::GET,
                "/Patient/123",
                &[("authorization", &value)],
                Bytes::new(),
            )
            .await;
        assert_denied(&harness, &response, 400, BAD_REQUEST);
    }
    let (_, metrics) = harness.admin_get("/metrics").await;
    assert!(
        metrics.contains("reason=\"authorization_malformed\"}"),
        "{metrics}"
    );
    // A genuinely foreign scheme stays 401 without an error code; 1*SP stays accepted.
    for value in ["Basic dXNlcjpwYXNz", "Negotiate", "Negotiate abc def"] {
        let response = client
            .send(
                Method::GET,
                "/Patient/123",
                &[("authorization", value)],
                Bytes::new(),
            )
            .await;
        assert_denied(&harness, &response, 401, Some(BARE_CHALLENGE));
    }
    let response = client
        .send(
            Method::GET,
            "/Patient/123",
            &[("authorization", &format!("Bearer    {token}"))],
            Bytes::new(),
        )
        .await;
    assert_eq!(response.status, 200);
}

#[tokio::test]
async fn whitespace_in_authorization_sent_as_raw_bytes() {
    let harness = Harness::start().await;
    let token = harness.token("patient/Patient.r");
    let request = |authorization: &str| {
        format!(
            "GET /Patient/123 HTTP/1.1\r\nHost: gw.test\r\nAuthorization: {authorization}\r\nConnection: close\r\n\r\n"
        )
    };
    // A TAB or TAB-and-space as the separator, and whitespace inside: 400, not a foreign scheme.
    for authorization in [
        format!("Bearer\t{token}"),
        format!("Bearer\t {token}"),
        format!("Bearer \t{token}"),
        format!("DPoP\t{token}"),
        format!("Bearer {token}\t{token}"),
        format!("Bearer {token} \tx"),
    ] {
        let answer = raw_tls(
            harness.addr(),
            &harness.ca,
            request(&authorization).as_bytes(),
        )
        .await;
        assert!(
            answer.starts_with("HTTP/1.1 400"),
            "{authorization:?} -> {answer}"
        );
        assert!(
            answer
                .contains("www-authenticate: Bearer realm=\"phigate\", error=\"invalid_request\""),
            "{answer}"
        );
        assert!(!answer.contains(&token[..20]), "{answer}");
    }
    assert!(
        harness.upstream.received().is_empty(),
        "{:?}",
        harness.upstream_paths()
    );
    // RFC 9112 §5.1: whitespace around an HTTP/1.1 field value is not part of the value, so the
    // header below is exactly `Bearer <token>` by the time anyone reads it.
    let answer = raw_tls(
        harness.addr(),
        &harness.ca,
        request(&format!("Bearer {token} \t ")).as_bytes(),
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

#[tokio::test]
async fn form_body_token_is_refused() {
    let harness = Harness::start().await;
    let token = harness.token("user/Observation.rs");
    let body = Bytes::from(format!("patient=123&access_token={token}"));
    let response = harness
        .client()
        .send(
            Method::POST,
            "/Observation",
            &[
                ("content-type", "application/x-www-form-urlencoded"),
                ("authorization", &format!("Bearer {token}")),
            ],
            body,
        )
        .await;
    assert_denied(
        &harness,
        &response,
        400,
        Some("Bearer realm=\"phigate\", error=\"invalid_request\""),
    );
    assert_no_leak(&response, &[&token]);
    let response = harness
        .client()
        .send(
            Method::POST,
            "/Observation",
            &[
                ("content-type", "application/x-www-form-urlencoded"),
                ("authorization", &format!("Bearer {token}")),
            ],
            Bytes::from("patient=123"),
        )
        .await;
    // A clean form body is forwarded as it came (the synthetic upstream itself wants JSON).
    assert_eq!(harness.upstream.received()[0].body, b"patient=123");
    assert_no_leak(&response, &[&token]);
}

#[tokio::test]
async fn verified_tokens_are_cached_but_time_is_rechecked() {
    let harness = Harness::start().await;
    let mut claims = harness.claims("patient/Patient.r");
    claims["exp"] = json!(claims["iat"].as_i64().unwrap() - 30 + 2);
    let token = harness.mint(&claims);
    let client = harness.client();
    assert_eq!(
        client.get_with_token("/Patient/123", &token).await.status,
        200
    );
    assert_eq!(
        client.get_with_token("/Patient/123", &token).await.status,
        200
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    let response = client.get_with_token("/Patient/123", &token).await;
    assert_eq!(response.status, 401, "a cached token must still expire");
    let (_, metrics) = harness.admin_get("/metrics").await;
    assert!(
        metrics.contains("phigate_token_cache_hits_total 1"),
        "{metrics}"
    );
}

#[tokio::test]
async fn keycloak_style_tokens_work() {
    let harness = Harness::start().await;
    let mut claims = harness.claims("openid profile user/Patient.r");
    let object = claims.as_object_mut().unwrap();
    object.remove("client_id");
    object.insert("azp".into(), json!("kc-frontend"));
    object.insert("typ".into(), json!("Bearer"));
    let header = json!({"alg": "ES256", "typ": "JWT", "kid": "dev-es256-1"});
    let token = harness
        .issuer
        .sign_raw("dev-es256-1", &header, &claims)
        .unwrap();
    let response = harness
        .client()
        .get_with_token("/Patient/123", &token)
        .await;
    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(
        harness.upstream.received()[0].header("x-phigate-client-id"),
        Some("kc-frontend")
    );
}
