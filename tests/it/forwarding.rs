//! What reaches the upstream and what comes back: identity and forwarding headers, hop-by-hop
//! stripping, streaming bodies, HTTP/2, and upstream failures — down, slow, trickling or
//! stalling bodies, conflicting framing, and the upstream's own challenges.

use std::time::Duration;

use bytes::Bytes;
use http::Method;
use phigate::demo::UpstreamMode;

use crate::support::raw_upstream::{Answer, RawUpstream, Then};
use crate::support::{Harness, Options, assert_no_leak, within};

/// Longer than any deadline these tests configure: past it, phigate waited forever.
const GUARD: Duration = Duration::from_secs(60);

#[tokio::test]
async fn identity_and_forwarding_headers_are_phigates_own() {
    let harness = Harness::start().await;
    let token = harness.token("user/Patient.r");
    let bearer = format!("Bearer {token}");
    let response = harness
        .client()
        .send(
            Method::GET,
            "/Patient/123",
            &[
                ("authorization", &bearer),
                ("x-phigate-subject", "admin"),
                ("x-phigate-client-id", "ehr-core"),
                ("x-phigate-scopes", "system/*.cruds"),
                ("x-forwarded-for", "10.0.0.1, 8.8.8.8"),
                ("forwarded", "for=10.0.0.1;proto=http"),
                ("x-real-ip", "10.0.0.1"),
                ("x-forwarded-host", "attacker.test"),
                ("client-cert", ":AAAA:"),
                ("x-ssl-client-cert", "AAAA"),
                ("connection", "close, x-phigate-subject, x-forwarded-for"),
                ("upgrade", "h2c"),
                ("x-keep-me", "yes"),
            ],
            Bytes::new(),
        )
        .await;
    assert_eq!(response.status, 200, "{}", response.text());
    let received = &harness.upstream.received()[0];
    let values = |name: &str| {
        received
            .header_values(name)
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    assert_eq!(values("x-phigate-subject"), ["u-1"]);
    assert_eq!(values("x-phigate-client-id"), ["app-1"]);
    assert_eq!(values("x-phigate-scopes"), ["user/Patient.r"]);
    assert_eq!(values("x-phigate-subject-kind"), ["user"]);
    assert_eq!(values("x-forwarded-for"), ["127.0.0.1"]);
    assert_eq!(values("x-forwarded-proto"), ["https"]);
    assert_eq!(values("host"), [harness.upstream.local_addr().to_string()]);
    assert_eq!(values("x-keep-me"), ["yes"]);
    for absent in [
        "authorization",
        "forwarded",
        "x-real-ip",
        "x-forwarded-host",
        "client-cert",
        "x-ssl-client-cert",
        "upgrade",
    ] {
        assert!(values(absent).is_empty(), "{absent} reached the upstream");
    }
}

#[tokio::test]
async fn client_credentials_subject_is_marked_as_a_client() {
    let harness = Harness::start().await;
    let claims = harness.issuer.standard_claims(
        "svc-1",
        "svc-1",
        "system/Patient.r",
        crate::support::AUDIENCE,
        std::time::Duration::from_secs(300),
    );
    let response = harness
        .client()
        .get_with_token("/Patient/123", &harness.mint(&claims))
        .await;
    assert_eq!(response.status, 200);
    assert_eq!(
        harness.upstream.received()[0].header("x-phigate-subject-kind"),
        Some("client")
    );
}

#[tokio::test]
async fn token_is_forwarded_only_when_configured() {
    let harness = Harness::with(Options {
        forward_token: true,
        ..Options::default()
    })
    .await;
    let token = harness.token("user/Patient.r");
    let response = harness
        .client()
        .get_with_token("/Patient/123", &token)
        .await;
    assert_eq!(response.status, 200);
    let expected = format!("Bearer {token}");
    assert_eq!(
        harness.upstream.received()[0].header("authorization"),
        Some(expected.as_str())
    );
}

#[tokio::test]
async fn response_banners_and_hop_by_hop_headers_are_removed() {
    let harness = Harness::start().await;
    harness.upstream.set_mode(UpstreamMode::LeakyHeaders);
    let response = harness.client().get("/metadata").await;
    assert_eq!(response.status, 200);
    assert!(response.headers.get("server").is_none());
    assert!(response.headers.get("x-powered-by").is_none());
    harness.upstream.set_mode(UpstreamMode::HopByHopHeaders);
    let response = harness.client().get("/metadata").await;
    assert!(
        response.headers.get("x-upstream-secret").is_none(),
        "{:?}",
        response.headers
    );
    assert!(response.headers.get("keep-alive").is_none());
}

#[tokio::test]
async fn bodies_stream_both_ways_over_http1_and_http2() {
    let harness = Harness::start().await;
    let token = harness.token("user/Observation.c user/Observation.rs");
    let observation =
        r#"{"resourceType":"Observation","status":"final","subject":{"reference":"Patient/123"}}"#;
    for client in [harness.client(), harness.h2_client()] {
        let response = client
            .send(
                Method::POST,
                "/Observation",
                &[
                    ("authorization", &format!("Bearer {token}")),
                    ("content-type", "application/fhir+json"),
                ],
                Bytes::from(observation),
            )
            .await;
        assert!(
            matches!(response.status.as_u16(), 200 | 201),
            "{}: {}",
            response.status,
            response.text()
        );
    }
    let received = harness.upstream.received();
    assert_eq!(received.len(), 2);
    assert!(
        received
            .iter()
            .all(|r| r.body == observation.as_bytes() && r.path_and_query == "/fhir/Observation")
    );
}

#[tokio::test]
async fn upstream_down_is_502_and_slow_is_504() {
    let harness = Harness::with(Options {
        upstream_timeout: "1s",
        ..Options::default()
    })
    .await;
    let token = harness.token("user/Patient.r");
    harness
        .upstream
        .set_response_delay(std::time::Duration::from_secs(3));
    let response = harness
        .client()
        .get_with_token("/Patient/123", &token)
        .await;
    assert_eq!(response.status, 504);
    assert_no_leak(
        &response,
        &[&token, &harness.upstream.local_addr().to_string()],
    );
    harness
        .upstream
        .set_response_delay(std::time::Duration::ZERO);
    let upstream_addr = harness.upstream.local_addr().to_string();
    harness.upstream.shutdown();
    harness.upstream.stopped().await;
    let response = harness
        .client()
        .get_with_token("/Patient/123", &token)
        .await;
    assert_eq!(response.status, 502);
    assert_eq!(response.json()["resourceType"], "OperationOutcome");
    assert_no_leak(&response, &[&token, &upstream_addr, "127.0.0.1"]);
}

#[tokio::test]
async fn https_upstream_is_verified_against_its_ca_file() {
    let harness = Harness::with(Options {
        upstream_tls: Some(true),
        jwks_tls: true,
        ..Options::default()
    })
    .await;
    let token = harness.token("user/Patient.r");
    let response = harness
        .client()
        .get_with_token("/Patient/123", &token)
        .await;
    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(
        harness.upstream.received()[0].path_and_query,
        "/fhir/Patient/123"
    );
}

#[tokio::test]
async fn untrusted_https_upstream_is_502_never_an_insecure_fallback() {
    let harness = Harness::with(Options {
        upstream_tls: Some(false),
        ..Options::default()
    })
    .await;
    let token = harness.token("user/Patient.r");
    let response = harness
        .client()
        .get_with_token("/Patient/123", &token)
        .await;
    assert_eq!(response.status, 502);
    assert!(harness.upstream.received().is_empty());
    assert_no_leak(&response, &[&token, "localhost:"]);
}

const SMART_POLICY: &str = include_str!("../../policies/smart-v2.yaml");

/// Short upstream body deadlines, so a test sees them pass.
const BODY_DEADLINES: &str = "  body_timeout: 2s\n  body_idle_timeout: 1s\n";

/// A gateway in front of `upstream` under `policy`, with short upstream body deadlines.
async fn behind(upstream: &RawUpstream, policy: &str) -> Harness {
    Harness::with(Options {
        policy: policy.to_owned(),
        upstream_url: Some(upstream.url()),
        upstream_extra: BODY_DEADLINES.to_owned(),
        ..Options::default()
    })
    .await
}

/// A chunked answer's head, whose body `Then` trickles or stalls.
fn chunked_head(content_type: &str) -> String {
    format!("HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\nTransfer-Encoding: chunked\r\n\r\n")
}

/// The upstream's address must never reach a client, whatever it did.
fn secrets<'a>(token: &'a str, upstream: &'a str) -> [&'a str; 3] {
    [token, upstream, "127.0.0.1"]
}

