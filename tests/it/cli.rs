//! The binary: `check` output and exit codes, `run` with its log lines (JWKS failures among
//! them) and SIGTERM, `demo` driven through the commands it prints, its shutdown, the
//! configuration it writes and the tokens it hands a load run, `explain` with a refused token
//! or unavailable keys, and `test` over several files and broken ones.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use phigate::demo::{DevIssuer, SyntheticFhir};

use crate::support::process::{Lines, run_binary, signal_term, terminate};
use crate::support::{AUDIENCE, Harness, ISSUER, Options, PUBLIC_BASE};

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
            "listen:\n  address: \"127.0.0.1:0\"\n  insecure_plaintext: true\n{listen_extra}upstream:\n  url: \"http://127.0.0.1:1/fhir\"\nissuers:\n  - issuer: \"https://as\"\n    jwks_uri: \"https://as/jwks\"\n    audiences: [\"https://fhir.test\"]\n    algorithms: [ES256]\n{extra}policy_file: policy.yaml\n"
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
    let mut log = Lines::of(child.stderr.take().unwrap());
    let mut lines = Vec::new();
    while let Some(line) = log.next().await {
        let serving = line.contains("phigate serving");
        lines.push(line);
        if serving {
            break;
        }
    }
    let _ = terminate(child).await;
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
    let mut lines = Lines::of(child.stderr.take().unwrap());
    let mut port = None;
    while port.is_none() {
        let line = lines.next().await.unwrap();
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
        let line = lines.next().await.unwrap();
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
    let exit = terminate(child).await;
    assert!(exit.success(), "{exit:?}");
    for line in lines.rest().await {
        assert!(!line.contains(&token), "token in log: {line}");
        assert!(
            !line.contains("Secretname"),
            "parameter value in log: {line}"
        );
    }
}

// R-L01: on SIGTERM `/readyz` turns 503 at once, yet the listener keeps serving new requests
// for `listen.shutdown_grace` (load balancers notice only at their next health checks); only
// then does it stop accepting, drain, and exit 0.
#[tokio::test]
async fn sigterm_turns_readiness_off_serves_through_the_grace_period_then_exits() {
    let harness = Harness::start().await;
    let text = std::fs::read_to_string(&harness.config_file).unwrap();
    let graced = text.replace("  shutdown_grace: 0s\n", "  shutdown_grace: 10s\n");
    assert_ne!(text, graced);
    let config = harness.dir.path().join("run.yaml");
    std::fs::write(&config, graced).unwrap();
    let (child, mut log, addr) = run_binary(&config).await;
    let serving = log.line("phigate serving").await;
    let admin: std::net::SocketAddr = serving["admin.address"].as_str().unwrap().parse().unwrap();
    let readyz = || async move { crate::support::client::plain_get(admin, "/readyz").await.0 };
    crate::support::eventually(Duration::from_secs(20), || async { readyz().await == 200 }).await;
    signal_term(&child);
    crate::support::eventually(Duration::from_secs(20), || async { readyz().await == 503 }).await;
    // A new connection and request, after readiness went off: still served.
    let client = crate::support::TestClient::new(addr, &harness.ca, None, false);
    assert_eq!(client.get("/metadata").await.status, 200);
    drop(client);
    let mut child = child;
    let exit = crate::support::within(
        Duration::from_secs(60),
        tokio::task::spawn_blocking(move || child.wait().unwrap()),
    )
    .await
    .unwrap();
    assert!(exit.success(), "{exit:?}");
    // The order of events, from the log: not ready, the request served, then the port closed.
    let seen = log.all().await;
    let position = |wanted: &dyn Fn(&serde_json::Value) -> bool| {
        seen.iter()
            .position(wanted)
            .unwrap_or_else(|| panic!("missing from the log: {seen:#?}"))
    };
    let not_ready =
        position(&|v| v["message"] == "not ready; serving on for the shutdown grace period");
    let served =
        position(&|v| v["message"] == "request" && v["route.name"] == "capability-statement");
    let closed = position(&|v| v["message"] == "closing the listener; draining in-flight requests");
    assert!(not_ready < served && served < closed, "{seen:#?}");
    assert_eq!(seen[not_ready]["listen.shutdown_grace"], "10s");
}

