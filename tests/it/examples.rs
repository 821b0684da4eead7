//! The shipped examples (`examples/*/`): each configuration passes `phigate check` as written
//! (once the certificates and secrets its README asks for exist) and again with its
//! placeholders replaced the way its README says; its policy tests pass under `phigate test`;
//! and the gateway, started on that configuration against a real issuer and a real upstream,
//! keeps the example's promise with real tokens, DPoP proofs and client certificates. The
//! examples are copied into a temporary folder first: nothing in `examples/` is written. Every
//! example folder must have a README and a promise test here.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use bytes::Bytes;
use http::Method;
use phigate::config::Config;
use phigate::demo::token_endpoint::GrantSettings;
use phigate::demo::{DevIssuer, SyntheticFhir};
use phigate::proxy::Gateway;
use phigate::tls::CertThumbprint;
use phigate::tls::dev_ca::{DevCa, IssuedCert};
use serde_json::{Value, json};

use crate::support::dpop::DpopKey;
use crate::support::{
    AUDIENCE, INVALID_TOKEN, ISSUER, PUBLIC_BASE, TestClient, TestResponse, assert_no_leak,
};

/// Every example folder; each has a promise test below.
const EXAMPLES: [&str; 3] = ["smart-backend-services", "patient-app-dpop", "b2b-mtls"];

/// What each README tells a user to replace, in order (the JWKS URL holds the issuer's), and
/// what stands in for it here: the harness's issuer, audience and public URL, the real
/// upstream, and free loopback ports instead of the demo's.
enum Fill {
    Jwks,
    Issuer,
    Audience,
    PublicBase,
    Upstream,
    Listen,
    Admin,
}

const REPLACED: [(&str, Fill); 7] = [
    ("https://auth.example.org/.well-known/jwks.json", Fill::Jwks),
    ("https://auth.example.org", Fill::Issuer),
    ("https://fhir.example.org", Fill::Audience),
    ("https://fhir-gw.example.org", Fill::PublicBase),
    ("http://127.0.0.1:8080/fhir", Fill::Upstream),
    ("0.0.0.0:8443", Fill::Listen),
    ("127.0.0.1:9090", Fill::Admin),
];

const PROOF_CHALLENGE: &str = "DPoP realm=\"phigate\", error=\"invalid_dpop_proof\", algs=\"ES256 PS256 EdDSA\", resource_metadata=\"https://fhir.test/.well-known/oauth-protected-resource\"";
const DPOP_TOKEN_CHALLENGE: &str = "DPoP realm=\"phigate\", error=\"invalid_token\", algs=\"ES256 PS256 EdDSA\", resource_metadata=\"https://fhir.test/.well-known/oauth-protected-resource\"";
const NONCE_CHALLENGE: &str = "DPoP realm=\"phigate\", error=\"use_dpop_nonce\", algs=\"ES256 PS256 EdDSA\", resource_metadata=\"https://fhir.test/.well-known/oauth-protected-resource\"";

fn examples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples")
}

fn phigate() -> Command {
    Command::new(env!("CARGO_BIN_EXE_phigate"))
}

fn loopback() -> std::net::SocketAddr {
    std::net::SocketAddr::from(([127, 0, 0, 1], 0))
}

/// `phigate check --config FILE` passes without a warning.
#[track_caller]
fn assert_check_passes(config: &Path) {
    let output = phigate()
        .args(["check", "--config"])
        .arg(config)
        .output()
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
    );
    assert!(
        output.status.success(),
        "{}: {stdout}{stderr}",
        config.display()
    );
    assert!(stdout.contains("configuration is valid"), "{stdout}");
    assert!(
        !stderr.contains("warning"),
        "{}: {stderr}",
        config.display()
    );
}

/// One example copied into a temporary folder with the material its README asks for,
/// its placeholders replaced, and the gateway serving it.
struct Example {
    name: &'static str,
    /// The copy the gateway serves; removed when the test ends.
    dir: tempfile::TempDir,
    issuer: DevIssuer,
    upstream: SyntheticFhir,
    server_ca: DevCa,
    partners_ca: DevCa,
    gateway: Gateway,
}

impl Example {
    /// Copies `examples/NAME`, writes `certs/` and `secrets/` beside it (`phigate check` passes
    /// on the copy as written), replaces the placeholders (it passes again), and starts the
    /// gateway on the result, with the harness's public URL.
    async fn start(name: &'static str) -> Self {
        Self::start_on(name, false).await
    }

