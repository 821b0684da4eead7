//! The admin listener: metrics content and label hygiene, health, readiness, and its absence
//! from the PHI listener.

use crate::support::Harness;

#[tokio::test]
async fn metrics_count_decisions_by_rule_and_reason_without_secrets() {
    let harness = Harness::start().await;
    let token = harness.token("user/Observation.rs");
    let client = harness.client();
    assert_eq!(client.get("/metadata").await.status, 200);
    assert_eq!(
        client.get_with_token("/Patient/123", &token).await.status,
        403
    );
    assert_eq!(client.get("/Patient/123").await.status, 401);
    let (status, metrics) = harness.admin_get("/metrics").await;
    assert_eq!(status, 200);
    for expected in [
        "phigate_decisions_total{rule=\"capability-statement\",decision=\"allow\",reason=\"ok\"} 1",
        "phigate_decisions_total{rule=\"read-patient\",decision=\"deny\",reason=\"insufficient_scope\"} 1",
        "phigate_decisions_total{rule=\"read-patient\",decision=\"deny\",reason=\"credentials_missing\"} 1",
        "phigate_request_duration_seconds_bucket",
        "phigate_upstream_duration_seconds_bucket",
        "phigate_jwks_fetches_total{issuer=\"https://as-a.test\",result=\"ok\"}",
        "phigate_jwks_keys_loaded{issuer=\"https://as-a.test\"} 1",
        "phigate_jwks_key_age_seconds{issuer=\"https://as-a.test\"}",
    ] {
        assert!(metrics.contains(expected), "missing {expected}\n{metrics}");
    }
    for secret in [token.as_str(), "u-1", "app-1", "/Patient/123", "127.0.0.1"] {
        assert!(!metrics.contains(secret), "metrics leak {secret}");
    }
}

#[tokio::test]
async fn health_readiness_and_unknown_paths() {
    let harness = Harness::start().await;
    assert_eq!(harness.admin_get("/healthz").await.0, 200);
    assert_eq!(harness.admin_get("/readyz").await.0, 200);
    assert_eq!(harness.admin_get("/nope").await.0, 404);
    // The PHI listener has no admin routes: /metrics there is just an unmatched path.
    let response = harness.client().get("/metrics").await;
    assert_eq!(response.status, 403);
    assert!(!response.text().contains("phigate_"));
}

#[tokio::test]
async fn shutdown_turns_readiness_off_and_stops_serving() {
    let harness = Harness::start().await;
    let admin = harness.gateway().admin_addr();
    let addr = harness.addr();
    let mut harness = harness;
    let gateway = harness.gateway.take().unwrap();
    gateway.shutdown().await;
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "listener still accepting"
    );
    let _ = admin;
}
