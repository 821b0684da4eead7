use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::json;

use super::*;
use crate::policy::ScopeSet;
use crate::token::{BearerToken, ClientId, Confirmation, Jti, Subject};

const NOW: i64 = 1_800_000_000;

fn token(jti: &str, client: &str, sub: &str, iat: Option<i64>) -> VerifiedToken {
    VerifiedToken {
        issuer: Arc::from("https://as"),
        subject: Subject::parse(sub),
        client_id: ClientId::parse(client),
        jti: Jti::parse(jti),
        patient: None,
        scopes: ScopeSet::default(),
        expires_at: NOW + 300,
        issued_at: iat,
        confirmation: Confirmation::None,
    }
}

/// The `token_sha256` a revocation list writes for the token `text`.
fn sha256_of(text: &str) -> String {
    URL_SAFE_NO_PAD.encode(crate::jose::sha256(text.as_bytes()))
}

/// Whether a list of `entries` revokes `token`, presented as the text `text`.
#[track_caller]
fn check(entries: serde_json::Value, token: &VerifiedToken, text: &str, expected: bool) {
    let document = json!({"version": 1, "entries": entries}).to_string();
    let set = RevocationSet::parse_document(document.as_bytes(), NOW).unwrap();
    let bearer = BearerToken::new(text);
    assert_eq!(set.revokes(token, bearer.digest()), expected, "{entries}");
}