    /// Like [`Example::start`]; `on_localhost` makes the gateway listen on a fixed loopback port
    /// and name `https://localhost:PORT` as its public URL, as the README's setup does.
    async fn start_on(name: &'static str, on_localhost: bool) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let source = examples_dir().join(name);
        for entry in std::fs::read_dir(&source).unwrap() {
            let path = entry.unwrap().path();
            if path.is_file() {
                std::fs::copy(&path, dir.path().join(path.file_name().unwrap())).unwrap();
            }
        }
        let server_ca = DevCa::new("example server CA").unwrap();
        let partners_ca = DevCa::new("example partners CA").unwrap();
        let certs = dir.path().join("certs");
        std::fs::create_dir(&certs).unwrap();
        server_ca
            .issue_server(&["localhost", "127.0.0.1"])
            .unwrap()
            .write_pem_files(&certs, "server")
            .unwrap();
        partners_ca
            .write_cert_pem(&certs, "partners-ca.crt")
            .unwrap();
        let secrets = dir.path().join("secrets");
        std::fs::create_dir(&secrets).unwrap();
        let secret = format!(
            "{}{}",
            uuid::Uuid::new_v4().simple(),
            uuid::Uuid::new_v4().simple()
        );
        std::fs::write(secrets.join("link-seal"), secret).unwrap();
        let config = dir.path().join("phigate.yaml");
        assert_check_passes(&config);

        let issuer = DevIssuer::start(loopback(), ISSUER).await.unwrap();
        issuer.serve_tokens(GrantSettings {
            audience: AUDIENCE.to_owned(),
            lifetime: Duration::from_secs(300),
        });
        let upstream = SyntheticFhir::start(loopback()).await.unwrap();
        let text = std::fs::read_to_string(&config).unwrap();
        let readme = std::fs::read_to_string(source.join("README.md")).unwrap();
        let mut attempts = 0;
        let gateway = loop {
            let port = on_localhost.then(|| {
                std::net::TcpListener::bind(loopback())
                    .unwrap()
                    .local_addr()
                    .unwrap()
                    .port()
            });
            let mut edited = text.clone();
            for (placeholder, fill) in REPLACED {
                assert!(text.contains(placeholder), "{name}: no {placeholder}");
                assert!(
                    readme.contains(placeholder),
                    "{name}/README.md does not say what to put for {placeholder}"
                );
                let value = match fill {
                    Fill::Jwks => issuer.jwks_uri(),
                    Fill::Issuer => ISSUER.to_owned(),
                    Fill::Audience => AUDIENCE.to_owned(),
                    Fill::PublicBase => port.map_or_else(
                        || PUBLIC_BASE.to_owned(),
                        |port| format!("https://localhost:{port}"),
                    ),
                    Fill::Upstream => upstream.url(),
                    Fill::Listen => format!("127.0.0.1:{}", port.unwrap_or(0)),
                    Fill::Admin => "127.0.0.1:0".to_owned(),
                };
                edited = edited.replace(placeholder, &value);
            }
            // A placeholder added to the configuration must be added to the README and here.
            for (before, after) in text.lines().zip(edited.lines()) {
                assert!(
                    !before.contains("# PLACEHOLDER:") || before != after,
                    "{name}: a placeholder this test does not replace: {before}"
                );
            }
            std::fs::write(&config, edited).unwrap();
            assert_check_passes(&config);

            let mut loaded = Config::load(&config).unwrap_or_else(|err| panic!("{err}"));
            // No load balancer drains a test's gateway.
            loaded.listen.shutdown_grace = Duration::ZERO;
            match Gateway::start(loaded).await {
                Ok(gateway) => break gateway,
                // Another test can bind the free port between the probe and the gateway.
                Err(_) if on_localhost && attempts < 5 => attempts += 1,
                Err(err) => panic!("{name}: {err:#}"),
            }
        };
        let example = Self {
            name,
            dir,
            issuer,
            upstream,
            server_ca,
            partners_ca,
            gateway,
        };
        example.wait_ready().await;
        example
    }

    async fn wait_ready(&self) {
        crate::support::eventually(Duration::from_secs(20), || async {
            crate::support::client::plain_get(self.gateway.admin_addr(), "/readyz")
                .await
                .0
                == 200
        })
        .await;
    }

    fn client(&self, cert: Option<&IssuedCert>) -> TestClient {
        TestClient::new(self.gateway.local_addr(), &self.server_ca, cert, false)
    }

