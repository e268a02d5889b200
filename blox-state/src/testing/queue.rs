//! An event source with SQS's at-least-once semantics, driven by a test,
//! and the ECS events to feed it.

// A test kit: failing loudly is its purpose.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use blox_core::model::Timestamp;
use blox_core::ports::{DeleteFailure, EventSource, Message, SourceError};

/// A queue with SQS's at-least-once semantics, driven by the test: a
/// received message is in flight until deleted or until
/// [`TestQueue::expire_in_flight`] (its visibility timeout) brings it back.
#[derive(Default)]
pub struct TestQueue {
    visible: Mutex<VecDeque<Message>>,
    in_flight: Mutex<HashMap<String, Message>>,
    deleted: Mutex<Vec<String>>,
    /// How many receive calls were made.
    pub receives: AtomicUsize,
    /// Makes every delete fail (`ReceiptHandleIsInvalid`).
    pub fail_deletes: AtomicBool,
}

impl TestQueue {
    /// Sends a message (its receipt handle is `rh-{id}`).
    pub fn push(&self, id: &str, body: String) {
        self.visible.lock().unwrap().push_back(Message {
            id: id.into(),
            receipt_handle: format!("rh-{id}"),
            body,
            receive_count: Some(1),
        });
    }
    /// The visibility timeout passes: undeleted messages come back.
    pub fn expire_in_flight(&self) {
        let back: Vec<Message> = self
            .in_flight
            .lock()
            .unwrap()
            .drain()
            .map(|(_, m)| m)
            .collect();
        self.visible.lock().unwrap().extend(back);
    }
    /// The ids of the deleted messages, sorted.
    pub fn deleted_ids(&self) -> Vec<String> {
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
    /// How many messages are visible.
    pub fn visible_len(&self) -> usize {
        self.visible.lock().unwrap().len()
    }
}

#[async_trait]
impl EventSource for TestQueue {
    /// Long polling: with nothing visible, waits `wait` and returns nothing
    /// (so an idle receiver sleeps, as on SQS, instead of spinning).
    async fn receive(&self, max: usize, wait: Duration) -> Result<Vec<Message>, SourceError> {
        self.receives.fetch_add(1, Ordering::SeqCst);
        let batch: Vec<Message> = {
            let mut v = self.visible.lock().unwrap();
            let n = max.min(v.len());
            v.drain(..n).collect()
        };
        if batch.is_empty() {
            tokio::time::sleep(wait).await;
            return Ok(batch);
        }
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

/// An EventBridge ECS task state change of task `task` in cluster `prod`
/// (account 1, us-east-1), emitted now.
pub fn task_event(id: &str, task: &str, version: u64, status: &str) -> String {
    task_event_at(id, task, version, status, Timestamp::now())
}

/// [`task_event`], emitted at `time`.
pub fn task_event_at(id: &str, task: &str, version: u64, status: &str, time: Timestamp) -> String {
    serde_json::json!({
        "version": "0", "id": id, "detail-type": "ECS Task State Change", "source": "aws.ecs",
        "account": "1", "time": time.to_string(), "region": "us-east-1", "resources": [],
        "detail": {
            "taskArn": format!("arn:aws:ecs:us-east-1:1:task/prod/{task}"),
            "clusterArn": "arn:aws:ecs:us-east-1:1:cluster/prod",
            "lastStatus": status, "desiredStatus": "RUNNING", "version": version,
            "taskDefinitionArn": "arn:aws:ecs:us-east-1:1:task-definition/web:1",
            "stoppedAt": (status == "STOPPED").then(|| time.to_string()),
        }
    })
    .to_string()
}
