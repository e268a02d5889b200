//! The event ingester: an [`EventSource`] (SQS) into the [`StateStore`].
//!
//! Each receiver loops: receive up to 10 messages with long polling, parse
//! them, apply the entity events in one batch, and delete a message only once
//! its event is durably applied or proven stale. Policies:
//!
//! * a malformed message, or one whose entity blox does not store, is counted,
//!   logged with its message id and the reason, and deleted, or left for the
//!   queue's dead-letter queue ([`MalformedPolicy`]); it never stalls the queue;
//! * ignorable detail-types (service actions, deployment changes) are counted
//!   and deleted;
//! * an event older than the horizon of "gone" ([`IngestOptions::event_horizon`],
//!   by its envelope's `time`) is counted as expired and deleted, never
//!   applied: its entity's tombstone may have been purged, so applying it
//!   could resurrect what is gone; the reconciler owns older truth;
//! * an event from before a store that started empty began, about an entity
//!   it has no record of, is applied only with ECS's word (the entity is
//!   described and its described state applied; see [`Ingester::verify_with`]
//!   and the `verify` module);
//! * each change's outcome is its own: a change the store refuses on its own
//!   account fails only its message (an invalid one counts as malformed; one
//!   the store cannot write now, such as over an unreadable record, is left
//!   for redelivery);
//! * when the store is unavailable or exhausted (etcd's `NOSPACE` alarm,
//!   too many requests: back-pressure) nothing is deleted and every receiver
//!   pauses (so messages do not burn their receive count toward a
//!   dead-letter queue, and no more are taken in flight); the held batch is
//!   retried with backoff until the store returns, then ingestion resumes by
//!   itself and [`Ingester::recoveries`] ticks so a reconcile can repair
//!   what was missed.

mod counters;
mod verify;

use std::sync::Arc;
use std::time::Duration;

use blox_core::backoff::Backoff;
use blox_core::event::{EcsEvent, parse_event};
use blox_core::model::Timestamp;
use blox_core::model::{Entity, EntityKind};
use blox_core::ports::{EcsApi, EventSource, Message};
use tokio::sync::watch;

pub use counters::{IngestCounters, IngestStats};

use crate::store::{ApplyOutcome, Change, StateStore, StoreError};

/// What to do with a message that can never apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MalformedPolicy {
    /// Delete it (after counting and logging it).
    #[default]
    Delete,
    /// Leave it in the queue, so the queue's redrive policy moves it to the
    /// dead-letter queue after its maximum receive count.
    LeaveForDeadLetterQueue,
}

impl std::str::FromStr for MalformedPolicy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "delete" => Ok(MalformedPolicy::Delete),
            "dead-letter" | "dlq" | "leave" => Ok(MalformedPolicy::LeaveForDeadLetterQueue),
            other => Err(format!(
                "unknown malformed-message policy {other:?}: expected delete or dead-letter"
            )),
        }
    }
}

/// How many receivers an ingester runs by default.
///
/// Each receiver waits for its batch's write to the store before it
/// receives again, so the receivers in flight are what the store's writer
/// can gather into one transaction: into etcd, 2 receivers ingested about
/// 4,500 messages/s, 8 about 6,100 and 16 about 8,700 (`benches/RESULTS.md`,
/// issue 17). Idle, each one is a long poll: 16 receivers make about 48
/// requests a minute to SQS.
pub const DEFAULT_RECEIVERS: u16 = 16;

/// Ingester settings.
#[derive(Debug, Clone)]
pub struct IngestOptions {
    /// Messages per receive (SQS allows at most 10).
    pub batch_size: usize,
    /// Long-polling wait per receive (SQS allows at most 20 s).
    pub wait: Duration,
    /// How many receivers run concurrently.
    pub receivers: usize,
    /// What to do with malformed messages.
    pub malformed: MalformedPolicy,
    /// Backoff while the store or the source is down.
    pub backoff: Backoff,
    /// The clock the event lag and age are measured against (default: the
    /// wall clock).
    pub clock: blox_core::clock::SharedClock,
    /// Entity events older than this (by their envelope's `time`; an event
    /// without one is applied) are not applied but counted as expired and
    /// deleted (`None`: every event applies).
    /// Set it to the store's tombstone retention (the default,
    /// [`crate::store::retention::DEFAULT_TOMBSTONE_RETENTION`]), so no
    /// event outlives the tombstone that blocks it.
    pub event_horizon: Option<Duration>,
}

