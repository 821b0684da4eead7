//! Repository hygiene checked like code: every source file explains itself, and the raw token
//! is read only where `ARCHITECTURE.md` says it may be.

use std::path::Path;

fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn every_source_file_opens_with_a_module_doc() {
    let mut files = Vec::new();
    rust_files(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
        &mut files,
    );
    let missing: Vec<_> = files
        .iter()
        .filter(|path| path.file_name().is_some_and(|name| name != "tests.rs"))
        .filter(|path| !std::fs::read_to_string(path).unwrap().starts_with("//!"))
        .collect();
    assert!(
        missing.is_empty(),
        "files without a //! paragraph: {missing:?}"
    );
}

/// ARCHITECTURE.md, "Invariants": only `token/` reads a raw token, plus the forwarder when
/// `upstream.forward_token` is on; everything else works with its `TokenDigest`.
#[test]
fn only_token_and_the_forwarder_expose_the_raw_token() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let allowed = |path: &Path| {
        path.starts_with(root.join("src/token")) || path == root.join("src/proxy/forward.rs")
    };
    let mut files = Vec::new();
    for dir in ["src", "benches"] {
        rust_files(&root.join(dir), &mut files);
    }
    let (permitted, offending): (Vec<_>, Vec<_>) = files
        .iter()
        .filter(|path| std::fs::read_to_string(path).unwrap().contains("expose("))
        .partition(|path| allowed(path));
    // The search itself works: the places that may read the token are found doing so.
    assert!(
        permitted.contains(&&root.join("src/proxy/forward.rs")),
        "{permitted:?}"
    );
    assert!(
        offending.is_empty(),
        "raw token read outside token/ and proxy/forward.rs: {offending:?}"
    );
}
