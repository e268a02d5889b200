//! The ECS a replica talks to: the shared fake ECS behind a layer of seeded
//! faults (throttling, transient failures, a StartTask that succeeds at ECS
//! while its reply is lost), which also records every call the replica makes
//! and checks each stop against the rules of the daemon scheduler.

use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;
use blox_core::model::{Arn, Cluster, ContainerInstance, InstanceStatus, Task, TaskDefinition};
use blox_core::ports::{
    Described, EcsApi, EcsError, Page, StartTaskOutput, StartTaskRequest, TaskListFilter,
};
use blox_core::testing::{FakeEcs, InjectedError};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use tokio::time::Instant;

use crate::world::World;

/// How often ECS calls fail, while faults are on.
#[derive(Debug, Clone, Copy)]
pub struct EcsFaults {
    /// Probability that a call is throttled.
    pub throttle: f64,
    /// Probability that a call fails in transit (nothing happened at ECS).
    pub transient: f64,
    /// Probability that a StartTask succeeds at ECS but its reply is lost.
    pub lost_start_reply: f64,
}

impl EcsFaults {
    /// No faults.
    pub const NONE: EcsFaults = EcsFaults {
        throttle: 0.0,
        transient: 0.0,
        lost_start_reply: 0.0,
    };
}

/// One ECS call a replica made.
#[derive(Debug, Clone)]
pub struct Call {
    /// When (tokio time).
    pub at: Instant,
    /// The operation.
    pub operation: &'static str,
    /// Whether it acts (StartTask, StopTask) rather than reads.
    pub acts: bool,
}

/// The ECS of one replica (see the module docs).
pub struct ReplicaEcs {
    fake: FakeEcs,
    replica: usize,
    world: Arc<World>,
    rng: Mutex<SmallRng>,
    calls: Mutex<Vec<Call>>,
}

impl ReplicaEcs {
    /// The fake behind faults drawn from `seed`, recording into `world`.
    pub fn new(fake: FakeEcs, replica: usize, world: Arc<World>, seed: u64) -> Self {
        ReplicaEcs {
            fake,
            replica,
            world,
            rng: Mutex::new(SmallRng::seed_from_u64(seed)),
            calls: Mutex::new(Vec::new()),
        }
    }

    /// Every call so far.
    pub fn calls(&self) -> Vec<Call> {
        self.calls
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Records a call and draws its fault.
    fn enter(&self, operation: &'static str, acts: bool) -> Result<Option<()>, EcsError> {
        self.calls
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(Call {
                at: Instant::now(),
                operation,
                acts,
            });
        if acts {
            self.world.acted(self.replica, operation);
        }
        let faults = self.world.ecs_faults();
        let mut rng = self.rng.lock().unwrap_or_else(PoisonError::into_inner);
        if rng.random_bool(faults.throttle.clamp(0.0, 1.0)) {
            return Err(InjectedError::Throttled.to_ecs(operation));
        }
        if rng.random_bool(faults.transient.clamp(0.0, 1.0)) {
            return Err(InjectedError::Transport.to_ecs(operation));
        }
        let lose =
            operation == "StartTask" && rng.random_bool(faults.lost_start_reply.clamp(0.0, 1.0));
        Ok(lose.then_some(()))
    }
}

#[async_trait]
impl EcsApi for ReplicaEcs {
    async fn list_clusters(&self, next_token: Option<String>) -> Result<Page<Arn>, EcsError> {
        self.enter("ListClusters", false)?;
        self.fake.list_clusters(next_token).await
    }

    async fn describe_clusters(&self, clusters: &[String]) -> Result<Vec<Cluster>, EcsError> {
        self.enter("DescribeClusters", false)?;
        self.fake.describe_clusters(clusters).await
    }

    async fn list_container_instances(
        &self,
        cluster: &str,
        next_token: Option<String>,
    ) -> Result<Page<Arn>, EcsError> {
        self.enter("ListContainerInstances", false)?;
        self.fake
            .list_container_instances(cluster, next_token)
            .await
    }

    async fn describe_container_instances(
        &self,
        cluster: &str,
        instances: &[Arn],
    ) -> Result<Vec<ContainerInstance>, EcsError> {
        self.enter("DescribeContainerInstances", false)?;
        self.fake
            .describe_container_instances(cluster, instances)
            .await
    }

    async fn describe_container_instances_with_missing(
        &self,
        cluster: &str,
        instances: &[Arn],
    ) -> Result<Described<ContainerInstance>, EcsError> {
        self.enter("DescribeContainerInstances", false)?;
        self.fake
            .describe_container_instances_with_missing(cluster, instances)
            .await
    }

    async fn list_tasks(
        &self,
        filter: &TaskListFilter,
        next_token: Option<String>,
    ) -> Result<Page<Arn>, EcsError> {
        self.enter("ListTasks", false)?;
        self.fake.list_tasks(filter, next_token).await
    }

    async fn describe_tasks(&self, cluster: &str, tasks: &[Arn]) -> Result<Vec<Task>, EcsError> {
        self.enter("DescribeTasks", false)?;
        self.fake.describe_tasks(cluster, tasks).await
    }

    async fn describe_tasks_with_missing(
        &self,
        cluster: &str,
        tasks: &[Arn],
    ) -> Result<Described<Task>, EcsError> {
        self.enter("DescribeTasks", false)?;
        self.fake.describe_tasks_with_missing(cluster, tasks).await
    }

    async fn start_task(&self, request: &StartTaskRequest) -> Result<StartTaskOutput, EcsError> {
        let lose = self.enter("StartTask", true)?;
        let out = self.fake.start_task(request).await?;
        self.world.started(&out.tasks);
        match lose {
            Some(()) => Err(InjectedError::Transport.to_ecs("StartTask")),
            None => Ok(out),
        }
    }

    async fn stop_task(&self, cluster: &str, task: &Arn, reason: &str) -> Result<Task, EcsError> {
        self.enter("StopTask", true)?;
        self.world.check_stop(self.replica, task, reason);
        self.fake.stop_task(cluster, task, reason).await
    }

    async fn describe_task_definition(
        &self,
        task_definition: &str,
    ) -> Result<TaskDefinition, EcsError> {
        self.enter("DescribeTaskDefinition", false)?;
        self.fake.describe_task_definition(task_definition).await
    }

    async fn update_container_instances_state(
        &self,
        cluster: &str,
        instances: &[Arn],
        status: InstanceStatus,
    ) -> Result<Vec<ContainerInstance>, EcsError> {
        self.enter("UpdateContainerInstancesState", true)?;
        self.fake
            .update_container_instances_state(cluster, instances, status)
            .await
    }
}
