//! `phigate audit verify` and `phigate audit export`: check an audit trail offline with its key
//! and its head, and say either how many records are intact (exit 0) or what the first problem
//! is, by file and line (exit 1); export writes FHIR AuditEvents (NDJSON) only for a trail that
//! verifies. The key is read from a file so it never appears in a process list or a history.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;

use crate::audit::verify::{self, HeadFile};
use crate::audit::{export, head};
use crate::mac::MacKey;

/// A trail to check: its key, its files and the head its end is checked against.
#[derive(Debug, clap::Args)]
pub struct TrailArgs {
    /// The audit key file (`audit.key_file`).
    #[arg(long)]
    key_file: PathBuf,
    /// The head the trail's end is checked against [default: the last FILE's, `FILE.head`].
    #[arg(long, value_name = "FILE")]
    head: Option<PathBuf>,
    /// Check without a head, for an archived trail that has none. This weakens the check:
    /// records cut from the end of the last file then go unseen.
    #[arg(long, conflicts_with = "head")]
    no_head: bool,
    /// The trail's files, oldest first, e.g. `audit.log.* audit.log`.
    #[arg(required = true, value_name = "FILE")]
    files: Vec<PathBuf>,
}

/// A trail's files, read, and whether they verify under the key.
struct Checked {
    /// The files of the trail itself, without the head.
    files: Vec<PathBuf>,
    contents: Vec<Vec<u8>>,
    verdict: Result<verify::Summary, verify::Fault>,
}

fn check(trail: &TrailArgs) -> anyhow::Result<Checked> {
    let key_file = &trail.key_file;
    let key = std::fs::read(key_file)
        .with_context(|| format!("cannot read the key file {}", key_file.display()))?;
    anyhow::ensure!(
        key.len() >= 32,
        "the key file {} holds fewer than 32 bytes",
        key_file.display()
    );
    let head_path = match (&trail.head, trail.no_head) {
        (_, true) => None,
        (Some(path), false) => Some(path.clone()),
        (None, false) => trail.files.last().map(|file| head::path(file)),
    };
    // The head first: the writer replaces it only once the records it names are written, so a
    // head read before the files never names a record they lack.
    let head_content = match &head_path {
        None => None,
        Some(path) => match std::fs::read(path) {
            Ok(content) => Some(content),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => None,
            Err(err) => {
                return Err(err).with_context(|| format!("cannot read {}", path.display()));
            }
        },
    };
    // `audit.log.*` names the head too; it is the head, not part of the trail.
    let files: Vec<PathBuf> = trail
        .files
        .iter()
        .filter(|file| Some(*file) != head_path.as_ref())
        .cloned()
        .collect();
    let contents = files
        .iter()
        .map(|file| std::fs::read(file).with_context(|| format!("cannot read {}", file.display())))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let given = files
        .iter()
        .zip(&contents)
        .map(|(file, content)| (file.as_path(), content.as_slice()));
    let head = match (&head_path, &head_content) {
        (None, _) => HeadFile::Waived,
        (Some(path), Some(content)) => HeadFile::Read(path, content),
        (Some(path), None) => HeadFile::Missing(path),
    };
    let verdict = verify::verify(&MacKey::new(&key), given, head);
    Ok(Checked {
        files,
        contents,
        verdict,
    })
}

/// Verifies the trail's files, in order, as one chain under its key, and its end by its head.
#[expect(
    clippy::print_stdout,
    clippy::print_stderr,
    reason = "cli/ is the only place that prints"
)]
pub fn verify(trail: &TrailArgs) -> anyhow::Result<ExitCode> {
    let checked = check(trail)?;
    let summary = match checked.verdict {
        Ok(summary) => summary,
        Err(fault) => return Ok(refuse(&fault)),
    };
    if let (Some(seq), Some(file)) = (summary.continues_from, checked.files.first()) {
        println!(
            "{}:1: continues an earlier file from seq {seq} (not checked)",
            file.display()
        );
    }
    for start in &summary.starts {
        match &start.restart {
            Some(restart) => println!(
                "{}: chain restarts ({})",
                start.place,
                restart.reason.as_str()
            ),
            None => println!("{}: chain starts", start.place),
        }
    }
    match &summary.head {
        Some(seen) => {
            let named = match &seen.head.last {
                Some(last) => format!("names seq {}, which the trail holds", last.seq),
                None => "names no record (written before the first)".to_owned(),
            };
            println!(
                "{}: the head (written {}) {named}; {} records after it",
                seen.place.file.display(),
                seen.head.time,
                seen.after
            );
        }
        None => eprintln!(
            "warning: --no-head: records cut from the end of the last file cannot be detected"
        ),
    }
    println!("ok: {} records intact", summary.records);
    Ok(ExitCode::SUCCESS)
}

/// Writes one FHIR AuditEvent per decision of the trail as NDJSON, once it verified.
#[expect(clippy::print_stdout, reason = "cli/ is the only place that prints")]
pub fn export(trail: &TrailArgs) -> anyhow::Result<ExitCode> {
    let checked = check(trail)?;
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
    eprintln!("{fault}");
    ExitCode::FAILURE
}
