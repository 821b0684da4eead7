//! `phigate audit verify`: checks an audit trail offline with its key and says either how many
//! records are intact (exit 0) or which record is the first bad one, by file and line (exit 1).
//! The key is read from a file so it never appears in a process list or a shell history.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;

use crate::audit::verify;
use crate::mac::MacKey;

/// Verifies `files`, in order, as one chain under the key in `key_file`.
#[expect(
    clippy::print_stdout,
    clippy::print_stderr,
    reason = "cli/ is the only place that prints"
)]
pub fn verify(key_file: &Path, files: &[PathBuf]) -> anyhow::Result<ExitCode> {
    let key = std::fs::read(key_file)
        .with_context(|| format!("cannot read the key file {}", key_file.display()))?;
    anyhow::ensure!(
        key.len() >= 32,
        "the key file {} holds fewer than 32 bytes",
        key_file.display()
    );
    let contents = files
        .iter()
        .map(|file| std::fs::read(file).with_context(|| format!("cannot read {}", file.display())))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let given = files
        .iter()
        .zip(&contents)
        .map(|(file, content)| (file.as_path(), content.as_slice()));
    match verify::verify(&MacKey::new(&key), given) {
        Ok(summary) => {
            for start in &summary.starts {
                println!("{start}: chain starts (first record, or restarted after damage)");
            }
            println!("ok: {} records intact", summary.records);
            Ok(ExitCode::SUCCESS)
        }
        Err(fault) => {
            eprintln!("{}: {}", fault.place, fault.problem);
            Ok(ExitCode::FAILURE)
        }
    }
}
