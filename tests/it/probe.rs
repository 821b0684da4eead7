//! `phigate probe` against real targets: the gateway started by the harness (every case passes
//! or is skipped with a reason, FHIR confinement included), a deliberately weak TLS server that
//! answers 200 to everything and echoes the `Authorization` header (the binary exits 1 and
//! names the right cases), and `phigate demo --probe`.

use std::convert::Infallible;
use std::process::Command;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use phigate::demo::issuer::INITIAL_KID;
use phigate::probe::report::{Report, Verdict};
use phigate::probe::{self, Options};
use serde_json::{Value, json};

use crate::support::{Harness, Options as HarnessOptions, PUBLIC_BASE};

const SMART_POLICY: &str = include_str!("../../policies/smart-v2.yaml");

fn probe_options(harness: &Harness, token: String, issuer_key: bool) -> Options {
    let key = harness.dir.path().join("issuer.key");
    std::fs::write(&key, harness.issuer.private_key_pem(INITIAL_KID).unwrap()).unwrap();
    Options {
        target: format!("https://127.0.0.1:{}", harness.addr().port()),
        token,
        path: "/Patient/123".to_owned(),
        ca: Some(harness.dir.path().join("clients-ca.crt")),
        issuer_key: issuer_key.then_some(key),
        jwks: Some(harness.issuer.jwks_uri()),
        public_url: Some(PUBLIC_BASE.to_owned()),
        ..Options::default()
    }
}

#[track_caller]
fn assert_only_the_controls_reached_the_upstream(harness: &Harness) {
    assert!(
        harness
            .upstream_paths()
            .iter()
            .all(|(method, path)| method == "GET" && path.starts_with("/fhir/Patient/123")),
        "only the controls reached the upstream: {:?}",
        harness.upstream_paths()
    );
}

#[track_caller]
fn assert_passes_or_skips_with_reason(report: &Report) {
    let text = report.render_text();
    assert!(report.stopped.is_none(), "{text}");
    for result in &report.results {
        match &result.verdict {
            Verdict::Pass => {}
            Verdict::Skipped(reason) => assert!(!reason.is_empty(), "{text}"),
            Verdict::Fail => panic!("{} failed:\n{text}", result.id),
        }
    }
    assert!(report.is_clean(), "{text}");
}

#[tokio::test]
async fn every_case_passes_or_is_skipped_with_a_reason_against_phigate() {
    let harness = Harness::start().await;
    let options = probe_options(&harness, harness.token("user/Patient.r"), true);
    let report = probe::run(&options).await.unwrap();
    eprintln!("{}", report.render_text());
    assert!(report.results.len() >= 40, "{}", report.render_text());
    assert_passes_or_skips_with_reason(&report);
    // With the issuer's key and its JWKS nothing needs to be skipped: the HMAC confusion and
    // DPoP cases ran too.
    for id in [
        "hmac-jwk-text",
        "hmac-public-pem",
        "dpop-replayed",
        "dpop-other-key",
        "dpop-bound-as-bearer",
        "expired",
        "tls10-offered",
        "path-backslash",
    ] {
        let result = report.result(id).unwrap();
        assert_eq!(result.verdict, Verdict::Pass, "{}", report.render_text());
    }
    assert_only_the_controls_reached_the_upstream(&harness);
}

/// `--http2`: the same cases over HTTP/2 (ALPN `h2`), as HTTP/2 clients reach the gateway,
/// pass too; nothing but the controls reaches the upstream.
#[tokio::test]
async fn every_case_passes_over_http2_against_phigate() {
    let harness = Harness::start().await;
    let options = Options {
        http2: true,
        ..probe_options(&harness, harness.token("user/Patient.r"), true)
    };
    let report = probe::run(&options).await.unwrap();
    assert_passes_or_skips_with_reason(&report);
    let skipped: Vec<&str> = report
        .results
        .iter()
        .filter(|r| matches!(r.verdict, Verdict::Skipped(_)))
        .map(|r| r.id)
        .collect();
    assert!(skipped.is_empty(), "{}", report.render_text());
    assert_only_the_controls_reached_the_upstream(&harness);
}

#[tokio::test]
async fn without_the_issuer_key_variants_are_mutated_and_dpop_is_skipped_with_the_reason() {
    let harness = Harness::start().await;
    let mut options = probe_options(&harness, harness.token("user/Patient.r"), false);
    options.jwks = None;
    let report = probe::run(&options).await.unwrap();
    assert_passes_or_skips_with_reason(&report);
    let expired = report.result("expired").unwrap();
    assert!(expired.observed.contains("mutated"), "{expired:?}");
    for id in ["dpop-replayed", "hmac-jwk-text"] {
        assert!(
            matches!(report.result(id).unwrap().verdict, Verdict::Skipped(_)),
            "{}",
            report.render_text()
        );
    }
}

