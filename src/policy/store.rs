//! The live policy: one compiled `PolicyTable` that can be swapped atomically. A request takes
//! a snapshot when it starts and is decided entirely under it, so a reload never changes the
//! rules under an in-flight request. Swapping never validates: only a table that compiled can
//! be stored.

use std::sync::Arc;

use arc_swap::ArcSwap;

use super::PolicyTable;

/// The current policy, replaceable while serving.
pub struct PolicyStore {
    current: ArcSwap<PolicyTable>,
}

impl PolicyStore {
    /// A store serving `table`.
    pub fn new(table: PolicyTable) -> Self {
        Self {
            current: ArcSwap::from_pointee(table),
        }
    }

    /// A snapshot of the policy for one request.
    pub fn snapshot(&self) -> Arc<PolicyTable> {
        self.current.load_full()
    }

    /// Replaces the policy; requests already holding a snapshot keep theirs.
    pub fn replace(&self, table: PolicyTable) {
        self.current.store(Arc::new(table));
    }
}