#[tokio::test]
async fn demo_commands_show_their_status_lines_and_the_demo_says_when_it_stops() {
    Command::new("curl")
        .arg("--version")
        .output()
        .expect("curl must be installed (.ci/run installs it)");
    let mut child = phigate()
        .args(["demo", "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = Lines::of(child.stdout.take().unwrap());
    let stderr = Lines::of(child.stderr.take().unwrap());
    let mut commands = Vec::new();
    let mut pasting = false;
    let mut config = None;
    let mut token_endpoint = None;
    let mut gateway = None;
    let mut ca = None;
    loop {
        let line = stdout
            .next()
            .await
            .expect("the demo prints its walkthrough");
        if line.starts_with("# Paste") {
            pasting = true;
        } else if pasting
            && !line.is_empty()
            && !line.starts_with('#')
            && !line.contains("phigate demo ready")
        {
            commands.push(line);
        } else if let Some(path) = line.trim().strip_prefix("config ") {
            config = Some(std::path::PathBuf::from(path.trim()));
        } else if let Some(rest) = line.trim().strip_prefix("tokens ") {
            token_endpoint = rest.split_whitespace().next().map(str::to_owned);
        } else if let Some(rest) = line.trim().strip_prefix("gateway ") {
            gateway = rest.split_whitespace().next().map(str::to_owned);
            ca = rest
                .split("trust ")
                .nth(1)
                .map(|path| path.trim_end_matches(')').to_owned());
        } else if line.contains("phigate demo ready") {
            break;
        }
    }
    // Each command is run exactly as printed, in order (`-sS` only quiets the progress meter of
    // a `curl -i`): its output must show the status line, and a refusal its challenge — none
    // for the block, where a new token would not help.
    let mut statuses = Vec::new();
    let mut outputs = Vec::new();
    for command in &commands {
        let shown = command.starts_with("curl -i ");
        let line = if shown {
            format!("{command} -sS")
        } else {
            command.clone()
        };
        let output = Command::new("sh").arg("-c").arg(line).output().unwrap();
        let text = String::from_utf8_lossy(&output.stdout).into_owned();
        assert!(output.status.success(), "{command}:\n{text}");
        if !shown {
            outputs.push(text);
            continue;
        }
        let status = text
            .lines()
            .next()
            .and_then(|line| line.strip_prefix("HTTP/"))
            .and_then(|line| line.split_whitespace().nth(1))
            .unwrap_or_else(|| panic!("no status line from {command}:\n{text}"))
            .to_owned();
        let lower = text.to_ascii_lowercase();
        let challenged =
            lower.contains("www-authenticate: bearer") || lower.contains("www-authenticate: dpop");
        assert_eq!(
            challenged,
            // The thirteenth, the blocked client's, is the one refusal without a challenge.
            status.starts_with('4') && statuses.len() != 12,
            "{text}"
        );
        statuses.push(status);
    }
    assert_eq!(
        statuses,
        [
            "200", "403", "401", "401", "200", "200", "200", "401", "200", "401", "200", "401",
            "403"
        ]
    );
    // The revocation list write, the repeated presentations, the metrics and the audit check.
    let [revoke, repeat, metrics, audit] = &outputs[..] else {
        panic!("{outputs:?}");
    };
    assert!(revoke.is_empty() && repeat.is_empty());
    assert!(
        metrics.contains("phigate_detector_firings_total{detector=\"refused_token_reuse\"} 2"),
        "{metrics}"
    );
    assert!(
        metrics.contains("phigate_actions_total{action=\"block\",result=\"ok\"} 2"),
        "{metrics}"
    );
    assert!(
        audit.contains("ok: ") && audit.contains("records intact"),
        "{audit}"
    );

    // The token endpoint the examples use: a client credentials token of the shape asked for,
    // five minutes long, that the demo's gateway takes; a malformed request gets an RFC 6749 error.
    let endpoint = token_endpoint.expect("the demo names its token endpoint");
    let granted = Command::new("curl")
        .args([
            "-sS",
            "-d",
            "grant_type=client_credentials",
            "-d",
            "client_id=demo-cli",
        ])
        .args(["-d", "scope=user/Patient.r", &endpoint])
        .output()
        .unwrap();
    let granted: serde_json::Value = serde_json::from_slice(&granted.stdout).unwrap();
    assert_eq!(granted["token_type"], "Bearer");
    assert_eq!(granted["expires_in"], 300);
    let token = granted["access_token"].as_str().unwrap();
    let read = Command::new("curl")
        .args(["-sS", "-o", "/dev/null", "-w", "%{http_code}", "--cacert"])
        .arg(ca.expect("the demo names its CA"))
        .args(["-H", &format!("Authorization: Bearer {token}")])
        .arg(format!(
            "{}/Patient/123",
            gateway.expect("the demo names its gateway")
        ))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&read.stdout), "200");
    let refused = Command::new("curl")
        .args([
            "-sS",
            "-w",
            " %{http_code}",
            "-d",
            "grant_type=password",
            &endpoint,
        ])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&refused.stdout),
        r#"{"error":"unsupported_grant_type","error_description":"only client_credentials is served here"} 400"#
    );

    let exit = terminate(child).await;
    assert!(exit.success(), "{exit:?}");
    let said = stdout.rest().await;
    assert!(said.iter().any(|l| l == "phigate demo stopped"), "{said:?}");
    // The folder watches end before the demo deletes its folder: no library log line (with
    // its source path under the cargo registry) reports the folder vanishing.
    let logged = stderr.rest().await;
    for line in &logged {
        assert!(
            !line.contains("log.file") && !line.contains(".cargo") && !line.contains("ERROR"),
            "{line}"
        );
    }
    let config = config.expect("the demo names its configuration");
    assert!(!config.exists(), "{} left behind", config.display());
}

