//! `GET /v1/environments/{name}/instances`: the daemon's state on every
//! eligible instance of an environment.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use blox_core::model::{Arn, Timestamp};
use blox_state::store::Filter;
use serde_json::{Value, json};

use super::SchedApiState;
use super::error::ApiError;
use super::params::{self, Params, RawPath, RawQuery};
use crate::daemon::{
    DaemonDesired, DaemonInstanceState, Deployment, EnvironmentState, instance_statuses,
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

/// `GET /v1/environments/{name}/instances`.
pub(crate) async fn statuses(
    State(s): State<SchedApiState>,
    name: RawPath<String>,
    q: RawQuery,
) -> Result<Json<Value>, ApiError> {
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
    let instances = s
        .cache
        .list_instances(&filter)
        .into_iter()
        .map(|e| Arc::clone(&e.value))
        .collect();
    let tasks = s
        .cache
        .list_tasks(&filter)
        .into_iter()
        .map(|e| Arc::clone(&e.value))
        .collect();
    let state = EnvironmentState {
        environment,
        deployments,
    };
    let now = s.environments().clock().now();
    let backoff = recorded_failures(state.active(), now);
    let active = state.environment.active_deployment.clone();
    let task_definition = state.environment.task_definition.clone();
    let snap = Snapshot {
        instances,
        tasks,
        pending_starts: Vec::new(),
        backoff,
        desired: DaemonDesired::new(vec![state]),
        now,
    };
    let list = instance_statuses(&snap, &name).unwrap_or_default();
    let (mut running, mut pending, mut failed) = (0, 0, 0);
    for st in &list {
        match st.state {
            DaemonInstanceState::Running => running += 1,
            DaemonInstanceState::Pending => pending += 1,
            DaemonInstanceState::Failed { .. } => failed += 1,
        }
    }
    let mut out = json!({
        "environmentName": name,
        "taskDefinition": task_definition,
        "items": serde_json::to_value(&list).unwrap_or_else(|_| json!([])),
        "summary": { "running": running, "pending": pending, "failed": failed },
    });
    if let (Some(id), Some(o)) = (active, out.as_object_mut()) {
        o.insert("activeDeployment".into(), json!(id));
    }
    Ok(Json(out))
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
