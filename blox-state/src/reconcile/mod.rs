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
//!   listing that fails halfway deletes nothing), and only on evidence
//!   (see `evidence.rs`): stored entities a listing lacks are described; what
//!   ECS describes is applied, what it reports `MISSING` is gone (instances
//!   are kept as INACTIVE and tasks are removed), and what it says nothing
//!   about is removed softly once two complete listings further apart than
//!   [`ReconcileOptions::listing_lag`] lacked it; stopped tasks and INACTIVE
//!   instances are removed after the retention period;
//! * clusters are resolved to ARNs, and only the entities of that exact
//!   cluster ARN are compared, so a cluster of the same name in another
//!   account or region is never touched;
//! * every write is guarded with `unchanged_since` = the revision of the
//!   store snapshot taken before listing, so an entity that an event updated
//!   after the listing began is never overwritten or deleted.
//!
//! [`Reconciler::run`] reconciles at start (the bootstrap, retried with
//! backoff until it succeeds), then on an interval and on demand
//! ([`ReconcileTrigger`]), only while this process leads, and again from
//! the bootstrap for each new leader term.

mod calls;
mod compare;
mod evidence;
pub mod record;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use blox_core::backoff::Backoff;
use blox_core::model::{Arn, ContainerInstance, Entity, EntityKind, TaskStatus, Timestamp};
use blox_core::ports::{Described, EcsApi, EcsError, MAX_DESCRIBE_BATCH, TaskListFilter};
use blox_core::retry::RetryPolicy;
use tokio::sync::{Notify, watch};

use crate::store::{Change, Filter, Revision, StateStore, StoreError, Versioned};
use compare::{inactive_copy, instance_changed, instance_expired, task_changed, task_expired};
use evidence::{Absence, Unlisted, classify};

/// The default of [`ReconcileOptions::listing_lag`].
pub const DEFAULT_LISTING_LAG: Duration = Duration::from_secs(60);

/// Reconciler settings.
#[derive(Debug, Clone)]
pub struct ReconcileOptions {
    /// Clusters to reconcile (names or ARNs); empty = every cluster of the account and region.
    pub clusters: Vec<String>,
    /// Time between periodic reconciles.
    pub interval: Duration,
    /// How long stopped tasks and INACTIVE instances are kept.
    pub retention: Duration,
    /// How far ECS's `List*` calls may lag behind a change. An entity that
    /// `Describe*` says nothing about is removed only once it was missing
    /// from two complete listings further apart than this.
    pub listing_lag: Duration,
    /// Backoff of the bootstrap and of failed runs.
    pub backoff: Backoff,
    /// How each single ECS call of a reconcile (a list page, a describe
    /// batch) is retried when throttled or unanswered, before the cluster
    /// is given up on for this pass (on top of the ECS adapter's own quick
    /// retries: this outlasts a fault they do not).
    pub call_retry: RetryPolicy,
    /// The clock of retention (default: the wall clock).
    pub clock: blox_core::clock::SharedClock,
}

