//! Discovery end to end (issue #13): the SMART configuration and RFC 9728 protected resource
//! metadata answered by phigate from configuration, the policy and the issuer's real metadata
//! endpoint, never forwarded; `resource_metadata` in every kind of 401 challenge; issuers named
//! by identifier alone, their JWKS found through RFC 8414 (path-inserted) or OIDC discovery,
//! revalidated by ETag, and refused whole when the document names another issuer.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::Method;
use phigate::demo::DevIssuer;
use serde_json::{Value, json};

use crate::support::{
    AUDIENCE, Discovered, Harness, ISSUER, Options, RESOURCE_METADATA, TestResponse,
    assert_no_leak, eventually, eventually_status,
};

const SMART: &str = "/.well-known/smart-configuration";

/// Asserts a well-known answer: 200 JSON, cacheable, and nothing sent upstream.
#[track_caller]
fn assert_document(harness: &Harness, response: &TestResponse) -> Value {
    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(response.headers["content-type"], "application/json");
    assert_eq!(response.headers["cache-control"], "public, max-age=300");
    assert!(
        harness.upstream.received().is_empty(),
        "upstream saw {:?}",
        harness.upstream_paths()
    );
    response.json()
}

fn discovered(path: &'static str, oidc: bool) -> Options {
    Options {
        discovered: Some(Discovered {
            path,
            oidc,
            claimed_issuer: None,
            introspection_endpoint: None,
        }),
        ..Options::default()
    }
}

#[tokio::test]
async fn smart_configuration_comes_from_the_issuers_metadata_over_tls_and_is_never_forwarded() {
    let options = Options {
        jwks_tls: true,
        ..discovered("/tenant/a", false)
    };
    let harness = Harness::with(options).await;
    let id = harness.issuer_id.clone();
    assert!(id.starts_with("https://localhost:"), "{id}");
    let document = assert_document(&harness, &harness.client().get(SMART).await);
    assert_eq!(document["issuer"], id.as_str());
    assert_eq!(
        document["authorization_endpoint"],
        format!("{id}/authorize")
    );
    assert_eq!(document["token_endpoint"], format!("{id}/token"));
    assert_eq!(document["revocation_endpoint"], format!("{id}/revoke"));
    assert!(
        document["jwks_uri"]
            .as_str()
            .unwrap()
            .ends_with("/.well-known/jwks.json")
    );
    assert_eq!(
        document["grant_types_supported"],
        json!(["authorization_code", "client_credentials"])
    );
    assert_eq!(
        document["code_challenge_methods_supported"],
        json!(["S256"])
    );
    // The harness policy names scopes but has no SMART rule.
    assert_eq!(document["capabilities"], json!([]));
    assert_eq!(
        document["scopes_supported"],
        json!([
            "patient/Patient.r",
            "system/Observation.rs",
            "system/Patient.r",
            "user/Observation.c",
            "user/Observation.r",
            "user/Observation.rs",
            "user/Patient.r"
        ])
    );
    assert_eq!(
        document["dpop_signing_alg_values_supported"],
        json!(["ES256", "PS256", "EdDSA"])
    );
    assert!(document.get("x-not-passed-on").is_none());
    // HEAD answers the same head; other methods are 405 with Allow, never forwarded.
    let client = harness.client();
    let head = client.send(Method::HEAD, SMART, &[], Bytes::new()).await;
    assert_eq!(head.status, 200);
    assert!(head.body.is_empty());
    let post = client.send(Method::POST, SMART, &[], Bytes::new()).await;
    assert_eq!(post.status, 405);
    assert_eq!(post.headers["allow"], "GET, HEAD");
    assert_eq!(post.json()["resourceType"], "OperationOutcome");
    // A spelling that does not normalise is the decision chain's to refuse, never forwarded.
    let again = client
        .get("/Patient/../.well-known/smart-configuration")
        .await;
    assert_eq!(again.status, 400, "{}", again.text());
    assert!(harness.upstream.received().is_empty());
}

