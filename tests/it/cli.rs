//! The binary: `check` output and exit codes, `run` with its log lines and SIGTERM, and `demo`
//! driven through the commands it prints.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::support::{Harness, Options, PUBLIC_BASE};

fn phigate() -> Command {
    Command::new(env!("CARGO_BIN_EXE_phigate"))
}

#[tokio::test]
async fn check_prints_the_rule_table_for_a_valid_config() {
    let harness = Harness::start().await;
    let output = phigate()
        .args(["check", "--config"])
        .arg(&harness.config_file)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("configuration is valid"), "{stdout}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!stderr.contains("warning"), "{stderr}");
    for rule in [
        "capability-statement",
        "read-patient",
        "search-observations",
        "public",
        "user/Patient.r",
    ] {
        assert!(stdout.contains(rule), "{rule} missing from\n{stdout}");
    }
}

#[tokio::test]
async fn check_warns_about_a_later_weaker_overlapping_rule_and_exits_0() {
    let harness = Harness::with(Options {
        policy: "rules:\n  - name: secret-report\n    methods: [GET]\n    path: /Report/secret\n    scopes: [reports.read]\n  - name: reports\n    methods: [GET]\n    path: /Report/**\n    public: true\n".to_owned(),
        ..Default::default()
    })
    .await;
    let output = phigate()
        .args(["check", "--config"])
        .arg(&harness.config_file)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stdout}{stderr}");
    assert!(stdout.contains("configuration is valid"), "{stdout}");
    let warnings: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("warning: "))
        .collect();
    assert_eq!(warnings.len(), 1, "{stderr}");
    for expected in [
        "policy.yaml:6:",
        "\"reports\" (/Report/**)",
        "earlier rule \"secret-report\"",
        "it is public",
    ] {
        assert!(
            warnings[0].contains(expected),
            "{expected} missing: {stderr}"
        );
    }
    assert!(!stderr.contains("error"), "{stderr}");
}

#[test]
fn check_names_file_line_and_problem_and_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("policy.yaml"),
        "rules:\n  - name: a\n    methods: [GET]\n    path: /x\n    public: true\n",
    )
    .unwrap();
    let config = dir.path().join("phigate.yaml");
    let cases = [
        (
            "listen:\n  address: \"127.0.0.1:0\"\n  insecure_plaintext: true\nupstream:\n  url: \"http://127.0.0.1:1/fhir\"\nissuers:\n  - issuer: \"https://as\"\n    jwks_uri: \"https://as/jwks\"\n    audiences: [\"a\"]\n    algorithms: [ES256]\ntokens:\n  clock_skew: 10m\npolicy_file: policy.yaml\n",
            ":12:",
            "clock_skew",
        ),
        (
            "listen:\n  address: \"127.0.0.1:0\"\n  insecure_plaintext: true\nupstream:\n  url: \"http://127.0.0.1:1/fhir\"\nissuers:\n  - issuer: \"https://as\"\n    jwks_uri: \"https://as/jwks\"\n    audiences: [\"a\"]\n    algorithms: [HS256]\npolicy_file: policy.yaml\n",
            ":10:",
            "symmetric",
        ),
        ("listen:\n  adress: \"127.0.0.1:0\"\n", ":2:", "adress"),
        // The parser would blame line 2, where it was reading when it met the tab.
        (
            "listen:\n  address: \"127.0.0.1:0\"\n\tinsecure_plaintext: true\n",
            ":3:1:",
            "a tab character indents this line",
        ),
        (
            "listen:\n  address: \"127.0.0.1:0\"\n   insecure_plaintext: true\n",
            ":3:4:",
            "not indented like the keys above it",
        ),
    ];
    for (text, line, problem) in cases {
        std::fs::write(&config, text).unwrap();
        let output = phigate()
            .args(["check", "--config"])
            .arg(&config)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{stderr}");
        assert!(
            stderr.contains("phigate.yaml") && stderr.contains(line) && stderr.contains(problem),
            "{stderr}"
        );
    }
}

/// Runs `phigate check` on a plaintext configuration (`listen_extra` added to `listen:`,
/// `extra` before `policy_file:`) and `policy`: (exit code, stdout, stderr warning lines, stderr).
fn check_offline(
    listen_extra: &str,
    extra: &str,
    policy: &str,
) -> (i32, String, Vec<String>, String) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("policy.yaml"), policy).unwrap();
    let config = dir.path().join("phigate.yaml");
    std::fs::write(
        &config,
        format!(
            "listen:\n  address: \"127.0.0.1:0\"\n  insecure_plaintext: true\n{listen_extra}upstream:\n  url: \"http://127.0.0.1:1/fhir\"\nissuers:\n  - issuer: \"https://as\"\n    jwks_uri: \"https://as/jwks\"\n    audiences: [\"a\"]\n    algorithms: [ES256]\n{extra}policy_file: policy.yaml\n"
        ),
    )
    .unwrap();
    let output = phigate()
        .args(["check", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    let warnings = stderr
        .lines()
        .filter(|l| l.starts_with("warning: "))
        .map(str::to_owned)
        .collect();
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        warnings,
        stderr,
    )
}

