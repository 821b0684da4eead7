//! The audit writer: one thread that seals queued records into the chain and appends them, one
//! `write` per line, to the audit file, rotating it by size so the chain runs on across files.
//! At start it resumes the chain from the file's last line; a tail that does not open (a half
//! line, an edit, a foreign key) is moved aside and a new file begins with a `chain_restart`
//! record, so a damaged file never stops the gateway and never hides its damage. A path that is
//! not a regular file (a pipe) and standard output are streams: no resume, no rotation. It never
//! decides whether a request may go on: the slots it frees do.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc::Receiver;
use std::time::{Duration, SystemTime};

use super::chain::{self, Link};
use super::entry;
use crate::config::AuditDestination;
use crate::mac::MacKey;
use crate::record::Slot;
use crate::telemetry::Metrics;

/// How much of a file's end is read to find its last line; a record is far shorter.
const TAIL_BYTES: u64 = 64 * 1024;

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
        let file = append(path)?;
        let size = file.metadata()?.len();
        let resumed = match last_line(&mut File::open(path)?, size)? {
            None => Some(Link::genesis()),
            Some(line) => chain::open(&key, &line).ok().map(|sealed| sealed.next()),
        };
        let (file, size, link, pending) = match resumed {
            Some(link) => (file, size, link, Vec::new()),
            None => {
                // The damaged file stays, under a rotated name, for `audit verify` to point at.
                drop(file);
                move_aside(path)?;
                let restart = entry::event("chain_restart", "damaged_tail");
                (append(path)?, 0, Link::genesis(), vec![restart])
            }
        };
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
        while let Ok(first) = queue.recv() {
            // Group commit: everything queued meanwhile shares one sync, so the cost of
            // durability falls as the load rises.
            let batch: Vec<Queued> = std::iter::once(first).chain(queue.try_iter()).collect();
            let mut slots = Vec::with_capacity(batch.len());
            for queued in batch {
                self.append(&queued.fields, metrics);
                slots.push(queued.slot);
            }
            self.sync(metrics);
            // The slots are freed only now that their records are on disk.
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

    /// Seals and writes one record, retrying until it is written: while it cannot be, the
    /// queue fills and the gateway refuses requests rather than serve them unaudited.
    fn append(&mut self, fields: &str, metrics: &Metrics) {
        let (line, next) = chain::seal(&self.key, &self.link, fields);
        while let Err(err) = self.output.write(line.as_bytes()) {
            metrics.record_audit_write_error();
            tracing::error!(error = %err, "cannot write the audit trail; retrying");
            std::thread::sleep(Duration::from_secs(1));
        }
        self.link = next;
        metrics.record_audit_written();
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

    fn write(&mut self, line: &[u8]) -> io::Result<()> {
        match self {
            Self::File {
                path,
                file,
                size,
                max,
            } => {
                let len = line.len() as u64;
                if *size > 0 && size.saturating_add(len) > *max {
                    // The chain runs on: the new file's first record links to this file's last.
                    file.sync_data()?;
                    move_aside(path)?;
                    *file = append(path)?;
                    *size = 0;
                }
                if let Err(err) = file.write_all(line) {
                    // A write cut short would leave half a line for the retry to follow:
                    // cut the file back to its last whole line first.
                    let _ = file.set_len(*size);
                    return Err(err);
                }
                *size = size.saturating_add(len);
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

/// The file's last line without its newline; `None` for an empty file. A file that does not
/// end in a newline, or whose last line is longer than [`TAIL_BYTES`], yields a line that will
/// not open, so it is treated as damaged.
fn last_line(file: &mut File, size: u64) -> io::Result<Option<String>> {
    if size == 0 {
        return Ok(None);
    }
    let start = size.saturating_sub(TAIL_BYTES);
    file.seek(SeekFrom::Start(start))?;
    let mut tail = Vec::new();
    file.take(TAIL_BYTES).read_to_end(&mut tail)?;
    let text = String::from_utf8_lossy(&tail);
    let Some(body) = text.strip_suffix('\n') else {
        return Ok(Some(String::new()));
    };
    Ok(Some(match body.rsplit_once('\n') {
        Some((_, last)) => last.to_owned(),
        None if start == 0 => body.to_owned(),
        None => String::new(),
    }))
}

#[cfg(test)]
mod tests;