// A FHIR answer is checked whole before any byte of it is sent, so a body that never finishes
// is the upstream's timeout (504) with nothing of it released (R-U04).
#[tokio::test]
async fn a_checked_answer_that_trickles_or_stalls_is_504_before_anything_is_sent() {
    let json = chunked_head("application/fhir+json");
    let upstream = RawUpstream::start(vec![
        Answer::new(json.clone(), Then::Trickle(Duration::from_millis(100))),
        Answer::new(format!("{json}10\r\n{{\"resourceType\":"), Then::Hold),
    ])
    .await;
    let harness = behind(&upstream, SMART_POLICY).await;
    let token = harness.token("user/Patient.r");
    let address = upstream.url();
    for client in [harness.client(), harness.h2_client()] {
        let response = within(GUARD, client.get_with_token("/Patient/123", &token)).await;
        assert_eq!(response.status, 504, "{}", response.text());
        assert_eq!(response.json()["resourceType"], "OperationOutcome");
        assert_eq!(response.headers["cache-control"], "no-store");
        assert!(!response.text().contains("resourceType\":\"Patient"));
        assert_no_leak(&response, &secrets(&token, &address));
    }
    assert_eq!(upstream.received(), 2);
    harness
        .eventually_metric(
            "phigate_upstream_body_failures_total{kind=\"timed_out\"}",
            2.0,
        )
        .await;
    let errors = "phigate_decisions_total{rule=\"fhir-smart\",decision=\"error\",reason=\"upstream_timeout\"}";
    assert_eq!(harness.metric(errors).await, 2.0);
}

