//! A clock a test sets by hand.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use blox_core::clock::{Clock, SharedClock};
use blox_core::model::Timestamp;

/// A clock that moves only when told to ([`ManualClock::advance`]); clones
/// share the time. Unlike a paused tokio clock it leaves timeouts of real
/// I/O (a real etcd) alone.
#[derive(Debug, Clone)]
pub struct ManualClock(Arc<AtomicI64>);

impl ManualClock {
    /// A clock showing `at`.
    pub fn starting_at(at: Timestamp) -> Self {
        ManualClock(Arc::new(AtomicI64::new(at.as_millis())))
    }

    /// Moves the time forward by `by`.
    pub fn advance(&self, by: Duration) {
        let ms = i64::try_from(by.as_millis()).unwrap_or(i64::MAX);
        self.0.fetch_add(ms, Ordering::SeqCst);
    }

    /// As a [`SharedClock`] (sharing the time with this one).
    pub fn shared(&self) -> SharedClock {
        Arc::new(self.clone())
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        Timestamp::from_millis(self.0.load(Ordering::SeqCst))
    }
}