#[tokio::test]
async fn operator_overrides_win_and_an_unreachable_issuer_leaves_what_phigate_knows() {
    // The harness's issuer, https://as-a.test, serves no metadata anywhere.
    let options = Options {
        extra: "discovery:\n  resource_name: Test FHIR\n  smart_configuration:\n    capabilities: [launch-standalone, permission-v2]\n    token_endpoint: \"https://as.example.org/token\"\n    custom: {nested: [1, true]}\n".into(),
        ..Options::default()
    };
    let harness = Harness::with(options).await;
    harness
        .eventually_metric(
            "phigate_issuer_metadata_fetch_failures_total{issuer=\"https://as-a.test\"}",
            1.0,
        )
        .await;
    let document = assert_document(&harness, &harness.client().get(SMART).await);
    assert_eq!(
        document["capabilities"],
        json!(["launch-standalone", "permission-v2"])
    );
    assert_eq!(document["token_endpoint"], "https://as.example.org/token");
    assert_eq!(document["custom"], json!({"nested": [1, true]}));
    assert!(document.get("issuer").is_none(), "{document}");
    assert!(document["scopes_supported"].is_array());
}

#[tokio::test]
async fn protected_resource_metadata_names_the_configured_resource_whatever_the_host() {
    let options = Options {
        client_auth: Some("optional"),
        extra: "discovery:\n  resource: \"https://fhir.example.org/r4\"\n  resource_name: Example FHIR\n  resource_documentation: \"https://fhir.example.org/docs\"\n".into(),
        ..Options::default()
    };
    let harness = Harness::with(options).await;
    let client = harness.client();
    let path = "/.well-known/oauth-protected-resource/r4";
    let spoofed = client
        .send(Method::GET, path, &[("host", "evil.example")], Bytes::new())
        .await;
    // A second Host is refused by the hygiene; either way the answer names no other server.
    assert!(
        !spoofed.text().contains("evil.example"),
        "{}",
        spoofed.text()
    );
    let document = assert_document(&harness, &client.get(path).await);
    assert_eq!(
        document,
        json!({
            "resource": "https://fhir.example.org/r4",
            "authorization_servers": ["https://as-a.test"],
            "scopes_supported": [
                "patient/Patient.r",
                "system/Observation.rs",
                "system/Patient.r",
                "user/Observation.c",
                "user/Observation.r",
                "user/Observation.rs",
                "user/Patient.r"
            ],
            "bearer_methods_supported": ["header"],
            "dpop_signing_alg_values_supported": ["ES256", "PS256", "EdDSA"],
            "dpop_bound_access_tokens_required": false,
            "tls_client_certificate_bound_access_tokens": true,
            "resource_name": "Example FHIR",
            "resource_documentation": "https://fhir.example.org/docs",
        })
    );
    // The smart configuration also answers under the resource's path.
    assert_document(
        &harness,
        &client.get("/r4/.well-known/smart-configuration").await,
    );
    // Other protected-resource paths are 404 here, never forwarded (RFC 9728 §3.3).
    for other in [
        "/.well-known/oauth-protected-resource",
        "/.well-known/oauth-protected-resource/other",
    ] {
        let response = client.get(other).await;
        assert_eq!(response.status, 404, "{other}");
        assert_eq!(response.json()["resourceType"], "OperationOutcome");
    }
    let missing = client.get("/Patient/123").await;
    assert_eq!(missing.status, 401);
    assert_eq!(
        missing.headers["www-authenticate"],
        "Bearer realm=\"phigate\", resource_metadata=\"https://fhir.example.org/.well-known/oauth-protected-resource/r4\""
    );
    assert!(harness.upstream.received().is_empty());
}

#[tokio::test]
async fn every_kind_of_401_names_the_resource_metadata() {
    let harness = Harness::start().await;
    let client = harness.client();
    // The default resource is the single audience, whose metadata answers at the root.
    let document = assert_document(
        &harness,
        &client.get("/.well-known/oauth-protected-resource").await,
    );
    assert_eq!(document["resource"], AUDIENCE);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let mut expired = harness.claims("patient/Patient.r");
    expired["iat"] = json!(now - 900);
    expired["exp"] = json!(now - 600);
    let expired = harness.mint(&expired);
    let bound = {
        let key = phigate::demo::DpopKey::generate().unwrap();
        let mut claims = harness.claims("patient/Patient.r");
        claims["cnf"] = json!({"jkt": key.thumbprint()});
        harness.mint(&claims)
    };
    let cases: [(&str, String); 5] = [
        ("missing token", String::new()),
        ("bad token", "Bearer not.a.token".into()),
        ("expired", format!("Bearer {expired}")),
        ("dpop without proof", format!("DPoP {bound}")),
        ("dpop-bound token as bearer", format!("Bearer {bound}")),
    ];
    let param = format!("resource_metadata=\"{RESOURCE_METADATA}\"");
    for (case, authorization) in &cases {
        let headers: Vec<(&str, &str)> = if authorization.is_empty() {
            vec![]
        } else {
            vec![("authorization", authorization.as_str())]
        };
        let response = client
            .send(Method::GET, "/Patient/123", &headers, Bytes::new())
            .await;
        assert_eq!(response.status, 401, "{case}: {}", response.text());
        let challenges: Vec<&str> = response
            .headers
            .get_all("www-authenticate")
            .iter()
            .map(|v| v.to_str().unwrap())
            .collect();
        assert!(!challenges.is_empty(), "{case}");
        assert!(
            challenges.iter().all(|c| c.ends_with(&param)),
            "{case}: {challenges:?}"
        );
        assert_no_leak(&response, &[&expired, &bound]);
    }
    assert!(harness.upstream.received().is_empty());
}

