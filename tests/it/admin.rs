//! The admin listener: metrics content and label hygiene, health, readiness, and its absence
//! from the PHI listener.

use std::time::Duration;

use tokio::io::AsyncWriteExt;

use crate::support::client::{plain_get_with, read_until_quiet};
use crate::support::{Harness, Options, eventually};

/// The value of the sample line starting with `series ` (name and labels exactly), if any.
fn sample(metrics: &str, series: &str) -> Option<f64> {
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|value| value.parse().ok())
}

/// Scrapes `/metrics` until `series` reads `wanted` (the server counts after the client saw
/// the outcome, so this waits for an event rather than a time).
async fn eventually_reads(harness: &Harness, series: &str, wanted: f64) {
    eventually(Duration::from_secs(10), || async {
        sample(&harness.admin_get("/metrics").await.1, series) == Some(wanted)
    })
    .await;
}

#[tokio::test]
async fn metrics_count_decisions_by_rule_and_reason_without_secrets() {
    let harness = Harness::start().await;
    let token = harness.token("user/Observation.rs");
    let client = harness.client();
    assert_eq!(client.get("/metadata").await.status, 200);
    assert_eq!(
        client.get_with_token("/Patient/123", &token).await.status,
        403
    );
    assert_eq!(client.get("/Patient/123").await.status, 401);
    let (status, metrics) = harness.admin_get("/metrics").await;
    assert_eq!(status, 200);
    for expected in [
        "phigate_decisions_total{rule=\"capability-statement\",decision=\"allow\",reason=\"ok\"} 1",
        "phigate_decisions_total{rule=\"read-patient\",decision=\"deny\",reason=\"insufficient_scope\"} 1",
        "phigate_decisions_total{rule=\"read-patient\",decision=\"deny\",reason=\"credentials_missing\"} 1",
        "phigate_request_duration_seconds_bucket",
        "phigate_upstream_duration_seconds_bucket",
        "phigate_jwks_fetches_total{issuer=\"https://as-a.test\",result=\"ok\"}",
        "phigate_jwks_keys_loaded{issuer=\"https://as-a.test\"} 1",
        "phigate_jwks_key_age_seconds{issuer=\"https://as-a.test\"}",
        "phigate_issuer_clock_offset_seconds{issuer=\"https://as-a.test\"}",
    ] {
        assert!(metrics.contains(expected), "missing {expected}\n{metrics}");
    }
    for secret in [token.as_str(), "u-1", "app-1", "/Patient/123", "127.0.0.1"] {
        assert!(!metrics.contains(secret), "metrics leak {secret}");
    }
}

#[tokio::test]
async fn the_issuer_clock_offset_is_estimated_from_the_freshest_tokens() {
    let harness = Harness::start().await;
    let series = "phigate_issuer_clock_offset_seconds{issuer=\"https://as-a.test\"}";
    let (_, metrics) = harness.admin_get("/metrics").await;
    assert_eq!(sample(&metrics, series), None, "no estimate before a token");
    let client = harness.client();
    // An issuer 20 s ahead of us, within the 30 s skew.
    let mut ahead = harness.claims("patient/Patient.r");
    ahead["iat"] = (ahead["iat"].as_i64().unwrap() + 20).into();
    let token = harness.mint(&ahead);
    assert_eq!(
        client.get_with_token("/Patient/123", &token).await.status,
        200
    );
    let offset = sample(&harness.admin_get("/metrics").await.1, series).unwrap();
    // iat and now are whole seconds, and a second may pass between minting and verifying.
    assert!((19.0..=20.0).contains(&offset), "{offset}");
    // A token first used two minutes after it was issued says little about the clock.
    let mut late = harness.claims("patient/Patient.r");
    late["iat"] = (late["iat"].as_i64().unwrap() - 120).into();
    let token = harness.mint(&late);
    assert_eq!(
        client.get_with_token("/Patient/123", &token).await.status,
        200
    );
    let (_, metrics) = harness.admin_get("/metrics").await;
    assert_eq!(sample(&metrics, series), Some(offset), "{metrics}");
    for secret in [token.as_str(), "u-1", "app-1"] {
        assert!(!metrics.contains(secret), "metrics leak {secret}");
    }
}

