//! The monitoring material (`deploy/prometheus/`, `deploy/grafana/phigate.json`) against a
//! running gateway: every `phigate_` metric an alert or a panel names is one the gateway exports,
//! and no expression selects or groups by a label that would identify a person or a token.
//! `promtool` checks the alert rules and the scrape configuration.

use std::collections::BTreeSet;
use std::time::{Duration, SystemTime};

use phigate::tls::dev_ca::DevCa;
use serde_json::Value;

use super::{read, succeeds, tool};
use crate::support::{Harness, Options, POLICY, pem_crl};

const ALERTS: &str = "deploy/prometheus/phigate-alerts.yaml";
const DASHBOARD: &str = "deploy/grafana/phigate.json";
const SCRAPE_CONFIG: &str = "deploy/prometheus/prometheus.yaml";

/// Label names that would carry a person, a token or a request: never in a metric or a query.
const FORBIDDEN_LABELS: [&str; 12] = [
    "token",
    "jti",
    "sub",
    "subject",
    "patient",
    "client_id",
    "client",
    "user",
    "ip",
    "peer",
    "address",
    "path",
];

/// Every alert expression, with the alert's name.
fn alert_expressions() -> Vec<(String, String)> {
    let rules: Value = serde_saphyr::from_str(&read(ALERTS)).unwrap();
    let mut found = Vec::new();
    for group in rules["groups"].as_array().unwrap() {
        for rule in group["rules"].as_array().unwrap() {
            let name = rule["alert"].as_str().unwrap().to_owned();
            assert!(
                rule["labels"]["severity"].is_string(),
                "{name}: no severity"
            );
            assert!(
                rule["annotations"]["summary"].is_string(),
                "{name}: no summary"
            );
            found.push((name, rule["expr"].as_str().unwrap().to_owned()));
        }
    }
    found
}

/// Every panel query and template query of the dashboard, with the panel's title.
fn dashboard_expressions() -> Vec<(String, String)> {
    let dashboard: Value = serde_json::from_str(&read(DASHBOARD)).unwrap();
    let mut found = Vec::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        let title = panel["title"].as_str().unwrap();
        for target in panel["targets"].as_array().unwrap() {
            found.push((
                title.to_owned(),
                target["expr"].as_str().unwrap().to_owned(),
            ));
        }
    }
    for variable in dashboard["templating"]["list"].as_array().unwrap() {
        let name = variable["name"].as_str().unwrap();
        found.push((
            format!("${name}"),
            variable["query"].as_str().unwrap().to_owned(),
        ));
    }
    found
}

/// The `phigate_` identifiers in an expression (PromQL read loosely: no parser, just names).
fn metric_names(expr: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = expr;
    while let Some(at) = rest.find("phigate_") {
        let preceded = rest[..at]
            .chars()
            .next_back()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        if !preceded {
            names.insert(tail[..end].to_owned());
        }
        rest = &tail[end..];
    }
    names
}

/// The label names an expression matches on (`{name="…"}`) or groups by (`by (…)`,
/// `without (…)`, `on (…)`, `ignoring (…)`, `group_left (…)`).
fn label_names(expr: &str) -> BTreeSet<String> {
    let mut labels = BTreeSet::new();
    let mut take = |list: &str| {
        for item in list.split(',') {
            let name: String = item
                .trim()
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() {
                labels.insert(name);
            }
        }
    };
    for (open, close) in [('{', '}'), ('(', ')')] {
        let mut rest = expr;
        while let Some(start) = rest.find(open) {
            let word = rest[..start]
                .trim_end()
                .rsplit(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .next()
                .unwrap_or_default();
            let inner_end = rest[start..].find(close).map_or(rest.len(), |e| start + e);
            let inner = &rest[start + 1..inner_end];
            let grouping = [
                "by",
                "without",
                "on",
                "ignoring",
                "group_left",
                "group_right",
            ]
            .contains(&word);
            if open == '{' || grouping {
                take(inner);
            }
            rest = &rest[start + 1..];
        }
    }
    labels
}

/// Sample names the exposition holds, with histogram series also under their base name.
fn exported(metrics: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for line in metrics.lines().filter(|l| !l.starts_with('#')) {
        let name: String = line
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == ':')
            .collect();
        for suffix in ["_bucket", "_sum", "_count"] {
            if let Some(base) = name.strip_suffix(suffix) {
                names.insert(base.to_owned());
            }
        }
        names.insert(name);
    }
    names
}

/// A client CRL's `nextUpdate`, far enough for any test run.
const DAY: Duration = Duration::from_secs(86_400);

