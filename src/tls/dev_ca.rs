//! A throwaway certificate authority for `phigate demo` and for tests.
//!
//! `DevCa` mints a self-signed ECDSA P-256 root and leaf certificates for servers and clients,
//! including deliberately odd ones (expired, not yet valid, wrong extended key usage) so tests can
//! prove the gateway refuses them. Keys live in memory and are written to disk only when asked.
//! This module must never be used to build a production trust store: nothing here protects the
//! CA key, and a root made by it is trusted by nobody but the process that asked for it.

use std::fs;
use std::io;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, DnType,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyIdMethod, KeyPair, KeyUsagePurpose,
    PKCS_ECDSA_P256_SHA256, RevokedCertParams, SanType, SerialNumber,
};
use rustls_pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer};

/// How long an ordinary leaf stays valid: long enough for a demo, short like a real deployment.
const LEAF_LIFETIME: Duration = Duration::from_secs(90 * 24 * 60 * 60);
/// How long the root stays valid.
const CA_LIFETIME: Duration = Duration::from_secs(365 * 24 * 60 * 60);
/// Backdating absorbs clock differences between the test process and the verifier.
const BACKDATE: Duration = Duration::from_secs(60 * 60);

/// A self-signed development CA that issues server and client certificates.
pub struct DevCa {
    issuer: Issuer<'static, KeyPair>,
    cert_der: CertificateDer<'static>,
    cert_pem: String,
}

/// A certificate issued by a [`DevCa`], with its private key in PEM and DER forms.
#[derive(Debug)]
pub struct IssuedCert {
    /// The leaf certificate, PEM encoded.
    pub cert_pem: String,
    /// The leaf's PKCS#8 private key, PEM encoded.
    pub key_pem: String,
    /// The leaf certificate, DER encoded.
    pub cert_der: CertificateDer<'static>,
    /// The leaf's PKCS#8 private key, DER encoded.
    pub key_der: PrivateKeyDer<'static>,
    /// The certificate's serial number (big-endian), for revocation lists.
    pub serial: Vec<u8>,
}

// === impl DevCa ===

impl DevCa {
    /// Creates a new root CA whose subject common name is `common_name`.
    pub fn new(common_name: &str) -> Result<Self, rcgen::Error> {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
        let mut params = CertificateParams::default();
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        // A path length of zero: this root signs leaves only, never another CA.
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        params.key_identifier_method = KeyIdMethod::Sha256;
        let now = SystemTime::now();
        params.not_before = (now - BACKDATE).into();
        params.not_after = (now + CA_LIFETIME).into();
        params.serial_number = Some(random_serial());
        let cert = params.self_signed(&key)?;
        Ok(Self {
            cert_pem: cert.pem(),
            cert_der: cert.der().clone(),
            issuer: Issuer::new(params, key),
        })
    }

    /// The root certificate, PEM encoded.
    pub fn cert_pem(&self) -> String {
        self.cert_pem.clone()
    }

