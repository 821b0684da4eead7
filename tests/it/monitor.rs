//! Monitoring and automatic response end to end: a detector fed by decision records fires, its
//! actions write the block list, and the decision chain then refuses what was blocked — with
//! nothing reaching the upstream. Waits are on events (the firing counted on `/metrics`), never
//! on timings.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use serde_json::json;

use crate::support::{
    Harness, INVALID_TOKEN, Options, POLICY, assert_denied, assert_no_leak, break_glass_policy,
    country_database, eventually, get_patient_allowed,
};

/// A gateway whose repeated-failures detector fires at 3 failures and takes `actions`.
async fn repeated_failures(actions: &str) -> Harness {
    Harness::with(Options {
        extra: format!(
            "monitor:\n  repeated_failures:\n    threshold: 3\n    window: 60s\n    actions:\n{actions}"
        ),
        ..Options::default()
    })
    .await
}

/// Waits for `detector` to fire on the token, its client and its subject, then checks that the
/// token is refused without being echoed.
pub async fn fired_on_token_client_and_subject_then_blocked(
    harness: &Harness,
    detector: &str,
    token: &str,
) {
    let fired = format!("phigate_detector_firings_total{{detector=\"{detector}\"}} 3");
    wait_metric(harness, &fired).await;
    let response = harness.client().get_with_token("/Patient/123", token).await;
    assert_eq!(response.status, 403);
    assert_no_leak(&response, &[token]);
}

/// Waits until `/metrics` shows the series `line` (name, labels and value).
pub async fn wait_metric(harness: &Harness, line: &str) {
    eventually(Duration::from_secs(15), || async {
        harness
            .admin_get("/metrics")
            .await
            .1
            .lines()
            .any(|l| l == line)
    })
    .await;
}

/// A local HTTP endpoint that records every request body, refusing the first `failures` with 503.
struct Recorder {
    addr: SocketAddr,
    bodies: Arc<Mutex<Vec<Bytes>>>,
}

impl Recorder {
    async fn start(failures: usize) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let bodies = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::clone(&bodies);
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let seen = Arc::clone(&seen);
                let service = service_fn(move |request: http::Request<hyper::body::Incoming>| {
                    let seen = Arc::clone(&seen);
                    async move {
                        let body = request.into_body().collect().await.unwrap().to_bytes();
                        let count = {
                            let mut seen = seen.lock().unwrap();
                            seen.push(body);
                            seen.len()
                        };
                        let status = if count <= failures { 503 } else { 200 };
                        let response = http::Response::builder()
                            .status(status)
                            .body(Full::new(Bytes::new()))
                            .unwrap();
                        Ok::<_, Infallible>(response)
                    }
                });
                crate::support::serve_connection(stream, service);
            }
        });
        Self { addr, bodies }
    }

    fn bodies(&self) -> Vec<Bytes> {
        self.bodies.lock().unwrap().clone()
    }
}

/// The SMART policy: every FHIR request is classified, so reads name their resource.
const SMART_POLICY: &str = include_str!("../../policies/smart-v2.yaml");

/// The Redis every shared test uses.
const REDIS: &str = "redis://127.0.0.1:6379";

/// A fresh key prefix on the test Redis, whose keys are deleted when the test ends, however it
/// ends (shared rate buckets outlive a test by a dozen intervals).
struct RedisPrefix(String);

impl RedisPrefix {
    fn new() -> Self {
        Self(format!("phigate:test:{}", uuid::Uuid::new_v4()))
    }

    /// The `monitor:` keys that share the monitor's state through Redis under this prefix.
    fn monitor(&self) -> String {
        format!("monitor:\n  redis: {REDIS}\n  redis_prefix: {}\n", self.0)
    }

    /// Waits until the shared count `key` (after the counts prefix; a `*` matches an interval
    /// number), read by `command` (`GET`, `SCARD`), reads `expected`.
    async fn wait_count(&self, command: &str, key: &str, expected: u64) {
        let redis = redis::Client::open(REDIS).unwrap();
        let redis = redis.get_multiplexed_async_connection().await.unwrap();
        let pattern = format!("{}-counts:{key}", self.0);
        eventually(Duration::from_secs(15), || {
            let (mut redis, pattern) = (redis.clone(), pattern.clone());
            async move {
                let keys: Vec<String> = redis::cmd("KEYS")
                    .arg(&pattern)
                    .query_async(&mut redis)
                    .await
                    .unwrap();
                let mut total = 0;
                for key in keys {
                    let count: u64 = redis::cmd(command)
                        .arg(&key)
                        .query_async(&mut redis)
                        .await
                        .unwrap();
                    total += count;
                }
                total == expected
            }
        })
        .await;
    }
}

