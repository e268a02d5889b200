//! The in-memory fake ECS: one cluster-of-clusters that implements
//! [`EcsApi`](crate::ports::EcsApi) and [`EventSource`](crate::ports::EventSource)
//! and behaves like ECS where blox depends on it.
//!
//! * Every change bumps the entity's `version` and queues an ECS event in the
//!   EventBridge envelope (`ECS Task State Change` / `ECS Container Instance
//!   State Change`) that [`parse_event`](crate::event::parse_event) turns back
//!   into the same entity.
//! * The queue delivers like SQS: long polling, receipt handles, a visibility
//!   timeout after which undeleted messages return with a higher receive count.
//! * `StartTask` honours status, agent connection and CPU/memory, and reserves
//!   them; stopped tasks release them.
//! * Tests control it directly: register instances, drain, disconnect,
//!   deregister, crash tasks, inject failures, count calls, read the record
//!   of start/stop actions. Nothing runs in the background: time moves on
//!   only through [`FakeEcs::advance`] (in [`TaskProgress::Manual`] mode) and
//!   [`FakeEcs::churn`], which a simulation may call from its own timer.
//!
//! All state sits behind one mutex; [`FakeEcs`] is a cheap `Clone` handle.

mod api;
mod config;
mod events;
mod failures;
mod instances;
mod queue;
mod source;
mod spec;
mod state;
mod tasks;

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::sync::Notify;

pub use config::{FakeEcsConfig, TaskProgress};
pub use failures::{InjectedError, operations};
pub use spec::InstanceSpec;

use crate::model::{Arn, ArnError, ContainerInstance, InstanceStatus, Task, TaskDefinition};
use crate::ports::{PlacementFailure, StartTaskOutput, StartTaskRequest};
use state::State;

/// An error of a test control of the fake.
#[derive(Debug, thiserror::Error)]
pub enum FakeError {
    /// No cluster of that name or ARN.
    #[error("unknown cluster {0:?}")]
    UnknownCluster(String),
    /// No container instance with that ARN.
    #[error("unknown container instance {0}")]
    UnknownInstance(Arn),
    /// No task with that ARN.
    #[error("unknown task {0}")]
    UnknownTask(Arn),
    /// A cluster or family name ECS would refuse.
    #[error("invalid name {0:?}")]
    InvalidName(String),
    /// An operation name the fake does not know.
    #[error("unknown operation {0:?}")]
    UnknownOperation(String),
    /// A task definition that cannot be resolved.
    #[error("task definition {0:?} cannot be resolved")]
    TaskDefinition(String),
    /// The configured partition, region or account makes invalid ARNs.
    #[error(transparent)]
    Arn(#[from] ArnError),
}

/// A start or stop the fake was asked to perform through the API, in call order.
#[derive(Debug, Clone, PartialEq)]
pub enum FakeAction {
    /// A `StartTask` call.
    Start {
        /// The cluster as given.
        cluster: String,
        /// The task definition as given.
        task_definition: String,
        /// Who asked (the `startedBy` tag).
        started_by: Option<String>,
        /// The task group.
        group: Option<String>,
        /// The instances asked for.
        instances: Vec<Arn>,
        /// The tasks started.
        started: Vec<Arn>,
        /// The placements refused.
        failures: Vec<PlacementFailure>,
    },
    /// A `StopTask` call.
    Stop {
        /// The cluster as given.
        cluster: String,
        /// The task.
        task: Arn,
        /// The reason given.
        reason: String,
    },
    /// An `UpdateContainerInstancesState` call.
    UpdateInstancesState {
        /// The cluster as given.
        cluster: String,
        /// The instances.
        instances: Vec<Arn>,
        /// The requested status.
        status: InstanceStatus,
    },
}

/// One step of instance and task churn for a simulation.
#[derive(Debug, Clone, Default)]
pub struct ChurnPlan {
    /// Instances to register.
    pub join: usize,
    /// Random instances to terminate (their tasks stop, they turn INACTIVE).
    pub leave: usize,
    /// Random RUNNING tasks to crash.
    pub crash: usize,
    /// What joining instances look like.
    pub spec: InstanceSpec,
}

/// What a churn step did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChurnReport {
    /// Instances registered.
    pub joined: Vec<Arn>,
    /// Instances terminated.
    pub left: Vec<Arn>,
    /// Tasks crashed.
    pub crashed: Vec<Arn>,
}

struct Shared {
    state: Mutex<State>,
    /// Woken whenever events may have been queued.
    notify: Notify,
}

