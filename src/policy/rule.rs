//! One policy rule: the YAML form, and its compiled form that cannot hold a bad value. A rule
//! names methods and a path pattern, and demands either nothing (`public: true`), any one of a
//! list of scopes, or SMART App Launch scopes for the FHIR interaction (`fhir: smart`). It may
//! run in report-only mode unless it is marked `enforce_always`.

use std::sync::Arc;

use http::Method;
use serde::Deserialize;
use serde_saphyr::Spanned;

use super::fhir::{Context, ScopeDoubt, Settings, closest_r4_resource_type, is_r4_resource_type};
use super::pattern::Pattern;
use super::requirement::Requirement;
use super::scope::Scope;

/// Methods a rule may name.
const RULE_METHODS: [&str; 7] = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"];

/// A rule as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRule {
    name: String,
    methods: Vec<String>,
    path: String,
    #[serde(default)]
    public: Option<bool>,
    #[serde(default)]
    scopes: Option<Vec<Spanned<String>>>,
    #[serde(default)]
    fhir: Option<String>,
    #[serde(default)]
    contexts: Option<Vec<String>>,
    #[serde(default)]
    resource_types: Option<Vec<Spanned<String>>>,
    #[serde(default)]
    allow_search_params: Option<Vec<String>>,
    #[serde(default)]
    export_contexts: Option<Vec<String>>,
    #[serde(default)]
    mode: Option<String>,
    #[serde(default)]
    enforce_always: Option<bool>,
    #[serde(default)]
    require_binding: Option<String>,
    #[serde(default)]
    introspect: Option<String>,
}

/// How a rule treats its own refusals.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Refusals are enforced (the default).
    Enforce,
    /// Refusals are logged and counted as `would_deny`, and the request is forwarded.
    ReportOnly,
}

impl Mode {
    /// Parses `enforce` or `report-only`.
    pub(super) fn parse(text: &str) -> Option<Self> {
        match text {
            "enforce" => Some(Self::Enforce),
            "report-only" => Some(Self::ReportOnly),
            _ => None,
        }
    }
}

/// What a rule demands.
#[derive(Debug, Clone)]
pub(super) enum Access {
    Public,
    /// Any one of these scopes suffices; `needed` is them space-separated, for the challenge.
    AnyOf {
        scopes: Vec<Scope>,
        needed: Arc<str>,
    },
    /// SMART scopes for the classified FHIR interaction.
    Smart(Arc<Settings>),
}

/// One compiled rule.
#[derive(Debug, Clone)]
pub struct Rule {
    pub(super) name: Arc<str>,
    pub(super) methods: Vec<Method>,
    pub(super) pattern: Pattern,
    pub(super) access: Access,
    pub(super) mode: Mode,
    pub(super) binding: Option<Requirement>,
    pub(super) introspect_always: bool,
}

impl Rule {
    /// A break-glass rule: `methods` on `pattern`, for which `scope` is what `check` shows; the
    /// rule grants only through `BreakGlass::admit`, never through `Route::authorize`'s own
    /// scope check.
    pub(super) fn emergency(
        name: Arc<str>,
        methods: Vec<Method>,
        pattern: Pattern,
        scope: Scope,
    ) -> Self {
        let needed = Arc::from(scope.as_str());
        Self {
            name,
            methods,
            pattern,
            access: Access::AnyOf {
                scopes: vec![scope],
                needed,
            },
            mode: Mode::Enforce,
            binding: None,
            introspect_always: false,
        }
    }

    /// The rule's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether refusals under this rule are only reported.
    pub fn is_report_only(&self) -> bool {
        self.mode == Mode::ReportOnly
    }

    /// What the rule demands, for `phigate check` and `explain`.
    pub fn access_summary(&self) -> String {
        let binding = self
            .binding
            .map(|b| format!(", bound by {}", b.as_str()))
            .unwrap_or_default();
        let access = match &self.access {
            Access::Public => "public".to_owned(),
            Access::AnyOf { needed, .. } => format!("any of: {needed}"),
            Access::Smart(settings) => {
                let contexts: Vec<&str> = settings.contexts.iter().map(|c| c.as_str()).collect();
                let types = settings
                    .resource_types
                    .as_ref()
                    .map_or_else(|| "any type".to_owned(), |t| t.join(","));
                format!("SMART {} ({types})", contexts.join("/"))
            }
        };
        format!("{access}{binding}")
    }

    /// Whether the two rules name a method in common.
    pub(super) fn shares_a_method_with(&self, other: &Self) -> bool {
        self.methods.iter().any(|m| other.methods.contains(m))
    }

