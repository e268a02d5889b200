//! Retention, owned by the store: how long stopped tasks, INACTIVE
//! instances and tombstones are kept, and the leader's task that applies it.
//!
//! Two horizons, independent of each other:
//!
//! * **stopped-task retention** ([`RetentionOptions::stopped`]): a stopped
//!   task or an INACTIVE instance ("retired", [`retired_since`]) stays in
//!   the view this long, then is deleted, leaving a tombstone. It applies to
//!   every cluster in the store, whether a reconciler covers it or not.
//! * **the tombstone horizon** ([`RetentionOptions::tombstones`]): how long
//!   "gone" is remembered. A tombstone is purged this long after the
//!   delete, and the ingester refuses events older than the same horizon
//!   (`IngestOptions::event_horizon`), so an event old enough to be past
//!   its tombstone is never applied: the reconciler owns older truth. The
//!   default, [`DEFAULT_TOMBSTONE_RETENTION`] (15 days), is longer than SQS's
//!   longest message retention (14 days, which a dead-letter queue's redrive
//!   does not reset), so every event the queue can still deliver finds its
//!   tombstone.
//!
//! [`StateStore::expire`] applies both once; [`Retention::run`] applies
//! them on a schedule while this process leads.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use blox_core::clock::SharedClock;
use blox_core::model::{ContainerInstance, Entity, InstanceStatus, Task, TaskStatus, Timestamp};
use tokio::sync::watch;

use super::{Result, StateStore};

/// The default tombstone horizon: 15 days, one more than SQS's longest
/// message retention (14 days).
pub const DEFAULT_TOMBSTONE_RETENTION: Duration = Duration::from_secs(15 * 24 * 3600);

/// The default stopped-task retention: one hour.
pub const DEFAULT_STOPPED_RETENTION: Duration = Duration::from_secs(3600);

/// When an entity was retired: a stopped task's stop time (or its latest
/// known time), an INACTIVE instance's last update. `None` for a live
/// entity, or a retired one without any time (kept until the reconciler
/// sees ECS forget it).
pub fn retired_since(entity: &Entity) -> Option<Timestamp> {
    match entity {
        Entity::Task(t) => task_retired_since(t),
        Entity::Instance(i) => instance_retired_since(i),
    }
}

/// [`retired_since`] of a task: when a STOPPED task stopped.
pub fn task_retired_since(t: &Task) -> Option<Timestamp> {
    (t.last_status == TaskStatus::Stopped).then_some(())?;
    t.stopped_at
        .or(t.updated_at)
        .or(t.stopping_at)
        .or(t.created_at)
}

/// [`retired_since`] of an instance: an INACTIVE instance's last update.
pub fn instance_retired_since(i: &ContainerInstance) -> Option<Timestamp> {
    (i.status == InstanceStatus::Inactive).then_some(())?;
    i.updated_at
}

/// The cut-off times of one retention run ([`StateStore::expire`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Expiry {
    /// Delete (leaving a tombstone) what was retired strictly before this
    /// time (`None`: keep every retired entity).
    pub retired_before: Option<Timestamp>,
    /// Purge the tombstones recorded strictly before this time (`None`:
    /// keep every tombstone).
    pub deleted_before: Option<Timestamp>,
}

/// What one retention run did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ExpiryReport {
    /// Retired entities deleted (each leaves a tombstone).
    pub retired: usize,
    /// Tombstones purged.
    pub purged: usize,
}

/// Retention settings.
#[derive(Debug, Clone)]
pub struct RetentionOptions {
    /// How long stopped tasks and INACTIVE instances are kept.
    pub stopped: Duration,
    /// How long tombstones are kept: the horizon of "gone".
    pub tombstones: Duration,
    /// How often [`Retention::run`] applies them.
    pub interval: Duration,
    /// The clock the horizons are measured against (default: the wall clock).
    pub clock: SharedClock,
}

impl Default for RetentionOptions {
    fn default() -> Self {
        RetentionOptions {
            stopped: DEFAULT_STOPPED_RETENTION,
            tombstones: DEFAULT_TOMBSTONE_RETENTION,
            interval: Duration::from_secs(30),
            clock: blox_core::clock::system(),
        }
    }
}

/// Applies retention to a store (see the module docs).
#[derive(Debug, Clone)]
pub struct Retention {
    options: RetentionOptions,
}

impl Retention {
    /// Retention with these settings.
    pub fn new(options: RetentionOptions) -> Self {
        Retention { options }
    }

