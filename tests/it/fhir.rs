//! FHIR-aware policy end to end under policies/smart-v2.yaml: patient compartments enforced on
//! requests and on responses, Bundles checked entry by entry, report-only rollout, and the
//! shipped policy tests run through the binary.

use std::process::Command;

use serde_json::json;

use crate::support::{Harness, Options, PUBLIC_BASE, TestResponse, assert_denied, assert_no_leak};

const SMART_POLICY: &str = include_str!("../../policies/smart-v2.yaml");

async fn smart_harness() -> Harness {
    Harness::with(Options {
        policy: SMART_POLICY.to_owned(),
        ..Options::default()
    })
    .await
}

fn patient_token(harness: &Harness, scope: &str, patient: &str) -> String {
    let mut claims = harness.claims(scope);
    claims["patient"] = json!(patient);
    harness.mint(&claims)
}

#[tokio::test]
async fn a_patient_reads_only_resources_in_its_compartment() {
    let harness = smart_harness().await;
    let token = patient_token(
        &harness,
        "launch/patient patient/Patient.r patient/Observation.rs",
        "123",
    );
    let client = harness.client();
    assert_eq!(
        client.get_with_token("/Patient/123", &token).await.status,
        200
    );
    let own = client
        .get_with_token("/Observation/o-123-lab", &token)
        .await;
    assert_eq!(own.status, 200, "{}", own.text());
    assert_eq!(own.json()["id"], "o-123-lab");
    // The id does not show whose it is: the upstream is asked, and its answer is withheld —
    // answered exactly like a resource that does not exist, so nothing tells them apart.
    let foreign = client
        .get_with_token("/Observation/o-456-lab", &token)
        .await;
    assert_eq!(foreign.status, 404, "{}", foreign.text());
    assert_eq!(foreign.json()["resourceType"], "OperationOutcome");
    assert_no_leak(&foreign, &[&token, "o-456-lab", "Patient/456"]);
    let missing = client
        .get_with_token("/Observation/o-does-not-exist", &token)
        .await;
    assert_eq!(missing.status, foreign.status);
    assert_eq!(missing.text(), foreign.text());
    let header_names = |r: &TestResponse| {
        let mut names: Vec<String> = r.headers.keys().map(|n| n.to_string()).collect();
        names.sort();
        names
    };
    assert_eq!(header_names(&missing), header_names(&foreign));
    harness.upstream.clear_received();
    let response = client.get_with_token("/Patient/456", &token).await;
    assert_denied(
        &harness,
        &response,
        403,
        response
            .headers
            .get("www-authenticate")
            .and_then(|v| v.to_str().ok()),
    );
}

#[tokio::test]
async fn patient_searches_must_be_constrained_to_the_patient() {
    let harness = smart_harness().await;
    let token = patient_token(&harness, "launch/patient patient/Observation.rs", "123");
    let client = harness.client();
    let response = client
        .get_with_token("/Observation?patient=123", &token)
        .await;
    assert_eq!(response.status, 200, "{}", response.text());
    harness.upstream.clear_received();
    for path in [
        "/Observation",
        "/Observation?patient=456",
        "/Observation?patient=123,456",
        "/Observation?patient=456&_include=Observation:performer",
    ] {
        let response = client.get_with_token(path, &token).await;
        assert_eq!(response.status, 403, "{path}");
        assert!(
            harness.upstream.received().is_empty(),
            "{path} reached the upstream"
        );
        assert_no_leak(&response, &[&token, "456"]);
    }
}

#[tokio::test]
async fn a_bundle_with_one_forbidden_entry_is_refused_whole() {
    let harness = smart_harness().await;
    let token = patient_token(&harness, "launch/patient patient/Patient.r", "123");
    let bundle = json!({"resourceType": "Bundle", "type": "batch", "entry": [
        {"request": {"method": "GET", "url": "Patient/123"}},
        {"request": {"method": "GET", "url": "Patient/456"}},
    ]});
    let response = harness.client().post_fhir("/", &token, &bundle).await;
    assert_eq!(response.status, 403, "{}", response.text());
    assert!(harness.upstream.received().is_empty());
}

