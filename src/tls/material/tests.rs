use std::path::Path;
use std::time::{Duration, SystemTime};

use super::*;
use crate::tls::dev_ca::DevCa;
use crate::tls::unix_now;

const DAY: Duration = Duration::from_secs(86_400);

/// A listener with a client CA and one CRL URL (read only through `offer_crl` here).
fn files(dir: &Path, ca: &DevCa) -> TlsFiles {
    ca.issue_server(&["localhost"])
        .unwrap()
        .write_pem_files(dir, "server")
        .unwrap();
    ca.write_cert_pem(dir, "clients-ca.crt").unwrap();
    TlsFiles {
        cert_file: dir.join("server.crt"),
        key_file: dir.join("server.key"),
        client_ca: Some(ClientCa {
            ca_file: dir.join("clients-ca.crt"),
            auth: ClientAuth::Required,
            crls: vec![CrlSource {
                location: CrlLocation::Url {
                    url: "http://pki.test/ca.crl".parse().unwrap(),
                    ca_file: None,
                },
                refresh: Duration::from_secs(60),
            }],
            crl_max_stale: Duration::from_secs(3600),
        }),
    }
}

fn outcomes(changes: &[Change]) -> Vec<(&'static str, bool)> {
    changes
        .iter()
        .map(|c| (c.part.name(), matches!(c.outcome, Outcome::Accepted)))
        .collect()
}

#[test]
fn a_bad_pair_is_refused_once_and_a_good_one_taken() {
    let dir = tempfile::tempdir().unwrap();
    let ca = DevCa::new("CA").unwrap();
    let files = files(dir.path(), &ca);
    let mut material = Material::load(&files, unix_now()).unwrap();
    let first = material.listener_not_after();
    assert!(
        material.reload_files(unix_now()).is_empty(),
        "nothing changed"
    );

    // Another certificate's key: refused, and judged once however often it is read.
    let other = ca.issue_server(&["localhost"]).unwrap();
    std::fs::write(&files.key_file, &other.key_pem).unwrap();
    assert_eq!(
        outcomes(&material.reload_files(unix_now())),
        [("listener", false)]
    );
    assert!(material.reload_files(unix_now()).is_empty());
    std::fs::write(&files.key_file, "garbage").unwrap();
    assert_eq!(
        outcomes(&material.reload_files(unix_now())),
        [("listener", false)]
    );
    assert_eq!(material.listener_not_after(), first);

    // The matching certificate lands: taken.
    std::fs::write(&files.cert_file, &other.cert_pem).unwrap();
    std::fs::write(&files.key_file, &other.key_pem).unwrap();
    assert_eq!(
        outcomes(&material.reload_files(unix_now())),
        [("listener", true)]
    );
    assert!(material.config().is_ok());

    // An unreadable CA bundle is refused; the old one stays.
    std::fs::write(&files.client_ca.as_ref().unwrap().ca_file, "nothing").unwrap();
    assert_eq!(
        outcomes(&material.reload_files(unix_now())),
        [("client_ca", false)]
    );
    assert!(material.client_ca_not_after().is_some());
}

#[test]
fn an_expired_listener_certificate_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let ca = DevCa::new("CA").unwrap();
    let files = files(dir.path(), &ca);
    let mut material = Material::load(&files, unix_now()).unwrap();
    let mut params = DevCa::leaf_params("localhost");
    params.not_before = (SystemTime::now() - 10 * DAY).into();
    params.not_after = (SystemTime::now() - DAY).into();
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let expired = ca.issue_with(params, key).unwrap();
    expired.write_pem_files(dir.path(), "server").unwrap();
    let changes = material.reload_files(unix_now());
    assert_eq!(outcomes(&changes), [("listener", false)]);
    assert!(
        matches!(&changes[0].outcome, Outcome::Refused(p) if p.contains("expired")),
        "{changes:?}"
    );
}

#[test]
fn crls_are_judged_confirmed_and_bound_staleness() {
    let dir = tempfile::tempdir().unwrap();
    let ca = DevCa::new("CA").unwrap();
    let files = files(dir.path(), &ca);
    let mut material = Material::load(&files, unix_now()).unwrap();
    let t = unix_now();
    // Never read: stale from the start.
    assert!(material.crl_status(t)[0].stale);
    assert_eq!(material.stale_from(), i64::MIN);

    let older = ca.revocation_list(&[], SystemTime::now() + DAY).unwrap();
    std::thread::sleep(Duration::from_millis(1100));
    let newer = ca.revocation_list(&[], SystemTime::now() + DAY).unwrap();
    let offer = |m: &mut Material, bytes: &[u8], at: i64| {
        m.offer_crl(0, Ok(bytes.to_vec()), at).map(|c| c.outcome)
    };
    assert_eq!(
        offer(&mut material, newer.as_ref(), t),
        Some(Outcome::Accepted)
    );
    assert!(!material.crl_status(t)[0].stale);
    // The max-stale bound comes before nextUpdate here.
    assert_eq!(material.stale_from(), t + 3600);
    assert!(material.crl_status(t + 3600)[0].stale);
    // The same list again re-confirms it.
    assert_eq!(
        offer(&mut material, newer.as_ref(), t + 100),
        Some(Outcome::Confirmed)
    );
    assert_eq!(material.stale_from(), t + 3700);
    // A replayed older list, garbage, another CA's list: refused, the held list kept.
    assert!(matches!(
        offer(&mut material, older.as_ref(), t),
        Some(Outcome::Refused(_))
    ));
    assert!(matches!(
        offer(&mut material, b"garbage", t),
        Some(Outcome::Refused(_))
    ));
    assert_eq!(offer(&mut material, b"garbage", t), None, "judged once");
    let foreign = DevCa::new("other")
        .unwrap()
        .revocation_list(&[], SystemTime::now() + DAY);
    assert!(matches!(
        offer(&mut material, foreign.unwrap().as_ref(), t),
        Some(Outcome::Refused(_))
    ));
    assert!(matches!(
        material
            .offer_crl(0, Err("timed out".into()), t)
            .map(|c| c.outcome),
        Some(Outcome::Refused(_))
    ));
    assert_eq!(material.stale_from(), t + 3700);
    // No resumption past the certificate check.
    assert_eq!(material.config().unwrap().send_tls13_tickets, 0);
}
