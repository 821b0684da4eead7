//! `phigate dpop`: the client half of DPoP (RFC 9449) for a person at a shell — a key to bind a
//! token to, and a proof for one request — so that a DPoP-bound token from `phigate demo`'s token
//! endpoint can be sent with curl. A real client keeps its key in its SMART library; this is for
//! trying a gateway out.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Args, Subcommand};

use crate::demo::DpopKey;

/// `phigate dpop ...`
#[derive(Debug, Subcommand)]
pub enum DpopCommand {
    /// Write a new P-256 key into FILE (PKCS#8 PEM, readable by its owner only, never
    /// overwriting a file) and print its RFC 7638 thumbprint: the `dpop_jkt` a token is bound to.
    Key {
        /// Where to write the private key.
        file: PathBuf,
    },
    /// Print the RFC 7638 thumbprint of the key in --key.
    Thumbprint {
        /// The key `phigate dpop key` wrote.
        #[arg(long)]
        key: PathBuf,
    },
    /// Print a DPoP proof for one request: `DPoP: <proof>` beside `Authorization: DPoP <token>`.
    Proof(ProofArgs),
}

/// What a proof is made for.
#[derive(Debug, Args)]
pub struct ProofArgs {
    /// The key `phigate dpop key` wrote.
    #[arg(long)]
    key: PathBuf,
    /// The request method (`htm`).
    #[arg(long, default_value = "GET")]
    method: String,
    /// The request URL without query or fragment (`htu`), e.g. https://localhost:8444/Patient/123.
    #[arg(long)]
    url: String,
    /// The access token the proof accompanies (its SHA-256 becomes `ath`).
    #[arg(long, env = "PHIGATE_DPOP_TOKEN", hide_env_values = true)]
    token: String,
    /// The server's latest `DPoP-Nonce`, when it demands one.
    #[arg(long)]
    nonce: Option<String>,
}

/// Runs one `phigate dpop` command.
#[expect(clippy::print_stdout, reason = "cli/ is the only place that prints")]
pub fn run(command: DpopCommand) -> anyhow::Result<ExitCode> {
    match command {
        DpopCommand::Key { file } => {
            let key = DpopKey::generate()?;
            super::create_private(&file)?
                .write_all(key.to_pem().as_bytes())
                .with_context(|| format!("cannot write {}", file.display()))?;
            println!("{}", key.thumbprint());
        }
        DpopCommand::Thumbprint { key } => println!("{}", load(&key)?.thumbprint()),
        DpopCommand::Proof(args) => {
            let htu = args.url.split(['?', '#']).next().unwrap_or_default();
            let proof = load(&args.key)?.proof_with_nonce(
                &args.method,
                htu,
                &args.token,
                args.nonce.as_deref(),
            )?;
            println!("{proof}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn load(path: &Path) -> anyhow::Result<DpopKey> {
    let pem = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    DpopKey::from_pem(&pem)
        .map_err(|_| anyhow::anyhow!("{} is not a P-256 PKCS#8 private key", path.display()))
}
