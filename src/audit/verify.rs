//! Checking a trail offline: every line of the given files, in order, must open under the key
//! and link to the one before it (`seq` one more, `prev` its MAC). The first record checked is
//! taken as the anchor, since earlier files may have been archived; a record that starts a chain
//! (`seq` 0, `prev` zero) is one only phigate could have written, so it anchors anew. The first
//! line that fails is named by file and line; nothing after it is trusted.

use std::fmt;
use std::path::{Path, PathBuf};

use super::chain::{self, LineFault, Link};
use crate::mac::MacKey;

/// A line of a file, counted from 1.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Place {
    /// The file.
    pub file: PathBuf,
    /// The line.
    pub line: usize,
}

impl fmt::Display for Place {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file.display(), self.line)
    }
}

/// What is wrong with a record.
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
        }
    }
}

/// The first bad record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fault {
    /// Where it is.
    pub place: Place,
    /// What is wrong with it.
    pub problem: Problem,
}

/// What an intact trail held.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Summary {
    /// Records checked.
    pub records: u64,
    /// Records that start a chain (the first ever, or a restart after a damaged file).
    pub starts: Vec<Place>,
    /// The first record's sequence number when it starts no chain: the files given continue
    /// earlier ones, which were not checked.
    pub continues_from: Option<u64>,
}

/// Checks `files` (name and content), in order, as one chain.
pub fn verify<'a>(
    key: &MacKey,
    files: impl IntoIterator<Item = (&'a Path, &'a [u8])>,
) -> Result<Summary, Fault> {
    let mut summary = Summary::default();
    let mut expected: Option<Link> = None;
    for (file, content) in files {
        let text = String::from_utf8_lossy(content);
        let mut rest = text.as_ref();
        let mut line = 0;
        while !rest.is_empty() {
            line += 1;
            let place = Place {
                file: file.to_path_buf(),
                line,
            };
            let Some((record, after)) = rest.split_once('\n') else {
                return Err(Fault {
                    place,
                    problem: Problem::Truncated,
                });
            };
            rest = after;
            let sealed = chain::open(key, record).map_err(|fault| Fault {
                place: place.clone(),
                problem: match fault {
                    LineFault::Malformed => Problem::Malformed,
                    LineFault::BadMac => Problem::BadMac,
                },
            })?;
            if sealed.starts_chain() {
                summary.starts.push(place);
            } else if summary.records == 0 {
                summary.continues_from = Some(sealed.seq);
            } else if let Some(link) = &expected {
                let problem = if sealed.seq != link.seq {
                    Some(Problem::OutOfOrder {
                        expected: link.seq,
                        found: sealed.seq,
                    })
                } else {
                    (sealed.prev != link.prev).then_some(Problem::BrokenLink)
                };
                if let Some(problem) = problem {
                    return Err(Fault { place, problem });
                }
            }
            expected = Some(sealed.next());
            summary.records += 1;
        }
    }
    Ok(summary)
}

#[cfg(test)]
mod tests;