impl Default for ReconcileOptions {
    fn default() -> Self {
        ReconcileOptions {
            clusters: Vec::new(),
            interval: Duration::from_secs(300),
            retention: Duration::from_secs(3600),
            listing_lag: DEFAULT_LISTING_LAG,
            backoff: Backoff::new(Duration::from_millis(500), Duration::from_secs(60)),
            call_retry: RetryPolicy {
                max_attempts: 4,
                base_delay: Duration::from_millis(500),
                max_delay: Duration::from_secs(5),
            },
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
    /// Entities removed (vanished tasks, expired stopped tasks and INACTIVE
    /// instances), softly or not.
    pub removed: usize,
    /// Writes skipped because an event changed the entity after the listing began.
    pub skipped_concurrent: usize,
    /// The highest revision of an entity of the reconciled clusters that
    /// this reconcile read from the store or wrote to it: a view (cache)
    /// that has reached it holds every entity the reconcile knew.
    pub view: Revision,
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
        self.view = later(self.view, o.view);
    }
}

/// The later of two revisions of one store.
fn later(a: Revision, b: Revision) -> Revision {
    if b.seq > a.seq { b } else { a }
}

/// A leader term, as the reconciler keys its bootstrap on it: two terms
/// are the same term only if they began at the same revision (their
/// fencing token). Keyed on the term and not on a "leading" flag, a new
/// term always gets its own bootstrap, even when the loss of the previous
/// one and the new election coalesce and the flag never visibly drops.
pub trait TermId {
    /// The revision at which the term began.
    fn began_at(&self) -> Revision;
}

impl TermId for Revision {
    fn began_at(&self) -> Revision {
        *self
    }
}

/// What a complete bootstrap reconcile leaves for an actor (the runner) to
/// wait for before it acts on the view: see
/// [`Reconciler::bootstrap_done`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct BootstrapDone {
    /// The highest entity revision the bootstrap read or wrote
    /// ([`ReconcileReport::view`]): a cache at this revision or later holds
    /// every entity it wrote and every one the store held when it listed.
    pub view: Revision,
    /// The leader term this bootstrap was made for ([`TermId::began_at`];
    /// `seq` 0: any term): a runner acts only on its own term's bootstrap.
    pub term: Revision,
    /// The clusters (configured names, or ARNs) whose bootstrap has not
    /// succeeded yet (deleted, access denied...): do not act on them.
    /// Bootstrap runs per cluster, so these do not hold the others back.
    pub pending: Vec<String>,
    /// With no configured clusters (every cluster of the account is
    /// managed): the cluster ARNs reconciled in this term, by the bootstrap
    /// or a later pass. Any other cluster (one created after the bootstrap
    /// listed the account's) is not acted on until a reconcile covers it.
    /// `None`: configured clusters, gated by [`BootstrapDone::pending`] alone.
    pub covered: Option<Vec<Arn>>,
}

impl BootstrapDone {
    /// A bootstrap that gates nothing (`seq` 0): for processes and tests
    /// without a reconciler.
    pub const UNGATED: BootstrapDone = BootstrapDone {
        view: Revision::new(0, 0),
        term: Revision::new(0, 0),
        pending: Vec::new(),
        covered: None,
    };

    /// Whether the bootstrap of this cluster is still to be done.
    pub fn blocks(&self, cluster: &Arn) -> bool {
        (self.pending.iter()).any(|c| Filter::cluster_matches(c, cluster))
            || self.covered.as_ref().is_some_and(|c| !c.contains(cluster))
    }

    /// Whether a view at revision `view` holds everything this bootstrap
    /// read or wrote (a view of another store epoch never does).
    pub fn reached_by(&self, view: Revision) -> bool {
        self.view.seq == 0 || (view.epoch == self.view.epoch && view.seq >= self.view.seq)
    }

    /// Whether this bootstrap was made for the term that began at
    /// `term_began` (an earlier term's bootstrap says nothing of what was
    /// written before this one began).
    pub fn serves(&self, term_began: Revision) -> bool {
        self.term.seq == 0 || self.term == term_began
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
    done: watch::Sender<Option<BootstrapDone>>,
    unlisted: Arc<Mutex<Unlisted>>,
}

/// The store's view of one cluster, taken before listing ECS.
struct Snapshot {
    instances: HashMap<Arn, Versioned>,
    tasks: HashMap<Arn, Versioned>,
    revision: Revision,
    /// The highest revision of the entities listed.
    view: Revision,
}

/// What ECS said of a cluster's entities of one kind: the ones it
/// described, by ARN, and the ARNs it reported `MISSING`.
struct EcsView<T> {
    found: HashMap<Arn, T>,
    missing: HashSet<Arn>,
}

impl<T> EcsView<T> {
    fn of(d: Described<T>, arn: impl Fn(&T) -> Arn) -> Self {
        EcsView {
            found: d.found.into_iter().map(|t| (arn(&t), t)).collect(),
            missing: d.missing.into_iter().collect(),
        }
    }
}

/// The error of a configured cluster ECS does not know.
fn not_found(cluster: &str) -> EcsError {
    EcsError::NotFound {
        operation: "DescribeClusters",
        message: format!("no cluster named {cluster:?} in this account and region"),
    }
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
            done: watch::channel(None).0,
            unlisted: Arc::default(),
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

    /// The revisions an actor waits for once the bootstrap of the current
    /// leader term is complete (`None` until then, and again once the term
    /// ends): act only on a view that has reached [`BootstrapDone::view`],
    /// in the term the bootstrap [serves](BootstrapDone::serves).
    pub fn bootstrap_done(&self) -> watch::Receiver<Option<BootstrapDone>> {
        self.done.subscribe()
    }

    /// ECS, each single call retried ([`ReconcileOptions::call_retry`]).
    fn calls(&self) -> calls::Calls<'_> {
        calls::Calls {
            ecs: self.ecs.as_ref(),
            retry: &self.options.call_retry,
        }
    }

