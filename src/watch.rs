//! Watching a file's folder for changes: the policy reloader and the revocation file source
//! both react to writes, renames and Kubernetes-style `..data` symlink swaps, which only a
//! folder watch sees. A watch that cannot be set up is logged and the caller falls back to its
//! timer or SIGHUP; it never fails the gateway.

use std::path::Path;

use notify::{RecursiveMode, Watcher};
use tokio::sync::mpsc;

/// Watches the folder holding `path`; every event is a (coalesced) trigger.
pub fn watch_folder(path: &Path, trigger: mpsc::Sender<()>) -> Option<notify::RecommendedWatcher> {
    let folder = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if event.is_ok() {
            // A full channel already holds a pending trigger: nothing is lost by dropping this.
            let _ = trigger.try_send(());
        }
    });
    match watcher.and_then(|mut watcher| {
        watcher
            .watch(folder, RecursiveMode::NonRecursive)
            .map(|()| watcher)
    }) {
        Ok(watcher) => Some(watcher),
        Err(err) => {
            tracing::warn!(error = %err, folder = %folder.display(), "cannot watch the folder; changes are picked up on the next timer tick or SIGHUP");
            None
        }
    }
}
