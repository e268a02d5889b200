//! [`EcsApi`] over the fake's state: pages of 100, ECS's filters and limits.

use std::collections::BTreeSet;
use std::ops::Bound;

use async_trait::async_trait;

use super::failures::operations as op;
use super::state::State;
use super::tasks::{TaskDefError, USER_INITIATED};
use super::{FakeAction, FakeEcs, FakeError};
use crate::model::{
    Arn, Cluster, ContainerInstance, InstanceStatus, Task, TaskDefinition, TaskStatus,
};
use crate::ports::{
    Described, EcsApi, EcsError, MAX_DESCRIBE_BATCH, MAX_START_TASK_INSTANCES, Page,
    StartTaskOutput, StartTaskRequest, TaskListFilter,
};

/// ECS's page size of `List*` calls.
const PAGE_SIZE: usize = 100;
/// ECS's limit on instances per `UpdateContainerInstancesState` call.
const MAX_UPDATE_INSTANCES: usize = 10;
/// The prefix of the fake's (opaque) page tokens.
const TOKEN_PREFIX: &str = "fake-next:";

fn to_ecs(operation: &'static str, e: FakeError) -> EcsError {
    match e {
        FakeError::UnknownCluster(_) => EcsError::NotFound {
            operation,
            message: "Cluster not found.".into(),
        },
        FakeError::UnknownTask(_) | FakeError::UnknownInstance(_) => EcsError::NotFound {
            operation,
            message: e.to_string(),
        },
        other => EcsError::Service {
            operation,
            code: "ServerException".into(),
            message: other.to_string(),
        },
    }
}

fn invalid(operation: &'static str, message: impl Into<String>) -> EcsError {
    EcsError::InvalidRequest {
        operation,
        message: message.into(),
    }
}

fn task_def_error(operation: &'static str, e: TaskDefError) -> EcsError {
    match e {
        TaskDefError::Missing(_) => EcsError::NotFound {
            operation,
            message: e.to_string(),
        },
        TaskDefError::Invalid(_) => EcsError::Service {
            operation,
            code: "ClientException".into(),
            message: e.to_string(),
        },
    }
}

/// The position after which a page starts.
fn start_after<'t>(
    operation: &'static str,
    token: Option<&'t str>,
) -> Result<Option<&'t str>, EcsError> {
    match token {
        None | Some("") => Ok(None),
        Some(t) => t
            .strip_prefix(TOKEN_PREFIX)
            .map(Some)
            .ok_or_else(|| EcsError::Service {
                operation,
                code: "InvalidParameterException".into(),
                message: "Invalid nextToken".into(),
            }),
    }
}

/// One page of `set` after `token`, keeping the ARNs `keep` accepts; the
/// token is given only when a further match exists, so `n` matches take
/// exactly `ceil(n / 100)` pages.
fn page(
    operation: &'static str,
    set: &BTreeSet<Arn>,
    token: Option<String>,
    mut keep: impl FnMut(&Arn) -> bool,
) -> Result<Page<Arn>, EcsError> {
    let after = start_after(operation, token.as_deref())?;
    let lower = after.map_or(Bound::Unbounded, Bound::Excluded);
    let mut it = set
        .range::<str, _>((lower, Bound::Unbounded))
        .filter(|a| keep(a));
    let items: Vec<Arn> = it.by_ref().take(PAGE_SIZE).cloned().collect();
    let next_token = match (items.len() == PAGE_SIZE, items.last()) {
        (true, Some(last)) if it.next().is_some() => Some(format!("{TOKEN_PREFIX}{last}")),
        _ => None,
    };
    Ok(Page { items, next_token })
}

/// A describe answer as ECS gives it: what `lookup` finds, and the other
/// ARNs as `MISSING` (unknown, forgotten, or of another cluster).
fn described<'a, T: Clone + 'a>(
    arns: &[Arn],
    lookup: impl Fn(&Arn) -> Option<&'a T>,
) -> Described<T> {
    let mut out = Described::default();
    for arn in arns {
        match lookup(arn) {
            Some(item) => out.found.push(item.clone()),
            None => out.missing.push(arn.clone()),
        }
    }
    out
}

