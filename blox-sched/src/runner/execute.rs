//! Executing a cycle's plan against ECS: stops, then fenced starts.

use std::collections::HashMap;
use std::time::Duration;

use blox_core::backoff::Backoff;
use blox_core::model::{Arn, Timestamp};
use blox_core::ports::{
    EcsApiExt, EcsError, MAX_START_TASK_INSTANCES, StartTaskOutput, StartTaskRequest,
    TaskListFilter,
};
use blox_state::store::{KvTxn, KvTxnOutcome};

use super::cycle::Stop;
use super::intents::{IntentError, NewIntent};
use super::plan::Plan;
use super::{Runner, WaitingFor, bump};
use crate::election::LeaderTerm;
use crate::scheduler::{Scheduler, StartAction};

/// How a start's StartTask attempts ended.
enum Attempts {
    /// ECS answered (or failed in a way not retried).
    Done(Result<StartTaskOutput, EcsError>),
    /// The term ended before another attempt: every attempt so far was
    /// refused (throttled).
    Deposed,
    /// The bound passed, or the term could not be confirmed, before
    /// another attempt: every attempt so far was refused (throttled).
    GaveUp(String),
}

impl<S: Scheduler> Runner<S> {
    /// Whether the leadership signal still shows `term`.
    fn still_leading(&self, term: &LeaderTerm) -> bool {
        self.gates
            .leadership
            .borrow()
            .as_ref()
            .is_some_and(|t| t.revision == term.revision)
    }

    /// Checks in the store that `term` still holds the leader key.
    async fn verify_term(&self, term: &LeaderTerm) -> Result<(), Stop> {
        let outcome = self
            .store
            .kv_txn(KvTxn {
                checks: vec![term.check()],
                ops: Vec::new(),
            })
            .await
            .map_err(|e| Stop::Error(format!("checking the leader key: {e}")))?;
        match outcome {
            KvTxnOutcome::Applied(_) => Ok(()),
            KvTxnOutcome::Conflict => Err(Stop::Waiting(WaitingFor::Leadership)),
        }
    }

    /// Every task ARN ECS lists for `filter` (the adapter retries
    /// throttled pages; the runner adds no retry layer of its own).
    pub(crate) async fn list_all_tasks(
        &self,
        filter: &TaskListFilter,
    ) -> Result<Vec<Arn>, EcsError> {
        self.ecs.list_all_tasks(filter).await
    }

    /// How long after its intent was written a start may still be
    /// attempted: the term's lease TTL (after it, without a renewal, the
    /// leader key may be gone and a successor acting), and never more than
    /// half the intent timeout (after which a successor drops an intent
    /// whose task ECS does not list).
    pub(crate) fn start_bound(&self, term: &LeaderTerm) -> Duration {
        let cap = self.options.intent_timeout / 2;
        term.lease_ttl.map_or(cap, |ttl| ttl.min(cap))
    }

    /// Calls StartTask for a batch whose intents were written at `since`:
    /// the only retry layer of a start (the adapter never repeats one).
    /// Before each attempt the term is re-checked: locally, and in the
    /// store for every attempt after the first (which follows the fenced
    /// intent write at once); and
    /// no attempt is made once [`start_bound`](Self::start_bound) has
    /// passed since the intents were written. Only throttled attempts are
    /// retried.
    async fn start_attempts(
        &self,
        term: &LeaderTerm,
        request: &StartTaskRequest,
        since: Timestamp,
    ) -> Attempts {
        let deadline = since.plus(self.start_bound(term));
        let mut backoff = Backoff::new(self.options.throttle_backoff, Duration::from_secs(20));
        let mut attempt = 0u32;
        loop {
            let now = self.clock.now();
            if now >= deadline {
                return Attempts::GaveUp("the start's bound passed".to_owned());
            }
            if !self.still_leading(term) {
                return Attempts::Deposed;
            }
            if attempt > 0 {
                let left = Duration::from_millis(
                    u64::try_from(deadline.as_millis() - now.as_millis()).unwrap_or(0),
                );
                match tokio::time::timeout(left, self.verify_term(term)).await {
                    Ok(Ok(())) => {}
                    Ok(Err(Stop::Waiting(_))) => return Attempts::Deposed,
                    Ok(Err(Stop::Error(e))) => return Attempts::GaveUp(e),
                    Err(_) => {
                        return Attempts::GaveUp(
                            "the leader key could not be checked within the start's bound"
                                .to_owned(),
                        );
                    }
                }
                if self.clock.now() >= deadline {
                    return Attempts::GaveUp("the start's bound passed".to_owned());
                }
            }
            match self.ecs.start_task(request).await {
                Err(e) if e.is_throttling() && attempt < self.options.throttle_retries => {
                    attempt += 1;
                    bump(&self.counters.throttled, 1);
                    let wait = backoff.next_delay();
                    tracing::debug!(attempt, ?wait, "StartTask throttled; retrying");
                    tokio::time::sleep(wait).await;
                }
                other => return Attempts::Done(other),
            }
        }
    }