    /// A token from the issuer for `sub` and `client_id` with `scope`, plus `extra` claims.
    fn token(&self, sub: &str, client_id: &str, scope: &str, extra: Value) -> String {
        let mut claims =
            self.issuer
                .standard_claims(sub, client_id, scope, AUDIENCE, Duration::from_secs(120));
        if let (Some(claims), Value::Object(extra)) = (claims.as_object_mut(), extra) {
            claims.extend(extra);
        }
        self.issuer.mint(&claims)
    }

    /// A refusal: status, the challenge (exact, or none), an OperationOutcome, nothing
    /// forwarded since the last [`SyntheticFhir::clear_received`], nothing leaked.
    #[track_caller]
    fn assert_refused(
        &self,
        response: &TestResponse,
        status: u16,
        challenge: Option<&str>,
        secrets: &[&str],
    ) {
        assert_eq!(
            response.status,
            status,
            "{}: {}",
            self.name,
            response.text()
        );
        let actual = response
            .headers
            .get("www-authenticate")
            .map(|v| v.to_str().unwrap());
        assert_eq!(actual, challenge, "{}", self.name);
        assert_eq!(response.json()["resourceType"], "OperationOutcome");
        assert!(
            self.upstream.received().is_empty(),
            "{}: upstream saw {:?}",
            self.name,
            self.upstream.received()
        );
        assert_no_leak(response, secrets);
    }
}

/// The path and query of a URL behind the gateway's public base, to request it.
fn through_gateway(url: &str) -> &str {
    url.strip_prefix(PUBLIC_BASE)
        .unwrap_or_else(|| panic!("{url} is not behind the gateway"))
}

#[test]
fn every_example_has_a_readme_its_files_a_promise_test_and_a_line_in_the_readme() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let top_readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let this_file = include_str!("examples.rs");
    let mut found = Vec::new();
    for entry in std::fs::read_dir(examples_dir()).unwrap() {
        let path = entry.unwrap().path();
        if !path.is_dir() {
            continue;
        }
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        for file in [
            "README.md",
            "phigate.yaml",
            "policy.yaml",
            "policy.tests.yaml",
        ] {
            assert!(
                path.join(file).is_file(),
                "examples/{name}/{file} is missing"
            );
        }
        assert!(
            EXAMPLES.contains(&name.as_str()),
            "examples/{name} is not in EXAMPLES: it would be checked by no test"
        );
        assert!(
            this_file.contains(&format!("Example::start(\"{name}\")")),
            "examples/{name} has no promise test starting its gateway"
        );
        assert!(
            top_readme.contains(&format!("(examples/{name}/)")),
            "README.md's Examples section does not link examples/{name}/"
        );
        found.push(name);
    }
    found.sort_unstable();
    let mut listed = EXAMPLES.map(str::to_owned).to_vec();
    listed.sort_unstable();
    assert_eq!(found, listed, "EXAMPLES names a folder that does not exist");
}

#[test]
fn every_example_passes_its_policy_tests() {
    for name in EXAMPLES {
        let tests = examples_dir().join(name).join("policy.tests.yaml");
        let output = phigate().arg("test").arg(&tests).output().unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "{name}: {stdout}{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let summary = stdout
            .lines()
            .find(|line| line.starts_with("total: "))
            .unwrap_or_else(|| panic!("{name}: no total in {stdout}"));
        assert!(
            summary.ends_with(" passed, 0 failed in 1 file") && !summary.starts_with("total: 0 "),
            "{name}: {summary}"
        );
        // The README shows the count a user should see; it must not drift from the file.
        let passed = summary
            .trim_start_matches("total: ")
            .split(' ')
            .next()
            .unwrap();
        let readme = std::fs::read_to_string(examples_dir().join(name).join("README.md")).unwrap();
        for shown in [
            format!("{passed} passed, 0 failed"),
            format!("{passed} cases"),
        ] {
            assert!(
                readme.contains(&shown),
                "{name}/README.md does not say {shown:?}"
            );
        }
    }
}

