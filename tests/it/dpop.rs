//! DPoP end to end (RFC 9449): a valid proof, a missing proof, proofs for another URI or host,
//! a proof by another key than the token's, and replays — on one gateway and across two
//! gateway processes sharing a Redis replay store; a DPoP-bound token sent as `Bearer`; and
//! what `upstream.forward_token` passes on for each scheme.

use bytes::Bytes;
use http::Method;
use serde_json::json;

use crate::support::dpop::DpopKey;
use crate::support::{Harness, Options, PUBLIC_BASE, TestClient, assert_denied, assert_no_leak};

const PROOF_CHALLENGE: &str = "DPoP realm=\"phigate\", error=\"invalid_dpop_proof\", algs=\"ES256 PS256 EdDSA\", resource_metadata=\"https://fhir.test/.well-known/oauth-protected-resource\"";
const TOKEN_CHALLENGE: &str = "DPoP realm=\"phigate\", error=\"invalid_token\", algs=\"ES256 PS256 EdDSA\", resource_metadata=\"https://fhir.test/.well-known/oauth-protected-resource\"";

fn bound_token(harness: &Harness, key: &DpopKey) -> String {
    let mut claims = harness.claims("user/Patient.r");
    claims["cnf"] = json!({"jkt": key.thumbprint()});
    harness.mint(&claims)
}

async fn send(
    client: &TestClient,
    token: &str,
    proof: Option<&str>,
    extra: &[(&str, &str)],
) -> crate::support::TestResponse {
    let authorization = format!("DPoP {token}");
    let mut headers = vec![("authorization", authorization.as_str())];
    if let Some(proof) = proof {
        headers.push(("dpop", proof));
    }
    headers.extend_from_slice(extra);
    client
        .send(Method::GET, "/Patient/123", &headers, Bytes::new())
        .await
}

#[tokio::test]
async fn a_valid_proof_is_accepted_once() {
    let harness = Harness::start().await;
    let key = DpopKey::generate();
    let token = bound_token(&harness, &key);
    let proof = key.proof("GET", &format!("{PUBLIC_BASE}/Patient/123"), &token);
    let client = harness.client();
    let response = send(&client, &token, Some(&proof), &[]).await;
    assert_eq!(response.status, 200, "{}", response.text());
    assert!(
        harness.upstream.received()[0].header("dpop").is_none(),
        "the proof is not forwarded"
    );
    harness.upstream.clear_received();
    let replay = send(&client, &token, Some(&proof), &[]).await;
    assert_denied(&harness, &replay, 401, Some(PROOF_CHALLENGE));
    assert_no_leak(&replay, &[&token, &proof]);
    // A fresh proof works again; so does a query or a differently cased scheme/host in htu.
    let proof = key.proof(
        "GET",
        &format!(
            "{}/Patient/123?x=1#f",
            PUBLIC_BASE.to_uppercase().replace("HTTPS", "https")
        ),
        &token,
    );
    assert_eq!(send(&client, &token, Some(&proof), &[]).await.status, 200);
}

#[tokio::test]
async fn proofs_that_do_not_fit_are_invalid_dpop_proofs() {
    let harness = Harness::start().await;
    let key = DpopKey::generate();
    let token = bound_token(&harness, &key);
    let client = harness.client();
    let response = send(&client, &token, None, &[]).await;
    assert_denied(&harness, &response, 401, Some(PROOF_CHALLENGE));
    for htu in [
        "https://gw.test:8443/Patient/456",
        "https://evil.test/Patient/123",
        "http://gw.test:8443/Patient/123",
        "https://other-rs.test/Patient/123",
    ] {
        let proof = key.proof("GET", htu, &token);
        let response = send(&client, &token, Some(&proof), &[("host", "evil.test")]).await;
        assert_denied(&harness, &response, 401, Some(PROOF_CHALLENGE));
    }
    let post = key.proof("POST", &format!("{PUBLIC_BASE}/Patient/123"), &token);
    assert_denied(
        &harness,
        &send(&client, &token, Some(&post), &[]).await,
        401,
        Some(PROOF_CHALLENGE),
    );
    let other_token = key.proof(
        "GET",
        &format!("{PUBLIC_BASE}/Patient/123"),
        "another-token",
    );
    assert_denied(
        &harness,
        &send(&client, &token, Some(&other_token), &[]).await,
        401,
        Some(PROOF_CHALLENGE),
    );
    let mut private = key.jwk.clone();
    private["d"] = json!("AAAA");
    let claims = json!({"jti": "x", "htm": "GET", "htu": format!("{PUBLIC_BASE}/Patient/123"), "iat": 0, "ath": "x"});
    let leaky = key.sign(
        &json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": private}),
        &claims,
    );
    let response = send(&client, &token, Some(&leaky), &[]).await;
    assert_denied(&harness, &response, 401, Some(PROOF_CHALLENGE));
    assert_no_leak(&response, &["AAAA", &leaky]);
}

