//! The TLS listener: ALPN, mutual TLS in both modes, bad client certificates, plaintext on the
//! TLS port, protocol versions, the explicit insecure plaintext mode, and connections that hold
//! a slot without using it (stalled handshakes, silent sessions, more than the cap allows).

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::client::{read_until_quiet, tls_config};
use crate::support::{Harness, Options, within};

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
async fn a_standard_client_handshakes_with_tls_1_2_and_1_3() {
    let harness = Harness::start().await;
    let connect = format!("127.0.0.1:{}", harness.addr().port());
    let results = tokio::task::spawn_blocking(move || {
        let handshake = |version: &str| {
            let output = std::process::Command::new("openssl")
                .args(["s_client", "-connect", &connect, "-servername", "localhost"])
                .arg(version)
                .stdin(std::process::Stdio::null())
                .output()
                .expect("openssl must be installed (.ci/run installs it)");
            let stdout = String::from_utf8_lossy(&output.stdout);
            stdout.contains("Cipher is ") && !stdout.contains("Cipher is (NONE)")
        };
        (handshake("-tls1_3"), handshake("-tls1_2"))
    })
    .await
    .unwrap();
    assert_eq!(results, (true, true));
}

/// Cipher suites offered by the hand-made ClientHellos below.
const AEAD_SUITES: [u16; 2] = [0xc02b, 0xc02f]; // ECDHE-{ECDSA,RSA}-AES128-GCM-SHA256
const CBC_SUITES: [u16; 4] = [0x002f, 0x000a, 0xc009, 0xc013]; // AES128-SHA, DES-CBC3-SHA, ECDHE-*-AES128-SHA

// The refusals are read off the wire from a ClientHello built by hand: a client library would
// refuse TLS 1.1 or CBC-only offers itself (OpenSSL 3 does at its default security level), and
// then a test would pass whatever phigate does. The first case shows the hand-made hello is one
// phigate answers, so the alerts in the others are about the version or the suites.
#[tokio::test]
async fn old_protocol_versions_and_non_aead_suites_get_a_server_alert() {
    const HANDSHAKE_FAILURE: u8 = 40;
    const PROTOCOL_VERSION: u8 = 70;
    let harness = Harness::start().await;
    let cases: [(&str, u16, &[u16], Answer); 4] = [
        ("TLS 1.2, AEAD", 0x0303, &AEAD_SUITES, Answer::ServerHello),
        (
            "TLS 1.1",
            0x0302,
            &AEAD_SUITES,
            Answer::FatalAlert(PROTOCOL_VERSION),
        ),
        (
            "TLS 1.0",
            0x0301,
            &CBC_SUITES,
            Answer::FatalAlert(PROTOCOL_VERSION),
        ),
        (
            "TLS 1.2, CBC only",
            0x0303,
            &CBC_SUITES,
            Answer::FatalAlert(HANDSHAKE_FAILURE),
        ),
    ];
    for (name, version, suites, expected) in cases {
        let answer = first_server_record(harness.addr(), &client_hello(version, suites)).await;
        assert_eq!(answer, expected, "{name}");
    }
    assert!(harness.upstream.received().is_empty());
}

/// The server's first record, as far as these tests tell answers apart.
#[derive(Debug, PartialEq, Eq)]
enum Answer {
    ServerHello,
    FatalAlert(u8),
    Other { content_type: u8, payload: Vec<u8> },
}

