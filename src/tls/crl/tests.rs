use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;

use super::*;
use crate::tls::dev_ca::DevCa;
use crate::tls::unix_now;

const DAY: Duration = Duration::from_secs(86_400);

fn pem(der: &[u8]) -> Vec<u8> {
    let body = base64::engine::general_purpose::STANDARD.encode(der);
    format!("-----BEGIN X509 CRL-----\n{body}\n-----END X509 CRL-----\n").into_bytes()
}

#[track_caller]
fn check(bytes: &[u8], authorities: &[CertificateDer<'_>], expected: Result<(), CrlError>) {
    assert_eq!(
        Crl::parse(bytes, authorities, unix_now()).map(|_| ()),
        expected
    );
}

#[test]
fn only_a_list_signed_by_a_client_ca_and_in_date_is_accepted() {
    let ca = DevCa::new("client CA").unwrap();
    let other = DevCa::new("other CA").unwrap();
    let revoked = ca.issue_client("revoked").unwrap();
    let good = ca
        .revocation_list(&[&revoked], SystemTime::now() + DAY)
        .unwrap();
    let foreign = other.revocation_list(&[], SystemTime::now() + DAY).unwrap();
    // After its thisUpdate (backdated an hour), before now.
    let expired = ca
        .revocation_list(&[], SystemTime::now() - Duration::from_secs(1800))
        .unwrap();
    let both = [other.cert_der(), ca.cert_der()];
    check(good.as_ref(), &[ca.cert_der()], Ok(()));
    check(&pem(good.as_ref()), &both, Ok(()));
    check(foreign.as_ref(), &[ca.cert_der()], Err(CrlError::NotSigned));
    check(good.as_ref(), &[other.cert_der()], Err(CrlError::NotSigned));
    check(expired.as_ref(), &[ca.cert_der()], Err(CrlError::Expired));
    check(b"not a CRL", &[ca.cert_der()], Err(CrlError::Unparseable));
    check(
        b"-----BEGIN X509 CRL-----\nAAAA\n-----END X509 CRL-----\n",
        &[ca.cert_der()],
        Err(CrlError::Unparseable),
    );
    // A signature bit flipped: parsed, but signed by nobody.
    let mut tampered = good.as_ref().to_vec();
    let last = tampered.len() - 1;
    tampered[last] ^= 1;
    check(&tampered, &[ca.cert_der()], Err(CrlError::NotSigned));
}

#[test]
fn dates_are_read_from_the_list() {
    let ca = DevCa::new("client CA").unwrap();
    let next = SystemTime::now() + DAY;
    let crl = Crl::parse(
        ca.revocation_list(&[], next).unwrap().as_ref(),
        &[ca.cert_der()],
        unix_now(),
    )
    .unwrap();
    let next = i64::try_from(next.duration_since(UNIX_EPOCH).unwrap().as_secs()).unwrap();
    assert_eq!(crl.next_update(), Some(next));
    assert!(crl.this_update() < unix_now());
}
