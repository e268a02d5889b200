use std::sync::Mutex as StdMutex;

use async_trait::async_trait;
use blox_core::model::{Cluster, InstanceStatus, Task, TaskDefinition};
use blox_core::ports::Described;
use blox_core::ports::{EcsApiExt, Page, StartTaskOutput, StartTaskRequest};
use blox_core::testing::{FakeEcs, FakeEcsConfig, InjectedError, InstanceSpec};

use super::*;
use crate::store::ApplyOutcome;
use crate::store::memory::MemoryStore;
use crate::testing::FaultyStore;

const HOUR: Duration = Duration::from_secs(3600);

struct World {
    ecs: FakeEcs,
    store: Arc<FaultyStore<MemoryStore>>,
    rec: Reconciler,
}

fn world(instances: usize, tasks_per_instance: usize) -> World {
    // Seeded ids, but wall-clock timestamps: retention is measured against now.
    let ecs = FakeEcs::with_config(FakeEcsConfig {
        seed: Some(7),
        ..FakeEcsConfig::default()
    });
    ecs.create_cluster("prod").unwrap();
    let arns = ecs
        .add_instances("prod", instances, &InstanceSpec::new())
        .unwrap();
    for _ in 0..tasks_per_instance {
        ecs.run_tasks("prod", "web:1", &arns, Some("seed")).unwrap();
    }
    let store = Arc::new(FaultyStore::new(MemoryStore::new()));
    let rec = Reconciler::new(
        Arc::new(ecs.clone()),
        store.clone(),
        ReconcileOptions {
            clusters: vec!["prod".into()],
            retention: HOUR,
            ..ReconcileOptions::default()
        },
    );
    World { ecs, store, rec }
}

async fn stored(store: &FaultyStore<MemoryStore>, arn: &Arn) -> Option<Entity> {
    store.inner().get(arn).await.unwrap().map(|v| v.entity)
}

fn later(hours: u64) -> Timestamp {
    Timestamp::now().plus(Duration::from_secs(hours * 3600))
}

#[tokio::test]
async fn an_empty_store_is_loaded_with_instances_and_running_and_stopped_tasks() {
    let w = world(3, 2);
    let some_task = w.ecs.tasks_on(&w.ecs.instance_arns("prod").unwrap()[0])[0]
        .task_arn
        .clone();
    w.ecs.crash_task(&some_task).unwrap();
    let report = w.rec.reconcile_once().await.unwrap();
    assert_eq!(report.added, 3 + 6);
    assert_eq!(report.clusters, 1);
    let Some(Entity::Task(t)) = stored(&w.store, &some_task).await else {
        panic!("stopped task kept")
    };
    assert_eq!(t.last_status, TaskStatus::Stopped);
    assert_eq!(
        w.store
            .inner()
            .list(EntityKind::Instance, &Filter::default())
            .await
            .unwrap()
            .items
            .len(),
        3
    );
}

#[tokio::test]
async fn a_second_reconcile_of_an_unchanged_cluster_writes_nothing() {
    let w = world(5, 3);
    w.rec.reconcile_once().await.unwrap();
    let before = w.store.current_revision().await.unwrap();
    let applies = w.store.apply_calls();
    let report = w.rec.reconcile_once().await.unwrap();
    assert_eq!(report.writes(), 0, "{report:?}");
    assert_eq!(w.store.apply_calls(), applies, "no store write call at all");
    assert_eq!(w.store.current_revision().await.unwrap(), before);
}

#[tokio::test]
async fn ecs_calls_are_the_minimum_the_page_limits_allow() {
    // 250 instances and 750 running tasks: pages of 100.
    let w = world(250, 3);
    w.ecs.reset_calls();
    w.rec.reconcile_once().await.unwrap();
    assert_eq!(w.ecs.calls("ListContainerInstances"), 3);
    assert_eq!(w.ecs.calls("DescribeContainerInstances"), 3);
    assert_eq!(
        w.ecs.calls("ListTasks"),
        8 + 1,
        "8 pages of RUNNING, 1 (empty) of STOPPED"
    );
    assert_eq!(w.ecs.calls("DescribeTasks"), 8);
    assert_eq!(
        w.ecs.calls("DescribeClusters"),
        1,
        "the name resolved to its ARN"
    );
    assert_eq!(w.ecs.total_calls(), 1 + 3 + 3 + 9 + 8);
}

