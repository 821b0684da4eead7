//! The compiled policy: rules in file order, first match wins, no match is a denial. Loading
//! refuses anything ambiguous — unknown keys, duplicate names, a rule that is both public and
//! scoped, an invalid scope, a rule an earlier one shadows — and names file, line and problem
//! for each. Only the path takes part in matching; the query is carried along untouched.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use http::{Method, Uri};
use serde::Deserialize;
use serde_saphyr::Spanned;

use super::path::{NormalPath, PathFault, normalise};
use super::pattern::Pattern;
use super::permit::Permit;
use super::scope::{Scope, ScopeSet};

/// Methods a rule may name.
const RULE_METHODS: [&str; 7] = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"];

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    rules: Vec<Spanned<RawRule>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    name: String,
    methods: Vec<String>,
    path: String,
    #[serde(default)]
    public: Option<bool>,
    #[serde(default)]
    scopes: Option<Vec<String>>,
}

/// One problem in a policy file.
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

/// Every problem found in a policy file.
#[derive(Debug, thiserror::Error)]
pub struct PolicyLoadError {
    /// At least one problem.
    pub problems: Vec<PolicyProblem>,
}

impl fmt::Display for PolicyLoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for problem in &self.problems {
            writeln!(
                f,
                "{}:{}:{}: {}",
                problem.file.display(),
                problem.line,
                problem.column,
                problem.message
            )?;
        }
        Ok(())
    }
}

/// What a rule demands.
#[derive(Debug, Clone)]
enum Access {
    Public,
    /// Any one of these scopes suffices; `needed` is them space-separated, for the challenge.
    AnyOf {
        scopes: Vec<Scope>,
        needed: Arc<str>,
    },
}

/// One compiled rule.
#[derive(Debug, Clone)]
pub struct Rule {
    name: Arc<str>,
    methods: Vec<Method>,
    pattern: Pattern,
    access: Access,
}

impl Rule {
    /// The rule's name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

/// Why no route was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolicyFault {
    /// The path cannot be normalised safely.
    MalformedPath(PathFault),
    /// No rule covers this method and path (default deny).
    NoMatchingRule,
}

/// The token lacks every scope the rule accepts; carries only the rule's configuration.
#[derive(Debug, Clone)]
pub struct InsufficientScope {
    needed: Arc<str>,
}

impl InsufficientScope {
    /// The scopes the rule accepts, space-separated.
    pub fn needed(&self) -> &str {
        &self.needed
    }
}

/// A request matched to its rule, before authorisation.
#[derive(Debug)]
pub struct Route<'a> {
    rule: &'a Rule,
    path: NormalPath,
    query: Option<String>,
}

impl Route<'_> {
    /// The matched rule's name.
    pub fn rule_name(&self) -> &str {
        &self.rule.name
    }

    /// Whether the rule needs no token.
    pub fn is_public(&self) -> bool {
        matches!(self.rule.access, Access::Public)
    }

    /// The scopes the rule accepts (empty for public rules).
    pub fn required_scopes(&self) -> &[Scope] {
        match &self.rule.access {
            Access::Public => &[],
            Access::AnyOf { scopes, .. } => scopes,
        }
    }

    /// A permit for a public route; `None` for a scoped one.
    pub fn permit_public(self) -> Option<Permit> {
        self.is_public()
            .then(|| Permit::new(Arc::clone(&self.rule.name), self.path, self.query, None))
    }

    /// A permit if `granted` holds one of the rule's scopes.
    pub fn authorize(self, granted: &ScopeSet) -> Result<Permit, InsufficientScope> {
        match &self.rule.access {
            Access::Public => Ok(Permit::new(
                Arc::clone(&self.rule.name),
                self.path,
                self.query,
                None,
            )),
            Access::AnyOf { scopes, needed } => match granted.first_satisfying(scopes) {
                Some(scope) => Ok(Permit::new(
                    Arc::clone(&self.rule.name),
                    self.path,
                    self.query,
                    Some(scope.clone()),
                )),
                None => Err(InsufficientScope {
                    needed: Arc::clone(needed),
                }),
            },
        }
    }
}