impl Drop for RedisPrefix {
    fn drop(&mut self) {
        let Ok(mut redis) = redis::Client::open(REDIS).and_then(|c| c.get_connection()) else {
            return;
        };
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(format!("{}*", self.0))
            .query(&mut redis)
            .unwrap_or_default();
        if !keys.is_empty() {
            let _ = redis::cmd("DEL").arg(keys).query::<()>(&mut redis);
        }
    }
}

/// Two gateways under `policy`, sharing one issuer (so one token is valid at both) and, under
/// `prefix`, one Redis; both run `detectors` (`monitor:` keys, indented).
async fn two_gateways_sharing(
    prefix: &RedisPrefix,
    policy: &str,
    detectors: &str,
) -> (Harness, Harness) {
    let options = || Options {
        policy: policy.to_owned(),
        extra: format!("{}{detectors}", prefix.monitor()),
        ..Options::default()
    };
    let first = Harness::with(options()).await;
    let second = Harness::with_issuer(options(), first.issuer.clone()).await;
    (first, second)
}

/// Checks that `harness` now refuses `token` as blocked, with nothing reaching its upstream.
async fn refused_as_blocked(harness: &Harness, token: &str) {
    crate::support::eventually_status(&harness.client(), "/Patient/123", token, 403).await;
    harness.upstream.clear_received();
    let response = harness.client().get_with_token("/Patient/123", token).await;
    assert_denied(harness, &response, 403, None);
    assert_no_leak(&response, &[token]);
    let (_, metrics) = harness.admin_get("/metrics").await;
    assert!(
        metrics.contains("decision=\"deny\",reason=\"blocked\"} "),
        "{metrics}"
    );
}

const FIRED_ONCE: &str = "phigate_detector_firings_total{detector=\"repeated_failures\"} 1";

#[tokio::test]
async fn repeated_failures_block_the_address_and_then_refuse_a_valid_token_as_blocked() {
    let harness = repeated_failures("      block: 10m\n").await;
    // Every series is there before anything fires, so an alert rule sees the first firing.
    let (_, metrics) = harness.admin_get("/metrics").await;
    for line in [
        "phigate_detector_firings_total{detector=\"repeated_failures\"} 0",
        "phigate_actions_total{action=\"block\",result=\"ok\"} 0",
        "phigate_actions_total{action=\"reauthenticate\",result=\"error\"} 0",
    ] {
        assert!(metrics.lines().any(|l| l == line), "{line} missing");
    }
    let client = harness.client();
    for _ in 0..3 {
        let response = client.get_with_token("/Patient/123", "not-a-token").await;
        assert_denied(&harness, &response, 401, Some(INVALID_TOKEN));
    }
    wait_metric(&harness, FIRED_ONCE).await;
    wait_metric(
        &harness,
        "phigate_actions_total{action=\"block\",result=\"ok\"} 1",
    )
    .await;

    let token = harness.token("user/Patient.r");
    let response = client.get_with_token("/Patient/123", &token).await;
    assert_denied(&harness, &response, 403, None);
    assert_no_leak(&response, &[&token, "127.0.0.1"]);
    // A blocked address is refused even where no token is needed.
    assert_denied(&harness, &client.get("/metadata").await, 403, None);
    let (_, metrics) = harness.admin_get("/metrics").await;
    assert!(
        metrics.contains("decision=\"deny\",reason=\"blocked\"} "),
        "{metrics}"
    );
}

#[tokio::test]
async fn reauthentication_refuses_older_tokens_and_accepts_newer_ones() {
    let harness = repeated_failures("      reauthenticate: true\n").await;
    let client = harness.client();
    // The token verifies, so its failures count against its client as well as the address.
    let wrong_scope = harness.token("user/Observation.r");
    for _ in 0..3 {
        let response = client.get_with_token("/Patient/123", &wrong_scope).await;
        assert_eq!(response.status, 403);
    }
    wait_metric(
        &harness,
        "phigate_actions_total{action=\"reauthenticate\",result=\"ok\"} 1",
    )
    .await;

    // P-05: issued before the cut-off refused, without `iat` refused, after it allowed.
    let now = harness.claims("x")["iat"].as_i64().unwrap();
    let mint = |iat: Option<i64>| {
        let mut claims = harness.claims("user/Patient.r");
        match iat {
            Some(iat) => claims["iat"] = json!(iat),
            None => drop(claims.as_object_mut().unwrap().remove("iat")),
        }
        harness.mint(&claims)
    };
    for token in [mint(Some(now - 5)), mint(None)] {
        let response = client.get_with_token("/Patient/123", &token).await;
        assert_denied(&harness, &response, 401, Some(INVALID_TOKEN));
        assert_no_leak(&response, &[&token]);
    }
    // Tokens carry whole seconds, so "after the cut-off" is the next second.
    let newer = mint(Some(now + 1));
    assert_eq!(
        client.get_with_token("/Patient/123", &newer).await.status,
        200
    );
    // The address was never blocked: only re-authentication was asked for.
    assert_eq!(client.get("/metadata").await.status, 200);
}

