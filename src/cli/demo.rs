//! `phigate demo`: the embedded default. It starts, on loopback, a development token issuer
//! (keys generated now, JWKS over HTTP), a synthetic FHIR server (invented data only) and the
//! gateway over TLS with a CA generated now, then prints the whole story as commands a person can
//! paste, in order: an allowed read, a read denied for scope, an expired token, a request without
//! a token, a public route; a certificate-bound token over mutual TLS and without the
//! certificate; a DPoP-bound token with its proof, and the proof replayed; a revocation taking
//! effect; a detector firing on the revoked token and its block; the audit trail verified. On
//! Ctrl-C or SIGTERM it stops everything, deletes what it generated and says so. Nothing here is
//! fit for production: the issuer signs whatever the demo asks.
//!
//! `--write-config DIR` instead writes a starting point an operator can run — configuration,
//! policy with its tests, a test CA and a server certificate — with the issuer and upstream as
//! placeholders the configuration's header names, and never overwrites a file.
//!
//! The issuer's private key is written into the demo's own folder (`issuer-es256.key`, deleted
//! at stop) so that `phigate probe --issuer-key` can forge realistic token variants against the
//! demo; `--probe` does exactly that itself, prints the probe's table and stops.
//!
//! The issuer also serves a client credentials token endpoint (printed as `tokens`), so the
//! `examples/` can be tried against the demo with tokens of their own shape: `system/` scopes, a
//! launch patient, a DPoP key or client certificate binding.
//!
//! `--bench-tokens N --bench-dir DIR` hands a load run what it cannot mint itself: N access
//! tokens from the demo's issuer and that issuer's public key, written at start and deleted at
//! stop. They are worth nothing outside this demo: the issuer's private key lives only in this
//! process and the tokens expire within the demo's token lifetime.

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;

use crate::config::Config;
use crate::demo::issuer::INITIAL_KID;
use crate::demo::token_endpoint::GrantSettings;
use crate::demo::{DevIssuer, DpopKey, SyntheticFhir};
use crate::proxy::Gateway;
use crate::tls::CertThumbprint;
use crate::tls::dev_ca::{DevCa, IssuedCert};

const DEMO_ISSUER: &str = "https://issuer.phigate.demo";
const DEMO_AUDIENCE: &str = "https://fhir.phigate.demo";
/// The demo gateway's `tokens.max_lifetime`, and the lifetime of every token the demo mints: an
/// hour, so a pasted command or a load run later in the session still works.
const DEMO_TOKEN_LIFETIME: Duration = Duration::from_secs(3600);
/// The lifetime of tokens from the demo's token endpoint: five minutes, under every example's
/// `tokens.max_lifetime` (SMART Backend Services caps access tokens there).
const ENDPOINT_TOKEN_LIFETIME: Duration = Duration::from_secs(300);

/// The files `--bench-tokens` writes into `--bench-dir`.
const BENCH_TOKENS_FILE: &str = "tokens.txt";
const BENCH_KEY_FILE: &str = "issuer-es256.pem";
/// The issuer's private key in the demo's folder, for `phigate probe --issuer-key`.
const ISSUER_PRIVATE_KEY_FILE: &str = "issuer-es256.key";
/// What the demo policy asks of `GET /Patient/{id}`, so every bench token passes every check.
const BENCH_SCOPE: &str = "user/Patient.r";

/// `--bench-tokens N --bench-dir DIR`: how many tokens to hand a load run, and where.
#[derive(Debug)]
pub struct BenchTokens {
    /// How many distinct tokens to mint.
    pub count: usize,
    /// The folder the tokens and the issuer key are written into.
    pub dir: PathBuf,
}

/// The demo's revocation list and audit key, in its folder.
const REVOCATION_FILE: &str = "revoked.json";
const AUDIT_KEY_FILE: &str = "audit.key";

/// The demo policy, embedded so the demo needs no file from the repository.
const DEMO_POLICY: &str = include_str!("../../policies/example.yaml");
/// The demo policy's test cases, written beside it by `--write-config`.
const DEMO_POLICY_TESTS: &str = include_str!("../../policies/example.tests.yaml");

