//! Policy enforcement end to end: default deny, scopes, and path normalisation — the path that
//! was authorised is the path forwarded, byte for byte, and a spelling an upstream may serve as
//! another rule's path is decided by the canonical rule or refused.

use crate::support::client::raw_tls;
use crate::support::{BARE_CHALLENGE, Harness, Options, assert_denied, assert_no_leak};

const BAD_REQUEST: Option<&str> = Some("Bearer realm=\"phigate\", error=\"invalid_request\"");

#[tokio::test]
async fn public_rule_needs_no_token_and_scoped_rule_does() {
    let harness = Harness::start().await;
    let response = harness.client().get("/metadata").await;
    assert_eq!(response.status, 200);
    assert_eq!(
        harness.upstream_paths(),
        vec![("GET".to_owned(), "/fhir/metadata".to_owned())]
    );
    harness.upstream.clear_received();
    // The query never takes part in matching (oauth2-proxy CVE-2025-54576).
    for path in ["/Patient/456?/metadata", "/Patient/456?x=/metadata"] {
        let response = harness.client().get(path).await;
        assert_denied(&harness, &response, 401, Some(BARE_CHALLENGE));
    }
}

#[tokio::test]
async fn insufficient_scope_names_the_rule_scopes_never_the_token_scopes() {
    let harness = Harness::start().await;
    let token = harness.token("user/Observation.rs launch/patient");
    let response = harness
        .client()
        .get_with_token("/Patient/123", &token)
        .await;
    assert_denied(
        &harness,
        &response,
        403,
        Some(
            "Bearer realm=\"phigate\", error=\"insufficient_scope\", scope=\"patient/Patient.r user/Patient.r system/Patient.r\"",
        ),
    );
    assert_eq!(response.json()["issue"][0]["code"], "forbidden");
    assert_no_leak(
        &response,
        &[&token, "launch/patient", "user/Observation.rs"],
    );
}

#[tokio::test]
async fn no_matching_rule_or_method_is_denied_by_default() {
    let harness = Harness::start().await;
    let token = harness.token("system/Patient.r user/Patient.r");
    let client = harness.client();
    let forbidden = Some("Bearer realm=\"phigate\", error=\"insufficient_scope\"");
    for path in [
        "/Practitioner/pr-9",
        "/Patient",
        "/Patient/123/_history/1",
        "/",
    ] {
        let response = client.get_with_token(path, &token).await;
        assert_denied(&harness, &response, 403, forbidden);
    }
    let response = client
        .send(
            http::Method::DELETE,
            "/Patient/123",
            &[("authorization", &format!("Bearer {token}"))],
            bytes::Bytes::new(),
        )
        .await;
    assert_denied(&harness, &response, 403, forbidden);
}

#[tokio::test]
async fn path_tricks_are_refused_before_any_decision() {
    let harness = Harness::start().await;
    let token = harness.token("user/Patient.r");
    let client = harness.client();
    for path in [
        "/metadata/../Patient/456",
        "/metadata/%2e%2e/Patient/456",
        "/metadata/.%2E/Patient/456",
        "/Patient%2F456",
        "/metadata%2F..%2FPatient%2F456",
        "/metadata%5C..%5CPatient%5C456",
        "/Patient;x=y/456",
        "/Patient/456;jsessionid=1",
        "/metadata;/../Patient/456",
        "/metadata/..;/Patient/456",
        "/Patient/123%00",
        "/Patient/123%0a",
        "/metadata/%c0%ae%c0%ae/Patient/456",
        "/Pat%e2%80%8bient/123",
        "/Patient/%ff",
    ] {
        let response = client.get_with_token(path, &token).await;
        assert_denied(&harness, &response, 400, BAD_REQUEST);
        assert_no_leak(&response, &[&token, path]);
    }
}

#[tokio::test]
async fn authorised_path_is_the_forwarded_path() {
    let harness = Harness::start().await;
    let token = harness.token("user/Patient.r user/Observation.rs");
    let client = harness.client();
    for (sent, forwarded) in [
        ("/Patient/123", "/fhir/Patient/123"),
        ("//Patient///123", "/fhir/Patient/123"),
        ("/Patient/123/", "/fhir/Patient/123"),
        ("/Patient/123//", "/fhir/Patient/123"),
        ("/%50atient/123", "/fhir/Patient/123"),
        (
            "/Observation?patient=123&_count=10",
            "/fhir/Observation?patient=123&_count=10",
        ),
    ] {
        harness.upstream.clear_received();
        let response = client.get_with_token(sent, &token).await;
        assert_eq!(response.status, 200, "{sent}: {}", response.text());
        assert_eq!(
            harness.upstream_paths(),
            vec![("GET".to_owned(), forwarded.to_owned())],
            "{sent}"
        );
    }
}

