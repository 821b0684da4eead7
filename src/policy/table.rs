//! The compiled policy: rules in file order, first match wins, no match is a denial. Loading
//! refuses anything ambiguous — unknown keys, duplicate names, a rule that is both public and
//! scoped, an invalid scope, a rule an earlier one shadows — and names file, line and problem
//! for each. Only the path takes part in matching; the query is carried along untouched.
//! Loading also warns, without refusing, where a later rule overlaps an earlier, stronger one,
//! and where two rules differ only in a way some upstreams ignore (letter case).

use std::fmt;
use std::path::{Path, PathBuf};

use http::{Method, Uri};
use serde::Deserialize;
use serde_saphyr::Spanned;

use super::path::{PathFault, normalise};
use super::route::Route;
use super::rule::{Mode, RawRule, Rule};
use crate::binding::Requirement;
use crate::token::ClientId;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    /// File-wide default for every rule's `mode`.
    #[serde(default)]
    mode: Option<Spanned<String>>,
    /// Clients that must always present sender-constrained tokens: `client_id: mtls|dpop|any`.
    #[serde(default)]
    client_bindings: Option<Spanned<std::collections::BTreeMap<String, String>>>,
    rules: Vec<Spanned<RawRule>>,
}

/// One problem in a policy file: an error (in a [`PolicyLoadError`]) or a warning
/// ([`PolicyTable::warnings`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyProblem {
    /// The policy file.
    pub file: PathBuf,
    /// 1-based line (0 when unknown).
    pub line: usize,
    /// 1-based column (0 when unknown).
    pub column: usize,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for PolicyProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}",
            self.file.display(),
            self.line,
            self.column,
            self.message
        )
    }
}

/// Every problem found in a policy file.
#[derive(Debug, thiserror::Error)]
pub struct PolicyLoadError {
    /// At least one problem.
    pub problems: Vec<PolicyProblem>,
}

impl fmt::Display for PolicyLoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for problem in &self.problems {
            writeln!(f, "{problem}")?;
        }
        Ok(())
    }
}

/// Why no route was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolicyFault {
    /// The path cannot be normalised safely.
    MalformedPath(PathFault),
    /// No rule covers this method and path (default deny).
    NoMatchingRule,
    /// An upstream may serve the path as one an earlier rule decides (letter case, look-alike
    /// characters, trailing dots): the rule that matched might not be the one that applies.
    AmbiguousPath,
}

/// The compiled policy.
#[derive(Debug, Clone)]
pub struct PolicyTable {
    rules: Vec<Rule>,
    client_bindings: std::collections::BTreeMap<String, Requirement>,
    version: String,
    warnings: Vec<PolicyProblem>,
}

impl PolicyTable {
    /// Reads and compiles a policy file.
    pub fn load(path: &Path) -> Result<Self, PolicyLoadError> {
        let text = std::fs::read_to_string(path).map_err(|err| PolicyLoadError {
            problems: vec![problem(
                path,
                0,
                0,
                format!("cannot read the policy file: {err}"),
            )],
        })?;
        Self::from_yaml(&text, path)
    }

    /// Compiles policy text; `source` names it in errors.
    pub fn from_yaml(text: &str, source: &Path) -> Result<Self, PolicyLoadError> {
        let raw: RawPolicy = serde_saphyr::from_str(text).map_err(|err| {
            let (line, column) = err
                .location()
                .map_or((0, 0), |l| (l.line() as usize, l.column() as usize));
            let message = crate::config::yaml_message(&err);
            PolicyLoadError {
                problems: vec![problem(source, line, column, message)],
            }
        })?;
        let mut problems = Vec::new();
        let mut client_bindings = std::collections::BTreeMap::new();
        if let Some(at) = &raw.client_bindings {
            for (client, text) in &at.value {
                match Requirement::parse(text) {
                    Some(requirement) => {
                        client_bindings.insert(client.clone(), requirement);
                    }
                    None => problems.push(problem(
                        source,
                        at.referenced.line() as usize,
                        at.referenced.column() as usize,
                        format!("client_bindings: {client:?} must be mtls, dpop or any"),
                    )),
                }
            }
        }
        let mode = match &raw.mode {
            None => Mode::Enforce,
            Some(at) => Mode::parse(&at.value).unwrap_or_else(|| {
                let (line, column) = (
                    at.referenced.line() as usize,
                    at.referenced.column() as usize,
                );
                problems.push(problem(
                    source,
                    line,
                    column,
                    "mode must be enforce or report-only".into(),
                ));
                Mode::Enforce
            }),
        };
        let mut rules: Vec<Located> = Vec::new();
        for spanned in &raw.rules {
            let line = spanned.referenced.line() as usize;
            let column = spanned.referenced.column() as usize;
            match spanned.value.compile(mode) {
                Ok(rule) => {
                    if rules.iter().any(|r| r.rule.name == rule.name) {
                        problems.push(problem(
                            source,
                            line,
                            column,
                            format!("rule name {:?} is used twice", rule.name),
                        ));
                    } else if let Some(earlier) =
                        rules.iter().find(|r| rule.is_shadowed_by(&r.rule))
                    {
                        let message = format!(
                            "rule {:?} is shadowed by the earlier rule {:?} and can never match",
                            rule.name, earlier.rule.name
                        );
                        problems.push(problem(source, line, column, message));
                    }
                    rules.push(Located { rule, line, column });
                }
                Err(messages) => {
                    problems.extend(
                        messages
                            .into_iter()
                            .map(|m| problem(source, line, column, m)),
                    );
                }
            }
        }
        if raw.rules.is_empty() {
            problems.push(problem(
                source,
                1,
                1,
                "the policy has no rules: everything would be denied".into(),
            ));
        }
        if problems.is_empty() {
            Ok(Self {
                warnings: overlap_warnings(source, &rules),
                rules: rules.into_iter().map(|r| r.rule).collect(),
                client_bindings,
                version: version_of(text),
            })
        } else {
            Err(PolicyLoadError { problems })
        }
    }

