//! Protocol-level refusals with raw bytes no well-behaved client sends: smuggling, duplicate
//! Host, methods never forwarded, override headers, and `Expect: 100-continue` on a denial.

use bytes::Bytes;
use http::Method;

use crate::support::client::raw_tls;
use crate::support::{Harness, assert_denied, assert_no_leak};

const BAD_REQUEST: Option<&str> = Some("Bearer realm=\"phigate\", error=\"invalid_request\"");

#[tokio::test]
async fn cl_te_smuggling_never_reaches_a_second_request_upstream() {
    let harness = Harness::start().await;
    let smuggled = "GET /Patient/456 HTTP/1.1\r\nHost: gw.test\r\n\r\n";
    let body = format!("0\r\n\r\n{smuggled}");
    let request = format!(
        "POST /metadata HTTP/1.1\r\nHost: gw.test\r\nContent-Length: {}\r\nTransfer-Encoding: chunked\r\n\r\n{body}",
        body.len()
    );
    let answer = raw_tls(harness.addr(), &harness.ca, request.as_bytes()).await;
    assert!(answer.starts_with("HTTP/1.1 4"), "{answer}");
    assert!(
        harness
            .upstream
            .received()
            .iter()
            .all(|r| !r.path_and_query.contains("Patient")),
        "{:?}",
        harness.upstream_paths()
    );
}

#[tokio::test]
async fn framing_and_host_faults_are_400() {
    let harness = Harness::start().await;
    for request in [
        "GET /metadata HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
        "GET /metadata HTTP/1.1\r\n\r\n",
        "POST /metadata HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nContent-Length: 5\r\n\r\nabcde",
        "POST /metadata HTTP/1.1\r\nHost: a\r\nContent-Length: +4\r\n\r\nabcd",
        "GET /metadata HTTP/1.1\r\nHost: a\r\nX-A: 1\r\n  2\r\n\r\n",
        "GET /metadata HTTP/1.1\r\nHost : a\r\n\r\n",
    ] {
        let answer = raw_tls(harness.addr(), &harness.ca, request.as_bytes()).await;
        assert!(
            answer.starts_with("HTTP/1.1 400"),
            "{request:?} -> {answer}"
        );
    }
    assert!(
        harness.upstream.received().is_empty(),
        "{:?}",
        harness.upstream_paths()
    );
}

#[tokio::test]
async fn methods_that_are_never_forwarded() {
    let harness = Harness::start().await;
    let token = harness.token("user/Patient.r");
    let bearer = format!("Bearer {token}");
    for method in ["TRACE", "get", "FOO"] {
        let method = Method::from_bytes(method.as_bytes()).unwrap();
        let response = harness
            .client()
            .send(
                method,
                "/Patient/123",
                &[("authorization", &bearer)],
                Bytes::new(),
            )
            .await;
        assert_denied(&harness, &response, 405, None);
        assert_no_leak(&response, &[&token]);
    }
}

#[tokio::test]
async fn method_override_is_refused_not_followed() {
    let harness = Harness::start().await;
    let token = harness.token("user/Patient.r");
    let bearer = format!("Bearer {token}");
    for (name, value) in [
        ("x-http-method-override", "DELETE"),
        ("x-http-method", "DELETE"),
        ("x-method-override", "PUT"),
    ] {
        let response = harness
            .client()
            .send(
                Method::GET,
                "/Patient/123",
                &[("authorization", &bearer), (name, value)],
                Bytes::new(),
            )
            .await;
        assert_denied(&harness, &response, 400, BAD_REQUEST);
    }
    let response = harness
        .client()
        .get_with_token("/Patient/123?_method=DELETE", &token)
        .await;
    assert_denied(&harness, &response, 400, BAD_REQUEST);
}

#[tokio::test]
async fn expect_continue_on_a_denied_request_gets_the_denial_not_100() {
    let harness = Harness::start().await;
    let request = "POST /Observation HTTP/1.1\r\nHost: gw.test\r\nContent-Type: application/fhir+json\r\nContent-Length: 10485760\r\nExpect: 100-continue\r\n\r\n";
    let answer = raw_tls(harness.addr(), &harness.ca, request.as_bytes()).await;
    assert!(answer.starts_with("HTTP/1.1 401"), "{answer}");
    assert!(!answer.contains("100 Continue"), "{answer}");
    assert!(harness.upstream.received().is_empty());
}

#[tokio::test]
async fn every_denial_is_operation_outcome_without_leaks() {
    let harness = Harness::start().await;
    let token = harness.token("user/Observation.rs");
    let expired = {
        let mut claims = harness.claims("user/Patient.r");
        claims["exp"] = serde_json::json!(claims["iat"].as_i64().unwrap() - 100);
        harness.mint(&claims)
    };
    let cases: Vec<(&str, Vec<(&str, String)>)> = vec![
        ("/Patient/123", vec![]),
        (
            "/Patient/123",
            vec![("authorization", format!("Bearer {token}"))],
        ),
        (
            "/Patient/123",
            vec![("authorization", format!("Bearer {expired}"))],
        ),
        (
            "/Patient/123",
            vec![("authorization", "Bearer garbage.garbage.garbage".to_owned())],
        ),
        (
            "/metadata/../x",
            vec![("authorization", format!("Bearer {token}"))],
        ),
        (
            "/nothing",
            vec![("authorization", format!("Bearer {token}"))],
        ),
    ];
    for (path, headers) in cases {
        let headers: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
        let response = harness
            .client()
            .send(Method::GET, path, &headers, Bytes::new())
            .await;
        assert!(response.status.is_client_error(), "{path}");
        assert_eq!(response.json()["resourceType"], "OperationOutcome");
        assert_no_leak(
            &response,
            &[
                &token,
                &expired,
                "u-1",
                "app-1",
                &harness.upstream.url(),
                harness.dir.path().to_str().unwrap(),
            ],
        );
    }
    assert!(harness.upstream.received().is_empty());
}