#[tokio::test]
async fn drift_is_repaired_with_the_newer_version() {
    let w = world(1, 1);
    w.rec.reconcile_once().await.unwrap();
    let inst = w.ecs.instance_arns("prod").unwrap()[0].clone();
    w.ecs.drain(&inst).unwrap(); // the event is "lost": only ECS knows
    let report = w.rec.reconcile_once().await.unwrap();
    assert_eq!(report.updated, 1);
    let Some(Entity::Instance(i)) = stored(&w.store, &inst).await else {
        panic!()
    };
    assert_eq!(i.status, InstanceStatus::Draining);
}

#[tokio::test(start_paused = true)]
async fn a_listing_that_fails_halfway_deletes_nothing() {
    let w = world(2, 1);
    w.rec.reconcile_once().await.unwrap();
    let t = w.ecs.tasks_on(&w.ecs.instance_arns("prod").unwrap()[0])[0]
        .task_arn
        .clone();
    w.ecs.expire_retained();
    w.ecs.crash_task(&t).unwrap();
    w.ecs.expire_retained(); // ECS forgets the task entirely
    w.ecs
        .fail_always("DescribeTasks", InjectedError::Throttled)
        .unwrap();
    let err = w.rec.reconcile_once().await.unwrap_err();
    assert!(
        matches!(err, ReconcileError::Partial { failed: 1, .. }),
        "{err}"
    );
    assert!(
        stored(&w.store, &t).await.is_some(),
        "nothing removed after a failed listing"
    );
    w.ecs.clear_failures();
    let report = w.rec.reconcile_once().await.unwrap();
    assert_eq!(report.removed, 1);
    assert!(stored(&w.store, &t).await.is_none());
}

#[tokio::test]
async fn vanished_instances_turn_inactive_then_expire_after_the_retention_period() {
    let w = world(2, 0);
    w.rec.reconcile_once().await.unwrap();
    let gone = w.ecs.instance_arns("prod").unwrap()[0].clone();
    w.ecs.deregister_instance(&gone).unwrap();
    w.ecs.expire_retained(); // not even described any more
    let report = w.rec.reconcile_once().await.unwrap();
    assert_eq!(report.marked_inactive, 1);
    let Some(Entity::Instance(i)) = stored(&w.store, &gone).await else {
        panic!("kept")
    };
    assert_eq!(i.status, InstanceStatus::Inactive);
    // Still within retention: nothing changes.
    assert_eq!(w.rec.reconcile_once().await.unwrap().writes(), 0);
    let report = w.rec.reconcile_at(later(2)).await.unwrap();
    assert_eq!(report.removed, 1);
    assert!(stored(&w.store, &gone).await.is_none());
    let inactive = Filter {
        status: Some("inactive".into()),
        ..Filter::default()
    };
    assert!(
        w.store
            .inner()
            .list(EntityKind::Instance, &inactive)
            .await
            .unwrap()
            .items
            .is_empty()
    );
}

#[tokio::test]
async fn stopped_tasks_are_kept_for_the_retention_period_then_removed_and_not_re_added() {
    let w = world(1, 1);
    let t = w.ecs.tasks_on(&w.ecs.instance_arns("prod").unwrap()[0])[0]
        .task_arn
        .clone();
    w.ecs.crash_task(&t).unwrap();
    w.rec.reconcile_once().await.unwrap();
    assert!(stored(&w.store, &t).await.is_some());
    let report = w.rec.reconcile_at(later(2)).await.unwrap();
    assert_eq!(report.removed, 1);
    // ECS still lists it as STOPPED: it stays out.
    let report = w.rec.reconcile_at(later(2)).await.unwrap();
    assert_eq!(report.writes(), 0);
    assert!(stored(&w.store, &t).await.is_none());
}

/// An ECS that lets an "event" land in the store while the reconciler is
/// describing tasks, i.e. after its listing began; with `reports_missing`
/// off, its describe calls never say `MISSING` (as an ECS that cannot tell).
struct RacingEcs {
    inner: FakeEcs,
    store: Arc<FaultyStore<MemoryStore>>,
    during_describe: StdMutex<Vec<Change>>,
    reports_missing: bool,
}

