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

use super::break_glass::{BreakGlass, RawBreakGlass};
use super::fhir::Context;
use super::path::{PathFault, normalise};
use super::requirement::Requirement;
use super::route::Route;
use super::rule::{Access, Finding, Findings, Mode, RawRule, Rule};

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
    /// Emergency access (HIPAA 164.312(a)(2)(ii)), see `break_glass`.
    #[serde(default)]
    break_glass: Option<Spanned<RawBreakGlass>>,
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
    break_glass: Option<BreakGlass>,
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
            let fault = crate::yaml::diagnose(text, &err);
            let (line, column) = (fault.line as usize, fault.column as usize);
            PolicyLoadError {
                problems: vec![problem(source, line, column, fault.message)],
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
        let mut warnings = Vec::new();
        for spanned in &raw.rules {
            let line = spanned.referenced.line() as usize;
            let column = spanned.referenced.column() as usize;
            let mut found = Findings::default();
            let compiled = spanned.value.compile(mode, &mut found);
            let place = |finding: Finding| {
                let (line, column) = finding.at.unwrap_or((line, column));
                problem(source, line, column, finding.message)
            };
            problems.extend(found.errors.into_iter().map(place));
            warnings.extend(found.warnings.into_iter().map(place));
            if let Some(rule) = compiled {
                if rules.iter().any(|r| r.rule.name == rule.name) {
                    problems.push(problem(
                        source,
                        line,
                        column,
                        format!("rule name {:?} is used twice", rule.name),
                    ));
                } else if let Some(earlier) = rules.iter().find(|r| rule.is_shadowed_by(&r.rule)) {
                    let message = format!(
                        "rule {:?} is shadowed by the earlier rule {:?} and can never match",
                        rule.name, earlier.rule.name
                    );
                    problems.push(problem(source, line, column, message));
                }
                rules.push(Located { rule, line, column });
            }
        }
        let break_glass = raw.break_glass.as_ref().and_then(|section| {
            let mut found = Findings::default();
            let compiled = section.value.compile(&mut found);
            let at = (
                section.referenced.line() as usize,
                section.referenced.column() as usize,
            );
            for finding in found.errors {
                let (line, column) = finding.at.unwrap_or(at);
                problems.push(problem(source, line, column, finding.message));
            }
            compiled
        });
        // A break-glass rule is named in metrics and logs beside ordinary ones: no shared name.
        if let Some(section) = &break_glass {
            for emergency in section.rules() {
                if rules.iter().any(|r| r.rule.name == emergency.name) {
                    let (line, column) = raw.break_glass.as_ref().map_or((0, 0), |s| {
                        (s.referenced.line() as usize, s.referenced.column() as usize)
                    });
                    problems.push(problem(
                        source,
                        line,
                        column,
                        format!(
                            "break-glass rule name {:?} is also an ordinary rule's",
                            emergency.name
                        ),
                    ));
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
            warnings.extend(overlap_warnings(source, &rules));
            warnings.sort_by_key(|w| (w.line, w.column));
            Ok(Self {
                warnings,
                rules: rules.into_iter().map(|r| r.rule).collect(),
                client_bindings,
                break_glass,
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
        let break_glass = self
            .break_glass
            .as_ref()
            .and_then(|section| Some((section, section.rule_for(method, &path)?)));
        let found = self
            .rules
            .iter()
            .find(|rule| rule.methods.contains(method) && rule.pattern.may_match(&path));
        let (rule, emergency_only) = match (found, break_glass) {
            (Some(rule), _) if !rule.pattern.matches(&path) => {
                return Err(PolicyFault::AmbiguousPath);
            }
            (Some(rule), _) => (rule, false),
            // Only break-glass covers this request: it needs a token, and grants only that way.
            (None, Some((_, emergency))) => (emergency, true),
            (None, None) => return Err(PolicyFault::NoMatchingRule),
        };
        Ok(Route {
            rule,
            method: method.clone(),
            path,
            query: uri.query().map(str::to_owned),
            break_glass,
            emergency_only,
            withheld: self.break_glass.as_ref().map(BreakGlass::header),
        })
    }

    /// What loading found questionable but not wrong, in file order: a scope shaped like a
    /// SMART scope that no SMART server grants, or in the v1 form; a later rule that overlaps
    /// an earlier, stronger one, or differs from an earlier one only in letter case.
    pub fn warnings(&self) -> &[PolicyProblem] {
        &self.warnings
    }

    /// The compiled rules, in order.
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// The break-glass section, if the policy has one.
    pub fn break_glass(&self) -> Option<&BreakGlass> {
        self.break_glass.as_ref()
    }

    /// The sender constraint a client must always meet, if configured.
    pub fn client_binding(&self, client_id: Option<&str>) -> Option<Requirement> {
        client_id.and_then(|id| self.client_bindings.get(id).copied())
    }

    /// Whether any rule runs in report-only mode (announced at every start and reload).
    pub fn has_report_only_rules(&self) -> bool {
        self.rules.iter().any(Rule::is_report_only)
    }

    /// What clients may learn of the policy, for the discovery documents.
    pub fn published(&self) -> Published {
        let mut published = Published::default();
        let mut protected = 0usize;
        let mut dpop = 0usize;
        for rule in &self.rules {
            match &rule.access {
                Access::Public => continue,
                Access::AnyOf { scopes, .. } => published
                    .scopes
                    .extend(scopes.iter().map(|s| s.as_str().to_owned())),
                Access::Smart(settings) => published.smart_contexts.extend(&settings.contexts),
            }
            protected += 1;
            if rule.binding == Some(Requirement::Dpop) {
                dpop += 1;
            }
        }
        published.scopes.sort();
        published.scopes.dedup();
        published.smart_contexts.sort_by_key(|c| c.as_str());
        published.smart_contexts.dedup();
        // Only a demand every protected rule makes may be announced as always required.
        published.dpop_required = protected > 0 && dpop == protected;
        published
    }

    /// A short fingerprint of the policy text, logged with every decision so each request can
    /// be tied to the exact policy that decided it.
    pub fn version(&self) -> &str {
        &self.version
    }
}

/// What the policy tells clients through the discovery documents.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Published {
    /// Every scope a rule lists, sorted, once each.
    pub scopes: Vec<String>,
    /// The SMART contexts `fhir: smart` rules accept.
    pub smart_contexts: Vec<Context>,
    /// Whether every protected rule demands a DPoP-bound token.
    pub dpop_required: bool,
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
        if let Some(section) = &self.break_glass {
            writeln!(f, "  {}", section.summary())?;
            for rule in section.rules() {
                writeln!(
                    f,
                    "  !  {:name_width$}  {:method_width$}  {:path_width$}  break-glass only",
                    rule.name,
                    methods(rule),
                    rule.pattern.to_string()
                )?;
            }
        }
        writeln!(f, "  -  (no match)  denied")
    }
}

#[cfg(test)]
mod tests;
