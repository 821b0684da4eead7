//! Scopes: validated scope-tokens (RFC 6749 §3.3: printable ASCII except space, `"` and `\`),
//! and the set a token grants, read from `scope` (a space-separated string) or `scp` (an array
//! or string, as Entra- and Okta-style servers send it). A claim in any other shape is refused,
//! never guessed at; both claims at once are ambiguous and refused.

use std::fmt;

use serde_json::Value;

/// One validated scope-token.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Scope(Box<str>);

impl Scope {
    /// Validates a scope-token: `1*( %x21 / %x23-5B / %x5D-7E )`.
    pub fn parse(text: &str) -> Option<Self> {
        let valid = !text.is_empty()
            && text
                .bytes()
                .all(|b| matches!(b, 0x21 | 0x23..=0x5b | 0x5d..=0x7e));
        valid.then(|| Self(text.into()))
    }

    /// The scope text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether holding `self` satisfies a rule that accepts `required`. Exact equality for now;
    /// SMART wildcard and v1/v2 semantics refine this in the FHIR policy (issue #3).
    pub fn satisfies(&self, required: &Self) -> bool {
        self == required
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Why a scope claim was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScopeClaimFault {
    /// Both `scope` and `scp` are present.
    Ambiguous,
    /// A claim of the wrong JSON type, or holding an invalid scope-token.
    Malformed,
}

/// The scopes a token grants. Boxed rather than growable: a set is built once and then kept
/// in every cached verified token, where each saved word counts (R-M01).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScopeSet(Box<[Scope]>);

impl ScopeSet {
    /// Reads the `scope` and `scp` claims.
    pub fn from_claims(
        scope: Option<&Value>,
        scp: Option<&Value>,
    ) -> Result<Self, ScopeClaimFault> {
        match (scope, scp) {
            (Some(_), Some(_)) => Err(ScopeClaimFault::Ambiguous),
            (Some(Value::String(text)), None) | (None, Some(Value::String(text))) => {
                Self::from_space_separated(text)
            }
            (None, Some(Value::Array(items))) => items
                .iter()
                .map(|item| {
                    item.as_str()
                        .and_then(Scope::parse)
                        .ok_or(ScopeClaimFault::Malformed)
                })
                .collect::<Result<Vec<_>, _>>()
                .map(Self::deduplicated),
            (None, None) => Ok(Self::default()),
            _ => Err(ScopeClaimFault::Malformed),
        }
    }

    /// Splits on single spaces only; empty pieces (double spaces) are ignored, but a tab, line
    /// break or non-ASCII character makes the whole claim invalid.
    fn from_space_separated(text: &str) -> Result<Self, ScopeClaimFault> {
        text.split(' ')
            .filter(|piece| !piece.is_empty())
            .map(|piece| Scope::parse(piece).ok_or(ScopeClaimFault::Malformed))
            .collect::<Result<Vec<_>, _>>()
            .map(Self::deduplicated)
    }

    fn deduplicated(mut scopes: Vec<Scope>) -> Self {
        let mut seen = std::collections::HashSet::new();
        scopes.retain(|scope| seen.insert(scope.clone()));
        Self(scopes.into_boxed_slice())
    }

    /// The first held scope that satisfies one of `accepted`, in `accepted` order.
    pub fn first_satisfying<'a>(&self, accepted: &'a [Scope]) -> Option<&'a Scope> {
        accepted
            .iter()
            .find(|required| self.0.iter().any(|held| held.satisfies(required)))
    }

    /// The scopes, space-separated, for an identity header.
    pub fn to_header_value(&self) -> String {
        self.0
            .iter()
            .map(Scope::as_str)
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// Iterates the scopes.
    pub fn iter(&self) -> impl Iterator<Item = &Scope> {
        self.0.iter()
    }

    /// Whether no scope is granted.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Bytes the set holds on the heap: each scope and its text.
    pub fn heap_bytes(&self) -> usize {
        self.0
            .iter()
            .map(|scope| std::mem::size_of::<Scope>() + scope.0.len())
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde_json::json;

    use super::*;

    #[track_caller]
    fn check(scope: Option<Value>, scp: Option<Value>, expected: Result<&str, ScopeClaimFault>) {
        let actual =
            ScopeSet::from_claims(scope.as_ref(), scp.as_ref()).map(|set| set.to_header_value());
        assert_eq!(actual.as_deref().map_err(|e| *e), expected);
    }

    #[test]
    fn claim_shapes() {
        check(
            Some(json!("patient/Patient.r user/Observation.rs")),
            None,
            Ok("patient/Patient.r user/Observation.rs"),
        );
        check(Some(json!("a  b ")), None, Ok("a b"));
        check(Some(json!("a a")), None, Ok("a"));
        check(None, Some(json!(["a", "b"])), Ok("a b"));
        check(None, Some(json!("a b")), Ok("a b"));
        check(None, None, Ok(""));
        check(Some(json!("")), None, Ok(""));
        check(
            Some(json!("a")),
            Some(json!(["a"])),
            Err(ScopeClaimFault::Ambiguous),
        );
        check(Some(json!(["a"])), None, Err(ScopeClaimFault::Malformed));
        check(Some(json!("a\tb")), None, Err(ScopeClaimFault::Malformed));
        check(Some(json!("a\nb")), None, Err(ScopeClaimFault::Malformed));
        check(
            Some(json!("patient/P\u{0430}tient.r")),
            None,
            Err(ScopeClaimFault::Malformed),
        );
        check(Some(json!("a\"b")), None, Err(ScopeClaimFault::Malformed));
        check(None, Some(json!(["a", 1])), Err(ScopeClaimFault::Malformed));
        check(None, Some(json!(7)), Err(ScopeClaimFault::Malformed));
    }

    #[test]
    fn first_satisfying_follows_the_rule_order() {
        let held =
            ScopeSet::from_claims(Some(&json!("user/Patient.r system/Patient.r")), None).unwrap();
        let accepted: Vec<Scope> = ["patient/Patient.r", "system/Patient.r", "user/Patient.r"]
            .iter()
            .map(|s| Scope::parse(s).unwrap())
            .collect();
        assert_eq!(
            held.first_satisfying(&accepted).map(Scope::as_str),
            Some("system/Patient.r")
        );
        assert_eq!(held.first_satisfying(&accepted[..1]), None);
    }

    proptest! {
        #[test]
        fn parsed_scopes_render_back_and_reparse(text in "[ -~]{0,60}") {
            if let Ok(set) = ScopeSet::from_claims(Some(&Value::String(text)), None) {
                let rendered = set.to_header_value();
                let again = ScopeSet::from_claims(Some(&Value::String(rendered.clone())), None).unwrap();
                prop_assert_eq!(again.to_header_value(), rendered);
                prop_assert!(set.iter().all(|s| !s.as_str().contains(' ')));
            }
        }
    }
}