impl RacingEcs {
    fn mute(inner: FakeEcs, store: Arc<FaultyStore<MemoryStore>>) -> Self {
        RacingEcs {
            inner,
            store,
            during_describe: StdMutex::default(),
            reports_missing: false,
        }
    }

    fn filter<T>(&self, mut d: Described<T>) -> Described<T> {
        if !self.reports_missing {
            d.missing.clear();
        }
        d
    }
}

#[async_trait]
impl EcsApi for RacingEcs {
    async fn list_clusters(&self, t: Option<String>) -> Result<Page<Arn>, EcsError> {
        self.inner.list_clusters(t).await
    }
    async fn describe_clusters(&self, c: &[String]) -> Result<Vec<Cluster>, EcsError> {
        self.inner.describe_clusters(c).await
    }
    async fn list_container_instances(
        &self,
        c: &str,
        t: Option<String>,
    ) -> Result<Page<Arn>, EcsError> {
        self.inner.list_container_instances(c, t).await
    }
    async fn describe_container_instances(
        &self,
        c: &str,
        a: &[Arn],
    ) -> Result<Vec<ContainerInstance>, EcsError> {
        self.inner.describe_container_instances(c, a).await
    }
    async fn describe_container_instances_with_missing(
        &self,
        c: &str,
        a: &[Arn],
    ) -> Result<Described<ContainerInstance>, EcsError> {
        let d = self
            .inner
            .describe_container_instances_with_missing(c, a)
            .await?;
        Ok(self.filter(d))
    }
    async fn list_tasks(
        &self,
        f: &TaskListFilter,
        t: Option<String>,
    ) -> Result<Page<Arn>, EcsError> {
        self.inner.list_tasks(f, t).await
    }
    async fn describe_tasks(&self, c: &str, a: &[Arn]) -> Result<Vec<Task>, EcsError> {
        self.inner.describe_tasks(c, a).await
    }
    async fn describe_tasks_with_missing(
        &self,
        c: &str,
        a: &[Arn],
    ) -> Result<Described<Task>, EcsError> {
        let pending: Vec<Change> = std::mem::take(&mut *self.during_describe.lock().unwrap());
        for change in pending {
            assert!(self.store.apply(change).await.unwrap().is_applied());
        }
        let d = self.inner.describe_tasks_with_missing(c, a).await?;
        Ok(self.filter(d))
    }
    async fn start_task(&self, r: &StartTaskRequest) -> Result<StartTaskOutput, EcsError> {
        self.inner.start_task(r).await
    }
    async fn stop_task(&self, c: &str, t: &Arn, r: &str) -> Result<Task, EcsError> {
        self.inner.stop_task(c, t, r).await
    }
    async fn describe_task_definition(&self, t: &str) -> Result<TaskDefinition, EcsError> {
        self.inner.describe_task_definition(t).await
    }
    async fn update_container_instances_state(
        &self,
        c: &str,
        a: &[Arn],
        s: InstanceStatus,
    ) -> Result<Vec<ContainerInstance>, EcsError> {
        self.inner.update_container_instances_state(c, a, s).await
    }
}

#[tokio::test]
async fn an_entity_an_event_updated_after_the_listing_began_is_neither_overwritten_nor_deleted() {
    let w = world(1, 2);
    w.rec.reconcile_once().await.unwrap();
    let on = w.ecs.instance_arns("prod").unwrap()[0].clone();
    let tasks = w.ecs.tasks_on(&on);
    // Task A: ECS forgets it, but an event re-reports it mid-reconcile.
    let a = tasks[0].clone();
    w.ecs.crash_task(&a.task_arn).unwrap();
    w.ecs.expire_retained();
    // An event for task A, newer than anything stored, lands during the listing.
    let Some(Entity::Task(stored_a)) = stored(&w.store, &a.task_arn).await else {
        panic!()
    };
    let mut event_a = (*stored_a).clone();
    event_a.version = stored_a.version.map(|v| v + 10);
    event_a.last_status = TaskStatus::Running;
    let racing = RacingEcs {
        inner: w.ecs.clone(),
        store: w.store.clone(),
        during_describe: StdMutex::new(vec![Change::put(event_a.clone())]),
        reports_missing: true,
    };
    let rec = Reconciler::new(
        Arc::new(racing),
        w.store.clone(),
        ReconcileOptions {
            clusters: vec!["prod".into()],
            ..ReconcileOptions::default()
        },
    );
    let report = rec.reconcile_once().await.unwrap();
    assert_eq!(report.removed, 0, "{report:?}");
    assert_eq!(report.skipped_concurrent, 1);
    let Some(Entity::Task(now_a)) = stored(&w.store, &a.task_arn).await else {
        panic!("deleted by the race")
    };
    assert_eq!(now_a.version, event_a.version);
}

