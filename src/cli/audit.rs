//! `phigate audit verify` and `phigate audit export`: check an audit trail offline with its key
//! and say either how many records are intact (exit 0) or which record is the first bad one, by
//! file and line (exit 1); export writes FHIR AuditEvents (NDJSON) only for a trail that
//! verifies. The key is read from a file so it never appears in a process list or a history.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;

use crate::audit::{export, verify};
use crate::mac::MacKey;

/// A trail's files, read, and whether they verify under the key.
struct Checked {
    contents: Vec<Vec<u8>>,
    verdict: Result<verify::Summary, verify::Fault>,
}

fn check(key_file: &Path, files: &[PathBuf]) -> anyhow::Result<Checked> {
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
    let verdict = verify::verify(&MacKey::new(&key), given);
    Ok(Checked { contents, verdict })
}

/// Verifies `files`, in order, as one chain under the key in `key_file`.
#[expect(clippy::print_stdout, reason = "cli/ is the only place that prints")]
pub fn verify(key_file: &Path, files: &[PathBuf]) -> anyhow::Result<ExitCode> {
    let summary = match check(key_file, files)?.verdict {
        Ok(summary) => summary,
        Err(fault) => return Ok(refuse(&fault)),
    };
    if let (Some(seq), Some(file)) = (summary.continues_from, files.first()) {
        println!(
            "{}:1: continues an earlier file from seq {seq} (not checked)",
            file.display()
        );
    }
    for start in &summary.starts {
        println!("{start}: chain starts (first record, or restarted after damage)");
    }
    println!("ok: {} records intact", summary.records);
    Ok(ExitCode::SUCCESS)
}

/// Writes one FHIR AuditEvent per decision of `files` as NDJSON, once the trail verified.
#[expect(clippy::print_stdout, reason = "cli/ is the only place that prints")]
pub fn export(key_file: &Path, files: &[PathBuf]) -> anyhow::Result<ExitCode> {
    let checked = check(key_file, files)?;
    // A trail that does not verify is not evidence: nothing of it is exported.
    if let Err(fault) = &checked.verdict {
        return Ok(refuse(fault));
    }
    for content in &checked.contents {
        for line in String::from_utf8_lossy(content).lines() {
            if let Some(event) = export::audit_event(line) {
                println!("{event}");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[expect(clippy::print_stderr, reason = "cli/ is the only place that prints")]
fn refuse(fault: &verify::Fault) -> ExitCode {
    eprintln!("{}: {}", fault.place, fault.problem);
    ExitCode::FAILURE
}