const BASE_URL: &str = "  public_base_url: \"https://gw.test\"\n";

#[test]
fn check_warns_about_scopes_no_smart_server_grants_and_exits_0() {
    let policy = "rules:\n  - name: read\n    methods: [GET]\n    path: /Patient/{id}\n    scopes:\n      - patient/Patinet.r\n      - system/Patient.x\n      - usr/Patient.r\n      - system/Patient.read\n      - user/Patient.rs\n";
    let (code, stdout, warnings, stderr) = check_offline(BASE_URL, "", policy);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.contains("configuration is valid"), "{stdout}");
    assert!(!stderr.contains("error"), "{stderr}");
    let expected = [
        (
            "policy.yaml:6:9: ",
            "\"Patinet\" is not a FHIR R4 resource type (did you mean \"Patient\"?)",
        ),
        (
            "policy.yaml:7:9: ",
            "\".x\" is neither SMART v2 permissions",
        ),
        ("policy.yaml:8:9: ", "\"usr\" is not a SMART context"),
        (
            "policy.yaml:9:9: ",
            "SMART v1 form of \"system/Patient.rs\"",
        ),
    ];
    assert_eq!(warnings.len(), expected.len(), "{stderr}");
    for (warning, (place, words)) in warnings.iter().zip(expected) {
        assert!(
            warning.contains(place) && warning.contains(words),
            "{warning}"
        );
    }
}

#[test]
fn check_refuses_an_unknown_resource_type_in_a_smart_rule() {
    let policy = "rules:\n  - name: fhir\n    methods: [GET]\n    path: /**\n    fhir: smart\n    resource_types: [Patient, Obsrvation]\n";
    let (code, _, _, stderr) = check_offline(BASE_URL, "", policy);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("error: ")
            && stderr.contains("policy.yaml:6:31: ")
            && stderr.contains(
                "\"Obsrvation\" is not a FHIR R4 resource type (did you mean \"Observation\"?)"
            ),
        "{stderr}"
    );
}

#[test]
fn check_says_dpop_cannot_work_without_a_public_base_url() {
    let policy = "rules:\n  - name: a\n    methods: [GET]\n    path: /x\n    public: true\n";
    // Any issuer may bind tokens to DPoP keys: a warning, exit 0.
    let (code, stdout, warnings, stderr) = check_offline("", "", policy);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert_eq!(warnings.len(), 1, "{stderr}");
    assert!(
        warnings[0].contains("phigate.yaml:2:12: listen.public_base_url is not set")
            && warnings[0].contains("dpop_htu_mismatch"),
        "{stderr}"
    );
    // A dpop: section that can never succeed: an error, exit 1.
    let (code, _, _, stderr) = check_offline("", "dpop:\n  max_age: 30s\n", policy);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("error: ")
            && stderr.contains(
                "phigate.yaml:12:3: dpop: is configured but listen.public_base_url is not set"
            ),
        "{stderr}"
    );
    let (code, _, warnings, stderr) = check_offline(BASE_URL, "dpop:\n  max_age: 30s\n", policy);
    assert_eq!((code, warnings.len()), (0, 0), "{stderr}");
}

#[tokio::test]
async fn run_logs_that_dpop_cannot_work_without_a_public_base_url() {
    let harness = Harness::start().await;
    let text = std::fs::read_to_string(&harness.config_file).unwrap();
    let without = text.replace(&format!("  public_base_url: \"{PUBLIC_BASE}\"\n"), "");
    assert_ne!(text, without);
    let config = harness.dir.path().join("run.yaml");
    std::fs::write(&config, without).unwrap();
    let mut child = phigate()
        .args(["run", "--config"])
        .arg(&config)
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let lines = tokio::task::spawn_blocking(move || {
        let mut seen = Vec::new();
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let serving = line.contains("phigate serving");
            seen.push(line);
            if serving {
                break;
            }
        }
        seen
    });
    let lines = tokio::time::timeout(Duration::from_secs(30), lines)
        .await
        .unwrap()
        .unwrap();
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let _ = tokio::task::spawn_blocking(move || child.wait()).await;
    let warning = lines
        .iter()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .find(|value| value["message"] == "configuration warning")
        .unwrap_or_else(|| panic!("no configuration warning in {lines:#?}"));
    assert_eq!(warning["config.line"], 2, "{warning}");
    assert!(
        warning["problem"]
            .as_str()
            .unwrap()
            .contains("dpop_htu_mismatch"),
        "{warning}"
    );
}