    /// How this rule demands less than `earlier`, in words; empty when it does not. Scope lists
    /// and SMART settings are not ranked: they differ in kind, not in strength.
    pub(super) fn weaknesses_against(&self, earlier: &Self) -> Vec<String> {
        let public = |rule: &Self| matches!(rule.access, Access::Public);
        if public(earlier) {
            return Vec::new();
        }
        if public(self) {
            return vec!["it is public".to_owned()];
        }
        let mut weaker = Vec::new();
        if self.is_report_only() && !earlier.is_report_only() {
            weaker.push("it is report-only".to_owned());
        }
        match (earlier.binding, self.binding) {
            (Some(demanded), None) => weaker.push(format!(
                "it demands no sender binding where {:?} demands {}",
                earlier.name,
                demanded.as_str()
            )),
            (Some(demanded), Some(Requirement::Any)) if demanded != Requirement::Any => weaker
                .push(format!(
                    "it accepts any sender binding where {:?} demands {}",
                    earlier.name,
                    demanded.as_str()
                )),
            _ => {}
        }
        if earlier.introspect_always && !self.introspect_always {
            weaker.push("it does not introspect every token".to_owned());
        }
        weaker
    }

    /// An earlier rule shadows this one when it matches every path this one matches for all of
    /// this rule's methods: this rule could never apply.
    pub(super) fn is_shadowed_by(&self, earlier: &Self) -> bool {
        self.methods.iter().all(|m| earlier.methods.contains(m))
            && earlier.pattern.covers(&self.pattern)
    }
}

/// What compiling rules found: errors refuse the policy, warnings are reported with it.
#[derive(Debug, Default)]
pub(super) struct Findings {
    pub(super) errors: Vec<Finding>,
    pub(super) warnings: Vec<Finding>,
}

/// One message, at the value it is about when that value's position is known (else the rule's).
#[derive(Debug)]
pub(super) struct Finding {
    pub(super) at: Option<(usize, usize)>,
    pub(super) message: String,
}

impl Findings {
    fn error(&mut self, message: String) {
        self.errors.push(Finding { at: None, message });
    }

    /// An error at a known (line, column).
    pub(super) fn error_placed(&mut self, at: (usize, usize), message: String) {
        self.errors.push(Finding {
            at: Some(at),
            message,
        });
    }

    pub(super) fn error_at<T>(&mut self, value: &Spanned<T>, message: String) {
        self.errors.push(Finding {
            at: Some(position(value)),
            message,
        });
    }

    fn warning_at<T>(&mut self, value: &Spanned<T>, message: String) {
        self.warnings.push(Finding {
            at: Some(position(value)),
            message,
        });
    }
}

fn position<T>(value: &Spanned<T>) -> (usize, usize) {
    (
        value.referenced.line() as usize,
        value.referenced.column() as usize,
    )
}

impl RawRule {
    /// Compiles the rule, `None` when it has errors; `policy_mode` is the file-wide default.
    pub(super) fn compile(&self, policy_mode: Mode, found: &mut Findings) -> Option<Rule> {
        let errors_before = found.errors.len();
        let name = self.name.trim();
        if name.is_empty()
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        {
            found.error(format!(
                "rule name {:?} must be letters, digits, '-', '_' or '.'",
                self.name
            ));
        }
        let methods = self.methods(name, found);
        let pattern = Pattern::parse(&self.path)
            .map_err(|e| found.error(format!("rule {name:?}: {e}")))
            .ok();
        let access = self.access(name, found);
        let mode = match self.mode.as_deref() {
            None => policy_mode,
            Some(text) => Mode::parse(text).unwrap_or_else(|| {
                found.error(format!(
                    "rule {name:?}: mode must be enforce or report-only"
                ));
                Mode::Enforce
            }),
        };
        // `enforce_always` wins over any report-only setting, file-wide or the rule's own.
        let mode = if self.enforce_always == Some(true) {
            Mode::Enforce
        } else {
            mode
        };
        let introspect_always = match self.introspect.as_deref() {
            None | Some("never") => false,
            Some("always") => true,
            Some(_) => {
                found.error(format!("rule {name:?}: introspect must be always or never"));
                false
            }
        };
        let binding = self.require_binding.as_deref().and_then(|text| {
            Requirement::parse(text).or_else(|| {
                found.error(format!(
                    "rule {name:?}: require_binding must be mtls, dpop or any"
                ));
                None
            })
        });
        match (pattern, access) {
            (Some(pattern), Some(access)) if found.errors.len() == errors_before => Some(Rule {
                name: Arc::from(name),
                methods,
                pattern,
                access,
                mode,
                binding,
                introspect_always,
            }),
            _ => None,
        }
    }

    fn methods(&self, name: &str, found: &mut Findings) -> Vec<Method> {
        if self.methods.is_empty() {
            found.error(format!("rule {name:?} lists no methods"));
        }
        let mut methods = Vec::new();
        for method in &self.methods {
            match Method::from_bytes(method.as_bytes()) {
                Ok(parsed) if RULE_METHODS.contains(&method.as_str()) => methods.push(parsed),
                _ => found.error(format!(
                    "rule {name:?}: method {method:?} is not one of {}",
                    RULE_METHODS.join(" ")
                )),
            }
        }
        methods
    }

