//! The revocation list: tokens revoked by `jti`, by the SHA-256 of the token, or all tokens of a
//! client or subject issued before a time. Entries expire with the token they revoke (a `jti`
//! or hash entry is dropped after its `exp`), so the list stays bounded. A document is read as a
//! stream, one entry at a time straight into the set — never as a whole JSON tree — and refused
//! at the entry past [`MAX_ENTRIES`]; a `jti` is kept as its SHA-256, so an entry costs the same
//! few dozen bytes however long its `jti`.
//!
//! Document format (HTTP and file sources; a Redis set holds one entry object per member):
//! `{"version": 1, "entries": [{"jti": "…", "exp": 1800000000}, {"token_sha256": "<base64url>",
//! "exp": …}, {"client_id": "app-1", "before": 1700000000}, {"sub": "u-1", "before": …}]}`.
//! A `jti`, `client_id` or `sub` entry may name its issuer (`"iss": "https://as"`): it then
//! applies to that issuer's tokens only, since two issuers' `jti`s, clients and subjects are
//! separate namespaces.

use std::cell::Cell;
use std::collections::HashMap;
use std::fmt;
use std::hash::Hash;

use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

use crate::jose::sha256;
use crate::strict_json::{self, UniqueKeys};
use crate::token::{ClientId, Jti, Subject, TokenDigest, VerifiedToken};

/// A list document or entry that could not be read; the last good list stays in force.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ListError {
    /// Not JSON, duplicate members, wrong version, or an entry of unknown shape.
    #[error("revocation list refused: {0}")]
    Invalid(&'static str),
    /// More entries than a list may hold.
    #[error("revocation list has more than {MAX_ENTRIES} entries")]
    TooLarge,
}

/// A list larger than this is refused whole, with an alert, never silently truncated (R-R03).
pub const MAX_ENTRIES: usize = 2_000_000;

/// One revocation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    /// A token by `jti`, until its `exp`; of `issuer` only, when named.
    Jti {
        jti: Jti,
        exp: i64,
        issuer: Option<Box<str>>,
    },
    /// A token by the SHA-256 of its text (base64url in the document), until its `exp`.
    TokenHash { hash: TokenDigest, exp: i64 },
    /// Every token of a client issued before `before` (and every token without `iat`); of
    /// `issuer` only, when named.
    ClientBefore {
        client_id: ClientId,
        before: i64,
        issuer: Option<Box<str>>,
    },
    /// Every token of a subject issued before `before` (and every token without `iat`); of
    /// `issuer` only, when named.
    SubjectBefore {
        subject: Subject,
        before: i64,
        issuer: Option<Box<str>>,
    },
}

impl Entry {
    /// Parses one entry object.
    pub fn parse(value: &Value) -> Result<Self, ListError> {
        let object = value
            .as_object()
            .ok_or(ListError::Invalid("an entry is not an object"))?;
        let text = |name: &str| {
            object
                .get(name)
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
        };
        let number = |name: &str| object.get(name).and_then(Value::as_i64);
        // An `iss` that names no issuer would scope the entry to nobody: refused, not ignored.
        let issuer = match object.get("iss") {
            None => None,
            Some(Value::String(iss)) if !iss.is_empty() => Some(Box::from(iss.as_str())),
            Some(_) => {
                return Err(ListError::Invalid(
                    "an entry's iss is not a non-empty string",
                ));
            }
        };
        let entry = match (
            text("jti"),
            text("token_sha256"),
            text("client_id"),
            text("sub"),
        ) {
            (Some(jti), None, None, None) => Self::Jti {
                jti: identity(&jti, Jti::parse)?,
                exp: number("exp").ok_or(ListError::Invalid("a jti entry needs exp"))?,
                issuer,
            },
            (None, Some(hash), None, None) => Self::TokenHash {
                // A hash that can never match would leave the token it names unrevoked while
                // the list looks right: refused like any entry of unknown shape.
                hash: TokenDigest::from_base64url(&hash).ok_or(ListError::Invalid(
                    "a token_sha256 is not the base64url of a SHA-256",
                ))?,
                exp: number("exp").ok_or(ListError::Invalid("a hash entry needs exp"))?,
            },
            (None, None, Some(client_id), None) => Self::ClientBefore {
                client_id: identity(&client_id, ClientId::parse)?,
                before: number("before")
                    .ok_or(ListError::Invalid("a client entry needs before"))?,
                issuer,
            },
            (None, None, None, Some(subject)) => Self::SubjectBefore {
                subject: identity(&subject, Subject::parse)?,
                before: number("before").ok_or(ListError::Invalid("a sub entry needs before"))?,
                issuer,
            },
            _ => {
                return Err(ListError::Invalid(
                    "an entry needs exactly one of jti, token_sha256, client_id, sub",
                ));
            }
        };
        Ok(entry)
    }

