use super::*;

/// The top finite latency bound for timers adding up to `longest_secs`.
#[track_caller]
fn check_top(longest_secs: u64, expected: f64) {
    let buckets = LatencyBuckets::past(Duration::from_secs(longest_secs));
    let top = *buckets.0.last().unwrap();
    assert!((top - expected).abs() < 1e-6, "{longest_secs}: {top}");
    assert!(top > longest_secs as f64 && top > 60.0);
    assert_eq!(buckets.0[0], 0.0001);
}

#[test]
fn latency_buckets_reach_past_a_minute_and_the_longest_wait() {
    // 100 µs · 2^20 ≈ 104.9 s is the first bound above 60 s.
    check_top(0, 104.8576);
    check_top(95, 104.8576);
    check_top(105, 209.7152);
    check_top(3600, 6710.8864);
}

#[test]
fn known_series_read_zero_before_any_event() {
    let metrics = Metrics::new();
    metrics.init_issuer("https://as.test");
    metrics.init_revocation_source("file:revoked.json");
    let text = metrics.render(Exposition::PrometheusText);
    for expected in [
        "phigate_build_info{version=\"",
        "phigate_requests_in_flight 0",
        "phigate_upstream_responses_total{class=\"2xx\"} 0",
        "phigate_upstream_responses_total{class=\"5xx\"} 0",
        "phigate_tls_handshake_failures_total{reason=\"bad_certificate\"} 0",
        "phigate_tls_handshake_failures_total{reason=\"timeout\"} 0",
        "phigate_upstream_duration_seconds_count{outcome=\"timed_out\"} 0",
        "phigate_upstream_duration_seconds_bucket{outcome=\"ok\",le=\"104.8576\"} 0",
        "phigate_client_protocol_errors_total{kind=\"malformed\"} 0",
        "phigate_jwks_fetches_total{issuer=\"https://as.test\",result=\"error\"} 0",
        "phigate_jwks_keys_rejected_total{issuer=\"https://as.test\"} 0",
        "phigate_revocation_refreshes_total{source=\"file:revoked.json\",result=\"error\"} 0",
        "phigate_policy_reloads_total 0",
        "phigate_policy_reload_failures_total 0",
    ] {
        assert!(text.contains(expected), "missing {expected}\n{text}");
    }
}

#[test]
fn in_flight_counts_until_the_guard_drops() {
    let metrics = Metrics::new();
    let first = metrics.request_started();
    let second = metrics.request_started();
    assert!(
        metrics
            .render(Exposition::PrometheusText)
            .contains("phigate_requests_in_flight 2")
    );
    drop(first);
    drop(second);
    assert!(
        metrics
            .render(Exposition::PrometheusText)
            .contains("phigate_requests_in_flight 0")
    );
}

#[test]
fn both_formats_type_every_series() {
    let metrics = Metrics::new();
    metrics.record_upstream_status(http::StatusCode::NOT_FOUND);
    metrics.record_upstream_status(http::StatusCode::from_u16(799).unwrap());
    metrics.record_handshake_failure(HandshakeFailure::Malformed);
    let text = metrics.render(Exposition::PrometheusText);
    for expected in [
        // The 0.0.4 format names the counter with its suffix and knows no `info` type.
        "# TYPE phigate_upstream_responses_total counter\n",
        "phigate_upstream_responses_total{class=\"4xx\"} 1\n",
        "phigate_upstream_responses_total{class=\"other\"} 1\n",
        "phigate_tls_handshake_failures_total{reason=\"malformed\"} 1\n",
        "# TYPE phigate_build_info gauge\n",
        "# TYPE process_cpu_seconds_total counter\n",
        "# TYPE process_resident_memory_bytes gauge\n",
        "# TYPE process_start_time_seconds gauge\n",
    ] {
        assert!(text.contains(expected), "missing {expected}\n{text}");
    }
    assert!(!text.contains("# EOF"));
    let open = metrics.render(Exposition::OpenMetrics);
    for expected in [
        "# TYPE phigate_upstream_responses counter\n",
        "# TYPE phigate_build info\n",
        "# TYPE process_cpu_seconds counter\n",
        "process_cpu_seconds_total ",
    ] {
        assert!(open.contains(expected), "missing {expected}\n{open}");
    }
    assert!(open.ends_with("# EOF\n"));
}

#[test]
fn certificate_expiry_is_the_not_after_timestamp_and_absent_until_known() {
    let metrics = Metrics::new();
    let series = "phigate_tls_certificate_expiry_timestamp_seconds";
    let text = metrics.render(Exposition::PrometheusText);
    // An upstream never verified has no series: a 0 would read as long expired.
    assert!(!text.contains(&format!("{series}{{")), "{text}");
    let not_after = SystemTime::UNIX_EPOCH + Duration::from_secs(1_900_000_000);
    metrics.set_certificate_expiry("listener", not_after);
    (metrics.on_certificate_expiry("upstream"))(not_after + Duration::from_secs(5));
    let text = metrics.render(Exposition::PrometheusText);
    for expected in [
        format!("{series}{{name=\"listener\"}} 1900000000\n"),
        format!("{series}{{name=\"upstream\"}} 1900000005\n"),
    ] {
        assert!(text.contains(&expected), "missing {expected}\n{text}");
    }
}

#[test]
fn tls_reloads_and_crl_staleness_are_counted_by_part_and_source() {
    let metrics = Metrics::new();
    metrics.init_tls_reloads(&["listener", "client_crl"]);
    metrics.record_tls_reload("listener", false);
    metrics.set_crl_status("file:clients.crl", None, true);
    let text = metrics.render(Exposition::PrometheusText);
    for expected in [
        "phigate_tls_reloads_total{name=\"listener\"} 0\n",
        "phigate_tls_reloads_total{name=\"client_crl\"} 0\n",
        "phigate_tls_reload_failures_total{name=\"listener\"} 1\n",
        "phigate_tls_crl_stale{source=\"file:clients.crl\"} 1\n",
    ] {
        assert!(text.contains(expected), "missing {expected}\n{text}");
    }
    // No age before the first good list.
    assert!(!text.contains("phigate_tls_crl_age_seconds{"), "{text}");
}

#[test]
fn the_issuer_clock_offset_is_a_gauge_per_issuer() {
    let metrics = Metrics::new();
    let text = metrics.render(Exposition::PrometheusText);
    // No estimate before the issuer's first token: an absent series, not a false 0.
    assert!(
        !text.contains("phigate_issuer_clock_offset_seconds{"),
        "{text}"
    );
    metrics.set_issuer_clock_offset("https://as.test", -42);
    let text = metrics.render(Exposition::PrometheusText);
    for expected in [
        "# TYPE phigate_issuer_clock_offset_seconds gauge\n",
        "phigate_issuer_clock_offset_seconds{issuer=\"https://as.test\"} -42\n",
    ] {
        assert!(text.contains(expected), "missing {expected}\n{text}");
    }
}
