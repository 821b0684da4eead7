//! SMART App Launch scopes (v2 `patient/Observation.rs`, with optional granular
//! `?category=system|code` restrictions, and v1 `user/Patient.read` / `.write` / `.*`, read as
//! their v2 equivalents). Anything else — `openid`, `launch/patient`, `fhirUser`, malformed
//! letters — is not a SMART resource scope and grants nothing here.

use std::fmt;

use super::resource_types::{closest, closest_r4_resource_type, is_r4_resource_type};

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

/// What is wrong with a scope that is shaped like a SMART resource scope (`word/Word.letters`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScopeDoubt {
    /// No SMART server grants it; each entry says why.
    NeverGranted(Vec<String>),
    /// The SMART v1 form (`.read`, `.write`, `.*`), whose v2 equivalent is given.
    V1 {
        /// The same grant in v2 letters.
        v2: String,
    },
}

impl ScopeDoubt {
    /// What, if anything, is doubtful about `text` as a SMART resource scope. Text not shaped
    /// like one — `openid`, `launch/patient`, another API's own scopes — raises no doubt, and
    /// neither does a well-formed v2 scope.
    pub fn of(text: &str) -> Option<Self> {
        let (base, query) = text
            .split_once('?')
            .map_or((text, None), |(b, q)| (b, Some(q)));
        let (context, rest) = base.split_once('/')?;
        let (resource_type, permission) = rest.split_once('.')?;
        let word = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_alphabetic());
        let letters =
            |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_lowercase() || c == '*');
        if !word(context) || !(resource_type == "*" || word(resource_type)) || !letters(permission)
        {
            return None;
        }
        let contexts = ["patient", "user", "system"];
        let known_context = Context::parse(context).is_some();
        let known_type = resource_type == "*" || is_r4_resource_type(resource_type);
        let near_context = closest(context, &contexts);
        if !known_context && !known_type && near_context.is_none() {
            return None;
        }
        let mut why = Vec::new();
        if !known_context {
            why.push(format!(
                "{context:?} is not a SMART context (patient, user or system){}",
                suggestion(near_context)
            ));
        }
        if !known_type {
            why.push(format!(
                "{resource_type:?} is not a FHIR R4 resource type{}",
                suggestion(closest_r4_resource_type(resource_type))
            ));
        }
        let v1 = matches!(permission, "read" | "write" | "*");
        if !v1 && !is_ordered_subset(permission) {
            why.push(format!(
                "\".{permission}\" is neither SMART v2 permissions (letters of cruds, in that order) \
                 nor v1 (read, write, *)"
            ));
        }
        let restriction_ok = query.is_none_or(|q| {
            q.split('&').all(|pair| {
                pair.split_once('=')
                    .is_some_and(|(n, v)| !n.is_empty() && !v.is_empty())
            })
        });
        if !restriction_ok {
            why.push("a granular restriction must be name=value pairs joined by &".to_owned());
        }
        if !why.is_empty() {
            return Some(Self::NeverGranted(why));
        }
        let v2 = SmartScope::parse(text).map(|scope| scope.to_string())?;
        v1.then_some(Self::V1 { v2 })
    }
}

fn suggestion(closest: Option<&str>) -> String {
    closest.map_or_else(String::new, |name| format!(" (did you mean {name:?}?)"))
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

    /// `None`, the v1 scope's v2 form, or pieces of every reason it is never granted.
    #[track_caller]
    fn check_doubt(text: &str, expected: Option<Result<&str, &[&str]>>) {
        let actual = ScopeDoubt::of(text);
        match (&actual, expected) {
            (None, None) => {}
            (Some(ScopeDoubt::V1 { v2 }), Some(Ok(expected))) => assert_eq!(v2, expected, "{text}"),
            (Some(ScopeDoubt::NeverGranted(why)), Some(Err(pieces))) => {
                assert_eq!(why.len(), pieces.len(), "{text}: {why:?}");
                for (reason, piece) in why.iter().zip(pieces) {
                    assert!(reason.contains(piece), "{text}: {reason}");
                }
            }
            _ => panic!("{text}: {actual:?}, expected {expected:?}"),
        }
    }

    #[test]
    fn doubts_about_scopes_shaped_like_smart_ones() {
        check_doubt("patient/Patient.r", None);
        check_doubt("user/*.cruds", None);
        check_doubt("patient/Observation.rs?category=http://x|laboratory", None);
        check_doubt("openid", None);
        check_doubt("launch/patient", None);
        check_doubt("fhirUser", None);
        check_doubt("api/reports.read", None);
        check_doubt("api/Report.read", None);
        check_doubt(
            "patient/Patinet.r",
            Some(Err(&[
                "\"Patinet\" is not a FHIR R4 resource type (did you mean \"Patient\"?)",
            ])),
        );
        check_doubt(
            "system/Report.r",
            Some(Err(&["\"Report\" is not a FHIR R4"])),
        );
        check_doubt(
            "system/patient.r",
            Some(Err(&["did you mean \"Patient\"?"])),
        );
        check_doubt(
            "system/Patient.x",
            Some(Err(&["\".x\" is neither SMART v2 permissions"])),
        );
        check_doubt("system/Patient.sr", Some(Err(&["\".sr\" is neither"])));
        check_doubt(
            "usr/Patient.r",
            Some(Err(&[
                "\"usr\" is not a SMART context (patient, user or system) (did you mean \"user\"?)",
            ])),
        );
        check_doubt(
            "practitioner/Observation.rs",
            Some(Err(&["\"practitioner\" is not a SMART context"])),
        );
        check_doubt(
            "usr/Patinet.rx",
            Some(Err(&["\"usr\"", "\"Patinet\"", "\".rx\""])),
        );
        check_doubt(
            "patient/Observation.rs?category",
            Some(Err(&["name=value pairs"])),
        );
        check_doubt("system/Patient.read", Some(Ok("system/Patient.rs")));
        check_doubt("user/Observation.write", Some(Ok("user/Observation.cud")));
        check_doubt("patient/*.*", Some(Ok("patient/*.cruds")));
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
