//! The listener's TLS material, kept current without a restart: the certificate and key (one
//! pair), the client CA bundle and the client CAs' CRLs are each held as their last good value
//! and the exact bytes last tried. A new attempt that reads the same bytes (or fails the same
//! way) is no change, so a bad file is judged once, not at every trigger; a different one is
//! judged whole and either replaces the part or is refused while the old part keeps serving.
//! `LiveConfig` holds the `ServerConfig` every event loop takes for each new connection, so
//! a swap reaches new handshakes only and never touches an open connection. Nothing here
//! watches files, counts or logs: the reloader does, from the `Change`s returned.

use std::sync::Arc;
use std::time::SystemTime;

use arc_swap::ArcSwap;
use rustls::server::danger::ClientCertVerifier;
use rustls::server::{NoServerSessionStorage, WebPkiClientVerifier};
use rustls::sign::{CertifiedKey, SingleCertAndKey};
use rustls::{RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

use super::crl::Crl;
use super::freshness::{FreshCrls, Freshness};
use super::{
    ClientAuth, ClientCa, CrlLocation, CrlSource, ServerFile, TlsError, TlsFiles,
    check_not_expired, file_error, parse_certificates, provider, read_file, root_store_of,
};

/// The configuration new handshakes use, replaced whole by a reload.
pub struct LiveConfig(ArcSwap<ServerConfig>);

impl LiveConfig {
    /// Starts with `config`.
    pub fn new(config: Arc<ServerConfig>) -> Self {
        Self(ArcSwap::new(config))
    }

    /// An acceptor for one new connection, on the configuration current now.
    pub fn acceptor(&self) -> TlsAcceptor {
        TlsAcceptor::from(self.0.load_full())
    }

    /// Makes `config` the one new handshakes use.
    pub fn replace(&self, config: Arc<ServerConfig>) {
        self.0.store(config);
    }
}

/// What one read of a file or URL gave: its bytes, or why there are none.
pub type Attempt = Result<Vec<u8>, String>;

/// A part of the material, as metrics and logs name it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Part {
    /// The listener's certificate and key.
    Listener,
    /// The client CA bundle.
    ClientCa,
    /// One CRL source, by its label.
    Crl(String),
}

impl Part {
    /// The metric label: `listener`, `client_ca` or `client_crl`.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Listener => "listener",
            Self::ClientCa => "client_ca",
            Self::Crl(_) => "client_crl",
        }
    }
}

/// What became of a new attempt at a part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// It replaced the part.
    Accepted,
    /// The same CRL again: the list held is confirmed current.
    Confirmed,
    /// It was refused; the part keeps its last good value.
    Refused(String),
}

/// One part that a reload or a CRL read changed (or tried to).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// Which part.
    pub part: Part,
    /// What became of it.
    pub outcome: Outcome,
}

/// One CRL source's state, as metrics show it.
#[derive(Debug, Clone, PartialEq)]
pub struct CrlStatus {
    /// The source's label.
    pub label: String,
    /// Seconds since the last good read; none before the first.
    pub age: Option<i64>,
    /// Whether it holds handshakes presenting a certificate closed.
    pub stale: bool,
}

/// A part's last good value and the attempt it was last judged on.
struct Held<T, A> {
    attempted: A,
    value: T,
}

struct Pair {
    key: Arc<CertifiedKey>,
    not_after: SystemTime,
}

struct Authorities {
    certs: Vec<CertificateDer<'static>>,
    roots: Arc<RootCertStore>,
    /// The earliest notAfter in the bundle.
    not_after: SystemTime,
}

struct CrlSlot {
    label: String,
    /// The last attempt, and whether it was accepted.
    attempted: Option<(Attempt, bool)>,
    crl: Option<Crl>,
    /// Unix seconds of the last good read.
    confirmed_at: Option<i64>,
}

