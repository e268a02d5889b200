//! [`DeploymentTracker`]: records deployment status transitions and
//! progress, and removes environments deleted with their tasks once those
//! tasks are gone.

use super::model::{DaemonDesired, Deployment, DeploymentStatus};
use super::progress::{DeploymentReport, reports};
use super::store::{EnvironmentStore, Result};
use super::view::View;
use crate::scheduler::Snapshot;

/// The status a deployment should have given a report: `pending` until its
/// first start is issued or visible, `running` after, `completed` when every
/// eligible instance runs its task (also when there are none). Status never
/// goes back: a completed deployment stays completed when instances join.
pub fn next_status(current: DeploymentStatus, report: &DeploymentReport) -> DeploymentStatus {
    let target = if report.progress.done == report.progress.total {
        DeploymentStatus::Completed
    } else if report.started {
        DeploymentStatus::Running
    } else {
        DeploymentStatus::Pending
    };
    current.max(target)
}

/// Applies a report to a stored deployment; returns whether it changed.
fn apply(dep: &mut Deployment, report: &DeploymentReport) -> bool {
    let status = next_status(dep.status, report);
    let failed: Vec<String> = report.failed.keys().map(|a| a.to_string()).collect();
    let reasons = report
        .failed
        .iter()
        .map(|(a, r)| (a.to_string(), r.clone()))
        .collect();
    if dep.status == status
        && dep.progress == report.progress
        && dep.failed_instances == failed
        && dep.failure_reasons == reasons
    {
        return false;
    }
    dep.status = status;
    dep.progress = report.progress;
    dep.failed_instances = failed;
    dep.failure_reasons = reasons;
    true
}

/// What one [`DeploymentTracker::sync`] wrote.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SyncReport {
    /// Deployments written (environment, id, status after the write).
    pub updated: Vec<(String, String, DeploymentStatus)>,
    /// Environments removed after their tasks stopped.
    pub purged: Vec<String>,
}

/// Persists deployment progress through the [`EnvironmentStore`]. Call
/// [`sync`](Self::sync) with each snapshot the scheduler decided on (the
/// runner does, after each cycle); it writes only what changed.
#[derive(Debug, Clone)]
pub struct DeploymentTracker {
    store: EnvironmentStore,
}

impl DeploymentTracker {
    /// A tracker writing through `store`.
    pub fn new(store: EnvironmentStore) -> Self {
        DeploymentTracker { store }
    }

    /// Records the progress and status of every active deployment, and
    /// removes environments being deleted whose tasks have all stopped.
    pub async fn sync(&self, snap: &Snapshot<DaemonDesired>) -> Result<SyncReport> {
        let mut out = SyncReport::default();
        let view = View::build(snap);
        for report in reports(snap, &view) {
            let known = snap
                .desired
                .environment(&report.environment)
                .and_then(|e| e.deployments.iter().find(|d| d.id == report.deployment));
            // Skip the store round trip when the snapshot already shows the result.
            if let Some(d) = known
                && !apply(&mut d.clone(), &report)
            {
                continue;
            }
            let mut changed = false;
            let written = self
                .store
                .update_deployment(&report.environment, &report.deployment, |d| {
                    changed = apply(d, &report);
                    changed
                })
                .await?;
            if let Some(d) = written
                && changed
            {
                out.updated
                    .push((report.environment.clone(), d.id, d.status));
            }
        }
        for ev in &view.envs {
            let env = &ev.state.environment;
            if env.deleting && ev.live.is_empty() && ev.in_flight == 0 {
                self.store.purge(&env.name).await?;
                out.purged.push(env.name.clone());
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::daemon::model::Progress;

    fn report(done: usize, total: usize, started: bool) -> DeploymentReport {
        DeploymentReport {
            environment: "e".into(),
            deployment: "d".into(),
            progress: Progress { done, total },
            failed: BTreeMap::new(),
            started,
        }
    }

    #[test]
    fn status_follows_starts_and_completion_and_never_goes_back() {
        use DeploymentStatus::*;
        assert_eq!(next_status(Pending, &report(0, 3, false)), Pending);
        assert_eq!(next_status(Pending, &report(0, 3, true)), Running);
        assert_eq!(next_status(Pending, &report(3, 3, true)), Completed);
        assert_eq!(next_status(Running, &report(0, 3, false)), Running);
        assert_eq!(next_status(Completed, &report(2, 3, true)), Completed);
    }

    #[test]
    fn a_deployment_to_no_eligible_instance_is_complete() {
        assert_eq!(
            next_status(DeploymentStatus::Pending, &report(0, 0, false)),
            DeploymentStatus::Completed
        );
    }
}
