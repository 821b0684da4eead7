use std::path::Path;

use super::*;
use crate::policy::{Grant, ScopeSet};

const POLICY: &str = r#"rules:
  - name: capability-statement
    methods: [GET]
    path: /metadata
    public: true
  - name: read-patient
    methods: [GET]
    path: /Patient/{id}
    scopes: [patient/Patient.r, user/Patient.r, system/Patient.r]
  - name: search-observations
    methods: [GET, POST]
    path: /Observation
    scopes: [system/Observation.rs]
  - name: binaries
    methods: [GET]
    path: /Binary/**
    scopes: [system/*.cruds]
"#;

fn table() -> PolicyTable {
    PolicyTable::from_yaml(POLICY, Path::new("policy.yaml")).unwrap()
}

/// Resolves `method target` and returns the rule name or the fault.
#[track_caller]
fn check(method: &str, target: &str, expected: Result<&str, PolicyFault>) {
    let table = table();
    let uri: Uri = target.parse().unwrap();
    let actual = table
        .resolve(&Method::from_bytes(method.as_bytes()).unwrap(), &uri)
        .map(|r| r.rule_name().to_owned());
    assert_eq!(
        actual.as_deref().map_err(|e| *e),
        expected,
        "{method} {target}"
    );
}

#[test]
fn first_match_wins_and_default_denies() {
    check("GET", "/metadata", Ok("capability-statement"));
    check("GET", "/Patient/123", Ok("read-patient"));
    check("GET", "//Patient//123", Ok("read-patient"));
    check("POST", "/Observation", Ok("search-observations"));
    check("GET", "/Binary/a/b", Ok("binaries"));
    check("DELETE", "/Patient/123", Err(PolicyFault::NoMatchingRule));
    check("GET", "/Patient/123/", Ok("read-patient"));
    check("GET", "/metadata//", Ok("capability-statement"));
    check("GET", "/Patient", Err(PolicyFault::NoMatchingRule));
    check("GET", "/Practitioner/1", Err(PolicyFault::NoMatchingRule));
    check("GET", "/Patient/456?/metadata", Ok("read-patient"));
    check(
        "GET",
        "/metadata/../Patient/456",
        Err(PolicyFault::MalformedPath(PathFault::DotSegment)),
    );
}

/// The issue #7 policy: a protected report, then every other report public.
const REPORTS: &str = r#"rules:
  - name: secret-report
    methods: [GET]
    path: /Report/secret
    scopes: [system/Report.r]
  - name: reports
    methods: [GET]
    path: /Report/**
    public: true
  - name: write-reports
    methods: [PUT]
    path: /report/{id}
    scopes: [system/Report.w]
"#;

/// Resolves `method target` under [`REPORTS`]: the rule name and the path to forward, or the fault.
#[track_caller]
fn check_reports(method: &str, target: &str, expected: Result<(&str, &str), PolicyFault>) {
    let table = PolicyTable::from_yaml(REPORTS, Path::new("p.yaml")).unwrap();
    let uri: Uri = target.parse().unwrap();
    let method = Method::from_bytes(method.as_bytes()).unwrap();
    let actual = table
        .resolve(&method, &uri)
        .map(|r| (r.rule_name().to_owned(), r.path.as_str().to_owned()));
    let actual = actual
        .as_ref()
        .map(|(rule, path)| (rule.as_str(), path.as_str()))
        .map_err(|e| *e);
    assert_eq!(actual, expected, "{method} {target}");
}

#[test]
fn an_equivalent_spelling_is_decided_by_the_canonical_rule_or_refused() {
    let secret = Ok(("secret-report", "/Report/secret"));
    let ambiguous = Err(PolicyFault::AmbiguousPath);
    // Empty segments are canonicalised away: the protected rule decides.
    check_reports("GET", "/Report/secret", secret);
    check_reports("GET", "/Report/secret/", secret);
    check_reports("GET", "/Report/secret//", secret);
    check_reports("GET", "//Report///secret/", secret);
    check_reports("GET", "/Report/%73ecret", secret);
    check_reports("GET", "/Report/other/", Ok(("reports", "/Report/other")));
    check_reports("GET", "/Report", Ok(("reports", "/Report")));
    // A case-insensitive upstream may serve these as /Report/secret.
    check_reports("GET", "/report/secret", ambiguous);
    check_reports("GET", "/REPORT/Secret", ambiguous);
    check_reports("GET", "/Report/SECRET/", ambiguous);
    check_reports("GET", "/Report/secret.", ambiguous);
    check_reports("GET", "/Report/secret%20", ambiguous);
    check_reports("GET", "/Report/%C5%BFecret", ambiguous);
    check_reports("GET", "/Report/%EF%BD%93ecret", ambiguous);
    // ... and these as a path of the public rule that no rule matches exactly.
    check_reports("GET", "/report/other", ambiguous);
    // The first loose match is the exact match: nothing else could apply.
    check_reports(
        "GET",
        "/Report/secret.json",
        Ok(("reports", "/Report/secret.json")),
    );
    check_reports("GET", "/Report/secrets", Ok(("reports", "/Report/secrets")));
    check_reports("PUT", "/report/1", Ok(("write-reports", "/report/1")));
    // Only rules for the request's method take part.
    check_reports("PUT", "/Report/1", ambiguous);
    check_reports("DELETE", "/report/1", Err(PolicyFault::NoMatchingRule));
    check_reports("GET", "/Other", Err(PolicyFault::NoMatchingRule));
}

#[test]
fn authorize_and_permit() {
    let table = table();
    let uri: Uri = "/Patient/%31%323?_format=json".parse().unwrap();
    let scopes = ScopeSet::from_claims(Some(&serde_json::json!("user/Patient.r")), None).unwrap();
    let grant = Grant {
        scopes: &scopes,
        patient: None,
        token_age: None,
    };
    let permit = table
        .resolve(&Method::GET, &uri)
        .unwrap()
        .authorize(&grant, &crate::policy::Content::default())
        .unwrap();
    assert_eq!(permit.path_and_query(), "/Patient/123?_format=json");
    assert_eq!(permit.granted_scope(), Some("user/Patient.r"));
    let none = ScopeSet::default();
    let refused = table
        .resolve(&Method::GET, &uri)
        .unwrap()
        .authorize(
            &Grant {
                scopes: &none,
                patient: None,
                token_age: None,
            },
            &crate::policy::Content::default(),
        )
        .unwrap_err();
    assert_eq!(refused.reason(), "insufficient_scope");
    assert_eq!(
        refused.needed(),
        Some("patient/Patient.r user/Patient.r system/Patient.r")
    );
    let public = table
        .resolve(&Method::GET, &"/metadata".parse().unwrap())
        .unwrap();
    assert!(public.is_public());
    assert!(public.permit_public().unwrap().granted_scope().is_none());
    assert!(
        table
            .resolve(&Method::GET, &uri)
            .unwrap()
            .permit_public()
            .is_none()
    );
}

/// Loads `text` and checks the first problem's line and message.
#[track_caller]
fn check_load(text: &str, line: usize, message: &str) {
    let err = PolicyTable::from_yaml(text, Path::new("p.yaml")).unwrap_err();
    let first = &err.problems[0];
    assert_eq!(first.line, line, "{err}");
    assert!(first.message.contains(message), "{err}");
    assert!(err.to_string().starts_with("p.yaml:"), "{err}");
}

#[test]
fn load_errors_name_line_and_problem() {
    let rule = |body: &str| {
        format!("rules:\n  - name: a\n    methods: [GET]\n    path: /a\n    public: true\n{body}")
    };
    check_load(
        &rule("  - name: a\n    methods: [GET]\n    path: /b\n    public: true\n"),
        6,
        "used twice",
    );
    check_load(
        &rule("  - name: b\n    methods: [get]\n    path: /b\n    public: true\n"),
        6,
        "method",
    );
    check_load(
        &rule("  - name: b\n    methods: [TRACE]\n    path: /b\n    public: true\n"),
        6,
        "method",
    );
    check_load(
        &rule("  - name: b\n    methods: [GET]\n    path: /b\n    public: true\n    scopes: [x]\n"),
        6,
        "choose one",
    );
    check_load(
        &rule("  - name: b\n    methods: [GET]\n    path: /b\n"),
        6,
        "public: true",
    );
    check_load(
        &rule("  - name: b\n    methods: [GET]\n    path: /b\n    scopes: []\n"),
        6,
        "public: true",
    );
    check_load(
        &rule("  - name: b\n    methods: [GET]\n    path: /b\n    scopes: [\"a b\"]\n"),
        9,
        "not a valid scope",
    );
    check_load(
        &rule("  - name: b\n    methods: [GET]\n    path: b\n    public: true\n"),
        6,
        "must start with /",
    );
    check_load(
        &rule("  - name: b\n    methods: [GET]\n    path: /a\n    public: true\n"),
        6,
        "shadowed",
    );
    check_load(
        "rules:\n  - name: all\n    methods: [GET]\n    path: /**\n    public: true\n  - name: b\n    methods: [GET]\n    path: /Patient/{id}\n    scopes: [x]\n",
        6,
        "shadowed",
    );
    check_load(
        &rule("  - name: b\n    methods: [GET]\n    path: /b\n    publik: true\n"),
        9,
        "publik",
    );
    check_load("rules: [\n", 1, "unclosed");
    check_load("rules: []\n", 1, "no rules");
}

#[test]
fn a_later_rule_for_other_methods_is_not_shadowed() {
    let text = "rules:\n  - name: read\n    methods: [GET]\n    path: /Patient/{id}\n    scopes: [a]\n  - name: write\n    methods: [GET, PUT]\n    path: /Patient/{id}\n    scopes: [b]\n";
    assert!(PolicyTable::from_yaml(text, Path::new("p.yaml")).is_ok());
}

#[test]
fn the_rule_table_prints_every_rule() {
    let printed = table().to_string();
    for expected in [
        "capability-statement",
        "GET,POST",
        "/Patient/{id}",
        "public",
        "any of: system/Observation.rs",
        "(no match)  denied",
    ] {
        assert!(printed.contains(expected), "{expected} missing:\n{printed}");
    }
}

/// Loads `rules` (YAML list items) and checks the warnings: (line, words each must contain).
#[track_caller]
fn check_warnings(rules: &str, expected: &[(usize, &[&str])]) {
    let text = format!("rules:\n{rules}");
    let table = PolicyTable::from_yaml(&text, Path::new("p.yaml")).unwrap();
    let warnings = table.warnings();
    assert_eq!(warnings.len(), expected.len(), "{warnings:#?}");
    for (warning, (line, words)) in warnings.iter().zip(expected) {
        assert_eq!(warning.line, *line, "{warning}");
        assert_eq!(warning.file, Path::new("p.yaml"));
        for word in *words {
            assert!(
                warning.message.contains(word),
                "{word:?} missing: {warning}"
            );
        }
    }
}

/// One YAML rule, `extra` holding its access keys (one per line, indented by four).
fn rule(name: &str, methods: &str, path: &str, extra: &str) -> String {
    format!("  - name: {name}\n    methods: [{methods}]\n    path: {path}\n{extra}")
}

const SCOPED: &str = "    scopes: [a]\n";
const PUBLIC: &str = "    public: true\n";

#[test]
fn a_later_weaker_overlapping_rule_is_a_warning() {
    let secret = rule("secret", "GET", "/Report/secret", SCOPED);
    // Line 2 is the first rule, each rule takes 4 lines plus its extra keys.
    check_warnings(
        &format!("{secret}{}", rule("reports", "GET", "/Report/**", PUBLIC)),
        &[(
            6,
            &[
                "\"reports\" (/Report/**)",
                "earlier rule \"secret\" (/Report/secret)",
                "it is public",
            ],
        )],
    );
    check_warnings(
        &format!(
            "{secret}{}",
            rule("one", "GET, PUT", "/Report/{id}", PUBLIC)
        ),
        &[(6, &["\"one\"", "it is public"])],
    );
    check_warnings(
        &format!(
            "{secret}{}",
            rule(
                "r",
                "GET",
                "/Report/**",
                "    scopes: [b]\n    mode: report-only\n"
            )
        ),
        &[(6, &["it is report-only"])],
    );
    let bound = rule(
        "bound",
        "GET",
        "/Report/secret",
        "    scopes: [a]\n    require_binding: mtls\n    introspect: always\n",
    );
    check_warnings(
        &format!("{bound}{}", rule("r", "GET", "/Report/**", SCOPED)),
        &[(
            8,
            &[
                "demands no sender binding where \"bound\" demands mtls",
                "does not introspect every token",
            ],
        )],
    );
    check_warnings(
        &format!(
            "{bound}{}",
            rule(
                "r",
                "GET",
                "/Report/{id}",
                "    scopes: [a]\n    require_binding: any\n    introspect: always\n"
            )
        ),
        &[(
            8,
            &["accepts any sender binding where \"bound\" demands mtls"],
        )],
    );
    // Every earlier rule it is weaker than is named.
    check_warnings(
        &format!(
            "{secret}{}{}",
            rule("other", "GET", "/Report/other", SCOPED),
            rule("reports", "GET", "/Report/**", PUBLIC)
        ),
        &[(10, &["\"secret\""]), (10, &["\"other\""])],
    );
}

#[test]
fn overlaps_that_are_not_weaker_or_not_shared_are_not_warnings() {
    let secret = rule("secret", "GET", "/Report/secret", SCOPED);
    for later in [
        // Stronger or equal.
        rule("reports", "GET", "/Report/**", SCOPED),
        rule(
            "r",
            "GET",
            "/Report/**",
            "    scopes: [a]\n    require_binding: dpop\n",
        ),
        // No method in common.
        rule("reports", "POST", "/Report/**", PUBLIC),
        // No path in common.
        rule("reports", "GET", "/Report/{id}/x", PUBLIC),
        rule("reports", "GET", "/Reports/**", PUBLIC),
    ] {
        check_warnings(&format!("{secret}{later}"), &[]);
    }
    // An earlier public rule has nothing to weaken.
    check_warnings(
        &format!(
            "{}{}",
            rule("meta", "GET", "/metadata", PUBLIC),
            rule(
                "all",
                "GET",
                "/**",
                "    scopes: [a]\n    mode: report-only\n"
            )
        ),
        &[],
    );
    // A different binding is not a weaker one.
    check_warnings(
        &format!(
            "{}{}",
            rule(
                "m",
                "GET",
                "/a",
                "    scopes: [a]\n    require_binding: mtls\n"
            ),
            rule(
                "d",
                "GET",
                "/**",
                "    scopes: [a]\n    require_binding: dpop\n"
            )
        ),
        &[],
    );
}

#[test]
fn rules_that_differ_only_in_letter_case_are_a_warning() {
    check_warnings(
        &format!(
            "{}{}",
            rule("lower", "GET", "/report/**", PUBLIC),
            rule("upper", "GET", "/Report/secret", SCOPED)
        ),
        &[(
            6,
            &["\"upper\"", "\"lower\"", "letter case", "path_ambiguous"],
        )],
    );
    // Whatever their strength: the requests are refused, not mis-decided.
    check_warnings(
        &format!(
            "{}{}",
            rule("upper", "GET", "/Report/secret", SCOPED),
            rule("lower", "GET", "/report/{id}", SCOPED)
        ),
        &[(6, &["letter case"])],
    );
}

#[test]
fn scopes_no_smart_server_grants_are_warnings_at_the_scope() {
    let scopes = |list: &str| {
        rule(
            "r",
            "GET",
            "/Patient/{id}",
            &format!("    scopes: {list}\n"),
        )
    };
    check_warnings(
        &scopes("[patient/Patient.r, patient/Patinet.r]"),
        &[(
            5,
            &[
                "rule \"r\": scope \"patient/Patinet.r\" is shaped like a SMART scope, but no SMART server grants it",
                "\"Patinet\" is not a FHIR R4 resource type (did you mean \"Patient\"?)",
            ],
        )],
    );
    check_warnings(
        &scopes("[system/Patient.x]"),
        &[(5, &["\".x\" is neither SMART v2 permissions"])],
    );
    check_warnings(
        &scopes("[usr/Patient.r]"),
        &[(
            5,
            &["\"usr\" is not a SMART context", "did you mean \"user\"?"],
        )],
    );
    check_warnings(
        &scopes("[system/Patient.read]"),
        &[(
            5,
            &[
                "SMART v1 form of \"system/Patient.rs\"",
                "a token holding \"system/Patient.rs\" does not match",
                "fhir: smart",
            ],
        )],
    );
    // Block lists put each scope on its own line, and each warning on the scope's.
    check_warnings(
        &scopes(
            "\n      - user/Patient.r\n      - user/Patinet.r\n      - openid\n      - usr/Patient.r",
        ),
        &[(7, &["\"Patinet\""]), (9, &["\"usr\""])],
    );
    // Scopes not shaped like SMART ones are another API's business.
    check_warnings(
        &scopes("[openid, launch/patient, \"reports:read\", api/Report.read, user/*.cruds]"),
        &[],
    );
    let table = PolicyTable::from_yaml(
        &format!("rules:\n{}", scopes("[user/Patient.r, usr/Patient.r]")),
        Path::new("p.yaml"),
    )
    .unwrap();
    let warning = &table.warnings()[0];
    assert_eq!((warning.line, warning.column), (5, 30), "{warning}");
}

#[test]
fn unknown_resource_types_in_a_smart_rule_are_errors() {
    let smart = |types: &str| {
        format!(
            "rules:\n{}",
            rule(
                "fhir",
                "GET",
                "/**",
                &format!("    fhir: smart\n    resource_types: {types}\n")
            )
        )
    };
    check_load(
        &smart("[Observation, Obsrvation]"),
        6,
        "rule \"fhir\": resource_types: \"Obsrvation\" is not a FHIR R4 resource type (did you mean \"Observation\"?)",
    );
    check_load(
        &smart("[Widget]"),
        6,
        "\"Widget\" is not a FHIR R4 resource type",
    );
    assert!(PolicyTable::from_yaml(&smart("[Patient, Observation]"), Path::new("p.yaml")).is_ok());
}

#[test]
fn the_shipped_policies_load_without_warnings() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for file in ["policies/example.yaml", "policies/smart-v2.yaml"] {
        let table = PolicyTable::load(&root.join(file)).unwrap_or_else(|err| panic!("{err}"));
        assert!(
            table.warnings().is_empty(),
            "{file}: {:?}",
            table.warnings()
        );
    }
}
