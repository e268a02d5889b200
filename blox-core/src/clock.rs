//! Where every timestamp blox takes comes from: a [`Clock`] the caller
//! chooses, so a simulation (or a test) controls time.
//!
//! Production uses [`SystemClock`], the wall clock. [`TokioClock`] reads
//! tokio's clock instead: under `tokio::time::pause` it moves only as the
//! runtime's timers do (auto-advanced when every task is idle), so a
//! simulation can run "hours later" redeliveries, retention and backoffs in
//! milliseconds, and replay them from a seed.
//!
//! ```
//! use std::time::Duration;
//! use blox_core::clock::{Clock, TokioClock};
//! use blox_core::model::Timestamp;
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() {
//! let clock = TokioClock::starting_at(Timestamp::from_millis(1_000));
//! tokio::time::sleep(Duration::from_secs(3600)).await;
//! assert_eq!(clock.now(), Timestamp::from_millis(1_000 + 3_600_000));
//! # }
//! ```

use std::fmt;
use std::sync::Arc;

use crate::model::Timestamp;

/// A source of the current time.
pub trait Clock: Send + Sync + fmt::Debug + 'static {
    /// The current time.
    fn now(&self) -> Timestamp;
}

/// A clock shared by the components of one process.
pub type SharedClock = Arc<dyn Clock>;

/// The wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp::now()
    }
}

/// The wall clock as a [`SharedClock`] (every component's default).
pub fn system() -> SharedClock {
    Arc::new(SystemClock)
}

/// A start time plus the tokio time elapsed since the clock was made.
#[derive(Debug, Clone, Copy)]
pub struct TokioClock {
    base: Timestamp,
    at: tokio::time::Instant,
}

impl TokioClock {
    /// Starts at the wall clock's time now.
    pub fn new() -> Self {
        TokioClock::starting_at(Timestamp::now())
    }

    /// Starts at `base` (a fixed time makes a seeded run reproducible).
    pub fn starting_at(base: Timestamp) -> Self {
        TokioClock {
            base,
            at: tokio::time::Instant::now(),
        }
    }

    /// As a [`SharedClock`].
    pub fn shared(self) -> SharedClock {
        Arc::new(self)
    }
}

impl Default for TokioClock {
    fn default() -> Self {
        TokioClock::new()
    }
}

impl Clock for TokioClock {
    fn now(&self) -> Timestamp {
        self.base.plus(self.at.elapsed())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_tokio_clock_moves_with_paused_time_only() {
        let clock = TokioClock::starting_at(Timestamp::from_millis(0));
        assert_eq!(clock.now(), Timestamp::from_millis(0));
        tokio::time::sleep(Duration::from_secs(7200)).await;
        assert_eq!(clock.now(), Timestamp::from_millis(7_200_000));
    }

    #[test]
    fn the_system_clock_is_the_wall_clock() {
        let before = Timestamp::now();
        let now = SystemClock.now();
        assert!(now >= before && now <= Timestamp::now());
    }
}
