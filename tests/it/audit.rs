//! The audit trail end to end: every decision, allowed or denied, becomes one sealed line with
//! the documented fields and no token or query value; `phigate audit verify` accepts the trail
//! and names the first bad record of each kind of tampering; `audit export` turns a verified
//! trail into FHIR AuditEvents and refuses an edited one; whole lines cut from the end fail
//! `verify` against the trail's head, and a restart on such a file says so in the chain;
//! shutdown writes every queued record and a restart continues the chain; and a queue with no
//! room refuses requests with 503 `audit_unavailable` before anything reaches the upstream.

use std::ffi::OsStr;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use phigate::config::Config;
use phigate::proxy::Gateway;
use serde_json::{Value, json};

use crate::support::{
    Harness, Options, TestClient, assert_denied, assert_no_leak, break_glass_policy,
    country_database, eventually, get_patient_allowed,
};

const KEY: &str = "an audit key of more than thirty-two bytes";

fn audited(extra: &str) -> Options {
    Options {
        extra: format!("audit:\n  key_file: audit.key\n{extra}"),
        files: vec![("audit.key", KEY.into())],
        ..Options::default()
    }
}

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// Runs `phigate audit verify` on `files`: (exit code, stdout + stderr).
fn verify(key: &Path, files: &[&Path]) -> (i32, String) {
    verify_with(key, &[], files)
}

/// Runs `phigate audit verify` with `options` (`--head FILE`, `--no-head`) on `files`.
fn verify_with(key: &Path, options: &[&OsStr], files: &[&Path]) -> (i32, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_phigate"))
        .args(["audit", "verify", "--key-file"])
        .arg(key)
        .args(options)
        .args(files)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.code().unwrap(), text)
}

