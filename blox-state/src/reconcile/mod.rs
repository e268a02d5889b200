//! The reconciler: repairs drift between the store and the ECS API.
//!
//! Events can be lost (a queue purged, a DLQ, an outage before the queue
//! existed), so the reconciler periodically lists and describes each cluster
//! and repairs the store:
//!
//! * container instances and tasks (RUNNING and STOPPED) are listed and
//!   described in pages of 100, ECS's maximum, so the number of calls is the
//!   minimum the page limits allow; the ECS adapter's rate limit spreads them;
//! * only what changed is written (a reconcile of an unchanged cluster
//!   performs no writes), each write versioned like an event's;
//! * what ECS no longer returns is handled only after a complete listing (a
//!   listing that fails halfway deletes nothing): instances are kept as
//!   INACTIVE and tasks are removed, and stopped tasks and INACTIVE
//!   instances are removed after the retention period;
//! * every write is guarded with `unchanged_since` = the revision of the
//!   store snapshot taken before listing, so an entity that an event updated
//!   after the listing began is never overwritten or deleted.
//!
//! [`Reconciler::run`] reconciles at start (the bootstrap, retried with
//! backoff until it succeeds), then on an interval and on demand
//! ([`ReconcileTrigger`]), only while its leadership signal is `true`.

mod compare;
pub mod record;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use blox_core::backoff::Backoff;
use blox_core::model::{Arn, ContainerInstance, Entity, EntityKind, TaskStatus, Timestamp};
use blox_core::ports::{EcsApi, EcsApiExt, EcsError, MAX_DESCRIBE_BATCH, TaskListFilter};
use tokio::sync::{Notify, watch};

use crate::store::{Change, Filter, Revision, StateStore, StoreError, Versioned};
use compare::{inactive_copy, instance_changed, instance_expired, task_changed, task_expired};

/// Reconciler settings.
#[derive(Debug, Clone)]
pub struct ReconcileOptions {
    /// Clusters to reconcile (names or ARNs); empty = every cluster of the account and region.
    pub clusters: Vec<String>,
    /// Time between periodic reconciles.
    pub interval: Duration,
    /// How long stopped tasks and INACTIVE instances are kept.
    pub retention: Duration,
    /// Backoff of the bootstrap and of failed runs.
    pub backoff: Backoff,
    /// The clock of retention (default: the wall clock).
    pub clock: blox_core::clock::SharedClock,
}

impl Default for ReconcileOptions {
    fn default() -> Self {
        ReconcileOptions {
            clusters: Vec::new(),
            interval: Duration::from_secs(300),
            retention: Duration::from_secs(3600),
            backoff: Backoff::new(Duration::from_millis(500), Duration::from_secs(60)),
            clock: blox_core::clock::system(),
        }
    }
}

/// What one reconcile changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ReconcileReport {
    /// Clusters reconciled completely.
    pub clusters: usize,
    /// Clusters whose listing failed (nothing was removed from them).
    pub failed_clusters: usize,
    /// Entities ECS has that the store lacked.
    pub added: usize,
    /// Entities whose stored state was out of date.
    pub updated: usize,
    /// Instances ECS no longer lists, recorded as INACTIVE.
    pub marked_inactive: usize,
    /// Entities removed (vanished tasks, expired stopped tasks and INACTIVE instances).
    pub removed: usize,
    /// Writes skipped because an event changed the entity after the listing began.
    pub skipped_concurrent: usize,
}

impl ReconcileReport {
    /// Store writes this reconcile made.
    pub fn writes(&self) -> usize {
        self.added + self.updated + self.marked_inactive + self.removed
    }

    fn count(&mut self, effect: Effect) {
        match effect {
            Effect::Added => self.added += 1,
            Effect::Updated => self.updated += 1,
            Effect::MarkedInactive => self.marked_inactive += 1,
            Effect::Removed => self.removed += 1,
        }
    }

    fn merge(&mut self, o: &ReconcileReport) {
        self.clusters += o.clusters;
        self.failed_clusters += o.failed_clusters;
        self.added += o.added;
        self.updated += o.updated;
        self.marked_inactive += o.marked_inactive;
        self.removed += o.removed;
        self.skipped_concurrent += o.skipped_concurrent;
    }
}

/// Which report counter a planned write feeds once applied.
#[derive(Debug, Clone, Copy)]
enum Effect {
    Added,
    Updated,
    MarkedInactive,
    Removed,
}

/// Why a reconcile failed.
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    /// An ECS call failed.
    #[error("ECS call failed during reconcile of {cluster}")]
    Ecs {
        /// The cluster being reconciled (or `*` for the cluster listing).
        cluster: String,
        /// The ECS error.
        #[source]
        source: EcsError,
    },
    /// A store call failed.
    #[error("state store failed during reconcile")]
    Store(#[source] StoreError),
    /// Some clusters failed; the others were reconciled (see the report).
    #[error("{failed} of {total} clusters failed to reconcile; first error: {first}")]
    Partial {
        /// Clusters that failed.
        failed: usize,
        /// Clusters attempted.
        total: usize,
        /// The first failure.
        first: Box<ReconcileError>,
        /// What the successful clusters changed.
        report: ReconcileReport,
    },
}

