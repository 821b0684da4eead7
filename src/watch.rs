//! Watching a file's folder for changes: the policy reloader and the revocation file source
//! both react to writes, renames and Kubernetes-style `..data` symlink swaps, which only a
//! folder watch sees. A watch that cannot be set up is logged and the caller falls back to its
//! timer or SIGHUP; it never fails the gateway.

use std::path::{Path, PathBuf};

use notify::{RecursiveMode, Watcher};
use tokio::sync::mpsc;

/// Watches the folder holding `path`; every event is a (coalesced) trigger. The watch ends when the returned [`FolderWatch`] is dropped.
pub fn watch_folder(path: &Path, trigger: mpsc::Sender<()>) -> Option<FolderWatch> {
    let folder = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
        .to_path_buf();
    let watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if event.is_ok() {
            // A full channel already holds a pending trigger: nothing is lost by dropping this.
            let _ = trigger.try_send(());
        }
    });
    match watcher.and_then(|mut watcher| {
        watcher
            .watch(&folder, RecursiveMode::NonRecursive)
            .map(|()| watcher)
    }) {
        Ok(watcher) => Some(FolderWatch { watcher, folder }),
        Err(err) => {
            tracing::warn!(error = %err, folder = %folder.display(), "cannot watch the folder; changes are picked up on the next timer tick or SIGHUP");
            None
        }
    }
}

/// A folder watch that ends when dropped, before the drop returns.
pub struct FolderWatch {
    watcher: notify::RecommendedWatcher,
    folder: PathBuf,
}

impl Drop for FolderWatch {
    fn drop(&mut self) {
        // notify's own drop only asks its thread to stop; if the folder is deleted meanwhile
        // (the demo's, at exit), that thread logs a failed inotify removal with a source path.
        // `unwatch` waits for the thread to let go, so an owner that has dropped this may
        // delete the folder.
        let _ = self.watcher.unwatch(&self.folder);
    }
}
