//! The keyed chain: how one audit line is sealed and opened. A line is a JSON object whose last
//! member is `"mac"`; the MAC is HMAC-SHA-256, under the audit key, over the exact bytes of the
//! line without that member (`{"seq":…,…,"prev":"…"}`), and `prev` is the previous line's MAC.
//! The bytes as written are the canonical form, so nothing is re-serialised to be checked. Whoever
//! can write the file but not read the key cannot edit, drop, reorder or add a line unnoticed.
//! The trail's head is sealed the same way behind a prefix of its own ([`close`], [`unclose`]).
//! This file never touches a file or decides what a broken chain means.

use serde::Deserialize;

use crate::mac::MacKey;

/// The `prev` of a chain's first record.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The suffix that holds a line's MAC: `,"mac":"` 64 hex digits `"}`.
const MAC_MEMBER: &str = ",\"mac\":\"";
const MAC_HEX: usize = 64;

/// What a record's MAC covers before its line: nothing, as from the first version of the trail.
/// Every other kind of sealed line puts its own prefix first, and no prefix starts with `{`, so
/// no MAC of one kind is ever a valid MAC of another.
const RECORD: &[u8] = b"";

/// Where the next record links to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    /// The next record's sequence number.
    pub seq: u64,
    /// The previous record's MAC (hex), or [`GENESIS`].
    pub prev: String,
}

impl Link {
    /// The link of a chain that starts now.
    pub fn genesis() -> Self {
        Self {
            seq: 0,
            prev: GENESIS.to_owned(),
        }
    }
}

/// What an intact line says about its place in the chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sealed {
    /// Its sequence number.
    pub seq: u64,
    /// The MAC it links to.
    pub prev: String,
    /// Its own MAC (hex).
    pub mac: String,
    /// Its event (`decision`, `chain_restart`, …).
    pub event: String,
}

impl Sealed {
    /// The link this record carries: the one it continues.
    pub fn link(&self) -> Link {
        Link {
            seq: self.seq,
            prev: self.prev.clone(),
        }
    }

    /// The link for the record after this one.
    pub fn next(&self) -> Link {
        Link {
            seq: self.seq.saturating_add(1),
            prev: self.mac.clone(),
        }
    }

    /// Whether this record starts a chain (the first ever, or a restart).
    pub fn starts_chain(&self) -> bool {
        self.seq == 0 && self.prev == GENESIS
    }
}

/// Why a line does not open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineFault {
    /// Not a sealed audit line at all (no MAC member, not JSON, missing `seq` or `prev`).
    Malformed,
    /// The MAC does not match: the line was edited, or written without the key.
    BadMac,
}

/// Seals `fields` (JSON object members, without braces) as the record at `link`, and returns
/// the line (with its newline) and the link for the next record.
pub fn seal(key: &MacKey, link: &Link, fields: &str) -> (String, Link) {
    let object = format!(
        "{{\"seq\":{},{fields},\"prev\":\"{}\"}}",
        link.seq, link.prev
    );
    let (line, mac) = close(key, RECORD, object);
    let next = Link {
        seq: link.seq.saturating_add(1),
        prev: mac,
    };
    (line, next)
}

/// Opens one line (without its newline): checks its MAC and reads its place in the chain.
pub fn open(key: &MacKey, line: &str) -> Result<Sealed, LineFault> {
    let (object, mac) = unclose(key, RECORD, line)?;
    #[derive(Deserialize)]
    struct Place {
        seq: u64,
        prev: String,
        event: String,
    }
    let place: Place = serde_json::from_str(&object).map_err(|_| LineFault::Malformed)?;
    Ok(Sealed {
        seq: place.seq,
        prev: place.prev,
        mac: mac.to_owned(),
        event: place.event,
    })
}

/// Appends the MAC member to `object` (a whole JSON object): the MAC is over `domain` and then
/// the object's bytes. Returns the line, with its newline, and the MAC (hex).
pub(super) fn close(key: &MacKey, domain: &[u8], mut object: String) -> (String, String) {
    let mac = hex(key.sign(&[domain, object.as_bytes()].concat()).as_ref());
    object.pop();
    object.push_str(MAC_MEMBER);
    object.push_str(&mac);
    object.push_str("\"}\n");
    (object, mac)
}

/// The object `line` (without its newline) seals, and its MAC (hex), once the MAC is checked
/// under `domain`.
pub(super) fn unclose<'l>(
    key: &MacKey,
    domain: &[u8],
    line: &'l str,
) -> Result<(String, &'l str), LineFault> {
    let head_len = line
        .len()
        .checked_sub(MAC_MEMBER.len() + MAC_HEX + 2)
        .ok_or(LineFault::Malformed)?;
    let (head, tail) = line
        .split_at_checked(head_len)
        .ok_or(LineFault::Malformed)?;
    let mac = tail
        .strip_prefix(MAC_MEMBER)
        .and_then(|rest| rest.strip_suffix("\"}"))
        .filter(|mac| mac.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
        .ok_or(LineFault::Malformed)?;
    let object = format!("{head}}}");
    let tag = unhex(mac).ok_or(LineFault::Malformed)?;
    if !key.verify(&[domain, object.as_bytes()].concat(), &tag) {
        return Err(LineFault::BadMac);
    }
    Ok((object, mac))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    text.as_bytes()
        .chunks(2)
        .map(|pair| u8::from_str_radix(std::str::from_utf8(pair).ok()?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIELDS: &str = r#""event":"decision","status":200"#;

    fn key() -> MacKey {
        MacKey::new(b"0123456789abcdef0123456789abcdef")
    }

    #[track_caller]
    fn check(line: &str, expected: Result<u64, LineFault>) {
        let line = line.strip_suffix('\n').unwrap_or(line);
        assert_eq!(open(&key(), line).map(|sealed| sealed.seq), expected);
    }

    #[test]
    fn a_sealed_line_opens_and_links_to_the_next() {
        let (first, link) = seal(&key(), &Link::genesis(), FIELDS);
        let (second, _) = seal(&key(), &link, FIELDS);
        let opened = open(&key(), first.trim_end()).unwrap();
        assert!(opened.starts_chain());
        assert_eq!(opened.next(), link);
        let second = open(&key(), second.trim_end()).unwrap();
        assert_eq!((second.seq, second.prev), (1, opened.mac));
    }

    #[test]
    fn tampered_lines_do_not_open() {
        let (line, _) = seal(&key(), &Link::genesis(), FIELDS);
        check(&line, Ok(0));
        check(&line.replace("200", "403"), Err(LineFault::BadMac));
        check(
            &line.replace("\"seq\":0", "\"seq\":7"),
            Err(LineFault::BadMac),
        );
        check(&line[..line.len() / 2], Err(LineFault::Malformed));
        check("", Err(LineFault::Malformed));
        check(r#"{"seq":0,"event":"decision"}"#, Err(LineFault::Malformed));
        let (forged, _) = seal(
            &MacKey::new(b"another key, also of 32 bytes..."),
            &Link::genesis(),
            FIELDS,
        );
        check(&forged, Err(LineFault::BadMac));
    }
}