/// The compiled policy.
#[derive(Debug, Clone)]
pub struct PolicyTable {
    rules: Vec<Rule>,
    version: String,
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
        let mut rules: Vec<(Rule, usize)> = Vec::new();
        for spanned in &raw.rules {
            let line = spanned.referenced.line() as usize;
            let column = spanned.referenced.column() as usize;
            match compile(&spanned.value) {
                Ok(rule) => {
                    if rules.iter().any(|(r, _)| r.name == rule.name) {
                        problems.push(problem(
                            source,
                            line,
                            column,
                            format!("rule name {:?} is used twice", rule.name),
                        ));
                    } else if let Some((earlier, _)) = rules.iter().find(|(r, _)| shadows(r, &rule))
                    {
                        let message = format!(
                            "rule {:?} is shadowed by the earlier rule {:?} and can never match",
                            rule.name, earlier.name
                        );
                        problems.push(problem(source, line, column, message));
                    }
                    rules.push((rule, line));
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
                rules: rules.into_iter().map(|(rule, _)| rule).collect(),
                version: version_of(text),
            })
        } else {
            Err(PolicyLoadError { problems })
        }
    }

    /// Finds the first rule matching the method and the normalised path.
    pub fn resolve(&self, method: &Method, uri: &Uri) -> Result<Route<'_>, PolicyFault> {
        let path = normalise(uri.path()).map_err(PolicyFault::MalformedPath)?;
        let rule = self
            .rules
            .iter()
            .find(|rule| rule.methods.contains(method) && rule.pattern.matches(&path))
            .ok_or(PolicyFault::NoMatchingRule)?;
        Ok(Route {
            rule,
            path,
            query: uri.query().map(str::to_owned),
        })
    }

    /// The compiled rules, in order.
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// A short fingerprint of the policy text, logged with every decision so each request can
    /// be tied to the exact policy that decided it.
    pub fn version(&self) -> &str {
        &self.version
    }
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

/// An earlier rule shadows a later one when it matches every path the later one matches for at
/// least one shared method: the later rule could only ever apply to the other methods.
fn shadows(earlier: &Rule, later: &Rule) -> bool {
    later.methods.iter().all(|m| earlier.methods.contains(m))
        && earlier.pattern.covers(&later.pattern)
}

fn compile(raw: &RawRule) -> Result<Rule, Vec<String>> {
    let mut errors = Vec::new();
    let name = raw.name.trim();
    if name.is_empty()
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    {
        errors.push(format!(
            "rule name {:?} must be letters, digits, '-', '_' or '.'",
            raw.name
        ));
    }
    let mut methods = Vec::new();
    if raw.methods.is_empty() {
        errors.push(format!("rule {name:?} lists no methods"));
    }
    for method in &raw.methods {
        match Method::from_bytes(method.as_bytes()) {
            Ok(parsed) if RULE_METHODS.contains(&method.as_str()) => methods.push(parsed),
            _ => errors.push(format!(
                "rule {name:?}: method {method:?} is not one of {}",
                RULE_METHODS.join(" ")
            )),
        }
    }
    let pattern = Pattern::parse(&raw.path)
        .map_err(|e| errors.push(format!("rule {name:?}: {e}")))
        .ok();
    let access = match (raw.public, raw.scopes.as_deref()) {
        (Some(true), None) => Some(Access::Public),
        (Some(true), Some(_)) => {
            errors.push(format!(
                "rule {name:?} is public and lists scopes: choose one"
            ));
            None
        }
        (_, None | Some([])) => {
            errors.push(format!(
                "rule {name:?} needs `public: true` or a non-empty `scopes` list"
            ));
            None
        }
        (_, Some(scopes)) => {
            let mut parsed = Vec::with_capacity(scopes.len());
            for text in scopes {
                match Scope::parse(text) {
                    Some(scope) => parsed.push(scope),
                    None => errors.push(format!("rule {name:?}: {text:?} is not a valid scope")),
                }
            }
            let needed = Arc::from(
                parsed
                    .iter()
                    .map(Scope::as_str)
                    .collect::<Vec<_>>()
                    .join(" "),
            );
            Some(Access::AnyOf {
                scopes: parsed,
                needed,
            })
        }
    };
    match (pattern, access) {
        (Some(pattern), Some(access)) if errors.is_empty() => Ok(Rule {
            name: Arc::from(name),
            methods,
            pattern,
            access,
        }),
        _ => Err(errors),
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
            let access = match &rule.access {
                Access::Public => "public".to_owned(),
                Access::AnyOf { needed, .. } => format!("any of: {needed}"),
            };
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
