//! `phigate probe`: runs a catalogue of attacks against a running gateway (phigate or any
//! other) and judges every answer. Parts: `cases` (the catalogue as data), `target` (the HTTP
//! and raw TLS client), `forge` (token variants, re-signed with the issuer's key when given),
//! `keys` (the issuer's published key, for HMAC confusion), `hello` (old-TLS ClientHellos),
//! `dpop`, `fhir` (patient confinement), `leak` (what no answer may hold) and `report`.
//! It only sends requests and reads answers: it never prints (the CLI does), never writes the
//! tokens it holds into a report, and never sends a destructive method.

pub mod cases;
pub mod dpop;
pub mod fhir;
pub mod forge;
pub mod hello;
pub mod keys;
pub mod leak;
pub mod prover;
pub mod report;
pub mod target;

use std::path::PathBuf;

use self::cases::{Case, Context, Expect, Send};
use self::forge::{AttackerKey, Forger, Token};
use self::hello::HelloAnswer;
use self::leak::Secrets;
use self::prover::Prover;
use self::report::{CaseResult, Report, Verdict};
use self::target::{Reply, Target, TlsFiles};

/// What to probe and with what.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// The gateway, `https://host:port[/base]`.
    pub target: String,
    /// A valid access token for `path`.
    pub token: String,
    /// The path (and query) the token may read, e.g. `/Patient/123`.
    pub path: String,
    /// A CA bundle to trust instead of the web PKI.
    pub ca: Option<PathBuf>,
    /// A client certificate for mutual TLS.
    pub cert: Option<PathBuf>,
    /// Its private key.
    pub key: Option<PathBuf>,
    /// The issuer's private key (PEM), to re-sign variants realistically.
    pub issuer_key: Option<PathBuf>,
    /// The issuer's JWKS URL, when discovery from `iss` does not find it.
    pub jwks: Option<String>,
    /// Where the gateway tells clients it is (DPoP `htu`, links), when not `target`.
    pub public_url: Option<String>,
    /// The patient the token is confined to.
    pub patient: Option<String>,
    /// Another patient, whose data must never come back.
    pub other_patient: Option<String>,
    /// The DPoP key `token` is bound to (PKCS#8 PEM): every request with the token proves it.
    pub dpop_key: Option<PathBuf>,
    /// Send the HTTP client's requests over HTTP/2 (ALPN `h2`); raw requests stay HTTP/1.1.
    pub http2: bool,
}

/// Why a probe could not run.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    /// An argument or file is unusable.
    #[error("{0}")]
    Usage(String),
    /// The target cannot be reached over TLS.
    #[error("cannot reach the target: {0}")]
    Unreachable(String),
    /// A key could not be generated or a token signed.
    #[error("a signing operation failed")]
    Crypto,
}

/// Runs every case against `options.target`. The positive control runs first; when the valid
/// token is refused on `path`, the run stops there (`Report::stopped`).
pub async fn run(options: &Options) -> Result<Report, ProbeError> {
    // jsonwebtoken signs through the provider installed here (a second install is harmless).
    let _ = jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER.install_default();
    if !options.path.starts_with('/') {
        return Err(ProbeError::Usage("--path must start with /".to_owned()));
    }
    let forger = forger(options)?;
    let files = TlsFiles {
        ca: options.ca.as_deref(),
        cert: options.cert.as_deref(),
        key: options.key.as_deref(),
    };
    let public_url = options
        .public_url
        .clone()
        .unwrap_or_else(|| options.target.clone());
    let mut target = Target::new(&options.target, files)?;
    if options.http2 {
        target = target.with_http2();
    }
    if let Some(path) = &options.dpop_key {
        let pem = std::fs::read(path)
            .map_err(|err| ProbeError::Usage(format!("--dpop-key {}: {err}", path.display())))?;
        target = target.with_prover(Prover::new(&pem, &forger.token, &public_url)?);
    }
    target.reachable().await?;
    let published = keys::find(
        options.jwks.as_deref(),
        forger.token.claim_str("iss"),
        forger.token.header_str("kid"),
        options.ca.as_deref(),
    )
    .await;
    let attacker = AttackerKey::generate()?;
    let ctx = Context {
        forger: &forger,
        path: &options.path,
        published: &published,
        attacker: &attacker,
    };
    let confinement = confinement(options, &target, &public_url);
    let secrets = Secrets::new(&forger.token.text, &forger.token.claims);
    let judge = Judge {
        target: &target,
        secrets: &secrets,
        confinement: confinement.as_ref(),
    };

    let mut report = Report {
        target: target.url(),
        ..Report::default()
    };
    let mut planned = cases::plan(&ctx).into_iter();
    if let Some(control) = planned.next() {
        let result = judge.case(&control).await;
        let allowed = result.verdict == Verdict::Pass;
        report.results.push(result);
        if !allowed {
            report.stopped = Some(format!(
                "the valid token was not allowed on GET {}: check --token, --path and --target (and --cert for mutual TLS); no attack was run",
                options.path
            ));
            return Ok(report);
        }
    }
    for case in planned {
        report.results.push(judge.case(&case).await);
    }
    report
        .results
        .extend(judge.dpop(&forger, &options.path, &public_url).await);
    for case in fhir_cases(options, &forger) {
        report.results.push(judge.case(&case).await);
    }
    Ok(report)
}

