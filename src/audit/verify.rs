//! Checking a trail offline: every line of the given files, in order, must open under the key
//! and link to the one before it (`seq` one more, `prev` its MAC). The first record checked is
//! taken as the anchor, since earlier files may have been archived; a record that starts a chain
//! (`seq` 0, `prev` zero) is one only phigate could have written, so it anchors anew — unless it
//! says the file before it lost records, or had no head to prove it did not. The newest file's
//! head must open under the key and name a record the files hold: records after that one are
//! allowed (written just before a crash, or while checking), records cut off before it are not.
//! The first problem is named by file and line; nothing after it is trusted.

use std::fmt;
use std::path::{Path, PathBuf};

use super::chain::{self, LineFault, Link, Sealed};
use super::entry::{Restart, RestartReason};
use super::head::{Head, RecordId};
use crate::mac::MacKey;

/// A line of a file, counted from 1; line 0 is the file as a whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Place {
    /// The file.
    pub file: PathBuf,
    /// The line.
    pub line: usize,
}

impl Place {
    fn new(file: &Path, line: usize) -> Self {
        Self {
            file: file.to_path_buf(),
            line,
        }
    }
}

impl fmt::Display for Place {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            0 => write!(f, "{}", self.file.display()),
            line => write!(f, "{}:{line}", self.file.display()),
        }
    }
}

/// The newest file's head, as `verify` is given it.
#[derive(Debug, Clone, Copy)]
pub enum HeadFile<'a> {
    /// Read from this path, with this content.
    Read(&'a Path, &'a [u8]),
    /// Looked for at this path, and not there.
    Missing(&'a Path),
    /// Not checked (`--no-head`, for an archived trail): records cut from the end go unseen.
    Waived,
}

/// What is wrong with a record, or with the trail's end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Problem {
    /// The last line has no newline: the file was cut inside a record.
    Truncated,
    /// The line is not a sealed audit record.
    Malformed,
    /// The MAC does not match: edited, or written without the key.
    BadMac,
    /// The record does not follow the one before it: a record was dropped, moved or replayed.
    OutOfOrder {
        /// The sequence number the chain expected.
        expected: u64,
        /// The one the record carries.
        found: u64,
    },
    /// The sequence number follows, but `prev` is not the previous record's MAC.
    BrokenLink,
    /// There is no head beside the newest file.
    HeadMissing,
    /// The head is not a sealed head.
    HeadMalformed,
    /// The head's MAC does not match: edited, forged, or sealed under another key.
    HeadBadMac,
    /// The files end before the record the head names: whole records were cut off.
    MissingAfter {
        /// The last record's sequence number, if there is one.
        last: Option<u64>,
        /// The one the head names.
        head: u64,
    },
    /// The files reach the head's sequence number without holding its record.
    NotTheHeadsRecord {
        /// The sequence number the head names.
        head: u64,
    },
    /// phigate restarted the chain here because the file before had lost records.
    RestartedAfterLoss(Restart),
    /// phigate restarted the chain here because the file before had no head to check it by.
    RestartedWithoutHead(RestartReason),
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Truncated => f.write_str("truncated record (no end of line)"),
            Self::Malformed => f.write_str("not a sealed audit record"),
            Self::BadMac => f.write_str("MAC does not match (edited, or forged without the key)"),
            Self::OutOfOrder { expected, found } => write!(
                f,
                "sequence {found} where {expected} was expected (records dropped or reordered)"
            ),
            Self::BrokenLink => f.write_str("prev does not match the previous record's MAC"),
            Self::HeadMissing => f.write_str(
                "no head, so records cut from the end of the newest file would go unseen \
                 (--no-head checks an archived trail without one)",
            ),
            Self::HeadMalformed => f.write_str("not a sealed audit head"),
            Self::HeadBadMac => f.write_str(
                "the head's MAC does not match (edited, forged, or sealed under another key)",
            ),
            Self::MissingAfter {
                last: Some(last),
                head,
            } => write!(
                f,
                "truncated: records after seq {last} are missing: the head names seq {head}"
            ),
            Self::MissingAfter { last: None, head } => {
                write!(f, "truncated: no records, but the head names seq {head}")
            }
            Self::NotTheHeadsRecord { head } => write!(
                f,
                "the head names a record with seq {head} that these files do not hold \
                 (another chain, or a file left out)"
            ),
            Self::RestartedAfterLoss(restart) => {
                write!(f, "chain restarted ({}): ", restart.reason.as_str())?;
                match (restart.last_seq, restart.head_seq) {
                    (Some(last), Some(head)) => write!(
                        f,
                        "records after seq {last} of the file before were missing: \
                         its head named seq {head}"
                    ),
                    (None, Some(head)) => write!(
                        f,
                        "the file before held no records: its head named seq {head}"
                    ),
                    _ => f.write_str("the file before did not lead to its head's record"),
                }
            }
            Self::RestartedWithoutHead(reason) => write!(
                f,
                "chain restarted ({}): the end of the file before cannot be proven complete \
                 (--no-head accepts that)",
                reason.as_str()
            ),
        }
    }
}

