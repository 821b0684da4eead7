use proptest::prelude::*;

use super::*;
use crate::policy::path::normalise;

#[track_caller]
fn check(pattern: &str, path: &str, expected: bool) {
    let pattern = Pattern::parse(pattern).unwrap();
    assert_eq!(
        pattern.matches(&normalise(path).unwrap()),
        expected,
        "{pattern} vs {path}"
    );
}

#[test]
fn matching() {
    check("/metadata", "/metadata", true);
    // Rules see the canonical path: a trailing slash or empty segment changes nothing.
    check("/metadata", "/metadata/", true);
    check("/metadata", "//metadata//", true);
    check("/metadata", "/metadata/x", false);
    check("/Patient/{id}", "/Patient/123", true);
    check("/Patient/{id}", "/Patient/", false);
    check("/Patient/{id}", "/Patient/123/", true);
    check("/Patient/{id}", "/Patient//123", true);
    check("/Patient/{id}", "/Patient/1/2", false);
    check("/Binary/**", "/Binary", true);
    check("/Binary/**", "/Binary/a/b/c", true);
    check("/Binary/**", "/Binaryx", false);
    check("/**", "/", true);
    check("/", "/", true);
    check("/", "/x", false);
}

#[track_caller]
fn check_may_match(pattern: &str, path: &str, expected: bool) {
    let pattern = Pattern::parse(pattern).unwrap();
    assert_eq!(
        pattern.may_match(&normalise(path).unwrap()),
        expected,
        "{pattern} vs {path}"
    );
}

#[test]
fn matching_as_an_upstream_may() {
    check_may_match("/Report/secret", "/Report/secret", true);
    check_may_match("/Report/secret", "/report/SECRET/", true);
    check_may_match("/Report/secret", "/Report/secret.", true);
    check_may_match("/Report/secret", "/Report/%C5%BFecret", true);
    check_may_match("/Report/secret", "/Report/secret/x", false);
    check_may_match("/Report/secret", "/Report/other", false);
    check_may_match("/Report/{id}", "/REPORT/x", true);
    check_may_match("/Report/**", "/rEpOrT", true);
    check_may_match("/Report/**", "/Reports/x", false);
}

#[test]
fn invalid_patterns() {
    for bad in [
        "Patient",
        "/Patient/**/x",
        "/Patient/{1d}",
        "/Patient/{}",
        "/a//b",
        "/a/../b",
        "/a;b",
        "/a%2Fb",
    ] {
        assert!(Pattern::parse(bad).is_err(), "{bad}");
    }
}

#[track_caller]
fn check_overlap(a: &str, b: &str, exact: bool, loose: bool) {
    let (a, b) = (Pattern::parse(a).unwrap(), Pattern::parse(b).unwrap());
    assert_eq!(a.overlaps(&b), exact, "{a} overlaps {b}");
    assert_eq!(b.overlaps(&a), exact, "{b} overlaps {a}");
    assert_eq!(a.may_overlap(&b), loose, "{a} may overlap {b}");
}

#[test]
fn overlapping() {
    check_overlap("/Report/secret", "/Report/**", true, true);
    check_overlap("/Report/secret", "/Report/{id}", true, true);
    check_overlap("/Report/secret", "/Report/secret", true, true);
    check_overlap("/**", "/", true, true);
    check_overlap("/**", "/a/b/{c}", true, true);
    check_overlap("/a/**", "/a", true, true);
    check_overlap("/a/{b}/c", "/a/x/{d}", true, true);
    check_overlap("/{a}/x", "/y/{b}", true, true);
    check_overlap("/a/{b}/**", "/a/x/y/z", true, true);
    check_overlap("/Report/secret", "/Report/other", false, false);
    check_overlap("/Report/secret", "/Report/secret/{x}", false, false);
    check_overlap("/Report/{id}", "/Report", false, false);
    check_overlap("/a/{b}", "/a/{b}/c", false, false);
    check_overlap("/a/**", "/b/**", false, false);
    check_overlap("/", "/a", false, false);
    check_overlap("/{a}", "/", false, false);
    // Paths that differ only where a case-insensitive upstream would not look.
    check_overlap("/Report/secret", "/report/**", false, true);
    check_overlap("/report/secret", "/REPORT/{id}", false, true);
    check_overlap("/Report/secret", "/Report/secret.", false, true);
    check_overlap("/Report/secret", "/Report/secrets", false, false);
}

