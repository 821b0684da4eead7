//! SMART App Launch scopes (v2 `patient/Observation.rs`, with optional granular
//! `?category=system|code` restrictions, and v1 `user/Patient.read` / `.write` / `.*`, read as
//! their v2 equivalents). Anything else — `openid`, `launch/patient`, `fhirUser`, malformed
//! letters — is not a SMART resource scope and grants nothing here.

use std::fmt;

/// Whose data a scope reaches (SMART "Scopes and Launch Context").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Context {
    /// The launch patient's compartment only.
    Patient,
    /// Whatever the user may see.
    User,
    /// Backend services, no user.
    System,
}

impl Context {
    /// Parses `patient`, `user` or `system`.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "patient" => Some(Self::Patient),
            "user" => Some(Self::User),
            "system" => Some(Self::System),
            _ => None,
        }
    }

    /// The scope prefix.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Patient => "patient",
            Self::User => "user",
            Self::System => "system",
        }
    }
}

/// One SMART resource scope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmartScope {
    /// The context prefix.
    pub context: Context,
    /// The resource type, `*` for all.
    pub resource_type: String,
    /// Granted letters, a subset of `cruds`.
    pub letters: String,
    /// Granular restriction: `(parameter, value)` pairs the request must carry.
    pub restrictions: Vec<(String, String)>,
}

impl SmartScope {
    /// Parses a scope string; `None` when it is not a SMART resource scope.
    pub fn parse(text: &str) -> Option<Self> {
        let (base, query) = text
            .split_once('?')
            .map_or((text, None), |(b, q)| (b, Some(q)));
        let (context, rest) = base.split_once('/')?;
        let context = Context::parse(context)?;
        let (resource_type, permission) = rest.split_once('.')?;
        let type_ok = resource_type == "*"
            || (resource_type.starts_with(|c: char| c.is_ascii_uppercase())
                && resource_type.chars().all(|c| c.is_ascii_alphabetic()));
        if !type_ok {
            return None;
        }
        let letters = match permission {
            // SMART v1, mapped as SMART 2.x "Scopes for requesting FHIR Resources" says.
            "read" => "rs".to_owned(),
            "write" => "cud".to_owned(),
            "*" => "cruds".to_owned(),
            letters if is_ordered_subset(letters) => letters.to_owned(),
            _ => return None,
        };
        let restrictions = match query {
            None => Vec::new(),
            Some(query) => {
                let pairs: Option<Vec<_>> = query
                    .split('&')
                    .map(|pair| {
                        pair.split_once('=')
                            .filter(|(n, v)| !n.is_empty() && !v.is_empty())
                    })
                    .map(|pair| pair.map(|(n, v)| (n.to_owned(), v.to_owned())))
                    .collect();
                pairs?
            }
        };
        Some(Self {
            context,
            resource_type: resource_type.to_owned(),
            letters,
            restrictions,
        })
    }

    /// Whether the scope grants `letter` on `resource_type` (`None`: system-wide interactions,
    /// which only a `*` scope covers).
    pub fn grants(&self, resource_type: Option<&str>, letter: char) -> bool {
        let type_ok =
            self.resource_type == "*" || resource_type == Some(self.resource_type.as_str());
        type_ok && self.letters.contains(letter)
    }

    /// Whether the scope carries granular restrictions.
    pub fn is_granular(&self) -> bool {
        !self.restrictions.is_empty()
    }
}

/// SMART 2.x: letters appear in `cruds` order, each at most once.
fn is_ordered_subset(letters: &str) -> bool {
    let mut order = "cruds".chars();
    !letters.is_empty() && letters.chars().all(|letter| order.any(|c| c == letter))
}

impl fmt::Display for SmartScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}/{}.{}",
            self.context.as_str(),
            self.resource_type,
            self.letters
        )?;
        for (i, (name, value)) in self.restrictions.iter().enumerate() {
            write!(f, "{}{name}={value}", if i == 0 { '?' } else { '&' })?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[track_caller]
    fn check(text: &str, expected: Option<&str>) {
        assert_eq!(
            SmartScope::parse(text).map(|s| s.to_string()).as_deref(),
            expected,
            "{text}"
        );
    }

    #[test]
    fn v2_v1_and_granular_scopes() {
        check("patient/Observation.rs", Some("patient/Observation.rs"));
        check("user/*.cruds", Some("user/*.cruds"));
        check("system/Patient.r", Some("system/Patient.r"));
        check("patient/*.read", Some("patient/*.rs"));
        check("user/Observation.write", Some("user/Observation.cud"));
        check("user/Observation.*", Some("user/Observation.cruds"));
        check(
            "patient/Observation.rs?category=http://x|laboratory",
            Some("patient/Observation.rs?category=http://x|laboratory"),
        );
        check("patient/Observation.sr", None);
        check("patient/Observation.rr", None);
        check("patient/Observation.", None);
        check("patient/observation.rs", None);
        check("practitioner/Observation.rs", None);
        check("launch/patient", None);
        check("openid", None);
        check("patient/Observation.rs?category", None);
    }

    #[test]
    fn grants() {
        let scope = SmartScope::parse("patient/*.rs").unwrap();
        assert!(scope.grants(Some("Observation"), 'r'));
        assert!(scope.grants(None, 's'));
        assert!(!scope.grants(Some("Observation"), 'c'));
        let typed = SmartScope::parse("user/Patient.r").unwrap();
        assert!(typed.grants(Some("Patient"), 'r'));
        assert!(!typed.grants(Some("Observation"), 'r'));
        assert!(!typed.grants(None, 'r'));
    }

    proptest! {
        #[test]
        fn parsing_never_panics_and_round_trips(text in "[a-z]{0,8}/[A-Za-z*]{0,12}\\.[a-z*]{0,6}(\\?[a-z]{1,5}=[a-z|:/.]{1,10})?") {
            if let Some(scope) = SmartScope::parse(&text) {
                let again = SmartScope::parse(&scope.to_string()).expect("a rendered scope parses");
                prop_assert_eq!(again, scope);
            }
        }
    }
}