/// The first problem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fault {
    /// Where it is.
    pub place: Place,
    /// What is wrong.
    pub problem: Problem,
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.place, self.problem)
    }
}

/// What an intact trail held.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Summary {
    /// Records checked.
    pub records: u64,
    /// Records that start a chain: the first ever, or a restart.
    pub starts: Vec<Start>,
    /// The first record's sequence number when it starts no chain: the files given continue
    /// earlier ones, which were not checked.
    pub continues_from: Option<u64>,
    /// The head the files were checked against (none when it was waived).
    pub head: Option<HeadSeen>,
}

/// A record that starts a chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Start {
    /// Where it is.
    pub place: Place,
    /// Why, when it is a `chain_restart` record.
    pub restart: Option<Restart>,
}

/// The head, as the files met it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeadSeen {
    /// The head file.
    pub place: Place,
    /// What it says.
    pub head: Head,
    /// Records after the one it names (written after it: before a crash, or while checking).
    pub after: u64,
}

/// Whether the records so far hold the one the head names.
struct HeadWatch {
    named: Option<RecordId>,
    reached: bool,
    after: u64,
}

impl HeadWatch {
    fn new(head: Option<&Head>) -> Self {
        let named = head.and_then(|head| head.last.clone());
        Self {
            // A head naming nothing was written before the first record: all come after it.
            reached: named.is_none(),
            named,
            after: 0,
        }
    }

    fn see(&mut self, sealed: &Sealed, first: bool) {
        let Some(named) = self.named.as_ref().filter(|_| !self.reached) else {
            self.after += 1;
            return;
        };
        if *named == RecordId::of(sealed) {
            self.reached = true;
        } else if first && named.next() == sealed.link() {
            // The files start right after the head's record, the last of an earlier file.
            self.reached = true;
            self.after += 1;
        }
    }

    /// What is wrong when the files, ending with `last`, never held the head's record.
    fn missing(&self, last: Option<u64>) -> Option<Problem> {
        let named = self.named.as_ref().filter(|_| !self.reached)?;
        Some(match last {
            Some(last) if last >= named.seq => Problem::NotTheHeadsRecord { head: named.seq },
            last => Problem::MissingAfter {
                last,
                head: named.seq,
            },
        })
    }
}