#[test]
fn covering() {
    let covers = |a: &str, b: &str| {
        Pattern::parse(a)
            .unwrap()
            .covers(&Pattern::parse(b).unwrap())
    };
    assert!(covers("/**", "/Patient/{id}"));
    assert!(covers("/Patient/{id}", "/Patient/123"));
    assert!(covers("/Patient/**", "/Patient/{id}/_history"));
    assert!(!covers("/Patient/123", "/Patient/{id}"));
    assert!(!covers("/Patient/{id}", "/Patient/**"));
    assert!(!covers("/Patient/{id}", "/Patient/{id}/x"));
}

/// The segments of a path both patterns match, built the way `overlaps` reasons.
fn witness(a: &[Segment], b: &[Segment]) -> Vec<String> {
    let concrete = |segment: &Segment| match segment {
        Segment::Literal(text) => Some(text.clone()),
        Segment::Param => Some("p".to_owned()),
        Segment::Rest => None,
    };
    match (a.split_first(), b.split_first()) {
        (None | Some((Segment::Rest, _)), _) => b.iter().filter_map(concrete).collect(),
        (_, None | Some((Segment::Rest, _))) => a.iter().filter_map(concrete).collect(),
        (Some((ours, a_rest)), Some((theirs, b_rest))) => {
            let head = match ours {
                Segment::Param => concrete(theirs),
                _ => concrete(ours),
            };
            head.into_iter().chain(witness(a_rest, b_rest)).collect()
        }
    }
}

/// Patterns over a tiny alphabet, so that overlaps and case-only differences are common.
fn pattern() -> impl Strategy<Value = Pattern> {
    let segment = prop_oneof![Just("a"), Just("A"), Just("b"), Just("{x}")];
    (prop::collection::vec(segment, 0..4), any::<bool>()).prop_map(|(segments, rest)| {
        let mut text = format!("/{}", segments.join("/"));
        if rest {
            text.push_str(if segments.is_empty() { "**" } else { "/**" });
        }
        Pattern::parse(&text).unwrap()
    })
}

fn path() -> impl Strategy<Value = NormalPath> {
    let segment = prop_oneof![Just("a"), Just("A"), Just("b"), Just("c")];
    prop::collection::vec(segment, 0..5)
        .prop_map(|segments| normalise(&format!("/{}", segments.join("/"))).unwrap())
}

proptest! {
    #[test]
    fn overlaps_exactly_when_some_path_matches_both(a in pattern(), b in pattern(), p in path()) {
        if a.matches(&p) && b.matches(&p) {
            prop_assert!(a.overlaps(&b), "{} and {} both match {}", a, b, p);
        }
        if a.overlaps(&b) {
            let path = normalise(&format!("/{}", witness(&a.segments, &b.segments).join("/")))
                .unwrap();
            prop_assert!(a.matches(&path) && b.matches(&path), "{} {} {}", a, b, path);
            prop_assert!(a.may_overlap(&b));
        }
        prop_assert_eq!(a.overlaps(&b), b.overlaps(&a));
        // A request for `b` that `a`, earlier, may claim is what may_overlap warns about.
        if a.may_match(&p) && b.matches(&p) {
            prop_assert!(a.may_overlap(&b), "{} may claim {} of {}", a, p, b);
        }
    }

    #[test]
    fn an_exact_match_is_a_loose_match(a in pattern(), p in path()) {
        if a.matches(&p) {
            prop_assert!(a.may_match(&p), "{} {}", a, p);
        }
    }
}