#[tokio::test]
async fn a_revoked_token_presented_again_blocks_its_client() {
    let issuer =
        phigate::demo::DevIssuer::start(([127, 0, 0, 1], 0).into(), crate::support::ISSUER)
            .await
            .unwrap();
    let claims = issuer.standard_claims(
        "u-1",
        "app-1",
        "user/Patient.r",
        crate::support::AUDIENCE,
        Duration::from_secs(300),
    );
    let revoked = issuer.mint(&claims);
    let list = json!({"version": 1, "entries": [{"jti": claims["jti"], "exp": claims["exp"]}]});
    let harness = Harness::with_issuer(
        Options {
            revocation: "revocation:\n  sources:\n    - file: revoked.json\n".into(),
            files: vec![("revoked.json", list.to_string())],
            extra: "monitor:\n  refused_token_reuse:\n    threshold: 3\n    actions:\n      block: 10m\n"
                .into(),
            ..Options::default()
        },
        issuer,
    )
    .await;
    let client = harness.client();
    for _ in 0..3 {
        let response = client.get_with_token("/Patient/123", &revoked).await;
        assert_denied(&harness, &response, 401, Some(INVALID_TOKEN));
    }
    // The token and its client fire together.
    wait_metric(
        &harness,
        "phigate_detector_firings_total{detector=\"refused_token_reuse\"} 2",
    )
    .await;
    let fresh = harness.token("user/Patient.r");
    let response = client.get_with_token("/Patient/123", &fresh).await;
    assert_denied(&harness, &response, 403, None);
    assert_no_leak(&response, &[&fresh, &revoked]);
    // Another client of the same address is not affected.
    let mut other = harness.claims("user/Patient.r");
    other["client_id"] = json!("app-2");
    let other = harness.mint(&other);
    assert_eq!(
        client.get_with_token("/Patient/123", &other).await.status,
        200
    );
}

#[tokio::test]
async fn the_alert_webhook_receives_the_event_after_a_retry_and_never_the_token() {
    // The first delivery is refused, so the event arrives only through a retry.
    let webhook = Recorder::start(1).await;
    let harness = Harness::with(Options {
        extra: format!(
            "monitor:\n  alert:\n    webhook: http://{}/alerts\n    retries: 2\n  repeated_failures:\n    threshold: 2\n    actions:\n      alert: true\n      block: 1m\n",
            webhook.addr
        ),
        ..Options::default()
    })
    .await;
    let client = harness.client();
    let wrong_scope = harness.token("user/Observation.r");
    for _ in 0..2 {
        assert_eq!(
            client
                .get_with_token("/Patient/123", &wrong_scope)
                .await
                .status,
            403
        );
    }
    // The address and the client each fire once: two events, the first delivered on a retry.
    wait_metric(
        &harness,
        "phigate_actions_total{action=\"alert\",result=\"ok\"} 2",
    )
    .await;
    let bodies = webhook.bodies();
    assert_eq!(
        bodies.len(),
        3,
        "one refused attempt and two deliveries expected"
    );
    assert_eq!(bodies[0], bodies[1], "the retry resends the same event");
    let events: Vec<serde_json::Value> = bodies
        .iter()
        .map(|body| serde_json::from_slice(body).unwrap())
        .collect();
    let kinds: Vec<&str> = events[1..]
        .iter()
        .map(|e| e["key"]["kind"].as_str().unwrap())
        .collect();
    assert!(
        kinds.contains(&"address") && kinds.contains(&"client"),
        "{events:?}"
    );
    for event in &events {
        assert_eq!(event["detector"], "repeated_failures");
        assert_eq!(event["actions"], json!(["log", "block"]));
        let text = event.to_string();
        assert!(!text.contains(&wrong_scope), "the event carries the token");
    }
}

#[tokio::test]
async fn a_traffic_spike_over_the_ceiling_fires_for_token_client_and_subject() {
    let harness = Harness::with(Options {
        extra: "monitor:\n  traffic_spike:\n    interval: 1h\n    ceiling: 5\n    actions:\n      block: 10m\n".into(),
        ..Options::default()
    })
    .await;
    let client = harness.client();
    let token = harness.token("user/Patient.r");
    for _ in 0..6 {
        assert_eq!(
            client.get_with_token("/Patient/123", &token).await.status,
            200
        );
    }
    fired_on_token_client_and_subject_then_blocked(&harness, "traffic_spike", &token).await;
}

