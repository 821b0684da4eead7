//! `deploy/systemd/`: the unit passes `systemd-analyze verify` (with its commands pointing at
//! the binary under test) and scores as well sandboxed in `systemd-analyze security`, its stop
//! timeout covers the drain, and the sysusers.d file creates the user it runs as.

use std::path::Path;

use phigate::proxy::{AUDIT_FLUSH_DEADLINE, DRAIN_DEADLINE};

use super::{printed, read, repo, succeeds, tool};

const UNIT: &str = "deploy/systemd/phigate.service";
const SYSUSERS: &str = "deploy/systemd/phigate.sysusers";
/// Where the unit expects the binary.
const INSTALLED: &str = "/usr/local/bin/phigate";
/// The highest exposure `systemd-analyze security` may score the unit (0 best, 10 worst).
const MAX_EXPOSURE: &str = "2.0";

/// The values of `key=` in the unit, in order.
fn directives(unit: &str, key: &str) -> Vec<String> {
    unit.lines()
        .filter_map(|line| line.strip_prefix(key)?.strip_prefix('='))
        .map(str::to_owned)
        .collect()
}

/// The unit as installed, but running the binary under test, written to `dir`.
fn unit_for_this_build(dir: &Path) -> std::path::PathBuf {
    let unit = read(UNIT).replace(INSTALLED, env!("CARGO_BIN_EXE_phigate"));
    let file = dir.join("phigate.service");
    std::fs::write(&file, unit).unwrap();
    file
}

#[test]
fn the_unit_reloads_with_sighup_and_confines_phigate() {
    let unit = read(UNIT);
    for (key, wanted) in [
        ("ExecReload", "/bin/kill -HUP $MAINPID"),
        ("CapabilityBoundingSet", "CAP_NET_BIND_SERVICE"),
        ("SystemCallFilter", "@system-service"),
        ("PrivateDevices", "yes"),
        ("RestrictNamespaces", "yes"),
        ("NoNewPrivileges", "yes"),
        ("ProtectSystem", "strict"),
        ("User", "phigate"),
    ] {
        assert!(
            directives(&unit, key).iter().any(|v| v == wanted),
            "{key}={wanted} missing"
        );
    }
    // `check` guards both the start and the reload.
    for key in ["ExecStartPre", "ExecReload"] {
        assert!(
            directives(&unit, key)[0].contains("phigate check --config"),
            "{key}"
        );
    }
    let stop: u64 = directives(&unit, "TimeoutStopSec")[0].parse().unwrap();
    let needed = DRAIN_DEADLINE.as_secs() + AUDIT_FLUSH_DEADLINE.as_secs();
    assert!(stop > needed, "TimeoutStopSec={stop} ≤ {needed}");
}

#[test]
fn systemd_analyze_verifies_the_unit() {
    let Some(mut analyze) = tool("systemd-analyze", "Debian package systemd") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let unit = unit_for_this_build(dir.path());
    let output = succeeds(analyze.arg("verify").arg(&unit));
    // verify reports unknown keys and bad values as warnings and still exits 0.
    assert!(printed(&output).trim().is_empty(), "{}", printed(&output));
}

#[test]
fn systemd_analyze_scores_the_unit_as_well_sandboxed() {
    let Some(mut analyze) = tool("systemd-analyze", "Debian package systemd") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let unit = unit_for_this_build(dir.path());
    let threshold = format!("--threshold={}", MAX_EXPOSURE.replace('.', ""));
    succeeds(
        analyze
            .args(["security", "--offline=yes", &threshold])
            .arg(&unit),
    );
}

#[test]
fn sysusers_creates_the_user_the_unit_runs_as() {
    let Some(mut sysusers) = tool("systemd-sysusers", "Debian package systemd") else {
        return;
    };
    let root = tempfile::tempdir().unwrap();
    std::fs::create_dir(root.path().join("etc")).unwrap();
    // The file by absolute path: with --root, a relative one is looked up under the root.
    let output = succeeds(sysusers.arg("--root").arg(root.path()).arg(repo(SYSUSERS)));
    let passwd = std::fs::read_to_string(root.path().join("etc/passwd")).unwrap();
    let group = std::fs::read_to_string(root.path().join("etc/group")).unwrap();
    let unit = read(UNIT);
    let user = &directives(&unit, "User")[0];
    let entry = passwd
        .lines()
        .find(|l| l.starts_with(&format!("{user}:")))
        .unwrap_or_else(|| panic!("no {user} in\n{passwd}\n{}", printed(&output)));
    let fields: Vec<&str> = entry.split(':').collect();
    // A system account (below 1000), without a login shell.
    assert!(fields[2].parse::<u32>().unwrap() < 1000, "{entry}");
    assert_eq!(fields[6], "/usr/sbin/nologin", "{entry}");
    let wanted_group = &directives(&unit, "Group")[0];
    assert!(
        group
            .lines()
            .any(|l| l.starts_with(&format!("{wanted_group}:"))),
        "{group}"
    );
}
