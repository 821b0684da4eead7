//! Break-glass (emergency) access, HIPAA 45 CFR 164.312(a)(2)(ii): a configured, time-boxed
//! widening of the policy. Its rules grant a read only to a token carrying the break-glass
//! scope, issued no longer than `max_duration` ago, on a request that states a justification
//! in one header (printable ASCII, at most [`MAX_JUSTIFICATION`] bytes). It only ever adds a
//! grant where the ordinary rules refused or none matched, and every grant through it is marked
//! on the `Permit` (`Permit::break_glass`) so the log line, a WARN alert line and
//! `phigate_break_glass_total` record it. It never puts the justification in a `Refusal`, so no
//! response can echo it.

use std::sync::Arc;
use std::time::Duration;

use http::{HeaderName, Method};
use serde::Deserialize;
use serde_saphyr::Spanned;

use super::path::NormalPath;
use super::pattern::Pattern;
use super::route::{Grant, Refusal, RefusalClass};
use super::rule::{Findings, Rule};
use super::scope::Scope;

/// The longest justification accepted, in bytes; longer is a malformed request.
pub const MAX_JUSTIFICATION: usize = 256;

/// The longest `max_duration` a policy may set: an emergency grant is counted in hours.
const LONGEST: Duration = Duration::from_secs(24 * 3600);

/// The `break_glass` section as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawBreakGlass {
    scope: Spanned<String>,
    max_duration: Spanned<String>,
    #[serde(default)]
    justification_header: Option<Spanned<String>>,
    rules: Vec<Spanned<RawEmergencyRule>>,
}

/// One break-glass rule as written: which reads it opens, nothing else.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEmergencyRule {
    name: String,
    methods: Vec<String>,
    path: String,
}

/// The compiled break-glass section.
#[derive(Debug, Clone)]
pub struct BreakGlass {
    scope: Scope,
    max_duration: Duration,
    header: HeaderName,
    rules: Vec<Rule>,
}

/// A request granted through break-glass: which rule, and the operator's stated reason.
#[derive(Debug, Clone)]
pub struct Emergency {
    rule: Arc<str>,
    justification: String,
}

impl Emergency {
    /// The break-glass rule that granted the request.
    pub fn rule_name(&self) -> &str {
        &self.rule
    }

    /// The justification header's value (printable ASCII, at most [`MAX_JUSTIFICATION`] bytes):
    /// audit data for logs, never for a response.
    pub fn justification(&self) -> &str {
        &self.justification
    }
}

impl RawBreakGlass {
    /// Compiles the section; errors are placed at the value they are about.
    pub(super) fn compile(&self, found: &mut Findings) -> Option<BreakGlass> {
        let errors_before = found.errors.len();
        let scope = Scope::parse(&self.scope.value);
        if scope.is_none() {
            let message = format!(
                "break_glass.scope: {:?} is not a valid scope",
                self.scope.value
            );
            found.error_at(&self.scope, message);
        }
        let max_duration = match crate::duration::parse(&self.max_duration.value) {
            Ok(d) if !d.is_zero() && d <= LONGEST => Some(d),
            Ok(_) => {
                let message = "break_glass.max_duration must be more than 0s and at most 24h";
                found.error_at(&self.max_duration, message.to_owned());
                None
            }
            Err(why) => {
                found.error_at(
                    &self.max_duration,
                    format!("break_glass.max_duration: {why}"),
                );
                None
            }
        };
        let header = match &self.justification_header {
            None => Some(HeaderName::from_static("x-break-glass-reason")),
            Some(text) => HeaderName::from_bytes(text.value.as_bytes())
                .map_err(|_| {
                    let message = format!(
                        "break_glass.justification_header: {:?} is not a header name",
                        text.value
                    );
                    found.error_at(text, message);
                })
                .ok(),
        };
        if self.rules.is_empty() {
            found.error_at(&self.scope, "break_glass lists no rules".to_owned());
        }
        let rules: Vec<Rule> = match &scope {
            Some(scope) => self
                .rules
                .iter()
                .filter_map(|raw| raw.value.compile(scope, &raw.referenced, found))
                .collect(),
            None => Vec::new(),
        };
        match (scope, max_duration, header) {
            (Some(scope), Some(max_duration), Some(header))
                if found.errors.len() == errors_before =>
            {
                Some(BreakGlass {
                    scope,
                    max_duration,
                    header,
                    rules,
                })
            }
            _ => None,
        }
    }
}

