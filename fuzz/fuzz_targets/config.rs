//! The configuration loader: `Config::from_yaml` on any text, as `phigate check` reads a file,
//! in a folder holding a valid policy (`policy.yaml`) and secret files (`secret`, 32 bytes),
//! so that a configuration naming them gets past file reading into every section's checks.
#![no_main]

use std::path::PathBuf;
use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use phigate::config::Config;

const POLICY: &str = include_str!("../../policies/example.yaml");

/// The folder the fuzzed `phigate.yaml` is read as living in; made once per process.
static FOLDER: LazyLock<PathBuf> = LazyLock::new(|| {
    let folder = std::env::temp_dir().join(format!("phigate-fuzz-config-{}", std::process::id()));
    std::fs::create_dir_all(&folder).unwrap_or_else(|err| panic!("{err}"));
    std::fs::write(folder.join("policy.yaml"), POLICY).unwrap_or_else(|err| panic!("{err}"));
    std::fs::write(folder.join("secret"), [7; 32]).unwrap_or_else(|err| panic!("{err}"));
    folder
});

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match Config::from_yaml(text, &FOLDER.join("phigate.yaml")) {
        Ok(config) => {
            assert!(!config.policy.rules().is_empty());
            let _ = format!("{config:?}");
        }
        Err(err) => {
            assert!(!err.problems.is_empty(), "refused without a problem");
            let _ = err.to_string();
        }
    }
});
