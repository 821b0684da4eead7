use std::path::Path;
use std::time::Duration;

use http::{Method, Uri};

use crate::policy::{Content, Grant, PolicyTable, ScopeSet};

const POLICY: &str = r#"rules:
  - name: read-patient
    methods: [GET]
    path: /Patient/{id}
    scopes: [user/Patient.r]
  - name: reports
    methods: [GET]
    path: /Report/**
    scopes: [user/Report.r]
    mode: report-only
break_glass:
  scope: phigate/break-glass
  max_duration: 1h
  rules:
    - name: emergency-read
      methods: [GET, HEAD]
      path: /**
"#;

const FRESH: Option<Duration> = Some(Duration::from_secs(60));
const STALE: Option<Duration> = Some(Duration::from_secs(3601));
const REASON: Option<&str> = Some("ED trauma bay 2, unconscious patient");

fn table() -> PolicyTable {
    PolicyTable::from_yaml(POLICY, Path::new("policy.yaml")).unwrap()
}

/// Decides `GET path` for a token with `scopes` issued `age` ago, with `justification`:
/// `Ok((rule that granted, break-glass?))` or the refusal's reason.
#[track_caller]
fn check(
    path: &str,
    scopes: &str,
    age: Option<Duration>,
    justification: Option<&str>,
    expected: Result<(&str, bool), &str>,
) {
    let table = table();
    let uri: Uri = path.parse().unwrap();
    let scopes = ScopeSet::from_claims(Some(&serde_json::json!(scopes)), None).unwrap();
    let grant = Grant {
        scopes: &scopes,
        patient: None,
        token_age: age,
    };
    let content = Content {
        justification,
        ..Content::default()
    };
    let decided = table
        .resolve(&Method::GET, &uri)
        .unwrap()
        .authorize(&grant, &content);
    let actual = match &decided {
        Ok(permit) => Ok((permit.rule_name(), permit.break_glass().is_some())),
        Err(refusal) => Err(refusal.reason()),
    };
    assert_eq!(actual, expected);
    if let Ok(permit) = decided
        && let Some(emergency) = permit.break_glass()
    {
        assert_eq!(emergency.rule_name(), "emergency-read");
        assert_eq!(
            Some(emergency.justification()),
            justification.map(str::trim)
        );
        assert_eq!(permit.granted_scope(), Some("phigate/break-glass"));
    }
}

#[test]
fn break_glass_grants_only_with_scope_fresh_token_and_justification() {
    let bg = "phigate/break-glass";
    // An ordinary grant never needs break-glass, and is not marked as one.
    check(
        "/Patient/1",
        "user/Patient.r",
        FRESH,
        REASON,
        Ok(("read-patient", false)),
    );
    check(
        "/Patient/1",
        bg,
        FRESH,
        REASON,
        Ok(("emergency-read", true)),
    );
    // A path no ordinary rule covers, too.
    check(
        "/Observation/9",
        bg,
        FRESH,
        REASON,
        Ok(("emergency-read", true)),
    );
    check(
        "/Patient/1",
        bg,
        FRESH,
        None,
        Err("break_glass_justification_missing"),
    );
    check(
        "/Patient/1",
        bg,
        FRESH,
        Some("   "),
        Err("break_glass_justification_missing"),
    );
    check(
        "/Patient/1",
        bg,
        STALE,
        REASON,
        Err("break_glass_token_stale"),
    );
    // A token without `iat` cannot show it is fresh.
    check(
        "/Patient/1",
        bg,
        None,
        REASON,
        Err("break_glass_token_stale"),
    );
    check(
        "/Patient/1",
        "user/Other.r",
        FRESH,
        REASON,
        Err("break_glass_scope_missing"),
    );
    let long = "x".repeat(super::MAX_JUSTIFICATION + 1);
    check(
        "/Patient/1",
        bg,
        FRESH,
        Some(&long),
        Err("break_glass_justification_invalid"),
    );
    check(
        "/Patient/1",
        bg,
        FRESH,
        Some("tab\there"),
        Err("break_glass_justification_invalid"),
    );
}

#[test]
fn without_invoking_break_glass_the_ordinary_refusal_stands() {
    check(
        "/Patient/1",
        "user/Other.r",
        FRESH,
        None,
        Err("insufficient_scope"),
    );
    // Where only break-glass covers a path, its own rule's scope never grants by itself.
    check(
        "/Observation/9",
        "user/Other.r",
        FRESH,
        None,
        Err("no_matching_rule"),
    );
    check(
        "/Observation/9",
        "phigate/break-glass",
        STALE,
        None,
        Err("break_glass_token_stale"),
    );
    // Report-only still reports when break-glass is not invoked, and yields to it when it is.
    check(
        "/Report/1",
        "user/Other.r",
        FRESH,
        None,
        Ok(("reports", false)),
    );
    check(
        "/Report/1",
        "phigate/break-glass",
        FRESH,
        REASON,
        Ok(("emergency-read", true)),
    );
}

/// Loads `section` as the policy's break-glass section and returns the first error message.
#[track_caller]
fn check_error(section: &str, expected: &str) {
    let text = format!(
        "rules:\n  - name: read-patient\n    methods: [GET]\n    path: /Patient/{{id}}\n    scopes: [user/Patient.r]\nbreak_glass:\n{section}"
    );
    let err = PolicyTable::from_yaml(&text, Path::new("p.yaml")).unwrap_err();
    let messages: Vec<&str> = err.problems.iter().map(|p| p.message.as_str()).collect();
    assert!(
        messages.iter().any(|m| m.contains(expected)),
        "{messages:?} lacks {expected:?}"
    );
}

#[test]
fn a_bad_break_glass_section_is_refused_at_load() {
    let rules = "  rules:\n    - name: e\n      methods: [GET]\n      path: /**\n";
    check_error(
        &format!("  scope: \"a b\"\n  max_duration: 1h\n{rules}"),
        "is not a valid scope",
    );
    check_error(
        &format!("  scope: bg\n  max_duration: 2d\n{rules}"),
        "at most 24h",
    );
    check_error(
        &format!("  scope: bg\n  max_duration: 1.5h\n{rules}"),
        "fractions",
    );
    check_error(
        &format!(
            "  scope: bg\n  max_duration: 1h\n  justification_header: \"bad header\"\n{rules}"
        ),
        "is not a header name",
    );
    check_error(
        "  scope: bg\n  max_duration: 1h\n  rules:\n    - name: e\n      methods: [PUT]\n      path: /**\n",
        "break-glass opens reads only",
    );
    check_error(
        "  scope: bg\n  max_duration: 1h\n  rules:\n    - name: read-patient\n      methods: [GET]\n      path: /**\n",
        "is also an ordinary rule's",
    );
    check_error(
        "  scope: bg\n  max_duration: 1h\n  rules: []\n",
        "lists no rules",
    );
    check_error(
        &format!("  scope: bg\n  max_duration: 1h\n  extra: 1\n{rules}"),
        "extra",
    );
}

#[test]
fn check_lists_the_break_glass_rules_below_the_table() {
    let printed = table().to_string();
    assert!(
        printed.contains("break-glass: scope phigate/break-glass, token at most 3600s old, header x-break-glass-reason"),
        "{printed}"
    );
    assert!(printed.contains("!  emergency-read"), "{printed}");
    assert!(printed.contains("break-glass only"), "{printed}");
}