#[tokio::test]
async fn reading_many_distinct_resources_fires_bulk_access() {
    let harness = Harness::with(Options {
        policy: SMART_POLICY.to_owned(),
        extra: "monitor:\n  bulk_access:\n    threshold: 3\n    window: 1h\n    actions:\n      block: 10m\n".into(),
        ..Options::default()
    })
    .await;
    let client = harness.client();
    let token = harness.token("user/Patient.r");
    // Reading the same resource again is not more data.
    for id in ["123", "123", "456", "456"] {
        let path = format!("/Patient/{id}");
        assert_ne!(client.get_with_token(&path, &token).await.status, 403);
    }
    let (_, metrics) = harness.admin_get("/metrics").await;
    assert!(metrics.contains("phigate_detector_firings_total{detector=\"bulk_access\"} 0"));
    client.get_with_token("/Patient/789", &token).await;
    fired_on_token_client_and_subject_then_blocked(&harness, "bulk_access", &token).await;
}

#[tokio::test]
async fn with_redis_a_block_made_on_one_gateway_is_enforced_by_another() {
    let shared = format!(
        "  redis: redis://127.0.0.1:6379\n  redis_prefix: phigate:test:{}\n",
        uuid::Uuid::new_v4()
    );
    let detecting = Harness::with(Options {
        extra: format!(
            "monitor:\n{shared}  repeated_failures:\n    threshold: 2\n    actions:\n      block: 10m\n"
        ),
        ..Options::default()
    })
    .await;
    // The second gateway runs no detector: it only enforces what is shared.
    let enforcing = Harness::with(Options {
        extra: format!("monitor:\n{shared}"),
        ..Options::default()
    })
    .await;
    let (first, second) = (detecting.client(), enforcing.client());
    for _ in 0..2 {
        let response = first.get_with_token("/Patient/123", "not-a-token").await;
        assert_eq!(response.status, 401);
    }
    // A bad token never reaches the upstream; once the block arrives it is refused as blocked.
    crate::support::eventually_status(&second, "/Patient/123", "not-a-token", 403).await;
    let token = enforcing.token("user/Patient.r");
    let response = second.get_with_token("/Patient/123", &token).await;
    assert_denied(&enforcing, &response, 403, None);
    assert_no_leak(&response, &[&token]);
    // A replica started after the block was published reads it from Redis (reconcile).
    let late = Harness::with(Options {
        extra: format!("monitor:\n{shared}"),
        ..Options::default()
    })
    .await;
    crate::support::eventually_status(&late.client(), "/Patient/123", "not-a-token", 403).await;
}

#[tokio::test]
async fn a_revoke_action_refuses_the_token_at_once_and_revokes_it_at_the_server_once() {
    let endpoint = Recorder::start(0).await;
    let harness = Harness::with(Options {
        policy: SMART_POLICY.to_owned(),
        files: vec![("revoke-secret", "s3cret\n".to_owned())],
        extra: format!(
            "monitor:\n  revoke:\n    endpoint: http://{}/revoke\n    client_id: phigate\n    client_secret_file: revoke-secret\n  bulk_access:\n    threshold: 1\n    window: 1h\n    actions:\n      revoke: true\n  refused_token_reuse:\n    threshold: 1\n    actions:\n      revoke: true\n",
            endpoint.addr
        ),
        ..Options::default()
    })
    .await;
    let client = harness.client();
    let token = harness.token("user/Patient.r");
    assert_eq!(
        client.get_with_token("/Patient/123", &token).await.status,
        200
    );
    // The first read fires (threshold 1) for the token, its client and its subject; the token's
    // firing revokes it, and phigate itself refuses it from then on, as a revoked token.
    crate::support::eventually_status(&client, "/Patient/2", &token, 401).await;
    harness.upstream.clear_received();
    let response = client.get_with_token("/Patient/3", &token).await;
    assert_denied(&harness, &response, 401, Some(INVALID_TOKEN));
    assert_no_leak(&response, &[&token]);
    let (_, metrics) = harness.admin_get("/metrics").await;
    assert!(
        metrics
            .lines()
            .any(|line| line.starts_with("phigate_decisions_total{")
                && line.contains("reason=\"revoked\"")
                && !line.ends_with(" 0")),
        "the refusals are counted as revoked"
    );
    // P-03: each refused presentation fires refused_token_reuse on the jti, whose revoke action
    // runs again — and is neither sent nor counted a second time.
    harness
        .eventually_metric(
            "phigate_detector_firings_total{detector=\"refused_token_reuse\"}",
            2.0,
        )
        .await;
    wait_metric(
        &harness,
        "phigate_actions_total{action=\"revoke\",result=\"ok\"} 1",
    )
    .await;
    let bodies = endpoint.bodies();
    assert_eq!(bodies.len(), 1, "one RFC 7009 call per jti");
    let form = String::from_utf8(bodies[0].to_vec()).unwrap();
    assert_eq!(form, format!("token={token}&token_type_hint=access_token"));
    // Another token of the same client and subject is not revoked.
    let fresh = harness.token("user/Patient.r");
    assert_eq!(
        client.get_with_token("/Patient/123", &fresh).await.status,
        200
    );
}