/// The probe with `--patient 123 --other-patient 456` and a token confined to 123, through
/// phigate under the SMART policy, in front of the synthetic or the real FHIR server.
async fn fhir_probe(real_fhir: bool) -> Report {
    let harness = Harness::with(HarnessOptions {
        policy: SMART_POLICY.to_owned(),
        real_fhir,
        ..HarnessOptions::default()
    })
    .await;
    let mut claims = harness.claims("launch/patient patient/Patient.r patient/Observation.rs");
    claims["patient"] = json!("123");
    let mut options = probe_options(&harness, harness.mint(&claims), true);
    options.patient = Some("123".to_owned());
    options.other_patient = Some("456".to_owned());
    let report = probe::run(&options).await.unwrap();
    eprintln!("{}", report.render_text());
    assert_passes_or_skips_with_reason(&report);
    let fhir: Vec<_> = report
        .results
        .iter()
        .filter(|r| r.id.starts_with("fhir-"))
        .collect();
    assert!(fhir.len() >= 15, "{}", report.render_text());
    assert!(fhir.iter().all(|r| r.verdict == Verdict::Pass));
    report
}

#[tokio::test]
async fn fhir_confinement_cases_pass_against_phigate_with_a_patient_token() {
    fhir_probe(false).await;
}

#[tokio::test]
async fn fhir_confinement_cases_pass_against_phigate_before_the_real_fhir_server() {
    let report = fhir_probe(true).await;
    // The real server answers the own-patient search with a Bundle whose links phigate moved
    // to its public URL: the link check saw them and passed.
    assert_eq!(
        report.result("fhir-links-own-search").unwrap().observed,
        "200"
    );
}

