//! The revocation list: a whole document as an HTTP or file source serves it
//! (`RevocationSet::parse_document`, a streaming reader with an entry cap) and one entry as a
//! Redis member or pub/sub message carries it (`Entry::parse_text`). The two readers must agree:
//! an entry that reads alone also reads inside a document, and revokes the same tokens.
#![no_main]

use std::sync::{Arc, LazyLock};

use libfuzzer_sys::fuzz_target;
use phigate::revocation::{Entry, RevocationSet};
use phigate::token::{BearerToken, ClientId, Confirmation, Jti, Subject, VerifiedToken};

/// The seeds' entries expire after this time (2027-01-15T08:00:00Z).
const NOW: i64 = 1_800_000_000;

/// The token the seeds revoke in each way: `jti-1`, `app-1`, `u-1`, issued an hour ago.
static TOKEN: LazyLock<VerifiedToken> = LazyLock::new(|| VerifiedToken {
    issuer: Arc::from("https://as.test"),
    subject: Subject::parse("u-1"),
    client_id: ClientId::parse("app-1"),
    jti: Jti::parse("jti-1"),
    patient: None,
    scopes: phigate::policy::ScopeSet::default(),
    expires_at: NOW + 600,
    issued_at: Some(NOW - 3600),
    confirmation: Confirmation::None,
});
static BEARER: LazyLock<BearerToken> = LazyLock::new(|| BearerToken::new("access-token-1"));

fuzz_target!(|data: &[u8]| {
    if let Ok(mut set) = RevocationSet::parse_document(data, NOW) {
        let revoked = set.revokes(&TOKEN, BEARER.digest());
        set.prune(NOW, 900);
        assert!(set.len() <= phigate::revocation::MAX_ENTRIES);
        let _ = revoked;
    }
    let Ok(entry) = Entry::parse_text(data) else {
        return;
    };
    let text = std::str::from_utf8(data).unwrap_or_else(|_| panic!("an entry read from non-UTF-8"));
    let document = format!(r#"{{"version": 1, "entries": [{text}]}}"#);
    let in_document = RevocationSet::parse_document(document.as_bytes(), NOW)
        .unwrap_or_else(|err| panic!("{text:?} reads alone but not in a document: {err}"));
    let mut alone = RevocationSet::default();
    alone.insert(entry, NOW);
    assert_eq!(
        alone.revokes(&TOKEN, BEARER.digest()),
        in_document.revokes(&TOKEN, BEARER.digest()),
        "{text:?}"
    );
});
