//! `phigate test POLICY_TESTS.yaml`: runs policy test cases — a request and the token's claims
//! against the expected decision, reason and rule — and reports each failure with what was
//! expected and what happened. The file names its policy; paths resolve against the test file.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use http::Method;
use serde::Deserialize;
use serde_json::{Map, Value};

use super::offline::{self, Presented, Verdict};
use crate::policy::PolicyTable;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TestFile {
    policy: String,
    #[serde(default)]
    patient_claim: Option<String>,
    cases: Vec<Case>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    name: String,
    request: CaseRequest,
    #[serde(default)]
    claims: Option<Map<String, Value>>,
    expect: Expect,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CaseRequest {
    method: String,
    path: String,
    /// A JSON body (Bundles, resources to write).
    #[serde(default)]
    json: Option<Value>,
    /// A raw body (form-encoded `_search` parameters).
    #[serde(default)]
    body: Option<String>,
}

#[derive(Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
struct Expect {
    decision: String,
    #[serde(default)]
    reason: Option<String>,
    #[serde(default)]
    rule: Option<String>,
    #[serde(default)]
    response_check: Option<bool>,
    /// The FHIR interaction, as `explain` names it (`read`, `search-type`, `operation $export`).
    #[serde(default)]
    interaction: Option<String>,
    /// Whether a write must first read its target (patient context).
    #[serde(default)]
    precondition: Option<bool>,
}

/// Runs the file's cases; exit 1 when any fails.
#[expect(clippy::print_stdout, reason = "cli/ is the only place that prints")]
pub fn run(file: &Path) -> anyhow::Result<ExitCode> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    let tests: TestFile = serde_saphyr::from_str(&text).map_err(|err| {
        anyhow::anyhow!("{}: {}", file.display(), crate::config::yaml_message(&err))
    })?;
    let policy_path: PathBuf = file.parent().unwrap_or(Path::new(".")).join(&tests.policy);
    let policy = PolicyTable::load(&policy_path).map_err(|err| anyhow::anyhow!("{err}"))?;
    let patient_claim = tests.patient_claim.as_deref().unwrap_or("patient");
    let mut failed = 0usize;
    for case in &tests.cases {
        let method = Method::from_bytes(case.request.method.as_bytes())
            .context("a case has an invalid method")?;
        let body = match (&case.request.json, &case.request.body) {
            (Some(json), _) => Some(serde_json::to_vec(json)?),
            (None, Some(text)) => Some(text.clone().into_bytes()),
            (None, None) => None,
        };
        let token = case
            .claims
            .as_ref()
            .map_or(Presented::Nothing, |claims| Presented::Claims {
                claims,
                patient_claim,
            });
        let verdict = offline::decide(
            &policy,
            &method,
            &case.request.path,
            &token,
            body.as_deref(),
        );
        let actual = observed(&verdict, &case.expect);
        if actual != case.expect {
            failed += 1;
            println!("FAIL {}", case.name);
            println!("  request   {} {}", case.request.method, case.request.path);
            println!("  expected  {}", describe(&case.expect));
            println!("  actual    {}", describe(&actual));
        }
    }
    let passed = tests.cases.len() - failed;
    println!("{}: {passed} passed, {failed} failed", file.display());
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// The verdict in the expectation's terms; fields the case does not pin are copied over.
fn observed(verdict: &Verdict, expect: &Expect) -> Expect {
    let (decision, reason) = match &verdict.outcome {
        Ok(permit) => match permit.would_deny() {
            Some(refusal) => ("would_deny", Some(refusal.reason())),
            None => ("allow", None),
        },
        Err(denied) => ("deny", Some(denied.reason)),
    };
    let permit = verdict.outcome.as_ref().ok();
    Expect {
        decision: decision.to_owned(),
        reason: expect.reason.as_ref().and(reason.map(str::to_owned)),
        rule: expect.rule.as_ref().and(verdict.rule.clone()),
        response_check: expect
            .response_check
            .map(|_| permit.is_some_and(|p| p.response_check().is_some())),
        interaction: expect.interaction.as_ref().and_then(|_| {
            permit
                .and_then(|p| p.fhir())
                .map(|f| f.interaction().to_owned())
        }),
        precondition: expect
            .precondition
            .map(|_| permit.is_some_and(|p| p.precondition().is_some())),
    }
}

fn describe(expect: &Expect) -> String {
    let mut text = expect.decision.clone();
    if let Some(reason) = &expect.reason {
        text.push_str(&format!(" ({reason})"));
    }
    if let Some(rule) = &expect.rule {
        text.push_str(&format!(" by rule {rule}"));
    }
    if let Some(check) = expect.response_check {
        text.push_str(if check {
            " with response check"
        } else {
            " without response check"
        });
    }
    if let Some(interaction) = &expect.interaction {
        text.push_str(&format!(" as {interaction}"));
    }
    if let Some(precondition) = expect.precondition {
        text.push_str(if precondition {
            " after reading the target"
        } else {
            " without reading the target"
        });
    }
    text
}