/// The listener's TLS material.
pub struct Material {
    files: TlsFiles,
    pair: Held<Pair, (Attempt, Attempt)>,
    authorities: Option<Held<Authorities, Attempt>>,
    crls: Vec<CrlSlot>,
    freshness: Arc<Freshness>,
}

// === impl Material ===

impl Material {
    /// Loads every file at start (CRL URLs are read later, by the reloader); every file's
    /// problem is reported, not only the first.
    pub fn load(files: &TlsFiles, now: i64) -> Result<Self, Vec<(ServerFile, TlsError)>> {
        let attempted = (
            read_attempt(&files.cert_file),
            read_attempt(&files.key_file),
        );
        let pair = pair(files, &attempted);
        let authorities = files
            .client_ca
            .as_ref()
            .map(|client_ca| {
                read_file(&client_ca.ca_file).and_then(|bytes| {
                    authorities(client_ca, &bytes).map(|value| Held {
                        attempted: Ok(bytes),
                        value,
                    })
                })
            })
            .transpose()
            .map_err(|err| vec![(ServerFile::ClientCa, err)]);
        let (pair, authorities) = match (pair, authorities) {
            (Ok(pair), Ok(authorities)) => (pair, authorities),
            (pair, authorities) => {
                return Err([pair.err(), authorities.err()]
                    .into_iter()
                    .flatten()
                    .flatten()
                    .collect());
            }
        };
        let mut material = Self {
            pair: Held {
                attempted,
                value: pair,
            },
            authorities,
            crls: crl_sources(files)
                .iter()
                .map(|source| CrlSlot {
                    label: source.location.label(),
                    attempted: None,
                    crl: None,
                    confirmed_at: None,
                })
                .collect(),
            files: files.clone(),
            freshness: Arc::new(Freshness::stale()),
        };
        let problems: Vec<_> = material
            .read_crl_files(now)
            .into_iter()
            .filter_map(|(path, change)| match change.outcome {
                Outcome::Refused(problem) => Some((ServerFile::Crl, file_error(&path, problem))),
                Outcome::Accepted | Outcome::Confirmed => None,
            })
            .collect();
        if !problems.is_empty() {
            return Err(problems);
        }
        material.publish_freshness();
        Ok(material)
    }

    /// Every local file the material comes from, to watch.
    pub fn files(&self) -> Vec<&std::path::Path> {
        let mut paths = vec![
            self.files.cert_file.as_path(),
            self.files.key_file.as_path(),
        ];
        if let Some(client_ca) = &self.files.client_ca {
            paths.push(&client_ca.ca_file);
            paths.extend(client_ca.crls.iter().filter_map(|s| match &s.location {
                CrlLocation::File(path) => Some(path.as_path()),
                CrlLocation::Url { .. } => None,
            }));
        }
        paths
    }

    /// The CRL sources, in the order `offer_crl` indexes them.
    pub fn crl_sources(&self) -> &[CrlSource] {
        crl_sources(&self.files)
    }

    /// Reads every file again; returns what changed.
    pub fn reload_files(&mut self, now: i64) -> Vec<Change> {
        let mut changes = Vec::new();
        let attempted = (
            read_attempt(&self.files.cert_file),
            read_attempt(&self.files.key_file),
        );
        if attempted != self.pair.attempted {
            let outcome = match pair(&self.files, &attempted) {
                Ok(pair) => {
                    self.pair.value = pair;
                    Outcome::Accepted
                }
                Err(problems) => Outcome::Refused(describe(&problems)),
            };
            self.pair.attempted = attempted;
            changes.push(Change {
                part: Part::Listener,
                outcome,
            });
        }
        if let (Some(client_ca), Some(held)) = (&self.files.client_ca, &mut self.authorities) {
            let attempted = read_attempt(&client_ca.ca_file);
            if attempted != held.attempted {
                let outcome = match &attempted {
                    Ok(bytes) => match authorities(client_ca, bytes) {
                        Ok(value) => {
                            held.value = value;
                            Outcome::Accepted
                        }
                        Err(err) => Outcome::Refused(err.to_string()),
                    },
                    Err(problem) => Outcome::Refused(
                        file_error(&client_ca.ca_file, problem.clone()).to_string(),
                    ),
                };
                held.attempted = attempted;
                changes.push(Change {
                    part: Part::ClientCa,
                    outcome,
                });
            }
        }
        changes.extend(
            self.read_crl_files(now)
                .into_iter()
                .map(|(_, change)| change),
        );
        changes
    }