fn family_of(task_definition_arn: &str) -> &str {
    let name = task_definition_arn
        .rsplit('/')
        .next()
        .unwrap_or(task_definition_arn);
    name.split(':').next().unwrap_or(name)
}

impl FakeEcs {
    /// Locks the state for an API call: counts it and applies injected failures.
    fn call(&self, operation: &'static str) -> Result<std::sync::MutexGuard<'_, State>, EcsError> {
        let mut st = self.lock();
        match st.failures.on_call(operation) {
            Some(e) => Err(e.to_ecs(operation)),
            None => Ok(st),
        }
    }
}

#[async_trait]
impl EcsApi for FakeEcs {
    async fn list_clusters(&self, next_token: Option<String>) -> Result<Page<Arn>, EcsError> {
        let st = self.call(op::LIST_CLUSTERS)?;
        let set: BTreeSet<Arn> = st.clusters.values().map(|c| c.arn.clone()).collect();
        page(op::LIST_CLUSTERS, &set, next_token, |_| true)
    }

    async fn describe_clusters(&self, clusters: &[String]) -> Result<Vec<Cluster>, EcsError> {
        let st = self.call(op::DESCRIBE_CLUSTERS)?;
        if clusters.len() > MAX_DESCRIBE_BATCH {
            return Err(invalid(op::DESCRIBE_CLUSTERS, "at most 100 clusters"));
        }
        let default = ["default".to_owned()];
        let names = if clusters.is_empty() {
            &default[..]
        } else {
            clusters
        };
        Ok(names
            .iter()
            .filter_map(|n| st.cluster(n).ok())
            .map(|c| {
                let (mut running, mut pending) = (0, 0);
                for t in c
                    .tasks_by_desired
                    .get(&TaskStatus::Running)
                    .into_iter()
                    .flatten()
                    .filter_map(|a| st.tasks.get(a))
                {
                    match t.last_status {
                        TaskStatus::Running => running += 1,
                        TaskStatus::Pending => pending += 1,
                        _ => {}
                    }
                }
                Cluster {
                    cluster_arn: c.arn.clone(),
                    cluster_name: c.name.clone(),
                    status: "ACTIVE".into(),
                    registered_container_instances_count: i64::try_from(c.instances.len()).ok(),
                    running_tasks_count: Some(running),
                    pending_tasks_count: Some(pending),
                }
            })
            .collect())
    }

    async fn list_container_instances(
        &self,
        cluster: &str,
        next_token: Option<String>,
    ) -> Result<Page<Arn>, EcsError> {
        let operation = op::LIST_CONTAINER_INSTANCES;
        let mut st = self.call(operation)?;
        st.expire_lag();
        let c = st.cluster(cluster).map_err(|e| to_ecs(operation, e))?;
        if st.lag.instances.is_empty() {
            return page(operation, &c.instances, next_token, |_| true);
        }
        let shown = st.lag.instances_shown(&c.instances, |arn| {
            st.instances
                .get(arn)
                .is_some_and(|i| i.cluster_arn == c.arn)
        });
        page(operation, &shown, next_token, |_| true)
    }

    async fn describe_container_instances_with_missing(
        &self,
        cluster: &str,
        instances: &[Arn],
    ) -> Result<Described<ContainerInstance>, EcsError> {
        let operation = op::DESCRIBE_CONTAINER_INSTANCES;
        let st = self.call(operation)?;
        if instances.len() > MAX_DESCRIBE_BATCH {
            return Err(invalid(operation, "at most 100 container instances"));
        }
        let c = st.cluster(cluster).map_err(|e| to_ecs(operation, e))?;
        Ok(described(instances, |a| {
            st.instances.get(a).filter(|i| i.cluster_arn == c.arn)
        }))
    }

