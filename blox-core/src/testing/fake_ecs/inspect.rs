//! Failure injection, call accounting and inspection of the fake.

use super::failures;
use super::{FakeAction, FakeEcs, FakeError, InjectedError};
use crate::model::{Arn, ContainerInstance, Task};

impl FakeEcs {
    // ----- failure injection and accounting -----

    /// Fails the next `n` calls of `operation` (e.g. `"ListTasks"`, see
    /// [`operations`](super::operations)) with `error`; `n = 0` cancels.
    pub fn fail_next(
        &self,
        operation: &str,
        n: u32,
        error: InjectedError,
    ) -> Result<(), FakeError> {
        let op = failures::known_operation(operation)
            .ok_or_else(|| FakeError::UnknownOperation(operation.to_owned()))?;
        self.lock().failures.fail_next(op, n, error);
        Ok(())
    }

    /// Fails every call of `operation` with `error` until [`clear_failures`](Self::clear_failures).
    pub fn fail_always(&self, operation: &str, error: InjectedError) -> Result<(), FakeError> {
        let op = failures::known_operation(operation)
            .ok_or_else(|| FakeError::UnknownOperation(operation.to_owned()))?;
        self.lock().failures.fail_always(op, error);
        Ok(())
    }

    /// Fails every `n`-th call (of every operation, ECS and queue, counted
    /// together from now) with `error` until
    /// [`clear_failures`](Self::clear_failures): a deterministic fraction
    /// `1/n` of failing calls; `n = 0` cancels.
    pub fn fail_every(&self, n: u64, error: InjectedError) {
        self.lock().failures.fail_every(n, error);
    }

    /// Fails every call of every operation (ECS and queue) with `error`
    /// until [`clear_failures`](Self::clear_failures): an outage.
    pub fn outage(&self, error: InjectedError) {
        self.lock().failures.outage(Some(error));
    }

    /// Ends every injected failure.
    pub fn clear_failures(&self) {
        self.lock().failures.clear();
    }

    /// How many calls of `operation` were made (failed ones included).
    pub fn calls(&self, operation: &str) -> u64 {
        self.lock().failures.calls(operation)
    }

    /// How many calls were made in all.
    pub fn total_calls(&self) -> u64 {
        self.lock().failures.total_calls()
    }

    /// Zeroes the call counters.
    pub fn reset_calls(&self) {
        self.lock().failures.reset_calls();
    }

    /// The start, stop and state-update calls made through the API, in order.
    pub fn actions(&self) -> Vec<FakeAction> {
        self.lock().actions.clone()
    }

    /// Forgets the recorded actions.
    pub fn clear_actions(&self) {
        self.lock().actions.clear();
    }

    // ----- inspection -----

    /// The ARN of the cluster called `name`.
    pub fn cluster_arn(&self, name: &str) -> Option<Arn> {
        self.lock().cluster(name).ok().map(|c| c.arn.clone())
    }

    /// An instance's current state (INACTIVE ones until expired).
    pub fn instance(&self, arn: &Arn) -> Option<ContainerInstance> {
        self.lock().instances.get(arn).cloned()
    }

    /// A task's current state (STOPPED ones until expired).
    pub fn task(&self, arn: &Arn) -> Option<Task> {
        self.lock().tasks.get(arn).cloned()
    }

    /// The listed (not INACTIVE) instances of a cluster, in ARN order.
    pub fn instance_arns(&self, cluster: &str) -> Result<Vec<Arn>, FakeError> {
        Ok(self
            .lock()
            .cluster(cluster)?
            .instances
            .iter()
            .cloned()
            .collect())
    }

    /// Every task (any status) placed on an instance.
    pub fn tasks_on(&self, instance: &Arn) -> Vec<Task> {
        let st = self.lock();
        let Some(i) = st.instances.get(instance) else {
            return Vec::new();
        };
        st.clusters
            .get(i.cluster_arn.id())
            .and_then(|c| c.tasks_by_instance.get(instance))
            .map(|set| {
                set.iter()
                    .filter_map(|t| st.tasks.get(t).cloned())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// How many tasks the fake holds (STOPPED ones included until expired).
    pub fn task_count(&self) -> usize {
        self.lock().tasks.len()
    }

    /// How many events are queued and not yet deleted.
    pub fn queued_events(&self) -> usize {
        self.lock().queue.len()
    }

    /// Removes every queued event and returns the bodies, oldest first
    /// (a shortcut past receive/delete for tests).
    pub fn take_events(&self) -> Vec<String> {
        self.lock().queue.take_all()
    }

    /// Removes and returns the events emitted since the last call, oldest
    /// first (with [`FakeEcsConfig::event_outbox`](super::FakeEcsConfig::event_outbox);
    /// empty otherwise).
    pub fn take_outbox(&self) -> Vec<String> {
        std::mem::take(&mut self.lock().outbox)
    }

    /// Puts a message on the event queue, as a producer (or a dead-letter
    /// queue redrive) would; any body, malformed ones included.
    pub fn enqueue_event(&self, body: String) {
        self.lock().queue.push(body);
        self.shared.notify.notify_waiters();
    }

    /// How many events were emitted since creation.
    pub fn events_emitted(&self) -> u64 {
        self.lock().events_emitted
    }
}
