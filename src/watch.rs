//! Reload triggers: watching a file's folder for changes — the policy reloader, the TLS
//! reloader and the revocation file source all react to writes, renames and Kubernetes-style
//! `..data` symlink swaps, which only a folder watch sees — and SIGHUP. A watch or signal
//! handler that cannot be set up is logged and the caller falls back to its other triggers; it
//! never fails the gateway.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};

use notify::{EventKind, RecursiveMode, Watcher};
use tokio::sync::mpsc;

/// Watches the folder holding `path`; every change to that file, or to a Kubernetes `..`
/// entry, is a (coalesced) trigger. The watch ends when the returned [`FolderWatch`] is dropped.
pub fn watch_folder(path: &Path, trigger: mpsc::Sender<()>) -> Option<FolderWatch> {
    let folder = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
        .to_path_buf();
    let name = path.file_name().map(OsStr::to_owned);
    let watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if event.is_ok_and(|event| changes(&event, name.as_deref())) {
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

/// Whether `event` may have changed the file called `name`. Opening and reading are no change
/// — the reload's own read would otherwise trigger the next reload, forever — and neither is
/// anything done to a neighbour (a certificate, the configuration), except Kubernetes' `..data`
/// and `..<timestamp>` entries, whose swap replaces every projected file at once.
fn changes(event: &notify::Event, name: Option<&OsStr>) -> bool {
    if matches!(event.kind, EventKind::Access(_)) {
        return false;
    }
    event.paths.iter().any(|path| {
        path.file_name()
            .is_some_and(|file| Some(file) == name || file.as_encoded_bytes().starts_with(b".."))
    })
}

/// SIGHUP, as a trigger that never fires when its handler could not be installed.
pub struct Hangups(Option<tokio::signal::unix::Signal>);

impl Hangups {
    /// Listens for SIGHUP; `what` names the reloader in the warning when it cannot.
    pub fn listen(what: &str) -> Self {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
            Ok(signal) => Self(Some(signal)),
            Err(err) => {
                tracing::warn!(error = %err, reloader = what, "cannot listen for SIGHUP; reloads only on file changes");
                Self(None)
            }
        }
    }

    /// The next SIGHUP.
    pub async fn recv(&mut self) -> Option<()> {
        match &mut self.0 {
            Some(signal) => signal.recv().await,
            None => std::future::pending().await,
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

#[cfg(test)]
mod tests {
    use notify::event::{AccessKind, CreateKind, ModifyKind, RenameMode};

    use super::*;

    fn event(kind: EventKind, path: &str) -> notify::Event {
        notify::Event::new(kind).add_path(PathBuf::from(path))
    }

    #[test]
    fn only_changes_to_the_file_or_a_kubernetes_swap_trigger() {
        let name = Some(OsStr::new("policy.yaml"));
        let renamed = EventKind::Modify(ModifyKind::Name(RenameMode::To));
        let cases = [
            (renamed, "/etc/phigate/policy.yaml", true),
            (
                EventKind::Create(CreateKind::File),
                "/etc/phigate/policy.yaml",
                true,
            ),
            (
                EventKind::Modify(ModifyKind::Any),
                "/etc/phigate/policy.yaml",
                true,
            ),
            (
                EventKind::Create(CreateKind::Folder),
                "/etc/phigate/..2026_12_07",
                true,
            ),
            (renamed, "/etc/phigate/..data", true),
            // The reload's own read.
            (
                EventKind::Access(AccessKind::Open(notify::event::AccessMode::Read)),
                "/etc/phigate/policy.yaml",
                false,
            ),
            (
                EventKind::Access(AccessKind::Close(notify::event::AccessMode::Read)),
                "/etc/phigate/policy.yaml",
                false,
            ),
            // A neighbour.
            (
                EventKind::Modify(ModifyKind::Any),
                "/etc/phigate/tls.key",
                false,
            ),
            (
                EventKind::Modify(ModifyKind::Any),
                "/etc/phigate/policy.yaml.tmp",
                false,
            ),
        ];
        for (kind, path, expected) in cases {
            assert_eq!(
                changes(&event(kind, path), name),
                expected,
                "{kind:?} {path}"
            );
        }
    }
}
