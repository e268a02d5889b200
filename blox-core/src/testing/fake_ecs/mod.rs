//! The in-memory fake ECS (see [`FakeEcs`]), split by concern: state and
//! indexes, the task lifecycle, instances, the API, the event queue,
//! failure injection, and the test controls.

mod api;
mod config;
mod controls;
mod events;
mod failures;
mod inspect;
mod instances;
mod lag;
mod queue;
mod source;
mod spec;
mod state;
mod tasks;
mod types;

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::sync::Notify;

pub use config::{FakeEcsConfig, TaskProgress};
pub use failures::{InjectedError, operations};
pub use spec::InstanceSpec;
pub use types::{ChurnPlan, ChurnReport, FakeAction, FakeError};

use state::State;

struct Shared {
    state: Mutex<State>,
    /// Woken whenever events may have been queued.
    notify: Notify,
}

/// The in-memory fake ECS: an account-and-region of clusters that implements
/// [`EcsApi`](crate::ports::EcsApi) and [`EventSource`](crate::ports::EventSource)
/// and behaves like ECS where blox depends on it.
///
/// * Every change bumps the entity's `version` and queues an ECS event in the
///   EventBridge envelope (`ECS Task State Change` / `ECS Container Instance
///   State Change`) that [`parse_event`](crate::event::parse_event) turns back
///   into the same entity.
/// * The queue delivers like SQS: long polling, receipt handles, a visibility
///   timeout after which undeleted messages return with a higher receive count.
/// * `StartTask` honours status, agent connection and CPU/memory, and reserves
///   them; stopped tasks release them.
/// * Tests control it directly: register instances, drain, disconnect,
///   deregister, crash tasks, inject failures, count calls, read the record
///   of start/stop actions. Nothing runs in the background: time moves on
///   only through [`FakeEcs::advance`] (in [`TaskProgress::Manual`] mode) and
///   [`FakeEcs::churn`], which a simulation may call from its own timer.
///
/// All state sits behind one mutex; [`FakeEcs`] is a cheap `Clone` handle.
#[derive(Clone)]
pub struct FakeEcs {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for FakeEcs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let st = self.lock();
        f.debug_struct("FakeEcs")
            .field("clusters", &st.clusters.len())
            .field("instances", &st.instances.len())
            .field("tasks", &st.tasks.len())
            .field("queued_events", &st.queue.len())
            .finish()
    }
}

impl Default for FakeEcs {
    fn default() -> Self {
        FakeEcs::with_config(FakeEcsConfig::default())
    }
}

impl FakeEcs {
    /// A fake with the default settings (random ids, wall clock).
    pub fn new() -> Self {
        FakeEcs::default()
    }

    /// A deterministic fake: the same calls give the same ids, timestamps and events.
    pub fn with_seed(seed: u64) -> Self {
        FakeEcs::with_config(FakeEcsConfig::seeded(seed))
    }

    /// A fake with these settings.
    pub fn with_config(config: FakeEcsConfig) -> Self {
        FakeEcs {
            shared: Arc::new(Shared {
                state: Mutex::new(State::new(config)),
                notify: Notify::new(),
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.shared
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs a change and wakes receivers waiting for events.
    fn mutate<R>(&self, f: impl FnOnce(&mut State) -> R) -> R {
        let r = f(&mut self.lock());
        self.shared.notify.notify_waiters();
        r
    }

    /// A fake holding one cluster of `instances` ACTIVE instances (default
    /// size) spread over three availability zones of the region: the
    /// starting point of `--simulate N`.
    pub fn simulation(
        config: FakeEcsConfig,
        cluster: &str,
        instances: usize,
    ) -> Result<FakeEcs, FakeError> {
        let ecs = FakeEcs::with_config(config);
        ecs.create_cluster(cluster)?;
        let region = ecs.lock().cfg.region.clone();
        ecs.mutate(|st| {
            for n in 0..instances {
                let zone = ["a", "b", "c"][n % 3];
                st.add_instance(cluster, &InstanceSpec::new().az(format!("{region}{zone}")))?;
            }
            Ok::<_, FakeError>(())
        })?;
        Ok(ecs)
    }

    /// The settings.
    pub fn config(&self) -> FakeEcsConfig {
        self.lock().cfg.clone()
    }
}
