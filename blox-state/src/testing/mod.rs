//! Test kit for [`StateStore`](crate::StateStore) backends and their users
//! (feature `testing`).
//!
//! * [`conformance`]: the checks every backend must pass, generic over the
//!   store, with [`conformance_tests!`](crate::conformance_tests) to generate
//!   one `#[tokio::test]` per check for a backend factory.
//! * [`etcd_server`]: throwaway etcd servers and clusters on loopback ports.

pub mod conformance;
pub mod etcd_server;

pub use crate::conformance_tests;