/// Placeholders in a written configuration: reserved names (RFC 2606), so nothing is reached
/// before the operator replaces them.
const PLACEHOLDER_ISSUER: &str = "https://auth.example.org";
const PLACEHOLDER_JWKS: &str = "https://auth.example.org/.well-known/jwks.json";
const PLACEHOLDER_AUDIENCE: &str = "https://fhir.example.org";
const PLACEHOLDER_UPSTREAM: &str = "http://127.0.0.1:8080/fhir";

/// The header of a written configuration: what it is and exactly what to change.
fn written_header(listen: SocketAddr) -> String {
    let port = listen.port();
    format!(
        r#"# phigate starting configuration, written by `phigate demo --write-config`.
#
# `phigate check --config phigate.yaml` passes as written, and `phigate run --config phigate.yaml`
# starts, but the issuer below is a placeholder: until it is yours, phigate logs "jwks fetch
# failed; no keys yet", /readyz answers 503 and every request that needs a token gets 503.
# Change, in this file:
#   issuers[0].issuer      {PLACEHOLDER_ISSUER} -> your authorization server's exact `iss`
#   issuers[0].jwks_uri    {PLACEHOLDER_JWKS} -> its JWKS URL
#                          (add jwks_ca_file: if it is served under a private CA)
#   issuers[0].audiences   {PLACEHOLDER_AUDIENCE} -> the `aud` your access tokens carry
#   issuers[0].algorithms  the algorithms your issuer signs with
#   upstream.url           {PLACEHOLDER_UPSTREAM} -> your FHIR server's base URL
#   listen.address         127.0.0.1 answers on loopback only; 0.0.0.0 on every interface
# policy.yaml is the example policy (public /metadata, scoped reads); after editing it, run
# `phigate test policy.tests.yaml`.
# server.crt and server.key are for the names localhost and 127.0.0.1, issued by the test CA in
# ca.crt, whose key was not kept; with the upstream in place, try
#   curl -i --cacert ca.crt https://localhost:{port}/metadata
# Before real clients connect, replace them with a certificate for your host from your own CA.
"#
    )
}

