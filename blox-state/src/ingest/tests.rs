use std::sync::atomic::Ordering;

use blox_core::model::{Arn, Timestamp};

use super::*;
use crate::store::memory::MemoryStore;
use crate::testing::FaultyStore;
use crate::testing::queue::{TestQueue as Queue, task_event};

type FlakyStore = FaultyStore<MemoryStore>;

fn service_action(id: &str) -> String {
    serde_json::json!({"id": id, "detail-type": "ECS Service Action", "source": "aws.ecs", "detail": {"eventName": "SERVICE_STEADY_STATE"}})
        .to_string()
}

fn setup(policy: MalformedPolicy) -> (Arc<Queue>, Arc<FlakyStore>, Ingester) {
    let queue = Arc::new(Queue::default());
    let store = Arc::new(FaultyStore::new(MemoryStore::new()));
    let options = IngestOptions {
        malformed: policy,
        receivers: 2,
        ..IngestOptions::default()
    };
    let ing = Ingester::new(queue.clone(), store.clone(), options);
    (queue, store, ing)
}

async fn stored_status(store: &FlakyStore, task: &str) -> Option<String> {
    let arn = Arn::parse(&format!("arn:aws:ecs:us-east-1:1:task/prod/{task}")).unwrap();
    store
        .inner()
        .get(&arn)
        .await
        .unwrap()
        .map(|v| match v.entity {
            blox_core::Entity::Task(t) => t.last_status.to_string(),
            blox_core::Entity::Instance(_) => "instance?".into(),
        })
}

#[tokio::test]
async fn applied_events_are_stored_then_deleted() {
    let (q, store, ing) = setup(MalformedPolicy::Delete);
    q.push("m1", task_event("e1", "t1", 1, "PENDING"));
    q.push("m2", task_event("e2", "t1", 2, "RUNNING"));
    let report = ing.run_once().await.unwrap();
    assert_eq!((report.received, report.applied, report.deleted), (2, 2, 2));
    assert_eq!(
        stored_status(&store, "t1").await.as_deref(),
        Some("RUNNING")
    );
    assert_eq!(q.deleted_ids(), ["m1", "m2"]);
}

#[tokio::test]
async fn stale_and_duplicate_events_never_overwrite_and_are_deleted() {
    let (q, store, ing) = setup(MalformedPolicy::Delete);
    q.push("m1", task_event("e2", "t1", 2, "RUNNING"));
    ing.run_once().await.unwrap();
    q.push("m2", task_event("e1", "t1", 1, "PENDING"));
    q.push("m3", task_event("e2", "t1", 2, "RUNNING"));
    let report = ing.run_once().await.unwrap();
    assert_eq!((report.applied, report.stale, report.deleted), (0, 2, 2));
    assert_eq!(
        stored_status(&store, "t1").await.as_deref(),
        Some("RUNNING")
    );
    let stats = ing.counters().snapshot();
    assert_eq!((stats.applied, stats.stale, stats.deleted), (1, 2, 3));
}

#[tokio::test]
async fn ignorable_detail_types_are_counted_and_deleted() {
    let (q, _store, ing) = setup(MalformedPolicy::Delete);
    q.push("m1", service_action("e1"));
    let report = ing.run_once().await.unwrap();
    assert_eq!((report.ignored, report.deleted), (1, 1));
    assert_eq!(ing.counters().snapshot().ignored, 1);
    assert_eq!(q.deleted_ids(), ["m1"]);
}

#[tokio::test]
async fn malformed_messages_are_counted_and_deleted_without_stalling_good_ones() {
    let (q, store, ing) = setup(MalformedPolicy::Delete);
    q.push("bad-json", "{not json".into());
    q.push("good", task_event("e1", "t1", 1, "RUNNING"));
    q.push(
        "wrong-kind",
        task_event("e2", "t2", 1, "RUNNING").replace("task/prod/t2", "cluster/t2"),
    );
    let report = ing.run_once().await.unwrap();
    assert_eq!(
        (report.malformed, report.applied, report.deleted),
        (2, 1, 3)
    );
    assert_eq!(ing.counters().snapshot().malformed, 2);
    assert_eq!(q.deleted_ids(), ["bad-json", "good", "wrong-kind"]);
    assert!(stored_status(&store, "t1").await.is_some());
}

