//! The invariant of ARCHITECTURE.md: the authorised path is the forwarded path, byte for byte.
//! A target that obtains a `Permit` hands it here with the route's path and the request URI.

use http::{Method, Uri};
use phigate::policy::path::normalise;
use phigate::policy::{NormalPath, Permit, PolicyTable};

/// Panics unless `permit` forwards exactly `authorised`, in canonical form, with a target that
/// `policy` decides by the same rule and path again.
pub fn check(
    policy: &PolicyTable,
    method: &Method,
    uri: &Uri,
    authorised: &NormalPath,
    permit: &Permit,
) {
    assert_eq!(permit.path(), authorised, "the permit carries another path");
    assert_eq!(
        normalise(uri.path()).as_ref(),
        Ok(authorised),
        "the route's path is not the request path normalised"
    );
    let forwarded = permit.path_and_query();
    let target: Uri = forwarded
        .parse()
        .unwrap_or_else(|err| panic!("forwarded target {forwarded:?} is not a URI: {err}"));
    assert_eq!(
        target.path(),
        authorised.as_str(),
        "forwarded {forwarded:?}"
    );
    // Canonical: the forwarded path is its own normal form, so no upstream normalises it again
    // into another path.
    assert_eq!(normalise(target.path()).as_ref(), Ok(authorised));
    assert!(
        authorised
            .segments()
            .all(|s| !s.is_empty() && s != "." && s != ".."),
        "{authorised}"
    );
    // Decided again, the forwarded target falls under the same rule: the upstream is asked
    // for nothing another rule decides. (A break-glass permit names its emergency rule.)
    if permit.break_glass().is_none() {
        let again = policy.resolve(method, &target).unwrap_or_else(|fault| {
            panic!("forwarded {forwarded:?} no longer resolves: {fault:?}")
        });
        assert_eq!(
            again.rule_name(),
            permit.rule_name(),
            "forwarded {forwarded:?}"
        );
        assert_eq!(again.path(), authorised);
    }
}
