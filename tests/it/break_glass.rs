//! Break-glass (emergency) access end to end: granted only with the break-glass scope, a token
//! issued within `max_duration` and a justification header; refused otherwise with nothing
//! forwarded; every grant counted in `phigate_break_glass_total`, counted as `reason="break_glass"`
//! and announced by a WARN log line carrying the justification, which no response echoes.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::Method;

use crate::support::process::{run_binary, terminate};
use crate::support::{
    Harness, Options, TestClient, assert_denied, assert_no_leak, break_glass_policy,
};

const SCOPE: &str = "phigate/break-glass";
const REASON: &str = "ED bay 2: unconscious patient, allergies needed";

async fn harness() -> Harness {
    Harness::with(Options {
        policy: break_glass_policy(),
        ..Options::default()
    })
    .await
}

/// A token for `scope` issued `age_secs` ago and valid for five more minutes.
fn token(harness: &Harness, scope: &str, age_secs: u64) -> String {
    let mut claims = harness.claims(scope);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    claims["iat"] = (now - age_secs).into();
    claims["exp"] = (now + 300).into();
    harness.mint(&claims)
}

async fn get(
    client: &TestClient,
    token: &str,
    reason: Option<&str>,
) -> crate::support::client::TestResponse {
    let bearer = format!("Bearer {token}");
    let mut headers = vec![("authorization", bearer.as_str())];
    if let Some(reason) = reason {
        headers.push(("x-break-glass-reason", reason));
    }
    client
        .send(Method::GET, "/Patient/123", &headers, Bytes::new())
        .await
}

fn sample(metrics: &str, series: &str) -> Option<f64> {
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|value| value.parse().ok())
}

const FORBIDDEN: &str = "Bearer realm=\"phigate\", error=\"insufficient_scope\"";
const COUNTER: &str = "phigate_break_glass_total{rule=\"emergency-read\"}";

#[tokio::test]
async fn break_glass_with_scope_justification_and_fresh_token_is_allowed_and_counted() {
    let harness = harness().await;
    assert_eq!(
        sample(&harness.admin_get("/metrics").await.1, COUNTER),
        Some(0.0)
    );
    let token = token(&harness, SCOPE, 5);
    let response = get(&harness.client(), &token, Some(REASON)).await;
    assert_eq!(response.status, 200, "{}", response.text());
    assert_no_leak(&response, &[&token, REASON, "ED bay"]);
    // An ordinary grant sending the header is not break-glass, and is not counted as one.
    let ordinary = self::token(&harness, "user/Patient.r", 5);
    assert_eq!(
        get(&harness.client(), &ordinary, Some(REASON)).await.status,
        200
    );
    let received = harness.upstream.received();
    assert_eq!(received.len(), 2);
    // The justification is phigate's audit data: the upstream never receives it.
    for request in &received {
        assert!(
            request
                .headers
                .iter()
                .all(|(name, value)| name != "x-break-glass-reason" && !value.contains("ED bay")),
            "{:?}",
            request.headers
        );
    }
    let metrics = harness.admin_get("/metrics").await.1;
    assert_eq!(sample(&metrics, COUNTER), Some(1.0), "{metrics}");
    let ordinary =
        "phigate_decisions_total{rule=\"read-patient\",decision=\"allow\",reason=\"ok\"}";
    assert_eq!(sample(&metrics, ordinary), Some(1.0), "{metrics}");
    let decision =
        "phigate_decisions_total{rule=\"read-patient\",decision=\"allow\",reason=\"break_glass\"}";
    assert_eq!(sample(&metrics, decision), Some(1.0), "{metrics}");
    assert!(!metrics.contains("ED bay"));
}

#[tokio::test]
async fn break_glass_without_justification_is_403_and_nothing_is_forwarded() {
    let harness = harness().await;
    let token = token(&harness, SCOPE, 5);
    let response = get(&harness.client(), &token, None).await;
    assert_denied(&harness, &response, 403, Some(FORBIDDEN));
    let response = get(&harness.client(), &token, Some("  ")).await;
    assert_denied(&harness, &response, 403, Some(FORBIDDEN));
    let metrics = harness.admin_get("/metrics").await.1;
    assert_eq!(sample(&metrics, COUNTER), Some(0.0));
    let refused = "phigate_decisions_total{rule=\"read-patient\",decision=\"deny\",reason=\"break_glass_justification_missing\"}";
    assert_eq!(sample(&metrics, refused), Some(2.0), "{metrics}");
}

#[tokio::test]
async fn break_glass_with_a_stale_token_is_403_without_echoing_the_justification() {
    let harness = harness().await;
    // Issued two minutes ago: within max_lifetime (15m), past break-glass max_duration (1m).
    let token = token(&harness, SCOPE, 120);
    let response = get(&harness.client(), &token, Some(REASON)).await;
    assert_denied(&harness, &response, 403, Some(FORBIDDEN));
    assert_no_leak(&response, &[&token, REASON, "ED bay"]);
    let metrics = harness.admin_get("/metrics").await.1;
    let refused = "phigate_decisions_total{rule=\"read-patient\",decision=\"deny\",reason=\"break_glass_token_stale\"}";
    assert_eq!(sample(&metrics, refused), Some(1.0), "{metrics}");
    assert_eq!(sample(&metrics, COUNTER), Some(0.0));
}

