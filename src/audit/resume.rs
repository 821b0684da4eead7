//! Where the chain goes on when the writer starts on a regular file. The file's last line
//! continues it once the head agrees: the line is the record the head names, or comes after it
//! in an unbroken chain (records synced just before a crash, their head not yet written). When
//! they disagree — the last line does not open, the head is missing or does not open, or the
//! record the head names is gone — the file is not taken for the truth: the writer moves it
//! aside and a new chain starts with a record saying why. This file reads; it never writes,
//! moves or deletes a file.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use super::chain::{self, Link, Sealed};
use super::entry::{Restart, RestartReason};
use super::head::{self, Head, RecordId};
use crate::mac::MacKey;

/// How much of a file's end is read to find its last line; a record is far shorter.
const TAIL_BYTES: u64 = 64 * 1024;

/// What the writer does with the file it finds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resume {
    /// The file continues the chain: the next record links here.
    Continue(Link),
    /// The file cannot be trusted to continue the chain: a new one starts.
    Restart(Restart),
}

/// Decides how the trail in `path` goes on, from the file and its head.
pub fn resume(key: &MacKey, path: &Path) -> io::Result<Resume> {
    let head = match std::fs::read(head::path(path)) {
        Ok(content) => Some(Head::open(key, &content)),
        Err(err) if err.kind() == io::ErrorKind::NotFound => None,
        Err(err) => return Err(err),
    };
    let last = match last_line(path)? {
        None => None,
        Some(line) => match chain::open(key, &line) {
            Ok(sealed) => Some(sealed),
            Err(_) => return Ok(restart(RestartReason::DamagedTail)),
        },
    };
    let head = match (head, &last) {
        // A trail that never was: its first start.
        (None, None) => return Ok(Resume::Continue(Link::genesis())),
        (None, Some(_)) => return Ok(restart(RestartReason::HeadMissing)),
        (Some(Err(_)), _) => return Ok(restart(RestartReason::HeadDamaged)),
        (Some(Ok(head)), _) => head,
    };
    match (head.last, last) {
        (None, None) => Ok(Resume::Continue(Link::genesis())),
        (Some(named), Some(sealed)) if RecordId::of(&sealed) == named => {
            Ok(Resume::Continue(sealed.next()))
        }
        (named, Some(sealed)) => {
            if follows(key, path, named.as_ref())? {
                return Ok(Resume::Continue(sealed.next()));
            }
            Ok(lost(named.as_ref(), Some(&sealed)))
        }
        // An empty live file whose head names a record: a crash during rotation leaves the
        // record as the newest rotated file's last line; anything else lost it.
        (Some(named), None) => {
            let rotated = newest_rotated(path)?;
            let rotated_last = match rotated.as_deref().map(last_line_of).transpose()? {
                Some(Some(line)) => chain::open(key, &line).ok(),
                _ => None,
            };
            if rotated_last.as_ref().map(RecordId::of) == Some(named.clone()) {
                return Ok(Resume::Continue(named.next()));
            }
            Ok(lost(Some(&named), None))
        }
    }
}

fn restart(reason: RestartReason) -> Resume {
    Resume::Restart(Restart::because(reason))
}

/// The file does not hold the record its head names: cut short, or not its chain.
fn lost(named: Option<&RecordId>, last: Option<&Sealed>) -> Resume {
    let head_seq = named.map(|named| named.seq);
    let last_seq = last.map(|last| last.seq);
    let reason = match (head_seq, last_seq) {
        (Some(_), None) => RestartReason::Truncated,
        (Some(head), Some(last)) if last < head => RestartReason::Truncated,
        _ => RestartReason::HeadMismatch,
    };
    Resume::Restart(Restart {
        reason,
        head_seq,
        last_seq,
    })
}

/// Whether the file holds the record `named` (or starts right after it) and every line after
/// that opens and links to the one before; with no record named, whether the whole file is one
/// chain from its start. Lines before the named record are `audit verify`'s to judge.
fn follows(key: &MacKey, path: &Path, named: Option<&RecordId>) -> io::Result<bool> {
    let mut content = Vec::new();
    File::open(path)?.read_to_end(&mut content)?;
    let text = String::from_utf8_lossy(&content);
    let mut expected = match named {
        None => Some(Link::genesis()),
        Some(_) => None,
    };
    for (index, line) in text.lines().enumerate() {
        let opened = chain::open(key, line).ok();
        let Some(link) = &expected else {
            let Some(sealed) = opened else { continue };
            let id = RecordId::of(&sealed);
            let after = named.map(RecordId::next);
            if Some(&id) == named {
                expected = Some(sealed.next());
            } else if index == 0 && after == Some(sealed.link()) {
                // The file starts right after the head's record (written before a rotation).
                expected = Some(sealed.next());
            }
            continue;
        };
        match opened {
            Some(sealed) if sealed.link() == *link => expected = Some(sealed.next()),
            _ => return Ok(false),
        }
    }
    Ok(expected.is_some())
}

/// The newest rotated file of the trail in `path` (`audit.log.<RFC 3339 time>`), if any.
fn newest_rotated(path: &Path) -> io::Result<Option<PathBuf>> {
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return Ok(None);
    };
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    let prefix = format!("{}.", name.to_string_lossy());
    let mut newest: Option<String> = None;
    for entry in std::fs::read_dir(dir)? {
        let entry_name = entry?.file_name().to_string_lossy().into_owned();
        let rotated = entry_name
            .strip_prefix(&prefix)
            .is_some_and(|stamp| humantime::parse_rfc3339(stamp).is_ok());
        // The stamps have a fixed width, so names sort in the order written.
        if rotated && newest.as_ref().is_none_or(|n| *n < entry_name) {
            newest = Some(entry_name);
        }
    }
    Ok(newest.map(|name| dir.join(name)))
}

/// The last line of the file at `path`; `None` when it is empty or missing.
fn last_line(path: &Path) -> io::Result<Option<String>> {
    match last_line_of(path) {
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(None),
        other => other,
    }
}

/// The file's last line without its newline; `None` for an empty file. A file that does not
/// end in a newline, or whose last line is longer than [`TAIL_BYTES`], yields a line that will
/// not open, so it is treated as damaged.
fn last_line_of(path: &Path) -> io::Result<Option<String>> {
    let mut file = File::open(path)?;
    let size = file.metadata()?.len();
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