#[test]
fn each_entry_kind_revokes_what_it_names() {
    let t = token("j-1", "app-1", "u-1", Some(NOW - 10));
    check(json!([{"jti": "j-1", "exp": NOW + 60}]), &t, "h", true);
    check(json!([{"jti": "j-2", "exp": NOW + 60}]), &t, "h", false);
    check(json!([{"jti": "j-1", "exp": NOW - 60}]), &t, "h", false);
    for (revoked, expected) in [("h", true), ("another", false)] {
        check(
            json!([{"token_sha256": sha256_of(revoked), "exp": NOW + 60}]),
            &t,
            "h",
            expected,
        );
    }
    check(
        json!([{"client_id": "app-1", "before": NOW - 9}]),
        &t,
        "h",
        true,
    );
    check(
        json!([{"client_id": "app-1", "before": NOW - 11}]),
        &t,
        "h",
        false,
    );
    check(json!([{"sub": "u-1", "before": NOW}]), &t, "h", true);
    check(json!([{"sub": "u-2", "before": NOW}]), &t, "h", false);
    // No iat: the token cannot prove it is newer than the cutoff (E-03, fail closed).
    check(
        json!([{"client_id": "app-1", "before": NOW - 1000}]),
        &token("j", "app-1", "u", None),
        "h",
        true,
    );
    check(json!([]), &t, "h", false);
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

#[test]
fn malformed_documents_are_refused_whole() {
    for document in [
        "<html>".to_owned(),
        json!({"entries": []}).to_string(),
        json!({"version": 2, "entries": []}).to_string(),
        json!({"version": 1}).to_string(),
        json!({"version": 1, "entries": [{"jti": "a"}]}).to_string(),
        json!({"version": 1, "entries": [{"jti": "a", "sub": "b", "exp": 1}]}).to_string(),
        json!({"version": 1, "entries": [{"unknown": 1}]}).to_string(),
        r#"{"version":1,"version":1,"entries":[]}"#.to_owned(),
        // An identity or hash that could never match a token would revoke nothing while
        // looking right.
        json!({"version": 1, "entries": [{"jti": " j-1", "exp": NOW + 60}]}).to_string(),
        json!({"version": 1, "entries": [{"client_id": "a\u{0}b", "before": NOW}]}).to_string(),
        json!({"version": 1, "entries": [{"sub": "x".repeat(256), "before": NOW}]}).to_string(),
        json!({"version": 1, "entries": [{"token_sha256": "h", "exp": NOW + 60}]}).to_string(),
        json!({"version": 1, "entries": [{"token_sha256": format!("{}=", sha256_of("h")), "exp": NOW + 60}]}).to_string(),
        json!({"version": 1, "entries": [{"token_sha256": hex(&crate::jose::sha256(b"h")), "exp": NOW + 60}]}).to_string(),
    ] {
        assert!(
            RevocationSet::parse_document(document.as_bytes(), NOW).is_err(),
            "{document}"
        );
    }
}

#[test]
fn refusals_say_why_and_a_list_too_long_is_refused_at_the_entry_past_the_cap() {
    let entry = |n: usize| format!(r#"{{"jti":"j-{n}","exp":{}}}"#, NOW + 60);
    let list = |n: usize| (0..n).map(entry).collect::<Vec<_>>().join(",");
    let cases = [
        (format!(r#"{{"version":1,"entries":[{}]}}"#, list(3)), Ok(3)),
        // Members in any order, unknown ones ignored.
        (
            format!(
                r#"{{"entries":[{}],"note":{{"a":[1]}},"version":1}}"#,
                list(2)
            ),
            Ok(2),
        ),
        (
            format!(r#"{{"version":1,"entries":[{}]}}"#, list(4)),
            Err(ListError::TooLarge),
        ),
        // Refused at the fourth entry: what follows is never read (here, not even JSON).
        (
            format!(r#"{{"version":1,"entries":[{},"#, list(4)),
            Err(ListError::TooLarge),
        ),
        (
            format!(r#"{{"version":2,"entries":[{}]}}"#, list(1)),
            Err(ListError::Invalid("version must be 1")),
        ),
        (
            r#"{"version":1,"entries":{"jti":"a"}}"#.to_owned(),
            Err(ListError::Invalid("no entries array")),
        ),
        (
            r#"{"version":1}"#.to_owned(),
            Err(ListError::Invalid("no entries array")),
        ),
        (
            r#"{"version":1,"entries":[{"jti":"a"}]}"#.to_owned(),
            Err(ListError::Invalid("a jti entry needs exp")),
        ),
        (
            r#"{"version":1,"entries":[],"entries":[]}"#.to_owned(),
            Err(ListError::Invalid("not JSON")),
        ),
        (
            r#"{"version":1,"entries":[{"jti":"a","jti":"b","exp":1}]}"#.to_owned(),
            Err(ListError::Invalid("not JSON")),
        ),
    ];
    for (document, expected) in cases {
        let parsed = RevocationSet::parse_bounded(document.as_bytes(), NOW, 3);
        assert_eq!(parsed.map(|set| set.len()), expected, "{document}");
    }
}

#[test]
fn a_jti_entry_costs_the_same_whatever_the_jti_length() {
    let long = "j".repeat(255);
    let document = json!({"version": 1, "entries": [{"jti": long, "exp": NOW + 60}]});
    let set = RevocationSet::parse_document(document.to_string().as_bytes(), NOW).unwrap();
    // Kept as a SHA-256 and an expiry: 40 bytes before the map's own overhead.
    assert_eq!(std::mem::size_of::<([u8; 32], i64)>(), 40);
    assert!(set.revokes(
        &token(&long, "a", "u", None),
        BearerToken::new("t").digest()
    ));
}

#[test]
fn entries_expire_with_their_tokens() {
    let mut set = RevocationSet::default();
    set.insert(
        Entry::Jti {
            jti: Jti::parse("a").unwrap(),
            exp: NOW + 10,
            issuer: None,
        },
        NOW,
    );
    set.insert(
        Entry::ClientBefore {
            client_id: ClientId::parse("c").unwrap(),
            before: NOW,
            issuer: Some(Box::from("https://as")),
        },
        NOW,
    );
    assert_eq!(set.len(), 2);
    set.prune(NOW + 11, 900);
    assert_eq!(set.len(), 1);
    set.prune(NOW + 901, 900);
    assert!(set.is_empty());
}

#[test]
fn an_entry_naming_its_issuer_revokes_that_issuers_tokens_only() {
    let document = json!({"version": 1, "entries": [
        {"jti": "j-1", "exp": NOW + 60, "iss": "https://as"},
        {"client_id": "app-1", "before": NOW, "iss": "https://other-as"},
        {"sub": "u-1", "before": NOW, "iss": "https://as"},
    ]});
    let set = RevocationSet::parse_document(document.to_string().as_bytes(), NOW).unwrap();
    let digest = *BearerToken::new("t").digest();
    let of = |issuer: &str, jti: &str, client: &str, sub: &str| {
        let mut token = token(jti, client, sub, Some(NOW - 1));
        token.issuer = Arc::from(issuer);
        set.revokes(&token, &digest)
    };
    assert!(
        of("https://as", "j-1", "app-9", "u-9"),
        "the named issuer's jti"
    );
    assert!(
        !of("https://other-as", "j-1", "app-9", "u-9"),
        "another issuer's jti"
    );
    assert!(
        of("https://other-as", "j-9", "app-1", "u-9"),
        "the named issuer's client"
    );
    assert!(
        !of("https://as", "j-9", "app-1", "u-9"),
        "another issuer's client"
    );
    assert!(
        of("https://as", "j-9", "app-9", "u-1"),
        "the named issuer's subject"
    );
    assert!(
        !of("https://other-as", "j-9", "app-9", "u-1"),
        "another issuer's subject"
    );
    // An entry without iss still applies to every issuer.
    let any = json!({"version": 1, "entries": [{"jti": "j-1", "exp": NOW + 60}]});
    let set = RevocationSet::parse_document(any.to_string().as_bytes(), NOW).unwrap();
    let mut other = token("j-1", "a", "u", None);
    other.issuer = Arc::from("https://other-as");
    assert!(set.revokes(&other, &digest));
    for refused in [json!(""), json!(7), json!(["https://as"])] {
        let document =
            json!({"version": 1, "entries": [{"jti": "j", "exp": NOW + 60, "iss": refused}]});
        assert_eq!(
            RevocationSet::parse_document(document.to_string().as_bytes(), NOW).err(),
            Some(ListError::Invalid(
                "an entry's iss is not a non-empty string"
            )),
            "{refused}"
        );
    }
}