/// Runs the demo until Ctrl-C or SIGTERM.
pub async fn run(
    listen: SocketAddr,
    admin: SocketAddr,
    bench: Option<BenchTokens>,
    probe: bool,
) -> anyhow::Result<ExitCode> {
    let _log = crate::telemetry::log::init();
    let loopback = SocketAddr::from(([127, 0, 0, 1], 0));
    let issuer = DevIssuer::start(loopback, DEMO_ISSUER)
        .await
        .context("cannot start the development issuer")?;
    issuer.serve_tokens(GrantSettings {
        audience: DEMO_AUDIENCE.to_owned(),
        lifetime: ENDPOINT_TOKEN_LIFETIME,
    });
    let fhir = SyntheticFhir::start(loopback)
        .await
        .context("cannot start the synthetic FHIR server")?;
    // Before the demo's folder exists, so that a refused --bench-dir leaves nothing behind.
    let bench_files = match &bench {
        Some(bench) => Some(write_bench_tokens(&issuer, bench).await?),
        None => None,
    };
    let dir = demo_dir()?;
    let ca = DevCa::new("phigate demo CA").context("cannot generate the demo CA")?;
    let ca_file = ca
        .write_cert_pem(&dir, "ca.crt")
        .context("cannot write the demo CA")?;
    ca.issue_server(&["localhost", "127.0.0.1"])
        .context("cannot issue the demo server certificate")?
        .write_pem_files(&dir, "server")
        .context("cannot write the demo server certificate")?;
    let client_cert = ca
        .issue_client("demo-partner")
        .context("cannot issue the demo client certificate")?;
    client_cert
        .write_pem_files(&dir, "client")
        .context("cannot write the demo client certificate")?;
    std::fs::write(dir.join("policy.yaml"), DEMO_POLICY).context("cannot write the demo policy")?;
    std::fs::write(
        dir.join(REVOCATION_FILE),
        r#"{"version": 1, "entries": []}"#,
    )
    .context("cannot write the demo revocation list")?;
    let mut audit_key = [0u8; 32];
    aws_lc_rs::rand::fill(&mut audit_key)
        .map_err(|_| anyhow::anyhow!("cannot generate the demo audit key"))?;
    std::fs::write(dir.join(AUDIT_KEY_FILE), audit_key)
        .context("cannot write the demo audit key")?;
    // DPoP proofs name the gateway's URL, so its port must be known before it starts.
    let listen = concrete_port(listen)?;
    let issuer_key = dir.join(ISSUER_PRIVATE_KEY_FILE);
    super::create_private(&issuer_key)?
        .write_all(issuer.private_key_pem(INITIAL_KID)?.as_bytes())?;
    let config_file = dir.join("phigate.yaml");
    let config_text = format!(
        "# Written by `phigate demo`; every key and certificate here was generated at start.\n{}{}",
        config_text(
            listen,
            admin,
            &ConfigParts {
                issuer: DEMO_ISSUER,
                jwks: &issuer.jwks_uri(),
                audience: DEMO_AUDIENCE,
                algorithms: "[ES256]",
                upstream: &fhir.url(),
                max_lifetime: &humantime::format_duration(DEMO_TOKEN_LIFETIME).to_string(),
                listen_extra: &story_listen(listen),
            },
        ),
        story_config()
    );
    std::fs::write(&config_file, &config_text).context("cannot write the demo configuration")?;
    let mut config =
        Config::from_yaml(&config_text, &config_file).map_err(|err| anyhow::anyhow!("{err}"))?;
    // No load balancer sits in front of a demo: Ctrl-C closes its listener at once.
    config.listen.shutdown_grace = Duration::ZERO;

    let gateway = Gateway::start(config).await?;
    let outcome = if probe {
        run_probe(&gateway, &issuer, &ca_file, &issuer_key).await
    } else {
        let printed_bench = bench.as_ref().map(|b| b.count).zip(bench_files.as_ref());
        print_walkthrough(
            &gateway,
            &issuer,
            &fhir,
            &Files {
                dir: &dir,
                ca: &ca_file,
                config: &config_file,
                client_cert: &client_cert,
                issuer_key: &issuer_key,
            },
            printed_bench,
        )?;
        super::wait_for_stop_signal().await?;
        say("phigate demo stopping: draining requests, then deleting the generated keys and files");
        Ok(ExitCode::SUCCESS)
    };
    // The gateway's folder watches end before the folder goes, so nothing reports it vanishing.
    gateway.shutdown().await;
    issuer.shutdown();
    fhir.shutdown();
    std::fs::remove_dir_all(&dir).with_context(|| format!("cannot delete {}", dir.display()))?;
    // The folder is the caller's; only what the demo wrote into it goes.
    for path in bench_files
        .iter()
        .flat_map(|files| [&files.tokens, &files.key])
    {
        std::fs::remove_file(path).with_context(|| format!("cannot delete {}", path.display()))?;
    }
    if !probe {
        say("phigate demo stopped");
    }
    outcome
}

/// The demo's reader: a `user/Patient.r` token for Dr Alice of the demo EHR, valid an hour.
fn mint_reader(issuer: &DevIssuer) -> String {
    issuer.mint(&issuer.standard_claims(
        "dr-alice",
        "demo-ehr",
        "user/Patient.r",
        DEMO_AUDIENCE,
        DEMO_TOKEN_LIFETIME,
    ))
}

/// `--probe`: the probe against this demo, with a reader token for `/Patient/123` and the
/// issuer's key; its table is printed and its verdict is the exit code.
async fn run_probe(
    gateway: &Gateway,
    issuer: &DevIssuer,
    ca_file: &Path,
    issuer_key: &Path,
) -> anyhow::Result<ExitCode> {
    let options = crate::probe::Options {
        target: format!("https://localhost:{}", gateway.local_addr().port()),
        token: mint_reader(issuer),
        path: "/Patient/123".to_owned(),
        ca: Some(ca_file.to_path_buf()),
        issuer_key: Some(issuer_key.to_path_buf()),
        jwks: Some(issuer.jwks_uri()),
        ..crate::probe::Options::default()
    };
    let report = crate::probe::run(&options).await?;
    say(report.render_text().trim_end());
    Ok(match report.is_clean() {
        true => ExitCode::SUCCESS,
        false => ExitCode::FAILURE,
    })
}