#[tokio::test]
async fn malformed_messages_can_be_left_for_the_dead_letter_queue() {
    let (q, _store, ing) = setup(MalformedPolicy::LeaveForDeadLetterQueue);
    q.push("bad", "[]".into());
    q.push("good", task_event("e1", "t1", 1, "RUNNING"));
    let report = ing.run_once().await.unwrap();
    assert_eq!((report.malformed, report.deleted), (1, 1));
    assert_eq!(q.deleted_ids(), ["good"]);
    q.expire_in_flight();
    assert_eq!(
        q.visible_len(),
        1,
        "the malformed message comes back for its receive count"
    );
}

#[tokio::test(start_paused = true)]
async fn while_the_store_is_down_nothing_is_deleted_receiving_pauses_and_it_resumes_by_itself() {
    let (q, store, ing) = setup(MalformedPolicy::Delete);
    let mut recoveries = ing.recoveries();
    store.set_down(true);
    for n in 0..25 {
        q.push(
            &format!("m{n:02}"),
            task_event(&format!("e{n}"), &format!("t{n}"), 1, "RUNNING"),
        );
    }
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let runner = tokio::spawn(ing.clone().run(async {
        let _ = stop_rx.await;
    }));
    // Let the receivers hit the outage and retry for a while.
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert!(
        q.deleted_ids().is_empty(),
        "nothing may be deleted while the store is down"
    );
    assert!(!ing.store_is_up());
    let receives_during_outage = q.receives.load(Ordering::SeqCst);
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert_eq!(
        q.receives.load(Ordering::SeqCst),
        receives_during_outage,
        "receivers pause instead of burning receive counts"
    );
    assert!(store.apply_calls() > 2, "the held batches are retried");

    store.set_down(false);
    tokio::time::timeout(Duration::from_secs(120), recoveries.changed())
        .await
        .expect("recovery is signalled")
        .unwrap();
    // Everything drains without any test intervention.
    for _ in 0..100 {
        if q.deleted_ids().len() == 25 {
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    assert_eq!(q.deleted_ids().len(), 25);
    for n in 0..25 {
        assert!(
            stored_status(&store, &format!("t{n}")).await.is_some(),
            "t{n} stored"
        );
    }
    stop_tx.send(()).unwrap();
    runner.await.unwrap();
    let stats = ing.counters().snapshot();
    assert_eq!(stats.applied, 25);
    assert!(stats.store_errors > 0);
}

#[tokio::test]
async fn failed_deletes_are_counted_and_the_redelivered_message_applies_as_stale() {
    let (q, _store, ing) = setup(MalformedPolicy::Delete);
    q.fail_deletes.store(true, Ordering::SeqCst);
    q.push("m1", task_event("e1", "t1", 1, "RUNNING"));
    ing.run_once().await.unwrap();
    assert_eq!(ing.counters().snapshot().delete_failures, 1);
    q.fail_deletes.store(false, Ordering::SeqCst);
    q.expire_in_flight();
    let report = ing.run_once().await.unwrap();
    assert_eq!((report.stale, report.deleted), (1, 1));
}

#[tokio::test]
async fn shutdown_stops_idle_receivers() {
    let (_q, _store, ing) = setup(MalformedPolicy::Delete);
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let h = tokio::spawn(ing.run(async {
        let _ = rx.await;
    }));
    tx.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(30), h)
        .await
        .unwrap()
        .unwrap();
}

#[test]
fn malformed_policy_parses_from_flags() {
    assert_eq!(
        "delete".parse::<MalformedPolicy>().unwrap(),
        MalformedPolicy::Delete
    );
    assert_eq!(
        "dead-letter".parse::<MalformedPolicy>().unwrap(),
        MalformedPolicy::LeaveForDeadLetterQueue
    );
    assert!("maybe".parse::<MalformedPolicy>().is_err());
}

/// Issue 14, "what is gone stays gone" as seen: with a stopped-task
/// retention of 5 s, a task went RUNNING (version 2), then STOPPED (version
/// 3), was removed, its tombstone purged with the same retention, and a
/// redelivered version-2 RUNNING event listed it as RUNNING again.
#[tokio::test]
async fn seen_a_redelivered_running_event_does_not_resurrect_a_removed_task() {
    let clock = jan_2024();
    let store = MemoryStore::with_options(crate::store::memory::MemoryOptions {
        clock: clock.shared(),
        ..Default::default()
    });
    crate::testing::conformance::what_is_gone_stays_gone(Arc::new(store), &clock).await;
}

#[tokio::test(start_paused = true)]
async fn back_pressure_pauses_ingestion_without_taking_more_messages() {
    let (q, store, ing) = setup(MalformedPolicy::Delete);
    store.set_exhausted(true);
    for n in 0..25 {
        q.push(
            &format!("m{n:02}"),
            task_event(&format!("e{n}"), &format!("t{n}"), 1, "RUNNING"),
        );
    }
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let runner = tokio::spawn(ing.clone().run(async {
        let _ = stop_rx.await;
    }));
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert!(q.deleted_ids().is_empty());
    assert!(!ing.store_is_up());
    let receives = q.receives.load(Ordering::SeqCst);
    assert!(
        receives <= 2,
        "one receive per receiver at most: {receives}"
    );
    tokio::time::sleep(Duration::from_secs(600)).await;
    assert_eq!(
        q.receives.load(Ordering::SeqCst),
        receives,
        "no more messages are taken in flight under back-pressure"
    );
    assert_eq!(
        q.visible_len(),
        25 - 10 * receives,
        "the rest stay in the queue"
    );
    store.set_exhausted(false);
    for _ in 0..100 {
        if q.deleted_ids().len() == 25 {
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    assert_eq!(q.deleted_ids().len(), 25);
    stop_tx.send(()).unwrap();
    runner.await.unwrap();
    assert_eq!(ing.counters().snapshot().applied, 25);
}

/// A store that refuses one ARN as if its stored record were unreadable.
struct OneBadKey {
    inner: MemoryStore,
    bad: Arn,
}

#[async_trait::async_trait]
impl StateStore for OneBadKey {
    async fn apply_each(
        &self,
        changes: Vec<Change>,
    ) -> Result<Vec<Result<ApplyOutcome, StoreError>>, StoreError> {
        let (bad, good): (Vec<_>, Vec<_>) = changes
            .into_iter()
            .enumerate()
            .partition(|(_, c)| *c.arn() == self.bad);
        let mut out: Vec<Option<Result<ApplyOutcome, StoreError>>> =
            std::iter::repeat_with(|| None)
                .take(bad.len() + good.len())
                .collect();
        let (idx, good): (Vec<usize>, Vec<Change>) = good.into_iter().unzip();
        for (i, r) in idx.into_iter().zip(self.inner.apply_each(good).await?) {
            out[i] = Some(r);
        }
        for (i, _) in bad {
            out[i] = Some(Err(StoreError::Corrupt {
                key: self.bad.to_string(),
                message: "injected".into(),
            }));
        }
        Ok(out.into_iter().flatten().collect())
    }
    async fn get(&self, arn: &Arn) -> crate::store::Result<Option<crate::store::Versioned>> {
        self.inner.get(arn).await
    }
    async fn list(
        &self,
        kind: blox_core::model::EntityKind,
        filter: &crate::store::Filter,
    ) -> crate::store::Result<crate::store::Listing<crate::store::Versioned>> {
        self.inner.list(kind, filter).await
    }
    async fn list_all(
        &self,
    ) -> crate::store::Result<crate::store::Listing<crate::store::Versioned>> {
        self.inner.list_all().await
    }
    async fn watch_revisions(
        &self,
        after: crate::store::Revision,
    ) -> crate::store::Result<crate::store::RevisionStream> {
        self.inner.watch_revisions(after).await
    }
    async fn current_revision(&self) -> crate::store::Result<crate::store::Revision> {
        self.inner.current_revision().await
    }
    async fn expire(
        &self,
        e: crate::store::Expiry,
    ) -> crate::store::Result<crate::store::ExpiryReport> {
        self.inner.expire(e).await
    }
    async fn kv_get(&self, key: &str) -> crate::store::Result<Option<crate::store::KvEntry>> {
        self.inner.kv_get(key).await
    }
    async fn kv_list(
        &self,
        prefix: &str,
    ) -> crate::store::Result<crate::store::Listing<crate::store::KvEntry>> {
        self.inner.kv_list(prefix).await
    }
    async fn kv_txn(
        &self,
        txn: crate::store::KvTxn,
    ) -> crate::store::Result<crate::store::KvTxnOutcome> {
        self.inner.kv_txn(txn).await
    }
    async fn kv_watch(
        &self,
        prefix: &str,
        after: crate::store::Revision,
    ) -> crate::store::Result<crate::store::KvWatchStream> {
        self.inner.kv_watch(prefix, after).await
    }
}

#[tokio::test]
async fn one_bad_key_fails_only_its_own_message() {
    let queue = Arc::new(Queue::default());
    let bad = Arn::parse("arn:aws:ecs:us-east-1:1:task/prod/bad").unwrap();
    let store = Arc::new(OneBadKey {
        inner: MemoryStore::new(),
        bad,
    });
    let ing = Ingester::new(queue.clone(), store.clone(), IngestOptions::default());
    queue.push("m1", task_event("e1", "t1", 1, "RUNNING"));
    queue.push("m2", task_event("e2", "bad", 1, "RUNNING"));
    queue.push("m3", task_event("e3", "t3", 1, "RUNNING"));
    let report = ing.run_once().await.unwrap();
    assert_eq!((report.applied, report.failed, report.deleted), (2, 1, 2));
    assert_eq!(queue.deleted_ids(), ["m1", "m3"]);
    queue.expire_in_flight();
    assert_eq!(queue.visible_len(), 1, "the bad key's message comes back");
}

/// A fake ECS on `clock` with one task that ran and then stopped, the
/// events it emitted for it (oldest first), and the task's ARN.
fn a_task_that_ran_then_stopped(
    clock: &crate::testing::ManualClock,
) -> (blox_core::testing::FakeEcs, Vec<String>, Arn) {
    use blox_core::testing::{FakeEcs, FakeEcsConfig, InstanceSpec};
    let ecs = FakeEcs::with_config(FakeEcsConfig {
        clock: Some(clock.shared()),
        ..FakeEcsConfig::seeded(7)
    });
    ecs.create_cluster("prod").unwrap();
    let instance = ecs.add_instance("prod", InstanceSpec::new()).unwrap();
    let _ = ecs.take_events();
    let started = ecs
        .run_tasks("prod", "web:1", &[instance.container_instance_arn], None)
        .unwrap();
    let task = started.tasks[0].task_arn.clone();
    clock.advance(std::time::Duration::from_secs(5));
    ecs.crash_task(&task).unwrap();
    let events = ecs.take_events();
    (ecs, events, task)
}

/// A memory store born on `clock` now, and an ingester into it from a new
/// queue (on the same clock).
fn fresh_store_and_ingester(
    clock: &crate::testing::ManualClock,
) -> (Arc<Queue>, Arc<MemoryStore>, Ingester) {
    let store = Arc::new(MemoryStore::with_options(
        crate::store::memory::MemoryOptions {
            clock: clock.shared(),
            ..Default::default()
        },
    ));
    let queue = Arc::new(Queue::default());
    let ingester = Ingester::new(
        queue.clone(),
        store.clone(),
        IngestOptions {
            clock: clock.shared(),
            ..IngestOptions::default()
        },
    );
    (queue, store, ingester)
}

fn jan_2024() -> crate::testing::ManualClock {
    crate::testing::ManualClock::starting_at(Timestamp::from_millis(1_704_067_200_000))
}

/// A task ran and stopped, then a minute later the process restarted with
/// an empty store.
struct Restarted {
    ecs: blox_core::testing::FakeEcs,
    events: Vec<String>,
    task: Arn,
    queue: Arc<Queue>,
    store: Arc<MemoryStore>,
    ingester: Ingester,
}

fn restarted_after_a_stop() -> Restarted {
    let clock = jan_2024();
    let (ecs, events, task) = a_task_that_ran_then_stopped(&clock);
    clock.advance(Duration::from_secs(60));
    let (queue, store, ingester) = fresh_store_and_ingester(&clock);
    Restarted {
        ecs,
        events,
        task,
        queue,
        store,
        ingester,
    }
}

fn push_all(queue: &Queue, events: Vec<String>) {
    for (n, e) in events.into_iter().enumerate() {
        queue.push(&format!("m{n}"), e);
    }
}

async fn live_status(store: &MemoryStore, task: &Arn) -> Option<String> {
    store.get(task).await.unwrap().map(|v| match v.entity {
        blox_core::Entity::Task(t) => t.last_status.to_string(),
        blox_core::Entity::Instance(_) => "instance?".into(),
    })
}

#[tokio::test]
async fn a_late_event_from_before_a_fresh_store_started_applies_only_as_ecs_describes_its_task() {
    let r = restarted_after_a_stop();
    // The task's RUNNING event arrives after the restart.
    let running = r
        .events
        .iter()
        .find(|e| e.contains("\"lastStatus\":\"RUNNING\""))
        .expect("the fake emitted the RUNNING event");
    r.queue.push("late", running.clone());
    let ingester = r.ingester.verify_with(Arc::new(r.ecs.clone()));
    let report = ingester.run_once().await.unwrap();
    assert_eq!(report.deleted, 1, "{report:?}");
    assert_eq!(
        live_status(&r.store, &r.task).await.as_deref(),
        Some("STOPPED"),
        "ECS's description applies, not the late event"
    );
    assert_eq!(r.ecs.calls("DescribeTasks"), 1);
}

#[tokio::test]
async fn without_ecs_to_ask_a_late_event_about_an_unknown_entity_is_too_old_to_apply() {
    let r = restarted_after_a_stop();
    push_all(&r.queue, r.events.clone());
    let report = r.ingester.run_once().await.unwrap();
    assert_eq!((report.applied, report.expired), (0, report.received));
    assert_eq!(report.deleted, report.received);
    assert_eq!(live_status(&r.store, &r.task).await, None);
}

#[tokio::test]
async fn events_after_a_fresh_store_started_or_about_what_it_holds_apply_without_asking_ecs() {
    let clock = jan_2024();
    let (queue, store, ingester) = fresh_store_and_ingester(&clock);
    let (ecs, events, task) = a_task_that_ran_then_stopped(&clock);
    let ingester = ingester.verify_with(Arc::new(ecs.clone()));
    push_all(&queue, events);
    ingester.run_once().await.unwrap();
    assert_eq!(live_status(&store, &task).await.as_deref(), Some("STOPPED"));
    assert_eq!(ecs.calls("DescribeTasks"), 0);
}

#[tokio::test]
async fn an_early_event_is_kept_for_redelivery_while_ecs_cannot_describe_it() {
    let r = restarted_after_a_stop();
    let ingester = r.ingester.verify_with(Arc::new(r.ecs.clone()));
    r.ecs
        .fail_always(
            "DescribeTasks",
            blox_core::testing::InjectedError::Throttled,
        )
        .unwrap();
    r.queue.push("late", r.events[0].clone());
    let report = ingester.run_once().await.unwrap();
    assert_eq!((report.failed, report.deleted), (1, 0), "{report:?}");
    assert_eq!(ingester.counters().snapshot().unconfirmed, 1);
    assert_eq!(live_status(&r.store, &r.task).await, None);
}
