//! RFC 7662 introspection against a real endpoint: opaque tokens, `introspect: always` rules,
//! result caching that never caches a decision, revocation beating a cached answer, fail-closed
//! behaviour when the endpoint fails, and a launch patient learned from introspection.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use serde_json::{Value, json};

use crate::support::dpop::DpopKey;
use crate::support::{
    AUDIENCE, Discovered, Harness, INVALID_TOKEN, ISSUER, Options, PUBLIC_BASE, assert_denied,
    assert_no_leak,
};
use crate::token_cache::cache_hits;

const SECRET: &str = "s3cret-of-the-gateway";

/// An introspection endpoint answering from a table, requiring phigate's Basic credentials.
#[derive(Clone)]
struct Endpoint {
    addr: SocketAddr,
    answers: Arc<Mutex<HashMap<String, (u16, String)>>>,
    calls: Arc<Mutex<u64>>,
}

impl Endpoint {
    async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = Self {
            addr: listener.local_addr().unwrap(),
            answers: Arc::default(),
            calls: Arc::default(),
        };
        let served = endpoint.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let served = served.clone();
                let service = service_fn(move |request: http::Request<hyper::body::Incoming>| {
                    let served = served.clone();
                    async move {
                        *served.calls.lock().unwrap() += 1;
                        let expected =
                            format!("Basic {}", base64_std(&format!("phigate:{SECRET}")));
                        let authorised = request
                            .headers()
                            .get("authorization")
                            .is_some_and(|v| v == expected.as_str());
                        let body = request.into_body().collect().await.unwrap().to_bytes();
                        let form = String::from_utf8_lossy(&body).into_owned();
                        let token = form
                            .split('&')
                            .find_map(|p| p.strip_prefix("token="))
                            .unwrap_or_default()
                            .to_owned();
                        let (status, text) = if authorised {
                            served
                                .answers
                                .lock()
                                .unwrap()
                                .get(&token)
                                .cloned()
                                .unwrap_or((200, r#"{"active":false}"#.into()))
                        } else {
                            (401, r#"{"error":"invalid_client"}"#.into())
                        };
                        let response = http::Response::builder()
                            .status(status)
                            .header("content-type", "application/json")
                            .body(Full::new(Bytes::from(text)))
                            .unwrap();
                        Ok::<_, Infallible>(response)
                    }
                });
                crate::support::serve_connection(stream, service);
            }
        });
        endpoint
    }

    fn answer(&self, token: &str, status: u16, body: Value) {
        self.answers
            .lock()
            .unwrap()
            .insert(token.to_owned(), (status, body.to_string()));
    }

    fn calls(&self) -> u64 {
        *self.calls.lock().unwrap()
    }
}

fn base64_std(text: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(text)
}

fn options(endpoint: &Endpoint, policy: Option<&str>, extra: &str) -> Options {
    Options {
        issuer_extra: format!(
            "    introspection:\n      endpoint: \"http://{}/introspect\"\n      client_id: phigate\n      client_secret_file: introspection.secret\n      negative_cache_ttl: 1s\n{extra}",
            endpoint.addr
        ),
        files: vec![("introspection.secret", format!("{SECRET}\n"))],
        policy: policy.map_or_else(|| crate::support::POLICY.to_owned(), str::to_owned),
        ..Options::default()
    }
}

fn active(scope: &str) -> Value {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    json!({"active": true, "iss": ISSUER, "aud": AUDIENCE, "scope": scope, "client_id": "app-1", "sub": "u-1", "jti": "opaque-1", "exp": now + 300, "iat": now})
}

#[tokio::test]
async fn opaque_tokens_are_introspected_and_the_result_cached_not_the_decision() {
    let endpoint = Endpoint::start().await;
    let harness = Harness::with(options(&endpoint, None, "")).await;
    let opaque = "opaque-token-value-0123456789";
    endpoint.answer(opaque, 200, active("user/Patient.r"));
    let client = harness.client();
    assert_eq!(
        client.get_with_token("/Patient/123", opaque).await.status,
        200
    );
    assert_eq!(
        client.get_with_token("/Patient/123", opaque).await.status,
        200
    );
    assert_eq!(endpoint.calls(), 1, "the active result is cached");
    // E-05: the cached result is re-evaluated per request; a rule needing another scope refuses.
    let response = client.get_with_token("/Observation/o-1", opaque).await;
    assert_eq!(response.status, 403);
    assert_eq!(harness.upstream.received().len(), 2);
    assert!(
        harness.upstream.received()[0]
            .header("authorization")
            .is_none()
    );
}

