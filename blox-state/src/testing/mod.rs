//! Test kit for [`StateStore`](crate::StateStore) backends and their users
//! (feature `testing`).
//!
//! * [`conformance`]: the checks every backend must pass, generic over the
//!   store, with [`conformance_tests!`](crate::conformance_tests) to generate
//!   one `#[tokio::test]` per check for a backend factory.

pub mod conformance;

pub use crate::conformance_tests;