#[tokio::test]
async fn run_logs_one_json_line_per_request_without_the_token_and_stops_on_sigterm() {
    let harness = Harness::start().await;
    // Point a second gateway, run by the binary, at the same issuer and upstream.
    let text = std::fs::read_to_string(&harness.config_file).unwrap();
    let config = harness.dir.path().join("run.yaml");
    std::fs::write(&config, text).unwrap();
    let mut child = phigate()
        .args(["run", "--config"])
        .arg(&config)
        .env("RUST_LOG", "info")
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (lines_tx, mut lines_rx) = tokio::sync::mpsc::unbounded_channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = lines_tx.send(line);
        }
    });
    let mut port = None;
    while port.is_none() {
        let line = tokio::time::timeout(Duration::from_secs(20), lines_rx.recv())
            .await
            .unwrap()
            .unwrap();
        let value: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
        if value["message"] == "phigate serving" {
            port = value["listen.address"]
                .as_str()
                .map(|a| a.rsplit(':').next().unwrap().parse::<u16>().unwrap());
        }
    }
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port.unwrap()));
    let client = crate::support::TestClient::new(addr, &harness.ca, None, false);
    // Parameter values (patient ids, names) stay out of the log; names go in.
    let _ = client
        .get_with_token(
            "/Patient/123?name=Alice-Secretname",
            &harness.token("user/Patient.r"),
        )
        .await;
    let claims = harness.claims("user/Patient.r");
    let jti = claims["jti"].as_str().unwrap().to_owned();
    let token = harness.mint(&claims);
    let mut status = 0;
    for _ in 0..100 {
        status = client
            .get_with_token("/Patient/123", &token)
            .await
            .status
            .as_u16();
        if status == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(status, 200);
    let mut request_line = None;
    while request_line.is_none() {
        let line = tokio::time::timeout(Duration::from_secs(10), lines_rx.recv())
            .await
            .unwrap()
            .unwrap();
        assert!(
            !line.contains(&token) && !line.contains("eyJ"),
            "token in log: {line}"
        );
        assert!(
            !line.contains("Secretname"),
            "parameter value in log: {line}"
        );
        let value: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
        if value["message"] == "request" && value["request.params"] == "name" {
            assert!(line.contains("\"request.params\":\"name\""), "{line}");
        }
        if value["message"] == "request" && value["token.jti"] == jti.as_str() {
            request_line = Some(value);
        }
    }
    let line = request_line.unwrap();
    assert_eq!(line["token.jti"], jti.as_str());
    assert_eq!(line["route.name"], "read-patient");
    assert_eq!(line["client.id"], "app-1");
    assert_eq!(line["subject"], "u-1");
    assert!(line["request.id"].as_str().is_some_and(|id| id.len() == 36));
    let pid = child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let exit = tokio::task::spawn_blocking(move || child.wait().unwrap())
        .await
        .unwrap();
    assert!(exit.success(), "{exit:?}");
    while let Ok(line) = lines_rx.try_recv() {
        assert!(!line.contains(&token), "token in log: {line}");
        assert!(
            !line.contains("Secretname"),
            "parameter value in log: {line}"
        );
    }
}

#[tokio::test]
async fn demo_commands_show_allow_scope_denial_expiry_and_no_token() {
    if Command::new("curl").arg("--version").output().is_err() {
        eprintln!("curl not installed; demo walkthrough skipped");
        return;
    }
    let mut child = phigate()
        .args(["demo", "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let commands = tokio::task::spawn_blocking(move || {
        let mut commands = Vec::new();
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if line.starts_with("curl ") {
                commands.push(line);
            } else if line.contains("phigate demo ready") {
                break;
            }
        }
        commands
    })
    .await
    .unwrap();
    let statuses: Vec<String> = commands
        .iter()
        .map(|command| {
            let output = Command::new("sh")
                .arg("-c")
                .arg(format!("{command} -s -o /dev/null -w '%{{http_code}}'"))
                .output()
                .unwrap();
            String::from_utf8_lossy(&output.stdout).into_owned()
        })
        .collect();
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let exit = tokio::task::spawn_blocking(move || child.wait().unwrap())
        .await
        .unwrap();
    assert_eq!(statuses, ["200", "403", "401", "401", "200"]);
    assert!(exit.success());
}

#[test]
fn policy_tests_refuse_a_launch_patient_the_gateway_would_refuse() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("p.yaml"),
        include_str!("../../policies/smart-v2.yaml"),
    )
    .unwrap();
    let mut cases = "policy: p.yaml\ncases:\n".to_owned();
    for (i, patient) in ["\"123,456\"", "\"Patient/123\"", "123", "\"123 \""]
        .iter()
        .enumerate()
    {
        cases.push_str(&format!(
            "  - name: malformed patient {i}\n    request: {{method: GET, path: /Patient/123}}\n    claims: {{scope: \"launch/patient patient/Patient.r\", patient: {patient}}}\n    expect: {{decision: deny, reason: patient_claim_malformed}}\n"
        ));
    }
    std::fs::write(dir.path().join("t.yaml"), cases).unwrap();
    let output = phigate()
        .arg("test")
        .arg(dir.path().join("t.yaml"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}");
    assert!(stdout.contains("4 passed, 0 failed"), "{stdout}");
}