#[tokio::test]
async fn a_justification_without_the_break_glass_scope_is_403() {
    let harness = harness().await;
    let token = token(&harness, "user/Observation.rs", 5);
    let response = get(&harness.client(), &token, Some(REASON)).await;
    assert_denied(&harness, &response, 403, Some(FORBIDDEN));
    assert_no_leak(&response, &[&token, REASON]);
    let metrics = harness.admin_get("/metrics").await.1;
    let refused = "phigate_decisions_total{rule=\"read-patient\",decision=\"deny\",reason=\"break_glass_scope_missing\"}";
    assert_eq!(sample(&metrics, refused), Some(1.0), "{metrics}");
}

#[tokio::test]
async fn an_overlong_justification_is_400() {
    let harness = harness().await;
    let token = token(&harness, SCOPE, 5);
    let long = "x".repeat(phigate::policy::MAX_JUSTIFICATION + 1);
    let response = get(&harness.client(), &token, Some(&long)).await;
    assert_denied(
        &harness,
        &response,
        400,
        Some("Bearer realm=\"phigate\", error=\"invalid_request\""),
    );
    assert_no_leak(&response, &[&token, &long]);
}

#[tokio::test]
async fn a_break_glass_grant_is_flagged_in_the_request_line_and_a_warn_alert_line() {
    let harness = harness().await;
    let config = harness.dir.path().join("run.yaml");
    std::fs::copy(&harness.config_file, &config).unwrap();
    let (child, mut log, addr) = run_binary(&config).await;
    let client = TestClient::new(addr, &harness.ca, None, false);
    let token = token(&harness, SCOPE, 5);
    // The binary's keys may still be loading: wait for the grant itself.
    let mut status = 0;
    for _ in 0..100 {
        status = get(&client, &token, Some(REASON)).await.status.as_u16();
        if status == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(status, 200);
    let alert = log.line("BREAK-GLASS access granted").await;
    let request = log
        .find(|line| line["message"] == "request" && line["break_glass"] == true)
        .await;
    assert_eq!(alert["level"], "WARN", "{alert}");
    assert_eq!(alert["break_glass.rule"], "emergency-read");
    assert_eq!(alert["break_glass.justification"], REASON);
    assert_eq!(alert["subject"], "u-1");
    assert_eq!(request["denial.reason"], "break_glass");
    let _ = terminate(child).await;
    for line in log.all().await {
        assert!(!line.to_string().contains(&token), "token in log: {line}");
    }
}

// `explain` fetches the JWKS this test's runtime serves while the test waits for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explain_and_policy_tests_show_a_break_glass_grant_as_the_gateway_decides_it() {
    let harness = harness().await;
    let explain = |token: &str, headers: &[&str]| {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_phigate"));
        command
            .args(["explain", "--config"])
            .arg(&harness.config_file)
            .args(["--path", "/Patient/123", "--token", token]);
        for header in headers {
            command.args(["--header", header]);
        }
        command.output().unwrap()
    };
    let fresh = token(&harness, SCOPE, 0);
    let justified = format!("X-Break-Glass-Reason: {REASON}");
    let output = explain(&fresh, &[&justified]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    assert!(
        stdout.contains("break-glass  granted by emergency-read"),
        "{stdout}"
    );
    assert!(
        !stdout.contains(REASON) && !stdout.contains(&fresh),
        "{stdout}"
    );
    let output = explain(&fresh, &[]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    assert!(
        stdout.contains("decision     deny: break_glass_justification_missing"),
        "{stdout}"
    );
    let output = explain(&fresh, &["no colon here"]);
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    assert!(String::from_utf8_lossy(&output.stderr).contains("--header takes 'Name: value'"));

    // The same decisions from a test file, pinned with `break_glass`.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("p.yaml"), break_glass_policy()).unwrap();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let claims = |scope: &str| format!("{{scope: \"{scope}\", sub: u-1, iat: {now}}}");
    let cases = [
        (
            "emergency",
            claims(SCOPE),
            format!("headers: {{X-Break-Glass-Reason: \"{REASON}\"}}"),
            "{decision: allow, break_glass: true}",
        ),
        (
            "unjustified",
            claims(SCOPE),
            String::new(),
            "{decision: deny, reason: break_glass_justification_missing}",
        ),
        (
            "ordinary",
            claims("user/Patient.r"),
            String::new(),
            "{decision: allow, break_glass: false}",
        ),
    ]
    .map(|(name, claims, headers, expect)| {
        format!(
            "  - name: {name}\n    request: {{method: GET, path: /Patient/123, {headers}}}\n    claims: {claims}\n    expect: {expect}\n"
        )
    });
    let file = dir.path().join("p.tests.yaml");
    std::fs::write(&file, format!("policy: p.yaml\ncases:\n{}", cases.concat())).unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_phigate"))
        .arg("test")
        .arg(&file)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(0), "{stdout}");
    assert!(stdout.contains("3 passed, 0 failed"), "{stdout}");
    // A header that cannot be sent stops the file, naming where it is.
    let bad = "policy: p.yaml\ncases:\n  - name: bad\n    request: {method: GET, path: /Patient/123, headers: {\"bad name\": x}}\n    expect: {decision: deny}\n";
    std::fs::write(&file, bad).unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_phigate"))
        .arg("test")
        .arg(&file)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr.contains("p.tests.yaml:4:") && stderr.contains("is not a header name"),
        "{stderr}"
    );
}
