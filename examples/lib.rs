//! The code behind the `daemon` example (and the `blox-daemon` binary),
//! kept in a library so integration tests can drive it.

#[path = "daemon/mod.rs"]
pub mod daemon;