/// Checks `files` (name and content), in order, as one chain whose end `head` vouches for.
pub fn verify<'a>(
    key: &MacKey,
    files: impl IntoIterator<Item = (&'a Path, &'a [u8])>,
    head: HeadFile<'_>,
) -> Result<Summary, Fault> {
    let (head_place, head) = open_head(key, head)?;
    let mut watch = HeadWatch::new(head.as_ref());
    let mut summary = Summary::default();
    let mut expected: Option<Link> = None;
    let mut end = head_place.clone();
    for (file, content) in files {
        let text = String::from_utf8_lossy(content);
        let mut rest = text.as_ref();
        let mut line = 0;
        while !rest.is_empty() {
            line += 1;
            let place = Place::new(file, line);
            let Some((record, following)) = rest.split_once('\n') else {
                return Err(Fault {
                    place,
                    problem: Problem::Truncated,
                });
            };
            rest = following;
            let sealed = chain::open(key, record).map_err(|fault| Fault {
                place: place.clone(),
                problem: match fault {
                    LineFault::Malformed => Problem::Malformed,
                    LineFault::BadMac => Problem::BadMac,
                },
            })?;
            if let Some(problem) = follow(&mut summary, expected.as_ref(), &sealed) {
                return Err(Fault { place, problem });
            }
            if sealed.starts_chain() {
                let restart = restart_of(&sealed, record);
                // A restart that comes first anchors the files given, whatever came before.
                let after_records = summary.records > 0;
                if let Some(problem) =
                    refuse_restart(restart.as_ref(), head.is_some()).filter(|_| after_records)
                {
                    return Err(Fault { place, problem });
                }
                summary.starts.push(Start { place, restart });
            }
            watch.see(&sealed, summary.records == 0);
            expected = Some(sealed.next());
            summary.records += 1;
        }
        end = Place::new(file, line);
    }
    let last = expected.map(|link| link.seq.saturating_sub(1));
    if let Some(problem) = watch.missing(last) {
        return Err(Fault {
            place: end,
            problem,
        });
    }
    summary.head = head.map(|head| HeadSeen {
        place: head_place,
        head,
        after: watch.after,
    });
    Ok(summary)
}

/// Whether `sealed` follows the record before it; notes where the files begin.
fn follow(summary: &mut Summary, expected: Option<&Link>, sealed: &Sealed) -> Option<Problem> {
    if sealed.starts_chain() {
        return None;
    }
    if summary.records == 0 {
        summary.continues_from = Some(sealed.seq);
        return None;
    }
    let link = expected?;
    if sealed.seq != link.seq {
        return Some(Problem::OutOfOrder {
            expected: link.seq,
            found: sealed.seq,
        });
    }
    (sealed.prev != link.prev).then_some(Problem::BrokenLink)
}

/// What a `chain_restart` record says about why.
fn restart_of(sealed: &Sealed, record: &str) -> Option<Restart> {
    (sealed.event == "chain_restart")
        .then(|| serde_json::from_str(record).ok())
        .flatten()
}

/// Why a chain may not restart after records already checked: phigate found the file before
/// cut short, or (unless the head is waived) found it had no head to check it by.
fn refuse_restart(restart: Option<&Restart>, with_head: bool) -> Option<Problem> {
    let restart = restart?;
    if restart.reason.proves_loss() {
        return Some(Problem::RestartedAfterLoss(*restart));
    }
    (restart.reason.lacked_head() && with_head)
        .then_some(Problem::RestartedWithoutHead(restart.reason))
}

/// Opens the head, or says why the files cannot be checked against it; `None` when waived.
fn open_head(key: &MacKey, head: HeadFile<'_>) -> Result<(Place, Option<Head>), Fault> {
    let (path, content) = match head {
        HeadFile::Waived => return Ok((Place::new(Path::new(""), 0), None)),
        HeadFile::Missing(path) => {
            return Err(Fault {
                place: Place::new(path, 0),
                problem: Problem::HeadMissing,
            });
        }
        HeadFile::Read(path, content) => (path, content),
    };
    let place = Place::new(path, 1);
    match Head::open(key, content) {
        Ok(head) => Ok((place, Some(head))),
        Err(fault) => Err(Fault {
            place,
            problem: match fault {
                LineFault::Malformed => Problem::HeadMalformed,
                LineFault::BadMac => Problem::HeadBadMac,
            },
        }),
    }
}

#[cfg(test)]
mod tests;