/// The given token taken apart, with the issuer's key when `--issuer-key` names one.
fn forger(options: &Options) -> Result<Forger, ProbeError> {
    let token = Token::parse(options.token.trim())?;
    let issuer_key =
        match &options.issuer_key {
            Some(path) => Some(std::fs::read(path).map_err(|err| {
                ProbeError::Usage(format!("--issuer-key {}: {err}", path.display()))
            })?),
            None => None,
        };
    Forger::new(token, issuer_key.as_deref())
}

/// What FHIR answers are checked against, when another patient was named.
fn confinement(options: &Options, target: &Target, public_url: &str) -> Option<fhir::Confinement> {
    let mut origins = vec![target.origin()];
    origins.extend(fhir::origin(public_url));
    options
        .other_patient
        .as_ref()
        .map(|other| fhir::Confinement {
            other: other.clone(),
            origins,
        })
}

/// The FHIR cases, when both patients were named.
fn fhir_cases(options: &Options, forger: &Forger) -> Vec<Case> {
    match (&options.patient, &options.other_patient) {
        (Some(own), Some(other)) => fhir::plan(
            &fhir::Patients {
                own: own.clone(),
                other: other.clone(),
            },
            &forger.token.text,
        ),
        _ => Vec::new(),
    }
}

/// Sends cases to the target and judges the answers.
struct Judge<'a> {
    target: &'a Target,
    secrets: &'a Secrets,
    confinement: Option<&'a fhir::Confinement>,
}

// === impl Judge ===

impl Judge<'_> {
    /// Sends one case and judges what came back.
    async fn case(&self, case: &Case) -> CaseResult {
        let (observed, verdict) = match &case.send {
            Send::Skip(reason) => ("not run".to_owned(), Verdict::Skipped(reason.clone())),
            Send::Http(outgoing) | Send::Raw(outgoing) => {
                let reply = match &case.send {
                    Send::Raw(_) => self.target.send_raw(outgoing).await,
                    _ => self.target.send(outgoing).await,
                };
                let secrets = self.secrets.with_tokens(&sent_tokens(outgoing));
                judge_reply(case.expect, &reply, &secrets, self.confinement)
            }
            Send::Plaintext => judge_plaintext(self.target.plaintext().await),
            Send::OldTls(version) => judge_hello(self.target.old_hello(*version).await),
        };
        let observed = match case.note {
            Some(note) => format!("{observed} [{note}]"),
            None => observed,
        };
        CaseResult {
            id: case.id,
            reference: case.reference,
            expectation: case.expect.describe(),
            observed,
            verdict,
        }
    }

    /// Runs and judges the DPoP cases.
    async fn dpop(&self, forger: &Forger, path: &str, public_url: &str) -> Vec<CaseResult> {
        let mut results = Vec::new();
        for (id, planned) in dpop::run(self.target, forger, path, public_url).await {
            let expect = dpop::expectation(id);
            let (observed, verdict) = match planned {
                Ok((reply, sent)) => {
                    judge_reply(expect, &reply, &self.secrets.with_tokens(&sent), None)
                }
                Err(reason) => ("not run".to_owned(), Verdict::Skipped(reason)),
            };
            results.push(CaseResult {
                id,
                reference: dpop::reference(id),
                expectation: expect.describe(),
                observed,
                verdict,
            });
        }
        results
    }
}

