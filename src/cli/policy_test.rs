//! `phigate test FILE...`: runs policy test cases — a request and the token's claims against the
//! expected decision, reason and rule — and reports each failure with what was expected and what
//! happened, then a summary line per file and a total. A file that cannot be read or parsed is
//! reported as `file:line:column` and counts as a failure, so a typo never passes a suite. Each
//! file names its policy; paths resolve against the test file.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use http::{HeaderName, HeaderValue, Method};
use serde::Deserialize;
use serde_json::{Map, Value};
use serde_saphyr::Spanned;

use super::offline::{self, Allowed, OfflineRequest, OfflineToken, Verdict};
use crate::config::{ConfigProblem, DiscoveryConfig, IssuerConfig, TokenBounds};
use crate::policy::PolicyTable;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TestFile {
    policy: Spanned<String>,
    #[serde(default)]
    patient_claim: Option<String>,
    cases: Vec<Case>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    name: Spanned<String>,
    request: CaseRequest,
    #[serde(default)]
    claims: Option<Map<String, Value>>,
    expect: Expect,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CaseRequest {
    method: Spanned<String>,
    path: String,
    /// A JSON body (Bundles, resources to write).
    #[serde(default)]
    json: Option<Value>,
    /// A raw body (form-encoded `_search` parameters).
    #[serde(default)]
    body: Option<String>,
    /// Headers by name (a break-glass justification, `If-None-Exist`).
    #[serde(default)]
    headers: Option<Spanned<BTreeMap<String, String>>>,
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
    /// Whether the request was granted through break-glass (emergency) access.
    #[serde(default)]
    break_glass: Option<bool>,
}

/// Cases counted over one file or all of them.
#[derive(Default)]
struct Tally {
    passed: usize,
    failed: usize,
}

/// Runs every file's cases; exit 1 when any case fails or any file cannot be run.
#[expect(
    clippy::print_stdout,
    clippy::print_stderr,
    reason = "cli/ is the only place that prints"
)]
pub fn run(files: &[PathBuf]) -> anyhow::Result<ExitCode> {
    let mut total = Tally::default();
    let mut not_run = 0usize;
    for file in files {
        match run_file(file) {
            Ok(tally) => {
                println!(
                    "{}: {} passed, {} failed",
                    file.display(),
                    tally.passed,
                    tally.failed
                );
                total.passed += tally.passed;
                total.failed += tally.failed;
            }
            Err(problems) => {
                for problem in &problems {
                    eprintln!("error: {problem}");
                }
                println!("{}: not run", file.display());
                not_run += 1;
            }
        }
    }
    let unrun = match not_run {
        0 => String::new(),
        n => format!(", {} not run", files_count(n)),
    };
    println!(
        "total: {} passed, {} failed in {}{unrun}",
        total.passed,
        total.failed,
        files_count(files.len())
    );
    Ok(if total.failed == 0 && not_run == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn files_count(n: usize) -> String {
    match n {
        1 => "1 file".to_owned(),
        n => format!("{n} files"),
    }
}

/// Runs one file's cases, printing each failure; its problems when it cannot be run.
#[expect(clippy::print_stdout, reason = "cli/ is the only place that prints")]
fn run_file(file: &Path) -> Result<Tally, Vec<String>> {
    let at = |line: u64, column: u64, message: String| ConfigProblem {
        file: file.to_path_buf(),
        line,
        column,
        message,
    };
    let text = std::fs::read_to_string(file)
        .map_err(|err| vec![at(0, 0, format!("cannot read the test file: {err}")).to_string()])?;
    let tests: TestFile = serde_saphyr::from_str(&text).map_err(|err| {
        let fault = crate::yaml::diagnose(&text, &err);
        vec![at(fault.line, fault.column, fault.message).to_string()]
    })?;
    let policy_path: PathBuf = file
        .parent()
        .unwrap_or(Path::new("."))
        .join(&tests.policy.value);
    let policy = PolicyTable::load(&policy_path).map_err(|err| {
        let named_here = at(
            tests.policy.referenced.line(),
            tests.policy.referenced.column(),
            format!("policy {} cannot be loaded", tests.policy.value),
        );
        // Printed like the test file's own problems (no `:0:0` when there is no position).
        let in_policy = err.problems.iter().map(|problem| {
            ConfigProblem {
                file: problem.file.clone(),
                line: u64::try_from(problem.line).unwrap_or(0),
                column: u64::try_from(problem.column).unwrap_or(0),
                message: problem.message.clone(),
            }
            .to_string()
        });
        std::iter::once(named_here.to_string())
            .chain(in_policy)
            .collect::<Vec<_>>()
    })?;
    // Every case's method and headers are checked before any runs: a typo anywhere stops the
    // whole file.
    let heads = tests
        .cases
        .iter()
        .map(|case| {
            case_head(&case.request)
                .map_err(|(line, column, problem)| at(line, column, problem).to_string())
        })
        .collect::<Result<Vec<_>, _>>()
        .map_err(|problem| vec![problem])?;
    let patient_claim = tests.patient_claim.as_deref().unwrap_or("patient");
    let issuer = IssuerConfig::offline(patient_claim);
    let bounds = TokenBounds::default();
    let mut tally = Tally::default();
    for (case, (method, headers)) in tests.cases.iter().zip(&heads) {
        let body = match (&case.request.json, &case.request.body) {
            (Some(json), _) => Some(json.to_string().into_bytes()),
            (None, Some(text)) => Some(text.clone().into_bytes()),
            (None, None) => None,
        };
        // A case's claims are taken as verified, through the gateway's claim rules.
        let token = case
            .claims
            .clone()
            .map(|claims| crate::token::trusted_claims(claims, &issuer, &bounds));
        let token = match &token {
            None => OfflineToken::Absent,
            Some(Ok(token)) => OfflineToken::Verified(token),
            Some(Err(fault)) => OfflineToken::Refused(*fault),
        };
        let request = OfflineRequest {
            method,
            target: &case.request.path,
            headers,
            body: body.as_deref(),
        };
        let verdict = offline::decide(&policy, &DiscoveryConfig::default(), &request, &token);
        let actual = observed(&verdict, &case.expect);
        if actual == case.expect {
            tally.passed += 1;
        } else {
            tally.failed += 1;
            println!(
                "FAIL {} ({}:{})",
                case.name.value,
                file.display(),
                case.name.referenced.line()
            );
            println!(
                "  request   {} {}",
                case.request.method.value, case.request.path
            );
            println!("  expected  {}", describe(&case.expect));
            println!("  actual    {}", describe(&actual));
        }
    }
    Ok(tally)
}

/// A case's extra request headers.
type Headers = Vec<(HeaderName, HeaderValue)>;

/// A case's method and headers, or where (line, column) and why they are not valid.
fn case_head(request: &CaseRequest) -> Result<(Method, Headers), (u64, u64, String)> {
    let method = &request.method;
    let method = Method::from_bytes(method.value.as_bytes()).map_err(|_| {
        let place = &method.referenced;
        (
            place.line(),
            place.column(),
            format!("{:?} is not an HTTP method", method.value),
        )
    })?;
    let Some(headers) = &request.headers else {
        return Ok((method, Vec::new()));
    };
    let place = &headers.referenced;
    let headers = headers
        .value
        .iter()
        .map(|(name, value)| offline::header(name, value))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|problem| (place.line(), place.column(), problem))?;
    Ok((method, headers))
}

/// The verdict in the expectation's terms; fields the case does not pin are copied over.
fn observed(verdict: &Verdict, expect: &Expect) -> Expect {
    let (decision, reason) = match &verdict.outcome {
        Ok(Allowed::Answered(_)) => ("allow", Some("well_known")),
        Ok(Allowed::Forwarded(permit)) => match permit.would_deny() {
            Some(refusal) => ("would_deny", Some(refusal.reason())),
            None => ("allow", None),
        },
        Err(denied) => ("deny", Some(denied.reason)),
    };
    let permit = verdict.outcome.as_ref().ok().and_then(Allowed::permit);
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
        break_glass: expect
            .break_glass
            .map(|_| permit.is_some_and(|p| p.break_glass().is_some())),
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
    if let Some(break_glass) = expect.break_glass {
        text.push_str(if break_glass {
            " through break-glass"
        } else {
            " not through break-glass"
        });
    }
    text
}