/// Asks a running reconciler to reconcile now.
#[derive(Clone, Default)]
pub struct ReconcileTrigger(Arc<Notify>);

impl ReconcileTrigger {
    /// Requests a reconcile as soon as possible (requests made while one runs coalesce).
    pub fn trigger(&self) {
        self.0.notify_one();
    }
}

/// Repairs the store from the ECS API (see the module docs).
#[derive(Clone)]
pub struct Reconciler {
    ecs: Arc<dyn EcsApi>,
    store: Arc<dyn StateStore>,
    options: ReconcileOptions,
    trigger: ReconcileTrigger,
    last: Arc<Mutex<Option<ReconcileReport>>>,
    bootstrapped: watch::Sender<bool>,
}

/// The store's view of one cluster, taken before listing ECS.
struct Snapshot {
    instances: HashMap<Arn, Versioned>,
    tasks: HashMap<Arn, Versioned>,
    revision: Revision,
}

impl Reconciler {
    /// A reconciler of `store` against `ecs`.
    pub fn new(
        ecs: Arc<dyn EcsApi>,
        store: Arc<dyn StateStore>,
        options: ReconcileOptions,
    ) -> Self {
        Reconciler {
            ecs,
            store,
            options,
            trigger: ReconcileTrigger::default(),
            last: Arc::new(Mutex::new(None)),
            bootstrapped: watch::channel(false).0,
        }
    }

    /// A handle that requests a reconcile now.
    pub fn trigger(&self) -> ReconcileTrigger {
        self.trigger.clone()
    }

    /// The report of the last successful reconcile.
    pub fn last_report(&self) -> Option<ReconcileReport> {
        *self.last.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `true` once a complete reconcile has succeeded (the bootstrap).
    pub fn bootstrapped(&self) -> watch::Receiver<bool> {
        self.bootstrapped.subscribe()
    }

    fn ecs_err(cluster: &str) -> impl FnOnce(EcsError) -> ReconcileError + '_ {
        move |source| ReconcileError::Ecs {
            cluster: cluster.to_owned(),
            source,
        }
    }

    /// The clusters to reconcile, as ARNs where ECS knows them.
    async fn clusters(&self) -> Result<Vec<String>, ReconcileError> {
        if !self.options.clusters.is_empty() {
            return Ok(self.options.clusters.clone());
        }
        let arns = self
            .ecs
            .list_all_clusters()
            .await
            .map_err(Self::ecs_err("*"))?;
        Ok(arns.into_iter().map(|a| a.to_string()).collect())
    }

    /// Reconciles every configured cluster once, now (by the options' clock).
    pub async fn reconcile_once(&self) -> Result<ReconcileReport, ReconcileError> {
        self.reconcile_at(self.options.clock.now()).await
    }

    /// Reconciles every configured cluster once, with `now` as the time
    /// retention periods are measured against.
    pub async fn reconcile_at(&self, now: Timestamp) -> Result<ReconcileReport, ReconcileError> {
        let clusters = self.clusters().await?;
        let mut report = ReconcileReport::default();
        let mut first_error = None;
        let mut failed = 0;
        for cluster in &clusters {
            match self.reconcile_cluster(cluster, now).await {
                Ok(r) => report.merge(&r),
                Err(e) => {
                    tracing::warn!(%cluster, error = %e, "reconcile of cluster failed; nothing removed from it");
                    failed += 1;
                    report.failed_clusters += 1;
                    first_error.get_or_insert(e);
                }
            }
        }
        if let Some(first) = first_error {
            return Err(ReconcileError::Partial {
                failed,
                total: clusters.len(),
                first: Box::new(first),
                report,
            });
        }
        *self.last.lock().unwrap_or_else(|e| e.into_inner()) = Some(report);
        Ok(report)
    }

    async fn snapshot(&self, cluster: &str) -> Result<Snapshot, ReconcileError> {
        let filter = Filter {
            cluster: Some(cluster.to_owned()),
            ..Filter::default()
        };
        let instances = self
            .store
            .list(EntityKind::Instance, &filter)
            .await
            .map_err(ReconcileError::Store)?;
        let tasks = self
            .store
            .list(EntityKind::Task, &filter)
            .await
            .map_err(ReconcileError::Store)?;
        // Guard with the older of the two list revisions: anything written
        // after it (by an event) is left alone.
        let revision = if instances.revision.seq <= tasks.revision.seq {
            instances.revision
        } else {
            tasks.revision
        };
        let key = |v: Versioned| (v.entity.arn().clone(), v);
        Ok(Snapshot {
            instances: instances.items.into_iter().map(key).collect(),
            tasks: tasks.items.into_iter().map(key).collect(),
            revision,
        })
    }