/// A TLS record holding one ClientHello with `legacy_version` = `version` and no
/// `supported_versions` extension (so it offers at most that version), `suites`, and the
/// extensions a TLS 1.2 server needs to choose an ECDHE suite.
fn client_hello(version: u16, suites: &[u16]) -> Vec<u8> {
    fn with_len(bytes: &[u8]) -> Vec<u8> {
        let mut out = u16::try_from(bytes.len()).unwrap().to_be_bytes().to_vec();
        out.extend_from_slice(bytes);
        out
    }
    let mut extensions = Vec::new();
    let host = with_len(b"localhost");
    let server_name = with_len(&[&[0u8][..], &host].concat());
    for (kind, body) in [
        (0x0000u16, server_name),
        (0x000a, with_len(&[0x00, 0x1d, 0x00, 0x17])), // groups: x25519, secp256r1
        (0x000b, vec![1, 0]),                          // point formats: uncompressed
        (0x000d, with_len(&[0x04, 0x03, 0x08, 0x04, 0x04, 0x01])), // ECDSA, PSS, PKCS#1 SHA-256
    ] {
        extensions.extend_from_slice(&kind.to_be_bytes());
        extensions.extend(with_len(&body));
    }
    let suite_bytes: Vec<u8> = suites.iter().flat_map(|s| s.to_be_bytes()).collect();
    let mut hello = version.to_be_bytes().to_vec();
    hello.extend_from_slice(&[0x5a; 32]); // random
    hello.push(0); // no session id
    hello.extend(with_len(&suite_bytes));
    hello.extend_from_slice(&[1, 0]); // compression: null only
    hello.extend(with_len(&extensions));
    let mut handshake = vec![0x01]; // client_hello
    handshake.extend_from_slice(&u32::try_from(hello.len()).unwrap().to_be_bytes()[1..]);
    handshake.extend(hello);
    let mut record = vec![0x16, 0x03, 0x01];
    record.extend(with_len(&handshake));
    record
}

/// Sends `hello` and reads the server's first record.
async fn first_server_record(addr: std::net::SocketAddr, hello: &[u8]) -> Answer {
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    tcp.write_all(hello).await.unwrap();
    let (content_type, payload) = tokio::time::timeout(Duration::from_secs(10), async {
        let mut header = [0u8; 5];
        tcp.read_exact(&mut header).await.unwrap();
        let mut payload = vec![0u8; usize::from(u16::from_be_bytes([header[3], header[4]]))];
        tcp.read_exact(&mut payload).await.unwrap();
        (header[0], payload)
    })
    .await
    .expect("the server answers a ClientHello");
    // RFC 8446 §5.1 record types: 22 handshake (a ServerHello is handshake type 2), 21 alert
    // (level 2 is fatal).
    match (content_type, payload.as_slice()) {
        (0x16, [0x02, ..]) => Answer::ServerHello,
        (0x15, [2, description]) => Answer::FatalAlert(*description),
        _ => Answer::Other {
            content_type,
            payload,
        },
    }
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

/// Longer than any deadline these tests configure: past it, phigate kept the connection.
const GUARD: Duration = Duration::from_secs(60);

/// Reads until phigate closes the connection (end of stream, or a reset): what it sent first.
async fn read_to_close<S: tokio::io::AsyncRead + Unpin>(stream: &mut S) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    within(GUARD, async {
        while let Ok(n @ 1..) = stream.read(&mut buf).await {
            out.extend_from_slice(&buf[..n]);
        }
    })
    .await;
    out
}

/// A TLS session to the gateway offering `alpn`, handshake done.
async fn tls_session(
    harness: &Harness,
    alpn: &[u8],
) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    let mut config = tls_config(&harness.ca, None);
    config.alpn_protocols = vec![alpn.to_vec()];
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(harness.addr())
        .await
        .unwrap();
    connector
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap()
}

// R-T01, R-T02: a peer that never starts a handshake, or stops after its ClientHello, is
// dropped at `listen.handshake_timeout` instead of holding a descriptor forever.
#[tokio::test]
async fn a_handshake_never_started_or_never_finished_is_closed_and_counted() {
    let harness = Harness::with(Options {
        listen_extra: "  handshake_timeout: 1s\n".to_owned(),
        ..Options::default()
    })
    .await;
    let mut silent = tokio::net::TcpStream::connect(harness.addr())
        .await
        .unwrap();
    assert!(read_to_close(&mut silent).await.is_empty());
    let mut hello_only = tokio::net::TcpStream::connect(harness.addr())
        .await
        .unwrap();
    hello_only
        .write_all(&client_hello(0x0303, &AEAD_SUITES))
        .await
        .unwrap();
    let answered = read_to_close(&mut hello_only).await;
    assert_eq!(answered.first(), Some(&0x16), "a ServerHello came first");
    let timeouts = "phigate_tls_handshake_failures_total{reason=\"timeout\"}";
    harness.eventually_metric(timeouts, 2.0).await;
    assert!(harness.upstream.received().is_empty());
}

