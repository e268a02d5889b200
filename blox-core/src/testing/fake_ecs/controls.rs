//! Test controls that set up and change the fake's world, as ECS or the
//! world outside it would.

use super::state::State;
use super::{ChurnPlan, ChurnReport, FakeEcs, FakeError, InstanceSpec};
use crate::model::{Arn, ContainerInstance, InstanceStatus, Task, TaskDefinition, TaskStatus};
use crate::ports::{StartTaskOutput, StartTaskRequest};

impl FakeEcs {
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
                tags: Default::default(),
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
    /// [`TaskProgress::Manual`](super::TaskProgress::Manual) leaves tasks in transit.
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
                    .get(&TaskStatus::Running)
                    .map_or(0, |s| s.len());
                if running == 0 {
                    break;
                }
                let idx = st.pick(running);
                let Some(task) = st
                    .cluster(cluster)?
                    .tasks_by_desired
                    .get(&TaskStatus::Running)
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
}