    /// Lists and describes a cluster's instances; then describes the stored
    /// ones ECS stopped listing (ECS still describes deregistered instances
    /// for a while, as INACTIVE).
    async fn ecs_instances(
        &self,
        cluster: &str,
        snapshot: &Snapshot,
    ) -> Result<HashMap<Arn, ContainerInstance>, ReconcileError> {
        let arns = self
            .ecs
            .list_all_container_instances(cluster)
            .await
            .map_err(Self::ecs_err(cluster))?;
        let listed: HashSet<&Arn> = arns.iter().collect();
        let vanished: Vec<Arn> = snapshot
            .instances
            .keys()
            .filter(|a| !listed.contains(a))
            .cloned()
            .collect();
        let mut out = HashMap::with_capacity(arns.len());
        for chunk in arns
            .chunks(MAX_DESCRIBE_BATCH)
            .chain(vanished.chunks(MAX_DESCRIBE_BATCH))
        {
            let described = self
                .ecs
                .describe_container_instances(cluster, chunk)
                .await
                .map_err(Self::ecs_err(cluster))?;
            out.extend(
                described
                    .into_iter()
                    .map(|i| (i.container_instance_arn.clone(), i)),
            );
        }
        Ok(out)
    }

    /// Lists (RUNNING and STOPPED) and describes a cluster's tasks.
    async fn ecs_tasks(
        &self,
        cluster: &str,
    ) -> Result<HashMap<Arn, blox_core::Task>, ReconcileError> {
        let mut arns = Vec::new();
        for desired in [TaskStatus::Running, TaskStatus::Stopped] {
            let filter = TaskListFilter {
                cluster: cluster.to_owned(),
                desired_status: Some(desired),
                ..TaskListFilter::default()
            };
            arns.extend(
                self.ecs
                    .list_all_tasks(&filter)
                    .await
                    .map_err(Self::ecs_err(cluster))?,
            );
        }
        let mut seen = HashSet::with_capacity(arns.len());
        arns.retain(|a| seen.insert(a.clone()));
        let mut out = HashMap::with_capacity(arns.len());
        for chunk in arns.chunks(MAX_DESCRIBE_BATCH) {
            let described = self
                .ecs
                .describe_tasks(cluster, chunk)
                .await
                .map_err(Self::ecs_err(cluster))?;
            out.extend(described.into_iter().map(|t| (t.task_arn.clone(), t)));
        }
        Ok(out)
    }