/// A TLS server that answers 200 to everything, echoing the `Authorization` header.
async fn weak_target(harness: &Harness) -> std::net::SocketAddr {
    let cert = harness
        .ca
        .issue_server(&["localhost", "127.0.0.1"])
        .unwrap();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert.cert_der.clone()], cert.key_der.clone_key())
        .unwrap();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let service = service_fn(|req: http::Request<hyper::body::Incoming>| async move {
                    let echoed = req
                        .headers()
                        .get("authorization")
                        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
                        .unwrap_or_default();
                    // Another patient's record, linked at an inside address, and the token.
                    let body = json!({
                        "resourceType": "Bundle",
                        "type": "searchset",
                        "link": [{"relation": "self", "url": "http://10.0.0.7:8080/fhir/Patient"}],
                        "entry": [{
                            "fullUrl": "http://10.0.0.7:8080/fhir/Patient/456",
                            "resource": {"resourceType": "Patient", "id": "456"},
                        }],
                        "note": echoed,
                    })
                    .to_string();
                    Ok::<_, Infallible>(http::Response::new(Full::new(Bytes::from(body))))
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    addr
}

#[tokio::test]
async fn a_weak_target_fails_the_probe_on_the_cases_it_lets_through() {
    let harness = Harness::start().await;
    let weak = weak_target(&harness).await;
    let token = harness.token("user/Patient.r");
    let json_file = harness.dir.path().join("report.json");
    let output = tokio::task::spawn_blocking({
        let ca = harness.dir.path().join("clients-ca.crt");
        let jwks = harness.issuer.jwks_uri();
        let json_file = json_file.clone();
        move || {
            Command::new(env!("CARGO_BIN_EXE_phigate"))
                .args([
                    "probe",
                    "--target",
                    &format!("https://127.0.0.1:{}", weak.port()),
                ])
                .args(["--token", &token, "--path", "/Patient/123", "--jwks", &jwks])
                .args(["--patient", "123", "--other-patient", "456"])
                .arg("--ca")
                .arg(ca)
                .arg("--json")
                .arg(json_file)
                .output()
                .unwrap()
        }
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "{stdout}");
    let report: Value = serde_json::from_slice(&std::fs::read(&json_file).unwrap()).unwrap();
    let case = |id: &str| {
        report["cases"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["id"] == id)
            .unwrap_or_else(|| panic!("no case {id}: {report:#}"))
            .clone()
    };
    for id in [
        "no-credentials",
        "alg-none",
        "hmac-public-pem",
        "expired",
        "unknown-kid",
        "query-token",
        "path-dot-dot",
        "method-override-header",
    ] {
        assert_eq!(case(id)["verdict"], "fail", "{id}: {stdout}");
    }
    // The token came back in the body: the leak check says so, without repeating it.
    let alg_none = case("alg-none");
    assert!(
        alg_none["observed"]
            .as_str()
            .unwrap()
            .contains("a piece of the token"),
        "{alg_none}"
    );
    assert!(!stdout.contains(&harness.token("user/Patient.r")[..40]));
    let no_credentials = case("no-credentials")["observed"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        no_credentials.contains("an internal address (10.0.0.7)"),
        "{no_credentials}"
    );
    // The other patient's record and the inside links are named in every FHIR case.
    for id in ["fhir-read-other", "fhir-search-patient", "fhir-batch"] {
        let observed = case(id)["observed"].as_str().unwrap().to_owned();
        assert_eq!(case(id)["verdict"], "fail", "{id}: {observed}");
        assert!(
            observed.contains("the other patient's data (Patient/456)"),
            "{observed}"
        );
        assert!(
            observed.contains("a `Bundle.link` names another address"),
            "{observed}"
        );
        assert!(
            observed.contains("a `fullUrl` names another address"),
            "{observed}"
        );
    }
    // What rustls itself refuses still passes: the probe judges, it does not blame.
    for id in [
        "control-allowed",
        "tls10-offered",
        "tls11-offered",
        "plaintext-on-tls-port",
    ] {
        assert_eq!(case(id)["verdict"], "pass", "{id}: {stdout}");
    }
    assert!(
        report["summary"]["failed"].as_u64().unwrap() >= 30,
        "{stdout}"
    );
}

#[tokio::test]
async fn a_mutual_tls_gateway_is_probed_with_the_client_certificate() {
    let harness = Harness::with(HarnessOptions {
        client_auth: Some("required"),
        ..HarnessOptions::default()
    })
    .await;
    let (cert, key) = harness
        .ca
        .issue_client("probe")
        .unwrap()
        .write_pem_files(harness.dir.path(), "probe-client")
        .unwrap();
    let mut options = probe_options(&harness, harness.token("user/Patient.r"), true);
    options.cert = Some(cert);
    options.key = Some(key);
    let report = probe::run(&options).await.unwrap();
    assert_passes_or_skips_with_reason(&report);
    assert_eq!(
        report.result("control-allowed").unwrap().verdict,
        Verdict::Pass
    );
    // Without the certificate the gateway ends the connection (TLS 1.3 reports it after the
    // client's side of the handshake): the control fails and the run stops, saying what to check.
    let mut options = probe_options(&harness, harness.token("user/Patient.r"), true);
    options.cert = None;
    let stopped = probe::run(&options).await.unwrap();
    assert_eq!(stopped.results.len(), 1, "{}", stopped.render_text());
    assert_eq!(stopped.results[0].verdict, Verdict::Fail);
    assert!(stopped.stopped.as_deref().unwrap().contains("--cert"));
}

#[tokio::test]
async fn demo_probe_shows_every_case_passing() {
    let output = tokio::task::spawn_blocking(|| {
        Command::new(env!("CARGO_BIN_EXE_phigate"))
            .args([
                "demo",
                "--probe",
                "--listen",
                "127.0.0.1:0",
                "--admin",
                "127.0.0.1:0",
            ])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    // The probed demo names its public URL, so even the DPoP cases run: nothing is skipped.
    assert!(stdout.contains(" 0 failed, 0 skipped"), "{stdout}");
    assert!(stdout.contains("control-allowed"), "{stdout}");
}

/// `--dpop-key`: a gateway that takes only DPoP-bound tokens and demands server nonces (as
/// `examples/patient-app-dpop` does) is probed with a bound token and its client's key. Every
/// case passes or is skipped with a reason; the control and the token cases carry proofs, and
/// the DPoP cases run with the token and key given. A token not bound to the key is refused
/// before anything is sent.
#[tokio::test]
async fn a_dpop_only_gateway_with_nonces_is_probed_with_the_clients_key() {
    let policy = "rules:\n  - name: dpop-read\n    methods: [GET]\n    path: /Patient/{id}\n    scopes: [user/Patient.r]\n    require_binding: dpop\n";
    let harness = Harness::with(HarnessOptions {
        policy: policy.into(),
        extra: "dpop:\n  nonce: true\n".into(),
        ..HarnessOptions::default()
    })
    .await;
    let key = phigate::demo::DpopKey::generate().unwrap();
    let key_file = harness.dir.path().join("app.key");
    std::fs::write(&key_file, key.to_pem()).unwrap();
    let mut claims = harness.issuer.standard_claims(
        "u-1",
        "app-1",
        "user/Patient.r",
        crate::support::AUDIENCE,
        std::time::Duration::from_secs(300),
    );
    claims["cnf"] = json!({"jkt": key.thumbprint()});
    let bound = harness.issuer.mint(&claims);
    let options = Options {
        dpop_key: Some(key_file.clone()),
        ..probe_options(&harness, bound, true)
    };
    let report = probe::run(&options).await.unwrap();
    eprintln!("{}", report.render_text());
    assert_passes_or_skips_with_reason(&report);
    for id in [
        "control-allowed",
        "control-scheme-case",
        "expired",
        "alg-none",
        "tampered-payload",
        "dpop-replayed",
        "dpop-other-key",
        "dpop-bound-as-bearer",
    ] {
        let result = report.result(id).unwrap();
        assert_eq!(result.verdict, Verdict::Pass, "{}", report.render_text());
    }

    let unbound = Options {
        dpop_key: Some(key_file),
        ..probe_options(&harness, harness.token("user/Patient.r"), true)
    };
    let Err(refused) = probe::run(&unbound).await else {
        panic!("an unbound token is refused");
    };
    assert!(
        refused.to_string().contains("not bound to --dpop-key"),
        "{refused}"
    );
}