    /// The cut-offs of a run at `now`.
    pub fn expiry_at(&self, now: Timestamp) -> Expiry {
        let before = |keep: Duration| {
            Timestamp::from_millis(
                now.as_millis()
                    .saturating_sub(i64::try_from(keep.as_millis()).unwrap_or(i64::MAX)),
            )
        };
        Expiry {
            retired_before: Some(before(self.options.stopped)),
            deleted_before: Some(before(self.options.tombstones)),
        }
    }

    /// One run, now.
    pub async fn run_once(&self, store: &dyn StateStore) -> Result<ExpiryReport> {
        store.expire(self.expiry_at(self.options.clock.now())).await
    }

    /// Runs [`Retention::run_once`] every interval while `leader` is true,
    /// until `shutdown` resolves; failures are logged and retried at the
    /// next tick.
    pub async fn run(
        self,
        store: Arc<dyn StateStore>,
        mut leader: watch::Receiver<bool>,
        shutdown: impl Future<Output = ()>,
    ) {
        let work = async {
            let mut tick = tokio::time::interval(self.options.interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                if leader.wait_for(|l| *l).await.is_err() {
                    // The election is gone: nothing will lead here again.
                    std::future::pending::<()>().await;
                }
                tick.tick().await;
                if !*leader.borrow() {
                    continue;
                }
                match self.run_once(store.as_ref()).await {
                    Ok(r) if r == ExpiryReport::default() => {}
                    Ok(r) => tracing::debug!(?r, "retention applied"),
                    Err(e) => {
                        tracing::warn!(error = %e, "retention failed; retrying at the next tick")
                    }
                }
            }
        };
        tokio::select! {
            _ = shutdown => {}
            _ = work => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use blox_core::model::{Arn, ContainerInstance, Task};

    use super::*;

    fn task(status: TaskStatus) -> Task {
        let mut t = Task::new(
            Arn::parse("arn:aws:ecs:us-east-1:1:task/c/t").unwrap(),
            Arn::parse("arn:aws:ecs:us-east-1:1:cluster/c").unwrap(),
            "td:1",
        );
        t.last_status = status;
        t
    }

    #[test]
    fn only_stopped_tasks_and_inactive_instances_are_retired() {
        let mut t = task(TaskStatus::Stopped);
        assert_eq!(retired_since(&Entity::from(t.clone())), None);
        t.created_at = Some(Timestamp::from_millis(1));
        t.stopped_at = Some(Timestamp::from_millis(5));
        assert_eq!(
            retired_since(&Entity::from(t.clone())),
            Some(Timestamp::from_millis(5))
        );
        t.last_status = TaskStatus::Running;
        assert_eq!(retired_since(&Entity::from(t)), None);
        let mut i = ContainerInstance::new(
            Arn::parse("arn:aws:ecs:us-east-1:1:container-instance/c/i").unwrap(),
            Arn::parse("arn:aws:ecs:us-east-1:1:cluster/c").unwrap(),
        );
        i.updated_at = Some(Timestamp::from_millis(7));
        assert_eq!(retired_since(&Entity::from(i.clone())), None);
        i.status = InstanceStatus::Inactive;
        assert_eq!(
            retired_since(&Entity::from(i)),
            Some(Timestamp::from_millis(7))
        );
    }

    #[tokio::test(start_paused = true)]
    async fn the_task_applies_retention_only_while_leading() {
        use crate::store::memory::MemoryStore;
        use crate::store::{Change, StateStore};

        let store: Arc<dyn StateStore> = Arc::new(MemoryStore::new());
        let mut t = task(TaskStatus::Stopped);
        t.version = Some(1);
        t.stopped_at = Some(Timestamp::from_millis(1));
        let arn = t.task_arn.clone();
        store.apply(Change::put(t)).await.unwrap();
        let (leader, leading) = watch::channel(false);
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(Retention::new(RetentionOptions::default()).run(
            store.clone(),
            leading,
            async {
                let _ = stopped.await;
            },
        ));
        tokio::time::sleep(Duration::from_secs(600)).await;
        assert!(
            store.get(&arn).await.unwrap().is_some(),
            "a follower keeps it"
        );
        leader.send_replace(true);
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert_eq!(
            store.get(&arn).await.unwrap(),
            None,
            "the leader removes it"
        );
        stop.send(()).unwrap();
        task.await.unwrap();
    }

    #[test]
    fn the_cut_offs_are_the_horizons_before_now() {
        let r = Retention::new(RetentionOptions {
            stopped: Duration::from_secs(5),
            tombstones: Duration::from_secs(100),
            ..RetentionOptions::default()
        });
        let e = r.expiry_at(Timestamp::from_millis(1_000_000));
        assert_eq!(e.retired_before, Some(Timestamp::from_millis(995_000)));
        assert_eq!(e.deleted_before, Some(Timestamp::from_millis(900_000)));
    }
}