#[tokio::test(start_paused = true)]
async fn run_reconciles_only_while_leading_and_on_trigger() {
    let w = world(1, 1);
    let (lead_tx, lead_rx) = watch::channel(None::<Revision>);
    let trigger = w.rec.trigger();
    let mut boot = w.rec.bootstrapped();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let rec = w.rec.clone();
    let h = tokio::spawn(rec.run(lead_rx, async {
        let _ = stop_rx.await;
    }));
    tokio::time::sleep(Duration::from_secs(600)).await;
    assert_eq!(w.ecs.total_calls(), 0, "a follower does not reconcile");
    lead_tx.send_replace(Some(Revision::new(1, 1)));
    tokio::time::timeout(Duration::from_secs(60), boot.wait_for(|b| *b))
        .await
        .unwrap()
        .unwrap();
    let after_boot = w.ecs.total_calls();
    assert!(after_boot > 0);
    trigger.trigger();
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(10)).await;
        if w.ecs.total_calls() > after_boot {
            break;
        }
    }
    assert!(
        w.ecs.total_calls() > after_boot,
        "the trigger reconciles at once"
    );
    lead_tx.send_replace(None);
    tokio::time::sleep(Duration::from_millis(10)).await;
    let paused_at = w.ecs.total_calls();
    tokio::time::sleep(Duration::from_secs(3600)).await;
    assert_eq!(
        w.ecs.total_calls(),
        paused_at,
        "losing leadership stops reconciling"
    );
    stop_tx.send(()).unwrap();
    h.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn bootstrap_waits_for_ecs_with_backoff_instead_of_failing() {
    let w = world(1, 1);
    w.ecs
        .fail_next("ListContainerInstances", 3, InjectedError::Transport)
        .unwrap();
    let report = tokio::time::timeout(
        Duration::from_secs(600),
        w.rec.bootstrap(Revision::default()),
    )
    .await
    .unwrap();
    assert_eq!(report.added, 2);
    assert!(*w.rec.bootstrapped().borrow());
}

/// A fake whose listings lag an hour behind, with one instance in `prod`,
/// reconciled once.
async fn lagging_world() -> World {
    let ecs = FakeEcs::with_config(FakeEcsConfig {
        seed: Some(11),
        listing_lag: HOUR,
        ..FakeEcsConfig::default()
    });
    ecs.create_cluster("prod").unwrap();
    ecs.add_instances("prod", 1, &InstanceSpec::new()).unwrap();
    let store = Arc::new(FaultyStore::new(MemoryStore::new()));
    let rec = Reconciler::new(
        Arc::new(ecs.clone()),
        store.clone(),
        ReconcileOptions {
            clusters: vec!["prod".into()],
            retention: HOUR,
            ..ReconcileOptions::default()
        },
    );
    rec.reconcile_once().await.unwrap();
    World { ecs, store, rec }
}

/// Starts a task in ECS and stores it as its event would; returns it.
async fn started_and_reported(w: &World) -> Task {
    let on = w.ecs.instance_arns("prod").unwrap();
    let task = w.ecs.run_tasks("prod", "web:1", &on, None).unwrap().tasks[0].clone();
    let task = w.ecs.task(&task.task_arn).unwrap();
    assert!(
        w.store
            .apply(Change::put(task.clone()))
            .await
            .unwrap()
            .is_applied(),
        "the event lands"
    );
    let listed = w
        .ecs
        .list_all_tasks(&TaskListFilter {
            cluster: "prod".into(),
            ..TaskListFilter::default()
        })
        .await
        .unwrap();
    assert!(!listed.contains(&task.task_arn), "ListTasks lags behind");
    task
}