#[tokio::test]
async fn a_proof_by_another_key_or_an_unbound_token_is_an_invalid_token() {
    let harness = Harness::start().await;
    let (bound_key, other_key) = (DpopKey::generate(), DpopKey::generate());
    let token = bound_token(&harness, &bound_key);
    let proof = other_key.proof("GET", &format!("{PUBLIC_BASE}/Patient/123"), &token);
    let client = harness.client();
    assert_denied(
        &harness,
        &send(&client, &token, Some(&proof), &[]).await,
        401,
        Some(TOKEN_CHALLENGE),
    );
    // A token that fails verification under the DPoP scheme gets the DPoP challenge too.
    let mut expired = harness.claims("user/Patient.r");
    expired["exp"] = json!(expired["iat"].as_i64().unwrap() - 100);
    let expired = harness.mint(&expired);
    let proof = bound_key.proof("GET", &format!("{PUBLIC_BASE}/Patient/123"), &expired);
    assert_denied(
        &harness,
        &send(&client, &expired, Some(&proof), &[]).await,
        401,
        Some(TOKEN_CHALLENGE),
    );
    let unbound = harness.token("user/Patient.r");
    let proof = bound_key.proof("GET", &format!("{PUBLIC_BASE}/Patient/123"), &unbound);
    assert_denied(
        &harness,
        &send(&client, &unbound, Some(&proof), &[]).await,
        401,
        Some(TOKEN_CHALLENGE),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proof_replayed_to_another_gateway_sharing_redis_is_refused() {
    let options = Options {
        extra: "dpop:\n  replay_redis: \"redis://127.0.0.1:6379/\"\n".into(),
        ..Options::default()
    };
    let harness = Harness::with(options).await;
    let (child, addr) = crate::support::spawn_binary_gateway(&harness.config_file).await;
    let other = TestClient::new(addr, &harness.ca, None, false);
    let key = DpopKey::generate();
    let token = bound_token(&harness, &key);
    let proof = key.proof("GET", &format!("{PUBLIC_BASE}/Patient/123"), &token);
    assert_eq!(
        send(&harness.client(), &token, Some(&proof), &[])
            .await
            .status,
        200
    );
    let replayed = send(&other, &token, Some(&proof), &[]).await;
    assert_eq!(replayed.status, 401, "{}", replayed.text());
    assert_eq!(replayed.headers["www-authenticate"], PROOF_CHALLENGE);
    let fresh = key.proof("GET", &format!("{PUBLIC_BASE}/Patient/123"), &token);
    assert_eq!(send(&other, &token, Some(&fresh), &[]).await.status, 200);
    crate::support::stop_binary_gateway(child).await;
}

#[tokio::test]
async fn rules_can_demand_dpop() {
    let policy = "rules:\n  - name: dpop-read\n    methods: [GET]\n    path: /Patient/{id}\n    scopes: [user/Patient.r]\n    require_binding: dpop\n";
    let harness = Harness::with(Options {
        policy: policy.into(),
        ..Options::default()
    })
    .await;
    let key = DpopKey::generate();
    let token = bound_token(&harness, &key);
    let proof = key.proof("GET", &format!("{PUBLIC_BASE}/Patient/123"), &token);
    assert_eq!(
        send(&harness.client(), &token, Some(&proof), &[])
            .await
            .status,
        200
    );
    harness.upstream.clear_received();
    let plain = harness.token("user/Patient.r");
    let response = harness
        .client()
        .get_with_token("/Patient/123", &plain)
        .await;
    assert_denied(
        &harness,
        &response,
        401,
        Some(crate::support::INVALID_TOKEN),
    );
}

#[tokio::test]
async fn server_nonces_are_demanded_and_honoured() {
    let harness = Harness::with(Options {
        extra: "dpop:\n  nonce: true\n".into(),
        ..Options::default()
    })
    .await;
    let key = DpopKey::generate();
    let token = bound_token(&harness, &key);
    let htu = format!("{PUBLIC_BASE}/Patient/123");
    let client = harness.client();
    let response = send(&client, &token, Some(&key.proof("GET", &htu, &token)), &[]).await;
    assert_denied(
        &harness,
        &response,
        401,
        Some(
            "DPoP realm=\"phigate\", error=\"use_dpop_nonce\", algs=\"ES256 PS256 EdDSA\", resource_metadata=\"https://fhir.test/.well-known/oauth-protected-resource\"",
        ),
    );
    let nonce = response.headers["dpop-nonce"].to_str().unwrap().to_owned();
    let forged = key.proof_with_nonce("GET", &htu, &token, Some("123.forged"));
    assert_eq!(send(&client, &token, Some(&forged), &[]).await.status, 401);
    let proof = key.proof_with_nonce("GET", &htu, &token, Some(&nonce));
    assert_eq!(send(&client, &token, Some(&proof), &[]).await.status, 200);
}

/// Every `WWW-Authenticate` field of a response, in order.
fn challenges(response: &crate::support::TestResponse) -> Vec<&str> {
    response
        .headers
        .get_all("www-authenticate")
        .iter()
        .map(|value| value.to_str().unwrap())
        .collect()
}

#[tokio::test]
async fn a_dpop_bound_token_sent_as_bearer_gets_both_challenges() {
    let harness = Harness::start().await;
    let key = DpopKey::generate();
    let token = bound_token(&harness, &key);
    let proof = key.proof("GET", &format!("{PUBLIC_BASE}/Patient/123"), &token);
    let client = harness.client();
    let bearer = format!("Bearer {token}");
    // With or without a proof beside it, and over HTTP/2 too: the scheme is what is wrong.
    for (client, headers) in [
        (&client, vec![("authorization", bearer.as_str())]),
        (
            &client,
            vec![("authorization", bearer.as_str()), ("dpop", proof.as_str())],
        ),
        (
            &harness.h2_client(),
            vec![("authorization", bearer.as_str())],
        ),
    ] {
        let response = client
            .send(Method::GET, "/Patient/123", &headers, Bytes::new())
            .await;
        assert_denied(
            &harness,
            &response,
            401,
            Some(crate::support::INVALID_TOKEN),
        );
        assert_eq!(
            challenges(&response),
            [crate::support::INVALID_TOKEN, TOKEN_CHALLENGE],
            "RFC 9449 §7.2: a Bearer and a DPoP challenge"
        );
        assert_no_leak(&response, &[&token, &proof, &key.thumbprint()]);
    }
    let (_, metrics) = harness.admin_get("/metrics").await;
    assert!(
        metrics.contains("reason=\"binding_dpop_required\"} 3"),
        "{metrics}"
    );
    // The same token with its scheme and proof is fine.
    assert_eq!(send(&client, &token, Some(&proof), &[]).await.status, 200);
}

#[tokio::test]
async fn forward_token_keeps_the_dpop_scheme_and_proof() {
    for forward_token in [true, false] {
        let harness = Harness::with(Options {
            forward_token,
            ..Options::default()
        })
        .await;
        let key = DpopKey::generate();
        let token = bound_token(&harness, &key);
        let proof = key.proof("GET", &format!("{PUBLIC_BASE}/Patient/123"), &token);
        let client = harness.client();
        let response = send(&client, &token, Some(&proof), &[]).await;
        assert_eq!(response.status, 200, "{}", response.text());
        // A bearer token with a stray proof beside it: the proof is never forwarded.
        let bearer = harness.token("user/Patient.r");
        let stray = key.proof("GET", &format!("{PUBLIC_BASE}/Patient/123"), &bearer);
        let response = client
            .send(
                Method::GET,
                "/Patient/123",
                &[
                    ("authorization", &format!("Bearer {bearer}")),
                    ("dpop", &stray),
                ],
                Bytes::new(),
            )
            .await;
        assert_eq!(response.status, 200, "{}", response.text());
        let received = harness.upstream.received();
        let (dpop, plain) = (&received[0], &received[1]);
        let values = |request: &phigate::demo::ReceivedRequest, name: &str| -> Vec<String> {
            request.header_values(name).map(str::to_owned).collect()
        };
        if forward_token {
            assert_eq!(values(dpop, "authorization"), [format!("DPoP {token}")]);
            assert_eq!(values(dpop, "dpop"), [proof.as_str()]);
            assert_eq!(values(plain, "authorization"), [format!("Bearer {bearer}")]);
            assert!(values(plain, "dpop").is_empty());
        } else {
            for request in [dpop, plain] {
                assert!(values(request, "authorization").is_empty());
                assert!(values(request, "dpop").is_empty());
            }
        }
    }
}

/// A Redis server of this test's own on `port`, which the test can stop and start again.
fn private_redis(port: u16) -> std::process::Child {
    std::process::Command::new("redis-server")
        .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
        .args(["--save", "", "--appendonly", "no"])
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("redis-server (.ci/run installs it)")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_store_outage_trips_the_breaker_and_fails_closed_until_it_is_back() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut redis = private_redis(port);
    let harness = Harness::with(Options {
        extra: format!("dpop:\n  replay_redis: \"redis://127.0.0.1:{port}/\"\n"),
        ..Options::default()
    })
    .await;
    let client = harness.client();
    let key = DpopKey::generate();
    let token = bound_token(&harness, &key);
    let fresh = || key.proof("GET", &format!("{PUBLIC_BASE}/Patient/123"), &token);
    crate::support::eventually(std::time::Duration::from_secs(15), || async {
        send(&client, &token, Some(&fresh()), &[]).await.status == 200
    })
    .await;
    let circuit = "phigate_circuit_open{dependency=\"dpop_replay_store\",issuer=\"\"} ";
    let open = || async {
        let (_, metrics) = harness.admin_get("/metrics").await;
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(circuit))
            .map(str::to_owned)
    };
    assert_eq!(open().await.as_deref(), Some("0"));
    redis.kill().unwrap();
    redis.wait().unwrap();
    harness.upstream.clear_received();
    // A replay phigate cannot rule out is refused; after five failures without a wait.
    for _ in 0..6 {
        let proof = fresh();
        let response = send(&client, &token, Some(&proof), &[]).await;
        assert_denied(&harness, &response, 503, None);
        assert_no_leak(&response, &[&token, &proof]);
    }
    assert_eq!(open().await.as_deref(), Some("1"));
    let mut redis = private_redis(port);
    crate::support::eventually(std::time::Duration::from_secs(30), || async {
        send(&client, &token, Some(&fresh()), &[]).await.status == 200
    })
    .await;
    assert_eq!(open().await.as_deref(), Some("0"));
    redis.kill().unwrap();
    redis.wait().unwrap();
}

/// `dpop.algorithms` narrows what a proof may be signed with: an ES256 proof is refused where
/// only PS256 is listed, the challenge names PS256 alone, and so does the SMART configuration.
#[tokio::test]
async fn configured_algorithms_decide_proofs_challenges_and_discovery() {
    let harness = Harness::with(Options {
        extra: "dpop:\n  algorithms: [PS256]\n".into(),
        ..Options::default()
    })
    .await;
    let key = DpopKey::generate();
    let token = bound_token(&harness, &key);
    let proof = key.proof("GET", &format!("{PUBLIC_BASE}/Patient/123"), &token);
    let response = send(&harness.client(), &token, Some(&proof), &[]).await;
    assert_denied(
        &harness,
        &response,
        401,
        Some(
            "DPoP realm=\"phigate\", error=\"invalid_dpop_proof\", algs=\"PS256\", resource_metadata=\"https://fhir.test/.well-known/oauth-protected-resource\"",
        ),
    );
    let smart = harness
        .client()
        .get("/.well-known/smart-configuration")
        .await;
    assert_eq!(smart.status, 200);
    assert_eq!(
        smart.json()["dpop_signing_alg_values_supported"],
        json!(["PS256"])
    );
}
