//! Policy hot reload: a changed file is picked up without a restart, an invalid one is refused
//! while the old policy keeps serving, and a request in flight finishes under the policy that
//! decided it. Warnings (a weaker rule overlapping a stronger one) are logged, never refused.

use std::time::Duration;

use crate::support::process::Lines;
use crate::support::{Harness, Options, POLICY, eventually_status};

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
    crate::support::eventually(Duration::from_secs(15), || async {
        reload_failures(&harness).await > 0
    })
    .await;
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

/// Reads the binary's JSON log until the next `policy warning` line.
async fn next_policy_warning(lines: &mut Lines) -> serde_json::Value {
    loop {
        let line = lines.next().await.expect("the gateway is still logging");
        let value: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
        if value["message"] == "policy warning" {
            return value;
        }
    }
}

#[tokio::test]
async fn policy_warnings_are_logged_at_start_and_after_a_reload() {
    // A public rule after the scoped read-patient rule, over the same paths: a warning only.
    let public_patients =
        "  - name: public-patients\n    methods: [GET]\n    path: /Patient/**\n    public: true\n";
    let harness = Harness::with(Options {
        policy: format!("{POLICY}{public_patients}"),
        ..Default::default()
    })
    .await;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_phigate"))
        .args(["run", "--config"])
        .arg(&harness.config_file)
        .env("RUST_LOG", "info")
        .stderr(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = Lines::of(child.stderr.take().unwrap());
    let warning = next_policy_warning(&mut lines).await;
    let problem = warning["problem"].as_str().unwrap();
    assert!(
        problem.contains("\"public-patients\"") && problem.contains("it is public"),
        "{warning}"
    );
    assert_eq!(warning["policy.line"], 22, "{warning}");

    // The reloaded policy serves despite its warning, which is logged too.
    let lower = "  - name: lower-patients\n    methods: [GET]\n    path: /patient/{id}\n    scopes: [user/Patient.r]\n";
    write_policy(&harness, &format!("{POLICY}{lower}"));
    let warning = next_policy_warning(&mut lines).await;
    let problem = warning["problem"].as_str().unwrap();
    assert!(
        problem.contains("\"lower-patients\"") && problem.contains("letter case"),
        "{warning}"
    );
    crate::support::stop_binary_gateway(child).await;
}

/// `phigate_policy_reload_failures_total` as `/metrics` shows it.
async fn reload_failures(harness: &Harness) -> u64 {
    let (_, metrics) = harness.admin_get("/metrics").await;
    metrics
        .lines()
        .find_map(|l| l.strip_prefix("phigate_policy_reload_failures_total "))
        .and_then(|v| v.trim().parse::<u64>().ok())
        .unwrap_or(0)
}

#[tokio::test]
async fn a_bad_policy_in_place_is_retried_on_change_only() {
    let harness = Harness::start().await;
    let token = harness.token("user/Patient.rs user/Patient.r");
    write_policy(&harness, "rules:\n  - name: [broken\n");
    crate::support::eventually(Duration::from_secs(15), || async {
        reload_failures(&harness).await == 1
    })
    .await;
    // Room for several debounced retries, had the reload's own read of the file triggered one.
    tokio::time::sleep(Duration::from_secs(1)).await;
    // Neighbours changing (a certificate renewed, a config edited) are no reason to read the
    // policy again, and neither is the reload's own read of the bad file.
    for n in 0..5 {
        std::fs::write(harness.dir.path().join("neighbour.txt"), format!("{n}")).unwrap();
    }
    write_policy(&harness, &format!("{POLICY}{SEARCH_RULE}"));
    eventually_status(&harness.client(), "/Patient", &token, 200).await;
    let failures = reload_failures(&harness).await;
    assert_eq!(failures, 1, "the bad file was read again without a change");
}
