//! `Permit`: the proof that a route was authorised, and the only thing the forwarder accepts.
//! Its fields are private and only `policy` can build one, so no other module can invent an
//! authorisation or change the path that was authorised.

use std::sync::Arc;

use super::path::NormalPath;
use super::scope::Scope;

/// An authorised request: the rule, the normalised path, the untouched query, and the scope
/// that satisfied the rule (none for public routes).
#[derive(Debug, Clone)]
pub struct Permit {
    rule: Arc<str>,
    path: NormalPath,
    query: Option<String>,
    granted: Option<Scope>,
}

impl Permit {
    pub(super) fn new(
        rule: Arc<str>,
        path: NormalPath,
        query: Option<String>,
        granted: Option<Scope>,
    ) -> Self {
        Self {
            rule,
            path,
            query,
            granted,
        }
    }

    /// The rule that permitted the request.
    pub fn rule_name(&self) -> &str {
        &self.rule
    }

    /// The authorised, normalised path.
    pub fn path(&self) -> &NormalPath {
        &self.path
    }

    /// The path and the original query, exactly as they are forwarded.
    pub fn path_and_query(&self) -> String {
        match &self.query {
            Some(query) => format!("{}?{query}", self.path),
            None => self.path.as_str().to_owned(),
        }
    }

    /// Whether the rule was public.
    pub fn is_public(&self) -> bool {
        self.granted.is_none()
    }

    /// The scope that satisfied the rule.
    pub fn granted_scope(&self) -> Option<&Scope> {
        self.granted.as_ref()
    }
}
