//! Certificate rotation and client-certificate revocation without a restart (issue #13): the
//! listener's certificate replaced by a plain write, a rename into place, a Kubernetes `..data`
//! swap and SIGHUP reaches new handshakes while an open connection keeps going; a bad pair is
//! refused, counted, and the old certificate served on; a replaced client CA lets the new CA's
//! clients in and keeps the old one's out; CRLs from a file and over HTTP refuse a revoked
//! client while another is served, and a stale CRL fails mutual TLS closed until a fresh one
//! arrives. Certificates are read off real handshakes, never inferred.

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::Empty;
use phigate::tls::dev_ca::{DevCa, IssuedCert};
use rustls::pki_types::CertificateDer;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::support::client::tls_connect;
use crate::support::documents::DocumentServer;
use crate::support::{Harness, Options, eventually, pem_crl};

const DAY: Duration = Duration::from_secs(86_400);
/// Longer than any reload here takes; the waits poll for the event.
const LIMIT: Duration = Duration::from_secs(20);

/// A TLS handshake with the gateway (as `client`, when given): the certificate it served, or
/// why the handshake failed.
async fn handshake(
    harness: &Harness,
    client: Option<&IssuedCert>,
) -> Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>, std::io::Error> {
    handshake_at(harness.addr(), &harness.ca, client).await
}

/// [`handshake`] with the gateway at `addr` (a binary gateway's).
async fn handshake_at(
    addr: std::net::SocketAddr,
    ca: &DevCa,
    client: Option<&IssuedCert>,
) -> Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>, std::io::Error> {
    let mut tls = tls_connect(addr, ca, client, b"http/1.1").await?;
    // TLS 1.3 reports a refused client certificate only after the handshake: a request shows
    // whether the session is really served.
    tls.write_all(b"GET /metadata HTTP/1.1\r\nHost: gw.test\r\nConnection: close\r\n\r\n")
        .await?;
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    while let Ok(n @ 1..) = tls.read(&mut buf).await {
        answer.extend_from_slice(&buf[..n]);
    }
    if !answer.starts_with(b"HTTP/1.1 200") {
        return Err(std::io::Error::other(
            String::from_utf8_lossy(&answer).into_owned(),
        ));
    }
    Ok(tls)
}

/// The leaf certificate a new handshake gets.
async fn served(harness: &Harness) -> CertificateDer<'static> {
    let tls = handshake(harness, None).await.unwrap();
    tls.get_ref().1.peer_certificates().unwrap()[0].clone()
}

async fn eventually_served(harness: &Harness, cert: &IssuedCert) {
    eventually(LIMIT, || async { served(harness).await == cert.cert_der }).await;
}

async fn eventually_accepted(harness: &Harness, client: &IssuedCert, accepted: bool) {
    eventually(LIMIT, || async {
        handshake(harness, Some(client)).await.is_ok() == accepted
    })
    .await;
}