#[tokio::test]
async fn with_redis_failures_on_two_gateways_add_up_to_one_threshold() {
    let prefix = RedisPrefix::new();
    let detectors = "  repeated_failures:\n    threshold: 4\n    actions:\n      block: 10m\n";
    let (first, second) = two_gateways_sharing(&prefix, POLICY, detectors).await;
    // Two failures on each: neither gateway alone reaches 4, together they do. The shared
    // count is awaited after each pair, so the second gateway's are the third and fourth.
    for (harness, count) in [(&first, 2), (&second, 4)] {
        let client = harness.client();
        for _ in 0..2 {
            let response = client.get_with_token("/Patient/123", "not-a-token").await;
            assert_eq!(response.status, 401);
        }
        let key = "count:repeated_failures:address:127.0.0.1";
        prefix.wait_count("GET", key, count).await;
    }
    wait_metric(&second, FIRED_ONCE).await;
    let token = first.token("user/Patient.r");
    crate::support::eventually_status(&first.client(), "/Patient/123", "not-a-token", 403).await;
    let response = first.client().get_with_token("/Patient/123", &token).await;
    assert_denied(&first, &response, 403, None);
}

#[tokio::test]
async fn with_redis_a_traffic_spike_split_across_two_gateways_fires_once_and_blocks_on_both() {
    let prefix = RedisPrefix::new();
    // Intervals are numbered from the epoch; 1000 days keep every request in one of them.
    let detectors =
        "  traffic_spike:\n    interval: 1000d\n    ceiling: 5\n    actions:\n      block: 10m\n";
    let (first, second) = two_gateways_sharing(&prefix, POLICY, detectors).await;
    let token = first.token("user/Patient.r");
    let subject = first.claims("")["sub"].as_str().unwrap().to_owned();
    // Three requests on each: neither gateway alone passes the ceiling of 5, together they do.
    // The subject is counted last for each request, so its count says all were counted.
    for (harness, count) in [(&first, 3), (&second, 6)] {
        for _ in 0..3 {
            let response = harness
                .client()
                .get_with_token("/Patient/123", &token)
                .await;
            assert_eq!(response.status, 200);
        }
        let key = format!("rate:subject:{subject}:*");
        prefix.wait_count("GET", &key, count).await;
    }
    // Only the gateway whose count crossed fires, once for each of token, client and subject.
    wait_metric(
        &second,
        "phigate_detector_firings_total{detector=\"traffic_spike\"} 3",
    )
    .await;
    let (_, metrics) = first.admin_get("/metrics").await;
    let quiet = "phigate_detector_firings_total{detector=\"traffic_spike\"} 0";
    assert!(metrics.lines().any(|l| l == quiet), "{metrics}");
    refused_as_blocked(&second, &token).await;
    refused_as_blocked(&first, &token).await;
}

#[tokio::test]
async fn with_redis_distinct_reads_split_across_two_gateways_fire_bulk_access() {
    let prefix = RedisPrefix::new();
    let detectors =
        "  bulk_access:\n    threshold: 3\n    window: 1h\n    actions:\n      block: 10m\n";
    let (first, second) = two_gateways_sharing(&prefix, SMART_POLICY, detectors).await;
    let token = first.token("user/Patient.r");
    let subject = first.claims("")["sub"].as_str().unwrap().to_owned();
    for id in ["123", "456"] {
        let response = first
            .client()
            .get_with_token(&format!("/Patient/{id}"), &token)
            .await;
        assert_ne!(response.status, 403);
    }
    let key = format!("distinct:subject:{subject}");
    prefix.wait_count("SCARD", &key, 2).await;
    // 456 again is no more data; 789 is the third distinct resource across both gateways.
    for id in ["456", "789"] {
        let response = second
            .client()
            .get_with_token(&format!("/Patient/{id}"), &token)
            .await;
        assert_ne!(response.status, 403);
    }
    wait_metric(
        &second,
        "phigate_detector_firings_total{detector=\"bulk_access\"} 3",
    )
    .await;
    let (_, metrics) = first.admin_get("/metrics").await;
    let quiet = "phigate_detector_firings_total{detector=\"bulk_access\"} 0";
    assert!(metrics.lines().any(|l| l == quiet), "{metrics}");
    // Firing empties each key's set: the next window starts from nothing.
    prefix.wait_count("SCARD", "distinct:*", 0).await;
    refused_as_blocked(&second, &token).await;
    refused_as_blocked(&first, &token).await;
}