    /// Parses one entry from JSON text (a Redis member or pub/sub message).
    pub fn parse_text(text: &[u8]) -> Result<Self, ListError> {
        let value =
            strict_json::parse(text).map_err(|_| ListError::Invalid("an entry is not JSON"))?;
        Self::parse(&value)
    }
}

/// An entry's `jti`, `client_id` or `sub` as a token carries it. One no token can carry would
/// revoke nothing while the list looked right, so it is refused like an entry of unknown shape.
fn identity<T>(value: &str, parse: fn(&str) -> Option<T>) -> Result<T, ListError> {
    parse(value).ok_or(ListError::Invalid(
        "a jti, client_id or sub is not 1 to 255 bytes of printable ASCII",
    ))
}

/// The SHA-256 a `jti` entry is kept under: of the `jti` alone, or of the issuer, a NUL and the
/// `jti` for an issuer's own (a `jti` is printable ASCII, so the two forms never meet).
fn jti_key(issuer: Option<&str>, jti: &Jti) -> [u8; 32] {
    match issuer {
        None => sha256(jti.as_str().as_bytes()),
        Some(issuer) => sha256(format!("{issuer}\0{}", jti.as_str()).as_bytes()),
    }
}

/// "Issued before" cut-offs by client or subject, for any issuer's tokens or for one issuer's.
#[derive(Debug, Clone)]
struct Cutoffs<K> {
    any_issuer: HashMap<K, i64>,
    by_issuer: HashMap<K, Vec<(Box<str>, i64)>>,
}

impl<K> Default for Cutoffs<K> {
    fn default() -> Self {
        Self {
            any_issuer: HashMap::new(),
            by_issuer: HashMap::new(),
        }
    }
}

impl<K: Hash + Eq> Cutoffs<K> {
    /// Keeps the later of two cut-offs for the same key and issuer.
    fn insert(&mut self, key: K, issuer: Option<Box<str>>, before: i64) {
        match issuer {
            None => {
                let kept = self.any_issuer.entry(key).or_insert(before);
                *kept = (*kept).max(before);
            }
            Some(issuer) => {
                let kept = self.by_issuer.entry(key).or_default();
                match kept.iter_mut().find(|(named, _)| *named == issuer) {
                    Some((_, cutoff)) => *cutoff = (*cutoff).max(before),
                    None => kept.push((issuer, before)),
                }
            }
        }
    }

    /// Whether a token of `key` from `issuer`, issued at `issued_at`, is cut off.
    fn cuts_off(&self, key: &K, issuer: &str, issued_at: Option<i64>) -> bool {
        let issued_before = |cutoff: i64| issued_at.is_none_or(|iat| iat < cutoff);
        self.any_issuer.get(key).is_some_and(|c| issued_before(*c))
            || self.by_issuer.get(key).is_some_and(|cutoffs| {
                cutoffs
                    .iter()
                    .any(|(named, cutoff)| &**named == issuer && issued_before(*cutoff))
            })
    }

    fn prune(&mut self, horizon: i64) {
        self.any_issuer.retain(|_, before| *before >= horizon);
        self.by_issuer.retain(|_, cutoffs| {
            cutoffs.retain(|(_, before)| *before >= horizon);
            !cutoffs.is_empty()
        });
    }

    fn len(&self) -> usize {
        self.any_issuer.len() + self.by_issuer.values().map(Vec::len).sum::<usize>()
    }
}

/// The revoked tokens one source knows of.
#[derive(Debug, Default, Clone)]
pub struct RevocationSet {
    /// By [`jti_key`].
    jtis: HashMap<[u8; 32], i64>,
    hashes: HashMap<TokenDigest, i64>,
    clients: Cutoffs<ClientId>,
    subjects: Cutoffs<Subject>,
}

impl RevocationSet {
    /// Parses a whole list document; an empty list is valid only when well-formed.
    pub fn parse_document(bytes: &[u8], now: i64) -> Result<Self, ListError> {
        Self::parse_bounded(bytes, now, MAX_ENTRIES)
    }

    /// [`Self::parse_document`] refusing more than `max_entries`.
    fn parse_bounded(bytes: &[u8], now: i64, max_entries: usize) -> Result<Self, ListError> {
        let fault = Cell::new(None);
        let mut reader = serde_json::Deserializer::from_slice(bytes);
        let parsed = DocumentSeed {
            now,
            max_entries,
            fault: Fault(&fault),
        }
        .deserialize(&mut reader)
        .and_then(|set| reader.end().map(|()| set));
        parsed.map_err(|_| fault.take().unwrap_or(ListError::Invalid("not JSON")))
    }

