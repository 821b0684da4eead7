//! The audit writer: one thread that seals queued records into the chain and appends them, one
//! `write` per line, to the audit file, rotating it by size so the chain runs on across files.
//! After each batch is synced it replaces the head beside the file (`audit.log.head`: write,
//! sync, rename, sync the folder), naming the newest record, so that lines cut from the end are
//! seen too. At start it resumes the chain where [`resume`](super::resume) says; a file that
//! does not continue it (a damaged tail, a missing or damaged head, a record the head names
//! gone) is moved aside and a new file begins with a `chain_restart` record, so a damaged file
//! never stops the gateway and never hides its damage. A path that is not a regular file (a
//! pipe) and standard output are streams: no head, no resume, no rotation. It never decides
//! whether a request may go on: the slots it frees do.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc::Receiver;
use std::time::{Duration, SystemTime};

use super::chain::{self, Link};
use super::entry::{self, Restart};
use super::head::{self, Head, RecordId};
use super::resume::{self, Resume};
use crate::config::AuditDestination;
use crate::mac::MacKey;
use crate::record::Slot;
use crate::telemetry::Metrics;

/// One record waiting for the writer, holding its slot until it is written.
pub struct Queued {
    /// The record's members.
    pub fields: String,
    /// Its room in the queue.
    pub slot: Slot,
}

/// Where lines go.
enum Output {
    /// A regular file, rotated past `max` bytes.
    File {
        path: PathBuf,
        file: File,
        size: u64,
        max: u64,
    },
    /// A pipe, opened by the writer thread (opening blocks until a reader appears).
    Pipe { path: PathBuf, file: Option<File> },
    /// Standard output.
    Stdout,
}

/// The chain's writer, opened and resumed, not yet running.
pub struct Writer {
    output: Output,
    key: MacKey,
    link: Link,
    /// Records to write before any queued one (a `chain_restart`).
    pending: Vec<String>,
}

impl Writer {
    /// Opens `destination` and resumes its chain.
    pub fn open(destination: &AuditDestination, key: MacKey, max: u64) -> io::Result<Self> {
        let path = match destination {
            AuditDestination::Stdout => return Ok(Self::fresh(Output::Stdout, key)),
            AuditDestination::File(path) => path,
        };
        let regular = match std::fs::metadata(path) {
            Ok(meta) => meta.is_file(),
            Err(err) if err.kind() == io::ErrorKind::NotFound => true,
            Err(err) => return Err(err),
        };
        if !regular {
            let output = Output::Pipe {
                path: path.clone(),
                file: None,
            };
            return Ok(Self::fresh(output, key));
        }
        let (link, pending) = match resume::resume(&key, path)? {
            Resume::Continue(link) => (link, Vec::new()),
            Resume::Restart(restart) => {
                log_restart(path, &restart);
                // The damaged file stays, under a rotated name, for `audit verify` to point at.
                // The old head stays until the restart record is written: a crash before then
                // finds the same disagreement again rather than a chain that seems whole.
                if std::fs::metadata(path).is_ok_and(|meta| meta.len() > 0) {
                    move_aside(path)?;
                }
                (Link::genesis(), vec![entry::restart(&restart)])
            }
        };
        let file = append(path)?;
        let size = file.metadata()?.len();
        let output = Output::File {
            path: path.clone(),
            file,
            size,
            max,
        };
        Ok(Self {
            output,
            key,
            link,
            pending,
        })
    }

    fn fresh(output: Output, key: MacKey) -> Self {
        Self {
            output,
            key,
            link: Link::genesis(),
            pending: Vec::new(),
        }
    }

    /// Writes queued records until every sender is gone.
    pub fn run(mut self, queue: &Receiver<Queued>, metrics: &Arc<Metrics>) {
        for fields in std::mem::take(&mut self.pending) {
            self.append(&fields, metrics);
        }
        self.sync(metrics);
        self.checkpoint(metrics);
        while let Ok(first) = queue.recv() {
            // Group commit: everything queued meanwhile shares one sync and one head, so the
            // cost of durability falls as the load rises.
            let batch: Vec<Queued> = std::iter::once(first).chain(queue.try_iter()).collect();
            let mut slots = Vec::with_capacity(batch.len());
            for queued in batch {
                self.append(&queued.fields, metrics);
                slots.push(queued.slot);
            }
            self.sync(metrics);
            self.checkpoint(metrics);
            // The slots are freed only now that their records are on disk and under the head.
            drop(slots);
        }
    }

    /// Asks the file's data to reach the disk; a failure is logged and counted.
    fn sync(&mut self, metrics: &Metrics) {
        if let Err(err) = self.output.sync() {
            metrics.record_audit_write_error();
            tracing::error!(error = %err, "cannot sync the audit trail to disk");
        }
    }

    /// Replaces the head, retrying until it is written: records the head does not cover could
    /// be cut off unseen, so while it cannot be written the queue fills, as for a line.
    fn checkpoint(&mut self, metrics: &Metrics) {
        while let Err(err) = self.store_head() {
            metrics.record_audit_write_error();
            tracing::error!(error = %err, "cannot write the audit trail's head; retrying");
            std::thread::sleep(Duration::from_secs(1));
        }
    }

