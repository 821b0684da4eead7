//! The command line: `run`, `check`, `explain`, `test`, `demo`, `probe` and `audit`. This is the only code that
//! prints and the only place `anyhow` is used; everything it does is a call into the library.

mod audit;
mod demo;
mod dpop;
mod explain;
pub mod offline;
mod policy_test;
mod probe;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};

use crate::config::{Config, Transport};
use crate::proxy::Gateway;

/// Command-line arguments.
#[derive(Debug, Parser)]
#[command(
    name = "phigate",
    version,
    about = "OAuth 2.0 token-policy gateway for FHIR and PHI APIs"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve with a configuration file.
    Run {
        /// The YAML configuration file.
        #[arg(long, env = "PHIGATE_CONFIG")]
        config: PathBuf,
    },
    /// Validate a configuration and its policy without serving; print the compiled rules.
    Check {
        /// The YAML configuration file.
        #[arg(long)]
        config: PathBuf,
    },
    /// Explain the decision for one request without contacting the upstream.
    Explain {
        /// The YAML configuration file.
        #[arg(long)]
        config: PathBuf,
        /// The request method.
        #[arg(long, default_value = "GET")]
        method: String,
        /// The request path and query, e.g. '/Observation?patient=123'.
        #[arg(long)]
        path: String,
        /// An access token, verified against the issuer's JWKS.
        #[arg(long, conflicts_with = "claims")]
        token: Option<String>,
        /// A JSON file of token claims, used as-is (no signature).
        #[arg(long)]
        claims: Option<PathBuf>,
        /// A request body file (Bundles, POST _search, writes).
        #[arg(long)]
        body: Option<PathBuf>,
        /// A request header, 'Name: value' (repeatable), e.g. a break-glass justification.
        #[arg(long = "header", short = 'H', value_name = "HEADER")]
        headers: Vec<String>,
    },
    /// Run policy test cases (request + claims -> expected decision and reason).
    Test {
        /// Policy test files, e.g. `policies/*.tests.yaml`.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Run a suite of attacks against a running gateway and judge every answer.
    Probe(probe::ProbeArgs),
    /// A DPoP client key and proofs, to send DPoP-bound tokens with curl.
    Dpop {
        #[command(subcommand)]
        command: dpop::DpopCommand,
    },
    /// Work with the audit trail offline.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Start a development issuer, a synthetic FHIR server and the gateway, all on loopback.
    Demo {
        /// The gateway's TLS listener.
        #[arg(long, default_value = "127.0.0.1:8443")]
        listen: SocketAddr,
        /// The admin listener.
        #[arg(long, default_value = "127.0.0.1:9090")]
        admin: SocketAddr,
        /// Write a starting configuration (config, policy, test CA, server certificate and key)
        /// into this folder and exit, instead of running the demo.
        #[arg(long, value_name = "DIR")]
        write_config: Option<PathBuf>,
        /// For load runs: also write N valid access tokens (one a line, each its own subject,
        /// scope user/Patient.r) and the issuer's ES256 public key into --bench-dir at start.
        #[arg(
            long,
            value_name = "N",
            requires = "bench_dir",
            conflicts_with = "write_config"
        )]
        bench_tokens: Option<usize>,
        /// The folder --bench-tokens writes into (tokens.txt, issuer-es256.pem); never
        /// overwritten, and the files are deleted when the demo stops.
        #[arg(long, value_name = "DIR", requires = "bench_tokens")]
        bench_dir: Option<PathBuf>,
        /// Run `phigate probe` against the demo gateway, print its table and stop (exit 1 when
        /// any case failed).
        #[arg(long, conflicts_with_all = ["write_config", "bench_tokens"])]
        probe: bool,
    },
}

#[derive(Debug, Subcommand)]
enum AuditCommand {
    /// Check that every record of the given files, in order, is intact and that none was cut
    /// from the end (the head beside the last file); exit 1 naming the first problem.
    Verify(audit::TrailArgs),
    /// Write the decisions of a trail that verifies as FHIR R4 AuditEvent resources (IHE BALP
    /// shape), one JSON object per line, on standard output.
    Export(audit::TrailArgs),
}

