//! The runner's view of its clusters: an [`IndexedView`] loaded once from
//! the cache, then kept up to date from the cache's feed of revisions, so a
//! cycle costs O(changes since the last one), not O(view).
//!
//! A forwarding task moves the feed's revisions into a bounded queue as
//! they come (the feed ends a reader that falls behind, and a cycle can
//! spend seconds in ECS calls); the runner applies the queue at the start
//! of each cycle. When the queue overflows, or the feed ends or relists,
//! the view is loaded again whole, and the next decision is a full one.

use std::collections::HashSet;
use std::sync::Arc;

use blox_core::model::{Arn, Entity, Task};
use blox_state::cache::{Cache, SharedBatch};
use blox_state::store::{Revision, WatchEvent};
use futures::StreamExt;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::scheduler::{IndexedView, touched_by};

/// How many revisions the queue holds before the view is loaded again.
const QUEUE_REVISIONS: usize = 65_536;

/// How long a sync waits for the feed to bring the view to the cache's
/// revision before it loads the view whole instead.
const CATCH_UP: std::time::Duration = std::time::Duration::from_secs(5);

/// What changed in the view since the changes were last taken.
#[derive(Debug, Default)]
pub(crate) struct ViewChanges {
    /// The view was loaded whole: anything may have changed.
    pub full: bool,
    /// Instances whose record changed, or whose tasks did.
    pub instances: HashSet<Arn>,
    /// Tasks put, as the view now holds them (in the order applied).
    pub tasks: Vec<Arc<Task>>,
    /// Tasks removed from the view.
    pub removed: Vec<Arn>,
}

/// The queue the forwarder fills; it ends (disconnects) when the forwarder
/// stops: the feed ended, the reader lagged or relisted, or the queue was full.
struct Follow {
    queue: mpsc::Receiver<SharedBatch<WatchEvent>>,
    forwarder: JoinHandle<()>,
}

impl Drop for Follow {
    fn drop(&mut self) {
        self.forwarder.abort();
    }
}

/// The view and how it follows the cache (see the module docs).
pub(crate) struct LiveView {
    clusters: Vec<String>,
    view: Arc<IndexedView>,
    /// The revision the view holds everything up to.
    revision: Revision,
    follow: Option<Follow>,
    changes: ViewChanges,
    loads: u64,
}

impl LiveView {
    /// A view of the clusters the runner manages (empty: all), not loaded yet.
    pub(crate) fn new(clusters: Vec<String>) -> Self {
        LiveView {
            clusters,
            view: Arc::new(IndexedView::default()),
            revision: Revision::default(),
            follow: None,
            changes: ViewChanges::default(),
            loads: 0,
        }
    }

    /// The view, shared (a snapshot holds it; the next change copies it
    /// only if a snapshot is still alive then).
    pub(crate) fn shared(&self) -> Arc<IndexedView> {
        Arc::clone(&self.view)
    }

    /// How many times the view was loaded whole.
    pub(crate) fn loads(&self) -> u64 {
        self.loads
    }

    /// Brings the view at least to the cache's revision at the call (from
    /// the feed; loading it whole the first time, and whenever the feed
    /// cannot be followed or does not catch up within [`CATCH_UP`]), and
    /// returns what changed since the last call.
    pub(crate) async fn sync(&mut self, cache: &Cache) -> ViewChanges {
        let target = cache.revision();
        loop {
            let Some(follow) = self.follow.as_mut() else {
                self.load(cache);
                continue;
            };
            let behind = self.revision.epoch != target.epoch || self.revision.seq < target.seq;
            let next = match follow.queue.try_recv() {
                Err(mpsc::error::TryRecvError::Empty) if behind => {
                    // The forwarder has not passed it on yet.
                    match tokio::time::timeout(CATCH_UP, follow.queue.recv()).await {
                        Ok(Some(b)) => Ok(b),
                        Ok(None) => Err(mpsc::error::TryRecvError::Disconnected),
                        Err(_) => {
                            tracing::warn!(
                                "the runner's view did not catch up with the cache; loading it whole"
                            );
                            self.follow = None;
                            continue;
                        }
                    }
                }
                other => other,
            };
            let batch = match next {
                Ok(b) => b,
                Err(mpsc::error::TryRecvError::Empty) => break,
                Err(mpsc::error::TryRecvError::Disconnected) => {
                    // The forwarder stopped (a relist, a lag, a full queue,
                    // or shutdown).
                    self.follow = None;
                    if cache.feed().is_closed() {
                        break;
                    }
                    continue;
                }
            };
            self.revision = batch.revision;
            self.apply(&batch.events);
        }
        std::mem::take(&mut self.changes)
    }