// An answer nothing needs to check streams; when its body trickles past the total deadline or
// stalls past the idle one, the client's response is aborted — never completed, so a
// truncated answer cannot pass for a whole one — and the upstream is counted at fault.
#[tokio::test]
async fn a_streamed_answer_that_trickles_or_stalls_is_cut_off_never_completed() {
    let binary = chunked_head("application/octet-stream");
    let trickle = Answer::new(binary, Then::Trickle(Duration::from_millis(100)));
    let stall = Answer::new(
        "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: 100\r\n\r\nonly-a-few",
        Then::Hold,
    );
    let upstream = RawUpstream::start(vec![trickle.clone(), stall.clone(), trickle, stall]).await;
    let harness = behind(&upstream, crate::support::POLICY).await;
    let token = harness.token("user/Patient.r");
    let bearer = format!("Bearer {token}");
    let headers = [("authorization", bearer.as_str())];
    for client in [harness.client(), harness.h2_client()] {
        for _ in 0..2 {
            let sent = client.try_send(Method::GET, "/Patient/123", &headers, Bytes::new());
            let result = within(GUARD, sent).await;
            assert!(result.is_err(), "a cut-off answer completed: {result:?}");
        }
    }
    assert_eq!(upstream.received(), 4);
    harness
        .eventually_metric(
            "phigate_upstream_body_failures_total{kind=\"timed_out\"}",
            4.0,
        )
        .await;
}