/// How to probe the running demo from another terminal.
fn println_probe_hint(gateway: &Gateway, ca_file: &Path, issuer: &DevIssuer, issuer_key: &Path) {
    let token = mint_reader(issuer);
    say("# probe the demo gateway with the attack catalogue (every case passes or is skipped):");
    say(&format!(
        "phigate probe --target https://localhost:{} --ca {} --token {token} --path /Patient/123 --issuer-key {} --jwks {}",
        gateway.local_addr().port(),
        ca_file.display(),
        issuer_key.display(),
        issuer.jwks_uri(),
    ));
}

#[expect(clippy::print_stdout, reason = "cli/ is the only place that prints")]
fn say(line: &str) {
    println!("{line}");
}

/// Writes a configuration an operator can start from into `dir` (see [`written_header`]).
#[expect(clippy::print_stdout, reason = "cli/ is the only place that prints")]
pub fn write_config(dir: &Path, listen: SocketAddr, admin: SocketAddr) -> anyhow::Result<ExitCode> {
    let names = [
        "phigate.yaml",
        "policy.yaml",
        "policy.tests.yaml",
        "ca.crt",
        "server.crt",
        "server.key",
    ];
    // An operator may point this at a folder that already holds their files.
    if let Some(existing) = names.iter().map(|n| dir.join(n)).find(|p| p.exists()) {
        anyhow::bail!(
            "{} exists; --write-config never overwrites a file",
            existing.display()
        );
    }
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let ca = DevCa::new("phigate test CA").context("cannot generate the test CA")?;
    ca.write_cert_pem(dir, "ca.crt")
        .context("cannot write the test CA")?;
    ca.issue_server(&["localhost", "127.0.0.1"])
        .context("cannot issue the server certificate")?
        .write_pem_files(dir, "server")
        .context("cannot write the server certificate")?;
    let tests = written_policy_tests();
    let config = written_config(listen, admin);
    for (name, text) in [
        ("policy.yaml", DEMO_POLICY),
        ("policy.tests.yaml", tests.as_str()),
        ("phigate.yaml", config.as_str()),
    ] {
        std::fs::write(dir.join(name), text)
            .with_context(|| format!("cannot write {}", dir.join(name).display()))?;
    }
    let config_file = dir.join("phigate.yaml");
    println!(
        "wrote {} and, beside it: {}",
        config_file.display(),
        names[1..].join(", ")
    );
    println!(
        "next: replace the placeholder issuer and upstream (the file's header lists each), then"
    );
    println!("  phigate check --config {}", config_file.display());
    println!("  phigate test {}", dir.join("policy.tests.yaml").display());
    println!("  phigate run --config {}", config_file.display());
    Ok(ExitCode::SUCCESS)
}

/// The written configuration: its header, then the placeholders it names.
fn written_config(listen: SocketAddr, admin: SocketAddr) -> String {
    let parts = ConfigParts {
        issuer: PLACEHOLDER_ISSUER,
        jwks: PLACEHOLDER_JWKS,
        audience: PLACEHOLDER_AUDIENCE,
        algorithms: "[ES256, RS256]",
        upstream: PLACEHOLDER_UPSTREAM,
        max_lifetime: "15m",
        listen_extra: "",
    };
    format!(
        "{}{}",
        written_header(listen),
        config_text(listen, admin, &parts)
    )
}

/// The shipped policy's tests, naming the written policy instead of the shipped file.
fn written_policy_tests() -> String {
    std::iter::once("# Policy tests for policy.yaml: `phigate test policy.tests.yaml`.")
        .chain(
            DEMO_POLICY_TESTS
                .lines()
                .skip_while(|line| line.starts_with('#'))
                .map(|line| match line {
                    "policy: example.yaml" => "policy: policy.yaml",
                    other => other,
                }),
        )
        .flat_map(|line| [line, "\n"])
        .collect()
}

