//! Request hygiene through the real listener (issue #7): header names that imitate phigate's
//! own, routing-override headers, URI limits, broken body framing (raw bytes over TLS, where a
//! client library would never send them), body caps and deadlines before any token, and the
//! upstream's proxy-only response headers.

use bytes::Bytes;
use http::Method;

use crate::support::client::raw_tls;
use crate::support::{Harness, Options, POLICY, assert_denied, assert_no_leak};

const BAD_REQUEST: Option<&str> = Some("Bearer realm=\"phigate\", error=\"invalid_request\"");

/// The default policy plus a public form endpoint, to show what an unauthenticated client can
/// make phigate read.
fn policy_with_public_post() -> String {
    format!(
        "{POLICY}  - name: public-submit\n    methods: [POST]\n    path: /submit\n    public: true\n"
    )
}

async fn harness_with_limits(limits: &str) -> Harness {
    Harness::with(Options {
        policy: policy_with_public_post(),
        listen_extra: format!("  limits:\n{limits}"),
        ..Options::default()
    })
    .await
}

fn metric(metrics: &str, needle: &str) -> f64 {
    metrics
        .lines()
        .filter(|line| line.starts_with(needle))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test]
async fn header_names_imitating_owned_headers_are_refused() {
    let harness = Harness::start().await;
    let token = harness.token("user/Observation.rs");
    let bearer = format!("Bearer {token}");
    for name in [
        "X_Phigate_Subject",
        "x-phigate_scopes",
        "X_Phigate_Client_Id",
        "X_Forwarded_For",
        "x-forwarded_host",
        "X_Original_URL",
        "X_Envoy_Original_Path",
        "X_SSL_Client_Cert",
        "Proxy_Authorization",
        "X_HTTP_Method_Override",
    ] {
        let response = harness
            .client()
            .send(
                Method::GET,
                "/Observation",
                &[("authorization", &bearer), (name, "system/*.cruds")],
                Bytes::new(),
            )
            .await;
        assert_denied(&harness, &response, 400, BAD_REQUEST);
        assert_no_leak(&response, &[&token, "system/*.cruds"]);
    }
    // On the wire, with the case and underscores an attacker would send.
    let request = format!(
        "GET /Observation HTTP/1.1\r\nHost: gw.test\r\nAuthorization: {bearer}\r\nX_Phigate_Subject: admin\r\n\r\n"
    );
    let answer = raw_tls(harness.addr(), &harness.ca, request.as_bytes()).await;
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(harness.upstream.received().is_empty());
}

#[tokio::test]
async fn routing_override_and_forwarding_headers_never_reach_the_upstream() {
    let harness = Harness::start().await;
    let token = harness.token("user/Observation.rs");
    let bearer = format!("Bearer {token}");
    let spoofed = [
        "x-original-url",
        "x-original-uri",
        "x-rewrite-url",
        "x-forwarded-uri",
        "x-forwarded-prefix",
        "x-forwarded-path",
        "x-envoy-original-path",
        "x-envoy-internal",
        "x-middleware-subrequest",
        "x-forwarded-host",
        "x-forwarded-port",
        "x-forwarded-proto",
        "forwarded",
        "x-real-ip",
        "true-client-ip",
        "x-client-ip",
        "x-phigate-subject",
        "x-phigate-patient",
        "client-cert",
    ];
    let mut headers: Vec<(&str, &str)> = vec![("authorization", &bearer)];
    headers.extend(spoofed.iter().map(|name| (*name, "/admin")));
    let response = harness
        .client()
        .send(Method::GET, "/Observation", &headers, Bytes::new())
        .await;
    assert_eq!(response.status, 200, "{}", response.text());
    let received = harness.upstream.received();
    let [request] = received.as_slice() else {
        panic!("expected one upstream request, got {received:?}");
    };
    assert_eq!(request.path_and_query, "/fhir/Observation");
    for name in spoofed {
        let values: Vec<&str> = request.header_values(name).collect();
        assert!(
            values.iter().all(|v| *v != "/admin"),
            "{name} reached the upstream: {values:?}"
        );
    }
    // phigate's own copies, exactly once each.
    let subject: Vec<&str> = request.header_values("x-phigate-subject").collect();
    assert_eq!(subject, ["u-1"]);
    let forwarded_for: Vec<&str> = request.header_values("x-forwarded-for").collect();
    assert_eq!(forwarded_for, ["127.0.0.1"]);
    let proto: Vec<&str> = request.header_values("x-forwarded-proto").collect();
    assert_eq!(proto, ["https"]);
}