#[tokio::test]
async fn every_decision_is_a_sealed_line_that_audit_verify_accepts_and_tampering_breaks() {
    let harness = Harness::with(audited("  file: audit.log\n")).await;
    let (_, metrics) = harness.admin_get("/metrics").await;
    for series in [
        "phigate_audit_queue_depth 0",
        "phigate_audit_records_total 0",
        "phigate_audit_refused_total 0",
        "phigate_audit_dropped_total 0",
    ] {
        assert!(metrics.contains(series), "{series} missing: {metrics}");
    }
    let client = harness.client();
    let claims = harness.claims("system/Patient.r system/Observation.rs");
    let token = harness.mint(&claims);
    let narrow_claims = harness.claims("system/Observation.rs");
    let narrow = harness.mint(&narrow_claims);
    let asked = [
        ("/Patient/123", Some((&token, &claims)), 200),
        (
            "/Observation?code=private-value-4711",
            Some((&token, &claims)),
            200,
        ),
        ("/Patient/123", None, 401),
        ("/Patient/123", Some((&narrow, &narrow_claims)), 403),
    ];
    for (path, identity, status) in asked {
        let response = match identity {
            Some((token, _)) => client.get_with_token(path, token).await,
            None => client.get(path).await,
        };
        assert_eq!(response.status, status, "{path}");
    }

    let file = harness.dir.path().join("audit.log");
    eventually(Duration::from_secs(10), || async {
        lines(&file).len() == 4
    })
    .await;
    let text = std::fs::read_to_string(&file).unwrap();
    for secret in [token.as_str(), narrow.as_str(), "private-value-4711"] {
        assert!(!text.contains(secret), "the trail holds {secret:?}");
    }
    let records: Vec<Value> = lines(&file)
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    for (n, (record, (_, identity, status))) in records.iter().zip(asked).enumerate() {
        for field in [
            "time",
            "request_id",
            "source",
            "client_id",
            "subject",
            "patient",
            "issuer",
            "jti",
            "cert_thumbprint",
            "binding",
            "rule",
            "interaction",
            "resource_type",
            "resource_id",
            "status",
            "reason",
            "upstream_status",
            "latency_ms",
            "prev",
            "mac",
        ] {
            assert!(record.get(field).is_some(), "{field} missing: {record}");
        }
        assert_eq!(record["seq"], n as u64, "{record}");
        assert_eq!(record["status"], status, "{record}");
        assert_eq!(record["source"], "127.0.0.1");
        if let Some((_, claims)) = identity {
            assert_eq!(record["jti"], claims["jti"], "{record}");
            assert_eq!(record["issuer"], claims["iss"]);
            assert_eq!(record["subject"], "u-1");
            assert_eq!(record["client_id"], "app-1");
        }
    }
    assert_eq!(records[0]["decision"], "allow");
    assert_eq!(records[2]["reason"], "credentials_missing");
    assert_eq!(records[3]["reason"], "insufficient_scope");
    assert_eq!(records[1]["prev"], records[0]["mac"]);

    let key = harness.dir.path().join("audit.key");
    let (code, output) = verify(&key, &[&file]);
    assert_eq!(code, 0, "{output}");
    assert!(output.contains("ok: 4 records intact"), "{output}");

    let original = lines(&file);
    // A record added without the key: the next number, and a MAC that cannot be right.
    let forged = original[3].replace("\"seq\":3", "\"seq\":4");
    let cases: Vec<(&str, Vec<String>, usize)> = vec![
        (
            "edited",
            vec![
                original[0].clone(),
                original[1].replace("\"status\":200", "\"status\":403"),
                original[2].clone(),
            ],
            2,
        ),
        ("dropped", vec![original[0].clone(), original[2].clone()], 2),
        (
            "reordered",
            vec![
                original[0].clone(),
                original[2].clone(),
                original[1].clone(),
            ],
            2,
        ),
        ("forged", [&original[..], &[forged]].concat(), 5),
    ];
    let tampered = harness.dir.path().join("tampered.log");
    // Checked against the real trail's head: each problem is named where it is.
    let head = harness.dir.path().join("audit.log.head");
    let with_head = [OsStr::new("--head"), head.as_os_str()];
    for (kind, lines, bad) in cases {
        std::fs::write(&tampered, lines.join("\n") + "\n").unwrap();
        let (code, output) = verify_with(&key, &with_head, &[&tampered]);
        assert_eq!(code, 1, "{kind}: {output}");
        assert!(
            output.contains(&format!("tampered.log:{bad}:")),
            "{kind}: {output}"
        );
    }
    // A half line: the file was cut inside its last record.
    std::fs::write(&tampered, &text[..text.len() - 20]).unwrap();
    let (code, output) = verify_with(&key, &with_head, &[&tampered]);
    assert_eq!(code, 1, "{output}");
    assert!(output.contains("tampered.log:4: truncated"), "{output}");
}

/// A gateway whose one audit slot is taken: the trail is a pipe nobody reads, so the writer
/// blocks opening it, and a first (denied) request's record holds the slot. The folder holding
/// the pipe comes back with the harness.
async fn full_queue(when_full: &str) -> (tempfile::TempDir, Harness) {
    let fifo_dir = tempfile::tempdir().unwrap();
    let fifo = fifo_dir.path().join("audit.pipe");
    let made = Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(made.success());
    let extra = format!(
        "  file: {}\n  queue: 1\n  when_full: {when_full}\n",
        fifo.display()
    );
    let harness = Harness::with(audited(&extra)).await;
    assert_eq!(harness.client().get("/Patient/123").await.status, 401);
    (fifo_dir, harness)
}

#[tokio::test]
async fn a_full_audit_queue_refuses_requests_before_the_upstream() {
    let (_fifo, harness) = full_queue("refuse").await;
    let token = harness.token("system/Patient.r");
    let response = harness
        .client()
        .get_with_token("/Patient/123", &token)
        .await;
    assert_denied(&harness, &response, 503, None);
    assert_eq!(response.json()["issue"][0]["code"], "transient");
    assert_no_leak(&response, &[&token, "u-1", "app-1"]);
    let (_, metrics) = harness.admin_get("/metrics").await;
    for series in [
        "phigate_audit_refused_total 1",
        "phigate_audit_queue_depth 1",
        // The refusal itself has no room to be written either.
        "phigate_audit_dropped_total 1",
        "reason=\"audit_unavailable\"",
    ] {
        assert!(metrics.contains(series), "{series} missing: {metrics}");
    }
}

