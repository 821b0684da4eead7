//! `phigate explain`: which rule a request matches, what it needs, what the token has, and the
//! decision with its reason — without contacting the upstream. `--claims` takes a JSON file of
//! claims as-is; `--token` verifies the token against the issuer's JWKS first, and a refused
//! token still gets the whole table, its decision naming the refusal. It never prints the token.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use http::Method;
use serde_json::{Map, Value};

use super::offline::{self, Allowed, OfflineRequest, OfflineToken, Verdict};
use crate::config::Config;
use crate::token::{BearerToken, TokenFault, VerifiedToken, Verifier};

/// What `explain` was asked about.
pub struct Question<'a> {
    pub config: &'a Path,
    pub method: &'a str,
    pub target: &'a str,
    pub token: Option<&'a str>,
    pub claims: Option<&'a Path>,
    pub body: Option<&'a Path>,
    /// `Name: value` headers.
    pub headers: &'a [String],
}

/// Prints the explanation; exit code 0 when allowed, 1 when denied.
#[expect(clippy::print_stdout, reason = "cli/ is the only place that prints")]
pub async fn run(question: Question<'_>) -> anyhow::Result<std::process::ExitCode> {
    let config = Config::load(question.config).map_err(|err| anyhow::anyhow!("{err}"))?;
    let method =
        Method::from_bytes(question.method.as_bytes()).context("--method is not an HTTP method")?;
    let credentials = match (question.token, question.claims) {
        (Some(token), _) => verify(&config, token).await?,
        (None, Some(path)) => trusted(&config, read_claims(path)?),
        (None, None) => Credentials::Absent,
    };
    let body = match question.body {
        Some(path) => {
            Some(std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?)
        }
        None => None,
    };
    let token = match &credentials {
        Credentials::Absent => OfflineToken::Absent,
        Credentials::Verified(token) => OfflineToken::Verified(token),
        Credentials::Refused { fault, .. } => OfflineToken::Refused(*fault),
    };
    let headers = question
        .headers
        .iter()
        .map(|line| {
            let (name, value) = line
                .split_once(':')
                .ok_or_else(|| anyhow::anyhow!("--header takes 'Name: value'"))?;
            offline::header(name, value).map_err(|problem| anyhow::anyhow!("--header: {problem}"))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let request = OfflineRequest {
        method: &method,
        target: question.target,
        headers: &headers,
        body: body.as_deref(),
    };
    // The gateway's own chain decides: a public or unmatched route never reads the token.
    let verdict = offline::decide(&config.policy, &config.discovery, &request, &token);
    print!(
        "{}",
        render(&method, question.target, &credentials, &verdict)
    );
    Ok(if verdict.outcome.is_ok() {
        std::process::ExitCode::SUCCESS
    } else {
        std::process::ExitCode::FAILURE
    })
}

/// What the request carries in place of a token, as `explain` was told.
enum Credentials {
    /// No token.
    Absent,
    /// Verified from `--token`, or `--claims` taken as verified (through the same claim rules).
    Verified(Arc<VerifiedToken>),
    /// A `--token` the gateway would refuse; for unavailable keys, each JWKS URL that failed
    /// and why.
    Refused {
        fault: TokenFault,
        key_failures: Vec<String>,
    },
}

fn read_claims(path: &Path) -> anyhow::Result<Map<String, Value>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    match serde_json::from_str::<Value>(&text).context("--claims must hold a JSON object")? {
        Value::Object(map) => Ok(map),
        _ => anyhow::bail!("--claims must hold a JSON object"),
    }
}

async fn verify(config: &Config, token: &str) -> anyhow::Result<Credentials> {
    let _ = jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER.install_default();
    let verifier = Verifier::new(
        &config.issuers,
        &config.tokens,
        Arc::new(crate::telemetry::Metrics::new()),
    )?;
    let fault = match verifier.verify(&BearerToken::new(token)).await {
        Ok(verified) => return Ok(Credentials::Verified(verified)),
        Err(fault) => fault,
    };
    // The verifier's own fetch failed without saying why; fetching again tells the operator
    // which endpoint to look at (the URL and the cause, nothing from the token).
    let key_failures = if fault == TokenFault::KeysUnavailable {
        let failures = verifier.fetch_keys().await;
        failures
            .iter()
            .map(|(uri, err)| format!("{uri}: JWKS {err}"))
            .collect()
    } else {
        Vec::new()
    };
    Ok(Credentials::Refused {
        fault,
        key_failures,
    })
}

/// `--claims`, taken as verified for the issuer they name (or the first configured one), through
/// the same claim rules a verified token goes through.
fn trusted(config: &Config, claims: Map<String, Value>) -> Credentials {
    let named = claims.get("iss").and_then(Value::as_str);
    let issuer = config
        .issuers
        .iter()
        .find(|i| Some(&*i.issuer) == named)
        .or(config.issuers.first());
    let Some(issuer) = issuer else {
        return Credentials::Absent;
    };
    match crate::token::trusted_claims(claims, issuer, &config.tokens) {
        Ok(token) => Credentials::Verified(Arc::new(token)),
        Err(fault) => Credentials::Refused {
            fault,
            key_failures: Vec::new(),
        },
    }
}

fn render(method: &Method, target: &str, credentials: &Credentials, verdict: &Verdict) -> String {
    let mut out = format!("request      {method} {target}\n");
    match (&verdict.rule, &verdict.access) {
        (Some(rule), Some(access)) => {
            out.push_str(&format!("rule         {rule}\nneeds        {access}\n"))
        }
        _ => out.push_str("rule         (none matched)\n"),
    }
    match credentials {
        Credentials::Absent => out.push_str("token        (none)\n"),
        Credentials::Verified(token) => {
            out.push_str(&format!("token scopes {}\n", verdict.token_scopes));
            let patient = token.patient.as_deref().unwrap_or("(none)");
            out.push_str(&format!("patient      {patient}\n"));
        }
        Credentials::Refused {
            fault: TokenFault::KeysUnavailable,
            key_failures,
        } => {
            out.push_str("token        not verified: the issuer's keys are unavailable (503)\n");
            for failure in key_failures {
                out.push_str(&format!("keys         {failure}\n"));
            }
            if key_failures.is_empty() {
                out.push_str("keys         loaded on a second fetch: the endpoint is flaky\n");
            }
        }
        Credentials::Refused { fault, .. } => {
            out.push_str(&format!("token        refused: {}\n", fault.reason()));
        }
    }
    match &verdict.outcome {
        Ok(Allowed::Answered(document)) => {
            out.push_str(&format!(
                "answered by  phigate: the {} document, never forwarded\n",
                document.describe()
            ));
            out.push_str("decision     allow: well_known\n");
        }
        Ok(Allowed::Forwarded(permit)) => {
            if let Some(fhir) = permit.fhir() {
                out.push_str(&format!("interaction  {}\n", fhir.interaction()));
            }
            out.push_str(&format!("forwarded as {}\n", permit.path_and_query()));
            let granted = permit
                .granted_scope()
                .map(|s| format!(" (granted by {s})"))
                .unwrap_or_default();
            match permit.would_deny() {
                Some(refusal) => out.push_str(&format!(
                    "decision     would_deny: {} (report-only rule: forwarded)\n",
                    refusal.reason()
                )),
                None => out.push_str(&format!("decision     allow{granted}\n")),
            }
            if let Some(emergency) = permit.break_glass() {
                out.push_str(&format!(
                    "break-glass  granted by {}: no compartment or answer check; flagged in the \
                     audit trail and alerted\n",
                    emergency.rule_name()
                ));
            }
            if let Some(precondition) = permit.precondition() {
                out.push_str(&format!("before       {}\n", precondition.describe()));
            }
            if let Some(body) = permit.forwarded_search_body() {
                out.push_str(&format!("search body  {body}\n"));
            }
            if let Some(check) = permit.response_check() {
                out.push_str(&format!("answer       {}\n", check.describe()));
            }
        }
        Err(denied) => {
            out.push_str(&format!("decision     deny: {}\n", denied.reason));
            if let Some(needed) = &denied.needed {
                out.push_str(&format!("would allow  {needed}\n"));
            }
        }
    }
    out
}