    /// Loads the view whole at one revision and follows the feed from it.
    fn load(&mut self, cache: &Cache) {
        let clusters = &self.clusters;
        let manages = |cluster: &Arn| super::cycle::manages(clusters, cluster);
        let (instances, tasks, start) = cache.with_view(|v| {
            let instances: Vec<_> = v
                .instances()
                .map(|e| (e.value(), e.revision.seq))
                .filter(|(i, _)| manages(&i.cluster_arn))
                .collect();
            // Shared handles only: packed tasks are decoded after the lock.
            let tasks: Vec<_> = v.tasks_in_clusters(manages).cloned().collect();
            // Under the view's read lock: no revision is published between
            // the load and the subscription.
            let revision: Revision = v.revision();
            (instances, tasks, (cache.subscribe(revision), revision))
        });
        // Forwarding first: decoding a large view takes a while, and the
        // feed ends a reader that falls that far behind; the queue holds more.
        let (tx, queue) = mpsc::channel(QUEUE_REVISIONS);
        let mut stream = start.0.subscription().into_stream();
        // Stops (dropping `tx`, which ends the queue) when the feed ends or
        // errs, or when the queue is full.
        let forwarder = tokio::spawn(async move {
            while let Some(Ok(batch)) = stream.next().await {
                if tx.try_send(batch).is_err() {
                    return;
                }
            }
        });
        self.follow = Some(Follow { queue, forwarder });
        let mut view = IndexedView::default();
        for (i, seq) in instances {
            view.put_instance(i, seq);
        }
        for e in tasks {
            view.put_task(e.value(), e.revision.seq);
        }
        self.view = Arc::new(view);
        self.revision = start.1;
        self.changes = ViewChanges {
            full: true,
            ..ViewChanges::default()
        };
        self.loads += 1;
    }