// RFC 9112 §6.3: an answer framed both ways would reach the client with the stale length — a
// silently truncated response. It is refused whole, as the upstream's fault (R-U06).
#[tokio::test]
async fn an_answer_with_content_length_and_transfer_encoding_is_502_and_counted() {
    let upstream = RawUpstream::start(vec![Answer::new(
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n1a\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\n\r\n",
        Then::Close,
    )])
    .await;
    for policy in [crate::support::POLICY, SMART_POLICY] {
        let harness = behind(&upstream, policy).await;
        let token = harness.token("user/Patient.r");
        for client in [harness.client(), harness.h2_client()] {
            let response = client.get_with_token("/Patient/123", &token).await;
            assert_eq!(response.status, 502, "{}", response.text());
            assert_eq!(response.json()["resourceType"], "OperationOutcome");
            assert!(!response.text().contains("abcde"), "{}", response.text());
            assert_no_leak(&response, &secrets(&token, &upstream.url()));
        }
        let malformed = "phigate_upstream_duration_seconds_count{outcome=\"malformed\"}";
        assert_eq!(harness.metric(malformed).await, 2.0);
        let errors = "phigate_decisions_total{rule=\"read-patient\",decision=\"error\",reason=\"upstream_malformed\"}";
        if policy == crate::support::POLICY {
            assert_eq!(harness.metric(errors).await, 2.0);
        }
    }
    assert_eq!(upstream.received(), 4);
}

// R-U08: the upstream's challenge would ask the client for credentials phigate holds for it,
// and name its realm. A 401 or 407 from the upstream is phigate's configuration problem: 502,
// with no challenge at all; a challenge on any other answer is removed.
#[tokio::test]
async fn the_upstreams_own_challenges_never_reach_the_client() {
    let challenge = "WWW-Authenticate: Basic realm=\"upstream-internal\"\r\nProxy-Authenticate: Basic realm=\"upstream-proxy\"\r\n";
    let upstream = RawUpstream::start(vec![
        Answer::new(
            format!("HTTP/1.1 401 Unauthorized\r\n{challenge}Content-Length: 0\r\nConnection: close\r\n\r\n"),
            Then::Close,
        ),
        Answer::new(
            format!("HTTP/1.1 407 Proxy Authentication Required\r\n{challenge}Content-Length: 0\r\nConnection: close\r\n\r\n"),
            Then::Close,
        ),
        Answer::new(
            format!("HTTP/1.1 200 OK\r\n{challenge}Content-Type: text/plain\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"),
            Then::Close,
        ),
    ])
    .await;
    let harness = behind(&upstream, crate::support::POLICY).await;
    let token = harness.token("user/Patient.r");
    let client = harness.client();
    for expected in [502, 502, 200] {
        let response = client.get_with_token("/Patient/123", &token).await;
        assert_eq!(response.status, expected, "{}", response.text());
        assert!(response.headers.get("www-authenticate").is_none());
        assert!(response.headers.get("proxy-authenticate").is_none());
        assert!(!response.text().contains("realm"), "{}", response.text());
        assert_no_leak(
            &response,
            &[
                &token,
                &upstream.url(),
                "upstream-internal",
                "upstream-proxy",
                "Basic",
            ],
        );
    }
    let errors = "phigate_decisions_total{rule=\"read-patient\",decision=\"error\",reason=\"upstream_challenge\"}";
    assert_eq!(harness.metric(errors).await, 2.0);
}

#[tokio::test]
async fn with_http2_the_upstream_hears_http2_and_the_answer_is_the_same() {
    for (http2, version) in [(false, "HTTP/1.1"), (true, "HTTP/2.0")] {
        let harness = Harness::with(Options {
            upstream_extra: format!("  http2: {http2}\n"),
            ..Options::default()
        })
        .await;
        let token = harness.token("user/Patient.r");
        let client = harness.client();
        for _ in 0..3 {
            let response = client.get_with_token("/Patient/123", &token).await;
            assert_eq!(response.status, 200, "{}", response.text());
            assert_eq!(response.json()["id"], "123");
        }
        let received = harness.upstream.received();
        assert_eq!(received.len(), 3);
        assert!(
            received.iter().all(|r| r.version == version),
            "{received:?}"
        );
        // Connection-specific headers are never sent (RFC 9113 §8.2.2 forbids them in HTTP/2).
        assert!(received.iter().all(|r| r.header("connection").is_none()));
    }
}
