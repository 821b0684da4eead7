//! `phigate explain`: which rule a request matches, what it needs, what the token has, and the
//! decision with its reason — without contacting the upstream. `--claims` takes a JSON file of
//! claims as-is; `--token` verifies the token against the issuer's JWKS first and explains the
//! `VerifiedToken` the gateway itself would decide on (its issuer's launch-patient claim).

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use http::Method;
use serde_json::Value;

use super::offline::{self, Presented, Verdict};
use crate::config::Config;
use crate::token::{BearerToken, VerifiedToken, Verifier};

/// What `explain` was asked about.
pub struct Question<'a> {
    pub config: &'a Path,
    pub method: &'a str,
    pub target: &'a str,
    pub token: Option<&'a str>,
    pub claims: Option<&'a Path>,
    pub body: Option<&'a Path>,
}

/// Prints the explanation; exit code 0 when allowed, 1 when denied.
#[expect(clippy::print_stdout, reason = "cli/ is the only place that prints")]
pub async fn run(question: Question<'_>) -> anyhow::Result<std::process::ExitCode> {
    let config = Config::load(question.config).map_err(|err| anyhow::anyhow!("{err}"))?;
    let method =
        Method::from_bytes(question.method.as_bytes()).context("--method is not an HTTP method")?;
    // `--token` is verified first and explained as the gateway sees it; `--claims` as written.
    let verified = match question.token {
        Some(token) => Some(verify(&config, token).await?),
        None => None,
    };
    let claims = match (question.token, question.claims) {
        (None, Some(path)) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            match serde_json::from_str::<Value>(&text)
                .context("--claims must hold a JSON object")?
            {
                Value::Object(map) => Some(map),
                _ => anyhow::bail!("--claims must hold a JSON object"),
            }
        }
        _ => None,
    };
    let body = match question.body {
        Some(path) => {
            Some(std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?)
        }
        None => None,
    };
    let patient_claim = config
        .issuers
        .first()
        .map_or("patient", |i| i.patient_claim.as_str());
    let token = match (&verified, &claims) {
        (Some(verified), _) => Presented::Verified(verified),
        (None, Some(claims)) => Presented::Claims {
            claims,
            patient_claim,
        },
        (None, None) => Presented::Nothing,
    };
    let verdict = offline::decide(
        &config.policy,
        &method,
        question.target,
        &token,
        body.as_deref(),
    );
    print!("{}", render(&method, question.target, &token, &verdict));
    Ok(if verdict.outcome.is_ok() {
        std::process::ExitCode::SUCCESS
    } else {
        std::process::ExitCode::FAILURE
    })
}

/// Verifies `token` against the configured issuers, as the gateway would.
async fn verify(config: &Config, token: &str) -> anyhow::Result<Arc<VerifiedToken>> {
    let _ = jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER.install_default();
    let verifier = Verifier::new(
        &config.issuers,
        &config.tokens,
        Arc::new(crate::telemetry::Metrics::new()),
    )?;
    verifier
        .verify(&BearerToken::new(token))
        .await
        .map_err(|fault| anyhow::anyhow!("the token is refused: {}", fault.reason()))
}

fn render(method: &Method, target: &str, token: &Presented<'_>, verdict: &Verdict) -> String {
    let mut out = format!("request      {method} {target}\n");
    match (&verdict.rule, &verdict.access) {
        (Some(rule), Some(access)) => {
            out.push_str(&format!("rule         {rule}\nneeds        {access}\n"))
        }
        _ => out.push_str("rule         (none matched)\n"),
    }
    match token {
        Presented::Nothing => out.push_str("token        (none)\n"),
        Presented::Claims { .. } | Presented::Verified(_) => {
            out.push_str(&format!("token scopes {}\n", verdict.token_scopes));
            let patient = verdict.token_patient.as_deref().unwrap_or("(none)");
            out.push_str(&format!("patient      {patient}\n"));
        }
    }
    match &verdict.outcome {
        Ok(permit) => {
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
