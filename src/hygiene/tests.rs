use super::*;

#[track_caller]
fn check(method: &str, target: &str, headers: &[(&str, &str)], expected: Option<&str>) {
    let mut builder = http::Request::builder().method(method).uri(target);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    let (parts, ()) = builder.body(()).unwrap().into_parts();
    let limits = RequestLimits {
        max_path_segments: 8,
        max_query_params: 8,
        ..RequestLimits::default()
    };
    assert_eq!(
        screen(&parts, &limits).err().map(|d| d.reason()),
        expected,
        "{method} {target} {headers:?}"
    );
}

const HOST: (&str, &str) = ("host", "gw");

#[test]
fn methods_phigate_never_forwards_are_refused() {
    check("GET", "/Patient/1", &[HOST], None);
    for method in ["TRACE", "get", "FOO"] {
        check(method, "/Patient/1", &[HOST], Some("method_not_allowed"));
    }
    check("CONNECT", "gw:443", &[HOST], Some("method_not_allowed"));
}

#[test]
fn host_must_be_present_once() {
    check("GET", "/Patient/1", &[], Some("host_invalid"));
    check(
        "GET",
        "/Patient/1",
        &[("host", "a"), ("host", "b")],
        Some("host_invalid"),
    );
}

#[test]
fn method_overrides_are_refused_not_followed() {
    for name in [
        "x-http-method-override",
        "X-HTTP-Method",
        "X-Method-Override",
        "X-Original-Method",
    ] {
        check(
            "POST",
            "/Patient/1",
            &[HOST, (name, "GET")],
            Some("method_override"),
        );
    }
    check(
        "POST",
        "/Patient?_method=DELETE",
        &[HOST],
        Some("method_override"),
    );
    check("GET", "/Patient?_methodical=1", &[HOST], None);
}

#[test]
fn imitations_of_owned_headers_are_refused() {
    for name in [
        "X_Phigate_Subject",
        "x-phigate_scopes",
        "x_phigate_client_id",
        "X_Forwarded_For",
        "x-forwarded_proto",
        "X_Original_URL",
        "x_envoy_original_path",
        "Client_Cert",
        "Proxy_Authorization",
        "Transfer_Encoding",
        "content_length",
        "X_HTTP_Method_Override",
        "authorization_",
    ] {
        let expected = if name == "authorization_" {
            None
        } else {
            Some("header_lookalike")
        };
        check("GET", "/Patient/1", &[HOST, (name, "x")], expected);
    }
    // Underscores in names that imitate nothing are ordinary headers.
    check("GET", "/Patient/1", &[HOST, ("x_request_id", "1")], None);
}

#[test]
fn owned_headers_are_named_exactly() {
    for name in [
        "x-phigate-subject",
        "x-phigate-anything",
        "x-forwarded-for",
        "forwarded",
        "x-original-url",
        "x-rewrite-url",
        "x-forwarded-uri",
        "x-forwarded-prefix",
        "x-forwarded-path",
        "x-envoy-original-path",
        "x-envoy-internal",
        "x-middleware-subrequest",
        "x-ssl-client-cert",
    ] {
        assert!(is_proxy_owned(name), "{name}");
    }
    for name in ["accept", "x-request-id", "prefer", "if-match", "x-phigate"] {
        assert!(!is_proxy_owned(name), "{name}");
    }
}

#[test]
fn uri_size_is_bounded_before_routing() {
    check("GET", "/a/b/c/d/e/f/g/h", &[HOST], None);
    check("GET", "/a/b/c/d/e/f/g/h/i", &[HOST], Some("uri_too_long"));
    check("GET", "/Observation?a&b&c&d&e&f&g&h", &[HOST], None);
    check(
        "GET",
        "/Observation?a&b&c&d&e&f&g&h&i",
        &[HOST],
        Some("uri_too_long"),
    );
    // Empty pieces (`&&`) are not parameters.
    check("GET", "/Observation?a&&&&&&&&&&&b", &[HOST], None);
}