#[tokio::test]
async fn a_started_task_listings_do_not_show_yet_is_kept_and_its_event_still_applies() {
    let w = lagging_world().await;
    let task = started_and_reported(&w).await;
    let report = w.rec.reconcile_at(later(0)).await.unwrap();
    assert_eq!(report.removed, 0, "{report:?}");
    assert!(
        stored(&w.store, &task.task_arn).await.is_some(),
        "the task ECS has not listed yet stays"
    );
    // The same event delivered again is a duplicate, never refused by a tombstone.
    let again = w.store.apply(Change::put(task.clone())).await.unwrap();
    assert!(
        !matches!(
            again,
            ApplyOutcome::Stale {
                reason: crate::store::StaleReason::Tombstone,
                ..
            }
        ),
        "{again:?}"
    );
}

/// Two clusters named `prod` in two accounts, each with one instance and
/// one task, both in one store; reconciled by one reconciler per account.
#[tokio::test]
async fn same_named_clusters_of_two_accounts_never_touch_each_other() {
    let fake = |account: &str, seed| {
        let ecs = FakeEcs::with_config(FakeEcsConfig {
            seed: Some(seed),
            account: account.into(),
            ..FakeEcsConfig::default()
        });
        ecs.create_cluster("prod").unwrap();
        let on = ecs.add_instances("prod", 1, &InstanceSpec::new()).unwrap();
        ecs.run_tasks("prod", "web:1", &on, None).unwrap();
        ecs
    };
    let (a, b) = (fake("111111111111", 1), fake("222222222222", 2));
    let store = Arc::new(FaultyStore::new(MemoryStore::new()));
    let reconciler = |ecs: &FakeEcs, clusters: Vec<String>| {
        Reconciler::new(
            Arc::new(ecs.clone()),
            store.clone(),
            ReconcileOptions {
                clusters,
                retention: HOUR,
                ..ReconcileOptions::default()
            },
        )
    };
    let (rec_a, rec_b) = (
        reconciler(&a, vec!["prod".into()]),
        reconciler(&b, Vec::new()),
    );
    assert_eq!(rec_a.reconcile_once().await.unwrap().added, 2);
    assert_eq!(rec_b.reconcile_once().await.unwrap().added, 2);
    let all = |kind| {
        let store = store.clone();
        async move {
            let mut arns: Vec<(Arn, Entity)> = store
                .inner()
                .list(kind, &Filter::default())
                .await
                .unwrap()
                .items
                .into_iter()
                .map(|v| (v.entity.arn().clone(), v.entity))
                .collect();
            arns.sort_by(|x, y| x.0.cmp(&y.0));
            arns
        }
    };
    let before = (all(EntityKind::Instance).await, all(EntityKind::Task).await);
    assert_eq!((before.0.len(), before.1.len()), (2, 2));
    for rec in [&rec_a, &rec_b, &rec_a] {
        let report = rec.reconcile_once().await.unwrap();
        assert_eq!(report.writes(), 0, "{report:?}");
    }
    let after = (all(EntityKind::Instance).await, all(EntityKind::Task).await);
    assert_eq!(before, after);
}

/// A task and an instance the store has and ECS never had (a phantom of a
/// lost event's world), in `prod`.
async fn phantoms(w: &World) -> (Task, ContainerInstance) {
    let cluster = w.ecs.cluster_arn("prod").unwrap();
    let arn = |kind: &str, id: &str| {
        Arn::parse(&format!(
            "arn:aws:ecs:us-east-1:000000000000:{kind}/prod/{id}"
        ))
        .unwrap()
    };
    let mut task = Task::new(arn("task", "phantom"), cluster.clone(), "web:1");
    task.version = Some(2);
    task.last_status = TaskStatus::Running;
    let mut instance = ContainerInstance::new(arn("container-instance", "phantom"), cluster);
    instance.version = Some(5);
    instance.status = InstanceStatus::Active;
    for change in [Change::put(task.clone()), Change::put(instance.clone())] {
        assert!(w.store.apply(change).await.unwrap().is_applied());
    }
    (task, instance)
}