    /// Finds the first rule matching the method and the normalised path, refusing a path an
    /// upstream may serve as one an earlier (or no) rule decides.
    pub fn resolve(&self, method: &Method, uri: &Uri) -> Result<Route<'_>, PolicyFault> {
        let path = normalise(uri.path()).map_err(PolicyFault::MalformedPath)?;
        // A case-insensitive upstream serves `/report/secret` as `/Report/secret`. Every exact
        // match is a loose one, so the first loose match comes no later than the first exact
        // match; unless they are the same rule, the decision would hang on the upstream's
        // spelling rules, and the request is refused.
        let rule = self
            .rules
            .iter()
            .find(|rule| rule.methods.contains(method) && rule.pattern.may_match(&path))
            .ok_or(PolicyFault::NoMatchingRule)?;
        if !rule.pattern.matches(&path) {
            return Err(PolicyFault::AmbiguousPath);
        }
        Ok(Route {
            rule,
            method: method.clone(),
            path,
            query: uri.query().map(str::to_owned),
        })
    }

    /// What loading found questionable but not wrong, in file order: a later rule that
    /// overlaps an earlier, stronger one, or differs from an earlier one only in letter case.
    pub fn warnings(&self) -> &[PolicyProblem] {
        &self.warnings
    }

    /// The compiled rules, in order.
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// The sender constraint a client must always meet, if configured.
    pub fn client_binding(&self, client_id: Option<&ClientId>) -> Option<Requirement> {
        client_id.and_then(|id| self.client_bindings.get(id.as_str()).copied())
    }

    /// Whether any rule runs in report-only mode (announced at every start and reload).
    pub fn has_report_only_rules(&self) -> bool {
        self.rules.iter().any(Rule::is_report_only)
    }

    /// A short fingerprint of the policy text, logged with every decision so each request can
    /// be tied to the exact policy that decided it.
    pub fn version(&self) -> &str {
        &self.version
    }
}

/// A compiled rule and where it was written.
struct Located {
    rule: Rule,
    line: usize,
    column: usize,
}

/// First match decides the paths two rules share, so an overlap is no error. But a weaker rule
/// beside a stronger one is one unknown upstream equivalence (a suffix, an alias) away from
/// deciding the stronger rule's paths; and rules that differ only in letter case make some
/// requests ambiguous, which `resolve` refuses.
fn overlap_warnings(source: &Path, rules: &[Located]) -> Vec<PolicyProblem> {
    let mut warnings = Vec::new();
    for (index, later) in rules.iter().enumerate() {
        let warn = |message: String| problem(source, later.line, later.column, message);
        for earlier in &rules[..index] {
            let (l, e) = (&later.rule, &earlier.rule);
            if !l.shares_a_method_with(e) {
                continue;
            }
            if e.pattern.overlaps(&l.pattern) {
                let weaker = l.weaknesses_against(e);
                if !weaker.is_empty() {
                    warnings.push(warn(format!(
                        "rule {:?} ({}) overlaps the earlier rule {:?} ({}) but is weaker: {}; \
                         a spelling of a {:?} path that only the upstream treats as equal \
                         would be decided by {:?}",
                        l.name,
                        l.pattern,
                        e.name,
                        e.pattern,
                        weaker.join(", "),
                        e.name,
                        l.name
                    )));
                }
            } else if e.pattern.may_overlap(&l.pattern) {
                warnings.push(warn(format!(
                    "rule {:?} ({}) and the earlier rule {:?} ({}) match paths that differ \
                     only in letter case or trailing dots: such requests for {:?} are refused \
                     as ambiguous (400, path_ambiguous)",
                    l.name, l.pattern, e.name, e.pattern, l.name
                )));
            }
        }
    }
    warnings
}

fn version_of(text: &str) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, text.as_bytes());
    digest.as_ref()[..6]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn problem(file: &Path, line: usize, column: usize, message: String) -> PolicyProblem {
    PolicyProblem {
        file: file.to_path_buf(),
        line,
        column,
        message,
    }
}

impl fmt::Display for PolicyTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name_width = self
            .rules
            .iter()
            .map(|r| r.name.len())
            .max()
            .unwrap_or(4)
            .max(4);
        let methods = |rule: &Rule| {
            rule.methods
                .iter()
                .map(Method::as_str)
                .collect::<Vec<_>>()
                .join(",")
        };
        let method_width = self
            .rules
            .iter()
            .map(|r| methods(r).len())
            .max()
            .unwrap_or(7)
            .max(7);
        let path_width = self
            .rules
            .iter()
            .map(|r| r.pattern.to_string().len())
            .max()
            .unwrap_or(4)
            .max(4);
        writeln!(
            f,
            "  #  {:name_width$}  {:method_width$}  {:path_width$}  access",
            "rule", "methods", "path"
        )?;
        for (index, rule) in self.rules.iter().enumerate() {
            let access = rule.access_summary();
            writeln!(
                f,
                "{:>3}  {:name_width$}  {:method_width$}  {:path_width$}  {access}",
                index + 1,
                rule.name,
                methods(rule),
                rule.pattern.to_string()
            )?;
        }
        writeln!(f, "  -  (no match)  denied")
    }
}

#[cfg(test)]
mod tests;
