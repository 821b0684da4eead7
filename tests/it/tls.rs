//! The TLS listener: ALPN, mutual TLS in both modes, bad client certificates, plaintext on the
//! TLS port, protocol versions, and the explicit insecure plaintext mode.

use std::time::{Duration, SystemTime};

use tokio::io::AsyncWriteExt;

use crate::support::client::read_until_quiet;
use crate::support::{Harness, Options};

#[tokio::test]
async fn serves_http1_and_http2_by_alpn() {
    let harness = Harness::start().await;
    assert_eq!(harness.client().get("/metadata").await.status, 200);
    assert_eq!(harness.h2_client().get("/metadata").await.status, 200);
    let versions: Vec<String> = harness
        .upstream
        .received()
        .into_iter()
        .map(|r| r.version)
        .collect();
    // The upstream leg is HTTP/1.1 whatever the client spoke.
    assert_eq!(versions, ["HTTP/1.1", "HTTP/1.1"]);
}

#[tokio::test]
async fn required_client_auth_refuses_clients_without_a_ca_certificate() {
    let harness = Harness::with(Options {
        client_auth: Some("required"),
        ..Options::default()
    })
    .await;
    assert!(
        harness
            .client()
            .try_send(http::Method::GET, "/metadata", &[], bytes::Bytes::new())
            .await
            .is_err()
    );
    let good = harness.ca.issue_client("app-1").unwrap();
    assert_eq!(
        harness
            .client_with_cert(&good)
            .get("/metadata")
            .await
            .status,
        200
    );
    let other_ca = phigate::tls::dev_ca::DevCa::new("other CA").unwrap();
    let foreign = other_ca.issue_client("app-1").unwrap();
    assert!(
        harness
            .client_with_cert(&foreign)
            .try_send(http::Method::GET, "/metadata", &[], bytes::Bytes::new())
            .await
            .is_err()
    );
    assert_eq!(harness.upstream.received().len(), 1);
}

#[tokio::test]
async fn optional_client_auth_still_refuses_invalid_certificates() {
    let harness = Harness::with(Options {
        client_auth: Some("optional"),
        ..Options::default()
    })
    .await;
    assert_eq!(harness.client().get("/metadata").await.status, 200);
    let good = harness.ca.issue_client("app-1").unwrap();
    assert_eq!(
        harness
            .client_with_cert(&good)
            .get("/metadata")
            .await
            .status,
        200
    );
    let now = SystemTime::now();
    let day = Duration::from_secs(86_400);
    let bad = [
        harness
            .ca
            .issue_client_with_validity("expired", now - 10 * day, now - day)
            .unwrap(),
        harness
            .ca
            .issue_client_with_validity("future", now + day, now + 10 * day)
            .unwrap(),
        harness
            .ca
            .issue_client_server_auth_only("server-only")
            .unwrap(),
        phigate::tls::dev_ca::DevCa::new("other CA")
            .unwrap()
            .issue_client("app-1")
            .unwrap(),
    ];
    for cert in &bad {
        let result = harness
            .client_with_cert(cert)
            .try_send(http::Method::GET, "/metadata", &[], bytes::Bytes::new())
            .await;
        assert!(
            result.is_err(),
            "an invalid certificate must fail the handshake"
        );
    }
    assert_eq!(harness.upstream.received().len(), 2);
}

#[tokio::test]
async fn plaintext_on_the_tls_port_gets_no_http_answer() {
    let harness = Harness::start().await;
    let mut tcp = tokio::net::TcpStream::connect(harness.addr())
        .await
        .unwrap();
    tcp.write_all(b"GET /metadata HTTP/1.1\r\nHost: gw.test\r\n\r\n")
        .await
        .unwrap();
    let answer = read_until_quiet(&mut tcp).await;
    assert!(!answer.contains("HTTP/"), "{answer}");
    assert!(
        !answer.to_ascii_lowercase().contains("location"),
        "{answer}"
    );
    assert!(harness.upstream.received().is_empty());
}

#[tokio::test]
async fn only_tls_1_2_and_1_3_with_aead_suites() {
    let harness = Harness::start().await;
    if std::process::Command::new("openssl")
        .arg("version")
        .output()
        .is_err()
    {
        eprintln!("openssl not installed; protocol-version probe skipped");
        return;
    }
    let connect = format!("127.0.0.1:{}", harness.addr().port());
    let results = tokio::task::spawn_blocking(move || {
        let handshake = |args: &[&str]| {
            let output = std::process::Command::new("openssl")
                .args(["s_client", "-connect", &connect, "-servername", "localhost"])
                .args(args)
                .stdin(std::process::Stdio::null())
                .output()
                .unwrap();
            let stdout = String::from_utf8_lossy(&output.stdout);
            stdout.contains("Cipher is ") && !stdout.contains("Cipher is (NONE)")
        };
        (
            handshake(&["-tls1_3"]),
            handshake(&["-tls1_2"]),
            handshake(&["-tls1_1"]),
            handshake(&["-tls1_2", "-cipher", "AES128-SHA:DES-CBC3-SHA:NULL-SHA"]),
        )
    })
    .await
    .unwrap();
    assert_eq!(results, (true, true, false, false));
}

#[tokio::test]
async fn insecure_plaintext_listener_serves_http_only_when_asked() {
    let harness = Harness::with(Options {
        insecure_plaintext: true,
        ..Options::default()
    })
    .await;
    let (status, _) = crate::support::client::plain_get(harness.addr(), "/metadata").await;
    assert_eq!(status, 200);
    assert_eq!(
        harness.upstream.received()[0].header("x-forwarded-proto"),
        Some("http")
    );
}