    fn apply(&mut self, events: &[WatchEvent]) {
        let view = Arc::make_mut(&mut self.view);
        let changes = &mut self.changes;
        for event in events {
            match event {
                WatchEvent::Put(v) => match &v.entity {
                    Entity::Task(t) => {
                        if !super::cycle::manages(&self.clusters, &t.cluster_arn) {
                            continue;
                        }
                        if let Some(old) = view.put_task(Arc::clone(t), v.revision.seq) {
                            changes.instances.extend(touched_by(t, old.as_deref()));
                            changes.tasks.push(Arc::clone(t));
                        }
                    }
                    Entity::Instance(i) => {
                        if !super::cycle::manages(&self.clusters, &i.cluster_arn) {
                            continue;
                        }
                        if view.put_instance(Arc::clone(i), v.revision.seq).is_some() {
                            changes.instances.insert(i.container_instance_arn.clone());
                        }
                    }
                },
                WatchEvent::Delete { arn, revision, .. } => {
                    if let Some(t) = view.delete_task(arn, revision.seq) {
                        changes.instances.extend(t.container_instance_arn.clone());
                        changes.removed.push(arn.clone());
                    } else if view.delete_instance(arn, revision.seq).is_some() {
                        changes.instances.insert(arn.clone());
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use blox_core::model::{ContainerInstance, TaskStatus};
    use blox_state::cache::CacheWriter;
    use blox_state::store::{Versioned, WatchBatch};
    use rand::rngs::SmallRng;
    use rand::{Rng, SeedableRng};

    use super::*;

    fn arn(s: &str) -> Arn {
        Arn::parse(&format!("arn:aws:ecs:us-east-1:000000000000:{s}")).unwrap()
    }

    fn task(id: u64, on: u64, tag: u64, stopped: bool) -> Entity {
        let mut t = Task::new(arn(&format!("task/c/t{id}")), arn("cluster/c"), "web:1");
        t.container_instance_arn = Some(arn(&format!("container-instance/c/i{on}")));
        t.started_by = Some(format!("tag-{tag}"));
        if stopped {
            t.last_status = TaskStatus::Stopped;
        }
        Entity::Task(Arc::new(t))
    }

    fn instance(id: u64) -> Entity {
        Entity::Instance(Arc::new(ContainerInstance::new(
            arn(&format!("container-instance/c/i{id}")),
            arn("cluster/c"),
        )))
    }

    /// What a view answers, for comparison.
    fn answers(v: &IndexedView) -> Vec<String> {
        let mut out: Vec<String> = v
            .tasks()
            .map(|t| {
                format!(
                    "{:?}",
                    (
                        &t.task_arn,
                        &t.container_instance_arn,
                        &t.started_by,
                        &t.last_status
                    )
                )
            })
            .collect();
        out.extend(v.instances().map(|i| i.container_instance_arn.to_string()));
        for k in 0..12 {
            let on: Vec<&Arn> = v
                .tasks_on(&arn(&format!("container-instance/c/i{k}")))
                .map(|t| &t.task_arn)
                .collect();
            let by: Vec<&Arn> = v
                .tasks_started_by(&format!("tag-{k}"))
                .map(|t| &t.task_arn)
                .collect();
            out.push(format!("{k}: {on:?} {by:?}"));
        }
        out.sort();
        out
    }

    /// An empty cache, loaded at revision 1:1.
    fn ready_cache() -> (Cache, CacheWriter) {
        let (cache, mut writer) = blox_state::cache::cache();
        writer.replace(Vec::new(), Revision::new(1, 1));
        (cache, writer)
    }

    /// A view of `clusters` following an empty cache, loaded.
    async fn followed(clusters: Vec<String>) -> (Cache, CacheWriter, LiveView) {
        let (cache, writer) = ready_cache();
        let mut live = LiveView::new(clusters);
        live.sync(&cache).await;
        (cache, writer, live)
    }

    /// Applies one put of `entity` as revision `seq` (epoch 1).
    fn put_one(writer: &mut CacheWriter, seq: u64, entity: Entity) {
        let revision = Revision::new(1, seq);
        writer.apply_revision(WatchBatch {
            revision,
            events: vec![WatchEvent::Put(Versioned { entity, revision })],
        });
    }

    async fn settle() {
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
    }

    #[tokio::test]
    async fn a_followed_view_equals_a_view_loaded_whole_after_every_revision() {
        let (cache, mut writer) = ready_cache();
        let mut live = LiveView::new(Vec::new());
        assert!(
            live.sync(&cache).await.full,
            "the first sync loads the view"
        );
        let mut rng = SmallRng::seed_from_u64(7);
        let mut next = move |n: u64| rng.random_range(0..n);
        let mut touched = 0;
        for seq in 2..400 {
            let revision = Revision::new(1, seq);
            let events: Vec<WatchEvent> = (0..1 + next(3))
                .map(|_| match next(6) {
                    0 => WatchEvent::Put(Versioned {
                        entity: instance(next(12)),
                        revision,
                    }),
                    1 => WatchEvent::Delete {
                        arn: arn(&format!("task/c/t{}", next(40))),
                        last: None,
                        revision,
                    },
                    _ => WatchEvent::Put(Versioned {
                        entity: task(next(40), next(12), next(12), next(3) == 0),
                        revision,
                    }),
                })
                .collect();
            writer.apply_revision(WatchBatch { revision, events });
            settle().await;
            let changes = live.sync(&cache).await;
            assert!(!changes.full, "revision {seq}: followed, not loaded");
            touched += changes.instances.len();
            let mut whole = LiveView::new(Vec::new());
            whole.sync(&cache).await;
            assert_eq!(answers(&live.view), answers(&whole.view), "revision {seq}");
        }
        assert_eq!(live.loads(), 1);
        assert!(touched > 300, "changes name their instances ({touched})");
    }

    #[tokio::test]
    async fn a_sync_reaches_the_caches_revision_before_the_forwarder_ran() {
        let (cache, mut writer, mut live) = followed(Vec::new()).await;
        put_one(&mut writer, 2, task(1, 1, 1, false));
        // No yield: the forwarding task has not run since the revision.
        let changes = live.sync(&cache).await;
        assert_eq!(changes.tasks.len(), 1);
        assert_eq!(live.view.tasks().len(), 1);
        assert_eq!(live.loads(), 1);
    }

    #[tokio::test]
    async fn a_relisted_cache_is_loaded_again_and_the_changes_say_full() {
        let (cache, mut writer, mut live) = followed(Vec::new()).await;
        let put = |seq| Versioned {
            entity: task(1, 1, 1, false),
            revision: Revision::new(2, seq),
        };
        writer.replace(vec![put(5)], Revision::new(2, 5));
        settle().await;
        let changes = live.sync(&cache).await;
        assert!(changes.full);
        assert_eq!(live.loads(), 2);
        assert_eq!(live.view.tasks().len(), 1);
    }

    #[tokio::test]
    async fn only_the_managed_clusters_are_held() {
        let (cache, mut writer, mut live) = followed(vec!["other".into()]).await;
        put_one(&mut writer, 2, task(1, 1, 1, false));
        settle().await;
        let changes = live.sync(&cache).await;
        assert!(changes.instances.is_empty() && changes.tasks.is_empty());
        assert_eq!(live.view.tasks().len(), 0);
    }
}