#[tokio::test]
async fn what_ecs_reports_missing_is_removed_at_once_for_good() {
    let w = world(1, 1);
    w.rec.reconcile_once().await.unwrap();
    let (task, instance) = phantoms(&w).await;
    let report = w.rec.reconcile_once().await.unwrap();
    assert_eq!(
        (report.removed, report.marked_inactive),
        (1, 1),
        "{report:?}"
    );
    assert_eq!(
        w.store.apply(Change::put(task.clone())).await.unwrap(),
        ApplyOutcome::Stale {
            reason: crate::store::StaleReason::Tombstone,
            stored_version: task.version
        },
        "ECS's word leaves a normal tombstone"
    );
    let Some(Entity::Instance(i)) = stored(&w.store, &instance.container_instance_arn).await else {
        panic!("kept as INACTIVE")
    };
    assert_eq!(i.status, InstanceStatus::Inactive);
}

#[tokio::test]
async fn without_ecs_word_two_listings_further_apart_than_the_lag_remove_softly() {
    let w = world(1, 1);
    let lag = Duration::from_secs(60);
    let rec = Reconciler::new(
        Arc::new(RacingEcs::mute(w.ecs.clone(), w.store.clone())),
        w.store.clone(),
        ReconcileOptions {
            clusters: vec!["prod".into()],
            retention: HOUR,
            listing_lag: lag,
            ..ReconcileOptions::default()
        },
    );
    let t0 = Timestamp::now();
    rec.reconcile_at(t0).await.unwrap();
    let (task, instance) = phantoms(&w).await;
    for at in [t0, t0.plus(lag)] {
        let report = rec.reconcile_at(at).await.unwrap();
        assert_eq!(
            report.writes(),
            0,
            "one listing, or two too close: {report:?}"
        );
    }
    let report = rec
        .reconcile_at(t0.plus(lag + Duration::from_secs(1)))
        .await
        .unwrap();
    assert_eq!(report.removed, 2, "{report:?}");
    assert!(stored(&w.store, &task.task_arn).await.is_none());
    assert!(
        stored(&w.store, &instance.container_instance_arn)
            .await
            .is_none()
    );
    // ECS's own report of the deleted versions still applies.
    for change in [Change::put(task.clone()), Change::put(instance.clone())] {
        let outcome = w.store.apply(change).await.unwrap();
        assert!(outcome.is_applied(), "{outcome:?}");
    }
}

#[tokio::test]
async fn a_cluster_name_ecs_does_not_know_fails_alone_and_removes_nothing() {
    let w = world(1, 1);
    w.rec.reconcile_once().await.unwrap();
    let rec = Reconciler::new(
        Arc::new(w.ecs.clone()),
        w.store.clone(),
        ReconcileOptions {
            clusters: vec!["prod".into(), "nope".into()],
            ..ReconcileOptions::default()
        },
    );
    let err = rec.reconcile_once().await.unwrap_err();
    match err {
        ReconcileError::Partial {
            failed: 1,
            total: 2,
            report,
            ..
        } => assert_eq!((report.clusters, report.writes()), (1, 0)),
        other => panic!("{other}"),
    }
}

