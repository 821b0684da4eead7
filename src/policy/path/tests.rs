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
fn empty_segments_and_trailing_slashes_disappear() {
    for raw in [
        "/Report/secret",
        "/Report/secret/",
        "/Report/secret//",
        "//Report///secret/",
        "/Report//secret",
        "///Report/secret///",
    ] {
        check(raw, Ok("/Report/secret"));
    }
    check("/", Ok("/"));
    check("//", Ok("/"));
    check("///", Ok("/"));
    check("/Patient/", Ok("/Patient"));
}

#[test]
fn characters_allowed_raw_are_decoded_and_others_kept_encoded() {
    // Upstreams that decode before routing must see the path the rule matched.
    check("/Observation/%24lastn", Ok("/Observation/$lastn"));
    check("/a%3Ab%40c", Ok("/a:b@c"));
    check("/a%21%26%27%28%29%2a%2B%2C%3d", Ok("/a!&'()*+,="));
    // Characters that would change the meaning of the path stay encoded, in upper-case hex.
    check("/a%3fb", Ok("/a%3Fb"));
    check("/a%23b", Ok("/a%23b"));
    check("/a%25b", Ok("/a%25b"));
    check("/a%20b", Ok("/a%20b"));
    check("/a%7bb%7D", Ok("/a%7Bb%7D"));
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
    assert_eq!(segments("/Patient/1/"), ["Patient", "1"]);
    assert_eq!(segments("//Patient//1//"), ["Patient", "1"]);
}

#[track_caller]
fn check_may_equal(raw: &str, literal: &str, expected: bool) {
    let path = normalise(raw).unwrap();
    let segment = path.segments().next().unwrap();
    assert_eq!(may_equal(segment, literal), expected, "{raw} vs {literal}");
}

#[test]
fn segments_an_upstream_may_serve_as_a_literal() {
    check_may_equal("/secret", "secret", true);
    // Letter case: ASP.NET routing, IIS.
    check_may_equal("/SECRET", "secret", true);
    check_may_equal("/sEcReT", "Secret", true);
    // Non-ASCII characters an upstream may map to ASCII: long s, Kelvin sign, dotless i,
    // fullwidth letters.
    check_may_equal("/%C5%BFecret", "secret", true);
    check_may_equal("/%E2%84%AAey", "key", true);
    check_may_equal("/L%C4%B1st", "List", true);
    check_may_equal("/%EF%BD%93ecret", "secret", true);
    // Windows drops trailing dots and spaces.
    check_may_equal("/secret.", "secret", true);
    check_may_equal("/secret%20", "secret", true);
    check_may_equal("/secret.%20.", "secret", true);
    // Differences no known upstream ignores.
    check_may_equal("/secrets", "secret", false);
    check_may_equal("/secre", "secret", false);
    check_may_equal("/secret.json", "secret", false);
    check_may_equal("/.secret", "secret", false);
    check_may_equal("/se%20cret", "secret", false);
    check_may_equal("/s-cret", "secret", false);
    check_may_equal("/%24lastn", "$lastn", true);
    check_may_equal("/%24LASTN", "$lastn", true);
    check_may_equal("/lastn", "$lastn", false);
}

/// Raw paths built from characters, slashes and escapes of every byte in both hex cases, so
/// that encoded dots, slashes and `pchar`s turn up often.
fn raw_path() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        "[a-zA-Z0-9./;\\\\_~:@$+!= -]",
        Just("/".to_owned()),
        any::<u8>().prop_map(|b| format!("%{b:02x}")),
        any::<u8>().prop_map(|b| format!("%{b:02X}")),
    ];
    prop::collection::vec(piece, 0..24).prop_map(|pieces| format!("/{}", pieces.concat()))
}

