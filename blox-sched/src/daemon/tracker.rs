//! [`DeploymentTracker`]: records deployment status transitions and
//! progress, removes environments deleted with their tasks once those tasks
//! are gone, and removes superseded deployments beyond the kept history.

use std::collections::HashSet;

use super::model::{DaemonDesired, Deployment, DeploymentStatus};
use super::progress::{DeploymentReport, reports};
use super::store::{EnvironmentStore, Fence, Result};
use super::view::View;
use crate::election::LeaderTerm;
use crate::scheduler::{Changes, Snapshot};

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
    /// Superseded deployments removed beyond the kept history
    /// (environment, id).
    pub pruned: Vec<(String, String)>,
}

/// How many superseded deployments of each environment the tracker keeps
/// by default (the active one is always kept).
pub const DEFAULT_DEPLOYMENT_HISTORY: usize = 10;

/// Persists deployment progress through the [`EnvironmentStore`]. Call
/// [`sync`](Self::sync) with each snapshot the scheduler decided on (the
/// runner does, after each cycle); it writes only what changed.
///
/// It also bounds each environment's history: of the superseded
/// deployments it keeps the newest [`with_history`](Self::with_history)
/// (default [`DEFAULT_DEPLOYMENT_HISTORY`]) and removes older ones, but
/// never one that still has a task not stopped or a start in flight (its
/// tasks would otherwise lose their owner).
#[derive(Debug, Clone)]
pub struct DeploymentTracker {
    store: EnvironmentStore,
    history: usize,
}

impl DeploymentTracker {
    /// A tracker writing through `store`.
    pub fn new(store: EnvironmentStore) -> Self {
        DeploymentTracker {
            store,
            history: DEFAULT_DEPLOYMENT_HISTORY,
        }
    }

    /// Keeps this many superseded deployments per environment (0: remove
    /// each as soon as its tasks are gone).
    pub fn with_history(mut self, superseded: usize) -> Self {
        self.history = superseded;
        self
    }

    /// Records the progress and status of every active deployment, removes
    /// environments being deleted whose tasks have all stopped, and removes
    /// superseded deployments beyond the history (unfenced: for a process
    /// that writes alone; the runner calls [`sync_as`](Self::sync_as)).
    pub async fn sync(&self, snap: &Snapshot<DaemonDesired>) -> Result<SyncReport> {
        self.sync_fenced(snap, &[]).await
    }

    /// [`sync`](Self::sync) as the leader of `term`: every write is fenced
    /// by the leader key, so a deposed leader, whose view may be stale,
    /// overwrites nothing its successor recorded
    /// ([`EnvironmentError::Fenced`](super::EnvironmentError::Fenced)).
    pub async fn sync_as(
        &self,
        snap: &Snapshot<DaemonDesired>,
        term: &LeaderTerm,
    ) -> Result<SyncReport> {
        self.sync_fenced(snap, &[term.check()]).await
    }

    async fn sync_fenced(
        &self,
        snap: &Snapshot<DaemonDesired>,
        fence: &Fence,
    ) -> Result<SyncReport> {
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
                .update_deployment(&report.environment, &report.deployment, fence, |d| {
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
                self.store.purge(&env.name, fence).await?;
                out.purged.push(env.name.clone());
            }
        }
        self.prune(snap, fence, &mut out).await?;
        Ok(out)
    }

    /// Removes the superseded deployments beyond the history whose tasks
    /// are all stopped.
    async fn prune(
        &self,
        snap: &Snapshot<DaemonDesired>,
        fence: &Fence,
        out: &mut SyncReport,
    ) -> Result<()> {
        let mut excess: Vec<(&str, &Deployment)> = Vec::new();
        for state in &snap.desired.environments {
            let env = &state.environment;
            if env.deleting {
                continue;
            }
            // Oldest first (the store lists them in sequence order).
            let superseded: Vec<&Deployment> = state
                .deployments
                .iter()
                .filter(|d| {
                    d.superseded_by.is_some() && env.active_deployment.as_ref() != Some(&d.id)
                })
                .collect();
            let over = superseded.len().saturating_sub(self.history);
            excess.extend(superseded[..over].iter().map(|d| (env.name.as_str(), *d)));
        }
        if excess.is_empty() {
            return Ok(());
        }
        let pending: HashSet<&str> = snap
            .pending_starts()
            .map(|p| p.started_by.as_str())
            .collect();
        let busy = |id: &str| {
            pending.contains(id)
                || snap
                    .tasks_started_by(id)
                    .any(|t| !t.last_status.is_terminal())
        };
        for (env, dep) in excess {
            if !busy(dep.id.as_str())
                && self
                    .store
                    .remove_superseded_deployment(env, &dep.id, fence)
                    .await?
            {
                tracing::info!(environment = %env, deployment = %dep.id, "removed an old deployment");
                out.pruned.push((env.to_owned(), dep.id.clone()));
            }
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl crate::runner::SnapshotObserver<DaemonDesired> for DeploymentTracker {
    async fn observe(&self, snapshot: &Snapshot<DaemonDesired>, term: &LeaderTerm) {
        match self.sync_as(snapshot, term).await {
            Ok(report) => {
                for (env, id, status) in &report.updated {
                    tracing::info!(environment = %env, deployment = %id, ?status, "deployment status");
                }
            }
            Err(e) => tracing::warn!(error = %e, "could not record deployment progress"),
        }
    }

    /// Skips the work when neither the desired state nor any instance
    /// changed since the previous decision: progress, deletions and
    /// pruning read nothing else.
    async fn observe_changed(
        &self,
        snapshot: &Snapshot<DaemonDesired>,
        changes: &Changes<'_, DaemonDesired>,
        term: &LeaderTerm,
    ) {
        let unchanged = changes.previous_desired() == Some(&snapshot.desired)
            && changes.instances().next().is_none();
        if !unchanged {
            self.observe(snapshot, term).await;
        }
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