/// The fake ECS; see the [module docs](self). Clones share one state.
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

    // ----- setup -----

    /// Creates a cluster (idempotent); returns its ARN.
    pub fn create_cluster(&self, name: &str) -> Result<Arn, FakeError> {
        self.lock().create_cluster(name)
    }

    /// Registers the next revision of `family` with task-level CPU and memory.
    pub fn register_task_definition(
        &self,
        family: &str,
        cpu: i64,
        memory: i64,
    ) -> Result<TaskDefinition, FakeError> {
        self.lock().register_task_definition(family, cpu, memory)
    }

    /// Registers a container instance (ACTIVE unless the spec says otherwise);
    /// emits its first event.
    pub fn add_instance(
        &self,
        cluster: &str,
        spec: InstanceSpec,
    ) -> Result<ContainerInstance, FakeError> {
        self.mutate(|st| st.add_instance(cluster, &spec))
    }

    /// Registers `n` instances alike (under one lock); returns their ARNs.
    pub fn add_instances(
        &self,
        cluster: &str,
        n: usize,
        spec: &InstanceSpec,
    ) -> Result<Vec<Arn>, FakeError> {
        self.mutate(|st| {
            (0..n)
                .map(|_| {
                    st.add_instance(cluster, spec)
                        .map(|i| i.container_instance_arn)
                })
                .collect()
        })
    }

    /// Starts tasks as `StartTask` would, without counting the call, injecting
    /// failures, recording an action or limiting the batch to ten: for
    /// setting up large states.
    pub fn run_tasks(
        &self,
        cluster: &str,
        task_definition: &str,
        instances: &[Arn],
        started_by: Option<&str>,
    ) -> Result<StartTaskOutput, FakeError> {
        self.mutate(|st| {
            let td = st
                .resolve_task_definition(task_definition)
                .map_err(|e| FakeError::TaskDefinition(e.to_string()))?;
            let req = StartTaskRequest {
                cluster: cluster.to_owned(),
                task_definition: task_definition.to_owned(),
                container_instances: instances.to_vec(),
                started_by: started_by.map(str::to_owned),
                group: None,
                overrides: None,
            };
            st.start_tasks(cluster, &td, &req)
        })
    }

    // ----- changes, as ECS or the world would make them -----

    /// Sets an instance DRAINING (an event, if it changed).
    pub fn drain(&self, instance: &Arn) -> Result<ContainerInstance, FakeError> {
        self.mutate(|st| st.set_instance_status(instance, &InstanceStatus::Draining))
            .ok_or_else(|| FakeError::UnknownInstance(instance.clone()))
    }

    /// Sets an instance ACTIVE again (an event, if it changed).
    pub fn activate(&self, instance: &Arn) -> Result<ContainerInstance, FakeError> {
        self.mutate(|st| st.set_instance_status(instance, &InstanceStatus::Active))
            .ok_or_else(|| FakeError::UnknownInstance(instance.clone()))
    }

    /// Disconnects an instance's agent: StartTask on it fails with `AGENT`.
    pub fn disconnect_agent(&self, instance: &Arn) -> Result<ContainerInstance, FakeError> {
        self.mutate(|st| st.set_agent_connected(instance, false))
    }

    /// Reconnects an instance's agent.
    pub fn reconnect_agent(&self, instance: &Arn) -> Result<ContainerInstance, FakeError> {
        self.mutate(|st| st.set_agent_connected(instance, true))
    }

    /// Deregisters an instance as when its host terminates: its tasks stop,
    /// it turns INACTIVE (an event) and drops out of
    /// `ListContainerInstances`; describing it still works until
    /// [`expire_retained`](Self::expire_retained).
    pub fn deregister_instance(&self, instance: &Arn) -> Result<ContainerInstance, FakeError> {
        self.mutate(|st| st.deregister_instance(instance))
    }

    /// Crashes a live task: it stops at once with stop code
    /// `EssentialContainerExited` (one event) and releases its resources.
    pub fn crash_task(&self, task: &Arn) -> Result<Task, FakeError> {
        self.mutate(|st| {
            if !st.tasks.contains_key(task) {
                return Err(FakeError::UnknownTask(task.clone()));
            }
            st.crash(task, "Essential container in task exited");
            st.tasks
                .get(task)
                .cloned()
                .ok_or_else(|| FakeError::UnknownTask(task.clone()))
        })
    }

    /// Moves every task in transit one step on (PENDING to RUNNING, desired
    /// STOPPED to STOPPED); returns how many moved. Only
    /// [`TaskProgress::Manual`] leaves tasks in transit.
    pub fn advance(&self) -> usize {
        self.mutate(State::advance)
    }

    /// Forgets STOPPED tasks and INACTIVE instances, as ECS does once they
    /// age out; returns how many entities went (no events, as in ECS).
    pub fn expire_retained(&self) -> usize {
        self.lock().expire_retained()
    }

    /// One step of churn in `cluster`: instances join and leave, running
    /// tasks crash, picked with the fake's (seeded) generator.
    pub fn churn(&self, cluster: &str, plan: &ChurnPlan) -> Result<ChurnReport, FakeError> {
        self.mutate(|st| {
            let mut report = ChurnReport::default();
            for _ in 0..plan.join {
                let i = st.add_instance(cluster, &plan.spec)?;
                report.joined.push(i.container_instance_arn);
            }
            for _ in 0..plan.leave {
                let n = st.cluster(cluster)?.instances.len();
                if n == 0 {
                    break;
                }
                let idx = st.pick(n);
                let Some(arn) = st.cluster(cluster)?.instances.iter().nth(idx).cloned() else {
                    break;
                };
                st.deregister_instance(&arn)?;
                report.left.push(arn);
            }
            for _ in 0..plan.crash {
                let running = st
                    .cluster(cluster)?
                    .tasks_by_desired
                    .get(&crate::model::TaskStatus::Running)
                    .map_or(0, |s| s.len());
                if running == 0 {
                    break;
                }
                let idx = st.pick(running);
                let Some(task) = st
                    .cluster(cluster)?
                    .tasks_by_desired
                    .get(&crate::model::TaskStatus::Running)
                    .and_then(|s| s.iter().nth(idx).cloned())
                else {
                    break;
                };
                if st.crash(&task, "Essential container in task exited") {
                    report.crashed.push(task);
                }
            }
            Ok(report)
        })
    }

    // ----- failure injection and accounting -----

    /// Fails the next `n` calls of `operation` (e.g. `"ListTasks"`, see
    /// [`operations`]) with `error`; `n = 0` cancels.
    pub fn fail_next(
        &self,
        operation: &str,
        n: u32,
        error: InjectedError,
    ) -> Result<(), FakeError> {
        let op = failures::known_operation(operation)
            .ok_or_else(|| FakeError::UnknownOperation(operation.to_owned()))?;
        self.lock().failures.fail_next(op, n, error);
        Ok(())
    }

    /// Fails every call of `operation` with `error` until [`clear_failures`](Self::clear_failures).
    pub fn fail_always(&self, operation: &str, error: InjectedError) -> Result<(), FakeError> {
        let op = failures::known_operation(operation)
            .ok_or_else(|| FakeError::UnknownOperation(operation.to_owned()))?;
        self.lock().failures.fail_always(op, error);
        Ok(())
    }

    /// Fails every call of every operation (ECS and queue) with `error`
    /// until [`clear_failures`](Self::clear_failures): an outage.
    pub fn outage(&self, error: InjectedError) {
        self.lock().failures.outage(Some(error));
    }

    /// Ends every injected failure.
    pub fn clear_failures(&self) {
        self.lock().failures.clear();
    }

    /// How many calls of `operation` were made (failed ones included).
    pub fn calls(&self, operation: &str) -> u64 {
        self.lock().failures.calls(operation)
    }

    /// How many calls were made in all.
    pub fn total_calls(&self) -> u64 {
        self.lock().failures.total_calls()
    }

    /// Zeroes the call counters.
    pub fn reset_calls(&self) {
        self.lock().failures.reset_calls();
    }

    /// The start, stop and state-update calls made through the API, in order.
    pub fn actions(&self) -> Vec<FakeAction> {
        self.lock().actions.clone()
    }

    /// Forgets the recorded actions.
    pub fn clear_actions(&self) {
        self.lock().actions.clear();
    }

    // ----- inspection -----

    /// The ARN of the cluster called `name`.
    pub fn cluster_arn(&self, name: &str) -> Option<Arn> {
        self.lock().cluster(name).ok().map(|c| c.arn.clone())
    }

    /// An instance's current state (INACTIVE ones until expired).
    pub fn instance(&self, arn: &Arn) -> Option<ContainerInstance> {
        self.lock().instances.get(arn).cloned()
    }

    /// A task's current state (STOPPED ones until expired).
    pub fn task(&self, arn: &Arn) -> Option<Task> {
        self.lock().tasks.get(arn).cloned()
    }

    /// The listed (not INACTIVE) instances of a cluster, in ARN order.
    pub fn instance_arns(&self, cluster: &str) -> Result<Vec<Arn>, FakeError> {
        Ok(self
            .lock()
            .cluster(cluster)?
            .instances
            .iter()
            .cloned()
            .collect())
    }

    /// Every task (any status) placed on an instance.
    pub fn tasks_on(&self, instance: &Arn) -> Vec<Task> {
        let st = self.lock();
        let Some(i) = st.instances.get(instance) else {
            return Vec::new();
        };
        st.clusters
            .get(i.cluster_arn.id())
            .and_then(|c| c.tasks_by_instance.get(instance))
            .map(|set| {
                set.iter()
                    .filter_map(|t| st.tasks.get(t).cloned())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// How many tasks the fake holds (STOPPED ones included until expired).
    pub fn task_count(&self) -> usize {
        self.lock().tasks.len()
    }

    /// How many events are queued and not yet deleted.
    pub fn queued_events(&self) -> usize {
        self.lock().queue.len()
    }

    /// Removes every queued event and returns the bodies, oldest first
    /// (a shortcut past receive/delete for tests).
    pub fn take_events(&self) -> Vec<String> {
        self.lock().queue.take_all()
    }

    /// How many events were emitted since creation.
    pub fn events_emitted(&self) -> u64 {
        self.lock().events_emitted
    }
}