/// `--bench-tokens`: each token written passes the demo's gateway and verifies with the key
/// written beside it, both files go when the demo stops (the folder stays), and a start that
/// would overwrite a file is refused without leaving anything behind.
#[tokio::test]
async fn demo_bench_tokens_pass_the_gateway_verify_with_the_written_key_and_go_at_stop() {
    let _ = jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER.install_default();
    let tmp = tempfile::tempdir().unwrap();
    let bench = tmp.path().join("bench");
    let demo = |count: &str| {
        let mut command = phigate();
        command
            .args(["demo", "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0"])
            .args(["--bench-tokens", count, "--bench-dir"])
            .arg(&bench);
        command
    };
    let mut child = demo("3")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdout = Lines::of(child.stdout.take().unwrap());
    let mut gateway = None;
    loop {
        let line = stdout
            .next()
            .await
            .expect("the demo prints its walkthrough");
        if let Some(rest) = line.trim().strip_prefix("gateway") {
            // `https://localhost:PORT  (TLS, …; trust CA_FILE)`
            let (url, about) = rest.trim().split_once("  (").unwrap();
            let trust = about.split_once("; trust ").unwrap().1;
            gateway = Some((url.to_owned(), trust.trim_end_matches(')').to_owned()));
        } else if line.contains("phigate demo ready") {
            break;
        }
    }
    let (gateway, ca) = gateway.expect("the demo names its gateway");
    let text = std::fs::read_to_string(bench.join("tokens.txt")).unwrap();
    let tokens: Vec<&str> = text.lines().collect();
    assert_eq!(tokens.len(), 3, "{text}");
    let key = jsonwebtoken::DecodingKey::from_ec_pem(
        &std::fs::read(bench.join("issuer-es256.pem")).unwrap(),
    )
    .unwrap();
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::ES256);
    validation.set_audience(&["https://fhir.phigate.demo"]);
    let mut subjects = std::collections::HashSet::new();
    for token in &tokens {
        let claims = jsonwebtoken::decode::<serde_json::Value>(token, &key, &validation)
            .unwrap()
            .claims;
        subjects.insert(claims["sub"].as_str().unwrap().to_owned());
        let status = Command::new("curl")
            .args([
                "-sS",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                "--cacert",
                &ca,
                "-H",
            ])
            .arg(format!("Authorization: Bearer {token}"))
            .arg(format!("{gateway}/Patient/123"))
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&status.stdout), "200", "{status:?}");
    }
    assert_eq!(
        subjects.len(),
        3,
        "each token its own subject: {subjects:?}"
    );
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(bench.join("tokens.txt"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o077, 0, "tokens.txt is readable by others");

    let exit = terminate(child).await;
    assert!(exit.success(), "{exit:?}");
    for name in ["tokens.txt", "issuer-es256.pem"] {
        assert!(!bench.join(name).exists(), "{name} left behind");
    }
    assert!(bench.is_dir(), "the folder is the caller's");

    std::fs::write(bench.join("issuer-es256.pem"), "mine").unwrap();
    let refused = demo("1").output().unwrap();
    assert_eq!(refused.status.code(), Some(1), "{refused:?}");
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("is never overwritten"),
        "{refused:?}"
    );
    assert_eq!(
        std::fs::read_to_string(bench.join("issuer-es256.pem")).unwrap(),
        "mine"
    );
    assert!(
        !bench.join("tokens.txt").exists(),
        "a refused start left tokens behind"
    );
}