#[tokio::test]
async fn inactive_and_insane_answers_are_invalid_tokens() {
    let endpoint = Endpoint::start().await;
    let harness = Harness::with(options(&endpoint, None, "")).await;
    let mut expired = active("user/Patient.r");
    expired["exp"] = json!(1_000_000_000);
    let mut foreign_audience = active("user/Patient.r");
    foreign_audience["aud"] = json!("https://other.test");
    let mut dpop = active("user/Patient.r");
    dpop["token_type"] = json!("DPoP");
    let cases = [
        ("inactive-token-00000001", json!({"active": false})),
        ("string-true-token-000001", json!({"active": "true"})),
        ("expired-token-0000000001", expired),
        ("foreign-audience-0000001", foreign_audience),
        ("dpop-as-bearer-000000001", dpop),
    ];
    for (token, answer) in cases {
        endpoint.answer(token, 200, answer);
        let response = harness.client().get_with_token("/Patient/123", token).await;
        assert_denied(&harness, &response, 401, Some(INVALID_TOKEN));
        assert_no_leak(&response, &[token]);
    }
    // Answers phigate cannot trust are the endpoint's failure, not the token's: 503.
    endpoint.answer("broken-endpoint-00000001", 500, json!({}));
    let response = harness
        .client()
        .get_with_token("/Patient/123", "broken-endpoint-00000001")
        .await;
    assert_denied(&harness, &response, 503, None);
}

