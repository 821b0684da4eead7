//! `phigate demo`: the embedded default. It starts, on loopback, a development token issuer
//! (keys generated now, JWKS over HTTP), a synthetic FHIR server (invented data only) and the
//! gateway over TLS with a CA generated now, then prints `curl -i` commands (status line and
//! challenge shown) for an allowed read, a read denied for scope, an expired token and a request
//! without a token. On Ctrl-C or SIGTERM it stops everything, deletes what it generated and says
//! so. Nothing here is fit for production: the issuer signs whatever the demo asks.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;

use crate::config::Config;
use crate::demo::{DevIssuer, SyntheticFhir};
use crate::proxy::Gateway;
use crate::tls::dev_ca::DevCa;

const DEMO_ISSUER: &str = "https://issuer.phigate.demo";
const DEMO_AUDIENCE: &str = "https://fhir.phigate.demo";

/// The demo policy, embedded so the demo needs no file from the repository.
const DEMO_POLICY: &str = include_str!("../../policies/example.yaml");

/// Runs the demo until Ctrl-C or SIGTERM.
pub async fn run(listen: SocketAddr, admin: SocketAddr) -> anyhow::Result<ExitCode> {
    crate::telemetry::log::init();
    let loopback = SocketAddr::from(([127, 0, 0, 1], 0));
    let issuer = DevIssuer::start(loopback, DEMO_ISSUER)
        .await
        .context("cannot start the development issuer")?;
    let fhir = SyntheticFhir::start(loopback)
        .await
        .context("cannot start the synthetic FHIR server")?;
    let dir = demo_dir()?;
    let ca = DevCa::new("phigate demo CA").context("cannot generate the demo CA")?;
    let ca_file = ca
        .write_cert_pem(&dir, "ca.crt")
        .context("cannot write the demo CA")?;
    ca.issue_server(&["localhost", "127.0.0.1"])
        .context("cannot issue the demo server certificate")?
        .write_pem_files(&dir, "server")
        .context("cannot write the demo server certificate")?;
    std::fs::write(dir.join("policy.yaml"), DEMO_POLICY).context("cannot write the demo policy")?;
    let config_file = dir.join("phigate.yaml");
    let config_text = demo_config(listen, admin, &issuer, &fhir);
    std::fs::write(&config_file, &config_text).context("cannot write the demo configuration")?;
    let config =
        Config::from_yaml(&config_text, &config_file).map_err(|err| anyhow::anyhow!("{err}"))?;

    let gateway = Gateway::start(config).await?;
    print_walkthrough(&gateway, &issuer, &fhir, &ca_file, &config_file);
    super::wait_for_stop_signal().await?;
    say("phigate demo stopping: draining requests, then deleting the generated keys and files");
    // The gateway's folder watches end before the folder goes, so nothing reports it vanishing.
    gateway.shutdown().await;
    issuer.shutdown();
    fhir.shutdown();
    std::fs::remove_dir_all(&dir).with_context(|| format!("cannot delete {}", dir.display()))?;
    say("phigate demo stopped");
    Ok(ExitCode::SUCCESS)
}

#[expect(clippy::print_stdout, reason = "cli/ is the only place that prints")]
fn say(line: &str) {
    println!("{line}");
}

fn demo_dir() -> anyhow::Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("phigate-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    Ok(dir)
}

fn demo_config(
    listen: SocketAddr,
    admin: SocketAddr,
    issuer: &DevIssuer,
    fhir: &SyntheticFhir,
) -> String {
    format!(
        r#"# Written by `phigate demo`; every key and certificate here was generated at start.
listen:
  address: "{listen}"
  tls:
    cert_file: server.crt
    key_file: server.key
admin:
  address: "{admin}"
upstream:
  url: "{upstream}"
  timeout: 10s
issuers:
  - issuer: "{DEMO_ISSUER}"
    jwks_uri: "{jwks}"
    audiences: ["{DEMO_AUDIENCE}"]
    algorithms: [ES256]
tokens:
  clock_skew: 30s
  max_lifetime: 1h
policy_file: policy.yaml
"#,
        upstream = fhir.url(),
        jwks = issuer.jwks_uri(),
    )
}

#[expect(clippy::print_stdout, reason = "cli/ is the only place that prints")]
fn print_walkthrough(
    gateway: &Gateway,
    issuer: &DevIssuer,
    fhir: &SyntheticFhir,
    ca_file: &Path,
    config: &Path,
) {
    let base = format!("https://localhost:{}", gateway.local_addr().port());
    let hour = Duration::from_secs(3600);
    let reader = issuer.mint(&issuer.standard_claims(
        "dr-alice",
        "demo-ehr",
        "user/Patient.r",
        DEMO_AUDIENCE,
        hour,
    ));
    let observer = issuer.mint(&issuer.standard_claims(
        "dr-bob",
        "demo-ehr",
        "user/Observation.rs",
        DEMO_AUDIENCE,
        hour,
    ));
    let mut expired_claims = issuer.standard_claims(
        "dr-alice",
        "demo-ehr",
        "user/Patient.r",
        DEMO_AUDIENCE,
        hour,
    );
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    expired_claims["iat"] = (now - 1200).into();
    expired_claims["exp"] = (now - 600).into();
    let expired = issuer.mint(&expired_claims);
    let ca = ca_file.display();
    println!("phigate demo — development only: generated keys and certificates, synthetic data");
    println!("  gateway   {base}  (TLS; trust {ca})");
    println!(
        "  admin     http://{}/metrics  /healthz  /readyz",
        gateway.admin_addr()
    );
    println!(
        "  issuer    {}  (JWKS {})",
        issuer.issuer(),
        issuer.jwks_uri()
    );
    println!("  upstream  {}  (synthetic FHIR)", fhir.url());
    println!("  config    {}", config.display());
    println!();
    println!("# 1. allowed: a user/Patient.r token reads Patient 123 (200)");
    println!("curl -i --cacert {ca} -H 'Authorization: Bearer {reader}' {base}/Patient/123");
    println!(
        "# 2. denied for scope: a user/Observation.rs token cannot read a Patient (403 insufficient_scope)"
    );
    println!("curl -i --cacert {ca} -H 'Authorization: Bearer {observer}' {base}/Patient/123");
    println!("# 3. expired token (401 invalid_token)");
    println!("curl -i --cacert {ca} -H 'Authorization: Bearer {expired}' {base}/Patient/123");
    println!("# 4. no token (401, bare Bearer challenge)");
    println!("curl -i --cacert {ca} {base}/Patient/123");
    println!("# 5. public capability statement (200)");
    println!("curl -i --cacert {ca} {base}/metadata");
    println!();
    println!("phigate demo ready; press Ctrl-C to stop");
}