/// Leads a new term (until `lead_tx` says otherwise) and waits for the
/// bootstrap of the term to be done.
async fn lead_until_bootstrapped(
    rec: &Reconciler,
    lead_tx: &watch::Sender<Option<Revision>>,
) -> BootstrapDone {
    static TERMS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    let mut done = rec.bootstrap_done();
    let term = Revision::new(1, TERMS.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
    lead_tx.send_replace(Some(term));
    tokio::time::timeout(
        Duration::from_secs(600),
        done.wait_for(|d| d.as_ref().is_some_and(|d| d.term == term)),
    )
    .await
    .unwrap()
    .unwrap()
    .clone()
    .unwrap()
}

#[tokio::test(start_paused = true)]
async fn a_new_term_skips_the_bootstrap_only_after_a_recent_complete_reconcile_of_this_store() {
    let w = world(2, 1);
    let (lead_tx, lead_rx) = watch::channel(None::<Revision>);
    let h = tokio::spawn(w.rec.clone().run(lead_rx, std::future::pending()));
    // Nothing recorded: a full bootstrap, recorded.
    let first = lead_until_bootstrapped(&w.rec, &lead_tx).await;
    assert!(w.ecs.calls("ListTasks") > 0);
    let recorded = w
        .store
        .kv_get(record::COMPLETE_RECONCILE_KEY)
        .await
        .unwrap();
    assert!(recorded.is_some(), "the bootstrap is recorded");

    // A new term within the interval: no ECS call, and the view to reach
    // still covers what the bootstrap wrote.
    lead_tx.send_replace(None);
    tokio::task::yield_now().await;
    let mut done = w.rec.bootstrap_done();
    done.wait_for(Option::is_none).await.unwrap();
    let calls = w.ecs.total_calls();
    let second = lead_until_bootstrapped(&w.rec, &lead_tx).await;
    assert_eq!(w.ecs.total_calls(), calls, "the bootstrap was skipped");
    assert_eq!(second.view, first.view);

    // A record of another store (a restored backup): a full bootstrap.
    lead_tx.send_replace(None);
    done.wait_for(Option::is_none).await.unwrap();
    record_of_another_store(&w.store, first.view).await;
    lead_until_bootstrapped(&w.rec, &lead_tx).await;
    assert!(w.ecs.total_calls() > calls, "a full bootstrap");
    h.abort();
}

/// Records a complete reconcile of another etcd cluster than the one
/// `view` came from (a restored backup): it never spares a bootstrap.
async fn record_of_another_store(store: &FaultyStore<MemoryStore>, view: Revision) {
    let foreign = record::CompleteReconcile {
        at: Timestamp::now(),
        epoch: view.epoch.wrapping_add(1),
        clusters: vec!["prod".into()],
    };
    store
        .kv_put(
            record::COMPLETE_RECONCILE_KEY,
            bytes::Bytes::from(serde_json::to_vec(&foreign).unwrap()),
            None,
        )
        .await
        .unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_failing_cluster_leaves_the_others_bootstrapped_and_reconciled_every_interval() {
    let ecs = FakeEcs::with_seed(3);
    ecs.create_cluster("prod").unwrap();
    let arns = ecs.add_instances("prod", 2, &InstanceSpec::new()).unwrap();
    ecs.run_tasks("prod", "web:1", &arns, Some("seed")).unwrap();
    let store = Arc::new(MemoryStore::new());
    let rec = Reconciler::new(
        Arc::new(ecs.clone()),
        store.clone(),
        ReconcileOptions {
            // "gone" was deleted.
            clusters: vec!["prod".into(), "gone".into()],
            ..ReconcileOptions::default()
        },
    );
    let (lead_tx, lead_rx) = watch::channel(None::<Revision>);
    let h = tokio::spawn(rec.clone().run(lead_rx, std::future::pending()));
    let done = lead_until_bootstrapped(&rec, &lead_tx).await;
    assert_eq!(done.pending, vec!["gone".to_owned()]);
    let prod = ecs.cluster_arn("prod").unwrap();
    assert!(!done.blocks(&prod));
    assert!(done.view.seq > 0, "what it wrote of prod is waited for");
    assert!(!*rec.bootstrapped().borrow(), "not every cluster is done");
    let listed = ecs.calls("ListTasks");
    tokio::time::sleep(Duration::from_secs(900)).await;
    assert!(
        ecs.calls("ListTasks") > listed,
        "prod is still reconciled while gone keeps failing"
    );
    h.abort();
}

#[tokio::test(start_paused = true)]
async fn with_no_configured_clusters_a_cluster_created_after_the_bootstrap_waits_for_its_reconcile()
{
    let ecs = FakeEcs::with_seed(4);
    ecs.create_cluster("prod").unwrap();
    let arns = ecs.add_instances("prod", 2, &InstanceSpec::new()).unwrap();
    ecs.run_tasks("prod", "web:1", &arns, Some("seed")).unwrap();
    let store = Arc::new(MemoryStore::new());
    let rec = Reconciler::new(
        Arc::new(ecs.clone()),
        store.clone(),
        // Every cluster of the account.
        ReconcileOptions::default(),
    );
    let (lead_tx, lead_rx) = watch::channel(None::<Revision>);
    let h = tokio::spawn(rec.clone().run(lead_rx, std::future::pending()));
    let done = lead_until_bootstrapped(&rec, &lead_tx).await;
    let prod = ecs.cluster_arn("prod").unwrap();
    assert!(!done.blocks(&prod));

    // A cluster created since: its events may reach the view, but no
    // reconcile has read it, so nothing acts on it yet.
    ecs.create_cluster("new").unwrap();
    let fresh = ecs.add_instances("new", 1, &InstanceSpec::new()).unwrap();
    ecs.run_tasks("new", "web:1", &fresh, Some("seed")).unwrap();
    let new = ecs.cluster_arn("new").unwrap();
    let gate = rec.bootstrap_done();
    assert!(gate.borrow().as_ref().unwrap().blocks(&new));

    // The next pass covers it, and the runner then waits for its view.
    rec.reconcile_once().await.unwrap();
    let after = gate.borrow().clone().unwrap();
    assert!(!after.blocks(&new));
    assert!(!after.blocks(&prod));
    assert!(after.view.seq >= done.view.seq);
    h.abort();
}

#[tokio::test(start_paused = true)]
async fn a_new_term_gets_its_own_bootstrap_even_when_leadership_never_visibly_dropped() {
    let w = world(2, 1);
    let (lead_tx, lead_rx) = watch::channel(None::<Revision>);
    let h = tokio::spawn(w.rec.clone().run(lead_rx, std::future::pending()));
    let first = lead_until_bootstrapped(&w.rec, &lead_tx).await;
    // Deposed and elected again, seen at once: no `None` in between. A
    // record of another store forces a full bootstrap for the new term.
    record_of_another_store(&w.store, first.view).await;
    let calls = w.ecs.total_calls();
    let second = lead_until_bootstrapped(&w.rec, &lead_tx).await;
    assert_ne!(second.term, first.term, "the new term's own bootstrap");
    assert!(w.ecs.total_calls() > calls, "a full bootstrap for it");
    h.abort();
}

#[tokio::test(start_paused = true)]
async fn a_reconcile_retries_single_failed_ecs_calls_instead_of_giving_up_on_the_cluster() {
    // 250 instances and 750 running tasks: 24 calls, a third of them failing.
    let w = world(250, 3);
    w.ecs.fail_every(3, InjectedError::Transport);
    let report = w.rec.reconcile_once().await.unwrap();
    assert_eq!(
        (report.clusters, report.added),
        (1, 250 + 750),
        "{report:?}"
    );
    // Throttling too.
    w.ecs.clear_failures();
    w.ecs.fail_every(4, InjectedError::Throttled);
    w.ecs
        .crash_task(&w.ecs.tasks_on(&w.ecs.instance_arns("prod").unwrap()[0])[0].task_arn)
        .unwrap();
    let report = w.rec.reconcile_once().await.unwrap();
    assert!(report.updated >= 1, "the crash is seen: {report:?}");
}

#[tokio::test(start_paused = true)]
async fn a_call_that_keeps_failing_fails_the_cluster_after_a_bounded_number_of_attempts() {
    let w = world(1, 1);
    w.ecs
        .fail_always("ListContainerInstances", InjectedError::Transport)
        .unwrap();
    let err = w.rec.reconcile_once().await.unwrap_err();
    assert!(
        matches!(err, ReconcileError::Partial { failed: 1, .. }),
        "{err}"
    );
    let attempts = w.ecs.calls("ListContainerInstances");
    assert!((2..=10).contains(&attempts), "{attempts} attempts");
    // An error that retrying cannot cure is not retried.
    w.ecs.clear_failures();
    w.ecs.reset_calls();
    w.ecs
        .fail_always(
            "ListContainerInstances",
            InjectedError::Service {
                code: "AccessDeniedException".into(),
                message: "no".into(),
            },
        )
        .unwrap();
    assert!(w.rec.reconcile_once().await.is_err());
    assert_eq!(w.ecs.calls("ListContainerInstances"), 1);
}