    /// Reads every CRL file again; returns what changed, with the file.
    fn read_crl_files(&mut self, now: i64) -> Vec<(std::path::PathBuf, Change)> {
        let files: Vec<(usize, std::path::PathBuf)> = self
            .crl_sources()
            .iter()
            .enumerate()
            .filter_map(|(index, source)| match &source.location {
                CrlLocation::File(path) => Some((index, path.clone())),
                CrlLocation::Url { .. } => None,
            })
            .collect();
        files
            .into_iter()
            .filter_map(|(index, path)| {
                let change = self.offer_crl(index, read_attempt(&path), now)?;
                Some((path, change))
            })
            .collect()
    }

    /// Judges a new read of CRL source `index`; `None` when it is the bad list already refused.
    pub fn offer_crl(&mut self, index: usize, attempted: Attempt, now: i64) -> Option<Change> {
        let roots = self
            .authorities
            .as_ref()
            .map(|held| (held.value.certs.clone(), Arc::clone(&held.value.roots)));
        let slot = self.crls.get_mut(index)?;
        let part = Part::Crl(slot.label.clone());
        if let Some((previous, accepted)) = &slot.attempted
            && *previous == attempted
        {
            // The same bytes again: a good list is confirmed current, a bad one not re-judged.
            if !*accepted {
                return None;
            }
            slot.confirmed_at = Some(now);
            return Some(Change {
                part,
                outcome: Outcome::Confirmed,
            });
        }
        let judged = match (&attempted, roots) {
            (Err(err), _) => Err(err.clone()),
            (Ok(_), None) => Err("no client CA to check it against".to_owned()),
            (Ok(bytes), Some((certs, roots))) => judge_crl(bytes, &certs, roots, slot, now),
        };
        slot.attempted = Some((attempted, judged.is_ok()));
        let outcome = match judged {
            Ok(crl) => {
                slot.crl = Some(crl);
                slot.confirmed_at = Some(now);
                Outcome::Accepted
            }
            Err(problem) => Outcome::Refused(problem),
        };
        Some(Change { part, outcome })
    }

    /// The configuration for new handshakes, from the last good value of every part.
    pub fn config(&self) -> Result<Arc<ServerConfig>, TlsError> {
        let builder = ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(|err| TlsError::Rustls(err.to_string()))?;
        let builder = match (&self.files.client_ca, &self.authorities) {
            (Some(client_ca), Some(held)) => {
                builder.with_client_cert_verifier(self.client_verifier(client_ca, &held.value)?)
            }
            _ => builder.with_no_client_auth(),
        };
        let mut config = builder.with_cert_resolver(Arc::new(SingleCertAndKey::from(Arc::clone(
            &self.pair.value.key,
        ))));
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        if !crl_sources(&self.files).is_empty() {
            // A resumed session skips certificate verification: with CRLs, every handshake
            // must present the certificate again, or a revoked client (or one resuming while a
            // CRL is stale) would get in on a session from before.
            config.session_storage = Arc::new(NoServerSessionStorage {});
            config.send_tls13_tickets = 0;
        }
        Ok(Arc::new(config))
    }