/// Each example README's try-it block (the fenced block after its `<!-- try-it` line), run as
/// written by `sh` in the example's folder against its gateway and issuer, with `TOKENS`, `GW`
/// and `CA` set as the README's setup leaves them: each `curl -i` answers the status its comment
/// names (a refusal with a challenge when it is a 401), and every other command succeeds.
#[tokio::test]
async fn every_readme_try_it_block_runs_as_written_with_the_statuses_it_names() {
    let bin_dir = Path::new(env!("CARGO_BIN_EXE_phigate")).parent().unwrap();
    let path = format!("{}:{}", bin_dir.display(), std::env::var("PATH").unwrap());
    for name in EXAMPLES {
        let example = Example::start_on(name, true).await;
        let port = example.gateway.local_addr().port();
        let dir = example.dir.path();
        let ca = example
            .server_ca
            .write_cert_pem(dir, "try-it-ca.crt")
            .unwrap();
        // What the b2b README's setup makes with openssl: the lab's certificate and key.
        example
            .partners_ca
            .issue_client("acme-lab")
            .unwrap()
            .write_pem_files(dir, "acme-lab")
            .unwrap();
        let readme = std::fs::read_to_string(examples_dir().join(name).join("README.md")).unwrap();
        let commands = try_it_commands(&readme);
        let mut script = String::from("set -e\n");
        let mut expected = Vec::new();
        for command in &commands {
            let shown = command.starts_with("curl -i ");
            if shown {
                let (line, comment) = command
                    .rsplit_once(" # ")
                    .unwrap_or_else(|| panic!("{name}: no status comment on {command}"));
                let status = comment.split([',', ' ']).next().unwrap().to_owned();
                assert!(
                    status.len() == 3 && status.parse::<u16>().is_ok(),
                    "{name}: {comment}"
                );
                script.push_str(&format!("{} -sS\n", line.trim_end()));
                expected.push(Some(status));
            } else {
                script.push_str(&format!("{command}\n"));
                expected.push(None);
            }
            script.push_str("printf '\\n@@@\\n'\n");
        }
        let output = tokio::process::Command::new("sh")
            .arg("-c")
            .arg(&script)
            .current_dir(dir)
            .env("PATH", &path)
            .env("TOKENS", example.issuer.token_endpoint())
            .env("GW", format!("https://localhost:{port}"))
            .env("CA", &ca)
            .output()
            .await
            .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "{name}: {stdout}{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let chunks: Vec<&str> = stdout.split("\n@@@\n").collect();
        assert_eq!(chunks.len(), commands.len() + 1, "{name}: {stdout}");
        for ((command, chunk), status) in commands.iter().zip(&chunks).zip(&expected) {
            let Some(status) = status else { continue };
            let head = chunk.trim_start();
            let seen = head
                .strip_prefix("HTTP/")
                .and_then(|line| line.split_whitespace().nth(1))
                .unwrap_or_else(|| panic!("{name}: no status line from {command}:\n{chunk}"));
            assert_eq!(seen, status, "{name}: {command}\n{chunk}");
            let challenged = head.to_ascii_lowercase().contains("www-authenticate: ");
            assert_eq!(
                challenged,
                seen == "401" || head.contains("insufficient_scope"),
                "{name}: {chunk}"
            );
        }
    }
}

/// The try-it block's commands: continued lines joined (a trailing `\`, or an open single
/// quote), and the `TOKENS=`, `GW=` and `CA=` lines left out, since they name the demo's ports.
fn try_it_commands(readme: &str) -> Vec<String> {
    let block = readme
        .split("<!-- try-it")
        .nth(1)
        .and_then(|rest| rest.split("```sh\n").nth(1))
        .and_then(|rest| rest.split("\n```").next())
        .expect("a try-it block");
    let mut commands = Vec::new();
    let mut current = String::new();
    for line in block.lines() {
        if let Some(head) = line.strip_suffix('\\') {
            current.push_str(head);
            continue;
        }
        current.push_str(line);
        if current.matches('\'').count() % 2 == 1 {
            current.push('\n');
            continue;
        }
        commands.push(std::mem::take(&mut current));
    }
    commands.retain(|command| {
        !command.is_empty()
            && !command.starts_with('#')
            && !["TOKENS=", "GW=", "CA="]
                .iter()
                .any(|set| command.starts_with(set))
    });
    commands
}

