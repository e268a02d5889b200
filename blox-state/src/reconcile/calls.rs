//! The ECS calls of one reconcile, each retried on its own.
//!
//! A reconcile makes many calls (a list page or a describe batch per 100
//! entities); when any fails the cluster is not reconciled in this pass. So
//! that a few transient faults (throttling, a dropped connection) do not
//! void a whole pass, each single call is retried with backoff
//! ([`ReconcileOptions::call_retry`](super::ReconcileOptions::call_retry))
//! before the cluster is given up on. Errors that retrying cannot cure (not
//! found, access denied) fail at once.

use std::future::Future;

use blox_core::model::{Arn, Cluster, ContainerInstance, Task};
use blox_core::ports::{Described, EcsApi, EcsError, TaskListFilter, collect_pages};
use blox_core::retry::RetryPolicy;

/// The reconciler's ECS, each call retried by `retry`.
pub(super) struct Calls<'a> {
    pub(super) ecs: &'a dyn EcsApi,
    pub(super) retry: &'a RetryPolicy,
}

impl Calls<'_> {
    /// Runs one call, retried while its error is retryable.
    async fn call<T, F, Fut>(&self, operation: &str, attempt: F) -> Result<T, EcsError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, EcsError>>,
    {
        self.retry
            .run(operation, attempt, EcsError::is_retryable)
            .await
    }

    /// Every cluster ARN of the account and region.
    pub(super) async fn list_all_clusters(&self) -> Result<Vec<Arn>, EcsError> {
        collect_pages(|token| {
            self.call("ListClusters", move || {
                self.ecs.list_clusters(token.clone())
            })
        })
        .await
    }

    /// Describes up to 100 clusters.
    pub(super) async fn describe_clusters(
        &self,
        clusters: &[String],
    ) -> Result<Vec<Cluster>, EcsError> {
        self.call("DescribeClusters", || self.ecs.describe_clusters(clusters))
            .await
    }

    /// Every container instance ARN of a cluster.
    pub(super) async fn list_all_container_instances(
        &self,
        cluster: &str,
    ) -> Result<Vec<Arn>, EcsError> {
        collect_pages(|token| {
            self.call("ListContainerInstances", move || {
                self.ecs.list_container_instances(cluster, token.clone())
            })
        })
        .await
    }

    /// Every task ARN matching `filter`.
    pub(super) async fn list_all_tasks(
        &self,
        filter: &TaskListFilter,
    ) -> Result<Vec<Arn>, EcsError> {
        collect_pages(|token| {
            self.call("ListTasks", move || {
                self.ecs.list_tasks(filter, token.clone())
            })
        })
        .await
    }

    /// Describes up to 100 container instances.
    pub(super) async fn describe_container_instances(
        &self,
        cluster: &str,
        instances: &[Arn],
    ) -> Result<Described<ContainerInstance>, EcsError> {
        self.call("DescribeContainerInstances", || {
            self.ecs
                .describe_container_instances_with_missing(cluster, instances)
        })
        .await
    }

    /// Describes up to 100 tasks.
    pub(super) async fn describe_tasks(
        &self,
        cluster: &str,
        tasks: &[Arn],
    ) -> Result<Described<Task>, EcsError> {
        self.call("DescribeTasks", || {
            self.ecs.describe_tasks_with_missing(cluster, tasks)
        })
        .await
    }
}