/// Parses arguments, runs the command and returns the process exit code.
pub fn run() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Check { config } => check(&config),
        Command::Test { files } => policy_test::run(&files),
        Command::Audit {
            command: AuditCommand::Verify(trail),
        } => audit::verify(&trail),
        Command::Audit {
            command: AuditCommand::Export(trail),
        } => audit::export(&trail),
        Command::Explain {
            config,
            method,
            path,
            token,
            claims,
            body,
            headers,
        } => runtime().and_then(|rt| {
            let question = explain::Question {
                config: &config,
                method: &method,
                target: &path,
                token: token.as_deref(),
                claims: claims.as_deref(),
                body: body.as_deref(),
                headers: &headers,
            };
            rt.block_on(explain::run(question))
        }),
        Command::Dpop { command } => dpop::run(command),
        Command::Probe(args) => runtime().and_then(|rt| rt.block_on(probe::run(args))),
        Command::Run { config } => runtime().and_then(|rt| rt.block_on(serve(&config))),
        Command::Demo {
            listen,
            admin,
            write_config: Some(dir),
            ..
        } => demo::write_config(&dir, listen, admin),
        Command::Demo {
            listen,
            admin,
            write_config: None,
            bench_tokens,
            bench_dir,
            probe,
        } => {
            let bench = bench_tokens
                .zip(bench_dir)
                .map(|(count, dir)| demo::BenchTokens { count, dir });
            runtime().and_then(|rt| rt.block_on(demo::run(listen, admin, bench, probe)))
        }
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            #[expect(clippy::print_stderr, reason = "cli/ is the only place that prints")]
            {
                eprintln!("phigate: {err:#}");
            }
            ExitCode::FAILURE
        }
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

/// Loads a configuration, printing every problem; `None` when it is invalid.
#[expect(clippy::print_stderr, reason = "cli/ is the only place that prints")]
fn load(path: &Path) -> Option<Config> {
    match Config::load(path) {
        Ok(config) => Some(config),
        Err(err) => {
            for problem in &err.problems {
                eprintln!("error: {problem}");
            }
            None
        }
    }
}

#[expect(
    clippy::print_stdout,
    clippy::print_stderr,
    reason = "cli/ is the only place that prints"
)]
fn check(path: &Path) -> anyhow::Result<ExitCode> {
    let Some(config) = load(path) else {
        return Ok(ExitCode::FAILURE);
    };
    // Everything `run` builds before it serves, built here too: certificates, CA files, Redis
    // URLs, revocation sources — every problem at once.
    if let Err(err) = crate::proxy::prepare(&config) {
        for problem in &err.problems {
            eprintln!("{problem}");
        }
        return Ok(ExitCode::FAILURE);
    }
    // Warnings go where `load` prints errors, and do not change the exit code.
    for warning in &config.warnings {
        eprintln!("warning: {warning}");
    }
    for warning in config.policy.warnings() {
        eprintln!("warning: {warning}");
    }
    println!("{}: configuration is valid", path.display());
    if matches!(config.listen.transport, Transport::InsecurePlaintext) {
        println!("WARNING: listen.insecure_plaintext is on: PHI would travel unencrypted");
    }
    for issuer in &config.issuers {
        let algorithms: Vec<String> = issuer.algorithms.iter().map(|a| format!("{a:?}")).collect();
        println!(
            "issuer {} ({}), keys from {}",
            issuer.issuer,
            algorithms.join(", "),
            issuer.jwks_uri.as_ref().map_or_else(
                || "the jwks_uri its metadata names".to_owned(),
                ToString::to_string
            )
        );
    }
    println!(
        "policy {} (version {}):",
        config.policy_file.display(),
        config.policy.version()
    );
    if config.policy.has_report_only_rules() {
        println!("WARNING: report-only rules forward requests they would deny");
    }
    print!("{}", config.policy);
    Ok(ExitCode::SUCCESS)
}

async fn serve(path: &Path) -> anyhow::Result<ExitCode> {
    let _log = crate::telemetry::log::init();
    let Some(config) = load(path) else {
        return Ok(ExitCode::FAILURE);
    };
    if matches!(config.listen.transport, Transport::InsecurePlaintext) {
        #[expect(
            clippy::print_stderr,
            reason = "the insecure knob must be impossible to miss"
        )]
        {
            eprintln!(
                "WARNING: phigate is serving PLAINTEXT HTTP (listen.insecure_plaintext: true)."
            );
            eprintln!(
                "WARNING: tokens and PHI cross the network unencrypted. Never use this in production."
            );
        }
    }
    if config.policy.has_report_only_rules() {
        #[expect(
            clippy::print_stderr,
            reason = "report-only must be impossible to miss"
        )]
        {
            eprintln!(
                "WARNING: the policy has report-only rules: requests they would deny are forwarded."
            );
        }
    }
    let gateway = Gateway::start(config).await?;
    wait_for_stop_signal().await?;
    tracing::info!("shutting down: readiness off");
    gateway.shutdown().await;
    Ok(ExitCode::SUCCESS)
}

/// Creates `path` readable by its owner only (keys and tokens are credentials, if only the
/// demo's); an existing file is refused, never overwritten.
fn create_private(path: &Path) -> anyhow::Result<std::fs::File> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    options.open(path).with_context(|| {
        format!(
            "cannot create {} (an existing file is never overwritten)",
            path.display()
        )
    })
}

/// SIGTERM (orchestrators) or SIGINT (a terminal).
async fn wait_for_stop_signal() -> anyhow::Result<()> {
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("cannot listen for SIGTERM")?;
    tokio::select! {
        _ = terminate.recv() => {}
        result = tokio::signal::ctrl_c() => result.context("cannot listen for Ctrl-C")?,
    }
    Ok(())
}