#[tokio::test]
async fn uri_limits_answer_414_before_routing_or_tokens() {
    let harness =
        harness_with_limits("    max_path_segments: 16\n    max_query_params: 20\n").await;
    let client = harness.client();
    let deep = format!("/Observation{}", "/x".repeat(16));
    let response = client.get(&deep).await;
    assert_denied(&harness, &response, 414, None);
    let many = format!(
        "/Observation?{}",
        (0..21)
            .map(|i| format!("p{i}=1"))
            .collect::<Vec<_>>()
            .join("&")
    );
    let response = client.get(&many).await;
    assert_denied(&harness, &response, 414, None);
    // At the limit the request goes on to the token check.
    let at_limit = format!(
        "/Observation?{}",
        (0..20)
            .map(|i| format!("p{i}=1"))
            .collect::<Vec<_>>()
            .join("&")
    );
    assert_eq!(client.get(&at_limit).await.status, 401);
    // The default limit (256 segments) holds without configuration.
    let default = Harness::start().await;
    let response = default
        .client()
        .get(&format!("/Observation{}", "/x".repeat(300)))
        .await;
    assert_denied(&default, &response, 414, None);
}

#[tokio::test]
async fn broken_chunked_framing_is_the_clients_400_and_nothing_is_forwarded() {
    let harness = Harness::start().await;
    let token = harness.token("user/Observation.c user/Observation.rs");
    let head = format!(
        "POST /Observation HTTP/1.1\r\nHost: gw.test\r\nAuthorization: Bearer {token}\r\nContent-Type: application/fhir+json\r\nTransfer-Encoding: chunked\r\n\r\n"
    );
    let long_extension = format!("2;{}\r\n{{}}\r\n0\r\n\r\n", "a".repeat(70 * 1024));
    for body in [
        "zz\r\n{}\r\n0\r\n\r\n",                    // size is not hex
        "fffffffffffffffffffff\r\n{}\r\n0\r\n\r\n", // size overflows
        "2\r\n{}XX0\r\n\r\n",                       // no CRLF after the data
        "2\n{}\n0\n\n",                             // bare LF
        "2\r{}\r\n0\r\n\r\n",                       // bare CR
        "2;ext\nx\r\n{}\r\n0\r\n\r\n",              // LF inside an extension
        long_extension.as_str(),                    // oversized extension
    ] {
        let request = format!("{head}{body}");
        let answer = raw_tls(harness.addr(), &harness.ca, request.as_bytes()).await;
        assert!(answer.starts_with("HTTP/1.1 400"), "{body:?} -> {answer}");
        assert!(!answer.contains(&token[..20]));
    }
    assert!(
        harness.upstream.received().is_empty(),
        "{:?}",
        harness.upstream_paths()
    );
    let (_, metrics) = harness.admin_get("/metrics").await;
    assert!(
        metric(
            &metrics,
            "phigate_decisions_total{rule=\"post-observation\",decision=\"deny\",reason=\"body_malformed\"}"
        ) >= 7.0,
        "{metrics}"
    );
    assert!(!metrics.contains("upstream_unreachable"), "{metrics}");
}

#[tokio::test]
async fn conflicting_lengths_are_refused_and_counted_as_client_errors() {
    let harness = Harness::start().await;
    for lengths in [
        "Content-Length: 4\r\nContent-Length: 5\r\n",
        "Content-Length: 4, 5\r\n",
        "Content-Length: +4\r\n",
        "Content-Length: 0x4\r\n",
        "Content-Length: 18446744073709551616\r\n",
        "Transfer-Encoding: gzip\r\n",
        "Transfer-Encoding: chunked, gzip\r\n",
    ] {
        let request = format!("POST /submit HTTP/1.1\r\nHost: gw.test\r\n{lengths}\r\nabcd");
        let answer = raw_tls(harness.addr(), &harness.ca, request.as_bytes()).await;
        assert!(
            answer.starts_with("HTTP/1.1 400"),
            "{lengths:?} -> {answer}"
        );
    }
    assert!(harness.upstream.received().is_empty());
    // Counted when hyper's connection ends, which may be just after the answer arrived.
    harness
        .eventually_metric(
            "phigate_client_protocol_errors_total{kind=\"malformed\"}",
            7.0,
        )
        .await;
}