    fn access(&self, name: &str, found: &mut Findings) -> Option<Access> {
        let smart_only_keys = self.contexts.is_some()
            || self.resource_types.is_some()
            || self.allow_search_params.is_some()
            || self.export_contexts.is_some();
        match (self.public, self.scopes.as_deref(), self.fhir.as_deref()) {
            (_, _, Some(_)) if self.public == Some(true) || self.scopes.is_some() => {
                found.error(format!(
                    "rule {name:?}: fhir cannot be combined with public or scopes"
                ));
                None
            }
            (_, _, Some("smart")) => self.smart(name, found).map(|s| Access::Smart(Arc::new(s))),
            (_, _, Some(other)) => {
                found.error(format!("rule {name:?}: fhir must be smart, not {other:?}"));
                None
            }
            _ if smart_only_keys => {
                found.error(format!("rule {name:?}: contexts, resource_types, allow_search_params and export_contexts need fhir: smart"));
                None
            }
            (Some(true), None, None) => Some(Access::Public),
            (Some(true), Some(_), None) => {
                found.error(format!(
                    "rule {name:?} is public and lists scopes: choose one"
                ));
                None
            }
            (_, None | Some([]), None) => {
                found.error(format!("rule {name:?} needs `public: true`, a non-empty `scopes` list, or `fhir: smart`"));
                None
            }
            (_, Some(scopes), None) => {
                let mut parsed = Vec::with_capacity(scopes.len());
                for text in scopes {
                    let Some(scope) = Scope::parse(&text.value) else {
                        let message =
                            format!("rule {name:?}: {:?} is not a valid scope", text.value);
                        found.error_at(text, message);
                        continue;
                    };
                    // A plain rule compares scopes exactly, so a typo is no error to phigate: it
                    // only means no SMART server's token will ever match. Say so.
                    if let Some(doubt) = ScopeDoubt::of(scope.as_str()) {
                        found.warning_at(text, doubt_message(name, scope.as_str(), &doubt));
                    }
                    parsed.push(scope);
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
        }
    }

    fn smart(&self, name: &str, found: &mut Findings) -> Option<Settings> {
        let before = found.errors.len();
        let contexts = parse_contexts(
            name,
            "contexts",
            self.contexts.as_deref(),
            &[Context::Patient, Context::User, Context::System],
            found,
        );
        // Bulk Data is for backend services unless the rule says otherwise; a patient/ scope
        // never exports, so `patient` is not accepted here.
        let export_contexts = parse_contexts(
            name,
            "export_contexts",
            self.export_contexts.as_deref(),
            &[Context::System],
            found,
        );
        if export_contexts.contains(&Context::Patient) {
            found.error(format!(
                "rule {name:?}: export_contexts takes user and system; a patient/ scope never exports"
            ));
        }
        // A misspelt type would make the rule silently never apply to the type it was meant for.
        for t in self.resource_types.iter().flatten() {
            if !is_r4_resource_type(&t.value) {
                let hint = closest_r4_resource_type(&t.value)
                    .map_or_else(String::new, |near| format!(" (did you mean {near:?}?)"));
                let message = format!(
                    "rule {name:?}: resource_types: {:?} is not a FHIR R4 resource type{hint}",
                    t.value
                );
                found.error_at(t, message);
            }
        }
        let allowed = self.allow_search_params.clone().unwrap_or_default();
        for param in &allowed {
            if !param.starts_with('_') && !param.contains(':') {
                found.error(format!(
                    "rule {name:?}: allow_search_params takes controls like _include, not {param:?}"
                ));
            }
        }
        (found.errors.len() == before).then(|| Settings {
            contexts,
            resource_types: self
                .resource_types
                .as_ref()
                .map(|types| types.iter().map(|t| t.value.clone()).collect()),
            allowed_search_params: allowed,
            export_contexts,
        })
    }
}

/// Why a plain rule's scope will likely never match, in words an operator can act on.
fn doubt_message(name: &str, scope: &str, doubt: &ScopeDoubt) -> String {
    match doubt {
        ScopeDoubt::NeverGranted(why) => format!(
            "rule {name:?}: scope {scope:?} is shaped like a SMART scope, but no SMART server \
             grants it: {}",
            why.join("; ")
        ),
        ScopeDoubt::V1 { v2 } => format!(
            "rule {name:?}: scope {scope:?} is the SMART v1 form of {v2:?}; a rule's scopes \
             compare exactly, so a token holding {v2:?} does not match: list both forms, or \
             use fhir: smart, which reads either"
        ),
    }
}

/// A non-empty list of SMART contexts from a rule key, or `default` when the key is absent.
fn parse_contexts(
    name: &str,
    key: &str,
    list: Option<&[String]>,
    default: &[Context],
    found: &mut Findings,
) -> Vec<Context> {
    match list {
        None => default.to_vec(),
        Some([]) => {
            found.error(format!("rule {name:?}: {key} must not be empty"));
            Vec::new()
        }
        Some(list) => list
            .iter()
            .filter_map(|c| {
                Context::parse(c).or_else(|| {
                    found.error(format!(
                        "rule {name:?}: {key}: {c:?} is not patient, user or system"
                    ));
                    None
                })
            })
            .collect(),
    }
}