/// A gateway whose issuer is named by `path` under the test issuer, after a read its token
/// was allowed (so the keys were found through the metadata).
async fn served_with_discovered_keys(path: &'static str, oidc: bool) -> Harness {
    let harness = Harness::with(discovered(path, oidc)).await;
    let token = harness.token("patient/Patient.r");
    let response = harness
        .client()
        .get_with_token("/Patient/123", &token)
        .await;
    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(harness.upstream_paths().len(), 1);
    harness
}

#[tokio::test]
async fn an_issuer_named_by_identifier_is_discovered_through_rfc_8414_path_insertion() {
    let harness = served_with_discovered_keys("/tenant/a", false).await;
    assert!(harness.issuer.metadata_fetch_count() >= 1);
}

#[tokio::test]
async fn oidc_discovery_is_the_fallback() {
    let harness = served_with_discovered_keys("/realms/x", true).await;
    // RFC 8414 first (404 here), then OIDC.
    assert!(harness.issuer.metadata_fetch_count() >= 2);
}

#[tokio::test]
async fn metadata_naming_another_issuer_is_refused_and_its_tokens_get_503() {
    let options = Options {
        discovered: Some(Discovered {
            path: "/tenant/a",
            oidc: false,
            claimed_issuer: Some("https://attacker.example".into()),
            introspection_endpoint: None,
        }),
        wait_ready: false,
        ..Options::default()
    };
    let harness = Harness::with(options).await;
    let series = format!(
        "phigate_issuer_metadata_fetch_failures_total{{issuer=\"{}\"}}",
        harness.issuer_id
    );
    harness.eventually_metric(&series, 1.0).await;
    let token = harness.token("patient/Patient.r");
    let response = harness
        .client()
        .get_with_token("/Patient/123", &token)
        .await;
    assert_eq!(response.status, 503, "{}", response.text());
    assert!(response.headers.get("www-authenticate").is_none());
    assert_no_leak(&response, &[&token]);
    assert!(harness.upstream.received().is_empty());
    // No key was ever fetched from the URL the refused document named.
    assert_eq!(harness.issuer.fetch_count(), 0);
    assert_ne!(harness.admin_get("/readyz").await.0, 200);
    // The SMART configuration answers without the refused issuer's members.
    let document = assert_document(&harness, &harness.client().get(SMART).await);
    assert!(document.get("token_endpoint").is_none(), "{document}");
}

#[tokio::test]
async fn metadata_is_revalidated_by_etag_and_keys_keep_working() {
    let options = Options {
        tokens: "  clock_skew: 30s\n  max_lifetime: 15m\n  jwks_cache_ttl: 1s\n",
        ..discovered("", false)
    };
    // Set before the first fetch, so the first lifetime is already the 1 s floor.
    let issuer = DevIssuer::start(([127, 0, 0, 1], 0).into(), ISSUER)
        .await
        .unwrap();
    issuer.set_cache_max_age(0);
    let harness = Harness::with_issuer(options, issuer).await;
    eventually(Duration::from_secs(30), || async {
        harness.issuer.metadata_not_modified_count() >= 1
    })
    .await;
    let token = harness.token("patient/Patient.r");
    eventually_status(&harness.client(), "/Patient/123", &token, 200).await;
    let series = format!(
        "phigate_issuer_metadata_age_seconds{{issuer=\"{}\"}}",
        harness.issuer_id
    );
    let (_, metrics) = harness.admin_get("/metrics").await;
    assert!(metrics.contains(&series), "{metrics}");
}