// R-S03: hyper's header timeout starts only once the first bytes name the protocol, and HTTP/2
// has none; a session that never completes a first request head is closed at
// `listen.first_request_timeout`, whichever protocol it chose.
#[tokio::test]
async fn a_session_that_never_completes_a_first_request_is_closed_and_counted() {
    let harness = Harness::with(Options {
        listen_extra: "  first_request_timeout: 1s\n  header_read_timeout: 1s\n".to_owned(),
        ..Options::default()
    })
    .await;
    let mut silent = tls_session(&harness, b"http/1.1").await;
    assert!(read_to_close(&mut silent).await.is_empty());
    // The start of an HTTP/2 preface: too little for the gateway to tell which protocol it is.
    let mut trickle = tls_session(&harness, b"http/1.1").await;
    trickle.write_all(b"PRI * HTTP").await.unwrap();
    assert!(read_to_close(&mut trickle).await.is_empty());
    // An HTTP/2 preface and SETTINGS, then no stream at all.
    let mut h2 = tls_session(&harness, b"h2").await;
    h2.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")
        .await
        .unwrap();
    let settings = read_to_close(&mut h2).await;
    assert!(!settings.is_empty(), "the gateway spoke HTTP/2 first");
    let closed = "phigate_connections_closed_total{reason=\"first_request_timeout\"}";
    harness.eventually_metric(closed, 3.0).await;
    // After a first request, HTTP/1.1 bounds the idle wait for the next with the header timeout.
    let mut kept_alive = tls_session(&harness, b"http/1.1").await;
    kept_alive
        .write_all(b"GET /metadata HTTP/1.1\r\nHost: gw.test\r\n\r\n")
        .await
        .unwrap();
    let answered = String::from_utf8_lossy(&read_to_close(&mut kept_alive).await).into_owned();
    assert!(answered.starts_with("HTTP/1.1 200"), "{answered}");
    // A client that asks at once is served as before, and is not counted.
    assert_eq!(harness.client().get("/metadata").await.status, 200);
    assert_eq!(harness.h2_client().get("/metadata").await.status, 200);
    assert_eq!(harness.metric(closed).await, 3.0);
}

// R-S04: past `listen.max_connections` a new connection is closed as soon as it is accepted,
// before any TLS work; once the open ones go, new clients are served again.
#[tokio::test]
async fn connections_past_the_cap_are_closed_at_once_and_counted() {
    let harness = Harness::with(Options {
        listen_extra: "  max_connections: 2\n  handshake_timeout: 1m\n".to_owned(),
        ..Options::default()
    })
    .await;
    let held = [
        tokio::net::TcpStream::connect(harness.addr())
            .await
            .unwrap(),
        tokio::net::TcpStream::connect(harness.addr())
            .await
            .unwrap(),
    ];
    // Both accepted before the third arrives: with one event loop per core, another loop could
    // otherwise accept the third first.
    harness
        .eventually_metric("phigate_connections_open ", 2.0)
        .await;
    let mut third = tokio::net::TcpStream::connect(harness.addr())
        .await
        .unwrap();
    assert!(read_to_close(&mut third).await.is_empty());
    let over = "phigate_connections_closed_total{reason=\"over_capacity\"}";
    harness.eventually_metric(over, 1.0).await;
    assert_eq!(harness.metric("phigate_connections_open ").await, 2.0);
    drop(held);
    harness.eventually_serves_a_new_client().await;
}