/// The files `--bench-tokens` wrote.
struct BenchFiles {
    tokens: PathBuf,
    key: PathBuf,
}

/// Writes the signing key's public PEM and `bench.count` tokens, one a line, into `bench.dir`.
async fn write_bench_tokens(issuer: &DevIssuer, bench: &BenchTokens) -> anyhow::Result<BenchFiles> {
    let dir = &bench.dir;
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let files = BenchFiles {
        tokens: dir.join(BENCH_TOKENS_FILE),
        key: dir.join(BENCH_KEY_FILE),
    };
    let pem = issuer.public_key_pem(INITIAL_KID)?;
    let tokens = super::create_private(&files.tokens)?;
    // A refused key file leaves nothing behind, so that a second try is not refused in turn.
    let mut key = super::create_private(&files.key).inspect_err(|_| {
        let _ = std::fs::remove_file(&files.tokens);
    })?;
    key.write_all(pem.as_bytes())?;
    let mut out = std::io::BufWriter::new(tokens);
    let (issuer, count) = (issuer.clone(), bench.count);
    // About 30 µs a signature: 100,000 tokens take seconds, off the servers' worker threads.
    tokio::task::spawn_blocking(move || -> std::io::Result<()> {
        for i in 0..count {
            let claims = issuer.standard_claims(
                &format!("bench-user-{i}"),
                "bench-client",
                BENCH_SCOPE,
                DEMO_AUDIENCE,
                DEMO_TOKEN_LIFETIME,
            );
            writeln!(out, "{}", issuer.mint(&claims))?;
        }
        out.flush()
    })
    .await?
    .with_context(|| format!("cannot write {}", files.tokens.display()))?;
    Ok(files)
}

fn demo_dir() -> anyhow::Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("phigate-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    Ok(dir)
}

/// `addr` itself, or with port 0 a port free now: the demo must name its URL before the gateway
/// binds it. Another process could take the port in between; the gateway's start then fails.
fn concrete_port(addr: SocketAddr) -> anyhow::Result<SocketAddr> {
    if addr.port() != 0 {
        return Ok(addr);
    }
    let probe = std::net::TcpListener::bind(addr)
        .with_context(|| format!("cannot find a free port on {}", addr.ip()))?;
    Ok(probe.local_addr()?)
}

/// The demo's own sections beyond a written configuration: a DPoP proof lifetime long enough
/// to paste a printed proof, a revocation file, a detector that blocks a client whose revoked
/// token keeps coming back, and the audit trail.
fn story_config() -> String {
    format!(
        r#"dpop:
  max_age: 1h
revocation:
  sources:
    - file: {REVOCATION_FILE}
      interval: 1s
monitor:
  refused_token_reuse:
    threshold: 3
    window: 10m
    actions:
      block: 10m
audit:
  file: audit.log
  key_file: {AUDIT_KEY_FILE}
"#
    )
}

/// The demo's listener additions: mutual TLS, optional so that curl without a certificate still
/// connects, and the URL DPoP proofs name.
fn story_listen(listen: SocketAddr) -> String {
    format!(
        "    client_ca_file: ca.crt\n    client_auth: optional\n  public_base_url: \"https://localhost:{}\"\n",
        listen.port()
    )
}

/// What differs between the demo's own configuration and a written one.
struct ConfigParts<'a> {
    issuer: &'a str,
    jwks: &'a str,
    audience: &'a str,
    algorithms: &'a str,
    upstream: &'a str,
    max_lifetime: &'a str,
    /// Lines inside `listen:` after the TLS files (client CA, public URL).
    listen_extra: &'a str,
}