#[tokio::test]
async fn health_readiness_and_unknown_paths() {
    let harness = Harness::start().await;
    assert_eq!(harness.admin_get("/healthz").await.0, 200);
    assert_eq!(harness.admin_get("/readyz").await.0, 200);
    assert_eq!(harness.admin_get("/nope").await.0, 404);
    // The PHI listener has no admin routes: /metrics there is just an unmatched path.
    let response = harness.client().get("/metrics").await;
    assert_eq!(response.status, 403);
    assert!(!response.text().contains("phigate_"));
}

#[tokio::test]
async fn shutdown_turns_readiness_off_and_stops_serving() {
    let harness = Harness::start().await;
    let admin = harness.gateway().admin_addr();
    let addr = harness.addr();
    let mut harness = harness;
    let gateway = harness.gateway.take().unwrap();
    gateway.shutdown().await;
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "listener still accepting"
    );
    let _ = admin;
}

#[tokio::test]
async fn known_series_build_info_and_process_metrics_are_there_from_the_start() {
    let harness = Harness::start().await;
    let (status, metrics) = harness.admin_get("/metrics").await;
    assert_eq!(status, 200);
    let version = env!("CARGO_PKG_VERSION");
    for (series, value) in [
        (format!("phigate_build_info{{version=\"{version}\"}}"), 1.0),
        ("phigate_requests_in_flight".to_owned(), 0.0),
        (
            "phigate_upstream_responses_total{class=\"2xx\"}".to_owned(),
            0.0,
        ),
        (
            "phigate_upstream_responses_total{class=\"5xx\"}".to_owned(),
            0.0,
        ),
        (
            "phigate_tls_handshake_failures_total{reason=\"bad_certificate\"}".to_owned(),
            0.0,
        ),
        (
            "phigate_tls_handshake_failures_total{reason=\"protocol_version\"}".to_owned(),
            0.0,
        ),
        (
            "phigate_upstream_duration_seconds_count{outcome=\"timed_out\"}".to_owned(),
            0.0,
        ),
        (
            "phigate_upstream_duration_seconds_count{outcome=\"unreachable\"}".to_owned(),
            0.0,
        ),
        (
            "phigate_upstream_duration_seconds_count{outcome=\"malformed\"}".to_owned(),
            0.0,
        ),
        (
            "phigate_upstream_body_failures_total{kind=\"timed_out\"}".to_owned(),
            0.0,
        ),
        (
            "phigate_upstream_body_failures_total{kind=\"broken\"}".to_owned(),
            0.0,
        ),
        (
            "phigate_connections_closed_total{reason=\"first_request_timeout\"}".to_owned(),
            0.0,
        ),
        (
            "phigate_connections_closed_total{reason=\"over_capacity\"}".to_owned(),
            0.0,
        ),
        (
            "phigate_jwks_fetches_total{issuer=\"https://as-a.test\",result=\"error\"}".to_owned(),
            0.0,
        ),
        (
            "phigate_client_protocol_errors_total{kind=\"malformed\"}".to_owned(),
            0.0,
        ),
        ("phigate_policy_reloads_total".to_owned(), 0.0),
        ("phigate_policy_reload_failures_total".to_owned(), 0.0),
        ("phigate_log_lines_dropped_total".to_owned(), 0.0),
    ] {
        assert_eq!(
            sample(&metrics, &series),
            Some(value),
            "{series}\n{metrics}"
        );
    }
    // Histograms reach past the configured timeouts (a 5 s upstream timeout, a 30 s request
    // body, 5 min upstream bodies: 645 s in all).
    assert!(
        metrics
            .contains("phigate_upstream_duration_seconds_bucket{outcome=\"ok\",le=\"838.8608\"} 0"),
        "{metrics}"
    );
    let positive = |series: &str| sample(&metrics, series).is_some_and(|v| v > 0.0);
    for series in [
        "process_resident_memory_bytes",
        "process_virtual_memory_bytes",
        "process_open_fds",
        "process_max_fds",
        "process_threads",
    ] {
        assert!(positive(series), "{series}\n{metrics}");
    }
    let started = sample(&metrics, "process_start_time_seconds").unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!(
        started > now - 3600.0 && started <= now + 1.0,
        "{started} vs {now}"
    );
    assert!(
        sample(&metrics, "process_cpu_seconds_total").is_some(),
        "{metrics}"
    );
}