// R-S04: one address gets at most `listen.max_connections_per_address` of the global cap; the
// next from it is closed at once, while another address is still served.
#[tokio::test]
async fn one_address_gets_at_most_its_share_of_connections() {
    let harness = Harness::with(Options {
        listen_extra: "  max_connections_per_address: 2\n  handshake_timeout: 1m\n".to_owned(),
        ..Options::default()
    })
    .await;
    let target = harness.addr();
    let connect_from = |address: [u8; 4]| async move {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind((address, 0).into()).unwrap();
        socket.connect(target).await.unwrap()
    };
    let held = [
        connect_from([127, 0, 0, 1]).await,
        connect_from([127, 0, 0, 1]).await,
    ];
    // As above: both accepted before the third arrives, whichever event loop takes each.
    harness
        .eventually_metric("phigate_connections_open ", 2.0)
        .await;
    let mut third = connect_from([127, 0, 0, 1]).await;
    assert!(read_to_close(&mut third).await.is_empty());
    let over = "phigate_connections_closed_total{reason=\"address_over_capacity\"}";
    harness.eventually_metric(over, 1.0).await;
    let connector = tokio_rustls::TlsConnector::from(Arc::new(tls_config(&harness.ca, None)));
    let elsewhere = connect_from([127, 0, 0, 2]).await;
    connector
        .connect(ServerName::try_from("localhost").unwrap(), elsewhere)
        .await
        .expect("another address completes its handshake");
    assert_eq!(harness.metric(over).await, 1.0);
    drop(held);
    harness.eventually_serves_a_new_client().await;
}

/// An HTTP/2 connection to the gateway; its driver runs until the gateway closes it.
async fn h2_connection(
    harness: &Harness,
) -> (
    hyper::client::conn::http2::SendRequest<http_body_util::Empty<bytes::Bytes>>,
    tokio::task::JoinHandle<()>,
) {
    let session = tls_session(harness, b"h2").await;
    let (sender, connection) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(session),
    )
    .await
    .unwrap();
    let driver = tokio::spawn(async move {
        let _ = connection.await;
    });
    (sender, driver)
}

async fn h2_get(
    sender: &mut hyper::client::conn::http2::SendRequest<http_body_util::Empty<bytes::Bytes>>,
) -> Option<u16> {
    sender.ready().await.ok()?;
    let request = http::Request::get("https://localhost/metadata")
        .body(http_body_util::Empty::new())
        .unwrap();
    let response = sender.send_request(request).await.ok()?;
    Some(response.status().as_u16())
}

// R-S03: hyper's HTTP/2 server has no idle bound and keep-alive pings only show the peer is
// alive; an HTTP/2 connection without a new request for `listen.idle_timeout` is closed, and
// one older than `listen.max_connection_age` is closed while in use — each after its requests
// finished, never cutting one off.
#[tokio::test]
async fn http2_connections_are_closed_when_idle_and_when_old() {
    let harness = Harness::with(Options {
        listen_extra: "  idle_timeout: 1s\n  max_connection_age: 3s\n".to_owned(),
        ..Options::default()
    })
    .await;
    let (mut idle, idle_driver) = h2_connection(&harness).await;
    assert_eq!(h2_get(&mut idle).await, Some(200));
    within(Duration::from_secs(10), idle_driver).await.unwrap();
    let closed = |reason: &str| format!("phigate_connections_closed_total{{reason=\"{reason}\"}}");
    harness
        .eventually_metric(&closed("idle_timeout"), 1.0)
        .await;

    let (mut busy, busy_driver) = h2_connection(&harness).await;
    let mut answered = 0;
    while let Some(status) = h2_get(&mut busy).await {
        assert_eq!(
            status, 200,
            "a request on a closing connection still completes"
        );
        answered += 1;
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(answered < 50, "the connection outlived its maximum age");
    }
    assert!(answered >= 5, "served while young: {answered}");
    within(Duration::from_secs(10), busy_driver).await.unwrap();
    harness.eventually_metric(&closed("max_age"), 1.0).await;
    assert_eq!(harness.metric(&closed("idle_timeout")).await, 1.0);
}
