//! Confirming stops with ECS: a stop decided from an instance's status in
//! the view ([`StopAction::only_if`]) is issued only once
//! `DescribeContainerInstances` shows that status, so a stale view (late
//! events) never stops a task on an instance that has moved on.

use std::collections::{HashMap, HashSet};

use blox_core::model::{Arn, InstanceStatus};
use blox_core::ports::MAX_DESCRIBE_BATCH;

use super::Runner;
use crate::scheduler::{Scheduler, StopAction};

impl<S: Scheduler> Runner<S> {
    /// The tasks of `stops` whose instance check ECS does not confirm
    /// (also when it cannot be asked: no stop without positive evidence),
    /// and the error of a describe call that failed, if any.
    pub(crate) async fn unconfirmed_stops(
        &self,
        stops: &[StopAction],
    ) -> (HashSet<Arn>, Option<String>) {
        // Per cluster, in the order of the stops (so the calls repeat).
        let mut asked: Vec<(&Arn, Vec<Arn>)> = Vec::new();
        for stop in stops {
            let Some(check) = &stop.only_if else {
                continue;
            };
            let at = match asked.iter().position(|(c, _)| *c == &stop.cluster) {
                Some(at) => at,
                None => {
                    asked.push((&stop.cluster, Vec::new()));
                    asked.len() - 1
                }
            };
            let instances = &mut asked[at].1;
            if !instances.contains(&check.instance) {
                instances.push(check.instance.clone());
            }
        }
        let mut status: HashMap<Arn, InstanceStatus> = HashMap::new();
        let mut error = None;
        for (cluster, instances) in asked {
            for chunk in instances.chunks(MAX_DESCRIBE_BATCH) {
                match self
                    .ecs
                    .describe_container_instances_with_missing(cluster.as_str(), chunk)
                    .await
                {
                    Ok(d) => status.extend(
                        (d.found.into_iter()).map(|i| (i.container_instance_arn, i.status)),
                    ),
                    Err(e) => {
                        tracing::warn!(scheduler = self.scheduler.name(), error = %e,
                            "cannot confirm the instance status of stops; not stopping");
                        error = Some(e.to_string());
                    }
                }
            }
        }
        let mut unconfirmed = HashSet::new();
        for stop in stops {
            let Some(check) = &stop.only_if else {
                continue;
            };
            let ecs = status.get(&check.instance);
            if ecs != Some(&check.status) {
                tracing::info!(scheduler = self.scheduler.name(), task = %stop.task,
                    instance = %check.instance, expected = ?check.status, ecs = ?ecs,
                    "ECS does not confirm the instance status the stop was decided on; not stopping");
                unconfirmed.insert(stop.task.clone());
            }
        }
        (unconfirmed, error)
    }
}
