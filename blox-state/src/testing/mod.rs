//! Test kit for blox-state backends and their users (feature `testing`).
//!
//! * [`etcd_server`]: throwaway etcd servers and clusters on loopback ports.

pub mod etcd_server;
