use serde_json::json;

use super::*;

const ISSUER: &str = "https://as.example.org/tenant/1";

#[track_caller]
fn check(document: Value, expected: Result<Option<&str>, Refusal>) {
    let parsed = Metadata::parse(document.to_string().as_bytes(), ISSUER);
    let jwks = parsed.map(|m| m.jwks_uri.as_ref().map(ToString::to_string));
    assert_eq!(
        jwks,
        expected.map(|uri| uri.map(str::to_owned)),
        "{document}"
    );
}

#[test]
fn a_document_is_believed_only_for_exactly_its_issuer() {
    let jwks = "https://as.example.org/tenant/1/jwks";
    check(json!({"issuer": ISSUER, "jwks_uri": jwks}), Ok(Some(jwks)));
    check(json!({"issuer": ISSUER}), Ok(None));
    for other in [
        json!(format!("{ISSUER}/")),
        json!("https://AS.example.org/tenant/1"),
        json!("https://as.example.org/tenant/2"),
        json!(null),
        json!(["https://as.example.org/tenant/1"]),
    ] {
        check(
            json!({"issuer": other, "jwks_uri": jwks}),
            Err(Refusal::IssuerMismatch),
        );
    }
    check(json!({"jwks_uri": jwks}), Err(Refusal::IssuerMismatch));
    check(json!([ISSUER]), Err(Refusal::NotAnObject));
}

#[test]
fn every_endpoint_must_be_https() {
    for endpoint in [
        "http://as.example.org/token",
        "/token",
        "https://user@as.example.org/token",
        "ftp://as.example.org/token",
    ] {
        check(
            json!({"issuer": ISSUER, "jwks_uri": "https://as.example.org/jwks", "token_endpoint": endpoint}),
            Err(Refusal::InsecureEndpoint),
        );
    }
    check(
        json!({"issuer": ISSUER, "jwks_uri": 7}),
        Err(Refusal::InsecureEndpoint),
    );
    // The development allowance: an http issuer may name http endpoints.
    let dev = "http://127.0.0.1:9000";
    let parsed = Metadata::parse(
        json!({"issuer": dev, "jwks_uri": "http://127.0.0.1:9000/jwks"})
            .to_string()
            .as_bytes(),
        dev,
    );
    assert!(parsed.is_ok());
}

#[test]
fn only_endpoints_and_supported_lists_are_passed_on() {
    let document = json!({
        "issuer": ISSUER,
        "token_endpoint": "https://as.example.org/token",
        "grant_types_supported": ["authorization_code", "client_credentials"],
        "code_challenge_methods_supported": ["S256", 7],
        "scopes_supported": ["openid"],
        "x-internal": "secret",
    });
    let metadata = Metadata::parse(document.to_string().as_bytes(), ISSUER).unwrap();
    let names: Vec<&str> = metadata.members().keys().map(String::as_str).collect();
    assert_eq!(names, ["grant_types_supported", "issuer", "token_endpoint"]);
}

#[test]
fn well_known_urls_insert_then_append() {
    let check = |issuer: &str, expected: Option<[&str; 2]>| {
        let urls = metadata_urls(issuer).map(|urls| urls.map(|u| u.to_string()));
        assert_eq!(urls, expected.map(|e| e.map(str::to_owned)), "{issuer}");
    };
    check(
        "https://as.example.org",
        Some([
            "https://as.example.org/.well-known/oauth-authorization-server",
            "https://as.example.org/.well-known/openid-configuration",
        ]),
    );
    check(
        "https://as.example.org/tenant/1/",
        Some([
            "https://as.example.org/.well-known/oauth-authorization-server/tenant/1",
            "https://as.example.org/tenant/1/.well-known/openid-configuration",
        ]),
    );
    check("urn:as", None);
}

#[tokio::test]
async fn an_unreachable_issuer_names_the_cause_counts_it_and_holds_nothing() {
    let metrics = Arc::new(Metrics::new());
    let metadata = IssuerMetadata::new(
        Arc::from("http://127.0.0.1:1"),
        crate::tls::https_client(None).unwrap(),
        TokenBounds::default(),
        Arc::clone(&metrics),
    );
    let err = metadata.jwks_uri().await.unwrap_err();
    assert!(
        matches!(&err, FetchError::Metadata(cause) if cause.contains("request failed")),
        "{err}"
    );
    assert!(metadata.current().is_none() && !metadata.is_refused());
    let text = metrics.render(crate::telemetry::Exposition::PrometheusText);
    assert!(
        text.contains(
            "phigate_issuer_metadata_fetch_failures_total{issuer=\"http://127.0.0.1:1\"} 1"
        ),
        "{text}"
    );
}