    /// Adds an entry; one whose token has already expired is not kept.
    pub fn insert(&mut self, entry: Entry, now: i64) {
        match entry {
            Entry::Jti { jti, exp, issuer } if exp >= now => {
                self.jtis.insert(jti_key(issuer.as_deref(), &jti), exp);
            }
            Entry::TokenHash { hash, exp } if exp >= now => {
                self.hashes.insert(hash, exp);
            }
            Entry::ClientBefore {
                client_id,
                before,
                issuer,
            } => self.clients.insert(client_id, issuer, before),
            Entry::SubjectBefore {
                subject,
                before,
                issuer,
            } => self.subjects.insert(subject, issuer, before),
            Entry::Jti { .. } | Entry::TokenHash { .. } => {}
        }
    }

    /// Drops entries whose tokens have expired; a cutoff is dropped once every token it can
    /// affect has expired (`before` + the longest token lifetime).
    pub fn prune(&mut self, now: i64, max_lifetime: i64) {
        self.jtis.retain(|_, exp| *exp >= now);
        self.hashes.retain(|_, exp| *exp >= now);
        let horizon = now.saturating_sub(max_lifetime);
        self.clients.prune(horizon);
        self.subjects.prune(horizon);
    }

    /// Whether `token` (whose text hashes to `digest`) is revoked.
    pub fn revokes(&self, token: &VerifiedToken, digest: &TokenDigest) -> bool {
        let issuer = &*token.issuer;
        // Hashing the `jti` is only worth it when some entry could match.
        (!self.jtis.is_empty()
            && token.jti.as_ref().is_some_and(|jti| {
                self.jtis.contains_key(&jti_key(None, jti))
                    || self.jtis.contains_key(&jti_key(Some(issuer), jti))
            }))
            || self.hashes.contains_key(digest)
            || token
                .client_id
                .as_ref()
                .is_some_and(|c| self.clients.cuts_off(c, issuer, token.issued_at))
            || token
                .subject
                .as_ref()
                .is_some_and(|s| self.subjects.cuts_off(s, issuer, token.issued_at))
    }

    /// Number of entries held.
    pub fn len(&self) -> usize {
        self.jtis.len() + self.hashes.len() + self.clients.len() + self.subjects.len()
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests;

/// Reads a list document: `version` and `entries` (other members ignored, every member name
/// once). Why a document was refused is left in `fault`; serde's own error says only where.
struct DocumentSeed<'f> {
    now: i64,
    max_entries: usize,
    fault: Fault<'f>,
}

/// Where a reader leaves why it refused a document.
#[derive(Clone, Copy)]
struct Fault<'f>(&'f Cell<Option<ListError>>);

impl Fault<'_> {
    fn refuse<E: de::Error>(self, fault: ListError) -> E {
        self.0.set(Some(fault));
        E::custom(fault)
    }
}

impl<'de> DeserializeSeed<'de> for DocumentSeed<'_> {
    type Value = RevocationSet;

    fn deserialize<D: de::Deserializer<'de>>(self, reader: D) -> Result<RevocationSet, D::Error> {
        reader.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for DocumentSeed<'_> {
    type Value = RevocationSet;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a revocation list document")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RevocationSet, A::Error> {
        let mut names: Vec<String> = Vec::new();
        let (mut version, mut set) = (None, None);
        while let Some(name) = map.next_key::<String>()? {
            if names.contains(&name) {
                return Err(strict_json::duplicate_member());
            }
            match name.as_str() {
                "version" => version = Some(map.next_value::<UniqueKeys>()?.0),
                "entries" => {
                    let entries = EntriesSeed {
                        now: self.now,
                        max_entries: self.max_entries,
                        fault: self.fault,
                    };
                    set = Some(map.next_value_seed(entries)?);
                }
                _ => drop(map.next_value::<UniqueKeys>()?),
            }
            names.push(name);
        }
        if version.as_ref().and_then(Value::as_i64) != Some(1) {
            return Err(self.fault.refuse(ListError::Invalid("version must be 1")));
        }
        set.ok_or_else(|| self.fault.refuse(ListError::Invalid("no entries array")))
    }
}

/// Reads the `entries` array into a set, entry by entry.
struct EntriesSeed<'f> {
    now: i64,
    max_entries: usize,
    fault: Fault<'f>,
}

impl<'de> DeserializeSeed<'de> for EntriesSeed<'_> {
    type Value = RevocationSet;

    fn deserialize<D: de::Deserializer<'de>>(self, reader: D) -> Result<RevocationSet, D::Error> {
        reader.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for EntriesSeed<'_> {
    type Value = RevocationSet;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an entries array")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<RevocationSet, A::Error> {
        let mut set = RevocationSet::default();
        let mut count = 0usize;
        while let Some(UniqueKeys(value)) = seq.next_element()? {
            count += 1;
            if count > self.max_entries {
                return Err(self.fault.refuse(ListError::TooLarge));
            }
            let entry = Entry::parse(&value).map_err(|fault| self.fault.refuse(fault))?;
            set.insert(entry, self.now);
        }
        Ok(set)
    }

    // Anything but an array is no entries array; it is read whole only to be refused.
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RevocationSet, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Err(self.fault.refuse(ListError::Invalid("no entries array")))
    }
}