/// Writes a starting configuration, checks it, runs its tests, then makes exactly the edits its
/// header lists and serves a token request with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_write_config_passes_check_and_serves_after_the_documented_edits() {
    const ISSUER_PLACEHOLDER: &str = "https://auth.example.org";
    const JWKS_PLACEHOLDER: &str = "https://auth.example.org/.well-known/jwks.json";
    const AUDIENCE_PLACEHOLDER: &str = "https://fhir.example.org";
    const UPSTREAM_PLACEHOLDER: &str = "http://127.0.0.1:8080/fhir";
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("gateway");
    let write = || {
        phigate()
            .args(["demo", "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0"])
            .arg("--write-config")
            .arg(&dir)
            .output()
            .unwrap()
    };
    let written = write();
    assert!(written.status.success(), "{written:?}");
    let config = dir.join("phigate.yaml");
    for name in ["policy.yaml", "policy.tests.yaml", "ca.crt", "server.crt"] {
        assert!(dir.join(name).is_file(), "{name} missing");
    }
    use std::os::unix::fs::PermissionsExt as _;
    let key_mode = std::fs::metadata(dir.join("server.key"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(key_mode & 0o077, 0, "server.key is readable by others");
    let again = write();
    assert_eq!(again.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("never overwrites"),
        "{again:?}"
    );
    for command in [
        vec!["check", "--config", config.to_str().unwrap()],
        vec!["test", dir.join("policy.tests.yaml").to_str().unwrap()],
    ] {
        let output = phigate().args(&command).output().unwrap();
        assert!(output.status.success(), "{command:?}: {output:?}");
    }

    let text = std::fs::read_to_string(&config).unwrap();
    let header: String = text
        .lines()
        .take_while(|l| l.starts_with('#'))
        .collect::<Vec<_>>()
        .join("\n");
    let issuer = DevIssuer::start(loopback(), ISSUER).await.unwrap();
    let upstream = SyntheticFhir::start(loopback()).await.unwrap();
    // The JWKS placeholder holds the issuer's, so it is replaced first.
    let mut edited = text.clone();
    for (placeholder, value) in [
        (JWKS_PLACEHOLDER, issuer.jwks_uri()),
        (ISSUER_PLACEHOLDER, ISSUER.to_owned()),
        (AUDIENCE_PLACEHOLDER, AUDIENCE.to_owned()),
        (UPSTREAM_PLACEHOLDER, upstream.url()),
    ] {
        assert!(header.contains(placeholder), "{placeholder} not documented");
        edited = edited.replace(placeholder, &value);
    }
    std::fs::write(&config, edited).unwrap();
    let (child, mut log, addr) = run_binary(&config).await;
    log.line("jwks refreshed").await;
    let token = issuer.mint(&issuer.standard_claims(
        "u-1",
        "app-1",
        "user/Patient.r",
        AUDIENCE,
        Duration::from_secs(300),
    ));
    let url = format!("https://localhost:{}/Patient/123", addr.port());
    let output = Command::new("curl")
        .arg("-sS")
        .arg("--cacert")
        .arg(dir.join("ca.crt"))
        .args(["-o", "/dev/null", "-w", "%{http_code}"])
        .args(["-H", &format!("Authorization: Bearer {token}"), &url])
        .output()
        .expect("curl must be installed (.ci/run installs it)");
    assert_eq!(String::from_utf8_lossy(&output.stdout), "200", "{output:?}");
    assert_eq!(upstream.received().len(), 1);
    crate::support::stop_binary_gateway(child).await;
}

#[tokio::test]
async fn a_first_jwks_failure_says_no_keys_yet_and_later_ones_keep_the_last_good_keys() {
    let issuer = DevIssuer::start(loopback(), ISSUER).await.unwrap();
    issuer.set_jwks_status(500);
    let options = Options {
        wait_ready: false,
        ..Options::default()
    };
    let harness = Harness::with_issuer(options, issuer).await;
    let (child, mut log, addr) = run_binary(&harness.config_file).await;
    let jwks_uri = harness.issuer.jwks_uri();
    let first = log.line("jwks fetch failed").await;
    assert_eq!(
        first["message"],
        "jwks fetch failed; no keys yet, so tokens of this issuer get 503"
    );
    assert_eq!(first["jwks.uri"], jwks_uri.as_str());
    assert!(first["error"].as_str().unwrap().contains("500"), "{first}");

    harness.issuer.set_jwks_status(200);
    log.line("jwks refreshed").await;
    harness.issuer.set_jwks_status(500);
    // A token naming an unknown key makes the gateway refetch at once.
    let claims = harness.claims("user/Patient.r");
    let header = serde_json::json!({"alg": "ES256", "typ": "at+jwt", "kid": "not-published"});
    let token = harness
        .issuer
        .sign_raw("dev-es256-1", &header, &claims)
        .unwrap();
    let client = crate::support::TestClient::new(addr, &harness.ca, None, false);
    let _ = client.get_with_token("/Patient/123", &token).await;
    let later = log.line("jwks fetch failed; keeping").await;
    assert_eq!(
        later["message"],
        "jwks fetch failed; keeping the last good keys"
    );
    assert_eq!(later["jwks.uri"], jwks_uri.as_str());
    crate::support::stop_binary_gateway(child).await;
}

// Multi-threaded: the blocking `explain` process fetches the JWKS from this test's issuer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explain_shows_the_table_for_a_refused_token_with_the_refusal_as_decision() {
    let harness = Harness::start().await;
    let mut expired = harness.claims("user/Patient.r");
    let now = expired["iat"].as_i64().unwrap();
    expired["iat"] = (now - 1200).into();
    expired["exp"] = (now - 600).into();
    let expired = harness.mint(&expired);
    let mut foreign = harness.claims("user/Patient.r");
    foreign["aud"] = "https://elsewhere.test".into();
    let foreign = harness.mint(&foreign);
    let cases = [
        (
            "/Patient/123",
            &expired,
            Some(1),
            &[
                "rule         read-patient",
                "needs        ",
                "token        refused: expired",
                "decision     deny: expired",
            ][..],
        ),
        (
            "/Patient/123",
            &foreign,
            Some(1),
            &[
                "rule         read-patient",
                "token        refused: audience_mismatch",
                "decision     deny: audience_mismatch",
            ],
        ),
        // A public rule never reads the token, in the gateway or here.
        (
            "/metadata",
            &expired,
            Some(0),
            &[
                "rule         capability-statement",
                "token        refused: expired",
                "decision     allow",
            ],
        ),
    ];
    for (path, token, code, lines) in cases {
        let output = explain(&harness.config_file, path, token);
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert_eq!(output.status.code(), code, "{path}: {output:?}");
        for line in lines {
            assert!(stdout.contains(line), "{line:?} missing:\n{stdout}");
        }
        assert_no_token(&output, token);
    }
    assert!(harness.upstream.received().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explain_names_the_jwks_url_and_the_cause_when_keys_are_unavailable() {
    let harness = Harness::start().await;
    let token = harness.token("user/Patient.r");
    let unreachable = "http://127.0.0.1:1/.well-known/jwks.json";
    let text = std::fs::read_to_string(&harness.config_file).unwrap();
    let elsewhere = harness.dir.path().join("unreachable.yaml");
    std::fs::write(
        &elsewhere,
        text.replace(&harness.issuer.jwks_uri(), unreachable),
    )
    .unwrap();
    harness.issuer.set_jwks_status(503);
    let cases = [
        (
            harness.config_file.clone(),
            format!(
                "keys         {}: JWKS endpoint answered 503",
                harness.issuer.jwks_uri()
            ),
        ),
        (
            elsewhere,
            format!("keys         {unreachable}: JWKS request failed"),
        ),
    ];
    for (config, keys_line) in cases {
        let output = explain(&config, "/Patient/123", &token);
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert_eq!(output.status.code(), Some(1), "{output:?}");
        for line in [
            "rule         read-patient",
            "token        not verified: the issuer's keys are unavailable (503)",
            &keys_line,
            "decision     deny: keys_unavailable",
        ] {
            assert!(stdout.contains(line), "{line:?} missing:\n{stdout}");
        }
        assert_no_token(&output, &token);
    }
    let output = explain(
        &harness.dir.path().join("unreachable.yaml"),
        "/Patient/123",
        &token,
    );
    assert!(
        String::from_utf8_lossy(&output.stdout).contains("Connection refused"),
        "the cause is named: {output:?}"
    );
}

fn explain(config: &Path, path: &str, token: &str) -> std::process::Output {
    phigate()
        .args(["explain", "--config"])
        .arg(config)
        .args(["--path", path, "--token", token])
        .output()
        .unwrap()
}

#[track_caller]
fn assert_no_token(output: &std::process::Output, token: &str) {
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    for segment in token.split('.') {
        assert!(!all.contains(segment), "explain printed the token:\n{all}");
    }
}

#[test]
fn policy_tests_run_every_file_with_a_summary_each_and_a_total() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("p.yaml"),
        include_str!("../../policies/example.yaml"),
    )
    .unwrap();
    let case = |name: &str, decision: &str| {
        format!(
            "  - name: {name}\n    request: {{method: GET, path: /metadata}}\n    expect: {{decision: {decision}}}\n"
        )
    };
    for (name, cases) in [
        ("good.yaml", [case("a", "allow"), case("b", "allow")]),
        ("also-good.yaml", [case("c", "allow"), case("d", "allow")]),
        ("bad.yaml", [case("e", "allow"), case("f", "deny")]),
    ] {
        std::fs::write(
            dir.path().join(name),
            format!("policy: p.yaml\ncases:\n{}", cases.concat()),
        )
        .unwrap();
    }
    let cases: [(&[&str], i32, &[&str]); 4] = [
        (
            &["good.yaml"],
            0,
            &[
                "good.yaml: 2 passed, 0 failed",
                "total: 2 passed, 0 failed in 1 file",
            ],
        ),
        (
            &["good.yaml", "also-good.yaml"],
            0,
            &[
                "good.yaml: 2 passed, 0 failed",
                "also-good.yaml: 2 passed, 0 failed",
                "total: 4 passed, 0 failed in 2 files",
            ],
        ),
        (
            &["good.yaml", "bad.yaml"],
            1,
            &[
                "FAIL f (",
                "bad.yaml: 1 passed, 1 failed",
                "total: 3 passed, 1 failed in 2 files",
            ],
        ),
        (
            &["missing.yaml", "good.yaml"],
            1,
            &[
                "missing.yaml: not run",
                "good.yaml: 2 passed, 0 failed",
                "total: 2 passed, 0 failed in 2 files, 1 file not run",
            ],
        ),
    ];
    for (files, code, lines) in cases {
        let output = phigate()
            .arg("test")
            .args(files.iter().map(|f| dir.path().join(f)))
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert_eq!(output.status.code(), Some(code), "{files:?}: {output:?}");
        for line in lines {
            assert!(
                stdout.contains(line),
                "{files:?}: {line:?} missing:\n{stdout}"
            );
        }
    }
}