    async fn list_tasks(
        &self,
        filter: &TaskListFilter,
        next_token: Option<String>,
    ) -> Result<Page<Arn>, EcsError> {
        let operation = op::LIST_TASKS;
        let mut st = self.call(operation)?;
        st.expire_lag();
        let c = st
            .cluster(&filter.cluster)
            .map_err(|e| to_ecs(operation, e))?;
        let desired = filter.desired_status.clone().unwrap_or(TaskStatus::Running);
        let empty = BTreeSet::new();
        let mut set = match &filter.container_instance {
            Some(i) => c.tasks_by_instance.get(i).unwrap_or(&empty),
            None => c.tasks_by_desired.get(&desired).unwrap_or(&empty),
        };
        // Tasks whose change has not reached listings yet may be listed
        // under their former desired status.
        let with_lagging: BTreeSet<Arn>;
        if !st.lag.tasks.is_empty() {
            let mut all = set.clone();
            all.extend(st.lag.tasks.keys().cloned());
            with_lagging = all;
            set = &with_lagging;
        }
        page(operation, set, next_token, |arn| {
            st.tasks.get(arn).is_some_and(|t| {
                t.cluster_arn == c.arn
                    && filter
                        .container_instance
                        .as_ref()
                        .is_none_or(|i| t.container_instance_arn.as_ref() == Some(i))
                    && st.lag.task_shown(arn, &t.desired_status).as_ref() == Some(&desired)
                    && filter
                        .started_by
                        .as_ref()
                        .is_none_or(|s| t.started_by.as_ref() == Some(s))
                    && filter
                        .family
                        .as_deref()
                        .is_none_or(|f| family_of(&t.task_definition_arn) == f)
            })
        })
    }

    async fn describe_tasks_with_missing(
        &self,
        cluster: &str,
        tasks: &[Arn],
    ) -> Result<Described<Task>, EcsError> {
        let operation = op::DESCRIBE_TASKS;
        let st = self.call(operation)?;
        if tasks.len() > MAX_DESCRIBE_BATCH {
            return Err(invalid(operation, "at most 100 tasks"));
        }
        let c = st.cluster(cluster).map_err(|e| to_ecs(operation, e))?;
        Ok(described(tasks, |a| {
            st.tasks.get(a).filter(|t| t.cluster_arn == c.arn)
        }))
    }

    async fn start_task(&self, request: &StartTaskRequest) -> Result<StartTaskOutput, EcsError> {
        let operation = op::START_TASK;
        let out = {
            let mut st = self.call(operation)?;
            let n = request.container_instances.len();
            if n == 0 || n > MAX_START_TASK_INSTANCES {
                return Err(invalid(operation, "between 1 and 10 container instances"));
            }
            if request.started_by.as_ref().is_some_and(|s| s.len() > 36) {
                return Err(EcsError::Service {
                    operation,
                    code: "InvalidParameterException".into(),
                    message: "startedBy may not be more than 36 characters".into(),
                });
            }
            st.cluster(&request.cluster)
                .map_err(|e| to_ecs(operation, e))?;
            let td = st
                .resolve_task_definition(&request.task_definition)
                .map_err(|e| task_def_error(operation, e))?;
            let out = st
                .start_tasks(&request.cluster, &td, request)
                .map_err(|e| to_ecs(operation, e))?;
            st.actions.push(FakeAction::Start {
                cluster: request.cluster.clone(),
                task_definition: request.task_definition.clone(),
                started_by: request.started_by.clone(),
                group: request.group.clone(),
                overrides: request.overrides.clone().map(Box::new),
                tags: request.tags.clone(),
                instances: request.container_instances.clone(),
                started: out.tasks.iter().map(|t| t.task_arn.clone()).collect(),
                failures: out.failures.clone(),
            });
            out
        };
        self.shared.notify.notify_waiters();
        Ok(out)
    }

