//! Stands in for `simulate.rs` in a build without the `simulator` feature
//! (the production build): there is no simulated cluster, so [`Simulation`]
//! has no values and every use of one is unreachable. `--simulate` is
//! refused before this is reached (see `app::require_simulator`).

use std::sync::Arc;

use blox_core::ports::{EcsApi, EventSource};

use super::app::DaemonError;
use super::config::Config;

/// No simulation in this build.
pub enum Simulation {}

impl Simulation {
    /// Always `None`: this build has no simulator.
    pub fn from_config(_config: &Config) -> Result<Option<Simulation>, DaemonError> {
        Ok(None)
    }

    /// Unreachable: no simulation exists.
    pub fn ports(&self) -> (Arc<dyn EcsApi>, Arc<dyn EventSource>) {
        match *self {}
    }

    /// Unreachable: no simulation exists.
    pub fn cluster(&self) -> &'static str {
        match *self {}
    }

    /// Unreachable: no simulation exists.
    pub fn router(&self) -> axum::Router {
        match *self {}
    }

    /// Unreachable: no simulation exists.
    pub fn spawn_churn(&self) -> Option<tokio::task::JoinHandle<()>> {
        match *self {}
    }
}
