//! `--simulate N`: the fake ECS from blox-core as a running cluster `sim`.
//!
//! The fake behaves like ECS (versions increase, every change emits an event
//! that goes through the ingester, StartTask honours resources). With
//! `--simulate-churn`, this driver makes instances join, drain and leave
//! over time, from a seeded generator so `--simulate-seed` repeats a run.
//!
//! Built with the `simulator` feature only; without it, `no_simulator.rs`
//! stands in (a [`Simulation`] that cannot exist).

use std::sync::Arc;
use std::time::Duration;

use blox_core::ports::{EcsApi, EventSource};
use blox_core::testing::{ChurnPlan, FakeEcs, FakeEcsConfig, FakeError, InstanceSpec};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use super::app::DaemonError;
use super::config::Config;

/// The simulated cluster's name.
pub const CLUSTER: &str = "sim";
/// The simulated cluster's ARN.
pub const CLUSTER_ARN: &str = "arn:aws:ecs:us-east-1:000000000000:cluster/sim";

/// Builds the simulated ECS: `instances` ACTIVE instances over three zones.
fn start(instances: u32, seed: Option<u64>) -> Result<FakeEcs, FakeError> {
    let config = FakeEcsConfig {
        region: "us-east-1".into(),
        account: "000000000000".into(),
        seed,
        ..FakeEcsConfig::default()
    };
    FakeEcs::simulation(config, CLUSTER, instances as usize)
}

/// The simulated cluster as the daemon uses it: in place of ECS and the
/// event queue, with its own HTTP controls and optional churn.
pub struct Simulation {
    ecs: FakeEcs,
    instances: u32,
    churn: bool,
    seed: Option<u64>,
}

impl Simulation {
    /// The simulation `--simulate N` asks for; `None` without that flag.
    pub fn from_config(config: &Config) -> Result<Option<Simulation>, DaemonError> {
        let Some(instances) = config.simulate else {
            return Ok(None);
        };
        let ecs = start(instances, config.simulate_seed)
            .map_err(|e| DaemonError::Simulate(e.to_string()))?;
        Ok(Some(Simulation {
            ecs,
            instances,
            churn: config.simulate_churn,
            seed: config.simulate_seed,
        }))
    }

    /// The simulated ECS API and its event stream.
    pub fn ports(&self) -> (Arc<dyn EcsApi>, Arc<dyn EventSource>) {
        (Arc::new(self.ecs.clone()), Arc::new(self.ecs.clone()))
    }

    /// The simulated cluster's name.
    pub fn cluster(&self) -> &'static str {
        CLUSTER
    }

    /// `/v1/simulator/...`: the simulator's controls.
    pub fn router(&self) -> axum::Router {
        super::sim_api::router(self.ecs.clone())
    }

    /// With `--simulate-churn`, the task that drives churn.
    pub fn spawn_churn(&self) -> Option<tokio::task::JoinHandle<()>> {
        self.churn
            .then(|| tokio::spawn(churn(self.ecs.clone(), self.instances as usize, self.seed)))
    }
}

/// Drives churn until the future is dropped: every few seconds an instance
/// joins, one drains, and a drained one leaves, keeping about `target`
/// instances; forgotten entities are expired periodically.
async fn churn(ecs: FakeEcs, target: usize, seed: Option<u64>) {
    let mut rng = SmallRng::seed_from_u64(seed.unwrap_or(0x5eed));
    let mut tick = tokio::time::interval(Duration::from_secs(5));
    let mut n = 0u64;
    loop {
        tick.tick().await;
        n += 1;
        let live = ecs.instance_arns(CLUSTER).unwrap_or_default();
        let active: Vec<_> = live
            .iter()
            .filter(|a| {
                ecs.instance(a)
                    .is_some_and(|i| i.status == blox_core::model::InstanceStatus::Active)
            })
            .cloned()
            .collect();
        let draining: Vec<_> = live
            .iter()
            .filter(|a| !active.contains(a))
            .cloned()
            .collect();
        // Drain one, retire one drained, and add one when below target.
        if n.is_multiple_of(2)
            && active.len() > 1
            && let Some(victim) = active.get(rng.random_range(0..active.len()))
            && let Err(e) = ecs.drain(victim)
        {
            tracing::debug!(error = %e, "simulated drain failed");
        }
        let plan = ChurnPlan {
            join: usize::from(live.len() < target + 1),
            leave: 0,
            crash: usize::from(n.is_multiple_of(3)),
            spec: InstanceSpec::new()
                .az(["us-east-1a", "us-east-1b", "us-east-1c"][n as usize % 3]),
        };
        if let Err(e) = ecs.churn(CLUSTER, &plan) {
            tracing::debug!(error = %e, "simulated churn failed");
        }
        if let Some(old) = draining.first()
            && !n.is_multiple_of(2)
            && let Err(e) = ecs.deregister_instance(old)
        {
            tracing::debug!(error = %e, "simulated leave failed");
        }
        if n.is_multiple_of(60) {
            ecs.expire_retained();
        }
    }
}