#[tokio::test]
async fn report_only_forwards_and_counts_would_deny_except_enforce_always_rules() {
    let policy = "mode: report-only\nrules:\n  - name: read-patient\n    methods: [GET]\n    path: /Patient/{id}\n    scopes: [user/Patient.r]\n  - name: read-observation\n    methods: [GET]\n    path: /Observation/{id}\n    scopes: [user/Observation.r]\n    enforce_always: true\n";
    let harness = Harness::with(Options {
        policy: policy.to_owned(),
        ..Options::default()
    })
    .await;
    let token = harness.token("user/Condition.r");
    let response = harness
        .client()
        .get_with_token("/Patient/123", &token)
        .await;
    assert_eq!(response.status, 200, "report-only must forward");
    let response = harness
        .client()
        .get_with_token("/Observation/o-123-lab", &token)
        .await;
    assert_eq!(response.status, 403, "enforce_always must enforce");
    let (_, metrics) = harness.admin_get("/metrics").await;
    assert!(
        metrics.contains("phigate_decisions_total{rule=\"read-patient\",decision=\"would_deny\",reason=\"insufficient_scope\"} 1"),
        "{metrics}"
    );
}

#[test]
fn the_shipped_policies_pass_their_tests() {
    for tests in ["smart-v2.tests.yaml", "example.tests.yaml"] {
        let file = format!("{}/policies/{tests}", env!("CARGO_MANIFEST_DIR"));
        let output = Command::new(env!("CARGO_BIN_EXE_phigate"))
            .args(["test", &file])
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "{stdout}{}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(stdout.contains(" 0 failed"), "{stdout}");
    }
}

#[test]
fn policy_test_failures_show_expected_and_actual() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("p.yaml"), SMART_POLICY).unwrap();
    let cases = "policy: p.yaml\ncases:\n  - name: wrong expectation\n    request: {method: GET, path: /Patient/456}\n    claims: {scope: \"launch/patient patient/Patient.r\", patient: \"123\"}\n    expect: {decision: allow}\n";
    std::fs::write(dir.path().join("t.yaml"), cases).unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_phigate"))
        .arg("test")
        .arg(dir.path().join("t.yaml"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("FAIL wrong expectation")
            && stdout.contains("expected  allow")
            && stdout.contains("actual    deny"),
        "{stdout}"
    );
    assert!(stdout.contains("0 passed, 1 failed"), "{stdout}");
}

// Multi-threaded: the blocking `explain` process fetches the JWKS from this test's issuer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explain_names_rule_interaction_scopes_and_decision() {
    let harness = smart_harness().await;
    let claims = harness.dir.path().join("claims.json");
    std::fs::write(
        &claims,
        r#"{"scope": "launch/patient patient/Observation.rs", "patient": "123"}"#,
    )
    .unwrap();
    let run = |path: &str| {
        Command::new(env!("CARGO_BIN_EXE_phigate"))
            .args(["explain", "--config"])
            .arg(&harness.config_file)
            .args(["--method", "GET", "--path", path, "--claims"])
            .arg(&claims)
            .output()
            .unwrap()
    };
    let allowed = run("/Observation?patient=123");
    let text = String::from_utf8_lossy(&allowed.stdout);
    assert!(allowed.status.success(), "{text}");
    for expected in [
        "rule         fhir-smart",
        "interaction",
        "Observation",
        "token scopes launch/patient patient/Observation.rs",
        "decision     allow",
        // What the gateway will enforce on the answer, and the canonical form forwarded.
        "answer       every resource returned must be the launch patient's own record",
        "forwarded as /Observation?patient=123",
    ] {
        assert!(text.contains(expected), "{expected} missing:\n{text}");
    }
    let writer = harness.dir.path().join("writer.json");
    std::fs::write(
        &writer,
        r#"{"scope": "launch/patient patient/Observation.d", "patient": "123"}"#,
    )
    .unwrap();
    let delete = Command::new(env!("CARGO_BIN_EXE_phigate"))
        .args(["explain", "--config"])
        .arg(&harness.config_file)
        .args([
            "--method",
            "DELETE",
            "--path",
            "/Observation/o-123-lab",
            "--claims",
        ])
        .arg(&writer)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&delete.stdout);
    assert!(
        text.contains("before       the resource is read first and must be the launch patient's"),
        "{text}"
    );
    let denied = run("/Observation?patient=456");
    let text = String::from_utf8_lossy(&denied.stdout);
    assert_eq!(denied.status.code(), Some(1));
    assert!(
        text.contains("decision     deny: compartment_violation"),
        "{text}"
    );
    let token = patient_token(&harness, "launch/patient patient/Observation.rs", "123");
    let verified = Command::new(env!("CARGO_BIN_EXE_phigate"))
        .args(["explain", "--config"])
        .arg(&harness.config_file)
        .args(["--path", "/Observation?patient=123", "--token", &token])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&verified.stdout);
    assert!(
        verified.status.success() && text.contains("decision     allow"),
        "{text}{}",
        String::from_utf8_lossy(&verified.stderr)
    );
    assert!(!text.contains(&token), "explain echoes the token");
    assert!(
        harness.upstream.received().is_empty(),
        "explain must not contact the upstream"
    );
}

