//! Protocol-level refusals with raw bytes no well-behaved client sends: smuggling, duplicate
//! Host, methods never forwarded, override headers, `Expect: 100-continue` on a denial, and an
//! upload that stalls.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::Method;
use http_body::Frame;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::ServerName;

use crate::support::client::{raw_tls, tls_config};
use crate::support::{Harness, Options, assert_denied, assert_no_leak, within};

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

/// A request body that sends its first byte and then nothing, forever.
struct Stalled(bool);

impl http_body::Body for Stalled {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        if std::mem::replace(&mut self.0, true) {
            return Poll::Pending;
        }
        Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(b"{")))))
    }
}

/// POSTs a body that stalls over HTTP/2 and returns the status and body of the answer.
async fn stalled_h2_upload(harness: &Harness, bearer: &str) -> (u16, String) {
    let mut config = tls_config(&harness.ca, None);
    config.alpn_protocols = vec![b"h2".to_vec()];
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(harness.addr())
        .await
        .unwrap();
    let tls = connector
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
            .await
            .unwrap();
    tokio::spawn(conn);
    let request = http::Request::post("https://localhost/Observation")
        .header("authorization", bearer)
        .header("content-type", "application/fhir+json")
        .body(Stalled(false))
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    let status = response.status().as_u16();
    let body = http_body_util::BodyExt::collect(response.into_body())
        .await
        .map(|b| String::from_utf8_lossy(&b.to_bytes()).into_owned())
        .unwrap_or_default();
    (status, body)
}

// R-S02: an upload that stalls is the client's fault, answered 408 at `listen.limits.
// body_timeout` with nothing forwarded, long before the upstream's own timeout could be blamed.
#[tokio::test]
async fn a_stalled_upload_is_408_the_clients_fault_and_nothing_is_forwarded() {
    let harness = Harness::with(Options {
        listen_extra: "  limits:\n    body_timeout: 1s\n".to_owned(),
        upstream_timeout: "30s",
        ..Options::default()
    })
    .await;
    let token = harness.token("user/Observation.c");
    let bearer = format!("Bearer {token}");
    let guard = Duration::from_secs(25);
    let request = format!(
        "POST /Observation HTTP/1.1\r\nHost: gw.test\r\nAuthorization: {bearer}\r\nContent-Type: application/fhir+json\r\nContent-Length: 100\r\n\r\n{{\"resourceType\""
    );
    let answer = within(
        guard,
        raw_tls(harness.addr(), &harness.ca, request.as_bytes()),
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    let (status, body) = within(guard, stalled_h2_upload(&harness, &bearer)).await;
    assert_eq!(status, 408, "{body}");
    for text in [&answer, &body] {
        assert!(
            text.contains("\"resourceType\":\"OperationOutcome\""),
            "{text}"
        );
        assert!(
            !text.to_ascii_lowercase().contains("www-authenticate"),
            "{text}"
        );
        assert!(
            !text.contains(&token[..20]) && !text.contains("127.0.0.1"),
            "{text}"
        );
    }
    assert!(harness.upstream.received().is_empty());
    let deny = "phigate_decisions_total{rule=\"post-observation\",decision=\"deny\",reason=\"body_timeout\"}";
    assert_eq!(harness.metric(deny).await, 2.0);
    let error = "phigate_decisions_total{rule=\"post-observation\",decision=\"error\"";
    assert_eq!(harness.metric(error).await, 0.0);
}

/// A refused HTTP/2 request with a small body gets its refusal, not a stream reset: the body
/// that arrived with the headers is read and dropped before the answer, so the stream ends
/// cleanly. Before, curl reported "Stream error in the HTTP/2 framing layer" for about one such
/// request in five, because the unread body's reset could overtake the 403.
#[tokio::test]
async fn a_refused_h2_request_with_a_body_gets_its_answer_not_a_reset() {
    let harness = Harness::start().await;
    let ca = harness
        .ca
        .write_cert_pem(harness.dir.path(), "curl-ca.crt")
        .unwrap();
    // Patient.r cannot create: 403 insufficient_scope, decided before the body is read.
    let token = harness.token("user/Patient.r");
    let url = format!("https://localhost:{}/Patient", harness.addr().port());
    for _ in 0..30 {
        let output = tokio::process::Command::new("curl")
            .args([
                "--http2",
                "-sS",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code} %{http_version}",
            ])
            .arg("--cacert")
            .arg(&ca)
            .args(["-H", &format!("Authorization: Bearer {token}")])
            .args(["-H", "Content-Type: application/fhir+json"])
            .args(["--data", r#"{"resourceType": "Patient", "id": "new"}"#])
            .arg(&url)
            .output()
            .await
            .expect("curl must be installed (.ci/run installs it)");
        let written = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "{written} {}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert_eq!(written, "403 2");
    }
    assert!(harness.upstream.received().is_empty());
}