    /// Writes the head naming the newest record written; streams have none.
    fn store_head(&self) -> io::Result<()> {
        match &self.output {
            Output::File { path, .. } => store_head(&self.key, path, RecordId::before(&self.link)),
            Output::Pipe { .. } | Output::Stdout => Ok(()),
        }
    }

    /// Seals and writes one record, retrying until it is written: while it cannot be, the
    /// queue fills and the gateway refuses requests rather than serve them unaudited.
    fn append(&mut self, fields: &str, metrics: &Metrics) {
        let (line, next) = chain::seal(&self.key, &self.link, fields);
        while let Err(err) = self.write(line.as_bytes()) {
            metrics.record_audit_write_error();
            tracing::error!(error = %err, "cannot write the audit trail; retrying");
            std::thread::sleep(Duration::from_secs(1));
        }
        self.link = next;
        metrics.record_audit_written();
    }

    /// Writes one line, rotating first when the file would grow past its limit.
    fn write(&mut self, line: &[u8]) -> io::Result<()> {
        if self.output.is_full_for(line.len()) {
            // The chain runs on: the new file's first record links to this file's last. The
            // head names that last record before the file moves, so whatever a crash leaves,
            // the head's record is the rotated file's last line or the one the live file's
            // first line links to.
            self.output.sync()?;
            self.store_head()?;
            self.output.rotate()?;
        }
        self.output.write(line)
    }
}

impl Output {
    /// Durability for a file; a pipe or stdout belongs to whoever reads it.
    fn sync(&mut self) -> io::Result<()> {
        match self {
            Self::File { file, .. } => file.sync_data(),
            Self::Pipe { .. } | Self::Stdout => Ok(()),
        }
    }

    /// Whether `len` more bytes would take a file that holds something past its limit.
    fn is_full_for(&self, len: usize) -> bool {
        match self {
            Self::File { size, max, .. } => *size > 0 && size.saturating_add(len as u64) > *max,
            Self::Pipe { .. } | Self::Stdout => false,
        }
    }

    /// Moves a file aside and starts its successor; streams do not rotate.
    fn rotate(&mut self) -> io::Result<()> {
        if let Self::File {
            path, file, size, ..
        } = self
        {
            move_aside(path)?;
            *file = append(path)?;
            *size = 0;
            sync_folder(path)?;
        }
        Ok(())
    }

    fn write(&mut self, line: &[u8]) -> io::Result<()> {
        match self {
            Self::File { file, size, .. } => {
                if let Err(err) = file.write_all(line) {
                    // A write cut short would leave half a line for the retry to follow:
                    // cut the file back to its last whole line first.
                    let _ = file.set_len(*size);
                    return Err(err);
                }
                *size = size.saturating_add(line.len() as u64);
                Ok(())
            }
            Self::Pipe { path, file } => {
                let pipe = match file {
                    Some(pipe) => pipe,
                    None => file.insert(OpenOptions::new().write(true).open(&*path)?),
                };
                pipe.write_all(line)
            }
            Self::Stdout => io::stdout().lock().write_all(line),
        }
    }
}

/// Replaces the head of the trail in `path` with one naming `last`: written whole to a hidden
/// temporary file, synced, renamed over the old head, and the folder synced, so a crash leaves
/// the old head or the new one, never half of either. The temporary name does not match the
/// `audit.log.*` that `audit verify` is given.
fn store_head(key: &MacKey, path: &Path, last: Option<RecordId>) -> io::Result<()> {
    let line = Head::now(path, last).seal(key);
    let target = head::path(path);
    let mut name = std::ffi::OsString::from(".");
    name.push(target.file_name().unwrap_or_default());
    name.push(".tmp");
    let temporary = target.with_file_name(name);
    let mut file = File::create(&temporary)?;
    file.write_all(line.as_bytes())?;
    file.sync_all()?;
    std::fs::rename(&temporary, &target)?;
    sync_folder(path)
}

/// Makes renames and new files in `path`'s folder durable.
fn sync_folder(path: &Path) -> io::Result<()> {
    let folder = match path.parent() {
        Some(folder) if !folder.as_os_str().is_empty() => folder,
        _ => Path::new("."),
    };
    File::open(folder)?.sync_all()
}

/// Says, as an error, that the trail's file did not continue its chain.
fn log_restart(path: &Path, restart: &Restart) {
    tracing::error!(
        audit.file = %path.display(),
        audit.restart = restart.reason.as_str(),
        audit.head_seq = restart.head_seq,
        audit.last_seq = restart.last_seq,
        "the audit file does not continue its chain: a new chain starts, and the file, if it \
         held records, is kept under a rotated name"
    );
}

fn append(path: &Path) -> io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

/// `audit.log` → `audit.log.2026-12-07T12:00:00.123456789Z`: names sort in the order written.
/// A name already taken is an error (retried later), never a rename over an older file.
fn move_aside(path: &Path) -> io::Result<()> {
    let stamp = humantime::format_rfc3339_nanos(SystemTime::now());
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".{stamp}"));
    let rotated = PathBuf::from(name);
    if rotated.exists() {
        return Err(io::Error::from(io::ErrorKind::AlreadyExists));
    }
    std::fs::rename(path, rotated)
}

#[cfg(test)]
mod tests;
