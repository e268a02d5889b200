//! # blox-sched
//!
//! Write your own ECS schedulers: implement [`scheduler::Scheduler`] (a pure
//! function from a cluster snapshot to actions), and let the runner execute
//! its decisions against ECS. The [`scheduler`] module is the scheduler
//! guide: what a snapshot guarantees, what the runner guarantees, and what
//! a scheduler must not assume. The daemon scheduler (one task per eligible
//! instance) is the reference implementation.

pub mod daemon;
pub mod election;
#[cfg(feature = "http")]
pub mod http;
pub mod runner;
pub mod scheduler;
#[cfg(any(test, feature = "testing"))]
pub mod testing;

pub use scheduler::{Action, DesiredSource, Scheduler, Snapshot};