#[tokio::test]
async fn with_redis_everything_and_export_calls_reaching_operations_fire_bulk_access() {
    let prefix = RedisPrefix::new();
    let detectors =
        "  bulk_access:\n    operations: 3\n    window: 1h\n    actions:\n      block: 10m\n";
    let (first, second) = two_gateways_sharing(&prefix, SMART_POLICY, detectors).await;
    let token = first.token("system/*.rs");
    let subject = first.claims("")["sub"].as_str().unwrap().to_owned();
    // Two whole patient records on one gateway, far below the distinct-resource threshold.
    for id in ["123", "456"] {
        let path = format!("/Patient/{id}/$everything");
        let response = first.client().get_with_token(&path, &token).await;
        assert_ne!(response.status, 403, "{}", response.text());
    }
    let key = format!("count:bulk_access:subject:{subject}");
    prefix.wait_count("GET", &key, 2).await;
    let (_, metrics) = second.admin_get("/metrics").await;
    let quiet = "phigate_detector_firings_total{detector=\"bulk_access\"} 0";
    assert!(metrics.lines().any(|l| l == quiet), "{metrics}");
    // A Bulk Data kick-off on the other gateway is the third operation.
    let kick_off = second.client().get_with_token("/$export", &token).await;
    assert_eq!(kick_off.status, 202, "{}", kick_off.text());
    wait_metric(
        &second,
        "phigate_detector_firings_total{detector=\"bulk_access\"} 3",
    )
    .await;
    refused_as_blocked(&second, &token).await;
    refused_as_blocked(&first, &token).await;
}

#[tokio::test]
async fn spoofed_forwarded_addresses_never_split_or_redirect_the_count() {
    // P-01: no trusted proxies, so every failure counts against the TCP peer, whatever
    // X-Forwarded-For claims; three different claimed addresses still make one offender.
    let harness = repeated_failures("      block: 10m\n").await;
    let client = harness.client();
    for spoofed in ["198.51.100.1", "203.0.113.9", "192.0.2.44"] {
        let response = client
            .send(
                http::Method::GET,
                "/Patient/123",
                &[
                    ("authorization", "Bearer not-a-token"),
                    ("x-forwarded-for", spoofed),
                ],
                Bytes::new(),
            )
            .await;
        assert_eq!(response.status, 401);
    }
    wait_metric(&harness, FIRED_ONCE).await;
    let token = harness.token("user/Patient.r");
    let response = client.get_with_token("/Patient/123", &token).await;
    assert_denied(&harness, &response, 403, None);
}

#[tokio::test]
async fn forwarded_for_countries_never_trigger_a_geo_finding() {
    // P-01: one token from one socket, claiming a different country on every request.
    let geo = tempfile::tempdir().unwrap();
    let database = country_database(geo.path());
    let harness = Harness::with(Options {
        extra: format!(
            "monitor:\n  geoip: {}\n  new_country:\n    actions:\n      block: 10m\n  traffic_spike:\n    interval: 1h\n    ceiling: 20\n",
            database.display()
        ),
        ..Options::default()
    })
    .await;
    let client = harness.client();
    let token = harness.token("user/Patient.r");
    let bearer = format!("Bearer {token}");
    for n in 0..20 {
        let spoofed = if n % 2 == 0 {
            "198.51.100.7"
        } else {
            "203.0.113.7"
        };
        let headers = [
            ("authorization", bearer.as_str()),
            ("x-forwarded-for", spoofed),
        ];
        let response = client
            .send(http::Method::GET, "/Patient/123", &headers, Bytes::new())
            .await;
        assert_eq!(response.status, 200);
    }
    // The 21st request fires the spike detector: every record before it has been looked at.
    assert_eq!(
        client.get_with_token("/Patient/123", &token).await.status,
        200
    );
    wait_metric(
        &harness,
        "phigate_detector_firings_total{detector=\"traffic_spike\"} 3",
    )
    .await;
    let (_, metrics) = harness.admin_get("/metrics").await;
    assert!(
        metrics
            .lines()
            .any(|l| l == "phigate_detector_firings_total{detector=\"new_country\"} 0"),
        "{metrics}"
    );
    assert_eq!(
        client.get_with_token("/Patient/123", &token).await.status,
        200
    );
}