#[tokio::test]
async fn rules_can_demand_introspection_and_revocation_beats_the_cache() {
    let endpoint = Endpoint::start().await;
    let policy = "rules:\n  - name: live-read\n    methods: [GET]\n    path: /Patient/{id}\n    scopes: [user/Patient.r]\n    introspect: always\n";
    let mut options = options(&endpoint, Some(policy), "");
    options.revocation = "revocation:\n  sources:\n    - file: revoked.json\n      interval: 500ms\n      max_stale: 10s\n".into();
    options
        .files
        .push(("revoked.json", r#"{"version": 1, "entries": []}"#.into()));
    let harness = Harness::with(options).await;
    let claims = harness.claims("user/Patient.r");
    let jwt = harness.mint(&claims);
    // The JWT verifies, but the server says it is no longer active.
    let response = harness.client().get_with_token("/Patient/123", &jwt).await;
    assert_denied(&harness, &response, 401, Some(INVALID_TOKEN));
    endpoint.answer(&jwt, 200, active("user/Patient.r"));
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    assert_eq!(
        harness
            .client()
            .get_with_token("/Patient/123", &jwt)
            .await
            .status,
        200
    );
    let entry = json!({"version": 1, "entries": [{"jti": claims["jti"], "exp": claims["exp"]}]});
    std::fs::write(harness.dir.path().join("revoked.json"), entry.to_string()).unwrap();
    for _ in 0..50 {
        if harness
            .client()
            .get_with_token("/Patient/123", &jwt)
            .await
            .status
            == 401
        {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("the revoked token kept its cached introspection result");
}

#[tokio::test]
async fn a_cached_token_is_refused_once_introspection_says_inactive() {
    let endpoint = Endpoint::start().await;
    let policy = "rules:\n  - name: live-read\n    methods: [GET]\n    path: /Patient/{id}\n    scopes: [user/Patient.r]\n    introspect: always\n";
    // No reuse of introspection results: every request asks the server.
    let harness = Harness::with(options(&endpoint, Some(policy), "      cache_ttl: 0s\n")).await;
    let jwt = harness.token("user/Patient.r");
    endpoint.answer(&jwt, 200, active("user/Patient.r"));
    let client = harness.client();
    for _ in 0..2 {
        assert_eq!(
            client.get_with_token("/Patient/123", &jwt).await.status,
            200
        );
    }
    // The token is revoked at the server (RFC 7009); introspection now says so.
    endpoint.answer(&jwt, 200, json!({"active": false}));
    harness.upstream.clear_received();
    let hits = cache_hits(&harness).await;
    let response = client.get_with_token("/Patient/123", &jwt).await;
    // The verified-token cache answered, and introspection, which runs after it, refused.
    assert_eq!(cache_hits(&harness).await, hits + 1);
    assert_denied(&harness, &response, 401, Some(INVALID_TOKEN));
    assert_no_leak(&response, &[&jwt]);
    assert_eq!(endpoint.calls(), 3);
}

#[tokio::test]
async fn a_launch_patient_can_come_from_introspection() {
    let endpoint = Endpoint::start().await;
    let policy = include_str!("../../policies/smart-v2.yaml");
    let harness = Harness::with(options(
        &endpoint,
        Some(policy),
        "      resolve_patient: true\n",
    ))
    .await;
    let token = harness.token("launch/patient patient/Patient.r");
    // Without a patient anywhere, a patient/ scope is refused, never unrestricted.
    endpoint.answer(&token, 200, active("launch/patient patient/Patient.r"));
    let response = harness
        .client()
        .get_with_token("/Patient/123", &token)
        .await;
    assert_eq!(response.status, 403);
    let mut answer = active("launch/patient patient/Patient.r");
    answer["patient"] = json!("123");
    endpoint.answer(&token, 200, answer);
    // The first (patient-less) result is cached up to cache_ttl; a fresh token sees the new answer.
    let token = harness.token("launch/patient patient/Patient.r");
    let mut answer = active("launch/patient patient/Patient.r");
    answer["patient"] = json!("123");
    endpoint.answer(&token, 200, answer);
    assert_eq!(
        harness
            .client()
            .get_with_token("/Patient/123", &token)
            .await
            .status,
        200
    );
    assert_eq!(
        harness
            .client()
            .get_with_token("/Patient/456", &token)
            .await
            .status,
        403
    );
}

#[tokio::test]
async fn a_launch_patient_from_introspection_must_be_one_fhir_id() {
    let endpoint = Endpoint::start().await;
    let policy = include_str!("../../policies/smart-v2.yaml");
    let harness = Harness::with(options(
        &endpoint,
        Some(policy),
        "      resolve_patient: true\n",
    ))
    .await;
    for (i, patient) in [
        json!("123,456"),
        json!("Patient/123"),
        json!("123/../456"),
        json!("123 "),
        json!("a".repeat(65)),
        json!(""),
        json!(123),
    ]
    .into_iter()
    .enumerate()
    {
        let mut answer = active("launch/patient patient/Patient.r");
        answer["patient"] = patient;
        // A JWT lacking the patient, completed by introspection, and an opaque token.
        let jwt = harness.token("launch/patient patient/Patient.r");
        let opaque = format!("opaque-patient-case-{i:04}-0123456789");
        for token in [jwt.as_str(), opaque.as_str()] {
            endpoint.answer(token, 200, answer.clone());
            let response = harness.client().get_with_token("/Patient/123", token).await;
            assert_denied(&harness, &response, 401, Some(INVALID_TOKEN));
            assert_no_leak(&response, &[token, "u-1", "app-1"]);
        }
    }
}

#[tokio::test]
async fn an_opaque_dpop_token_needs_its_scheme_and_proof() {
    let endpoint = Endpoint::start().await;
    let harness = Harness::with(options(&endpoint, None, "")).await;
    let key = DpopKey::generate();
    let opaque = "opaque-dpop-bound-token-0123456789";
    let mut answer = active("user/Patient.r");
    answer["token_type"] = json!("DPoP");
    answer["cnf"] = json!({"jkt": key.thumbprint()});
    endpoint.answer(opaque, 200, answer);
    let response = harness
        .client()
        .get_with_token("/Patient/123", opaque)
        .await;
    assert_denied(&harness, &response, 401, Some(INVALID_TOKEN));
    let challenges: Vec<_> = response
        .headers
        .get_all("www-authenticate")
        .iter()
        .collect();
    assert_eq!(
        challenges,
        [
            INVALID_TOKEN,
            "DPoP realm=\"phigate\", error=\"invalid_token\", algs=\"ES256 PS256 EdDSA\", resource_metadata=\"https://fhir.test/.well-known/oauth-protected-resource\""
        ]
    );
    assert_no_leak(&response, &[opaque]);
    let proof = key.proof("GET", &format!("{PUBLIC_BASE}/Patient/123"), opaque);
    let authorization = format!("DPoP {opaque}");
    let response = harness
        .client()
        .send(
            http::Method::GET,
            "/Patient/123",
            &[("authorization", &authorization), ("dpop", &proof)],
            Bytes::new(),
        )
        .await;
    assert_eq!(response.status, 200, "{}", response.text());
}

#[tokio::test]
async fn a_failing_endpoint_trips_the_breaker_and_a_probe_closes_it_once_it_answers() {
    let endpoint = Endpoint::start().await;
    let harness = Harness::with(options(&endpoint, None, "")).await;
    let circuit =
        format!("phigate_circuit_open{{dependency=\"introspection\",issuer=\"{ISSUER}\"}}");
    let gauge = |metrics: &str| {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(circuit.as_str())?.strip_prefix(' '))
            .map(str::to_owned)
    };
    assert_eq!(
        gauge(&harness.admin_get("/metrics").await.1).as_deref(),
        Some("0")
    );
    let tokens: Vec<String> = (0..8).map(|n| format!("outage-token-{n:012}")).collect();
    for token in &tokens {
        endpoint.answer(token, 500, json!({}));
    }
    let client = harness.client();
    for token in &tokens {
        let response = client.get_with_token("/Patient/123", token).await;
        assert_denied(&harness, &response, 503, None);
        assert_no_leak(&response, &[token]);
    }
    // Five failures open the breaker: the last three requests were refused without a call.
    assert_eq!(endpoint.calls(), 5);
    assert_eq!(
        gauge(&harness.admin_get("/metrics").await.1).as_deref(),
        Some("1")
    );
    // Recovered: once the cool-down is over a probe goes through, and the breaker closes.
    endpoint.answer(&tokens[0], 200, active("user/Patient.r"));
    crate::support::eventually_status(&client, "/Patient/123", &tokens[0], 200).await;
    assert_eq!(
        gauge(&harness.admin_get("/metrics").await.1).as_deref(),
        Some("0")
    );
}

/// [`options`] for an issuer named by identifier, whose metadata (claiming `claimed_issuer`,
/// or the identifier) names `endpoint`, and no `endpoint` in the configuration.
fn discovered_options(endpoint: &Endpoint, claimed_issuer: Option<&str>) -> Options {
    let configured = options(endpoint, None, "");
    let written = format!("      endpoint: \"http://{}/introspect\"\n", endpoint.addr);
    assert!(configured.issuer_extra.contains(&written));
    Options {
        discovered: Some(Discovered {
            path: "",
            oidc: false,
            claimed_issuer: claimed_issuer.map(str::to_owned),
            introspection_endpoint: Some(format!("http://{}/introspect", endpoint.addr)),
        }),
        issuer_extra: configured.issuer_extra.replace(&written, ""),
        wait_ready: claimed_issuer.is_none(),
        ..configured
    }
}

#[tokio::test]
async fn an_endpoint_left_out_is_the_one_the_issuers_metadata_names() {
    let endpoint = Endpoint::start().await;
    let harness = Harness::with(discovered_options(&endpoint, None)).await;
    let opaque = "opaque-token-value-discovered";
    let mut answer = active("user/Patient.r");
    answer["iss"] = json!(harness.issuer_id);
    endpoint.answer(opaque, 200, answer);
    let response = harness
        .client()
        .get_with_token("/Patient/123", opaque)
        .await;
    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(endpoint.calls(), 1);
}

#[tokio::test]
async fn no_believed_metadata_means_no_introspection_endpoint_and_503() {
    let endpoint = Endpoint::start().await;
    let options = discovered_options(&endpoint, Some("https://attacker.example"));
    let harness = Harness::with(options).await;
    let opaque = "opaque-token-value-refused";
    let response = harness
        .client()
        .get_with_token("/Patient/123", opaque)
        .await;
    assert_eq!(response.status, 503, "{}", response.text());
    // phigate's credentials went nowhere.
    assert_eq!(endpoint.calls(), 0);
    assert_no_leak(&response, &[opaque]);
    assert!(harness.upstream.received().is_empty());
}