#[tokio::test]
async fn patient_search_parameter_names_are_canonical() {
    let harness = smart_harness().await;
    let token = patient_token(
        &harness,
        "launch/patient patient/Patient.r patient/Observation.rs",
        "123",
    );
    let client = harness.client();
    for target in [
        "/Observation?PATIENT=456",
        "/Observation?Subject=Patient/456",
        "/Observation?patient=123&Patient=456",
        "/Observation?patient=123&pat%00ient=456",
        "/Observation?patient=123&patient%20=456",
    ] {
        let response = client.get_with_token(target, &token).await;
        assert_denied(
            &harness,
            &response,
            400,
            Some("Bearer realm=\"phigate\", error=\"invalid_request\""),
        );
        assert_no_leak(&response, &[&token, "456"]);
    }
    // A compartment search names its patient in the path; a parameter may not contradict it.
    let response = client
        .get_with_token("/Patient/123/Observation?subject=Patient/456", &token)
        .await;
    assert_eq!(response.status, 403, "{}", response.text());
    assert!(harness.upstream.received().is_empty());
    let own = client
        .get_with_token("/Patient/123/Observation?subject=Patient/123", &token)
        .await;
    assert_eq!(own.status, 200, "{}", own.text());
}

#[tokio::test]
async fn an_answer_too_large_to_check_is_the_upstreams_502() {
    let harness = smart_harness().await;
    let token = patient_token(
        &harness,
        "launch/patient patient/Patient.r patient/Observation.rs",
        "123",
    );
    harness
        .upstream
        .set_mode(phigate::demo::UpstreamMode::Oversized(11 * 1024 * 1024));
    let response = harness
        .client()
        .get_with_token("/Observation/o-123-big", &token)
        .await;
    assert_eq!(response.status, 502, "{} bytes", response.body.len());
    assert!(response.headers.get("www-authenticate").is_none());
    assert!(response.body.len() < 1024);
    let (_, metrics) = harness.admin_get("/metrics").await;
    assert!(
        metrics.contains("decision=\"error\",reason=\"response_too_large\""),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_patient_read_scope_cannot_start_an_export_of_other_types() {
    let harness = smart_harness().await;
    let client = harness.client();
    let user = harness.token("user/Patient.rs");
    for path in [
        "/Patient/$export?_type=Observation",
        "/Patient/$export",
        "/$export",
    ] {
        let response = client.get_with_token(path, &user).await;
        assert_eq!(response.status, 403, "{path}: {}", response.text());
        assert!(harness.upstream.received().is_empty(), "{path}");
        assert_no_leak(&response, &[&user]);
    }
    let service = harness.token("system/Patient.rs system/Observation.rs");
    let allowed = client
        .get_with_token("/Group/g1/$export?_type=Patient,Observation", &service)
        .await;
    assert_ne!(allowed.status, 403, "{}", allowed.text());
    assert_eq!(harness.upstream_paths().len(), 1);
}

/// The path and query of a public URL, to request it through the test client.
fn through_gateway(url: &str) -> &str {
    url.strip_prefix(PUBLIC_BASE)
        .unwrap_or_else(|| panic!("{url} is not behind the gateway"))
}

fn next_link(body: &serde_json::Value) -> String {
    body["link"]
        .as_array()
        .and_then(|links| links.iter().find(|l| l["relation"] == "next"))
        .and_then(|l| l["url"].as_str())
        .expect("a next link")
        .to_owned()
}

#[tokio::test]
async fn opaque_page_links_are_sealed_to_the_token_that_ran_the_search() {
    let harness = smart_harness().await;
    let client = harness.client();
    let token = patient_token(&harness, "launch/patient patient/Observation.rs", "123");
    let first = client
        .get_with_token("/Observation?patient=123&_count=1", &token)
        .await;
    assert_eq!(first.status, 200, "{}", first.text());
    let next = next_link(&first.json());
    assert!(
        next.starts_with(&format!("{PUBLIC_BASE}/?_getpages=page1")),
        "{next}"
    );
    assert!(next.contains("&_phigate_seal="), "{next}");
    // Followed by the same token: the page is checked like the search, 456's data removed.
    let page = client.get_with_token(through_gateway(&next), &token).await;
    assert_eq!(page.status, 200, "{}", page.text());
    assert!(!page.text().contains("Patient/456"), "{}", page.text());
    assert!(page.text().contains("Patient/123"));
    assert!(next_link(&page.json()).contains("_phigate_seal="));
    let forwarded = harness.upstream_paths().last().unwrap().1.clone();
    assert_eq!(forwarded, "/fhir/?_getpages=page1&_getpagesoffset=1");
    // Another patient's token, an edited link, or no seal at all: refused, nothing forwarded.
    harness.upstream.clear_received();
    let other = patient_token(&harness, "launch/patient patient/Observation.rs", "456");
    let edited = next.replace("_getpagesoffset=1", "_getpagesoffset=2");
    for (path, token) in [
        (through_gateway(&next), other.as_str()),
        (through_gateway(&edited), token.as_str()),
        ("/?_getpages=page1&_getpagesoffset=1", token.as_str()),
    ] {
        let response = client.get_with_token(path, token).await;
        assert_eq!(response.status, 403, "{path}: {}", response.text());
        assert_no_leak(&response, &[token, "Patient/456"]);
    }
    assert!(harness.upstream.received().is_empty());
}

#[tokio::test]
async fn an_export_status_and_its_files_belong_to_the_client_that_started_it() {
    let harness = smart_harness().await;
    let client = harness.client();
    let service = harness.token("system/*.rs");
    let kick_off = client.get_with_token("/$export", &service).await;
    assert_eq!(kick_off.status, 202, "{}", kick_off.text());
    let status_url = kick_off.headers["content-location"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        status_url.starts_with(&format!(
            "{PUBLIC_BASE}/$export-poll-status?_jobId=job1&_phigate_seal="
        )),
        "{status_url}"
    );
    let status = client
        .get_with_token(through_gateway(&status_url), &service)
        .await;
    assert_eq!(status.status, 200, "{}", status.text());
    let file_url = status.json()["output"][0]["url"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        file_url.starts_with(&format!(
            "{PUBLIC_BASE}/bulk/job1/Patient.ndjson?_phigate_seal="
        )),
        "{file_url}"
    );
    let file = client
        .get_with_token(through_gateway(&file_url), &service)
        .await;
    assert_eq!(file.status, 200);
    assert!(file.text().contains("\"resourceType\":\"Patient\""));
    // Another client with the same scopes cannot poll, download or cancel.
    let mut claims = harness.claims("system/*.rs");
    claims["client_id"] = serde_json::json!("another-service");
    claims["sub"] = serde_json::json!("another-service");
    let other = harness.mint(&claims);
    harness.upstream.clear_received();
    for (method, url) in [
        (http::Method::GET, &status_url),
        (http::Method::GET, &file_url),
        (http::Method::DELETE, &status_url),
    ] {
        let response = client
            .send(
                method.clone(),
                through_gateway(url),
                &[("authorization", &format!("Bearer {other}"))],
                bytes::Bytes::new(),
            )
            .await;
        assert_eq!(response.status, 403, "{method} {url}");
    }
    // Unsealed, the status URL is not a FHIR interaction anyone may call.
    let unsealed = client
        .get_with_token("/$export-poll-status?_jobId=job1", &service)
        .await;
    assert_eq!(unsealed.status, 403);
    assert!(harness.upstream.received().is_empty());
    // The client that started it may cancel it; a file link does not cancel anything.
    let cancel = client
        .send(
            http::Method::DELETE,
            through_gateway(&status_url),
            &[("authorization", &format!("Bearer {service}"))],
            bytes::Bytes::new(),
        )
        .await;
    assert_eq!(cancel.status, 202);
    let wrong_method = client
        .send(
            http::Method::DELETE,
            through_gateway(&file_url),
            &[("authorization", &format!("Bearer {service}"))],
            bytes::Bytes::new(),
        )
        .await;
    assert_eq!(wrong_method.status, 403);
}