#[tokio::test]
async fn a_break_glass_grant_is_alerted_at_once_without_the_token_or_justification() {
    let webhook = Recorder::start(0).await;
    let harness = Harness::with(Options {
        policy: break_glass_policy(),
        extra: format!(
            "monitor:\n  alert:\n    webhook: http://{}/alerts\n",
            webhook.addr
        ),
        ..Options::default()
    })
    .await;
    let token = harness.token("phigate/break-glass");
    get_patient_allowed(&harness, &token, ("x-break-glass-reason", "ED bay 2")).await;
    wait_metric(
        &harness,
        "phigate_actions_total{action=\"alert\",result=\"ok\"} 1",
    )
    .await;
    let bodies = webhook.bodies();
    assert_eq!(bodies.len(), 1);
    let event: serde_json::Value = serde_json::from_slice(&bodies[0]).unwrap();
    assert_eq!(event["detector"], "break_glass", "{event}");
    assert_eq!(event["key"]["kind"], "subject", "{event}");
    let text = event.to_string();
    assert!(!text.contains(&token) && !text.contains("ED bay"), "{text}");
    let (_, metrics) = harness.admin_get("/metrics").await;
    assert!(
        metrics.contains("phigate_detector_firings_total{detector=\"break_glass\"} 1"),
        "{metrics}"
    );
}

/// K-03 with a trusted proxy (`listen.trusted_proxies`, here the loopback the tests connect
/// from): the client is the right-most address of `X-Forwarded-For` the proxy did not write.
/// Its failures block it and only it — another client behind the same proxy is still served —
/// and the upstream sees the believed chain followed by the proxy, never a spoofed entry.
#[tokio::test]
async fn behind_a_trusted_proxy_the_forwarded_client_is_counted_and_blocked() {
    let harness = Harness::with(Options {
        listen_extra: "  trusted_proxies: [\"127.0.0.0/8\"]\n".into(),
        extra: "monitor:\n  repeated_failures:\n    threshold: 3\n    window: 60s\n    actions:\n      block: 10m\n".into(),
        ..Options::default()
    })
    .await;
    let client = harness.client();
    let send = |forwarded: &'static str, authorization: String| {
        let client = &client;
        async move {
            client
                .send(
                    http::Method::GET,
                    "/Patient/123",
                    &[
                        ("authorization", authorization.as_str()),
                        ("x-forwarded-for", forwarded),
                    ],
                    Bytes::new(),
                )
                .await
        }
    };
    // The offender, with a spoofed entry of its own on the left that must count for nothing.
    for _ in 0..3 {
        let response = send("192.0.2.77, 198.51.100.7", "Bearer not-a-token".into()).await;
        assert_eq!(response.status, 401);
    }
    wait_metric(&harness, FIRED_ONCE).await;
    let token = harness.token("user/Patient.r");
    let blocked = send("198.51.100.7", format!("Bearer {token}")).await;
    assert_denied(&harness, &blocked, 403, None);
    // Another client behind the same proxy, and the spoofed address itself, are served.
    for other in ["203.0.113.9", "192.0.2.77"] {
        harness.upstream.clear_received();
        let served = send(other, format!("Bearer {token}")).await;
        assert_eq!(served.status, 200, "{other}: {}", served.text());
        let received = &harness.upstream.received()[0];
        let forwarded: Vec<&str> = received.header_values("x-forwarded-for").collect();
        assert_eq!(forwarded, [format!("{other}, 127.0.0.1")]);
    }
}

/// A connection through a layer-4 load balancer sending the PROXY protocol: `header`, then TLS,
/// then one HTTP/1.1 request for `/Patient/123` with `authorization`: the status (`None` when
/// phigate closed the connection before answering), and the connection, still open.
async fn through_balancer(
    harness: &Harness,
    header: &[u8],
    authorization: &str,
) -> (
    Option<u16>,
    Option<tokio_rustls::client::TlsStream<tokio::net::TcpStream>>,
) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut tcp = tokio::net::TcpStream::connect(harness.addr())
        .await
        .unwrap();
    tcp.write_all(header).await.unwrap();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(crate::support::client::tls_config(
        &harness.ca,
        None,
    )));
    let server_name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let Ok(mut tls) = connector.connect(server_name, tcp).await else {
        return (None, None);
    };
    let request = format!(
        "GET /Patient/123 HTTP/1.1\r\nHost: localhost\r\nAuthorization: {authorization}\r\n\r\n"
    );
    if tls.write_all(request.as_bytes()).await.is_err() {
        return (None, None);
    }
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match tls.read(&mut byte).await {
            Ok(1) => head.push(byte[0]),
            _ => return (None, None),
        }
    }
    let status = String::from_utf8_lossy(&head[9..12]).parse().ok();
    (status, Some(tls))
}

/// The loopback the tests connect from, as a trusted layer-4 balancer sending PROXY headers.
const BALANCER: &str = "  trusted_proxies: [\"127.0.0.1\"]\n  proxy_protocol: true\n";

fn proxy_v2(command: ppp::v2::Command, source: &str) -> Vec<u8> {
    let addresses = (
        source.parse::<SocketAddr>().unwrap(),
        "127.0.0.1:8443".parse::<SocketAddr>().unwrap(),
    );
    ppp::v2::Builder::with_addresses(
        ppp::v2::Version::Two | command,
        ppp::v2::Protocol::Stream,
        addresses,
    )
    .build()
    .unwrap()
}