impl Default for IngestOptions {
    fn default() -> Self {
        IngestOptions {
            batch_size: 10,
            wait: Duration::from_secs(20),
            receivers: usize::from(DEFAULT_RECEIVERS),
            malformed: MalformedPolicy::Delete,
            backoff: Backoff::new(Duration::from_millis(200), Duration::from_secs(15)),
            clock: blox_core::clock::system(),
            event_horizon: Some(crate::store::retention::DEFAULT_TOMBSTONE_RETENTION),
        }
    }
}

/// What one receive cycle did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BatchReport {
    /// Messages received.
    pub received: usize,
    /// Events applied.
    pub applied: usize,
    /// Events found stale.
    pub stale: usize,
    /// Ignorable messages.
    pub ignored: usize,
    /// Malformed messages.
    pub malformed: usize,
    /// Events older than the horizon (deleted, not applied).
    pub expired: usize,
    /// Changes the store refused on their own account (their messages
    /// were kept for redelivery, or handled as malformed when invalid), and
    /// early events ECS could not be asked about now (kept too).
    pub failed: usize,
    /// Messages deleted.
    pub deleted: usize,
}

/// Why a receive cycle failed.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// The event source failed.
    #[error("event source failed")]
    Source(#[source] blox_core::ports::SourceError),
    /// The store rejected the batch for a reason other than being down; the
    /// messages were kept for redelivery.
    #[error("state store rejected the batch")]
    Store(#[source] StoreError),
}

/// Feeds the store from an event source. Cheap to clone (shared state).
#[derive(Clone)]
pub struct Ingester {
    source: Arc<dyn EventSource>,
    store: Arc<dyn StateStore>,
    /// Asked about early events the store cannot judge (see `verify`).
    ecs: Option<Arc<dyn EcsApi>>,
    options: IngestOptions,
    counters: Arc<IngestCounters>,
    /// `true` while the store is reachable; receivers wait on it.
    store_up: watch::Sender<bool>,
    /// Incremented each time the store comes back after being unavailable.
    recoveries: watch::Sender<u64>,
}

/// What to do with a received message.
enum Plan {
    /// Write this change (its event dated at this time), then delete the
    /// message.
    Apply(Change, Option<Timestamp>),
    /// An ignorable detail-type: delete.
    Ignore,
    /// Can never apply: delete or keep, per [`MalformedPolicy`].
    Malformed,
    /// Older than the horizon of "gone": delete without applying.
    Expired,
}

impl Ingester {
    /// An ingester from `source` into `store`.
    pub fn new(
        source: Arc<dyn EventSource>,
        store: Arc<dyn StateStore>,
        options: IngestOptions,
    ) -> Self {
        Ingester {
            source,
            store,
            ecs: None,
            options,
            counters: Arc::new(IngestCounters::default()),
            store_up: watch::channel(true).0,
            recoveries: watch::channel(0).0,
        }
    }

    /// Lets the ingester ask ECS about an event dated before its store
    /// started empty, about an entity the store has no record of: ECS's
    /// description is applied instead of the event (a stopped task's late
    /// event must not make it live in a fresh store). Without it such events
    /// are too old to apply, and the reconciler brings their entities.
    pub fn verify_with(mut self, ecs: Arc<dyn EcsApi>) -> Self {
        self.ecs = Some(ecs);
        self
    }

    /// The counters (shared with the running ingester).
    pub fn counters(&self) -> Arc<IngestCounters> {
        Arc::clone(&self.counters)
    }

    /// Ticks each time the store comes back after an outage: reconcile then.
    pub fn recoveries(&self) -> watch::Receiver<u64> {
        self.recoveries.subscribe()
    }

    /// Whether the store was reachable at the last write.
    pub fn store_is_up(&self) -> bool {
        *self.store_up.borrow()
    }

    fn plan(&self, msg: &Message) -> Plan {
        let reject = |reason: &dyn std::fmt::Display| {
            tracing::warn!(message_id = %msg.id, %reason, "malformed ECS event message");
            Plan::Malformed
        };
        let parsed = match parse_event(msg.body.as_bytes()) {
            Ok(p) => p,
            Err(e) => return reject(&e),
        };
        let age = parsed.time.map(|t| (t, self.options.clock.now().since(t)));
        let entity: Entity = match parsed.event {
            EcsEvent::Task(t) => Entity::Task(Arc::new(*t)),
            EcsEvent::Instance(i) => Entity::Instance(Arc::new(*i)),
            EcsEvent::Ignored { detail_type } => {
                tracing::debug!(message_id = %msg.id, %detail_type, "ignored ECS event");
                return Plan::Ignore;
            }
        };
        if let Some((t, age)) = age {
            if self.options.event_horizon.is_some_and(|h| age > h) {
                tracing::info!(message_id = %msg.id, time = %t, "event older than the tombstone horizon: deleted, not applied");
                return Plan::Expired;
            }
            self.counters
                .set_lag_ms(u64::try_from(age.as_millis()).unwrap_or(u64::MAX));
        }
        if EntityKind::of_arn(entity.arn()) != Some(entity.kind()) {
            return reject(&format!(
                "{} event carries the ARN {}",
                entity.kind(),
                entity.arn()
            ));
        }
        Plan::Apply(Change::put(entity), age.map(|(t, _)| t))
    }

    /// Waits while the store is known to be down.
    async fn wait_for_store(&self) {
        let mut rx = self.store_up.subscribe();
        let _ = rx.wait_for(|up| *up).await;
    }

    /// Applies a batch, retrying with backoff while the store is unavailable
    /// or exhausted; one result per change.
    async fn apply_durably(
        &self,
        changes: Vec<Change>,
    ) -> Result<Vec<Result<ApplyOutcome, StoreError>>, StoreError> {
        let mut backoff = self.options.backoff.clone();
        let mut was_down = false;
        loop {
            match self.store.apply_each(changes.clone()).await {
                Ok(outcomes) => {
                    if was_down {
                        self.store_up.send_replace(true);
                        self.recoveries.send_modify(|n| *n += 1);
                        tracing::info!("state store is back; ingestion resumes");
                    }
                    return Ok(outcomes);
                }
                Err(e) if e.is_unavailable() => {
                    self.counters.add_store_errors(1);
                    if !was_down {
                        tracing::warn!(error = %e, back_pressure = e.is_exhausted(),
                            "state store unavailable: pausing ingestion, nothing deleted");
                    }
                    was_down = true;
                    self.store_up.send_replace(false);
                    tokio::time::sleep(backoff.next_delay()).await;
                }
                Err(e) => {
                    self.counters.add_store_errors(1);
                    return Err(e);
                }
            }
        }
    }

    /// One cycle: receive, parse, apply, delete.
    pub async fn run_once(&self) -> Result<BatchReport, IngestError> {
        let messages = self.receive().await?;
        self.process(messages).await
    }

    /// Receives a batch, first waiting while the store is known to be down.
    async fn receive(&self) -> Result<Vec<Message>, IngestError> {
        self.wait_for_store().await;
        let messages = self
            .source
            .receive(self.options.batch_size, self.options.wait)
            .await
            .map_err(|e| {
                self.counters.add_source_errors(1);
                IngestError::Source(e)
            })?;
        self.counters.add_received(messages.len() as u64);
        Ok(messages)
    }

    /// Parses, applies and deletes a received batch.
    async fn process(&self, messages: Vec<Message>) -> Result<BatchReport, IngestError> {
        let mut report = BatchReport {
            received: messages.len(),
            ..BatchReport::default()
        };
        let mut to_delete = Vec::with_capacity(messages.len());
        let mut changes = Vec::new();
        let mut change_receipts = Vec::new();
        for msg in &messages {
            match self.plan(msg) {
                Plan::Apply(change, time) => {
                    changes.push((change, time));
                    change_receipts.push(msg.receipt_handle.clone());
                }
                Plan::Ignore => {
                    report.ignored += 1;
                    to_delete.push(msg.receipt_handle.clone());
                }
                Plan::Malformed => {
                    report.malformed += 1;
                    if self.options.malformed == MalformedPolicy::Delete {
                        to_delete.push(msg.receipt_handle.clone());
                    }
                }
                Plan::Expired => {
                    report.expired += 1;
                    to_delete.push(msg.receipt_handle.clone());
                }
            }
        }

        let checked = verify::check(self.store.as_ref(), self.ecs.as_ref(), changes).await;
        let (mut changes, mut receipts) = (Vec::new(), Vec::new());
        for (checked, receipt) in checked.into_iter().zip(change_receipts) {
            match checked {
                verify::Checked::Apply(change) => {
                    changes.push(change);
                    receipts.push(receipt);
                }
                verify::Checked::Expired => {
                    report.expired += 1;
                    to_delete.push(receipt);
                }
                verify::Checked::Failed => {
                    report.failed += 1;
                    self.counters.add_unconfirmed(1);
                }
            }
        }
        let change_receipts = receipts;

        let mut store_error = None;
        let mut store_failed = 0;
        if !changes.is_empty() {
            match self.apply_durably(changes).await {
                Ok(outcomes) => {
                    for (outcome, receipt) in outcomes.into_iter().zip(change_receipts) {
                        match outcome {
                            Ok(o) if o.is_applied() => report.applied += 1,
                            Ok(_) => report.stale += 1,
                            Err(StoreError::Invalid(reason)) => {
                                tracing::warn!(%reason, "the store refuses an event as invalid");
                                report.malformed += 1;
                                if self.options.malformed != MalformedPolicy::Delete {
                                    continue;
                                }
                            }
                            Err(e) => {
                                tracing::warn!(error = %e, "the store could not apply an event; its message is kept for redelivery");
                                report.failed += 1;
                                store_failed += 1;
                                continue;
                            }
                        }
                        to_delete.push(receipt);
                    }
                    self.counters.add_applied(report.applied as u64);
                    self.counters.add_stale(report.stale as u64);
                    self.counters.add_store_errors(store_failed);
                }
                Err(e) => store_error = Some(e),
            }
        }
        self.counters.add_ignored(report.ignored as u64);
        self.counters.add_malformed(report.malformed as u64);
        self.counters.add_expired(report.expired as u64);

        if !to_delete.is_empty() {
            match self.source.delete(&to_delete).await {
                Ok(failures) => {
                    for f in &failures {
                        tracing::warn!(code = %f.code, message = %f.message, "could not delete a message; it will be redelivered and found stale");
                    }
                    self.counters.add_delete_failures(failures.len() as u64);
                    report.deleted = to_delete.len() - failures.len();
                    self.counters.add_deleted(report.deleted as u64);
                }
                Err(e) => {
                    self.counters.add_source_errors(1);
                    tracing::warn!(error = %e, "delete failed; the messages will be redelivered and found stale");
                }
            }
        }
        match store_error {
            Some(e) => Err(IngestError::Store(e)),
            None => Ok(report),
        }
    }

    /// Runs the configured number of receivers until `shutdown` resolves;
    /// in-flight batches finish (their writes and deletes complete) first.
    pub async fn run(self, shutdown: impl std::future::Future<Output = ()> + Send) {
        let (stop_tx, stop_rx) = watch::channel(false);
        let mut handles = Vec::new();
        for n in 0..self.options.receivers.max(1) {
            let me = self.clone();
            let mut stop = stop_rx.clone();
            handles.push(tokio::spawn(async move {
                let mut backoff = me.options.backoff.clone();
                loop {
                    // Only the wait for messages is cancelled by shutdown; a
                    // received batch is always applied and deleted.
                    let received = tokio::select! {
                        biased;
                        _ = stop.wait_for(|s| *s) => break,
                        r = me.receive() => r,
                    };
                    match received {
                        Ok(messages) if messages.is_empty() => backoff.reset(),
                        Ok(messages) => match me.process(messages).await {
                            Ok(_) => backoff.reset(),
                            Err(e) => {
                                let delay = backoff.next_delay();
                                tracing::warn!(receiver = n, error = %e, retry_in = ?delay, "ingest batch failed");
                                tokio::time::sleep(delay).await;
                            }
                        },
                        Err(e) => {
                            let delay = backoff.next_delay();
                            tracing::warn!(receiver = n, error = %e, retry_in = ?delay, "receive failed");
                            tokio::time::sleep(delay).await;
                        }
                    }
                }
            }));
        }
        shutdown.await;
        stop_tx.send_replace(true);
        for h in handles {
            let _ = h.await;
        }
    }
}

#[cfg(test)]
mod tests;
