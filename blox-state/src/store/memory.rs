//! The in-memory backend (placeholder; see the conformance suite).