fn config_text(listen: SocketAddr, admin: SocketAddr, parts: &ConfigParts<'_>) -> String {
    let ConfigParts {
        issuer,
        jwks,
        audience,
        algorithms,
        upstream,
        max_lifetime,
        listen_extra,
    } = parts;
    format!(
        r#"listen:
  address: "{listen}"
  tls:
    cert_file: server.crt
    key_file: server.key
{listen_extra}admin:
  address: "{admin}"
upstream:
  url: "{upstream}"
  timeout: 10s
issuers:
  - issuer: "{issuer}"
    jwks_uri: "{jwks}"
    audiences: ["{audience}"]
    algorithms: {algorithms}
tokens:
  clock_skew: 30s
  max_lifetime: {max_lifetime}
policy_file: policy.yaml
"#
    )
}

/// What the walkthrough names on disk.
struct Files<'a> {
    dir: &'a Path,
    ca: &'a Path,
    config: &'a Path,
    client_cert: &'a IssuedCert,
    issuer_key: &'a Path,
}

#[expect(clippy::print_stdout, reason = "cli/ is the only place that prints")]
fn print_walkthrough(
    gateway: &Gateway,
    issuer: &DevIssuer,
    fhir: &SyntheticFhir,
    files: &Files<'_>,
    bench: Option<(usize, &BenchFiles)>,
) -> anyhow::Result<()> {
    let base = format!("https://localhost:{}", gateway.local_addr().port());
    let hour = DEMO_TOKEN_LIFETIME;
    let claims = |sub: &str, client: &str, scope: &str| {
        issuer.standard_claims(sub, client, scope, DEMO_AUDIENCE, hour)
    };
    let reader = mint_reader(issuer);
    let observer = issuer.mint(&claims("dr-bob", "demo-ehr", "user/Observation.rs"));
    let mut expired_claims = claims("dr-alice", "demo-ehr", "user/Patient.r");
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    expired_claims["iat"] = (now - 1200).into();
    expired_claims["exp"] = (now - 600).into();
    let expired = issuer.mint(&expired_claims);
    // RFC 8705: bound to the client certificate's SHA-256 thumbprint.
    let mut bound_claims = claims("lab-system", "demo-partner", "user/Patient.r");
    bound_claims["cnf"] = serde_json::json!({
        "x5t#S256": CertThumbprint::of(files.client_cert.cert_der.as_ref()).as_str()
    });
    let cert_bound = issuer.mint(&bound_claims);
    // RFC 9449: bound to a key only the client holds, with one proof for one request.
    let dpop_key = DpopKey::generate()?;
    let mut dpop_claims = claims("pat-carla", "demo-phone-app", "user/Patient.r");
    dpop_claims["cnf"] = serde_json::json!({"jkt": dpop_key.thumbprint()});
    let dpop_bound = issuer.mint(&dpop_claims);
    let proof = dpop_key.proof("GET", &format!("{base}/Patient/123"), &dpop_bound)?;
    // A kiosk's token to revoke, and another token of the same client for the block.
    let kiosk_claims = claims("nurse-carol", "demo-kiosk", "user/Patient.r");
    let kiosk = issuer.mint(&kiosk_claims);
    let kiosk_other = issuer.mint(&claims("nurse-dave", "demo-kiosk", "user/Patient.r"));
    let revocation = serde_json::json!({
        "version": 1,
        "entries": [{"jti": kiosk_claims["jti"], "exp": kiosk_claims["exp"]}],
    });
    let binary = std::env::current_exe().context("cannot name the phigate binary")?;

    let ca = files.ca.display();
    let dir = files.dir.display();
    let admin = gateway.admin_addr();
    let curl =
        |auth: &str, extra: &str| format!("curl -i --cacert {ca}{extra}{auth} {base}/Patient/123");
    let bearer = |token: &str| format!(" -H 'Authorization: Bearer {token}'");
    println!("phigate demo — development only: generated keys and certificates, synthetic data");
    println!("  gateway   {base}  (TLS, client certificates optional; trust {ca})");
    println!("  admin     http://{admin}/metrics  /healthz  /readyz");
    println!(
        "  issuer    {}  (JWKS {})",
        issuer.issuer(),
        issuer.jwks_uri()
    );
    println!(
        "  tokens    {}  (client credentials for the examples/, {} each; signs what it is asked)",
        issuer.token_endpoint(),
        humantime::format_duration(ENDPOINT_TOKEN_LIFETIME)
    );
    println!("  upstream  {}  (synthetic FHIR)", fhir.url());
    println!("  config    {}", files.config.display());
    if let Some((count, files)) = bench {
        println!(
            "  bench     {count} tokens ({BENCH_SCOPE}, each its own subject, valid {}) in {}; issuer key {}",
            humantime::format_duration(DEMO_TOKEN_LIFETIME),
            files.tokens.display(),
            files.key.display(),
        );
    }
    println!();
    println_probe_hint(gateway, files.ca, issuer, files.issuer_key);
    println!();
    println!("# Paste the commands in order; each comment says what the gateway answers.");
    println!("# 1. allowed: a user/Patient.r token reads Patient 123 (200)");
    println!("{}", curl(&bearer(&reader), ""));
    println!(
        "# 2. denied for scope: a user/Observation.rs token cannot read a Patient (403 insufficient_scope)"
    );
    println!("{}", curl(&bearer(&observer), ""));
    println!("# 3. expired token (401 invalid_token)");
    println!("{}", curl(&bearer(&expired), ""));
    println!("# 4. no token (401, bare Bearer challenge)");
    println!("curl -i --cacert {ca} {base}/Patient/123");
    println!("# 5. public capability statement (200)");
    println!("curl -i --cacert {ca} {base}/metadata");
    println!(
        "# 5b. discovery: phigate's own RFC 9728 protected resource metadata (200), which every 401 challenge names"
    );
    println!("curl -i --cacert {ca} {base}/.well-known/oauth-protected-resource");
    println!(
        "# 6. mutual TLS (RFC 8705): a token bound to the client certificate, presented with it (200)"
    );
    let with_cert = format!(" --cert {dir}/client.crt --key {dir}/client.key");
    println!("{}", curl(&bearer(&cert_bound), &with_cert));
    println!(
        "# 7. the same token without the certificate: a stolen copy is useless (401 invalid_token)"
    );
    println!("{}", curl(&bearer(&cert_bound), ""));
    println!(
        "# 8. DPoP (RFC 9449): a token bound to the app's key, with a proof signed by that key for this request (200)"
    );
    let dpop = format!(" -H 'Authorization: DPoP {dpop_bound}' -H 'DPoP: {proof}'");
    println!("{}", curl(&dpop, ""));
    println!("# 9. the same proof again is a replay (401 invalid_dpop_proof)");
    println!("{}", curl(&dpop, ""));
    println!("# 10. a kiosk's token reads (200)");
    println!("{}", curl(&bearer(&kiosk), ""));
    println!("# 11. revoke it: the gateway re-reads {dir}/{REVOCATION_FILE} as soon as it changes");
    println!("printf '%s\\n' '{revocation}' > {dir}/{REVOCATION_FILE} && sleep 1");
    println!("# 12. the revoked token is refused (401 invalid_token)");
    println!("{}", curl(&bearer(&kiosk), ""));
    println!(
        "# 13. presented twice more, it fires the refused_token_reuse detector (3 in 10 min), whose action blocks the kiosk client for 10 min"
    );
    println!(
        "for n in 1 2; do curl -s -o /dev/null --cacert {ca}{} {base}/Patient/123; done; sleep 1",
        bearer(&kiosk)
    );
    println!(
        "# 14. another token of the same client is refused too (403, no challenge: a new token would not help)"
    );
    println!("{}", curl(&bearer(&kiosk_other), ""));
    println!("# 15. the firing and the action, as metrics");
    println!(
        "curl -s http://{admin}/metrics | grep -E '^phigate_(detector_firings|actions)_total\\{{(detector=\"refused_token_reuse|action=\"block)'"
    );
    println!(
        "# 16. every decision above is a record in a keyed, hash-chained audit trail: verify it"
    );
    println!(
        "{} audit verify --key-file {dir}/{AUDIT_KEY_FILE} {dir}/audit.log",
        binary.display()
    );
    println!();
    println!("phigate demo ready; press Ctrl-C to stop");
    Ok(())
}
