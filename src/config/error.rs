//! Startup errors: every problem names the file, the line and what is wrong, and `phigate check`
//! prints all of them at once rather than the first.

use std::fmt;
use std::path::{Path, PathBuf};

/// One thing wrong in a configuration or policy file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigProblem {
    /// The file the problem is in.
    pub file: PathBuf,
    /// 1-based line, 0 when the problem is not tied to a line.
    pub line: u64,
    /// 1-based column, 0 when unknown.
    pub column: u64,
    /// What is wrong, in words an operator can act on.
    pub message: String,
}

impl fmt::Display for ConfigProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.line, self.column) {
            (0, _) => write!(f, "{}: {}", self.file.display(), self.message),
            (line, 0) => write!(f, "{}:{line}: {}", self.file.display(), self.message),
            (line, column) => write!(
                f,
                "{}:{line}:{column}: {}",
                self.file.display(),
                self.message
            ),
        }
    }
}

/// Every problem found while loading the configuration.
#[derive(Debug, thiserror::Error)]
pub struct ConfigError {
    /// At least one problem.
    pub problems: Vec<ConfigProblem>,
}

impl ConfigError {
    /// An error with a single problem.
    pub fn single(file: &Path, line: u64, column: u64, message: impl Into<String>) -> Self {
        Self {
            problems: vec![ConfigProblem {
                file: file.to_path_buf(),
                line,
                column,
                message: message.into(),
            }],
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, problem) in self.problems.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{problem}")?;
        }
        Ok(())
    }
}