#[test]
fn policy_test_file_errors_name_file_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("p.yaml"),
        include_str!("../../policies/example.yaml"),
    )
    .unwrap();
    let good_case =
        "  - name: a\n    request: {method: GET, path: /metadata}\n    expect: {decision: allow}\n";
    let cases = [
        (
            format!(
                "policy: p.yaml\ncases:\n{good_case}  - name: b\n    request: {{method: GET, path: /x\n"
            ),
            "t.yaml:7:",
            "",
        ),
        (
            format!(
                "policy: p.yaml\ncases:\n{good_case}  - name: b\n    request: {{method: GET, path: /x}}\n    expct: {{decision: allow}}\n"
            ),
            "t.yaml:8:5:",
            "expct",
        ),
        (
            format!(
                "policy: p.yaml\ncases:\n{good_case}  - name: b\n    request: {{method: \"GE T\", path: /x}}\n    expect: {{decision: allow}}\n"
            ),
            "t.yaml:7:",
            "not an HTTP method",
        ),
        (
            format!("policy: nowhere.yaml\ncases:\n{good_case}"),
            "t.yaml:1:9:",
            "policy nowhere.yaml cannot be loaded",
        ),
    ];
    for (text, position, problem) in cases {
        std::fs::write(dir.path().join("t.yaml"), &text).unwrap();
        let output = phigate()
            .arg("test")
            .arg(dir.path().join("t.yaml"))
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{text}\n{stdout}{stderr}");
        let error = stderr
            .lines()
            .find(|l| l.starts_with("error: "))
            .unwrap_or_else(|| panic!("no error line for\n{text}\n{stderr}"));
        assert!(
            error.contains(position) && error.contains(problem),
            "{position} {problem:?} expected for\n{text}\ngot {error}"
        );
        assert!(stdout.contains("t.yaml: not run"), "{stdout}");
        // A file that cannot be run runs nothing, so nothing half-runs.
        assert!(stdout.contains("total: 0 passed, 0 failed"), "{stdout}");
    }
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

