//! Path patterns of policy rules: literal segments, `{name}` for exactly one non-empty segment,
//! and a final `**` for the rest of the path. Patterns match `NormalPath`s only, so a pattern
//! never sees a dot segment or an encoded slash.

use std::fmt;

use super::path::{NormalPath, may_equal};

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(String),
    Param,
    Rest,
}

/// A compiled path pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern {
    text: String,
    segments: Vec<Segment>,
}

impl Pattern {
    /// Compiles a pattern such as `/Patient/{id}` or `/Binary/**`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let Some(rest) = text.strip_prefix('/') else {
            return Err(format!("path {text:?} must start with /"));
        };
        let mut segments = Vec::new();
        let pieces: Vec<&str> = if rest.is_empty() {
            Vec::new()
        } else {
            rest.split('/').collect()
        };
        for (index, piece) in pieces.iter().enumerate() {
            let segment = if *piece == "**" {
                if index + 1 != pieces.len() {
                    return Err(format!("path {text:?}: ** may only be the last segment"));
                }
                Segment::Rest
            } else if let Some(name) = piece.strip_prefix('{').and_then(|p| p.strip_suffix('}')) {
                let identifier = !name.is_empty()
                    && name
                        .chars()
                        .next()
                        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                    && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
                if !identifier {
                    return Err(format!("path {text:?}: {{{name}}} is not a parameter name"));
                }
                Segment::Param
            } else {
                let literal = !piece.is_empty()
                    && !matches!(*piece, "." | "..")
                    && piece.bytes().all(|b| {
                        b.is_ascii_alphanumeric()
                            || matches!(b, b'.' | b'_' | b'~' | b'-' | b'$' | b':')
                    });
                if !literal {
                    return Err(format!(
                        "path {text:?}: segment {piece:?} is not a literal, {{name}} or **"
                    ));
                }
                Segment::Literal((*piece).to_owned())
            };
            segments.push(segment);
        }
        Ok(Self {
            text: text.to_owned(),
            segments,
        })
    }

    /// Whether `path` matches.
    pub fn matches(&self, path: &NormalPath) -> bool {
        self.matches_with(path, |segment, literal| segment == literal)
    }

    /// Whether an upstream may serve `path` as a path this pattern matches, comparing literal
    /// segments by [`may_equal`] (letter case, look-alikes, trailing dots). Implied by `matches`.
    pub fn may_match(&self, path: &NormalPath) -> bool {
        self.matches_with(path, may_equal)
    }

    fn matches_with(&self, path: &NormalPath, equal: impl Fn(&str, &str) -> bool) -> bool {
        let mut actual = path.segments();
        for segment in &self.segments {
            match segment {
                Segment::Rest => return true,
                Segment::Param => match actual.next() {
                    Some(value) if !value.is_empty() => {}
                    _ => return false,
                },
                Segment::Literal(literal) => match actual.next() {
                    Some(value) if equal(value, literal) => {}
                    _ => return false,
                },
            }
        }
        actual.next().is_none()
    }

    /// Whether some path matches both `self` and `other` (for overlap warnings): `{name}` takes
    /// any one non-empty segment, `**` any rest including nothing.
    pub fn overlaps(&self, other: &Self) -> bool {
        self.overlaps_with(other, |a, b| a == b)
    }

    /// Whether some path matches `other` and, loosely ([`Pattern::may_match`]), `self`: a
    /// request for it may be refused as ambiguous when `self` is the earlier rule.
    pub fn may_overlap(&self, other: &Self) -> bool {
        self.overlaps_with(other, |ours, theirs| may_equal(theirs, ours))
    }

    fn overlaps_with(&self, other: &Self, equal: impl Fn(&str, &str) -> bool) -> bool {
        let mut ours = self.segments.iter();
        let mut theirs = other.segments.iter();
        loop {
            match (ours.next(), theirs.next()) {
                // Whatever the other side still needs, some rest of a path provides it.
                (Some(Segment::Rest), _) | (_, Some(Segment::Rest)) | (None, None) => return true,
                (None, Some(_)) | (Some(_), None) => return false,
                (Some(Segment::Literal(a)), Some(Segment::Literal(b))) if !equal(a, b) => {
                    return false;
                }
                // A parameter takes the other side's literal, or any segment.
                (Some(_), Some(_)) => {}
            }
        }
    }

    /// Whether every path `other` matches is also matched by `self` (for shadowing checks).
    pub fn covers(&self, other: &Self) -> bool {
        let mut theirs = other.segments.iter();
        for mine in &self.segments {
            let Some(their) = theirs.next() else {
                return false;
            };
            let covered = match (mine, their) {
                (Segment::Rest, _) => return true,
                (_, Segment::Rest) => false,
                (Segment::Param, _) => true,
                (Segment::Literal(a), Segment::Literal(b)) => a == b,
                (Segment::Literal(_), Segment::Param) => false,
            };
            if !covered {
                return false;
            }
        }
        theirs.next().is_none()
    }
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

#[cfg(test)]
mod tests;