#[tokio::test]
async fn smart_backend_services_read_in_bulk_with_system_scopes_and_refuse_patient_scopes() {
    let example = Example::start("smart-backend-services").await;
    let client = example.client(None);
    // Client credentials: the client is its own subject, and no patient is in context.
    let service = example.token("bulk-exporter", "bulk-exporter", "system/*.rs", json!({}));
    let search = client.get_with_token("/Observation", &service).await;
    assert_eq!(search.status, 200, "{}", search.text());
    let text = search.text();
    assert!(
        text.contains("Patient/123") && text.contains("Patient/456"),
        "a system search spans every patient: {text}"
    );
    // Bulk Data: kick-off, then the sealed status URL, then the file, all through phigate.
    let kick_off = client.get_with_token("/$export", &service).await;
    assert_eq!(kick_off.status, 202, "{}", kick_off.text());
    let status_url = kick_off.headers["content-location"].to_str().unwrap();
    assert!(status_url.contains("_phigate_seal="), "{status_url}");
    let status = client
        .get_with_token(through_gateway(status_url), &service)
        .await;
    assert_eq!(status.status, 200, "{}", status.text());
    let file_url = status.json()["output"][0]["url"]
        .as_str()
        .unwrap()
        .to_owned();
    let file = client
        .get_with_token(through_gateway(&file_url), &service)
        .await;
    assert_eq!(file.status, 200, "{}", file.text());
    assert_eq!(file.text().lines().count(), 2, "{}", file.text());

    example.upstream.clear_received();
    let patient = example.token(
        "patient-1",
        "patient-app",
        "launch/patient patient/*.rs",
        json!({"patient": "123"}),
    );
    let user = example.token("dr-alice", "ehr", "user/*.rs", json!({}));
    for (path, token) in [
        ("/$export", &patient),
        ("/Patient/$export?_type=Observation", &patient),
        ("/Observation?patient=123", &patient),
        ("/Patient/123", &patient),
        ("/Observation", &user),
    ] {
        let response = client.get_with_token(path, token).await;
        let challenge = response.headers.get("www-authenticate").cloned();
        assert!(
            challenge.as_ref().is_some_and(|c| c
                .to_str()
                .unwrap()
                .starts_with("Bearer realm=\"phigate\", error=\"insufficient_scope\"")),
            "{path}: {challenge:?}"
        );
        let challenge = challenge.unwrap();
        example.assert_refused(&response, 403, Some(challenge.to_str().unwrap()), &[token]);
    }
    // The status URL is sealed to the client that started the export.
    let other = example.token("other-service", "other-service", "system/*.rs", json!({}));
    let response = client
        .get_with_token(through_gateway(status_url), &other)
        .await;
    assert_eq!(response.status, 403, "{}", response.text());
    assert!(example.upstream.received().is_empty());
}

#[tokio::test]
async fn patient_app_dpop_reads_its_own_patient_with_a_proof_and_nothing_else() {
    let example = Example::start("patient-app-dpop").await;
    let client = example.client(None);
    let key = DpopKey::generate();
    let scope = "openid fhirUser launch/patient patient/Patient.r patient/Observation.rs";
    let token = example.token(
        "patient-portal-user-1",
        "patient-app",
        scope,
        json!({"patient": "123", "cnf": {"jkt": key.thumbprint()}}),
    );
    let dpop = |path: &str, proof: Option<String>| {
        let mut headers = vec![("authorization".to_owned(), format!("DPoP {token}"))];
        if let Some(proof) = proof {
            headers.push(("dpop".to_owned(), proof));
        }
        let client = &client;
        let path = path.to_owned();
        async move {
            let headers: Vec<(&str, &str)> = headers
                .iter()
                .map(|(n, v)| (n.as_str(), v.as_str()))
                .collect();
            client
                .send(Method::GET, &path, &headers, Bytes::new())
                .await
        }
    };
    // `nonce: true`: every answer hands out the nonce the next proof must carry.
    let nonce =
        |response: &TestResponse| response.headers["dpop-nonce"].to_str().unwrap().to_owned();
    let mut current = nonce(&client.get("/metadata").await);
    let proof = |path: &str, nonce: &str| {
        key.proof_with_nonce("GET", &format!("{PUBLIC_BASE}{path}"), &token, Some(nonce))
    };

    let own = dpop("/Patient/123", Some(proof("/Patient/123", &current))).await;
    assert_eq!(own.status, 200, "{}", own.text());
    assert_eq!(own.json()["id"], "123");
    current = nonce(&own);
    let search = "/Observation?patient=123";
    let observations = dpop(search, Some(proof(search, &current))).await;
    assert_eq!(observations.status, 200, "{}", observations.text());
    assert!(!observations.text().contains("Patient/456"));
    current = nonce(&observations);

    example.upstream.clear_received();
    // Another patient, with a valid proof: refused before the upstream is asked.
    let other = dpop("/Patient/456", Some(proof("/Patient/456", &current))).await;
    assert_eq!(other.status, 403, "{}", other.text());
    assert!(
        other.headers["www-authenticate"]
            .to_str()
            .unwrap()
            .contains("error=\"insufficient_scope\"")
    );
    example.assert_refused(
        &other,
        403,
        Some(other.headers["www-authenticate"].to_str().unwrap()),
        &[&token, "Brightwater"],
    );
    current = nonce(&other);
    // No proof; a proof without the nonce; a proof for another path.
    let missing = dpop("/Patient/123", None).await;
    example.assert_refused(&missing, 401, Some(PROOF_CHALLENGE), &[&token]);
    let stale = key.proof("GET", &format!("{PUBLIC_BASE}/Patient/123"), &token);
    let response = dpop("/Patient/123", Some(stale)).await;
    example.assert_refused(&response, 401, Some(NONCE_CHALLENGE), &[&token]);
    assert!(response.headers.contains_key("dpop-nonce"));
    let elsewhere = dpop("/Patient/123", Some(proof("/Patient/456", &current))).await;
    example.assert_refused(&elsewhere, 401, Some(PROOF_CHALLENGE), &[&token]);
    // A proof by another key than the one the token is bound to.
    let thief = DpopKey::generate();
    let stolen = thief.proof_with_nonce(
        "GET",
        &format!("{PUBLIC_BASE}/Patient/123"),
        &token,
        Some(&current),
    );
    let response = dpop("/Patient/123", Some(stolen)).await;
    example.assert_refused(&response, 401, Some(DPOP_TOKEN_CHALLENGE), &[&token]);
    // The bound token sent as a bearer token, and a bearer token that is not bound at all.
    let response = client.get_with_token("/Patient/123", &token).await;
    assert_eq!(
        response.headers.get_all("www-authenticate").iter().count(),
        2
    );
    assert_eq!(response.status, 401);
    assert!(example.upstream.received().is_empty());
    let unbound = example.token(
        "patient-portal-user-1",
        "patient-app",
        scope,
        json!({"patient": "123"}),
    );
    let response = client.get_with_token("/Patient/123", &unbound).await;
    example.assert_refused(&response, 401, Some(INVALID_TOKEN), &[&unbound]);
}