/// The plaintext case: anything but an HTTP answer passes.
fn judge_plaintext(answer: Result<Vec<u8>, String>) -> (String, Verdict) {
    match answer {
        Ok(bytes) if bytes.starts_with(b"HTTP/") => {
            let line = String::from_utf8_lossy(bytes.get(..12).unwrap_or(&bytes)).into_owned();
            (format!("an HTTP answer ({line})"), Verdict::Fail)
        }
        Ok(bytes) if bytes.is_empty() => ("closed".to_owned(), Verdict::Pass),
        Ok(bytes) => match hello::classify(&bytes) {
            HelloAnswer::Alert(..) => ("a TLS alert".to_owned(), Verdict::Pass),
            _ => ("non-HTTP bytes".to_owned(), Verdict::Pass),
        },
        Err(reason) => (reason, Verdict::Fail),
    }
}

/// An old-TLS case: an alert or a close passes, a ServerHello fails.
fn judge_hello(answer: Result<HelloAnswer, String>) -> (String, Verdict) {
    match answer {
        Ok(HelloAnswer::Alert(_, description)) => (format!("alert {description}"), Verdict::Pass),
        Ok(HelloAnswer::Closed) => ("closed".to_owned(), Verdict::Pass),
        Ok(HelloAnswer::ServerHello(chosen)) => (
            format!("ServerHello {}", hello::version_name(chosen)),
            Verdict::Fail,
        ),
        Ok(HelloAnswer::Other(byte)) => (format!("unexpected bytes (0x{byte:02x})"), Verdict::Fail),
        Err(reason) => (reason, Verdict::Fail),
    }
}

/// Judges an HTTP reply against `expect`: the status, then the leak and confinement checks.
fn judge_reply(
    expect: Expect,
    reply: &Reply,
    secrets: &Secrets,
    confinement: Option<&fhir::Confinement>,
) -> (String, Verdict) {
    let answer = match reply {
        Reply::Answered(answer) => answer,
        Reply::Closed(reason) => {
            let verdict = match expect {
                Expect::RefusedOrClosed(_) => Verdict::Pass,
                _ => Verdict::Fail,
            };
            return (format!("no answer: {reason}"), verdict);
        }
    };
    let status = answer.status;
    let mut findings = Vec::new();
    // The allowed answers carry the data the token may read; everything else is checked.
    if !matches!(expect, Expect::Allowed | Expect::Confined) || status >= 400 {
        findings.extend(secrets.findings(answer));
    }
    let status_ok = match expect {
        Expect::Allowed => (200..300).contains(&status),
        Expect::Refused(set) | Expect::RefusedOrClosed(set) => set.contains(&status),
        Expect::Confined => {
            if let Some(confinement) = confinement {
                findings.extend(confinement.findings(answer));
            }
            (200..300).contains(&status) || (400..500).contains(&status)
        }
        Expect::NoHttp | Expect::NoServerHello => false,
    };
    let observed = match findings.is_empty() {
        true => status.to_string(),
        false => format!("{status}; {}", findings.join(", ")),
    };
    let verdict = match status_ok && findings.is_empty() {
        true => Verdict::Pass,
        false => Verdict::Fail,
    };
    (observed, verdict)
}

/// The credentials a request carries (Authorization and DPoP values, query tokens), so the
/// leak check looks for them too.
fn sent_tokens(outgoing: &target::Outgoing) -> Vec<String> {
    let mut tokens: Vec<String> = outgoing
        .headers
        .iter()
        .filter(|(name, _)| name == "authorization" || name == "dpop")
        .flat_map(|(_, value)| {
            value
                .split([' ', '\t', ',', '"'])
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .filter(|word| word.len() >= 20)
        .collect();
    if let Some((_, query)) = outgoing.path.split_once('?') {
        tokens.extend(
            query
                .split('&')
                .filter_map(|pair| pair.strip_prefix("access_token="))
                .map(str::to_owned),
        );
    }
    tokens
}

#[cfg(test)]
mod tests;