    /// Executes a plan: stops first (they free resources), then starts in
    /// batches of at most ten instances, each behind a fenced intent write.
    pub(crate) async fn execute(
        &mut self,
        term: &LeaderTerm,
        plan: Plan,
        before: &Before,
        now: Timestamp,
    ) -> Result<(), Stop> {
        let mut last_error = None;
        if !plan.stops.is_empty() {
            self.verify_term(term).await?;
        }
        let (unconfirmed, error) = self.unconfirmed_stops(&plan.stops).await;
        if error.is_some() {
            last_error = error;
        }
        if !unconfirmed.is_empty() {
            // Not issued this cycle: the next decision must see them again.
            self.term.unissued = true;
        }
        for stop in &plan.stops {
            if !self.still_leading(term) {
                return Ok(());
            }
            if unconfirmed.contains(&stop.task) {
                continue;
            }
            let result = self
                .ecs
                .stop_task(stop.cluster.as_str(), &stop.task, &stop.reason)
                .await;
            match result {
                Ok(_) => {
                    self.term.stopping.insert(stop.task.clone(), now);
                    bump(&self.counters.stopped, 1);
                    tracing::info!(scheduler = self.scheduler.name(), task = %stop.task, reason = %stop.reason, "stopped task");
                }
                Err(e) => {
                    bump(&self.counters.failed, 1);
                    tracing::warn!(scheduler = self.scheduler.name(), task = %stop.task, error = %e, "StopTask failed");
                    last_error = Some(e.to_string());
                }
            }
        }
        for start in &plan.starts {
            for batch in batches(&start.instances) {
                if !self.still_leading(term) {
                    return Ok(());
                }
                if let Some(e) = self.start_batch(term, start, &batch, before).await? {
                    last_error = Some(e);
                }
            }
        }
        last_error.map_or(Ok(()), |e| Err(Stop::Error(e)))
    }

