//! Sender-constrained tokens: RFC 8705 certificate binding over mutual TLS, rules and clients
//! that demand binding, and DPoP-bound tokens presented as plain bearer tokens.

use bytes::Bytes;
use http::Method;
use phigate::tls::CertThumbprint;
use serde_json::json;

use crate::support::{Harness, INVALID_TOKEN, Options, assert_denied, assert_no_leak};

fn bound_token(harness: &Harness, thumbprint: &str) -> String {
    let mut claims = harness.claims("user/Patient.r");
    claims["cnf"] = json!({"x5t#S256": thumbprint});
    harness.mint(&claims)
}

#[tokio::test]
async fn certificate_bound_tokens_need_that_certificate() {
    let harness = Harness::with(Options {
        client_auth: Some("optional"),
        ..Options::default()
    })
    .await;
    let cert_a = harness.ca.issue_client("app-1").unwrap();
    let cert_b = harness.ca.issue_client("app-2").unwrap();
    let thumbprint = CertThumbprint::of(cert_a.cert_der.as_ref());
    let token = bound_token(&harness, thumbprint.as_str());
    let response = harness
        .client_with_cert(&cert_a)
        .get_with_token("/Patient/123", &token)
        .await;
    assert_eq!(response.status, 200, "{}", response.text());
    harness.upstream.clear_received();
    for response in [
        harness
            .client()
            .get_with_token("/Patient/123", &token)
            .await,
        harness
            .client_with_cert(&cert_b)
            .get_with_token("/Patient/123", &token)
            .await,
        // A certificate in a header is not a certificate (RFC 9700 §4.13).
        harness
            .client()
            .send(
                Method::GET,
                "/Patient/123",
                &[
                    ("authorization", &format!("Bearer {token}")),
                    (
                        "client-cert",
                        &format!(":{}:", base64_std(cert_a.cert_der.as_ref())),
                    ),
                ],
                Bytes::new(),
            )
            .await,
    ] {
        assert_denied(&harness, &response, 401, Some(INVALID_TOKEN));
        assert_no_leak(&response, &[&token, thumbprint.as_str()]);
    }
}

fn base64_std(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[tokio::test]
async fn rules_and_clients_can_demand_binding() {
    let policy = "client_bindings:\n  strict-app: mtls\nrules:\n  - name: bound-read\n    methods: [GET]\n    path: /Patient/{id}\n    scopes: [user/Patient.r]\n    require_binding: mtls\n  - name: open-read\n    methods: [GET]\n    path: /Observation/{id}\n    scopes: [user/Observation.r]\n";
    let harness = Harness::with(Options {
        client_auth: Some("optional"),
        policy: policy.into(),
        ..Options::default()
    })
    .await;
    let cert = harness.ca.issue_client("app-1").unwrap();
    let plain = harness.token("user/Patient.r");
    // A plain bearer token, even over mutual TLS, does not meet `require_binding: mtls`.
    let response = harness
        .client_with_cert(&cert)
        .get_with_token("/Patient/123", &plain)
        .await;
    assert_denied(&harness, &response, 401, Some(INVALID_TOKEN));
    let bound = bound_token(
        &harness,
        CertThumbprint::of(cert.cert_der.as_ref()).as_str(),
    );
    assert_eq!(
        harness
            .client_with_cert(&cert)
            .get_with_token("/Patient/123", &bound)
            .await
            .status,
        200
    );
    harness.upstream.clear_received();
    // A client listed in client_bindings needs binding on every rule.
    let strict = harness.issuer.standard_claims(
        "u-1",
        "strict-app",
        "user/Observation.r",
        crate::support::AUDIENCE,
        std::time::Duration::from_secs(300),
    );
    let response = harness
        .client()
        .get_with_token("/Observation/o-1", &harness.mint(&strict))
        .await;
    assert_denied(&harness, &response, 401, Some(INVALID_TOKEN));
    let (_, metrics) = harness.admin_get("/metrics").await;
    for rule in ["bound-read", "open-read"] {
        let line = format!(
            "phigate_decisions_total{{rule=\"{rule}\",decision=\"deny\",reason=\"binding_required\"}} 1"
        );
        assert!(metrics.contains(&line), "{line} missing:\n{metrics}");
    }
}

#[tokio::test]
async fn a_dpop_bound_token_sent_as_bearer_is_refused() {
    let harness = Harness::start().await;
    let mut claims = harness.claims("user/Patient.r");
    claims["cnf"] = json!({"jkt": "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"});
    let token = harness.mint(&claims);
    let response = harness
        .client()
        .get_with_token("/Patient/123", &token)
        .await;
    assert_denied(&harness, &response, 401, Some(INVALID_TOKEN));
    // RFC 9449 §7.2: the DPoP challenge follows the Bearer one (tests/it/dpop.rs has more).
    assert_eq!(
        response.headers.get_all("www-authenticate").iter().count(),
        2
    );
    let mut both = harness.claims("user/Patient.r");
    both["cnf"] = json!({"jkt": "a", "x5t#S256": "b"});
    let response = harness
        .client()
        .get_with_token("/Patient/123", &harness.mint(&both))
        .await;
    assert_denied(&harness, &response, 401, Some(INVALID_TOKEN));
    assert_eq!(
        response.headers.get_all("www-authenticate").iter().count(),
        1
    );
}
