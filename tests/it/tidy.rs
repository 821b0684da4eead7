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

/// The top-level module a source file belongs to (`src/token/jwks.rs` → `token`).
fn top_module(src: &Path, file: &Path) -> String {
    let relative = file.strip_prefix(src).unwrap();
    let first = relative.components().next().unwrap().as_os_str();
    first.to_string_lossy().trim_end_matches(".rs").to_owned()
}

#[test]
fn top_level_modules_depend_on_each_other_without_cycles() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut edges: std::collections::BTreeMap<String, std::collections::BTreeSet<String>> =
        std::collections::BTreeMap::new();
    for file in files
        .iter()
        .filter(|f| f.file_name().is_some_and(|n| n != "tests.rs"))
    {
        let from = top_module(&src, file);
        let text = std::fs::read_to_string(file).unwrap();
        let uses = edges.entry(from.clone()).or_default();
        for (i, _) in text.match_indices("crate::") {
            let name: String = text[i + 7..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() && name != from {
                uses.insert(name);
            }
        }
    }
    // Depth-first search for a path from a module back to itself.
    fn reaches(
        edges: &std::collections::BTreeMap<String, std::collections::BTreeSet<String>>,
        from: &str,
        target: &str,
        seen: &mut std::collections::BTreeSet<String>,
    ) -> bool {
        edges.get(from).into_iter().flatten().any(|next| {
            next == target || (seen.insert(next.clone()) && reaches(edges, next, target, seen))
        })
    }
    let cycles: Vec<&String> = edges
        .keys()
        .filter(|m| reaches(&edges, m, m, &mut std::collections::BTreeSet::new()))
        .collect();
    assert!(
        cycles.is_empty(),
        "modules in a dependency cycle: {cycles:?}\n{edges:#?}"
    );
}

#[test]
fn the_code_map_names_every_module_and_test_module() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let map = std::fs::read_to_string(root.join("ARCHITECTURE.md")).unwrap();
    let mut missing = Vec::new();
    for entry in std::fs::read_dir(root.join("src")).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        let module = name.trim_end_matches(".rs");
        if !matches!(module, "lib" | "main") && !map.contains(&format!("src/{module}")) {
            missing.push(format!("src/{module}"));
        }
    }
    for entry in std::fs::read_dir(root.join("tests/it")).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        let module = name.trim_end_matches(".rs");
        if !matches!(module, "main" | "support") && !map.contains(&format!("`{module}`")) {
            missing.push(format!("tests/it/{module}"));
        }
    }
    assert!(
        missing.is_empty(),
        "ARCHITECTURE.md does not name {missing:?}"
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