#[tokio::test]
async fn serve_unaudited_forwards_with_no_record_when_the_queue_is_full() {
    let (_fifo, harness) = full_queue("serve_unaudited").await;
    let token = harness.token("system/Patient.r");
    let response = harness
        .client()
        .get_with_token("/Patient/123", &token)
        .await;
    assert_eq!(response.status, 200);
    assert_eq!(harness.upstream.received().len(), 1);
    let (_, metrics) = harness.admin_get("/metrics").await;
    assert!(
        metrics.contains("phigate_audit_refused_total 0"),
        "{metrics}"
    );
    assert!(
        metrics.contains("phigate_audit_dropped_total 1"),
        "{metrics}"
    );
}

#[tokio::test]
async fn audit_export_writes_fhir_audit_events_for_a_trail_that_verifies() {
    let harness = Harness::with(Options {
        policy: include_str!("../../policies/smart-v2.yaml").to_owned(),
        ..audited("  file: audit.log\n")
    })
    .await;
    let mut claims = harness.claims("launch/patient patient/Patient.r patient/Observation.rs");
    claims["patient"] = json!("123");
    let token = harness.mint(&claims);
    let client = harness.client();
    let read = client
        .get_with_token("/Observation/o-123-lab", &token)
        .await;
    assert_eq!(read.status, 200, "{}", read.text());
    assert_eq!(client.get("/Patient/123").await.status, 401);
    let file = harness.dir.path().join("audit.log");
    eventually(Duration::from_secs(10), || async {
        lines(&file).len() == 2
    })
    .await;

    let key = harness.dir.path().join("audit.key");
    let head = harness.dir.path().join("audit.log.head");
    let export = |files: &[&Path]| {
        Command::new(env!("CARGO_BIN_EXE_phigate"))
            .args(["audit", "export", "--key-file"])
            .arg(&key)
            .arg("--head")
            .arg(&head)
            .args(files)
            .output()
            .unwrap()
    };
    let output = export(&[&file]);
    assert!(output.status.success(), "{output:?}");
    let events: Vec<Value> = String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(events.len(), 2);
    let read = &events[0];
    assert_eq!(read["resourceType"], "AuditEvent");
    assert_eq!(read["type"]["code"], "rest");
    assert_eq!(read["subtype"][0]["code"], "read");
    assert_eq!(
        (&read["action"], &read["outcome"]),
        (&json!("R"), &json!("0"))
    );
    assert_eq!(read["agent"][0]["who"]["identifier"]["value"], "u-1");
    assert_eq!(read["agent"][1]["who"]["identifier"]["value"], "app-1");
    assert_eq!(read["entity"][0]["what"]["reference"], "Patient/123");
    assert_eq!(
        read["entity"][1]["what"]["reference"],
        "Observation/o-123-lab"
    );
    assert_eq!(
        (&events[1]["outcome"], &events[1]["outcomeDesc"]),
        (&json!("4"), &json!("credentials_missing"))
    );
    assert!(!events.iter().any(|e| e.to_string().contains(&token)));

    // An edited trail is not evidence: nothing of it is exported.
    let tampered = harness.dir.path().join("tampered.log");
    let text = std::fs::read_to_string(&file).unwrap();
    std::fs::write(&tampered, text.replace("\"status\":401", "\"status\":200")).unwrap();
    let output = export(&[&tampered]);
    assert_eq!(output.status.code(), Some(1));
    assert!(output.stdout.is_empty());
    assert!(String::from_utf8_lossy(&output.stderr).contains("tampered.log:2:"));
}