#[tokio::test]
async fn upstream_classes_are_counted_and_in_flight_returns_to_zero() {
    let harness = Harness::start().await;
    let client = harness.client();
    let token = harness.token("user/Patient.r");
    assert_eq!(client.get("/metadata").await.status, 200);
    assert_eq!(
        client.get_with_token("/Patient/123", &token).await.status,
        200
    );
    assert_eq!(
        client
            .get_with_token("/Patient/nobody", &token)
            .await
            .status,
        404
    );
    // A denial never reaches the upstream, so it is no upstream response.
    assert_eq!(client.get("/Patient/123").await.status, 401);
    let metrics = harness.admin_get("/metrics").await.1;
    for (series, value) in [
        ("phigate_upstream_responses_total{class=\"2xx\"}", 2.0),
        ("phigate_upstream_responses_total{class=\"4xx\"}", 1.0),
        ("phigate_upstream_responses_total{class=\"5xx\"}", 0.0),
        (
            "phigate_upstream_duration_seconds_count{outcome=\"ok\"}",
            3.0,
        ),
        ("phigate_requests_in_flight", 0.0),
    ] {
        assert_eq!(sample(&metrics, series), Some(value), "{series}\n{metrics}");
    }
}

#[tokio::test]
async fn failed_tls_handshakes_are_counted_by_reason() {
    let harness = Harness::with(Options {
        client_auth: Some("required"),
        ..Default::default()
    })
    .await;
    // Plaintext HTTP on the TLS port.
    let mut tcp = tokio::net::TcpStream::connect(harness.addr())
        .await
        .unwrap();
    tcp.write_all(b"GET /metadata HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let _ = read_until_quiet(&mut tcp).await;
    eventually_reads(
        &harness,
        "phigate_tls_handshake_failures_total{reason=\"malformed\"}",
        1.0,
    )
    .await;
    // A client that does not trust phigate's certificate says so (unknown_ca), and one without
    // the required client certificate is refused: both are certificate failures.
    let stranger = phigate::tls::dev_ca::DevCa::new("another CA").unwrap();
    let untrusting = crate::support::TestClient::new(harness.addr(), &stranger, None, false);
    assert!(
        untrusting
            .try_send(http::Method::GET, "/metadata", &[], bytes::Bytes::new())
            .await
            .is_err()
    );
    let anonymous = harness.client();
    assert!(
        anonymous
            .try_send(http::Method::GET, "/metadata", &[], bytes::Bytes::new())
            .await
            .is_err()
    );
    eventually_reads(
        &harness,
        "phigate_tls_handshake_failures_total{reason=\"bad_certificate\"}",
        2.0,
    )
    .await;
    let metrics = harness.admin_get("/metrics").await.1;
    assert_eq!(
        sample(
            &metrics,
            "phigate_tls_handshake_failures_total{reason=\"other\"}"
        ),
        Some(0.0),
        "{metrics}"
    );
    assert!(!metrics.contains("127.0.0.1"), "an address in a label");
}

#[tokio::test]
async fn metrics_speak_openmetrics_when_asked_and_prometheus_text_otherwise() {
    let harness = Harness::start().await;
    let admin = harness.gateway().admin_addr();
    let prometheus = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
    let (status, headers, body) =
        plain_get_with(admin, "/metrics", &[("accept", prometheus)]).await;
    assert_eq!(status, 200);
    assert_eq!(
        headers["content-type"],
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    );
    assert!(body.ends_with("# EOF\n"), "{body}");
    assert!(
        body.contains("# TYPE phigate_jwks_fetches counter"),
        "{body}"
    );
    assert!(body.contains("# TYPE phigate_build info"), "{body}");
    for accept in [None, Some("*/*"), Some("text/plain;version=0.0.4")] {
        let headers_sent: Vec<(&str, &str)> = accept.map(|a| ("accept", a)).into_iter().collect();
        let (status, headers, body) = plain_get_with(admin, "/metrics", &headers_sent).await;
        assert_eq!(status, 200);
        assert_eq!(
            headers["content-type"], "text/plain; version=0.0.4; charset=utf-8",
            "{accept:?}"
        );
        assert_eq!(headers["vary"], "accept");
        assert!(!body.contains("# EOF"), "{body}");
        // The 0.0.4 format types each counter by its full name, and knows no `info` type.
        assert!(
            body.contains("# TYPE phigate_jwks_fetches_total counter"),
            "{body}"
        );
        assert!(body.contains("# TYPE phigate_build_info gauge"), "{body}");
    }
}
