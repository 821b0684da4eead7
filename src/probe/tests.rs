use std::collections::HashSet;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::json;

use super::cases::{self, Case, Context, Send};
use super::forge::{AttackerKey, Forger, Token, encode};
use super::target::Outgoing;
use super::{dpop, fhir};

const README: &str = include_str!("../../README.md");

/// A token shaped like an ES256 one (a 64-byte signature), without the issuer's key.
fn forger() -> Forger {
    let header = encode(&json!({"alg": "ES256", "kid": "k1", "typ": "at+jwt"}));
    let claims = encode(&json!({"iss": "https://as.test", "sub": "alice", "exp": 2_000_000_000}));
    let signature = URL_SAFE_NO_PAD.encode([7u8; 64]);
    let token = Token::parse(&format!("{header}.{claims}.{signature}")).unwrap();
    Forger::new(token, None).unwrap()
}

fn planned(forger: &Forger) -> Vec<Case> {
    let attacker = AttackerKey::generate().unwrap();
    let published = Err("no JWKS".to_owned());
    let ctx = Context {
        forger,
        path: "/Patient/123",
        published: &published,
        attacker: &attacker,
    };
    cases::plan(&ctx)
}

fn every_id() -> Vec<&'static str> {
    let patients = fhir::Patients {
        own: "123".to_owned(),
        other: "456".to_owned(),
    };
    let mut ids: Vec<&'static str> = planned(&forger()).iter().map(|c| c.id).collect();
    ids.extend(dpop::IDS);
    ids.extend(fhir::plan(&patients, "t").iter().map(|c| c.id));
    ids
}

/// The request case `id` sends; panics for a case that sends no HTTP request.
fn request<'a>(cases: &'a [Case], id: &str) -> &'a Outgoing {
    let case = cases.iter().find(|c| c.id == id).unwrap();
    match &case.send {
        Send::Http(outgoing) | Send::Raw(outgoing) => outgoing,
        other => panic!("{id} sends {other:?}"),
    }
}

fn authorization(outgoing: &Outgoing) -> Vec<&str> {
    outgoing
        .headers
        .iter()
        .filter(|(name, _)| name == "authorization")
        .map(|(_, value)| value.as_str())
        .collect()
}

#[test]
fn every_case_is_unique_and_documented_in_the_readme() {
    let ids = every_id();
    assert!(ids.len() >= 40, "{} cases", ids.len());
    let unique: HashSet<_> = ids.iter().collect();
    assert_eq!(unique.len(), ids.len(), "duplicate ids");
    let section = README
        .split("\n## Probe\n")
        .nth(1)
        .expect("README has a `## Probe` section");
    let section = section.split("\n## ").next().unwrap_or(section);
    for id in ids {
        assert!(
            section.contains(&format!("| `{id}` |")),
            "README `## Probe` has no row for `{id}`"
        );
    }
}

#[test]
fn the_positive_control_comes_first() {
    assert_eq!(every_id()[0], "control-allowed");
}

#[track_caller]
fn check_path(cases: &[Case], id: &str, expected: &str) {
    let case = cases.iter().find(|c| c.id == id).unwrap();
    let Send::Raw(outgoing) = &case.send else {
        panic!("{id} is not sent as raw bytes");
    };
    assert_eq!(outgoing.path, expected, "{id}");
    assert!(authorization(outgoing).is_empty(), "{id} carries a token");
}

#[test]
fn path_tricks_name_the_protected_path_raw_and_without_a_token() {
    let cases = planned(&forger());
    check_path(&cases, "path-double-slash", "//Patient/123");
    check_path(&cases, "path-inner-double-slash", "/Patient//123");
    check_path(&cases, "path-dot-dot", "/phigate-probe/../Patient/123");
    check_path(
        &cases,
        "path-encoded-dot-dot",
        "/phigate-probe/%2e%2e/Patient/123",
    );
    check_path(&cases, "path-encoded-slash", "/Patient%2F123");
    check_path(&cases, "path-semicolon", "/phigate-probe/..;/Patient/123");
    check_path(&cases, "path-parameter", "/Patient/123;probe=1");
    check_path(&cases, "path-backslash", "/Patient\\123");
    check_path(&cases, "path-encoded-backslash", "/Patient%5C123");
}

#[test]
fn spare_bits_change_only_the_last_character_and_no_strict_decoder_takes_it() {
    let forger = forger();
    let cases = planned(&forger);
    let sent = authorization(request(&cases, "b64-spare-bits"))[0]
        .strip_prefix("Bearer ")
        .unwrap()
        .to_owned();
    let original = &forger.token.text;
    assert_ne!(&sent, original);
    assert_eq!(sent[..sent.len() - 1], original[..original.len() - 1]);
    let signature = sent.rsplit('.').next().unwrap();
    assert!(URL_SAFE_NO_PAD.decode(signature).is_err());
}

#[test]
fn credentials_cases_send_what_their_ids_say() {
    let forger = forger();
    let token = forger.token.text.clone();
    let cases = planned(&forger);
    let bearer = format!("Bearer {token}");
    assert!(authorization(request(&cases, "no-credentials")).is_empty());
    assert_eq!(
        authorization(request(&cases, "duplicate-authorization")),
        [bearer.as_str(), bearer.as_str()]
    );
    assert!(
        request(&cases, "query-token")
            .path
            .ends_with(&format!("?access_token={token}"))
    );
    assert!(authorization(request(&cases, "query-token")).is_empty());
    assert_eq!(
        authorization(request(&cases, "control-scheme-case")),
        [format!("bEaReR {token}").as_str()]
    );
    assert_eq!(request(&cases, "method-trace").method, http::Method::TRACE);
}

#[test]
fn without_the_issuers_key_or_jwks_cases_say_so() {
    let cases = planned(&forger());
    for id in ["hmac-jwk-text", "hmac-public-pem"] {
        let case = cases.iter().find(|c| c.id == id).unwrap();
        assert!(
            matches!(&case.send, Send::Skip(reason) if reason == "no JWKS"),
            "{id}"
        );
    }
    for id in ["expired", "not-yet-valid", "wrong-audience", "unknown-kid"] {
        let case = cases.iter().find(|c| c.id == id).unwrap();
        assert_eq!(case.note, Some("mutated (no --issuer-key)"), "{id}");
    }
}
