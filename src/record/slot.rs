//! Room in a bounded sink's queue, lent to a request before it is decided. A [`Slot`] is held
//! by the request and by its queued record alike (it is shared), so the room comes back only when
//! the request is over and its record was written. It never decides what a full queue means:
//! the audit gate does.

use std::sync::Arc;

use prometheus_client::metrics::gauge::Gauge;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// A fixed number of slots, with a gauge of those in use.
#[derive(Clone)]
pub struct Capacity {
    slots: Arc<Semaphore>,
    in_use: Gauge,
}

impl Capacity {
    /// `size` slots; `in_use` reads how many are taken.
    pub fn new(size: usize, in_use: Gauge) -> Self {
        Self {
            slots: Arc::new(Semaphore::new(size)),
            in_use,
        }
    }

    /// One slot, or `None` when every slot is taken.
    pub fn reserve(&self) -> Option<Slot> {
        let permit = Arc::clone(&self.slots).try_acquire_owned().ok()?;
        self.in_use.inc();
        let held = Held {
            _permit: permit,
            in_use: self.in_use.clone(),
        };
        Some(Slot {
            _held: Arc::new(held),
        })
    }
}

/// One reserved slot; it is released when its last clone is dropped.
#[derive(Clone)]
pub struct Slot {
    _held: Arc<Held>,
}

impl std::fmt::Debug for Slot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Slot")
    }
}

struct Held {
    _permit: OwnedSemaphorePermit,
    in_use: Gauge,
}

impl Drop for Held {
    fn drop(&mut self) {
        self.in_use.dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_slot_returns_when_its_last_clone_is_dropped() {
        let gauge = Gauge::default();
        let capacity = Capacity::new(1, gauge.clone());
        let slot = capacity.reserve().unwrap();
        let queued = slot.clone();
        assert!(capacity.reserve().is_none());
        assert_eq!(gauge.get(), 1);
        drop(slot);
        assert!(capacity.reserve().is_none());
        drop(queued);
        assert_eq!(gauge.get(), 0);
        assert!(capacity.reserve().is_some());
    }
}