/// An HTTP/1.1 connection (as `client`, when given) kept open across a rotation.
async fn open_connection(
    harness: &Harness,
    client: Option<&IssuedCert>,
) -> hyper::client::conn::http1::SendRequest<Empty<Bytes>> {
    let tls = tls_connect(harness.addr(), &harness.ca, client, b"http/1.1")
        .await
        .unwrap();
    let (sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
            .await
            .unwrap();
    tokio::spawn(connection);
    sender
}

async fn get_on(sender: &mut hyper::client::conn::http1::SendRequest<Empty<Bytes>>) -> u16 {
    sender.ready().await.unwrap();
    let request = http::Request::get("/metadata")
        .header("host", "gw.test")
        .body(Empty::new())
        .unwrap();
    sender
        .send_request(request)
        .await
        .unwrap()
        .status()
        .as_u16()
}

fn not_after(der: &[u8]) -> i64 {
    let (_, cert) = x509_parser::parse_x509_certificate(der).unwrap();
    cert.validity().not_after.timestamp()
}

fn expiry_series(name: &str) -> String {
    format!("phigate_tls_certificate_expiry_timestamp_seconds{{name=\"{name}\"}}")
}

/// Writes `name` in the harness folder aside, then renames it into place.
fn rename_into_place(dir: &Path, name: &str, contents: &str) {
    let aside = dir.join(format!("{name}.tmp"));
    std::fs::write(&aside, contents).unwrap();
    std::fs::rename(&aside, dir.join(name)).unwrap();
}

#[tokio::test]
async fn a_replaced_listener_certificate_reaches_new_handshakes_while_old_connections_go_on() {
    let harness = Harness::start().await;
    let dir = harness.dir.path();
    let original = served(&harness).await;
    let mut old = open_connection(&harness, None).await;
    assert_eq!(get_on(&mut old).await, 200);

    // A plain write of both files.
    let written = harness.ca.issue_server(&["localhost"]).unwrap();
    written.write_pem_files(dir, "server").unwrap();
    eventually_served(&harness, &written).await;
    assert_ne!(written.cert_der, original);
    // The connection opened before keeps its session and is still served.
    assert_eq!(get_on(&mut old).await, 200);

    // Rename into place, as config managers do.
    let renamed = harness.ca.issue_server(&["localhost"]).unwrap();
    rename_into_place(dir, "server.key", &renamed.key_pem);
    rename_into_place(dir, "server.crt", &renamed.cert_pem);
    eventually_served(&harness, &renamed).await;

    // A Kubernetes Secret volume: the files are symlinks through `..data`, and an update swaps
    // `..data` to a new timestamped folder in one rename.
    let first = harness.ca.issue_server(&["localhost"]).unwrap();
    let second = harness.ca.issue_server(&["localhost"]).unwrap();
    std::fs::create_dir(dir.join("..2026_12_07_a")).unwrap();
    first
        .write_pem_files(&dir.join("..2026_12_07_a"), "server")
        .unwrap();
    std::os::unix::fs::symlink("..2026_12_07_a", dir.join("..data")).unwrap();
    for name in ["server.crt", "server.key"] {
        let link = dir.join(format!("{name}.link"));
        std::os::unix::fs::symlink(format!("..data/{name}"), &link).unwrap();
        std::fs::rename(&link, dir.join(name)).unwrap();
    }
    eventually_served(&harness, &first).await;
    std::fs::create_dir(dir.join("..2026_12_07_b")).unwrap();
    second
        .write_pem_files(&dir.join("..2026_12_07_b"), "server")
        .unwrap();
    std::os::unix::fs::symlink("..2026_12_07_b", dir.join("..data_tmp")).unwrap();
    std::fs::rename(dir.join("..data_tmp"), dir.join("..data")).unwrap();
    eventually_served(&harness, &second).await;

    assert_eq!(get_on(&mut old).await, 200);
    // The expiry metric follows the certificate served.
    assert_eq!(
        harness.metric(&expiry_series("listener")).await,
        not_after(&second.cert_der) as f64
    );
    assert!(
        harness
            .metric("phigate_tls_reloads_total{name=\"listener\"}")
            .await
            >= 4.0
    );
}

#[tokio::test]
async fn a_mismatched_key_or_garbage_is_refused_counted_and_the_old_certificate_served() {
    let harness = Harness::start().await;
    let dir = harness.dir.path();
    let original = served(&harness).await;
    let failures = "phigate_tls_reload_failures_total{name=\"listener\"}";
    assert_eq!(harness.metric(failures).await, 0.0);

    let other = harness.ca.issue_server(&["localhost"]).unwrap();
    rename_into_place(dir, "server.key", &other.key_pem);
    harness.eventually_metric(failures, 1.0).await;
    assert_eq!(served(&harness).await, original);

    rename_into_place(dir, "server.crt", "not a certificate");
    harness.eventually_metric(failures, 2.0).await;
    assert_eq!(served(&harness).await, original);
    assert_eq!(
        harness
            .metric("phigate_tls_reloads_total{name=\"listener\"}")
            .await,
        0.0
    );
    // A good pair again: taken.
    rename_into_place(dir, "server.crt", &other.cert_pem);
    eventually_served(&harness, &other).await;
}

#[tokio::test]
async fn sighup_reloads_a_certificate_changed_unseen() {
    let harness = Harness::start().await;
    let (child, addr) = crate::support::spawn_binary_gateway(&harness.config_file).await;
    // Hard links in another folder: writes through them change the files without an event
    // in the folder phigate watches, so only SIGHUP can make it look.
    let aside = tempfile::tempdir().unwrap();
    for name in ["server.crt", "server.key"] {
        std::fs::hard_link(harness.dir.path().join(name), aside.path().join(name)).unwrap();
    }
    let rotated = harness.ca.issue_server(&["localhost"]).unwrap();
    std::fs::write(aside.path().join("server.key"), &rotated.key_pem).unwrap();
    std::fs::write(aside.path().join("server.crt"), &rotated.cert_pem).unwrap();
    let status = std::process::Command::new("kill")
        .args(["-HUP", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    eventually(LIMIT, || async {
        let tls = tls_connect(addr, &harness.ca, None, b"http/1.1")
            .await
            .unwrap();
        tls.get_ref().1.peer_certificates().unwrap()[0] == rotated.cert_der
    })
    .await;
    crate::support::stop_binary_gateway(child).await;
}

#[tokio::test]
async fn a_replaced_client_ca_admits_its_clients_and_no_longer_the_old_ones() {
    let harness = Harness::with(Options {
        client_auth: Some("required"),
        ..Options::default()
    })
    .await;
    let old_client = harness.ca.issue_client("old-app").unwrap();
    let new_ca = DevCa::new("new client CA").unwrap();
    let new_client = new_ca.issue_client("new-app").unwrap();
    eventually_accepted(&harness, &old_client, true).await;
    assert!(handshake(&harness, Some(&new_client)).await.is_err());

    // An overlap bundle first: both CAs' clients are admitted.
    let bundle = format!("{}{}", harness.ca.cert_pem(), new_ca.cert_pem());
    rename_into_place(harness.dir.path(), "clients-ca.crt", &bundle);
    eventually_accepted(&harness, &new_client, true).await;
    assert!(handshake(&harness, Some(&old_client)).await.is_ok());
    // Then the new CA alone.
    rename_into_place(harness.dir.path(), "clients-ca.crt", &new_ca.cert_pem());
    eventually_accepted(&harness, &old_client, false).await;
    assert!(handshake(&harness, Some(&new_client)).await.is_ok());
    assert_eq!(
        harness.metric(&expiry_series("client_ca")).await,
        not_after(&new_ca.cert_der()) as f64
    );
    // A bundle that is no bundle is refused; the new CA keeps serving.
    rename_into_place(harness.dir.path(), "clients-ca.crt", "garbage");
    harness
        .eventually_metric("phigate_tls_reload_failures_total{name=\"client_ca\"}", 1.0)
        .await;
    assert!(handshake(&harness, Some(&new_client)).await.is_ok());
}

/// A client CA with a client to revoke and one to keep.
fn ca_and_two_clients() -> (DevCa, IssuedCert, IssuedCert) {
    let ca = DevCa::new("client CA").unwrap();
    let revoked = ca.issue_client("revoked-app").unwrap();
    let kept = ca.issue_client("kept-app").unwrap();
    (ca, revoked, kept)
}

#[tokio::test]
async fn a_crl_file_refuses_the_revoked_client_while_another_is_served() {
    let (ca, revoked, kept) = ca_and_two_clients();
    let empty = ca.revocation_list(&[], SystemTime::now() + DAY).unwrap();
    let harness = Harness::with(Options {
        client_auth: Some("required"),
        tls_extra: "    client_crls:\n      - file: clients.crl\n".into(),
        files: vec![("clients.crl", pem_crl(empty.as_ref()))],
        ca: Some(ca),
        ..Options::default()
    })
    .await;
    assert!(handshake(&harness, Some(&revoked)).await.is_ok());
    let mut kept_connection = open_connection(&harness, Some(&kept)).await;
    assert_eq!(get_on(&mut kept_connection).await, 200);

    std::thread::sleep(Duration::from_millis(1100)); // a later thisUpdate, to the second
    let listing = harness
        .ca
        .revocation_list(&[&revoked], SystemTime::now() + DAY)
        .unwrap();
    rename_into_place(
        harness.dir.path(),
        "clients.crl",
        &pem_crl(listing.as_ref()),
    );
    eventually_accepted(&harness, &revoked, false).await;
    assert!(handshake(&harness, Some(&kept)).await.is_ok());
    assert_eq!(get_on(&mut kept_connection).await, 200);
    // The refusal was the handshake's, counted as a bad certificate.
    assert!(
        harness
            .metric("phigate_tls_handshake_failures_total{reason=\"bad_certificate\"}")
            .await
            >= 1.0
    );
    // A list signed by another CA is refused, and the listing list kept.
    let forged = DevCa::new("client CA")
        .unwrap()
        .revocation_list(&[], SystemTime::now() + DAY)
        .unwrap();
    rename_into_place(harness.dir.path(), "clients.crl", &pem_crl(forged.as_ref()));
    harness
        .eventually_metric(
            "phigate_tls_reload_failures_total{name=\"client_crl\"}",
            1.0,
        )
        .await;
    assert!(handshake(&harness, Some(&revoked)).await.is_err());
    assert!(handshake(&harness, Some(&kept)).await.is_ok());
}

#[tokio::test]
async fn a_crl_over_http_revokes_and_a_stale_one_fails_closed_until_a_fresh_one_arrives() {
    let (ca, revoked, kept) = ca_and_two_clients();
    let listing = ca
        .revocation_list(&[&revoked], SystemTime::now() + DAY)
        .unwrap();
    let server = DocumentServer::start(listing.as_ref().to_vec()).await;
    let harness = Harness::with(Options {
        client_auth: Some("optional"),
        tls_extra: format!(
            "    client_crl_max_stale: 3s\n    client_crls:\n      - url: \"{}\"\n        refresh: 500ms\n",
            server.url("clients.crl")
        ),
        ca: Some(ca),
        ..Options::default()
    })
    .await;
    let source = "source=\"http:127.0.0.1/clients.crl\"";
    eventually_accepted(&harness, &kept, true).await;
    assert!(handshake(&harness, Some(&revoked)).await.is_err());
    assert_eq!(
        harness
            .metric(&format!("phigate_tls_crl_stale{{{source}}}"))
            .await,
        0.0
    );
    assert_eq!(harness.admin_get("/readyz").await.0, 200);
    // ETag revalidation confirms the list held.
    eventually(LIMIT, || async { server.not_modified() > 0 }).await;

    // The publisher goes away: past client_crl_max_stale, presenting a certificate fails the
    // handshake; a client without one (client_auth: optional) is still served.
    server.withdraw();
    eventually_accepted(&harness, &kept, false).await;
    harness
        .eventually_metric(&format!("phigate_tls_crl_stale{{{source}}}"), 1.0)
        .await;
    assert!(handshake(&harness, None).await.is_ok());
    // The replica leaves the load balancer's rotation while it refuses mutual-TLS clients.
    assert_eq!(harness.admin_get("/readyz").await.0, 503);
    assert_eq!(harness.metric("phigate_ready").await, 0.0);

    // A fresh list, revoking no one: both clients are back, by themselves.
    let fresh = harness
        .ca
        .revocation_list(&[], SystemTime::now() + DAY)
        .unwrap();
    server.publish(fresh.as_ref().to_vec());
    eventually_accepted(&harness, &kept, true).await;
    eventually_accepted(&harness, &revoked, true).await;
    assert_eq!(harness.admin_get("/readyz").await.0, 200);
    eventually(LIMIT, || async {
        harness
            .metric(&format!("phigate_tls_crl_stale{{{source}}}"))
            .await
            == 0.0
    })
    .await;

    assert!(
        harness
            .metric(&format!("phigate_tls_crl_age_seconds{{{source}}}"))
            .await
            < 3.0
    );
}

#[tokio::test]
async fn expiry_timestamps_are_the_certificates_not_after() {
    let harness = Harness::with(Options {
        client_auth: Some("optional"),
        upstream_tls: Some(true),
        ..Options::default()
    })
    .await;
    // The upstream's appears once phigate has verified it on a real exchange.
    let (_, metrics) = harness.admin_get("/metrics").await;
    assert!(!metrics.contains(&expiry_series("upstream")), "{metrics}");
    let listener = served(&harness).await;
    assert_eq!(
        harness.metric(&expiry_series("listener")).await,
        not_after(&listener) as f64
    );
    assert_eq!(
        harness.metric(&expiry_series("client_ca")).await,
        not_after(&harness.ca.cert_der()) as f64
    );
    assert_eq!(harness.client().get("/metadata").await.status, 200);
    let upstream = upstream_certificate(&harness).await;
    assert_eq!(
        harness.metric(&expiry_series("upstream")).await,
        not_after(&upstream) as f64
    );
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as f64;
    assert!(harness.metric(&expiry_series("upstream")).await > now);
}

/// The certificate the harness's TLS upstream serves, read off a handshake of our own.
async fn upstream_certificate(harness: &Harness) -> CertificateDer<'static> {
    let config = std::fs::read_to_string(&harness.config_file).unwrap();
    let port: u16 = config
        .split("https://localhost:")
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .and_then(|port| port.parse().ok())
        .unwrap();
    let upstream = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let tls = tls_connect(upstream, &harness.ca, None, b"http/1.1")
        .await
        .unwrap();
    tls.get_ref().1.peer_certificates().unwrap()[0].clone()
}

/// SIGHUP also fetches every URL CRL at once, as it reads every file: a list published between
/// two timer reads (an hour apart here) is in force as soon as the operator asks.
#[tokio::test]
async fn sighup_fetches_a_url_crl_at_once() {
    let (ca, revoked, kept) = ca_and_two_clients();
    let empty = ca.revocation_list(&[], SystemTime::now() + DAY).unwrap();
    let server = DocumentServer::start(empty.as_ref().to_vec()).await;
    let harness = Harness::with(Options {
        client_auth: Some("optional"),
        tls_extra: format!(
            "    client_crls:\n      - url: \"{}\"\n        refresh: 1h\n",
            server.url("clients.crl")
        ),
        ca: Some(ca),
        ..Options::default()
    })
    .await;
    let (child, addr) = crate::support::spawn_binary_gateway(&harness.config_file).await;
    let accepted = |client: &'static str| {
        let (harness, addr) = (&harness, addr);
        let cert = if client == "revoked" { &revoked } else { &kept };
        async move { handshake_at(addr, &harness.ca, Some(cert)).await.is_ok() }
    };
    eventually(LIMIT, || accepted("revoked")).await;
    let listing = harness
        .ca
        .revocation_list(&[&revoked], SystemTime::now() + DAY)
        .unwrap();
    server.publish(listing.as_ref().to_vec());
    let status = std::process::Command::new("kill")
        .args(["-HUP", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    eventually(LIMIT, || async { !accepted("revoked").await }).await;
    assert!(accepted("kept").await);
    crate::support::stop_binary_gateway(child).await;
}
