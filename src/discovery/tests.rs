use http_body_util::BodyExt;

use super::*;
use crate::config::Config;

const POLICY: &str = "rules:
  - name: metadata
    methods: [GET]
    path: /metadata
    public: true
  - name: patients
    methods: [GET]
    path: /Patient/{id}
    scopes: [user/Patient.r, patient/Patient.r]
    require_binding: dpop
  - name: smart
    methods: [GET]
    path: /Observation
    fhir: smart
    contexts: [patient, system]
    require_binding: dpop
";

/// A discovery over a configuration whose `discovery:` section is `section`.
fn discovery(section: &str) -> Discovery {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("policy.yaml"), POLICY).unwrap();
    let text = format!(
        "listen:\n  address: \"127.0.0.1:0\"\n  insecure_plaintext: true\nupstream:\n  url: \"http://127.0.0.1:1\"\nissuers:\n  - issuer: \"https://as.test\"\n    jwks_uri: \"https://as.test/jwks\"\n    audiences: [\"https://fhir.test\"]\n    algorithms: [ES256]\n{section}policy_file: policy.yaml\n"
    );
    let path = dir.path().join("phigate.yaml");
    std::fs::write(&path, text).unwrap();
    let config = Config::load(&path).unwrap_or_else(|err| panic!("{err}"));
    let policy = Arc::new(PolicyStore::new(config.policy));
    Discovery::new(
        (
            &config.discovery,
            &config.issuers,
            &config.listen.transport,
            &config.dpop.algorithms,
        ),
        policy,
        None,
    )
}

fn document(discovery: &Discovery, which: WellKnown) -> Value {
    let response = discovery.answer(&Method::GET, which).unwrap();
    assert_eq!(response.headers()[CONTENT_TYPE], "application/json");
    assert_eq!(response.headers()[CACHE_CONTROL], CACHE_CONTROL_VALUE);
    let body = futures_util::FutureExt::now_or_never(response.into_body().collect())
        .unwrap()
        .unwrap()
        .to_bytes();
    serde_json::from_slice(&body).unwrap()
}

#[test]
fn paths_resolve_to_the_documents_of_the_configured_resource() {
    let with_path = discovery("discovery:\n  resource: \"https://fhir.test/r4\"\n");
    let check = |path: &str, expected: Option<WellKnown>| {
        assert_eq!(with_path.resolve(path), expected, "{path}");
    };
    check(
        "/.well-known/smart-configuration",
        Some(WellKnown::SmartConfiguration),
    );
    check(
        "/r4/.well-known/smart-configuration",
        Some(WellKnown::SmartConfiguration),
    );
    check(
        "/.well-known/oauth-protected-resource/r4",
        Some(WellKnown::ProtectedResource),
    );
    // §3.3: the root document would name a resource its URL was not formed from.
    check(
        "/.well-known/oauth-protected-resource",
        Some(WellKnown::Unknown),
    );
    check(
        "/.well-known/oauth-protected-resource/other",
        Some(WellKnown::Unknown),
    );
    check("/.well-known/oauth-protected-resourcex", None);
    check("/other/.well-known/smart-configuration", None);
    check("/Patient/1", None);
    // The default resource (the single audience) has no path: the root form is its URL.
    let root = discovery("");
    assert_eq!(
        root.resolve("/.well-known/oauth-protected-resource"),
        Some(WellKnown::ProtectedResource)
    );
    assert_eq!(
        root.resource_metadata(),
        Some("https://fhir.test/.well-known/oauth-protected-resource")
    );
}

#[test]
fn protected_resource_metadata_says_what_phigate_enforces() {
    let discovery = discovery(
        "discovery:\n  resource: \"https://fhir.test/r4\"\n  resource_name: Test FHIR\n  resource_documentation: \"https://fhir.test/docs\"\n",
    );
    let document = document(&discovery, WellKnown::ProtectedResource);
    assert_eq!(
        document,
        json!({
            "resource": "https://fhir.test/r4",
            "authorization_servers": ["https://as.test"],
            "scopes_supported": ["patient/Patient.r", "user/Patient.r"],
            "bearer_methods_supported": ["header"],
            "dpop_signing_alg_values_supported": ["ES256", "PS256", "EdDSA"],
            "dpop_bound_access_tokens_required": true,
            "tls_client_certificate_bound_access_tokens": false,
            "resource_name": "Test FHIR",
            "resource_documentation": "https://fhir.test/docs",
        })
    );
}

#[test]
fn smart_configuration_without_issuer_metadata_has_phigates_facts_and_overrides_win() {
    let plain = document(&discovery(""), WellKnown::SmartConfiguration);
    assert_eq!(
        plain,
        json!({
            "capabilities": ["permission-v2", "permission-patient"],
            "scopes_supported": ["patient/Patient.r", "user/Patient.r"],
            "dpop_signing_alg_values_supported": ["ES256", "PS256", "EdDSA"],
        })
    );
    let overridden = discovery(
        "discovery:\n  smart_configuration:\n    capabilities: [launch-standalone]\n    token_endpoint: \"https://as.test/token\"\n",
    );
    let document = document(&overridden, WellKnown::SmartConfiguration);
    assert_eq!(document["capabilities"], json!(["launch-standalone"]));
    assert_eq!(document["token_endpoint"], "https://as.test/token");
}

#[test]
fn only_get_and_head_are_answered() {
    let discovery = discovery("");
    let head = discovery
        .answer(&Method::HEAD, WellKnown::SmartConfiguration)
        .unwrap();
    assert_eq!(head.status(), StatusCode::OK);
    for method in [Method::POST, Method::PUT, Method::DELETE, Method::PATCH] {
        let refused = discovery.answer(&method, WellKnown::SmartConfiguration);
        assert!(matches!(refused, Err(Denial::MethodNotAllowed)), "{method}");
    }
    assert!(matches!(
        discovery.answer(&Method::GET, WellKnown::Unknown),
        Err(Denial::ResourceNotFound)
    ));
}
