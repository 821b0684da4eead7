//! What reaches the upstream and what comes back: identity and forwarding headers, hop-by-hop
//! stripping, streaming bodies, HTTP/2, and upstream failures.

use bytes::Bytes;
use http::Method;
use phigate::demo::UpstreamMode;

use crate::support::{Harness, Options, assert_no_leak};

#[tokio::test]
async fn identity_and_forwarding_headers_are_phigates_own() {
    let harness = Harness::start().await;
    let token = harness.token("user/Patient.r");
    let bearer = format!("Bearer {token}");
    let response = harness
        .client()
        .send(
            Method::GET,
            "/Patient/123",
            &[
                ("authorization", &bearer),
                ("x-phigate-subject", "admin"),
                ("x-phigate-client-id", "ehr-core"),
                ("x-phigate-scopes", "system/*.cruds"),
                ("x-forwarded-for", "10.0.0.1, 8.8.8.8"),
                ("forwarded", "for=10.0.0.1;proto=http"),
                ("x-real-ip", "10.0.0.1"),
                ("x-forwarded-host", "attacker.test"),
                ("client-cert", ":AAAA:"),
                ("x-ssl-client-cert", "AAAA"),
                ("connection", "close, x-phigate-subject, x-forwarded-for"),
                ("upgrade", "h2c"),
                ("x-keep-me", "yes"),
            ],
            Bytes::new(),
        )
        .await;
    assert_eq!(response.status, 200, "{}", response.text());
    let received = &harness.upstream.received()[0];
    let values = |name: &str| {
        received
            .header_values(name)
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    assert_eq!(values("x-phigate-subject"), ["u-1"]);
    assert_eq!(values("x-phigate-client-id"), ["app-1"]);
    assert_eq!(values("x-phigate-scopes"), ["user/Patient.r"]);
    assert_eq!(values("x-phigate-subject-kind"), ["user"]);
    assert_eq!(values("x-forwarded-for"), ["127.0.0.1"]);
    assert_eq!(values("x-forwarded-proto"), ["https"]);
    assert_eq!(values("host"), [harness.upstream.local_addr().to_string()]);
    assert_eq!(values("x-keep-me"), ["yes"]);
    for absent in [
        "authorization",
        "forwarded",
        "x-real-ip",
        "x-forwarded-host",
        "client-cert",
        "x-ssl-client-cert",
        "upgrade",
    ] {
        assert!(values(absent).is_empty(), "{absent} reached the upstream");
    }
}

#[tokio::test]
async fn client_credentials_subject_is_marked_as_a_client() {
    let harness = Harness::start().await;
    let claims = harness.issuer.standard_claims(
        "svc-1",
        "svc-1",
        "system/Patient.r",
        crate::support::AUDIENCE,
        std::time::Duration::from_secs(300),
    );
    let response = harness
        .client()
        .get_with_token("/Patient/123", &harness.mint(&claims))
        .await;
    assert_eq!(response.status, 200);
    assert_eq!(
        harness.upstream.received()[0].header("x-phigate-subject-kind"),
        Some("client")
    );
}

#[tokio::test]
async fn token_is_forwarded_only_when_configured() {
    let harness = Harness::with(Options {
        forward_token: true,
        ..Options::default()
    })
    .await;
    let token = harness.token("user/Patient.r");
    let response = harness
        .client()
        .get_with_token("/Patient/123", &token)
        .await;
    assert_eq!(response.status, 200);
    let expected = format!("Bearer {token}");
    assert_eq!(
        harness.upstream.received()[0].header("authorization"),
        Some(expected.as_str())
    );
}

#[tokio::test]
async fn response_banners_and_hop_by_hop_headers_are_removed() {
    let harness = Harness::start().await;
    harness.upstream.set_mode(UpstreamMode::LeakyHeaders);
    let response = harness.client().get("/metadata").await;
    assert_eq!(response.status, 200);
    assert!(response.headers.get("server").is_none());
    assert!(response.headers.get("x-powered-by").is_none());
    harness.upstream.set_mode(UpstreamMode::HopByHopHeaders);
    let response = harness.client().get("/metadata").await;
    assert!(
        response.headers.get("x-upstream-secret").is_none(),
        "{:?}",
        response.headers
    );
    assert!(response.headers.get("keep-alive").is_none());
}

#[tokio::test]
async fn bodies_stream_both_ways_over_http1_and_http2() {
    let harness = Harness::start().await;
    let token = harness.token("user/Observation.c user/Observation.rs");
    let observation =
        r#"{"resourceType":"Observation","status":"final","subject":{"reference":"Patient/123"}}"#;
    for client in [harness.client(), harness.h2_client()] {
        let response = client
            .send(
                Method::POST,
                "/Observation",
                &[
                    ("authorization", &format!("Bearer {token}")),
                    ("content-type", "application/fhir+json"),
                ],
                Bytes::from(observation),
            )
            .await;
        assert!(
            matches!(response.status.as_u16(), 200 | 201),
            "{}: {}",
            response.status,
            response.text()
        );
    }
    let received = harness.upstream.received();
    assert_eq!(received.len(), 2);
    assert!(
        received
            .iter()
            .all(|r| r.body == observation.as_bytes() && r.path_and_query == "/fhir/Observation")
    );
}

#[tokio::test]
async fn upstream_down_is_502_and_slow_is_504() {
    let harness = Harness::with(Options {
        upstream_timeout: "1s",
        ..Options::default()
    })
    .await;
    let token = harness.token("user/Patient.r");
    harness
        .upstream
        .set_response_delay(std::time::Duration::from_secs(3));
    let response = harness
        .client()
        .get_with_token("/Patient/123", &token)
        .await;
    assert_eq!(response.status, 504);
    assert_no_leak(
        &response,
        &[&token, &harness.upstream.local_addr().to_string()],
    );
    harness
        .upstream
        .set_response_delay(std::time::Duration::ZERO);
    let upstream_addr = harness.upstream.local_addr().to_string();
    harness.upstream.shutdown();
    harness.upstream.stopped().await;
    let response = harness
        .client()
        .get_with_token("/Patient/123", &token)
        .await;
    assert_eq!(response.status, 502);
    assert_eq!(response.json()["resourceType"], "OperationOutcome");
    assert_no_leak(&response, &[&token, &upstream_addr, "127.0.0.1"]);
}

#[tokio::test]
async fn https_upstream_is_verified_against_its_ca_file() {
    let harness = Harness::with(Options {
        upstream_tls: Some(true),
        jwks_tls: true,
        ..Options::default()
    })
    .await;
    let token = harness.token("user/Patient.r");
    let response = harness
        .client()
        .get_with_token("/Patient/123", &token)
        .await;
    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(
        harness.upstream.received()[0].path_and_query,
        "/fhir/Patient/123"
    );
}

#[tokio::test]
async fn untrusted_https_upstream_is_502_never_an_insecure_fallback() {
    let harness = Harness::with(Options {
        upstream_tls: Some(false),
        ..Options::default()
    })
    .await;
    let token = harness.token("user/Patient.r");
    let response = harness
        .client()
        .get_with_token("/Patient/123", &token)
        .await;
    assert_eq!(response.status, 502);
    assert!(harness.upstream.received().is_empty());
    assert_no_leak(&response, &[&token, "localhost:"]);
}