#[tokio::test]
async fn shutdown_writes_every_record_and_a_restart_continues_the_chain() {
    let mut harness = Harness::with(audited("  file: audit.log\n")).await;
    let client = harness.client();
    for _ in 0..3 {
        assert_eq!(client.get("/Patient/123").await.status, 401);
    }
    harness.gateway.take().unwrap().shutdown().await;
    // No waiting: `shutdown` returns only once the writer emptied its queue.
    let file = harness.dir.path().join("audit.log");
    assert_eq!(lines(&file).len(), 3);

    let config = Config::load(&harness.config_file).unwrap();
    let gateway = Gateway::start(config).await.unwrap();
    let client = TestClient::new(gateway.local_addr(), &harness.ca, None, false);
    assert_eq!(client.get("/Patient/123").await.status, 401);
    gateway.shutdown().await;
    let records: Vec<Value> = lines(&file)
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(records.len(), 4);
    assert_eq!(records[3]["seq"], 3);
    assert_eq!(records[3]["prev"], records[2]["mac"]);
    let (code, output) = verify(&harness.dir.path().join("audit.key"), &[&file]);
    assert_eq!(code, 0, "{output}");
    assert_eq!(output.matches("chain starts").count(), 1, "{output}");
}

#[tokio::test]
async fn whole_lines_cut_from_the_end_of_the_trail_fail_verify_against_its_head() {
    let mut harness = Harness::with(audited("  file: audit.log\n")).await;
    let client = harness.client();
    for _ in 0..4 {
        assert_eq!(client.get("/Patient/123").await.status, 401);
    }
    harness.gateway.take().unwrap().shutdown().await;
    let key = harness.dir.path().join("audit.key");
    let file = harness.dir.path().join("audit.log");
    let head = harness.dir.path().join("audit.log.head");
    let (code, output) = verify(&key, &[&file]);
    assert_eq!(code, 0, "{output}");
    assert!(output.contains("ok: 4 records intact"), "{output}");
    assert!(
        output.contains("names seq 3, which the trail holds"),
        "{output}"
    );
    // `audit.log.*` names the head too: it is read as the head, not as a trail file.
    let (code, output) = verify(&key, &[&head, &file]);
    assert_eq!(code, 0, "{output}");

    let original = lines(&file);
    for kept in [3, 1] {
        std::fs::write(&file, original[..kept].join("\n") + "\n").unwrap();
        let (code, output) = verify(&key, &[&file]);
        assert_eq!(code, 1, "{output}");
        let named = format!(
            "audit.log:{kept}: truncated: records after seq {} are missing: the head names seq 3",
            kept - 1
        );
        assert!(output.contains(&named), "{output}");
    }
    // Without its head the cut cannot be seen: a missing head fails, unless waived.
    let kept_head = harness.dir.path().join("kept.head");
    std::fs::rename(&head, &kept_head).unwrap();
    let (code, output) = verify(&key, &[&file]);
    assert_eq!(code, 1, "{output}");
    assert!(output.contains("audit.log.head: no head"), "{output}");
    let (code, output) = verify_with(&key, &[OsStr::new("--no-head")], &[&file]);
    assert_eq!(code, 0, "{output}");
    assert!(output.contains("warning: --no-head"), "{output}");
    std::fs::rename(&kept_head, &head).unwrap();

    // Started on the cut file, the gateway restarts the chain and says why, in the chain.
    let gateway = Gateway::start(Config::load(&harness.config_file).unwrap())
        .await
        .unwrap();
    let client = TestClient::new(gateway.local_addr(), &harness.ca, None, false);
    assert_eq!(client.get("/Patient/123").await.status, 401);
    gateway.shutdown().await;
    let restart: Value = serde_json::from_str(&lines(&file)[0]).unwrap();
    assert_eq!(restart["event"], "chain_restart", "{restart}");
    assert_eq!(restart["reason"], "truncated", "{restart}");
    assert_eq!(
        (&restart["head_seq"], &restart["last_seq"]),
        (&json!(3), &json!(0))
    );
    let aside: Vec<_> = std::fs::read_dir(harness.dir.path())
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.to_string_lossy().contains("audit.log.2"))
        .collect();
    assert_eq!(aside.len(), 1, "{aside:?}");
    let (code, output) = verify(&key, &[&aside[0], &file]);
    assert_eq!(code, 1, "{output}");
    assert!(
        output.contains("audit.log:1: chain restarted (truncated): records after seq 0"),
        "{output}"
    );
    let (code, output) = verify(&key, &[&file]);
    assert_eq!(code, 0, "{output}");
    assert!(
        output.contains("audit.log:1: chain restarts (truncated)"),
        "{output}"
    );
}