impl RawEmergencyRule {
    fn compile(
        &self,
        scope: &Scope,
        at: &serde_saphyr::Location,
        found: &mut Findings,
    ) -> Option<Rule> {
        let position = (at.line() as usize, at.column() as usize);
        let mut error = |message: String| found.error_placed(position, message);
        let name = self.name.as_str();
        let mut ok = true;
        if name.is_empty()
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        {
            error(format!(
                "break-glass rule name {name:?} must be letters, digits, '-', '_' or '.'"
            ));
            ok = false;
        }
        // An emergency widens reading only: a write under break-glass would change a record
        // nobody's ordinary grant covers, with no compartment check to stop it.
        let mut methods = Vec::new();
        for method in &self.methods {
            match method.as_str() {
                "GET" => methods.push(Method::GET),
                "HEAD" => methods.push(Method::HEAD),
                other => {
                    error(format!(
                        "break-glass rule {name:?}: method {other:?} is not GET or HEAD (break-glass opens reads only)"
                    ));
                    ok = false;
                }
            }
        }
        if methods.is_empty() && ok {
            error(format!("break-glass rule {name:?} lists no methods"));
            ok = false;
        }
        let pattern = Pattern::parse(&self.path)
            .map_err(|e| error(format!("break-glass rule {name:?}: {e}")))
            .ok()?;
        ok.then(|| Rule::emergency(Arc::from(name), methods, pattern, scope.clone()))
    }
}

impl BreakGlass {
    /// The header that carries the justification.
    pub fn header(&self) -> &HeaderName {
        &self.header
    }

    /// The scope a token must carry.
    pub fn scope(&self) -> &Scope {
        &self.scope
    }

    /// The compiled break-glass rules, in order.
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// The first break-glass rule for this method and path, if any.
    pub(super) fn rule_for(&self, method: &Method, path: &NormalPath) -> Option<&Rule> {
        self.rules
            .iter()
            .find(|rule| rule.methods.contains(method) && rule.pattern.matches(path))
    }

    /// What the break-glass `rule` says about a request the ordinary rules refused: `None` when
    /// the request did not invoke break-glass (neither the scope nor the header), so the
    /// ordinary refusal stands; otherwise the grant, or why break-glass refused it.
    pub(super) fn admit(
        &self,
        rule: &Rule,
        grant: &Grant<'_>,
        justification: Option<&str>,
    ) -> Option<Result<Emergency, Refusal>> {
        let has_scope = grant
            .scopes
            .first_satisfying(std::slice::from_ref(&self.scope))
            .is_some();
        if !has_scope && justification.is_none() {
            return None;
        }
        let refuse = |reason, class| Some(Err(Refusal::plain(reason, class)));
        if !has_scope {
            return refuse("break_glass_scope_missing", RefusalClass::Forbidden);
        }
        // A token without `iat` cannot show it was issued for this emergency.
        if grant.token_age.is_none_or(|age| age > self.max_duration) {
            return refuse("break_glass_token_stale", RefusalClass::Forbidden);
        }
        let Some(text) = justification.map(str::trim).filter(|t| !t.is_empty()) else {
            return refuse("break_glass_justification_missing", RefusalClass::Forbidden);
        };
        let printable = text.bytes().all(|b| (0x20..=0x7e).contains(&b));
        if !printable || text.len() > MAX_JUSTIFICATION {
            return refuse("break_glass_justification_invalid", RefusalClass::Malformed);
        }
        Some(Ok(Emergency {
            rule: Arc::clone(&rule.name),
            justification: text.to_owned(),
        }))
    }

    /// The section in words, for `phigate check`.
    pub(super) fn summary(&self) -> String {
        format!(
            "break-glass: scope {}, token at most {}s old, header {}",
            self.scope,
            self.max_duration.as_secs(),
            self.header
        )
    }
}

#[cfg(test)]
mod tests;