    fn client_verifier(
        &self,
        client_ca: &ClientCa,
        authorities: &Authorities,
    ) -> Result<Arc<dyn ClientCertVerifier>, TlsError> {
        let verifier =
            WebPkiClientVerifier::builder_with_provider(Arc::clone(&authorities.roots), provider());
        let verifier = match client_ca.auth {
            ClientAuth::Required => verifier,
            // A presented certificate is still verified: an invalid one is a failed
            // handshake, never a silent downgrade to "no certificate" (N-05).
            ClientAuth::Optional => verifier.allow_unauthenticated(),
        };
        if client_ca.crls.is_empty() {
            return verifier
                .build()
                .map_err(|err| TlsError::Rustls(err.to_string()));
        }
        // Unknown status stays an error (webpki's default): a certificate from a CA whose CRL
        // phigate does not hold is refused. Only the end entity is checked, so intermediates
        // need no CRL of their own; a compromised intermediate leaves the CA bundle instead.
        let verifier = verifier
            .with_crls(
                self.crls
                    .iter()
                    .filter_map(|s| s.crl.as_ref())
                    .map(|c| c.der().clone()),
            )
            .only_check_end_entity_revocation()
            .enforce_revocation_expiration()
            .build()
            .map_err(|err| TlsError::Rustls(err.to_string()))?;
        Ok(Arc::new(FreshCrls::new(
            verifier,
            Arc::clone(&self.freshness),
        )))
    }

    /// Moves the handshake's staleness bound to what the CRLs held now allow. Called after the
    /// configuration holding them is live, so a fresher bound never covers older lists.
    pub fn publish_freshness(&self) {
        self.freshness.set_stale_from(self.stale_from());
    }

    /// The bound [`Self::publish_freshness`] moves (never stale without CRLs, once loaded).
    pub fn freshness(&self) -> Arc<Freshness> {
        Arc::clone(&self.freshness)
    }

    /// The earliest moment a CRL goes stale: its `nextUpdate`, or its last good read plus
    /// `client_crl_max_stale`; never for no CRLs, already for a source never read.
    fn stale_from(&self) -> i64 {
        let max_stale = self.max_stale();
        self.crls
            .iter()
            .map(|slot| slot_stale_from(slot, max_stale))
            .min()
            .unwrap_or(i64::MAX)
    }

    fn max_stale(&self) -> i64 {
        self.files.client_ca.as_ref().map_or(0, |client_ca| {
            i64::try_from(client_ca.crl_max_stale.as_secs()).unwrap_or(i64::MAX)
        })
    }

    /// Each CRL source's age and staleness at `now`.
    pub fn crl_status(&self, now: i64) -> Vec<CrlStatus> {
        let max_stale = self.max_stale();
        self.crls
            .iter()
            .map(|slot| CrlStatus {
                label: slot.label.clone(),
                age: slot.confirmed_at.map(|at| now.saturating_sub(at)),
                stale: slot_stale_from(slot, max_stale) <= now,
            })
            .collect()
    }

    /// The listener certificate's notAfter.
    pub fn listener_not_after(&self) -> SystemTime {
        self.pair.value.not_after
    }

    /// The earliest notAfter of the client CA bundle, when one is configured.
    pub fn client_ca_not_after(&self) -> Option<SystemTime> {
        self.authorities.as_ref().map(|held| held.value.not_after)
    }
}

impl Change {
    /// The part's label in logs: its name, or a CRL source's label.
    pub fn part_label(&self) -> &str {
        match &self.part {
            Part::Crl(label) => label,
            part => part.name(),
        }
    }
}

fn crl_sources(files: &TlsFiles) -> &[CrlSource] {
    files
        .client_ca
        .as_ref()
        .map_or(&[], |client_ca| client_ca.crls.as_slice())
}

fn slot_stale_from(slot: &CrlSlot, max_stale: i64) -> i64 {
    match (&slot.crl, slot.confirmed_at) {
        (Some(crl), Some(at)) => crl
            .next_update()
            .unwrap_or(i64::MAX)
            .min(at.saturating_add(max_stale)),
        _ => i64::MIN,
    }
}