/// `listen.proxy_protocol`: behind a layer-4 load balancer (trusted, here the loopback), each
/// connection is held to the client its PROXY header (version 1 or 2) announces — the upstream
/// is told that address, failures block that client and no other, and the per-address cap
/// counts each client, not the balancer. A header-less connection from the balancer is closed
/// before TLS; a `LOCAL` header (a health check) is the balancer itself.
#[tokio::test]
async fn behind_a_proxy_protocol_balancer_each_connection_is_its_announced_client() {
    let harness = Harness::with(Options {
        listen_extra: BALANCER.into(),
        extra: "monitor:\n  repeated_failures:\n    threshold: 3\n    window: 60s\n    actions:\n      block: 10m\n".into(),
        ..Options::default()
    })
    .await;
    let token = format!("Bearer {}", harness.token("user/Patient.r"));
    let forwarded_for = |harness: &Harness| -> Vec<String> {
        harness
            .upstream
            .received()
            .iter()
            .map(|r| {
                r.header_values("x-forwarded-for")
                    .collect::<Vec<_>>()
                    .join(",")
            })
            .collect()
    };

    let v1 = b"PROXY TCP4 203.0.113.7 127.0.0.1 51234 8443\r\n";
    assert_eq!(through_balancer(&harness, v1, &token).await.0, Some(200));
    assert_eq!(forwarded_for(&harness), ["203.0.113.7"]);

    // Three failures from one announced client block it, and only it.
    let offender = proxy_v2(ppp::v2::Command::Proxy, "198.51.100.7:40000");
    for _ in 0..3 {
        let (status, _) = through_balancer(&harness, &offender, "Bearer not-a-token").await;
        assert_eq!(status, Some(401));
    }
    wait_metric(&harness, FIRED_ONCE).await;
    assert_eq!(
        through_balancer(&harness, &offender, &token).await.0,
        Some(403)
    );
    assert_eq!(through_balancer(&harness, v1, &token).await.0, Some(200));

    // A health check from the balancer itself.
    harness.upstream.clear_received();
    let local = proxy_v2(ppp::v2::Command::Local, "127.0.0.1:40004");
    assert_eq!(
        through_balancer(&harness, &local, &token).await.0,
        Some(200)
    );
    assert_eq!(forwarded_for(&harness), ["127.0.0.1"]);

    // No header, or a malformed one: closed, counted, nothing forwarded.
    harness.upstream.clear_received();
    for header in [&b""[..], b"PROXY TCP4 nonsense\r\n"] {
        assert_eq!(through_balancer(&harness, header, &token).await.0, None);
    }
    assert!(harness.upstream.received().is_empty());
    wait_metric(
        &harness,
        "phigate_connections_closed_total{reason=\"proxy_header_invalid\"} 2",
    )
    .await;
}

/// `listen.max_connections_per_address` behind a PROXY protocol balancer counts each announced
/// client: a second connection of a client with one open is closed, another client's is served,
/// though all of them come from the balancer's one address. A connection that sends no header
/// at all is closed at `listen.handshake_timeout`.
#[tokio::test]
async fn behind_a_proxy_protocol_balancer_the_per_address_cap_counts_each_client() {
    let harness = Harness::with(Options {
        listen_extra: format!(
            "{BALANCER}  max_connections_per_address: 1\n  handshake_timeout: 1s\n"
        ),
        ..Options::default()
    })
    .await;
    let token = format!("Bearer {}", harness.token("user/Patient.r"));
    let first = proxy_v2(ppp::v2::Command::Proxy, "203.0.113.50:40001");
    let (status, held) = through_balancer(&harness, &first, &token).await;
    assert_eq!(status, Some(200));
    assert!(held.is_some());
    let again = proxy_v2(ppp::v2::Command::Proxy, "203.0.113.50:40002");
    assert_eq!(through_balancer(&harness, &again, &token).await.0, None);
    let other = proxy_v2(ppp::v2::Command::Proxy, "203.0.113.51:40003");
    assert_eq!(
        through_balancer(&harness, &other, &token).await.0,
        Some(200)
    );
    wait_metric(
        &harness,
        "phigate_connections_closed_total{reason=\"address_over_capacity\"} 1",
    )
    .await;
    drop(held);

    let mut silent = tokio::net::TcpStream::connect(harness.addr())
        .await
        .unwrap();
    wait_metric(
        &harness,
        "phigate_connections_closed_total{reason=\"proxy_header_timeout\"} 1",
    )
    .await;
    let mut byte = [0u8; 1];
    use tokio::io::AsyncReadExt as _;
    assert_eq!(
        silent.read(&mut byte).await.unwrap_or(0),
        0,
        "closed by phigate"
    );
}
