use proptest::prelude::*;

use super::*;

#[track_caller]
fn check(raw: &str, expected: Result<&str, PathFault>) {
    assert_eq!(
        normalise(raw)
            .as_ref()
            .map(NormalPath::as_str)
            .map_err(|e| *e),
        expected,
        "{raw}"
    );
}

#[test]
fn canonical_forms() {
    check("/", Ok("/"));
    check("//", Ok("/"));
    check("/Patient/123", Ok("/Patient/123"));
    check("//Patient///123", Ok("/Patient/123"));
    check("/Patient/123/", Ok("/Patient/123/"));
    check("/%50atient/%31%32%33", Ok("/Patient/123"));
    check("/Patient/a%7eb", Ok("/Patient/a~b"));
    check("/Binary/%c3%a9", Ok("/Binary/%C3%A9"));
    check("/Patient/123%20", Ok("/Patient/123%20"));
    check("/Observation/$lastn", Ok("/Observation/$lastn"));
    check("/a:b@c", Ok("/a:b@c"));
    check("/Patient/123.json", Ok("/Patient/123.json"));
    check("/Patient/...", Ok("/Patient/..."));
}

#[test]
fn dot_segments_in_every_spelling() {
    for raw in [
        "/metadata/../Patient/456",
        "/metadata/./Patient",
        "/metadata/%2e%2e/Patient/456",
        "/metadata/%2E%2E/Patient/456",
        "/metadata/.%2E/Patient/456",
        "/metadata/%2e./x",
        "/%2e",
        "/..",
        "/a/..",
    ] {
        check(raw, Err(PathFault::DotSegment));
    }
}

#[test]
fn refused_classes() {
    check("/Patient%2F456", Err(PathFault::EncodedSlash));
    check(
        "/metadata%2F..%2FPatient%2F456",
        Err(PathFault::EncodedSlash),
    );
    check("/metadata%5C..%5CPatient%5C456", Err(PathFault::Backslash));
    check("/metadata\\..\\Patient\\456", Err(PathFault::Backslash));
    check("/Patient;x=y/456", Err(PathFault::Semicolon));
    check("/Patient/456;jsessionid=1", Err(PathFault::Semicolon));
    check("/metadata;/../Patient/456", Err(PathFault::Semicolon));
    check("/metadata/..;/Patient/456", Err(PathFault::Semicolon));
    check("/Patient%3Bx", Err(PathFault::Semicolon));
    check("/Patient/123%00", Err(PathFault::ControlCharacter));
    check("/Patient/123%0a", Err(PathFault::ControlCharacter));
    check("/Patient/123%0D", Err(PathFault::ControlCharacter));
    check("/Patient/123%7f", Err(PathFault::ControlCharacter));
    check("/Patient/\t", Err(PathFault::ControlCharacter));
    check(
        "/metadata/%c0%ae%c0%ae/Patient/456",
        Err(PathFault::InvalidUtf8),
    );
    check("/Patient/%ff", Err(PathFault::InvalidUtf8));
    check("/Pat%e2%80%8bient/123", Err(PathFault::InvisibleCharacter));
    check("/Patient/%ef%bb%bf1", Err(PathFault::InvisibleCharacter));
    check("/Patient/%e2%80%ae1", Err(PathFault::InvisibleCharacter));
    check("/Patient/%", Err(PathFault::MalformedEscape));
    check("/Patient/%g1", Err(PathFault::MalformedEscape));
    check("/Patient/%1", Err(PathFault::MalformedEscape));
    check("/Patient/a b", Err(PathFault::InvalidCharacter));
    check("/Patient/\"x\"", Err(PathFault::InvalidCharacter));
    check("/Patient/é", Err(PathFault::InvalidCharacter));
    check("*", Err(PathFault::NotAbsolute));
    check("Patient/1", Err(PathFault::NotAbsolute));
    check(
        &format!("/{}", "a".repeat(MAX_PATH_BYTES)),
        Err(PathFault::TooLong),
    );
}

#[test]
fn segments_of_a_normal_path() {
    let segments = |raw: &str| {
        normalise(raw)
            .unwrap()
            .segments()
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    assert!(segments("/").is_empty());
    assert_eq!(segments("/Patient/1"), ["Patient", "1"]);
    assert_eq!(segments("/Patient/1/"), ["Patient", "1", ""]);
}

proptest! {
    #[test]
    fn normalise_is_idempotent_and_never_yields_dangerous_forms(raw in "/[a-zA-Z0-9%./;\\\\_~:@$-]{0,40}") {
        if let Ok(path) = normalise(&raw) {
            let again = normalise(path.as_str()).expect("a normal path normalises");
            prop_assert_eq!(&again, &path);
            let text = path.as_str();
            prop_assert!(text.starts_with('/'));
            prop_assert!(!text.contains("//"));
            for banned in [";", "\\", "%2F", "%5C", "%00", "%2E"] {
                prop_assert!(!text.to_ascii_uppercase().contains(banned), "{}", text);
            }
            prop_assert!(path.segments().all(|s| s != "." && s != ".."));
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(raw in "\\PC{0,64}") {
        let _ = normalise(&raw);
    }
}