/// A CRL read, checked: parsed, signed by a client CA, in date, not older than the one held
/// (a replayed old list would un-revoke certificates), and one webpki accepts.
fn judge_crl(
    bytes: &[u8],
    authorities: &[CertificateDer<'static>],
    roots: Arc<RootCertStore>,
    slot: &CrlSlot,
    now: i64,
) -> Result<Crl, String> {
    let crl = Crl::parse(bytes, authorities, now).map_err(|err| err.to_string())?;
    if slot
        .crl
        .as_ref()
        .is_some_and(|held| crl.this_update() < held.this_update())
    {
        return Err("older than the list held (its thisUpdate is earlier)".to_owned());
    }
    WebPkiClientVerifier::builder_with_provider(roots, provider())
        .with_crls([crl.der().clone()])
        .build()
        .map_err(|err| format!("refused by the verifier: {err}"))?;
    Ok(crl)
}

/// The certificate chain and key, matched and in date.
fn pair(
    files: &TlsFiles,
    (cert, key): &(Attempt, Attempt),
) -> Result<Pair, Vec<(ServerFile, TlsError)>> {
    let chain = as_read(cert, &files.cert_file)
        .and_then(|bytes| parse_certificates(&files.cert_file, bytes))
        .and_then(|chain| {
            check_not_expired(&files.cert_file, &chain[0]).map(|not_after| (chain, not_after))
        });
    let key = key
        .as_deref()
        .map_err(Clone::clone)
        .and_then(|bytes| PrivateKeyDer::from_pem_slice(bytes).map_err(|err| err.to_string()))
        .map_err(|problem| {
            file_error(
                &files.key_file,
                format!("cannot read the private key: {problem}"),
            )
        });
    match (chain, key) {
        (Ok((chain, not_after)), Ok(key)) => CertifiedKey::from_der(chain, key, &provider())
            .map(|key| Pair {
                key: Arc::new(key),
                not_after,
            })
            .map_err(|_| {
                vec![(
                    ServerFile::Key,
                    TlsError::KeyMismatch {
                        cert: files.cert_file.clone(),
                        key: files.key_file.clone(),
                    },
                )]
            }),
        (chain, key) => Err([
            chain.err().map(|e| (ServerFile::Certificate, e)),
            key.err().map(|e| (ServerFile::Key, e)),
        ]
        .into_iter()
        .flatten()
        .collect()),
    }
}

/// The client CA bundle: every certificate usable as a trust anchor.
fn authorities(client_ca: &ClientCa, bytes: &[u8]) -> Result<Authorities, TlsError> {
    let path = &client_ca.ca_file;
    let certs = parse_certificates(path, bytes)?;
    let roots = root_store_of(path, &certs)?;
    let not_after = certs
        .iter()
        .map(super::not_after)
        .collect::<Option<Vec<_>>>()
        .and_then(|dates| dates.into_iter().min())
        .ok_or_else(|| file_error(path, "a CA certificate cannot be parsed"))?;
    Ok(Authorities {
        certs,
        roots: Arc::new(roots),
        not_after,
    })
}

/// One read of a file of the material, as reloads compare them: its bytes, or what went wrong
/// (without the path, which the caller names).
pub fn read_attempt(path: &std::path::Path) -> Attempt {
    read_file(path).map_err(|err| err.problem())
}

/// A read, as the parsers take it.
fn as_read<'a>(attempt: &'a Attempt, path: &std::path::Path) -> Result<&'a [u8], TlsError> {
    attempt
        .as_deref()
        .map_err(|problem| file_error(path, problem.clone()))
}

fn describe(problems: &[(ServerFile, TlsError)]) -> String {
    problems
        .iter()
        .map(|(_, err)| err.to_string())
        .collect::<Vec<_>>()
        .join("; ")
}

#[cfg(test)]
mod tests;