#[tokio::test]
async fn check_names_an_audit_file_that_cannot_be() {
    let harness = Harness::with(audited("  file: audit.log\n")).await;
    let text = std::fs::read_to_string(&harness.config_file).unwrap();
    let broken = harness.dir.path().join("broken.yaml");
    for (file, problem) in [
        ("gone/audit.log", "audit.file: the folder"),
        (".", "audit.file: names a folder"),
    ] {
        let config = text.replace("file: audit.log", &format!("file: {file}"));
        std::fs::write(&broken, config).unwrap();
        let output = Command::new(env!("CARGO_BIN_EXE_phigate"))
            .args(["check", "--config"])
            .arg(&broken)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{stderr}");
        assert!(stderr.contains(problem), "{file}: {stderr}");
        assert!(stderr.contains("broken.yaml:"), "{stderr}");
    }
}

/// The trail's one record, once written, after checking that the chain verifies.
async fn only_record(harness: &Harness) -> (Value, String) {
    let file = harness.dir.path().join("audit.log");
    eventually(Duration::from_secs(10), || async {
        lines(&file).len() == 1
    })
    .await;
    let (code, output) = verify(&harness.dir.path().join("audit.key"), &[&file]);
    assert_eq!(code, 0, "{output}");
    let line = lines(&file).remove(0);
    (serde_json::from_str(&line).unwrap(), line)
}

#[tokio::test]
async fn a_break_glass_grant_is_sealed_with_its_rule_and_justification() {
    const REASON: &str = "ED bay 2: unconscious patient";
    let harness = Harness::with(Options {
        policy: break_glass_policy(),
        ..audited("  file: audit.log\n")
    })
    .await;
    let token = harness.token("phigate/break-glass");
    get_patient_allowed(&harness, &token, ("x-break-glass-reason", REASON)).await;
    let (record, line) = only_record(&harness).await;
    assert_eq!(record["break_glass_rule"], "emergency-read", "{record}");
    assert_eq!(record["break_glass_justification"], REASON, "{record}");
    assert_eq!(record["reason"], "break_glass", "{record}");
    assert!(!line.contains(&token));
}

#[tokio::test]
async fn with_geoip_each_record_names_the_source_country_of_the_tcp_peer() {
    let geo = tempfile::tempdir().unwrap();
    let database = country_database(geo.path());
    let harness = Harness::with(audited(&format!(
        "  file: audit.log\nmonitor:\n  geoip: {}\n",
        database.display()
    )))
    .await;
    let token = harness.token("system/Patient.r");
    // P-01: the forwarded-for header's country (FR) is the client's word, never the record's.
    get_patient_allowed(&harness, &token, ("x-forwarded-for", "198.51.100.9")).await;
    let (record, _) = only_record(&harness).await;
    assert_eq!(record["country"], "US", "{record}");
}

#[tokio::test]
async fn a_monitor_action_is_itself_a_sealed_record() {
    let harness = Harness::with(audited(
        "  file: audit.log\nmonitor:\n  repeated_failures:\n    threshold: 2\n    actions:\n      block: 1m\n",
    ))
    .await;
    let client = harness.client();
    for _ in 0..2 {
        assert_eq!(client.get("/Patient/123").await.status, 401);
    }
    let file = harness.dir.path().join("audit.log");
    // Two decisions and the address's block.
    eventually(Duration::from_secs(10), || async {
        lines(&file)
            .iter()
            .any(|l| l.contains("\"event\":\"action\""))
    })
    .await;
    let action: Value = lines(&file)
        .iter()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .find(|r| r["event"] == "action")
        .unwrap();
    assert_eq!(action["detector"], "repeated_failures", "{action}");
    assert_eq!(action["action"], "block", "{action}");
    assert_eq!(action["key_kind"], "address", "{action}");
    assert_eq!(action["key"], "127.0.0.1", "{action}");
    assert_eq!(action["ok"], true, "{action}");
    let (code, output) = verify(&harness.dir.path().join("audit.key"), &[&file]);
    assert_eq!(code, 0, "{output}");
}