    fn ecs_err(cluster: &str) -> impl FnOnce(EcsError) -> ReconcileError + '_ {
        move |source| ReconcileError::Ecs {
            cluster: cluster.to_owned(),
            source,
        }
    }

    /// The clusters to reconcile, resolved to ARNs: the configured ones
    /// (names are described to find their ARN in this account and region;
    /// a name ECS does not know is an error of its own), or every cluster.
    async fn clusters(&self) -> Result<Vec<Result<Arn, ReconcileError>>, ReconcileError> {
        if self.options.clusters.is_empty() {
            let arns = self
                .calls()
                .list_all_clusters()
                .await
                .map_err(Self::ecs_err("*"))?;
            return Ok(arns.into_iter().map(Ok).collect());
        }
        self.resolve(&self.options.clusters).await
    }

    /// Resolves cluster names and ARNs to ARNs (see [`Reconciler::clusters`]).
    async fn resolve(
        &self,
        clusters: &[String],
    ) -> Result<Vec<Result<Arn, ReconcileError>>, ReconcileError> {
        let is_cluster_arn = |c: &str| {
            Arn::parse(c)
                .ok()
                .filter(|a| a.kind() == blox_core::model::ResourceKind::Cluster)
        };
        let names: Vec<String> = clusters
            .iter()
            .filter(|c| is_cluster_arn(c).is_none())
            .cloned()
            .collect();
        let mut by_name = HashMap::new();
        for chunk in names.chunks(MAX_DESCRIBE_BATCH) {
            let described = self
                .calls()
                .describe_clusters(chunk)
                .await
                .map_err(Self::ecs_err("*"))?;
            by_name.extend(
                described
                    .into_iter()
                    .map(|c| (c.cluster_name, c.cluster_arn)),
            );
        }
        Ok(clusters
            .iter()
            .map(|c| {
                is_cluster_arn(c)
                    .or_else(|| by_name.get(c).cloned())
                    .ok_or_else(|| Self::ecs_err(c)(not_found(c)))
            })
            .collect())
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
        for cluster in clusters {
            let done = match cluster {
                Ok(arn) => self.reconcile_arn(&arn, now).await.map(|r| (arn, r)),
                Err(e) => Err(e),
            };
            match done {
                Ok((arn, r)) => {
                    self.cover(&arn, r.view);
                    report.merge(&r);
                }
                Err(e) => {
                    tracing::warn!(error = %e, "reconcile of cluster failed; nothing removed from it");
                    failed += 1;
                    report.failed_clusters += 1;
                    first_error.get_or_insert(e);
                }
            }
        }
        if let Some(first) = first_error {
            return Err(ReconcileError::Partial {
                failed,
                total: report.clusters + failed,
                first: Box::new(first),
                report,
            });
        }
        *self.last.lock().unwrap_or_else(|e| e.into_inner()) = Some(report);
        Ok(report)
    }

    /// The store's entities of exactly this cluster ARN.
    async fn snapshot(&self, cluster: &Arn) -> Result<Snapshot, ReconcileError> {
        let filter = Filter {
            cluster: Some(cluster.to_string()),
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
        let view = (instances.items.iter())
            .chain(&tasks.items)
            .fold(Revision::default(), |r, v| later(r, v.revision));
        let key = |v: Versioned| (v.entity.arn().clone(), v);
        Ok(Snapshot {
            instances: instances.items.into_iter().map(key).collect(),
            tasks: tasks.items.into_iter().map(key).collect(),
            revision,
            view,
        })
    }

    /// Describes `arns` in batches of [`MAX_DESCRIBE_BATCH`] with `describe`.
    async fn describe_all<T, F, Fut>(
        cluster: &Arn,
        arns: &[Arn],
        mut describe: F,
    ) -> Result<Described<T>, ReconcileError>
    where
        F: FnMut(Vec<Arn>) -> Fut,
        Fut: std::future::Future<Output = Result<Described<T>, EcsError>>,
    {
        let mut all = Described::default();
        for chunk in arns.chunks(MAX_DESCRIBE_BATCH) {
            let d = describe(chunk.to_vec())
                .await
                .map_err(Self::ecs_err(cluster.as_str()))?;
            all.found.extend(d.found);
            all.missing.extend(d.missing);
        }
        Ok(all)
    }

    /// Lists and describes a cluster's instances, then describes the stored
    /// ones the listing lacked (ECS still describes deregistered instances
    /// for a while, as INACTIVE, and listings lag behind registrations).
    async fn ecs_instances(
        &self,
        cluster: &Arn,
        snapshot: &Snapshot,
    ) -> Result<EcsView<ContainerInstance>, ReconcileError> {
        let name = cluster.as_str();
        let arns = self
            .calls()
            .list_all_container_instances(name)
            .await
            .map_err(Self::ecs_err(name))?;
        let listed: HashSet<&Arn> = arns.iter().collect();
        let mut vanished: Vec<Arn> = snapshot
            .instances
            .keys()
            .filter(|a| !listed.contains(a))
            .cloned()
            .collect();
        // In ARN order, so the calls (and a seeded run) repeat exactly.
        vanished.sort_unstable();
        let mut all = arns.clone();
        all.extend(vanished);
        let d = Self::describe_all(cluster, &all, |chunk| async move {
            self.calls()
                .describe_container_instances(name, &chunk)
                .await
        })
        .await?;
        Ok(EcsView::of(d, |i| i.container_instance_arn.clone()))
    }

    /// Lists (RUNNING and STOPPED) and describes a cluster's tasks, then
    /// describes the stored live ones the listings lacked.
    async fn ecs_tasks(
        &self,
        cluster: &Arn,
        snapshot: &Snapshot,
    ) -> Result<EcsView<blox_core::Task>, ReconcileError> {
        let name = cluster.as_str();
        let mut arns = Vec::new();
        for desired in [TaskStatus::Running, TaskStatus::Stopped] {
            let filter = TaskListFilter {
                cluster: name.to_owned(),
                desired_status: Some(desired),
                ..TaskListFilter::default()
            };
            arns.extend(
                self.calls()
                    .list_all_tasks(&filter)
                    .await
                    .map_err(Self::ecs_err(name))?,
            );
        }
        let mut seen = HashSet::with_capacity(arns.len());
        arns.retain(|a| seen.insert(a.clone()));
        // Stopped tasks ECS stopped listing are kept for the retention
        // period whatever ECS says: only live ones need its word.
        let mut unlisted: Vec<Arn> = snapshot
            .tasks
            .iter()
            .filter(|(a, v)| {
                !seen.contains(*a)
                    && matches!(&v.entity, Entity::Task(t) if t.last_status != TaskStatus::Stopped)
            })
            .map(|(a, _)| a.clone())
            .collect();
        // In ARN order, so the calls (and a seeded run) repeat exactly.
        unlisted.sort_unstable();
        arns.extend(unlisted);
        let d = Self::describe_all(cluster, &arns, |chunk| async move {
            self.calls().describe_tasks(name, &chunk).await
        })
        .await?;
        Ok(EcsView::of(d, |t| t.task_arn.clone()))
    }

    /// How each stored entity (instance or task) that ECS did not describe
    /// is absent (see [`evidence`]), for one complete listing of the cluster.
    fn absences(
        &self,
        cluster: &Arn,
        snapshot: &Snapshot,
        instances: &EcsView<ContainerInstance>,
        tasks: &EcsView<blox_core::Task>,
        now: Timestamp,
    ) -> HashMap<Arn, Absence> {
        let vanished: Vec<Arn> = (snapshot.instances.keys())
            .filter(|a| !instances.found.contains_key(*a))
            .chain(
                snapshot
                    .tasks
                    .keys()
                    .filter(|a| !tasks.found.contains_key(*a)),
            )
            .cloned()
            .collect();
        let missing: HashSet<Arn> = instances.missing.union(&tasks.missing).cloned().collect();
        let mut unlisted = self.unlisted.lock().unwrap_or_else(|e| e.into_inner());
        classify(
            &vanished,
            &missing,
            &mut unlisted,
            cluster,
            now,
            self.options.listing_lag,
        )
    }

    /// Reconciles one cluster (name or ARN; a name is resolved in this
    /// account and region).
    pub async fn reconcile_cluster(
        &self,
        cluster: &str,
        now: Timestamp,
    ) -> Result<ReconcileReport, ReconcileError> {
        let arn = self
            .resolve(&[cluster.to_owned()])
            .await?
            .pop()
            .unwrap_or_else(|| Err(Self::ecs_err(cluster)(not_found(cluster))))?;
        self.reconcile_arn(&arn, now).await
    }

    /// Reconciles the cluster with this ARN.
    async fn reconcile_arn(
        &self,
        cluster: &Arn,
        now: Timestamp,
    ) -> Result<ReconcileReport, ReconcileError> {
        let snapshot = self.snapshot(cluster).await?;
        // A complete listing first: any failure here returns before any write.
        let instances = self.ecs_instances(cluster, &snapshot).await?;
        let tasks = self.ecs_tasks(cluster, &snapshot).await?;
        let absences = self.absences(cluster, &snapshot, &instances, &tasks, now);
        let (instances, tasks) = (instances.found, tasks.found);

        let mut report = ReconcileReport {
            clusters: 1,
            view: snapshot.view,
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
            let (Some(absence), Entity::Instance(s)) = (absences.get(arn), &v.entity) else {
                continue;
            };
            if instance_expired(s, now, retention) {
                changes.push((
                    Change::delete(arn.clone(), s.version).unchanged_since(guard),
                    Effect::Removed,
                ));
            } else if s.status == blox_core::model::InstanceStatus::Inactive {
                // Kept for the retention period.
            } else if *absence == Absence::Missing {
                changes.push((
                    Change::put(inactive_copy(s, now)).unchanged_since(guard),
                    Effect::MarkedInactive,
                ));
            } else if *absence == Absence::Unlisted {
                // No version of its own to mark INACTIVE with that could not
                // block ECS's next one: removed softly instead.
                changes.push((
                    Change::soft_delete(arn.clone(), s.version).unchanged_since(guard),
                    Effect::Removed,
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
            let (Some(absence), Entity::Task(s)) = (absences.get(arn), &v.entity) else {
                continue;
            };
            // ECS forgets stopped tasks after a while; keep ours for the
            // retention period. A live task is gone only on evidence.
            let change = if task_expired(s, now, retention) {
                Change::delete(arn.clone(), s.version)
            } else if s.last_status == TaskStatus::Stopped {
                continue;
            } else {
                match absence {
                    Absence::Missing => Change::delete(arn.clone(), s.version),
                    Absence::Unlisted => Change::soft_delete(arn.clone(), s.version),
                    Absence::Unconfirmed => continue,
                }
            };
            changes.push((change.unchanged_since(guard), Effect::Removed));
        }

        if changes.is_empty() {
            return Ok(report);
        }
        // Written in ARN order (not the maps' order), so the revisions (and
        // a seeded run) repeat exactly.
        changes.sort_by(|a, b| a.0.arn().cmp(b.0.arn()));
        let (batch, effects): (Vec<Change>, Vec<Effect>) = changes.into_iter().unzip();
        for (chunk, effects) in batch.chunks(500).zip(effects.chunks(500)) {
            let outcomes = self
                .store
                .apply_batch(chunk.to_vec())
                .await
                .map_err(ReconcileError::Store)?;
            for (outcome, effect) in outcomes.iter().zip(effects) {
                if let crate::store::ApplyOutcome::Applied { revision } = outcome {
                    report.view = later(report.view, *revision);
                    report.count(*effect);
                } else {
                    report.skipped_concurrent += 1;
                }
            }
        }
        Ok(report)
    }

    /// Reconciles every cluster once, retrying the ones that failed with
    /// backoff (logging what it waits for) until each has succeeded. After
    /// each attempt it publishes ([`Reconciler::bootstrap_done`]) what is
    /// done so far, the failed clusters as
    /// [`pending`](BootstrapDone::pending), so a failing cluster does not
    /// hold back acting on the others, made for the leader `term`
    /// ([`BootstrapDone::term`]; `Revision::default()`: any term).
    pub async fn bootstrap(&self, term: Revision) -> ReconcileReport {
        let mut backoff = self.options.backoff.clone();
        let mut report = ReconcileReport::default();
        let mut done: HashSet<Arn> = HashSet::new();
        let mut refreshed = tokio::time::Instant::now();
        loop {
            // While some cluster keeps failing, the others are still
            // reconciled every interval.
            let refresh = refreshed.elapsed() >= self.options.interval;
            if refresh {
                refreshed = tokio::time::Instant::now();
            }
            let step = self.bootstrap_step(&mut done, &mut report, refresh).await;
            let waiting_for = match step {
                Ok(pending) if pending.is_empty() => {
                    tracing::info!(?report, %term, "bootstrap reconcile complete");
                    *self.last.lock().unwrap_or_else(|e| e.into_inner()) = Some(report);
                    self.record().await;
                    self.publish(BootstrapDone {
                        view: report.view,
                        term,
                        pending,
                        covered: self.covered(&done),
                    });
                    self.bootstrapped.send_replace(true);
                    return report;
                }
                Ok(pending) => {
                    tracing::warn!(
                        ?pending,
                        "bootstrap reconcile done but for some clusters; acting on the others"
                    );
                    self.publish(BootstrapDone {
                        view: report.view,
                        term,
                        pending,
                        covered: self.covered(&done),
                    });
                    "ECS"
                }
                Err(ReconcileError::Store(e)) => {
                    tracing::warn!(error = %e, "bootstrap reconcile failed");
                    "the state store"
                }
                Err(e) => {
                    tracing::warn!(error = %e, "bootstrap reconcile failed");
                    "ECS"
                }
            };
            let delay = backoff.next_delay();
            tracing::warn!(retry_in = ?delay, "bootstrap reconcile waiting for {waiting_for}");
            tokio::time::sleep(delay).await;
        }
    }

    /// One attempt of the bootstrap: reconciles each cluster not `done`
    /// yet (and, to `refresh` them, the done ones too, whose failures are
    /// only logged), adding what it did to `report`; returns the clusters
    /// still to do (configured names, or ARNs).
    async fn bootstrap_step(
        &self,
        done: &mut HashSet<Arn>,
        report: &mut ReconcileReport,
        refresh: bool,
    ) -> Result<Vec<String>, ReconcileError> {
        let now = self.options.clock.now();
        let clusters = self.clusters().await?;
        let mut pending = Vec::new();
        for (i, cluster) in clusters.into_iter().enumerate() {
            let label = |arn: Option<&Arn>| {
                (self.options.clusters.get(i).cloned())
                    .or_else(|| arn.map(|a| a.to_string()))
                    .unwrap_or_default()
            };
            let arn = match cluster {
                Ok(arn) if done.contains(&arn) => {
                    if refresh && let Err(e) = self.reconcile_arn(&arn, now).await {
                        tracing::warn!(error = %e, "reconcile of cluster failed; nothing removed from it");
                    }
                    continue;
                }
                Ok(arn) => arn,
                Err(e) => {
                    tracing::warn!(error = %e, "bootstrap of cluster failed");
                    pending.push(label(None));
                    continue;
                }
            };
            match self.reconcile_arn(&arn, now).await {
                Ok(r) => {
                    report.merge(&r);
                    done.insert(arn);
                }
                Err(e) => {
                    tracing::warn!(error = %e, "bootstrap of cluster failed; nothing removed from it");
                    pending.push(label(Some(&arn)));
                }
            }
        }
        Ok(pending)
    }

    /// Publishes the bootstrap of this leadership (done, or done but for
    /// its pending clusters).
    fn publish(&self, done: BootstrapDone) {
        self.done.send_replace(Some(done));
    }

    /// The clusters a bootstrap covers: with configured clusters, `None`
    /// (gated by `pending`); else the ARNs it reconciled, sorted.
    fn covered(&self, done: &HashSet<Arn>) -> Option<Vec<Arn>> {
        self.options.clusters.is_empty().then(|| {
            let mut covered: Vec<Arn> = done.iter().cloned().collect();
            covered.sort();
            covered
        })
    }

    /// A cluster reconciled after the bootstrap, its view at `view`: once
    /// the published bootstrap does not cover it yet (a cluster created
    /// since), it does now, and the runner waits for `view` too.
    fn cover(&self, cluster: &Arn, view: Revision) {
        self.done.send_if_modified(|done| match done {
            Some(BootstrapDone {
                covered: Some(covered),
                view: at,
                ..
            }) if !covered.contains(cluster) => {
                tracing::info!(%cluster, "a cluster new since the bootstrap is reconciled: acting on it");
                covered.push(cluster.clone());
                covered.sort();
                *at = later(*at, view);
                true
            }
            _ => false,
        });
    }

    /// Records a complete reconcile in the store (see [`record`]), so a
    /// successor that takes over within the interval may skip its
    /// bootstrap. Not fenced: the record says what the store holds, which
    /// is true whoever leads (the reconcile's writes are not fenced either).
    async fn record(&self) {
        let at = self.options.clock.now();
        let clusters = self.options.clusters.clone();
        if let Err(e) = record::record_complete(self.store.as_ref(), Vec::new(), at, clusters).await
        {
            tracing::warn!(error = %e, "could not record the complete reconcile");
        }
    }

    /// At the start of a term: when the store records a complete reconcile
    /// recent enough, of this very store ([`record::full_reconcile_needed`]),
    /// the bootstrap is not needed; returns what to wait for instead (the
    /// highest revision of the stored entities of the managed clusters).
    /// `None`: reconcile in full (also when the store cannot tell).
    async fn skip_bootstrap(&self, term: Revision) -> Option<BootstrapDone> {
        let now = self.options.clock.now();
        let clusters = &self.options.clusters;
        if clusters.is_empty() {
            // Every cluster of the account is managed: only a bootstrap
            // knows which ones exist now.
            tracing::info!("full bootstrap reconcile: no configured clusters");
            return None;
        }
        let why = record::full_reconcile_needed(
            self.store.as_ref(),
            now,
            self.options.interval,
            clusters,
        )
        .await;
        match why {
            Ok(None) => {}
            Ok(Some(why)) => {
                tracing::info!(%why, "full bootstrap reconcile");
                return None;
            }
            Err(e) => {
                tracing::warn!(error = %e, "full bootstrap reconcile: the record is unreadable");
                return None;
            }
        }
        let mut view = Revision::default();
        let filters: Vec<Filter> = (clusters.iter())
            .map(|c| Filter {
                cluster: Some(c.clone()),
                ..Filter::default()
            })
            .collect();
        for filter in &filters {
            for kind in [EntityKind::Instance, EntityKind::Task] {
                match self.store.list(kind, filter).await {
                    Ok(listing) => {
                        view = (listing.items.iter()).fold(view, |r, v| later(r, v.revision));
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "full bootstrap reconcile: the store's view is unreadable");
                        return None;
                    }
                }
            }
        }
        tracing::info!(%view, %term, "a recent complete reconcile is recorded: no bootstrap reconcile");
        Some(BootstrapDone {
            view,
            term,
            pending: Vec::new(),
            covered: None,
        })
    }

    /// Runs while this process leads a term (`leadership` holds
    /// `Some(term)`): a bootstrap reconcile for each term when it starts
    /// (skipped when a recent complete reconcile of this store is recorded,
    /// see [`record`]), then one every interval and on each trigger, each
    /// complete one recorded. A new term restarts it, even when the channel
    /// shows it without a `None` in between (a deposition and a new
    /// election seen at once), so every term gets its own bootstrap
    /// ([`BootstrapDone::term`]). Stops when `shutdown` resolves.
    pub async fn run<T: TermId>(
        self,
        mut leadership: watch::Receiver<Option<T>>,
        shutdown: impl std::future::Future<Output = ()>,
    ) {
        let term_of = |t: &Option<T>| t.as_ref().map(TermId::began_at);
        tokio::pin!(shutdown);
        loop {
            // Wait to lead.
            let term = tokio::select! {
                // Polled in order, so a seeded simulation replays exactly.
                biased;
                _ = &mut shutdown => return,
                r = leadership.wait_for(Option::is_some) => match r.map(|t| term_of(&t)) {
                    Ok(Some(term)) => term,
                    _ => return,
                },
            };
            let lead = async {
                match self.skip_bootstrap(term).await {
                    Some(done) => {
                        self.publish(done);
                        self.bootstrapped.send_replace(true);
                    }
                    None => {
                        self.bootstrap(term).await;
                    }
                }
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
                            self.record().await;
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
            // Losing leadership, or a new term, stops reconciling at once.
            tokio::select! {
                // Polled in order, so a seeded simulation replays exactly.
                biased;
                _ = &mut shutdown => return,
                _ = leadership.wait_for(|t| term_of(t) != Some(term)) => {
                    self.bootstrapped.send_replace(false);
                    self.done.send_replace(None);
                    self.unlisted.lock().unwrap_or_else(|e| e.into_inner()).clear();
                    tracing::info!(%term, "leader term ended: reconciler paused");
                }
                _ = lead => {}
            }
        }
    }
}

#[cfg(test)]
mod tests;