#[test]
fn check_builds_what_run_builds_and_reports_every_problem_with_its_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path();
    std::fs::write(
        path.join("policy.yaml"),
        "rules:\n  - name: a\n    methods: [GET]\n    path: /x\n    public: true\n",
    )
    .unwrap();
    std::fs::write(path.join("junk.pem"), "not a certificate\n").unwrap();
    let ca = phigate::tls::dev_ca::DevCa::new("check test CA").unwrap();
    for name in ["a", "b"] {
        ca.issue_server(&["localhost"])
            .unwrap()
            .write_pem_files(path, name)
            .unwrap();
    }
    let config = path.join("phigate.yaml");
    let write = |tls: &str| {
        std::fs::write(
            &config,
            format!(
                "listen:\n  address: \"127.0.0.1:0\"\n  public_base_url: \"https://gw.test\"\n  tls:\n{tls}upstream:\n  url: \"https://127.0.0.1:1/fhir\"\n  ca_file: junk.pem\nissuers:\n  - issuer: \"https://as\"\n    jwks_uri: \"https://as/jwks\"\n    audiences: [\"a\"]\n    algorithms: [ES256]\nrevocation:\n  sources:\n    - file: missing.json\ndpop:\n  replay_redis: \"redis://127.0.0.1:notaport\"\npolicy_file: policy.yaml\n"
            ),
        )
        .unwrap();
    };
    let check = || {
        let output = phigate()
            .args(["check", "--config"])
            .arg(&config)
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(1));
        String::from_utf8_lossy(&output.stderr).into_owned()
    };
    write("    cert_file: junk.pem\n    key_file: missing.key\n    client_ca_file: junk.pem\n");
    let stderr = check();
    for expected in [
        "phigate.yaml:5:16: listen.tls.cert_file: no certificate found",
        "phigate.yaml:6:15: listen.tls.key_file: cannot read the private key",
        "phigate.yaml:7:21: listen.tls.client_ca_file: no certificate found",
        "phigate.yaml:10:12: upstream.ca_file: no certificate found",
        "phigate.yaml:18:13: revocation.sources[0].file: the revocation list file does not exist",
        "phigate.yaml:20:17: dpop.replay_redis: not a usable Redis URL",
    ] {
        assert!(
            stderr.contains(expected),
            "{expected} missing from\n{stderr}"
        );
    }
    // A certificate and a key that do not belong together name both files.
    write("    cert_file: a.crt\n    key_file: b.key\n");
    let stderr = check();
    assert!(
        stderr.contains("listen.tls.key_file: the private key does not match the certificate in")
            && stderr.contains("a.crt"),
        "{stderr}"
    );
}

