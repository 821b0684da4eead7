//! Path normalisation and rule matching: `normalise` on any request target, then
//! `PolicyTable::resolve` against a policy compiled once (literal, `{param}` and `**` patterns,
//! a public rule beside a scoped one that differs only by letter case, break-glass), and the
//! permit a token holding every scope gets. Asserts what routing promises: the route's path is
//! the normalised request path, a refused path is refused for the normaliser's reason, and a
//! permit forwards exactly the authorised path (`phigate_fuzz::forwarding`).
//!
//! Input: `METHOD target`, e.g. `GET /Patient/123?_format=json`.
#![no_main]

use std::path::Path;
use std::sync::LazyLock;

use http::{Method, Uri};
use libfuzzer_sys::fuzz_target;
use phigate::policy::path::normalise;
use phigate::policy::{Content, Grant, PolicyFault, PolicyTable, ScopeSet};
use phigate_fuzz::forwarding;

const POLICY: &str = r"
rules:
  - name: capability-statement
    methods: [GET]
    path: /metadata
    public: true
  - name: smart-configuration
    methods: [GET]
    path: /.well-known/smart-configuration
    public: true
  - name: secret-report
    methods: [GET]
    path: /Report/secret
    scopes: [reports:secret]
  - name: reports
    methods: [GET]
    path: /Report/**
    public: true
  - name: read-patient
    methods: [GET, HEAD]
    path: /Patient/{id}
    scopes: [patient/Patient.r, user/Patient.r]
  - name: patient-version
    methods: [GET]
    path: /Patient/{id}/_history/{vid}
    scopes: [user/Patient.r]
  - name: observations
    methods: [GET, POST, PUT, DELETE]
    path: /Observation/**
    scopes: [user/Observation.cruds]
  - name: export
    methods: [GET]
    path: /$export
    scopes: [system/*.rs]
    mode: report-only
break_glass:
  scope: phigate/break-glass
  max_duration: 1h
  rules:
    - name: emergency-read
      methods: [GET]
      path: /Encounter/**
";

static TABLE: LazyLock<PolicyTable> = LazyLock::new(|| {
    PolicyTable::from_yaml(POLICY, Path::new("path-fuzz.yaml"))
        .unwrap_or_else(|err| panic!("the target's policy: {err}"))
});

/// Every scope the policy names, and the break-glass scope: any route may be permitted.
static SCOPES: LazyLock<ScopeSet> = LazyLock::new(|| {
    let all = "reports:secret patient/Patient.r user/Patient.r user/Observation.cruds \
               system/*.rs phigate/break-glass";
    ScopeSet::from_claims(Some(&serde_json::Value::from(all)), None)
        .unwrap_or_else(|err| panic!("{err:?}"))
});

fuzz_target!(|data: &[u8]| {
    let Some(space) = data.iter().position(|b| *b == b' ') else {
        return;
    };
    let (Ok(method), Ok(uri)) = (
        Method::from_bytes(&data[..space]),
        Uri::try_from(&data[space + 1..]),
    ) else {
        return;
    };
    let normal = normalise(uri.path());
    if let Ok(path) = &normal {
        assert_eq!(
            normalise(path.as_str()).as_ref(),
            Ok(path),
            "not idempotent"
        );
    }
    let route = match TABLE.resolve(&method, &uri) {
        Ok(route) => route,
        Err(PolicyFault::MalformedPath(fault)) => {
            assert_eq!(normal, Err(fault));
            return;
        }
        Err(PolicyFault::NoMatchingRule | PolicyFault::AmbiguousPath) => {
            assert!(normal.is_ok(), "a refused path reached matching: {uri}");
            return;
        }
    };
    let authorised = route.path().clone();
    let permit = if route.is_public() {
        route.permit_public()
    } else {
        let grant = Grant {
            scopes: &SCOPES,
            patient: None,
            token_age: Some(std::time::Duration::ZERO),
        };
        let content = Content {
            justification: Some("fuzzing"),
            ..Content::default()
        };
        route.authorize(&grant, &content).ok()
    };
    let permit = permit.unwrap_or_else(|| panic!("every scope, yet refused: {method} {uri}"));
    forwarding::check(&TABLE, &method, &uri, &authorised, &permit);
    // Outside FHIR rules the query travels untouched.
    assert_eq!(
        permit.path_and_query(),
        match uri.query() {
            Some(query) => format!("{authorised}?{query}"),
            None => authorised.to_string(),
        }
    );
});
