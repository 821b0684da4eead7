use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rustls::RootCertStore;
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::ServerCertVerifier as _;
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::ClientCertVerifier;
use rustls_pki_types::{CertificateRevocationListDer, ServerName, UnixTime};

use super::*;

const DAY: Duration = Duration::from_secs(24 * 60 * 60);

fn roots(ca: &DevCa) -> Arc<RootCertStore> {
    let mut roots = RootCertStore::empty();
    roots.add(ca.cert_der()).unwrap();
    Arc::new(roots)
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

fn client_verifier(
    ca: &DevCa,
    crls: Vec<CertificateRevocationListDer<'static>>,
) -> Arc<dyn ClientCertVerifier> {
    WebPkiClientVerifier::builder_with_provider(roots(ca), provider())
        .with_crls(crls)
        .build()
        .unwrap()
}

/// Verifies `cert` as a server certificate for `name` against `ca`.
#[track_caller]
fn check_server(ca: &DevCa, cert: &IssuedCert, name: &str, expect_ok: bool) {
    let verifier = WebPkiServerVerifier::builder_with_provider(roots(ca), provider())
        .build()
        .unwrap();
    let name = ServerName::try_from(name.to_owned()).unwrap();
    let result = verifier.verify_server_cert(&cert.cert_der, &[], &name, &[], UnixTime::now());
    assert_eq!(result.is_ok(), expect_ok, "{name:?}: {result:?}");
}

/// Verifies `cert` as a client certificate against `ca`.
#[track_caller]
fn check_client(ca: &DevCa, cert: &IssuedCert, expect_ok: bool) {
    let result =
        client_verifier(ca, Vec::new()).verify_client_cert(&cert.cert_der, &[], UnixTime::now());
    assert_eq!(result.is_ok(), expect_ok, "{result:?}");
}

#[test]
fn server_cert_chains_to_ca_for_every_name() {
    let ca = DevCa::new("phigate test CA").unwrap();
    let server = ca.issue_server(&["localhost", "127.0.0.1", "::1"]).unwrap();
    check_server(&ca, &server, "localhost", true);
    check_server(&ca, &server, "127.0.0.1", true);
    check_server(&ca, &server, "::1", true);
    check_server(&ca, &server, "other.example", false);
    check_server(&ca, &server, "127.0.0.2", false);
}

#[test]
fn server_cert_from_another_ca_is_refused() {
    let ca = DevCa::new("phigate test CA").unwrap();
    let stranger = DevCa::new("someone else").unwrap();
    let server = stranger.issue_server(&["localhost"]).unwrap();
    check_server(&ca, &server, "localhost", false);
}

#[test]
fn client_certs_are_accepted_only_with_client_auth_and_in_validity() {
    let ca = DevCa::new("phigate test CA").unwrap();
    let now = SystemTime::now();
    let cases = [
        ("valid client", ca.issue_client("app-1").unwrap(), true),
        (
            "expired",
            ca.issue_client_with_validity("app-2", now - 10 * DAY, now - DAY)
                .unwrap(),
            false,
        ),
        (
            "not yet valid",
            ca.issue_client_with_validity("app-3", now + DAY, now + 10 * DAY)
                .unwrap(),
            false,
        ),
        (
            "serverAuth only",
            ca.issue_client_server_auth_only("app-4").unwrap(),
            false,
        ),
        (
            "server leaf",
            ca.issue_server(&["localhost"]).unwrap(),
            false,
        ),
    ];
    for (label, cert, expect_ok) in cases {
        let result = client_verifier(&ca, Vec::new()).verify_client_cert(
            &cert.cert_der,
            &[],
            UnixTime::now(),
        );
        assert_eq!(result.is_ok(), expect_ok, "{label}: {result:?}");
    }
}

#[test]
fn client_cert_carries_client_auth_eku() {
    let ca = DevCa::new("phigate test CA").unwrap();
    let client = ca.issue_client("app-1").unwrap();
    let (_, parsed) = x509_parser::parse_x509_certificate(&client.cert_der).unwrap();
    let eku = parsed.extended_key_usage().unwrap().unwrap().value;
    assert!(eku.client_auth);
    assert!(!eku.server_auth);
    check_client(&ca, &client, true);
}

#[test]
fn revoked_client_cert_is_refused() {
    let ca = DevCa::new("phigate test CA").unwrap();
    let revoked = ca.issue_client("revoked").unwrap();
    let kept = ca.issue_client("kept").unwrap();
    let crl = ca
        .revocation_list(&[&revoked], SystemTime::now() + DAY)
        .unwrap();
    let verifier = client_verifier(&ca, vec![crl]);
    assert!(
        verifier
            .verify_client_cert(&revoked.cert_der, &[], UnixTime::now())
            .is_err()
    );
    assert!(
        verifier
            .verify_client_cert(&kept.cert_der, &[], UnixTime::now())
            .is_ok()
    );
}

#[test]
fn pem_files_round_trip() {
    let ca = DevCa::new("phigate test CA").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let server = ca.issue_server(&["localhost"]).unwrap();
    let (cert_path, key_path) = server.write_pem_files(dir.path(), "server").unwrap();
    let ca_path = ca.write_cert_pem(dir.path(), "ca.crt").unwrap();
    assert_eq!(std::fs::read_to_string(cert_path).unwrap(), server.cert_pem);
    assert_eq!(std::fs::read_to_string(&key_path).unwrap(), server.key_pem);
    assert_eq!(std::fs::read_to_string(ca_path).unwrap(), ca.cert_pem());
    assert!(server.key_pem.starts_with("-----BEGIN PRIVATE KEY-----"));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(key_path).unwrap().permissions().mode();
        assert_eq!(
            mode & 0o077,
            0,
            "key file must not be group or world readable"
        );
    }
}
