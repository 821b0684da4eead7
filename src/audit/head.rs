//! The trail's head: a one-line file beside the audit file (`audit.log.head`) naming the newest
//! record the writer has synced, by `seq` and MAC, sealed under the audit key behind a prefix of
//! its own so that a head's MAC never passes for a record's, or a record's for a head's. The
//! chain alone shows every edit, gap and reordering but not lines cut from its end; the head
//! shows those too, since the record it names must still be there. This file is the format
//! only: it never touches a file or decides what a missing record means.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use super::chain::{self, GENESIS, LineFault, Link, Sealed};
use crate::mac::MacKey;

/// What a head's MAC covers before its object.
const HEAD: &[u8] = b"phigate audit head v1\n";

/// One record, by its place in the chain and its MAC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordId {
    /// Its sequence number.
    pub seq: u64,
    /// Its MAC (hex).
    pub mac: String,
}

impl RecordId {
    /// The record `sealed` is.
    pub fn of(sealed: &Sealed) -> Self {
        Self {
            seq: sealed.seq,
            mac: sealed.mac.clone(),
        }
    }

    /// The record before `link`, or `None` at the start of a chain.
    pub fn before(link: &Link) -> Option<Self> {
        let seq = link.seq.checked_sub(1)?;
        (link.prev != GENESIS).then(|| Self {
            seq,
            mac: link.prev.clone(),
        })
    }

    /// The link of the record after this one.
    pub fn next(&self) -> Link {
        Link {
            seq: self.seq.saturating_add(1),
            prev: self.mac.clone(),
        }
    }
}

/// An opened (or about to be sealed) head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    /// The trail file it was written beside (its name only).
    pub file: String,
    /// The newest synced record; `None` when the trail held none yet.
    pub last: Option<RecordId>,
    /// When it was written (RFC 3339).
    pub time: String,
}

/// A head's members, in the order they are sealed.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Members {
    file: String,
    last_seq: Option<u64>,
    last_mac: Option<String>,
    time: String,
}

impl Head {
    /// The head of the trail in `file` whose newest synced record is `last`, written now.
    pub fn now(file: &Path, last: Option<RecordId>) -> Self {
        Self {
            file: file
                .file_name()
                .map(|name| name.to_string_lossy().into_owned())
                .unwrap_or_default(),
            last,
            time: humantime::format_rfc3339_millis(SystemTime::now()).to_string(),
        }
    }

    /// The sealed line, with its newline.
    pub fn seal(&self, key: &MacKey) -> String {
        let members = Members {
            file: self.file.clone(),
            last_seq: self.last.as_ref().map(|last| last.seq),
            last_mac: self.last.as_ref().map(|last| last.mac.clone()),
            time: self.time.clone(),
        };
        // Strings and numbers always serialise; an empty object would not open, so a failure
        // here shows up as a head that `verify` refuses, never as one that passes.
        let object = serde_json::to_string(&members).unwrap_or_default();
        chain::close(key, HEAD, object).0
    }

    /// Opens a head file's content: one sealed line and its newline, nothing else.
    pub fn open(key: &MacKey, content: &[u8]) -> Result<Self, LineFault> {
        let line = std::str::from_utf8(content)
            .ok()
            .and_then(|text| text.strip_suffix('\n'))
            .filter(|line| !line.contains('\n'))
            .ok_or(LineFault::Malformed)?;
        let (object, _) = chain::unclose(key, HEAD, line)?;
        let members: Members = serde_json::from_str(&object).map_err(|_| LineFault::Malformed)?;
        let last = match (members.last_seq, members.last_mac) {
            (Some(seq), Some(mac)) => Some(RecordId { seq, mac }),
            (None, None) => None,
            _ => return Err(LineFault::Malformed),
        };
        Ok(Self {
            file: members.file,
            last,
            time: members.time,
        })
    }
}

/// Where the head of the trail in `file` lives: `audit.log` → `audit.log.head`.
pub fn path(file: &Path) -> PathBuf {
    let mut name = file.as_os_str().to_owned();
    name.push(".head");
    PathBuf::from(name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::chain::seal;

    fn key() -> MacKey {
        MacKey::new(b"0123456789abcdef0123456789abcdef")
    }

    #[test]
    fn a_sealed_head_opens_and_names_its_record() {
        let (line, link) = seal(&key(), &Link::genesis(), r#""event":"decision""#);
        let sealed = chain::open(&key(), line.trim_end()).unwrap();
        let last = RecordId::before(&link);
        assert_eq!(last, Some(RecordId::of(&sealed)));
        assert_eq!(last.as_ref().map(RecordId::next), Some(link));
        assert_eq!(RecordId::before(&Link::genesis()), None);
        for last in [last, None] {
            let head = Head::now(Path::new("/var/log/audit.log"), last);
            let opened = Head::open(&key(), head.seal(&key()).as_bytes()).unwrap();
            assert_eq!((opened.file.as_str(), &opened), ("audit.log", &head));
        }
    }

    #[test]
    fn a_head_and_a_record_never_pass_for_each_other() {
        let head = Head::now(Path::new("audit.log"), None).seal(&key());
        let (record, _) = seal(&key(), &Link::genesis(), r#""event":"decision""#);
        assert_eq!(
            Head::open(&key(), record.as_bytes()),
            Err(LineFault::BadMac)
        );
        assert_eq!(chain::open(&key(), head.trim_end()), Err(LineFault::BadMac));
        let other = MacKey::new(b"another key, also of 32 bytes...");
        assert_eq!(Head::open(&other, head.as_bytes()), Err(LineFault::BadMac));
        let edited = head.replace("\"last_seq\":null", "\"last_seq\":7");
        assert_eq!(
            Head::open(&key(), edited.as_bytes()),
            Err(LineFault::BadMac)
        );
        let twice = format!("{head}{head}");
        assert_eq!(
            Head::open(&key(), twice.as_bytes()),
            Err(LineFault::Malformed)
        );
        assert_eq!(Head::open(&key(), b""), Err(LineFault::Malformed));
    }
}
