use std::collections::HashSet;

use serde_json::json;

use super::cases::{self, Context};
use super::forge::{AttackerKey, Forger, Token, encode};
use super::{dpop, fhir};

const README: &str = include_str!("../../README.md");

fn every_id() -> Vec<&'static str> {
    let header = encode(&json!({"alg": "ES256", "kid": "k1", "typ": "at+jwt"}));
    let claims = encode(&json!({"iss": "https://as.test", "sub": "alice", "exp": 2_000_000_000}));
    let token = Token::parse(&format!("{header}.{claims}.c2lnbmF0dXJl")).unwrap();
    let forger = Forger::new(token, None).unwrap();
    let attacker = AttackerKey::generate().unwrap();
    let published = Err("none".to_owned());
    let ctx = Context {
        forger: &forger,
        path: "/Patient/123",
        published: &published,
        attacker: &attacker,
    };
    let patients = fhir::Patients {
        own: "123".to_owned(),
        other: "456".to_owned(),
    };
    let mut ids: Vec<&'static str> = cases::plan(&ctx).iter().map(|c| c.id).collect();
    ids.extend(dpop::IDS);
    ids.extend(fhir::plan(&patients, "t").iter().map(|c| c.id));
    ids
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
