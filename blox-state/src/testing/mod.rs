//! Test kit for [`StateStore`](crate::StateStore) backends and their users
//! (feature `testing`).
//!
//! * [`conformance`]: the checks every backend must pass, generic over the
//!   store, with [`conformance_tests!`](crate::conformance_tests) to generate
//!   one `#[tokio::test]` per check for a backend factory.
//! * [`FaultyStore`]: a wrapper that injects outages and compactions.
//! * [`CountingStore`]: a wrapper that counts the watch streams open.
//! * [`etcd_server`]: throwaway etcd servers and clusters on loopback ports.
//! * [`queue`]: an event source with SQS's semantics, driven by the test.
//! * [`ManualClock`]: a clock the test moves.

mod clock;
pub mod conformance;
mod counting;
#[cfg(feature = "etcd")]
pub mod etcd_server;
mod faulty;
pub mod queue;

pub use crate::conformance_tests;
pub use clock::ManualClock;
pub use counting::CountingStore;
pub use faulty::FaultyStore;