    /// Writes the intents of one batch (one per instance), then calls
    /// StartTask; returns the error to report, if any.
    async fn start_batch(
        &mut self,
        term: &LeaderTerm,
        start: &StartAction,
        instances: &[Arn],
        before: &Before,
    ) -> Result<Option<String>, Stop> {
        let starts = instances
            .iter()
            .map(|i| NewIntent {
                cluster: start.cluster.clone(),
                instance: i.clone(),
                task_definition: start.task_definition.clone(),
                started_by: start.started_by.clone(),
                before: before
                    .get(&(i.clone(), start.started_by.clone()))
                    .cloned()
                    .unwrap_or_default(),
            })
            .collect();
        let since = self.clock.now();
        let (keys, _) = self
            .term
            .book
            .record(self.store.as_ref(), term, starts, since)
            .await?;
        // The batch names each instance once: its intent, by instance.
        let key_of: HashMap<&Arn, &String> = instances.iter().zip(&keys).collect();
        let request = StartTaskRequest {
            cluster: start.cluster.to_string(),
            task_definition: start.task_definition.clone(),
            container_instances: instances.to_vec(),
            started_by: Some(start.started_by.clone()),
            group: start.group.clone(),
            overrides: start.overrides.as_deref().cloned(),
            tags: start.tags.clone(),
        };
        let result = match self.start_attempts(term, &request, since).await {
            Attempts::Done(result) => result,
            Attempts::Deposed => {
                // Every attempt was refused; the successor resolves the
                // intents (ListTasks shows no task for them).
                tracing::warn!(
                    scheduler = self.scheduler.name(),
                    "deposed while StartTask was throttled; not retrying"
                );
                return Err(Stop::Waiting(WaitingFor::Leadership));
            }
            Attempts::GaveUp(why) => {
                tracing::warn!(scheduler = self.scheduler.name(), %why, "StartTask throttled until its bound; giving up");
                bump(&self.counters.failed, instances.len());
                self.term
                    .book
                    .remove(self.store.as_ref(), term, keys)
                    .await?;
                return Ok(Some(format!("StartTask throttled, not retried: {why}")));
            }
        };
        let now = self.clock.now();
        let name = self.scheduler.name().to_owned();
        match result {
            Ok(out) => {
                let mut started = HashMap::new();
                for task in &out.tasks {
                    let Some(instance) = &task.container_instance_arn else {
                        continue;
                    };
                    if let Some(key) = key_of.get(instance) {
                        started.insert((*key).clone(), task.task_arn.clone());
                    }
                    tracing::info!(scheduler = %name, task = %task.task_arn, %instance, reason = %start.reason, "started task");
                }
                bump(&self.counters.started, out.tasks.len());
                let mut failed = Vec::new();
                for f in &out.failures {
                    bump(&self.counters.failed, 1);
                    let instance = f.arn.as_deref().and_then(|a| Arn::parse(a).ok());
                    tracing::warn!(scheduler = %name, instance = f.arn.as_deref().unwrap_or("-"),
                        reason = %f.reason, detail = f.detail.as_deref().unwrap_or("-"), "placement failed");
                    if let Some((instance, key)) =
                        instance.and_then(|i| key_of.get(&i).map(|k| (i, (*k).clone())))
                    {
                        failed.push(key);
                        self.term
                            .tracker
                            .record_failure(&instance, Some(f.reason.clone()), now);
                    }
                }
                self.term
                    .book
                    .remove(self.store.as_ref(), term, failed)
                    .await?;
                let recorded = self
                    .term
                    .book
                    .attribute(self.store.as_ref(), term, started)
                    .await;
                match recorded {
                    Ok(()) => Ok(None),
                    Err(IntentError::Fenced) => Err(Stop::Waiting(WaitingFor::Leadership)),
                    // Known in memory for this term; a successor finds the
                    // tasks through ListTasks.
                    Err(IntentError::Store(e)) => {
                        tracing::warn!(scheduler = %name, error = %e, "could not record the started tasks in their intents");
                        Ok(Some(format!("recording started tasks: {e}")))
                    }
                }
            }
            Err(e @ EcsError::Transport { .. }) => {
                // The outcome is unknown: keep the intents until the view or
                // ListTasks settles it.
                bump(&self.counters.failed, instances.len());
                tracing::warn!(scheduler = %name, error = %e, "StartTask outcome unknown; intents kept");
                Ok(Some(e.to_string()))
            }
            Err(e) => {
                bump(&self.counters.failed, instances.len());
                tracing::warn!(scheduler = %name, error = %e, "StartTask failed");
                self.term
                    .book
                    .remove(self.store.as_ref(), term, keys)
                    .await?;
                if !e.is_throttling() {
                    for i in instances {
                        self.term
                            .tracker
                            .record_failure(i, Some(e.to_string()), now);
                    }
                }
                Ok(Some(e.to_string()))
            }
        }
    }
}

/// The tasks the view showed per instance and `startedBy` when a cycle's
/// intents were written.
pub(crate) type Before = HashMap<(Arn, String), Vec<Arn>>;

/// Splits a start's instances (one entry per copy) into StartTask batches
/// of at most ten distinct instances, first fit, in order.
fn batches(instances: &[Arn]) -> Vec<Vec<Arn>> {
    let mut out: Vec<Vec<Arn>> = Vec::new();
    for i in instances {
        match out
            .iter_mut()
            .find(|b| b.len() < MAX_START_TASK_INSTANCES && !b.contains(i))
        {
            Some(b) => b.push(i.clone()),
            None => out.push(vec![i.clone()]),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inst(n: usize) -> Arn {
        Arn::parse(&format!(
            "arn:aws:ecs:us-east-1:000000000000:container-instance/c/i{n}"
        ))
        .unwrap()
    }

    #[test]
    fn a_batch_names_each_instance_once_and_at_most_ten() {
        let mut copies: Vec<Arn> = (0..12).map(inst).collect();
        copies.extend([inst(0), inst(0), inst(1)]);
        let b = batches(&copies);
        assert_eq!(b.len(), 3);
        assert_eq!(b[0], (0..10).map(inst).collect::<Vec<_>>());
        assert_eq!(b[1], vec![inst(10), inst(11), inst(0), inst(1)]);
        assert_eq!(b[2], vec![inst(0)]);
    }
}