    async fn stop_task(&self, cluster: &str, task: &Arn, reason: &str) -> Result<Task, EcsError> {
        let operation = op::STOP_TASK;
        let out = {
            let mut st = self.call(operation)?;
            let cluster_arn = st
                .cluster(cluster)
                .map_err(|e| to_ecs(operation, e))?
                .arn
                .clone();
            if st
                .tasks
                .get(task)
                .is_none_or(|t| t.cluster_arn != cluster_arn)
            {
                return Err(to_ecs(operation, FakeError::UnknownTask(task.clone())));
            }
            st.begin_stop(task, reason, USER_INITIATED);
            st.actions.push(FakeAction::Stop {
                cluster: cluster.to_owned(),
                task: task.clone(),
                reason: reason.to_owned(),
            });
            st.tasks
                .get(task)
                .cloned()
                .ok_or_else(|| to_ecs(operation, FakeError::UnknownTask(task.clone())))?
        };
        self.shared.notify.notify_waiters();
        Ok(out)
    }

    async fn describe_task_definition(
        &self,
        task_definition: &str,
    ) -> Result<TaskDefinition, EcsError> {
        let operation = op::DESCRIBE_TASK_DEFINITION;
        let mut st = self.call(operation)?;
        st.resolve_task_definition(task_definition)
            .map_err(|e| task_def_error(operation, e))
    }

    async fn update_container_instances_state(
        &self,
        cluster: &str,
        instances: &[Arn],
        status: InstanceStatus,
    ) -> Result<Vec<ContainerInstance>, EcsError> {
        let operation = op::UPDATE_CONTAINER_INSTANCES_STATE;
        let out = {
            let mut st = self.call(operation)?;
            if !matches!(status, InstanceStatus::Active | InstanceStatus::Draining) {
                return Err(invalid(operation, "status must be ACTIVE or DRAINING"));
            }
            if instances.is_empty() || instances.len() > MAX_UPDATE_INSTANCES {
                return Err(invalid(operation, "between 1 and 10 container instances"));
            }
            let cluster_arn = st
                .cluster(cluster)
                .map_err(|e| to_ecs(operation, e))?
                .arn
                .clone();
            let mut out = Vec::new();
            for arn in instances {
                if st
                    .instances
                    .get(arn)
                    .is_some_and(|i| i.cluster_arn == cluster_arn)
                    && let Some(i) = st.set_instance_status(arn, &status)
                {
                    out.push(i);
                }
            }
            st.actions.push(FakeAction::UpdateInstancesState {
                cluster: cluster.to_owned(),
                instances: instances.to_vec(),
                status,
            });
            out
        };
        self.shared.notify.notify_waiters();
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn arns(n: usize) -> BTreeSet<Arn> {
        (0..n)
            .map(|i| Arn::parse(&format!("arn:aws:ecs:r:1:task/c/{i:05}")).unwrap())
            .collect()
    }

    #[test]
    fn a_filtered_listing_gives_no_token_when_nothing_else_matches() {
        let set = arns(300);
        let even = |a: &Arn| a.id().ends_with(['0', '2', '4', '6', '8']);
        let first = page("ListTasks", &set, None, even).unwrap();
        assert_eq!(first.items.len(), 100);
        let second = page("ListTasks", &set, first.next_token, even).unwrap();
        assert_eq!(second.items.len(), 50);
        assert_eq!(second.next_token, None);
        assert_eq!(second.items[0].id(), "00200");
    }

    #[test]
    fn a_foreign_token_is_an_invalid_parameter() {
        let err = page("ListTasks", &arns(1), Some("abc".into()), |_| true).unwrap_err();
        assert!(
            matches!(err, EcsError::Service { ref code, .. } if code == "InvalidParameterException")
        );
    }

    #[test]
    fn the_family_is_read_from_a_task_definition_arn() {
        assert_eq!(family_of("arn:aws:ecs:r:1:task-definition/web:12"), "web");
        assert_eq!(family_of("web:3"), "web");
    }
}