proptest! {
    #[test]
    fn normalise_is_idempotent_and_never_yields_dangerous_forms(raw in raw_path()) {
        if let Ok(path) = normalise(&raw) {
            let again = normalise(path.as_str()).expect("a normal path normalises");
            prop_assert_eq!(&again, &path);
            let text = path.as_str();
            prop_assert!(text.starts_with('/'));
            prop_assert!(!text.contains("//"));
            prop_assert!(text == "/" || !text.ends_with('/'), "{}", text);
            prop_assert!(path.segments().all(|s| !s.is_empty()));
            for banned in [";", "\\", "%2F", "%5C", "%00", "%2E"] {
                prop_assert!(!text.to_ascii_uppercase().contains(banned), "{}", text);
            }
            prop_assert!(path.segments().all(|s| s != "." && s != ".."));
            // No character that may stand raw is left escaped: one spelling per path.
            for escape in text.split('%').skip(1) {
                let byte = u8::from_str_radix(&escape[..2], 16).expect("two hex digits");
                prop_assert!(!is_pchar(byte), "{}", text);
                prop_assert_eq!(&escape[..2], escape[..2].to_ascii_uppercase());
            }
        }
    }

    #[test]
    fn extra_slashes_never_change_the_canonical_path(raw in raw_path()) {
        let canonical = normalise(&raw);
        prop_assert_eq!(&normalise(&format!("{raw}/")), &canonical);
        prop_assert_eq!(&normalise(&format!("/{raw}")), &canonical);
        prop_assert_eq!(&normalise(&raw.replace('/', "//")), &canonical);
    }

    #[test]
    fn equal_segments_may_always_be_equal(raw in raw_path()) {
        if let Ok(path) = normalise(&raw) {
            // Pattern literals never hold an escape.
            for segment in path.segments().filter(|s| !s.contains('%')) {
                prop_assert!(may_equal(segment, segment), "{}", segment);
                prop_assert!(may_equal(segment, &segment.to_ascii_uppercase()), "{}", segment);
            }
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(raw in "\\PC{0,64}") {
        let _ = normalise(&raw);
    }
}

/// Segments as the client wrote them, between unescaped slashes.
fn raw_segments(raw: &str) -> Vec<&str> {
    raw.split('/').filter(|s| !s.is_empty()).collect()
}

/// A policy with literal, `{param}` and `**` patterns, public and scoped, for the forwarding
/// property; a grant of [`ALL_SCOPES`] satisfies every rule.
const POLICY: &str = r"rules:
  - name: capability-statement
    methods: [GET]
    path: /metadata
    public: true
  - name: secret-report
    methods: [GET]
    path: /Report/secret
    scopes: [reports:secret]
  - name: reports
    methods: [GET]
    path: /Report/**
    public: true
  - name: read-patient
    methods: [GET]
    path: /Patient/{id}
    scopes: [user/Patient.r]
  - name: everything-else
    methods: [GET, POST]
    path: /**
    scopes: [system/*.cruds]
";
const ALL_SCOPES: &str = "reports:secret user/Patient.r system/*.cruds";

proptest! {
    #[test]
    fn an_escaped_slash_never_becomes_a_separator(raw in raw_path()) {
        // `%2F` is refused rather than decoded, so the segments of a normal path are the
        // client's own segments, one for one, each normalised on its own.
        if raw.to_ascii_uppercase().contains("%2F") {
            prop_assert!(normalise(&raw).is_err(), "{}", raw);
        }
        if let Ok(path) = normalise(&raw) {
            let theirs = raw_segments(&raw);
            let ours: Vec<&str> = path.segments().collect();
            prop_assert_eq!(ours.len(), theirs.len(), "{}", raw);
            for (normal, written) in ours.iter().zip(&theirs) {
                let alone = normalise(&format!("/{written}")).expect("a segment of a normal path");
                prop_assert_eq!(alone.as_str(), format!("/{normal}"));
            }
        }
    }

    #[test]
    fn an_authorised_request_forwards_exactly_the_path_it_was_authorised_for(
        raw in raw_path(),
        query in prop::option::of("[a-z0-9=&%/._-]{0,12}"),
        post in any::<bool>(),
    ) {
        use crate::policy::{Content, Grant, PolicyTable, ScopeSet};
        use http::{Method, Uri};

        let target = match query {
            Some(query) => format!("{raw}?{query}"),
            None => raw,
        };
        // Paths `http` cannot carry never reach the policy.
        let Ok(uri) = target.parse::<Uri>() else {
            return Ok(());
        };
        let table = PolicyTable::from_yaml(POLICY, std::path::Path::new("p.yaml")).unwrap();
        let scopes =
            ScopeSet::from_claims(Some(&serde_json::Value::from(ALL_SCOPES)), None).unwrap();
        let method = if post { Method::POST } else { Method::GET };
        let Ok(route) = table.resolve(&method, &uri) else {
            return Ok(());
        };
        let authorised = route.path().clone();
        prop_assert_eq!(normalise(uri.path()), Ok(authorised.clone()));
        let permit = if route.is_public() {
            route.permit_public().unwrap()
        } else {
            let grant = Grant { scopes: &scopes, patient: None, token_age: None };
            route.authorize(&grant, &Content::default()).unwrap()
        };
        prop_assert_eq!(permit.path(), &authorised);
        // What `forward` sends: the authorised path byte for byte, the query untouched.
        let forwarded = permit.path_and_query();
        let expected = match uri.query() {
            Some(query) => format!("{authorised}?{query}"),
            None => authorised.to_string(),
        };
        prop_assert_eq!(&forwarded, &expected);
        let forwarded: Uri = forwarded.parse().unwrap();
        prop_assert_eq!(forwarded.path(), authorised.as_str());
        // And an upstream that normalises again finds nothing to change.
        prop_assert_eq!(normalise(forwarded.path()), Ok(authorised));
    }
}
