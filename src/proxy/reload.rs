//! Policy hot reload: on SIGHUP, and when anything changes in the policy file's folder (which
//! also catches rename-into-place and Kubernetes `..data` symlink swaps), the file is reloaded
//! after a short debounce. A file that does not compile is refused with a log line per problem
//! and `phigate_policy_reload_failures_total`, and the old policy keeps serving; a file that
//! compiles with warnings is swapped in and each warning logged. Triggers that arrive while a
//! reload is pending coalesce into one. Only a change triggers: a file that stays bad is not
//! read again until it changes or SIGHUP asks.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use crate::policy::{PolicyStore, PolicyTable};
use crate::telemetry::Metrics;
use crate::watch::{Hangups, watch_folder};

/// Quiet time after the last change before reading: a half-written file is never read alone.
pub(super) const DEBOUNCE: Duration = Duration::from_millis(250);

/// Reloads the policy file into the store.
pub struct PolicyReloader {
    /// The live policy.
    pub store: Arc<PolicyStore>,
    /// The policy file.
    pub path: PathBuf,
    /// Where reload outcomes are counted.
    pub metrics: Arc<Metrics>,
}

impl PolicyReloader {
    /// Watches for triggers until the task is aborted.
    pub async fn run(self) {
        let (trigger, mut triggers) = mpsc::channel::<()>(1);
        // Keep the watcher alive for as long as this task runs.
        let _watcher = watch_folder(&self.path, trigger.clone());
        // A change made between the first load and the watch taking hold raised no event.
        self.reload();
        let mut hangups = Hangups::listen("policy");
        loop {
            tokio::select! {
                Some(()) = triggers.recv() => {}
                Some(()) = hangups.recv() => {}
            }
            tokio::time::sleep(DEBOUNCE).await;
            while triggers.try_recv().is_ok() {}
            self.reload();
        }
    }

    /// Reloads now: swaps in the new policy, or keeps the old one and reports why.
    pub fn reload(&self) {
        match PolicyTable::load(&self.path) {
            Ok(table) if table.version() == self.store.snapshot().version() => {}
            Ok(table) => {
                let version = table.version().to_owned();
                if table.has_report_only_rules() {
                    tracing::warn!(
                        policy.version = version,
                        "REPORT-ONLY rules active after reload"
                    );
                }
                log_warnings(&table);
                init_break_glass(&self.metrics, &table);
                self.store.replace(table);
                self.metrics.record_policy_reload(true);
                tracing::info!(policy.version = version, "policy reloaded");
            }
            Err(err) => {
                self.metrics.record_policy_reload(false);
                for problem in &err.problems {
                    tracing::error!(
                        policy.file = %problem.file.display(),
                        policy.line = problem.line,
                        problem = %problem.message,
                        "policy reload refused; the previous policy keeps serving"
                    );
                }
            }
        }
    }
}

/// Logs the policy's warnings (overlapping weaker rules, case-only differences), at start and
/// after every reload: they never stop a policy from serving.
/// Makes each break-glass rule's counter read 0, and says break-glass is armed.
pub(crate) fn init_break_glass(metrics: &Metrics, table: &PolicyTable) {
    if let Some(section) = table.break_glass() {
        metrics.init_break_glass(section.rules().iter().map(|rule| rule.name()));
        tracing::warn!(
            policy.version = table.version(),
            break_glass.scope = section.scope().as_str(),
            "break-glass rules active: every request granted through them is logged at WARN"
        );
    }
}

pub(crate) fn log_warnings(table: &PolicyTable) {
    for warning in table.warnings() {
        tracing::warn!(
            policy.file = %warning.file.display(),
            policy.line = warning.line,
            policy.version = table.version(),
            problem = %warning.message,
            "policy warning"
        );
    }
}
