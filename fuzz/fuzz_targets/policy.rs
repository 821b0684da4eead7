//! The policy loader: `PolicyTable::from_yaml` on any text (YAML through serde-saphyr, rule
//! compilation, pattern parsing, scope and SMART checks, shadowing and overlap analysis,
//! break-glass). A policy that compiles is printed as `phigate check` prints it and asked to
//! route a few requests, which must never panic whatever rules it holds.
#![no_main]

use std::path::Path;

use http::{Method, Uri};
use libfuzzer_sys::fuzz_target;
use phigate::policy::PolicyTable;

const REQUESTS: [(Method, &str); 6] = [
    (Method::GET, "/metadata"),
    (Method::GET, "/Patient/123"),
    (Method::POST, "/"),
    (Method::GET, "/Observation?patient=123"),
    (Method::DELETE, "/Report/SECRET."),
    (Method::PATCH, "/Patient/123/_history/2"),
];

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(table) = PolicyTable::from_yaml(text, Path::new("policy-fuzz.yaml")) else {
        return;
    };
    assert!(!table.rules().is_empty(), "a policy without rules compiled");
    let _ = table.to_string();
    for (method, target) in REQUESTS {
        if let Ok(route) = table.resolve(&method, &Uri::from_static(target)) {
            let _ = (route.access_summary(), route.needs_body());
        }
    }
});
