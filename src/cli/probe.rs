//! `phigate probe`: runs the attack catalogue (`crate::probe`) against a running gateway,
//! prints the table, writes the JSON report when asked, and exits 1 when any case failed or
//! the positive control stopped the run.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;

use crate::probe::{self, Options};

/// `phigate probe` arguments.
#[derive(Debug, clap::Args)]
pub struct ProbeArgs {
    /// The gateway to probe, `https://host:port[/base]`.
    #[arg(long)]
    pub target: String,
    /// A valid access token for --path (its claims and header shape every variant).
    #[arg(long, env = "PHIGATE_PROBE_TOKEN", hide_env_values = true)]
    pub token: String,
    /// The path (and query) the token may read; the positive control reads it.
    #[arg(long, default_value = "/Patient/123")]
    pub path: String,
    /// A CA bundle (PEM) to trust instead of the web PKI.
    #[arg(long)]
    pub ca: Option<PathBuf>,
    /// A client certificate (PEM) for mutual TLS.
    #[arg(long, requires = "key")]
    pub cert: Option<PathBuf>,
    /// The client certificate's private key (PEM).
    #[arg(long, requires = "cert")]
    pub key: Option<PathBuf>,
    /// The issuer's private key (PEM): token variants are re-signed instead of mutated.
    #[arg(long)]
    pub issuer_key: Option<PathBuf>,
    /// The DPoP key --token is bound to (PKCS#8 PEM, as `phigate dpop key` writes it): every
    /// request with the token is sent as DPoP with a fresh proof, and the DPoP cases use it.
    #[arg(long)]
    pub dpop_key: Option<PathBuf>,
    /// Send the cases over HTTP/2 (ALPN h2), as HTTP/2 clients reach the gateway; the cases
    /// written byte for byte (HTTP/1.1 framing) stay HTTP/1.1.
    #[arg(long)]
    pub http2: bool,
    /// The issuer's JWKS URL (otherwise found through the issuer's discovery document).
    #[arg(long)]
    pub jwks: Option<String>,
    /// The URL the gateway tells clients it serves at (DPoP `htu`, links), if not --target.
    #[arg(long)]
    pub public_url: Option<String>,
    /// The patient the token is confined to (FHIR confinement cases).
    #[arg(long, requires = "other_patient")]
    pub patient: Option<String>,
    /// Another patient whose data must never come back.
    #[arg(long, requires = "patient")]
    pub other_patient: Option<String>,
    /// Also write the report as JSON to this file (`-` for standard output instead of the table).
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
}

/// Runs the probe and reports.
pub async fn run(args: ProbeArgs) -> anyhow::Result<ExitCode> {
    let json = args.json.clone();
    let options = Options {
        target: args.target,
        token: args.token,
        path: args.path,
        ca: args.ca,
        cert: args.cert,
        key: args.key,
        issuer_key: args.issuer_key,
        jwks: args.jwks,
        public_url: args.public_url,
        patient: args.patient,
        other_patient: args.other_patient,
        dpop_key: args.dpop_key,
        http2: args.http2,
    };
    let report = probe::run(&options).await?;
    let to_stdout = json.as_deref().is_some_and(|p| p.as_os_str() == "-");
    if !to_stdout {
        print(&report.render_text());
    }
    if let Some(path) = json {
        let text = serde_json::to_string_pretty(&report.to_json())?;
        if to_stdout {
            print(&format!("{text}\n"));
        } else {
            std::fs::write(&path, text + "\n")
                .with_context(|| format!("cannot write {}", path.display()))?;
        }
    }
    Ok(match report.is_clean() {
        true => ExitCode::SUCCESS,
        false => ExitCode::FAILURE,
    })
}

#[expect(clippy::print_stdout, reason = "cli/ is the only place that prints")]
fn print(text: &str) {
    print!("{text}");
}
