use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use async_trait::async_trait;
use blox_core::model::Arn;
use blox_core::ports::{DeleteFailure, SourceError};

use super::*;
use crate::store::memory::MemoryStore;
use crate::testing::FaultyStore;

/// A queue with SQS's at-least-once semantics, driven by the test.
#[derive(Default)]
struct Queue {
    visible: Mutex<VecDeque<Message>>,
    in_flight: Mutex<HashMap<String, Message>>,
    deleted: Mutex<Vec<String>>,
    receives: AtomicUsize,
    fail_deletes: AtomicBool,
}

impl Queue {
    fn push(&self, id: &str, body: String) {
        self.visible.lock().unwrap().push_back(Message {
            id: id.into(),
            receipt_handle: format!("rh-{id}"),
            body,
            receive_count: Some(1),
        });
    }
    /// The visibility timeout passes: undeleted messages come back.
    fn expire_in_flight(&self) {
        let back: Vec<Message> = self
            .in_flight
            .lock()
            .unwrap()
            .drain()
            .map(|(_, m)| m)
            .collect();
        self.visible.lock().unwrap().extend(back);
    }
    fn deleted_ids(&self) -> Vec<String> {
        let mut d: Vec<String> = self
            .deleted
            .lock()
            .unwrap()
            .iter()
            .map(|r| r.trim_start_matches("rh-").to_owned())
            .collect();
        d.sort();
        d
    }
    fn visible_len(&self) -> usize {
        self.visible.lock().unwrap().len()
    }
}

#[async_trait]
impl EventSource for Queue {
    async fn receive(&self, max: usize, _wait: Duration) -> Result<Vec<Message>, SourceError> {
        self.receives.fetch_add(1, Ordering::SeqCst);
        let mut v = self.visible.lock().unwrap();
        let n = max.min(v.len());
        let batch: Vec<Message> = v.drain(..n).collect();
        let mut f = self.in_flight.lock().unwrap();
        for m in &batch {
            f.insert(m.receipt_handle.clone(), m.clone());
        }
        Ok(batch)
    }
    async fn delete(&self, receipts: &[String]) -> Result<Vec<DeleteFailure>, SourceError> {
        if self.fail_deletes.load(Ordering::SeqCst) {
            return Ok(receipts
                .iter()
                .map(|r| DeleteFailure {
                    receipt_handle: r.clone(),
                    code: "ReceiptHandleIsInvalid".into(),
                    message: "expired".into(),
                })
                .collect());
        }
        let mut f = self.in_flight.lock().unwrap();
        for r in receipts {
            f.remove(r);
            self.deleted.lock().unwrap().push(r.clone());
        }
        Ok(Vec::new())
    }
}

type FlakyStore = FaultyStore<MemoryStore>;

fn task_event(id: &str, task: &str, version: u64, status: &str) -> String {
    serde_json::json!({
        "version": "0", "id": id, "detail-type": "ECS Task State Change", "source": "aws.ecs",
        "account": "1", "time": "2024-01-01T00:00:00Z", "region": "us-east-1", "resources": [],
        "detail": {
            "taskArn": format!("arn:aws:ecs:us-east-1:1:task/prod/{task}"),
            "clusterArn": "arn:aws:ecs:us-east-1:1:cluster/prod",
            "lastStatus": status, "desiredStatus": "RUNNING", "version": version,
            "taskDefinitionArn": "arn:aws:ecs:us-east-1:1:task-definition/web:1"
        }
    })
    .to_string()
}

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
