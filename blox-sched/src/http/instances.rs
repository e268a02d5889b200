//! `GET /v1/environments/{name}/instances`: the daemon's state on every
//! eligible instance of an environment.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use blox_core::model::{Arn, Timestamp};
use blox_state::store::Filter;
use serde::Serialize;

use super::SchedApiState;
use super::error::ApiError;
use super::params::{self, Params, RawPath, RawQuery};
use crate::daemon::{
    DaemonDesired, DaemonInstanceState, Deployment, EnvironmentState, InstanceDaemonStatus,
    instance_statuses,
};
use crate::scheduler::{InstanceBackoff, Snapshot};

/// The failures recorded on the active deployment, as backoff entries that
/// hold at `now` (the runner's own backoff lives in the leader's process;
/// the deployment is what every replica can read).
fn recorded_failures(active: Option<&Deployment>, now: Timestamp) -> HashMap<Arn, InstanceBackoff> {
    let Some(d) = active else {
        return HashMap::new();
    };
    d.failed_instances
        .iter()
        .filter_map(|a| Arn::parse(a).ok().map(|arn| (a, arn)))
        .map(|(text, arn)| {
            let backoff = InstanceBackoff {
                until: now.plus(Duration::from_secs(1)),
                failures: 1,
                last_reason: d.failure_reasons.get(text).cloned(),
            };
            (arn, backoff)
        })
        .collect()
}

/// The answer of `GET /v1/environments/{name}/instances`, serialized in one
/// pass as it is written (no `Value` tree per instance).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Statuses {
    environment_name: String,
    task_definition: String,
    items: Vec<InstanceDaemonStatus>,
    summary: Summary,
    #[serde(skip_serializing_if = "Option::is_none")]
    active_deployment: Option<String>,
}

/// How many eligible instances are in each state.
#[derive(Serialize)]
struct Summary {
    running: usize,
    pending: usize,
    failed: usize,
}

/// `GET /v1/environments/{name}/instances`.
pub(crate) async fn statuses(
    State(s): State<SchedApiState>,
    name: RawPath<String>,
    q: RawQuery,
) -> Result<Json<Statuses>, ApiError> {
    let name = params::path(name)?;
    Params::parse(q, &[])?;
    let environment = s.envs.get(&name).await?;
    let deployments = s.envs.list_deployments(&name).await?;
    if !s.cache.is_ready() {
        return Err(ApiError::Unavailable(
            "the cluster state has not loaded yet; retry".into(),
        ));
    }
    let filter = Filter {
        cluster: Some(environment.cluster().to_owned()),
        ..Filter::default()
    };
    // One consistent view; the environment's own tasks only (those its
    // deployments started), from the cache's startedBy index, decoded
    // after the lock.
    let (instances, tasks) = s.cache.with_view(|v| {
        let tasks: Vec<_> = deployments
            .iter()
            .flat_map(|d| {
                v.tasks_matching(&Filter {
                    started_by: Some(d.id.clone()),
                    ..filter.clone()
                })
            })
            .collect();
        (v.instances_matching(&filter), tasks)
    });
    let instances = instances.iter().map(|e| e.value()).collect();
    let mut tasks: Vec<Arc<blox_core::model::Task>> = tasks.iter().map(|e| e.value()).collect();
    tasks.sort_by(|a, b| a.task_arn.cmp(&b.task_arn));
    let state = EnvironmentState {
        environment,
        deployments,
    };
    let now = s.environments().clock().now();
    let backoff = recorded_failures(state.active(), now);
    let active = state.environment.active_deployment.clone();
    let task_definition = state.environment.task_definition.clone();
    let snap = Snapshot::new(
        instances,
        tasks,
        Vec::new(),
        backoff,
        DaemonDesired::new(vec![state]),
        now,
    );
    let items = instance_statuses(&snap, &name).unwrap_or_default();
    let mut summary = Summary {
        running: 0,
        pending: 0,
        failed: 0,
    };
    for st in &items {
        match st.state {
            DaemonInstanceState::Running => summary.running += 1,
            DaemonInstanceState::Pending => summary.pending += 1,
            DaemonInstanceState::Failed { .. } => summary.failed += 1,
        }
    }
    Ok(Json(Statuses {
        environment_name: name,
        task_definition,
        items,
        summary,
        active_deployment: active,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recorded_failures_hold_now_with_their_reasons() {
        let a = "arn:aws:ecs:us-east-1:1:container-instance/c/i1";
        let mut d = Deployment::new("d1", "web", "web:1", Timestamp::from_millis(0));
        d.failed_instances = vec![a.into(), "not an arn".into()];
        d.failure_reasons.insert(a.into(), "RESOURCE:MEMORY".into());
        let now = Timestamp::from_millis(1_000);
        let b = recorded_failures(Some(&d), now);
        assert_eq!(b.len(), 1);
        let entry = &b[&Arn::parse(a).unwrap()];
        assert!(entry.until > now);
        assert_eq!(entry.last_reason.as_deref(), Some("RESOURCE:MEMORY"));
        assert!(recorded_failures(None, now).is_empty());
    }
}
