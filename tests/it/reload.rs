//! Policy hot reload: a changed file is picked up without a restart, an invalid one is refused
//! while the old policy keeps serving, and a request in flight finishes under the policy that
//! decided it.

use std::time::Duration;

use crate::support::{Harness, POLICY, eventually_status};

const SEARCH_RULE: &str = "  - name: search-patients\n    methods: [GET]\n    path: /Patient\n    scopes: [user/Patient.rs]\n";

/// Replaces the policy file the way editors and config managers do: write aside, then rename.
fn write_policy(harness: &Harness, text: &str) {
    let aside = harness.dir.path().join("policy.yaml.tmp");
    std::fs::write(&aside, text).unwrap();
    std::fs::rename(&aside, harness.dir.path().join("policy.yaml")).unwrap();
}

#[tokio::test]
async fn a_changed_policy_file_is_picked_up_and_an_invalid_one_refused() {
    let harness = Harness::start().await;
    let token = harness.token("user/Patient.rs user/Patient.r");
    assert_eq!(
        harness
            .client()
            .get_with_token("/Patient", &token)
            .await
            .status,
        403
    );
    write_policy(&harness, &format!("{POLICY}{SEARCH_RULE}"));
    eventually_status(&harness.client(), "/Patient", &token, 200).await;

    write_policy(&harness, "rules:\n  - name: [broken\n");
    tokio::time::sleep(Duration::from_millis(600)).await;
    let mut failures = 0;
    for _ in 0..50 {
        let (_, metrics) = harness.admin_get("/metrics").await;
        failures = metrics
            .lines()
            .find_map(|l| l.strip_prefix("phigate_policy_reload_failures_total "))
            .and_then(|v| v.trim().parse::<u64>().ok())
            .unwrap_or(0);
        if failures > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        failures > 0,
        "the broken policy was not counted as a failed reload"
    );
    // The previous policy keeps serving, every rule of it.
    assert_eq!(
        harness
            .client()
            .get_with_token("/Patient", &token)
            .await
            .status,
        200
    );
    assert_eq!(
        harness
            .client()
            .get_with_token("/Patient/123", &token)
            .await
            .status,
        200
    );

    // A removed rule stops matching once the valid file lands.
    write_policy(&harness, POLICY);
    eventually_status(&harness.client(), "/Patient", &token, 403).await;
}

#[tokio::test]
async fn a_request_in_flight_finishes_under_the_policy_that_decided_it() {
    let harness = Harness::start().await;
    let token = harness.token("user/Patient.r");
    harness.upstream.set_response_delay(Duration::from_secs(2));
    let client = harness.client();
    let in_flight = tokio::spawn({
        let token = token.clone();
        async move {
            client
                .get_with_token("/Patient/123", &token)
                .await
                .status
                .as_u16()
        }
    });
    // Wait until the request has been decided and reached the upstream.
    for _ in 0..100 {
        if !harness.upstream.received().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    write_policy(
        &harness,
        "rules:\n  - name: metadata-only\n    methods: [GET]\n    path: /metadata\n    public: true\n",
    );
    assert_eq!(in_flight.await.unwrap(), 200);
    harness.upstream.set_response_delay(Duration::ZERO);
    eventually_status(&harness.client(), "/Patient/123", &token, 403).await;
}
