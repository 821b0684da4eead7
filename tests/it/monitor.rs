//! Monitoring and automatic response end to end: a detector fed by decision records fires, its
//! actions write the block list, and the decision chain then refuses what was blocked — with
//! nothing reaching the upstream. Waits are on events (the firing counted on `/metrics`), never
//! on timings.

use std::time::Duration;

use serde_json::json;

use crate::support::{Harness, INVALID_TOKEN, Options, assert_denied, assert_no_leak, eventually};

/// A gateway whose repeated-failures detector fires at 3 failures and takes `actions`.
async fn repeated_failures(actions: &str) -> Harness {
    Harness::with(Options {
        extra: format!(
            "monitor:\n  repeated_failures:\n    threshold: 3\n    window: 60s\n    actions:\n{actions}"
        ),
        ..Options::default()
    })
    .await
}

/// Waits until `/metrics` shows the series `line` (name, labels and value).
async fn wait_metric(harness: &Harness, line: &str) {
    eventually(Duration::from_secs(15), || async {
        harness
            .admin_get("/metrics")
            .await
            .1
            .lines()
            .any(|l| l == line)
    })
    .await;
}

const FIRED_ONCE: &str = "phigate_detector_firings_total{detector=\"repeated_failures\"} 1";

#[tokio::test]
async fn repeated_failures_block_the_address_and_then_refuse_a_valid_token_as_blocked() {
    let harness = repeated_failures("      block: 10m\n").await;
    // Every series is there before anything fires, so an alert rule sees the first firing.
    let (_, metrics) = harness.admin_get("/metrics").await;
    for line in [
        "phigate_detector_firings_total{detector=\"repeated_failures\"} 0",
        "phigate_actions_total{action=\"block\",result=\"ok\"} 0",
        "phigate_actions_total{action=\"reauthenticate\",result=\"error\"} 0",
    ] {
        assert!(metrics.lines().any(|l| l == line), "{line} missing");
    }
    let client = harness.client();
    for _ in 0..3 {
        let response = client.get_with_token("/Patient/123", "not-a-token").await;
        assert_denied(&harness, &response, 401, Some(INVALID_TOKEN));
    }
    wait_metric(&harness, FIRED_ONCE).await;
    wait_metric(
        &harness,
        "phigate_actions_total{action=\"block\",result=\"ok\"} 1",
    )
    .await;

    let token = harness.token("user/Patient.r");
    let response = client.get_with_token("/Patient/123", &token).await;
    assert_denied(&harness, &response, 403, None);
    assert_no_leak(&response, &[&token, "127.0.0.1"]);
    // A blocked address is refused even where no token is needed.
    assert_denied(&harness, &client.get("/metadata").await, 403, None);
    let (_, metrics) = harness.admin_get("/metrics").await;
    assert!(
        metrics.contains("decision=\"deny\",reason=\"blocked\"} "),
        "{metrics}"
    );
}

#[tokio::test]
async fn reauthentication_refuses_older_tokens_and_accepts_newer_ones() {
    let harness = repeated_failures("      reauthenticate: true\n").await;
    let client = harness.client();
    // The token verifies, so its failures count against its client as well as the address.
    let wrong_scope = harness.token("user/Observation.r");
    for _ in 0..3 {
        let response = client.get_with_token("/Patient/123", &wrong_scope).await;
        assert_eq!(response.status, 403);
    }
    wait_metric(
        &harness,
        "phigate_actions_total{action=\"reauthenticate\",result=\"ok\"} 1",
    )
    .await;

    // P-05: issued before the cut-off refused, without `iat` refused, after it allowed.
    let now = harness.claims("x")["iat"].as_i64().unwrap();
    let mint = |iat: Option<i64>| {
        let mut claims = harness.claims("user/Patient.r");
        match iat {
            Some(iat) => claims["iat"] = json!(iat),
            None => drop(claims.as_object_mut().unwrap().remove("iat")),
        }
        harness.mint(&claims)
    };
    for token in [mint(Some(now - 5)), mint(None)] {
        let response = client.get_with_token("/Patient/123", &token).await;
        assert_denied(&harness, &response, 401, Some(INVALID_TOKEN));
        assert_no_leak(&response, &[&token]);
    }
    // Tokens carry whole seconds, so "after the cut-off" is the next second.
    let newer = mint(Some(now + 1));
    assert_eq!(
        client.get_with_token("/Patient/123", &newer).await.status,
        200
    );
    // The address was never blocked: only re-authentication was asked for.
    assert_eq!(client.get("/metadata").await.status, 200);
}

#[tokio::test]
async fn a_revoked_token_presented_again_blocks_its_client() {
    let issuer =
        phigate::demo::DevIssuer::start(([127, 0, 0, 1], 0).into(), crate::support::ISSUER)
            .await
            .unwrap();
    let claims = issuer.standard_claims(
        "u-1",
        "app-1",
        "user/Patient.r",
        crate::support::AUDIENCE,
        Duration::from_secs(300),
    );
    let revoked = issuer.mint(&claims);
    let list = json!({"version": 1, "entries": [{"jti": claims["jti"], "exp": claims["exp"]}]});
    let harness = Harness::with_issuer(
        Options {
            revocation: "revocation:\n  sources:\n    - file: revoked.json\n".into(),
            files: vec![("revoked.json", list.to_string())],
            extra: "monitor:\n  refused_token_reuse:\n    threshold: 3\n    actions:\n      block: 10m\n"
                .into(),
            ..Options::default()
        },
        issuer,
    )
    .await;
    let client = harness.client();
    for _ in 0..3 {
        let response = client.get_with_token("/Patient/123", &revoked).await;
        assert_denied(&harness, &response, 401, Some(INVALID_TOKEN));
    }
    // The token and its client fire together.
    wait_metric(
        &harness,
        "phigate_detector_firings_total{detector=\"refused_token_reuse\"} 2",
    )
    .await;
    let fresh = harness.token("user/Patient.r");
    let response = client.get_with_token("/Patient/123", &fresh).await;
    assert_denied(&harness, &response, 403, None);
    assert_no_leak(&response, &[&fresh, &revoked]);
    // Another client of the same address is not affected.
    let mut other = harness.claims("user/Patient.r");
    other["client_id"] = json!("app-2");
    let other = harness.mint(&other);
    assert_eq!(
        client.get_with_token("/Patient/123", &other).await.status,
        200
    );
}
