//! The deployment material in `deploy/`, checked as far as this machine can: the monitoring
//! files against a live `/metrics`, the Kubernetes manifests against the API schemas and against
//! the configuration they mount (which must pass `phigate check`), the container build, and the
//! systemd unit. Validators from outside the repository run through [`tool`]: a missing one
//! skips its test with a note on a developer's machine, and fails it under CI, where `.ci/run`
//! installs every one.

mod image;
mod kubernetes;
mod monitoring;
mod systemd;

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

/// A path in the repository.
fn repo(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(relative)
}

/// A file of the repository, as text.
fn read(relative: &str) -> String {
    std::fs::read_to_string(repo(relative)).unwrap_or_else(|err| panic!("{relative}: {err}"))
}

/// A YAML (or JSON) file of the repository, as a JSON value.
fn yaml(relative: &str) -> Value {
    serde_saphyr::from_str(&read(relative)).unwrap_or_else(|err| panic!("{relative}: {err}"))
}

/// Whether this run is CI's (`.ci/run` runs with `CI=true`).
fn under_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0")
}

/// A command for the validator `program`, or `None` when it is not installed: then the test
/// skips with a note saying where the tool comes from — except under CI, where `.ci/run`
/// installs every validator, so a missing one fails the test instead of passing it unseen.
#[track_caller]
fn tool(program: &str, source: &str) -> Option<Command> {
    let found = std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(program).is_file()));
    if found {
        let mut command = Command::new(program);
        command.current_dir(env!("CARGO_MANIFEST_DIR"));
        return Some(command);
    }
    assert!(
        !under_ci(),
        "{program} is not installed ({source}): .ci/run installs it, and CI runs every deploy check"
    );
    // Straight to the process's stderr: the test harness captures `eprintln!` of passing tests,
    // and a skip must show.
    let _ = writeln!(
        std::io::stderr(),
        "SKIPPED: {program} is not installed ({source}); CI runs this check"
    );
    None
}

/// Runs `command`, failing the test with everything it printed unless it exits 0.
#[track_caller]
fn succeeds(command: &mut Command) -> Output {
    let output = command
        .output()
        .unwrap_or_else(|err| panic!("{command:?}: {err}"));
    assert!(
        output.status.success(),
        "{command:?} failed ({})\n{}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// Everything a command printed, standard output first.
fn printed(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}