#[tokio::test]
async fn public_routes_read_only_a_small_body_and_only_by_a_deadline() {
    let harness =
        harness_with_limits("    max_unauthenticated_body_bytes: 16384\n    body_timeout: 1s\n")
            .await;
    let client = harness.client();
    let form = [("content-type", "application/x-www-form-urlencoded")];
    let small = client
        .send(Method::POST, "/submit", &form, Bytes::from("a=1"))
        .await;
    assert_eq!(small.status, 404, "the upstream knows no /submit");
    assert_eq!(harness.upstream_paths().len(), 1);
    harness.upstream.clear_received();
    let large = client
        .send(
            Method::POST,
            "/submit",
            &form,
            Bytes::from(vec![b'a'; 32 * 1024]),
        )
        .await;
    assert_denied(&harness, &large, 413, None);
    // A body that never arrives is cut off at the deadline, not waited for.
    let slow = "POST /submit HTTP/1.1\r\nHost: gw.test\r\nContent-Length: 100\r\n\r\nonly-a-little";
    let answer = raw_tls(harness.addr(), &harness.ca, slow.as_bytes()).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(harness.upstream.received().is_empty());
}

#[tokio::test]
async fn a_denied_request_never_reads_its_body() {
    let harness = Harness::start().await;
    // No token: refused from the head alone, without `100 Continue` and without the body.
    let request = "POST /Observation HTTP/1.1\r\nHost: gw.test\r\nExpect: 100-continue\r\nContent-Length: 10485760\r\n\r\n";
    let answer = raw_tls(harness.addr(), &harness.ca, request.as_bytes()).await;
    assert!(answer.starts_with("HTTP/1.1 401"), "{answer}");
    assert!(!answer.contains("100 Continue"), "{answer}");
    assert!(harness.upstream.received().is_empty());
}

#[tokio::test]
async fn proxy_only_and_hop_by_hop_response_headers_never_reach_the_client() {
    let harness = Harness::start().await;
    harness
        .upstream
        .set_mode(phigate::demo::UpstreamMode::HopByHopHeaders);
    for client in [harness.client(), harness.h2_client()] {
        let response = client.get("/metadata").await;
        assert_eq!(response.status, 200);
        for name in [
            "proxy-authenticate",
            "proxy-authorization",
            "keep-alive",
            "trailer",
            "upgrade",
            "connection",
            "x-upstream-secret",
        ] {
            assert!(
                response.headers.get(name).is_none(),
                "{name}: {:?}",
                response.headers
            );
        }
    }
}

/// RFC 9112 §9.6: a large upload refused before it has all arrived gets its refusal — 413 past
/// the body cap, 401 without a token — not a broken pipe or a reset. phigate closes such a
/// connection in stages (its answer ends, then what is still sent is read and dropped), so the
/// kernel never resets the refusal away. Nothing reaches the upstream.
#[tokio::test]
async fn a_large_refused_upload_gets_its_refusal_not_a_reset() {
    let harness =
        harness_with_limits("    max_unauthenticated_body_bytes: 16384\n    body_timeout: 5s\n")
            .await;
    let client = harness.client();
    let upload = Bytes::from(vec![b'a'; 8 * 1024 * 1024]);
    for (path, content_type, status) in [
        ("/submit", "application/x-www-form-urlencoded", 413),
        ("/Observation", "application/fhir+json", 401),
    ] {
        for _ in 0..5 {
            let refused = client
                .try_send(
                    Method::POST,
                    path,
                    &[("content-type", content_type)],
                    upload.clone(),
                )
                .await
                .unwrap_or_else(|err| panic!("{path}: no answer: {err:?}"));
            assert_eq!(refused.status, status, "{path}");
        }
    }
    assert!(harness.upstream.received().is_empty());
}