    /// The root certificate, DER encoded.
    pub fn cert_der(&self) -> CertificateDer<'static> {
        self.cert_der.clone()
    }

    /// Writes the root certificate to `dir/name` and returns the path.
    pub fn write_cert_pem(&self, dir: &Path, name: &str) -> io::Result<PathBuf> {
        let path = dir.join(name);
        fs::write(&path, &self.cert_pem)?;
        Ok(path)
    }

    /// Issues a serverAuth leaf for DNS names and IP addresses, valid for 90 days.
    pub fn issue_server(&self, names: &[&str]) -> Result<IssuedCert, rcgen::Error> {
        let common_name = names.first().copied().unwrap_or("phigate dev server");
        let mut params = Self::leaf_params(common_name);
        params.subject_alt_names = names
            .iter()
            .map(|name| match name.parse::<IpAddr>() {
                Ok(ip) => Ok(SanType::IpAddress(ip)),
                Err(_) => Ok(SanType::DnsName((*name).try_into()?)),
            })
            .collect::<Result<_, rcgen::Error>>()?;
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        self.issue_with(params, KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?)
    }

    /// Issues a clientAuth leaf for `common_name`, valid for 90 days.
    pub fn issue_client(&self, common_name: &str) -> Result<IssuedCert, rcgen::Error> {
        let mut params = Self::leaf_params(common_name);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        self.issue_with(params, KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?)
    }

    /// Issues a clientAuth leaf valid only between `not_before` and `not_after`.
    ///
    /// Tests use it for expired and not-yet-valid client certificates.
    pub fn issue_client_with_validity(
        &self,
        common_name: &str,
        not_before: SystemTime,
        not_after: SystemTime,
    ) -> Result<IssuedCert, rcgen::Error> {
        let mut params = Self::leaf_params(common_name);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.not_before = not_before.into();
        params.not_after = not_after.into();
        self.issue_with(params, KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?)
    }

    /// Issues a leaf named like a client but carrying only the serverAuth EKU.
    ///
    /// A verifier must refuse it as a client certificate (RFC 5280 §4.2.1.12).
    pub fn issue_client_server_auth_only(
        &self,
        common_name: &str,
    ) -> Result<IssuedCert, rcgen::Error> {
        let mut params = Self::leaf_params(common_name);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        self.issue_with(params, KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?)
    }

    /// Leaf parameters with a common name, a random serial and 90-day validity, and no EKU.
    pub fn leaf_params(common_name: &str) -> CertificateParams {
        let mut params = CertificateParams::default();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.use_authority_key_identifier_extension = true;
        params.serial_number = Some(random_serial());
        let now = SystemTime::now();
        params.not_before = (now - BACKDATE).into();
        params.not_after = (now + LEAF_LIFETIME).into();
        params
    }

    /// Signs arbitrary `params` for `key` with this CA, for certificates the helpers above don't make.
    pub fn issue_with(
        &self,
        mut params: CertificateParams,
        key: KeyPair,
    ) -> Result<IssuedCert, rcgen::Error> {
        let serial = params
            .serial_number
            .get_or_insert_with(random_serial)
            .to_bytes();
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(IssuedCert {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            cert_der: cert.der().clone(),
            key_der: PrivateKeyDer::from(key),
            serial,
        })
    }

    /// Signs a CRL listing `revoked`, valid from now until `next_update`.
    pub fn revocation_list(
        &self,
        revoked: &[&IssuedCert],
        next_update: SystemTime,
    ) -> Result<CertificateRevocationListDer<'static>, rcgen::Error> {
        let now = SystemTime::now();
        let params = CertificateRevocationListParams {
            this_update: (now - BACKDATE).into(),
            next_update: next_update.into(),
            crl_number: random_serial(),
            issuing_distribution_point: None,
            revoked_certs: revoked
                .iter()
                .map(|cert| RevokedCertParams {
                    serial_number: SerialNumber::from_slice(&cert.serial),
                    revocation_time: (now - BACKDATE).into(),
                    reason_code: None,
                    invalidity_date: None,
                })
                .collect(),
            key_identifier_method: KeyIdMethod::Sha256,
        };
        Ok(params.signed_by(&self.issuer)?.der().clone())
    }
}

// === impl IssuedCert ===

impl IssuedCert {
    /// Writes `dir/{stem}.crt` and `dir/{stem}.key` and returns their paths in that order.
    pub fn write_pem_files(&self, dir: &Path, stem: &str) -> io::Result<(PathBuf, PathBuf)> {
        let cert_path = dir.join(format!("{stem}.crt"));
        let key_path = dir.join(format!("{stem}.key"));
        fs::write(&cert_path, &self.cert_pem)?;
        write_private(&key_path, self.key_pem.as_bytes())?;
        Ok((cert_path, key_path))
    }
}

/// Writes a private key readable by its owner only, so a demo leaves no world-readable keys.
fn write_private(path: &Path, contents: &[u8]) -> io::Result<()> {
    use std::io::Write as _;
    let mut options = fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    options.open(path)?.write_all(contents)
}

/// A random 16-byte positive serial (RFC 5280 §4.1.2.2: unique per CA, at most 20 octets).
fn random_serial() -> SerialNumber {
    let mut bytes = uuid::Uuid::new_v4().into_bytes().to_vec();
    // Clearing the top bit keeps the DER INTEGER positive without a padding byte.
    if let Some(first) = bytes.first_mut() {
        *first &= 0x7f;
    }
    SerialNumber::from(bytes)
}

#[cfg(test)]
mod tests;