    /// Reconciles one cluster (name or ARN).
    pub async fn reconcile_cluster(
        &self,
        cluster: &str,
        now: Timestamp,
    ) -> Result<ReconcileReport, ReconcileError> {
        let snapshot = self.snapshot(cluster).await?;
        // A complete listing first: any failure here returns before any write.
        let instances = self.ecs_instances(cluster, &snapshot).await?;
        let tasks = self.ecs_tasks(cluster).await?;

        let mut report = ReconcileReport {
            clusters: 1,
            ..ReconcileReport::default()
        };
        let mut changes: Vec<(Change, Effect)> = Vec::new();
        let retention = self.options.retention;
        let guard = snapshot.revision;

        for (arn, ecs) in &instances {
            let stored = snapshot.instances.get(arn).and_then(|v| match &v.entity {
                Entity::Instance(i) => Some(i),
                Entity::Task(_) => None,
            });
            match stored {
                None if instance_expired(ecs, now, retention) => {}
                None => changes.push((
                    Change::put(ecs.clone()).unchanged_since(guard),
                    Effect::Added,
                )),
                Some(s) if instance_expired(s, now, retention) => changes.push((
                    Change::delete(arn.clone(), s.version).unchanged_since(guard),
                    Effect::Removed,
                )),
                Some(s) if instance_changed(ecs, s) => {
                    let mut ecs = ecs.clone();
                    // ECS describes deregistered instances as INACTIVE without a
                    // timestamp: stamp it so the retention period can run.
                    if ecs.status == blox_core::model::InstanceStatus::Inactive
                        && ecs.updated_at.is_none()
                    {
                        ecs.updated_at = Some(now);
                    }
                    changes.push((Change::put(ecs).unchanged_since(guard), Effect::Updated));
                }
                Some(_) => {}
            }
        }
        for (arn, v) in &snapshot.instances {
            if instances.contains_key(arn) {
                continue;
            }
            let Entity::Instance(s) = &v.entity else {
                continue;
            };
            if instance_expired(s, now, retention) {
                changes.push((
                    Change::delete(arn.clone(), s.version).unchanged_since(guard),
                    Effect::Removed,
                ));
            } else if s.status != blox_core::model::InstanceStatus::Inactive {
                changes.push((
                    Change::put(inactive_copy(s, now)).unchanged_since(guard),
                    Effect::MarkedInactive,
                ));
            }
        }

        for (arn, ecs) in &tasks {
            let stored = snapshot.tasks.get(arn).and_then(|v| match &v.entity {
                Entity::Task(t) => Some(t),
                Entity::Instance(_) => None,
            });
            match stored {
                None if task_expired(ecs, now, retention) => {}
                None => changes.push((
                    Change::put(ecs.clone()).unchanged_since(guard),
                    Effect::Added,
                )),
                Some(s) if task_expired(s, now, retention) => changes.push((
                    Change::delete(arn.clone(), s.version).unchanged_since(guard),
                    Effect::Removed,
                )),
                Some(s) if task_changed(ecs, s) => changes.push((
                    Change::put(ecs.clone()).unchanged_since(guard),
                    Effect::Updated,
                )),
                Some(_) => {}
            }
        }
        for (arn, v) in &snapshot.tasks {
            if tasks.contains_key(arn) {
                continue;
            }
            let Entity::Task(s) = &v.entity else { continue };
            // ECS forgets stopped tasks after a while; keep ours for the
            // retention period. A task that vanished without stopping is gone.
            if s.last_status != TaskStatus::Stopped || task_expired(s, now, retention) {
                changes.push((
                    Change::delete(arn.clone(), s.version).unchanged_since(guard),
                    Effect::Removed,
                ));
            }
        }

        if changes.is_empty() {
            return Ok(report);
        }
        let (batch, effects): (Vec<Change>, Vec<Effect>) = changes.into_iter().unzip();
        for (chunk, effects) in batch.chunks(500).zip(effects.chunks(500)) {
            let outcomes = self
                .store
                .apply_batch(chunk.to_vec())
                .await
                .map_err(ReconcileError::Store)?;
            for (outcome, effect) in outcomes.iter().zip(effects) {
                if outcome.is_applied() {
                    report.count(*effect);
                } else {
                    report.skipped_concurrent += 1;
                }
            }
        }
        Ok(report)
    }

    /// Reconciles until one complete reconcile succeeds, retrying with
    /// backoff and logging what it waits for.
    pub async fn bootstrap(&self) -> ReconcileReport {
        let mut backoff = self.options.backoff.clone();
        loop {
            match self.reconcile_once().await {
                Ok(report) => {
                    tracing::info!(?report, "bootstrap reconcile complete");
                    self.bootstrapped.send_replace(true);
                    return report;
                }
                Err(e) => {
                    let delay = backoff.next_delay();
                    let waiting_for = match &e {
                        ReconcileError::Store(_) => "the state store",
                        _ => "ECS",
                    };
                    tracing::warn!(error = %e, retry_in = ?delay, "bootstrap reconcile waiting for {waiting_for}");
                    tokio::time::sleep(delay).await;
                }
            }
        }
    }

    /// Runs while `leader` is `true`: a bootstrap reconcile when leadership
    /// starts, then one every interval and on each trigger. Stops when
    /// `shutdown` resolves.
    pub async fn run(
        self,
        mut leader: watch::Receiver<bool>,
        shutdown: impl std::future::Future<Output = ()>,
    ) {
        tokio::pin!(shutdown);
        loop {
            // Wait to lead.
            tokio::select! {
                // Polled in order, so a seeded simulation replays exactly.
                biased;
                _ = &mut shutdown => return,
                r = leader.wait_for(|l| *l) => if r.is_err() { return },
            }
            let lead = async {
                self.bootstrap().await;
                let mut backoff = self.options.backoff.clone();
                loop {
                    tokio::select! {
                        // Polled in order, so a seeded simulation replays exactly.
                        biased;
                        _ = tokio::time::sleep(self.options.interval) => {},
                        _ = self.trigger.0.notified() => {},
                    }
                    match self.reconcile_once().await {
                        Ok(report) => {
                            backoff.reset();
                            if report.writes() > 0 {
                                tracing::info!(?report, "reconcile repaired drift");
                            }
                        }
                        Err(e) => {
                            let delay = backoff.next_delay();
                            tracing::warn!(error = %e, retry_in = ?delay, "reconcile failed");
                            tokio::time::sleep(delay).await;
                        }
                    }
                }
            };
            // Losing leadership stops reconciling at once.
            tokio::select! {
                // Polled in order, so a seeded simulation replays exactly.
                biased;
                _ = &mut shutdown => return,
                _ = leader.wait_for(|l| !*l) => {
                    self.bootstrapped.send_replace(false);
                    tracing::info!("lost leadership: reconciler paused");
                }
                _ = lead => {}
            }
        }
    }
}

#[cfg(test)]
mod tests;