/// Issue #7: a protected report, then every other report public.
const REPORTS: &str = r#"rules:
  - name: secret-report
    methods: [GET]
    path: /Report/secret
    scopes: [system/Report.r]
  - name: reports
    methods: [GET]
    path: /Report/**
    public: true
"#;

async fn reports() -> Harness {
    Harness::with(Options {
        policy: REPORTS.to_owned(),
        ..Default::default()
    })
    .await
}

#[tokio::test]
async fn trailing_slash_and_empty_segments_are_decided_by_the_protected_rule() {
    let harness = reports().await;
    let client = harness.client();
    for path in [
        "/Report/secret/",
        "/Report/secret//",
        "//Report///secret/",
        "/Report//secret",
    ] {
        let response = client.get(path).await;
        assert_denied(&harness, &response, 401, Some(BARE_CHALLENGE));
        assert_no_leak(&response, &[path]);
    }
    // The same bytes through a raw socket, in case the client library tidied the path.
    let raw = raw_tls(
        harness.addr(),
        &harness.ca,
        b"GET /Report/secret/ HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(raw.starts_with("HTTP/1.1 401"), "{raw}");
    assert!(harness.upstream.received().is_empty());
}

#[tokio::test]
async fn an_authorised_trailing_slash_is_forwarded_as_the_canonical_path() {
    let harness = reports().await;
    let token = harness.token("system/Report.r");
    let client = harness.client();
    for sent in ["/Report/secret/", "//Report///secret/", "/Report/secret"] {
        harness.upstream.clear_received();
        let response = client.get_with_token(sent, &token).await;
        assert!(
            response.headers.get("www-authenticate").is_none(),
            "{sent}: {}",
            response.text()
        );
        assert_eq!(
            harness.upstream_paths(),
            vec![("GET".to_owned(), "/fhir/Report/secret".to_owned())],
            "{sent}"
        );
    }
    harness.upstream.clear_received();
    let raw = raw_tls(
        harness.addr(),
        &harness.ca,
        format!(
            "GET /Report/secret// HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"
        )
        .as_bytes(),
    )
    .await;
    // The synthetic upstream has no reports: its 404 proves the request got through.
    assert!(raw.starts_with("HTTP/1.1 404"), "{raw}");
    assert!(!raw.contains("www-authenticate"), "{raw}");
    assert_eq!(
        harness.upstream_paths(),
        vec![("GET".to_owned(), "/fhir/Report/secret".to_owned())]
    );
}

#[tokio::test]
async fn a_path_another_rule_may_decide_upstream_is_400_path_ambiguous() {
    let harness = reports().await;
    let token = harness.token("system/Report.r");
    let client = harness.client();
    for path in [
        "/report/secret",
        "/REPORT/Secret",
        "/Report/SECRET/",
        "/Report/secret.",
        "/Report/%C5%BFecret",
        "/report/other",
    ] {
        let response = client.get(path).await;
        assert_denied(&harness, &response, 400, BAD_REQUEST);
        assert_no_leak(&response, &[path]);
        // A valid token changes nothing: the request is refused before the token is read.
        let response = client.get_with_token(path, &token).await;
        assert_denied(&harness, &response, 400, BAD_REQUEST);
        assert_no_leak(&response, &[&token, path]);
    }
}

#[tokio::test]
async fn other_paths_under_the_public_rule_are_forwarded_canonically() {
    let harness = reports().await;
    let client = harness.client();
    for (sent, forwarded) in [
        ("/Report/other/", "/fhir/Report/other"),
        ("/Report//other", "/fhir/Report/other"),
        ("/Report/secret.json", "/fhir/Report/secret.json"),
        ("/Report/%24summary", "/fhir/Report/$summary"),
    ] {
        harness.upstream.clear_received();
        let response = client.get(sent).await;
        assert!(
            response.headers.get("www-authenticate").is_none(),
            "{sent}: {}",
            response.text()
        );
        assert_eq!(
            harness.upstream_paths(),
            vec![("GET".to_owned(), forwarded.to_owned())],
            "{sent}"
        );
    }
}