fn loopback() -> std::net::SocketAddr {
    std::net::SocketAddr::from(([127, 0, 0, 1], 0))
}

/// `phigate dpop`: `key` writes an owner-only key and prints its thumbprint, never overwriting a
/// file; `thumbprint` reads the same value back; `proof` signs a `dpop+jwt` for the method, the URL
/// without its query, the token's hash and the nonce; a file that is not such a key is refused.
/// (`examples::every_readme_try_it_block_runs_as_written_with_the_statuses_it_names` sends these
/// proofs through a gateway.)
#[test]
fn dpop_key_thumbprint_and_proof_for_curl() {
    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use std::os::unix::fs::PermissionsExt as _;

    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("app.key");
    let made = phigate().args(["dpop", "key"]).arg(&key).output().unwrap();
    assert!(made.status.success(), "{made:?}");
    let jkt = String::from_utf8(made.stdout).unwrap().trim().to_owned();
    assert_eq!(jkt.len(), 43, "{jkt}");
    let mode = std::fs::metadata(&key).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let again = phigate().args(["dpop", "key"]).arg(&key).output().unwrap();
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("never overwritten"));
    let read = phigate()
        .args(["dpop", "thumbprint", "--key"])
        .arg(&key)
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&read.stdout).trim(), jkt);

    let token = "header.claims.signature";
    let proof = phigate()
        .args(["dpop", "proof", "--key"])
        .arg(&key)
        .args([
            "--method",
            "POST",
            "--url",
            "https://gw.test/Observation/_search?x=1",
        ])
        .args(["--nonce", "n-1"])
        .env("PHIGATE_DPOP_TOKEN", token)
        .output()
        .unwrap();
    assert!(proof.status.success(), "{proof:?}");
    let proof = String::from_utf8(proof.stdout).unwrap();
    let parts: Vec<&str> = proof.trim().split('.').collect();
    assert_eq!(parts.len(), 3);
    let decode = |part: &str| -> serde_json::Value {
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
    };
    let (header, claims) = (decode(parts[0]), decode(parts[1]));
    assert_eq!(header["typ"], "dpop+jwt");
    assert_eq!(header["alg"], "ES256");
    assert_eq!(
        phigate::jose::jwk::thumbprint(&header["jwk"]).as_deref(),
        Some(jkt.as_str())
    );
    assert_eq!(claims["htm"], "POST");
    assert_eq!(claims["htu"], "https://gw.test/Observation/_search");
    assert_eq!(claims["nonce"], "n-1");
    assert_eq!(
        claims["ath"],
        URL_SAFE_NO_PAD.encode(phigate::jose::sha256(token.as_bytes()))
    );

    let garbage = dir.path().join("garbage.key");
    std::fs::write(&garbage, "not a key").unwrap();
    let refused = phigate()
        .args(["dpop", "thumbprint", "--key"])
        .arg(&garbage)
        .output()
        .unwrap();
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("is not a P-256 PKCS#8 private key"));
}