#[tokio::test]
async fn b2b_mtls_accepts_a_bound_token_only_with_its_certificate() {
    let example = Example::start("b2b-mtls").await;
    let lab_cert = example.partners_ca.issue_client("acme-lab").unwrap();
    let other_cert = example.partners_ca.issue_client("other-partner").unwrap();
    let thumbprint = CertThumbprint::of(lab_cert.cert_der.as_ref());
    let scope = "system/Patient.r system/ServiceRequest.rs system/Observation.cr";
    let token = example.token(
        "acme-lab",
        "acme-lab",
        scope,
        json!({"cnf": {"x5t#S256": thumbprint.as_str()}}),
    );
    let lab = example.client(Some(&lab_cert));
    let read = lab.get_with_token("/Patient/123", &token).await;
    assert_eq!(read.status, 200, "{}", read.text());
    let result = json!({
        "resourceType": "Observation",
        "status": "final",
        "code": {"text": "Glucose"},
        "subject": {"reference": "Patient/123"},
    });
    let posted = lab
        .send(
            Method::POST,
            "/Observation",
            &[
                ("authorization", &format!("Bearer {token}")),
                ("content-type", "application/fhir+json"),
            ],
            Bytes::from(result.to_string()),
        )
        .await;
    assert_eq!(posted.status, 201, "{}", posted.text());

    example.upstream.clear_received();
    // The same token over another partner's certificate (valid for TLS, not for the token).
    let response = example
        .client(Some(&other_cert))
        .get_with_token("/Patient/123", &token)
        .await;
    example.assert_refused(
        &response,
        401,
        Some(INVALID_TOKEN),
        &[&token, thumbprint.as_str()],
    );
    // The lab's own certificate with a token that is not bound to it.
    let unbound = example.token("acme-lab", "acme-lab", scope, json!({}));
    let response = lab.get_with_token("/Patient/123", &unbound).await;
    example.assert_refused(&response, 401, Some(INVALID_TOKEN), &[&unbound]);
    // No certificate, or one from a CA the listener does not trust: no TLS session at all.
    let foreign = DevCa::new("not a partner CA")
        .unwrap()
        .issue_client("acme-lab")
        .unwrap();
    for client in [example.client(None), example.client(Some(&foreign))] {
        let attempt = client
            .try_send(Method::GET, "/metadata", &[], Bytes::new())
            .await;
        assert!(attempt.is_err(), "{attempt:?}");
    }
    assert!(example.upstream.received().is_empty());
}