/// A gateway with a revocation source and a break-glass rule, after one allowed and one denied
/// request, so every series the material names exists.
async fn scraped() -> (Harness, String) {
    let break_glass = "break_glass:\n  scope: phigate/break-glass\n  max_duration: 1h\n  rules:\n    - name: emergency-read\n      methods: [GET]\n      path: /Patient/{id}\n";
    let ca = DevCa::new("client CA").unwrap();
    let crl = ca.revocation_list(&[], SystemTime::now() + DAY).unwrap();
    let harness = Harness::with(Options {
        policy: format!("{POLICY}{break_glass}"),
        revocation: "revocation:\n  sources:\n    - file: revoked.json\n      interval: 1s\n      max_stale: 10s\n".into(),
        // A client CA and a CRL source, so the client CA's expiry and the CRL series exist.
        client_auth: Some("optional"),
        tls_extra: "    client_crls:\n      - file: clients.crl\n".into(),
        files: vec![
            ("revoked.json", r#"{"version": 1, "entries": []}"#.to_owned()),
            ("clients.crl", pem_crl(crl.as_ref())),
        ],
        ca: Some(ca),
        ..Options::default()
    })
    .await;
    let client = harness.client();
    let token = harness.token("user/Patient.r");
    assert_eq!(
        client.get_with_token("/Patient/123", &token).await.status,
        200
    );
    assert_eq!(client.get("/Patient/123").await.status, 401);
    let (status, metrics) = harness.admin_get("/metrics").await;
    assert_eq!(status, 200);
    (harness, metrics)
}

#[tokio::test]
async fn every_metric_the_alerts_and_dashboard_use_is_exported() {
    let (_harness, metrics) = scraped().await;
    let names = exported(&metrics);
    let mut unknown = Vec::new();
    let expressions = alert_expressions()
        .into_iter()
        .chain(dashboard_expressions());
    let mut used = BTreeSet::new();
    for (place, expr) in expressions {
        for name in metric_names(&expr) {
            if !names.contains(&name) {
                unknown.push(format!("{place}: {name}"));
            }
            used.insert(name);
        }
    }
    assert!(unknown.is_empty(), "not exported: {unknown:?}\n{metrics}");
    // The material covers what the issue asks for.
    for wanted in [
        "phigate_decisions_total",
        "phigate_request_duration_seconds_bucket",
        "phigate_upstream_responses_total",
        "phigate_upstream_duration_seconds_count",
        "phigate_jwks_key_age_seconds",
        "phigate_revocation_list_age_seconds",
        "phigate_requests_in_flight",
        "phigate_tls_handshake_failures_total",
        "phigate_tls_certificate_expiry_timestamp_seconds",
        "phigate_tls_reload_failures_total",
        "phigate_ready",
        "phigate_break_glass_total",
        "phigate_audit_refused_total",
        "phigate_audit_write_errors_total",
        "phigate_circuit_open",
        "phigate_issuer_clock_offset_seconds",
        "phigate_upstream_body_failures_total",
        "phigate_connections_closed_total",
    ] {
        assert!(
            used.contains(wanted),
            "neither alerts nor dashboard use {wanted}"
        );
    }
}

#[tokio::test]
async fn no_expression_or_exported_series_uses_an_identifying_label() {
    let (_harness, metrics) = scraped().await;
    for (place, expr) in alert_expressions()
        .into_iter()
        .chain(dashboard_expressions())
    {
        let labels = label_names(&expr);
        for forbidden in FORBIDDEN_LABELS {
            assert!(
                !labels.contains(forbidden),
                "{place} uses label {forbidden}: {expr}"
            );
        }
    }
    for line in metrics.lines().filter(|l| !l.starts_with('#')) {
        let labels = label_names(line);
        for forbidden in FORBIDDEN_LABELS {
            assert!(
                !labels.contains(forbidden),
                "exported label {forbidden}: {line}"
            );
        }
    }
}

#[tokio::test]
async fn readiness_and_certificate_expiry_are_exported() {
    let (_harness, metrics) = scraped().await;
    assert!(metrics.contains("phigate_ready 1"), "{metrics}");
    let not_after = metrics
        .lines()
        .find_map(|l| {
            l.strip_prefix("phigate_tls_certificate_expiry_timestamp_seconds{name=\"listener\"} ")
        })
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or_else(|| panic!("no certificate expiry\n{metrics}"));
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    // The test CA issues for days at least, and never for centuries.
    assert!(
        not_after - now > 86_400.0 && not_after - now < 1e10,
        "{not_after}"
    );
}

#[test]
fn the_loose_parsers_read_what_they_should() {
    assert_eq!(
        metric_names("sum by (le) (rate(phigate_a_bucket{job=\"phigate\"}[5m])) / xphigate_b"),
        BTreeSet::from(["phigate_a_bucket".to_owned()])
    );
    assert_eq!(
        label_names(
            "sum by (job, reason) (rate(m{decision=\"deny\", rule=~\"a|b\"}[5m])) / ignoring (reason) group_left sum(x)"
        ),
        BTreeSet::from(["decision", "job", "reason", "rule"].map(str::to_owned))
    );
}

#[test]
fn promtool_accepts_the_alert_rules() {
    let Some(mut promtool) = tool("promtool", "Debian package prometheus") else {
        return;
    };
    succeeds(promtool.args(["check", "rules", ALERTS]));
}

/// The scrape job is the one the alerts select, and `promtool check config` loads the rule file
/// it names as well.
#[test]
fn promtool_accepts_the_scrape_config() {
    let config: Value = serde_saphyr::from_str(&read(SCRAPE_CONFIG)).unwrap();
    let jobs: Vec<&str> = config["scrape_configs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|job| job["job_name"].as_str().unwrap())
        .collect();
    assert_eq!(jobs, ["phigate"]);
    assert!(read(ALERTS).contains("up{job=\"phigate\"}"));
    assert_eq!(config["rule_files"][0], "phigate-alerts.yaml");
    let Some(mut promtool) = tool("promtool", "Debian package prometheus") else {
        return;
    };
    let output = succeeds(promtool.args(["check", "config", SCRAPE_CONFIG]));
    assert!(
        String::from_utf8_lossy(&output.stdout).contains("rules found"),
        "{}",
        super::printed(&output)
    );
}
