//! Per-instance backoff: instances whose tasks keep stopping soon after they
//! start, or where ECS refuses placements, get no new start for 1 s, then
//! 2 s, 4 s... up to a cap, with ECS's reason kept for reports.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use blox_core::backoff::Backoff;
use blox_core::model::{Arn, Task, TaskStatus, Timestamp};

use crate::scheduler::{IndexedView, InstanceBackoff};

/// The stop code ECS gives tasks stopped through `StopTask`.
const USER_INITIATED: &str = "UserInitiated";

#[derive(Debug)]
struct Slot {
    backoff: Backoff,
    state: InstanceBackoff,
}

/// Tracks failures per instance (see the module docs).
#[derive(Debug)]
pub(crate) struct BackoffTracker {
    start: Duration,
    cap: Duration,
    crash_window: Duration,
    healthy_after: Duration,
    slots: HashMap<Arn, Slot>,
    /// Stopped tasks already accounted for.
    seen_stopped: HashSet<Arn>,
    /// Running tasks of ours and when the runner first saw them running.
    running_since: HashMap<Arn, Timestamp>,
    /// The `startedBy` tags this runner's scheduler uses.
    tags: HashSet<String>,
}

impl BackoffTracker {
    pub(crate) fn new(
        start: Duration,
        cap: Duration,
        crash_window: Duration,
        healthy_after: Duration,
    ) -> Self {
        BackoffTracker {
            start,
            cap,
            crash_window,
            healthy_after,
            slots: HashMap::new(),
            seen_stopped: HashSet::new(),
            running_since: HashMap::new(),
            tags: HashSet::new(),
        }
    }

    /// Whether `tag` is a known `startedBy` tag of this runner's scheduler.
    pub(crate) fn knows_tag(&self, tag: &str) -> bool {
        self.tags.contains(tag)
    }

    /// Learns a `startedBy` tag of this runner's scheduler.
    pub(crate) fn learn_tag(&mut self, tag: &str) {
        if !self.tags.contains(tag) {
            self.tags.insert(tag.to_owned());
        }
    }

    /// Records a failure on an instance; returns the new hold-off.
    pub(crate) fn record_failure(
        &mut self,
        instance: &Arn,
        reason: Option<String>,
        now: Timestamp,
    ) -> Duration {
        let (start, cap) = (self.start, self.cap);
        let slot = self.slots.entry(instance.clone()).or_insert_with(|| Slot {
            backoff: Backoff::new(start, cap).without_jitter(),
            state: InstanceBackoff {
                until: now,
                failures: 0,
                last_reason: None,
            },
        });
        let delay = slot.backoff.next_delay();
        slot.state.until = now.plus(delay);
        slot.state.failures = slot.state.failures.saturating_add(1);
        if reason.is_some() {
            slot.state.last_reason = reason;
        }
        tracing::info!(%instance, failures = slot.state.failures, hold_off = ?delay,
            reason = slot.state.last_reason.as_deref().unwrap_or("-"), "instance in backoff");
        delay
    }

    /// Whether starts on `instance` are held off at `now`.
    pub(crate) fn holds(&self, instance: &Arn, now: Timestamp) -> bool {
        self.slots
            .get(instance)
            .is_some_and(|s| s.state.until > now)
    }

    /// The failure records, for the snapshot (expired hold-offs included:
    /// their failure count and reason still tell the story).
    pub(crate) fn snapshot(&self) -> HashMap<Arn, InstanceBackoff> {
        self.slots
            .iter()
            .map(|(k, v)| (k.clone(), v.state.clone()))
            .collect()
    }

    /// How many instances are held off at `now`.
    pub(crate) fn held(&self, now: Timestamp) -> usize {
        self.slots.values().filter(|s| s.state.until > now).count()
    }

    /// The earliest end of a hold-off after `now`.
    pub(crate) fn next_expiry(&self, now: Timestamp) -> Option<Timestamp> {
        self.slots
            .values()
            .map(|s| s.state.until)
            .filter(|u| *u > now)
            .min()
    }

    /// Marks every stopped task as seen: history, not crashes.
    pub(crate) fn baseline<'a>(&mut self, tasks: impl Iterator<Item = &'a Arc<Task>>) {
        for t in tasks {
            if t.last_status == TaskStatus::Stopped {
                self.seen_stopped.insert(t.task_arn.clone());
            }
        }
    }

    /// Forgets the tasks the view no longer holds (after it was loaded
    /// whole, when the removals between were not seen one by one).
    pub(crate) fn forget_absent(&mut self, view: &IndexedView) {
        self.seen_stopped.retain(|a| view.task(a).is_some());
        self.running_since.retain(|a, _| view.task(a).is_some());
    }

    /// Every task of the view tagged with a `startedBy` of ours.
    pub(crate) fn tasks_of_ours(&self, view: &IndexedView) -> Vec<Arc<Task>> {
        let mut tags: Vec<&String> = self.tags.iter().collect();
        tags.sort();
        tags.into_iter()
            .flat_map(|tag| view.tasks_started_by(tag).cloned())
            .collect()
    }

    /// Takes in the tasks that changed (`changed`, as the view now holds
    /// them) or left the view (`removed`): a task of ours that stopped
    /// soon after starting, not by a user, puts its instance in backoff;
    /// an instance whose backoff ended is cleared once a task of ours has
    /// run there for `healthy_after`. O(changes + instances in backoff).
    pub(crate) fn observe(
        &mut self,
        view: &IndexedView,
        changed: &[Arc<Task>],
        removed: &[Arn],
        now: Timestamp,
    ) {
        for a in removed {
            self.seen_stopped.remove(a);
            self.running_since.remove(a);
        }
        for t in changed {
            let ours = t.started_by.as_ref().is_some_and(|s| self.tags.contains(s));
            if !ours {
                continue;
            }
            let Some(instance) = &t.container_instance_arn else {
                continue;
            };
            if t.last_status == TaskStatus::Running && t.is_live() {
                self.running_since.entry(t.task_arn.clone()).or_insert(now);
                continue;
            }
            self.running_since.remove(&t.task_arn);
            if t.last_status != TaskStatus::Stopped || !self.seen_stopped.insert(t.task_arn.clone())
            {
                continue;
            }
            let stopped_by_user = t.stop_code.as_deref() == Some(USER_INITIATED);
            let ran = match (t.started_at.or(t.created_at), t.stopped_at) {
                (Some(from), Some(to)) => to.since(from),
                _ => Duration::ZERO,
            };
            if !stopped_by_user && ran < self.crash_window {
                let reason = t.stopped_reason.clone().or_else(|| t.stop_code.clone());
                self.record_failure(instance, reason, now);
            }
        }
        let healthy: Vec<Arn> = self
            .slots
            .iter()
            .filter(|(instance, s)| {
                s.state.until <= now
                    && view.tasks_on(instance).any(|t| {
                        self.running_since
                            .get(&t.task_arn)
                            .is_some_and(|since| now.since(*since) >= self.healthy_after)
                    })
            })
            .map(|(instance, _)| instance.clone())
            .collect();
        for instance in healthy {
            self.slots.remove(&instance);
        }
        // An instance gone from the view needs no record once its backoff ended.
        self.slots
            .retain(|instance, s| s.state.until > now || view.instance(instance).is_some());
    }

    /// Forgets every record (a new term).
    pub(crate) fn clear(&mut self) {
        self.slots.clear();
        self.seen_stopped.clear();
        self.running_since.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn arn(s: &str) -> Arn {
        Arn::parse(s).unwrap()
    }

    fn instance() -> Arn {
        arn("arn:aws:ecs:us-east-1:000000000000:container-instance/c/i1")
    }

    fn stopped_task(id: &str, ran_ms: i64) -> Arc<Task> {
        let mut t = Task::new(
            arn(&format!("arn:aws:ecs:us-east-1:000000000000:task/c/{id}")),
            arn("arn:aws:ecs:us-east-1:000000000000:cluster/c"),
            "d:1",
        );
        t.container_instance_arn = Some(instance());
        t.started_by = Some("me".into());
        t.last_status = TaskStatus::Stopped;
        t.desired_status = TaskStatus::Stopped;
        t.started_at = Some(Timestamp::from_millis(1_000));
        t.stopped_at = Some(Timestamp::from_millis(1_000 + ran_ms));
        t.stopped_reason = Some("Essential container in task exited".into());
        Arc::new(t)
    }

    fn tracker() -> BackoffTracker {
        let mut t = BackoffTracker::new(
            Duration::from_secs(1),
            Duration::from_secs(300),
            Duration::from_secs(60),
            Duration::from_secs(60),
        );
        t.learn_tag("me");
        t
    }

    #[test]
    fn failures_double_the_hold_off_up_to_the_cap() {
        let mut t = tracker();
        let now = Timestamp::from_millis(0);
        let delays: Vec<u64> = (0..10)
            .map(|_| t.record_failure(&instance(), None, now).as_secs())
            .collect();
        assert_eq!(delays, [1, 2, 4, 8, 16, 32, 64, 128, 256, 300]);
    }

    #[test]
    fn a_task_that_stops_soon_after_starting_counts_once_with_its_reason() {
        let mut t = tracker();
        let now = Timestamp::from_millis(10_000);
        let tasks = vec![stopped_task("t1", 500)];
        let view = IndexedView::of(Vec::new(), tasks.clone());
        t.observe(&view, &tasks, &[], now);
        t.observe(&view, &tasks, &[], now);
        let snap = t.snapshot();
        let b = &snap[&instance()];
        assert_eq!(b.failures, 1);
        assert_eq!(b.until, now.plus(Duration::from_secs(1)));
        assert_eq!(
            b.last_reason.as_deref(),
            Some("Essential container in task exited")
        );
        assert!(t.holds(&instance(), now));
    }

    #[test]
    fn long_runs_user_stops_and_history_are_not_crashes() {
        let mut t = tracker();
        let now = Timestamp::from_millis(1_000_000);
        let long = stopped_task("long", 120_000);
        let mut user = (*stopped_task("user", 10)).clone();
        user.stop_code = Some("UserInitiated".into());
        let old = stopped_task("old", 10);
        t.baseline(std::iter::once(&old));
        let tasks = vec![long, Arc::new(user), old];
        let view = IndexedView::of(Vec::new(), tasks.clone());
        t.observe(&view, &tasks, &[], now);
        assert!(t.snapshot().is_empty());
    }

    fn running_task(id: &str) -> Arc<Task> {
        let mut t = (*stopped_task(id, 0)).clone();
        t.last_status = TaskStatus::Running;
        t.desired_status = TaskStatus::Running;
        t.stopped_at = None;
        Arc::new(t)
    }

    /// Records a task of ours on `instance()` that crashed at `at`, seen in
    /// a view without the instance.
    fn crash_at(t: &mut BackoffTracker, at: Timestamp) {
        let crashed = vec![stopped_task("t1", 500)];
        t.observe(
            &IndexedView::of(Vec::new(), crashed.clone()),
            &crashed,
            &[],
            at,
        );
    }

    #[test]
    fn an_instance_is_cleared_once_a_task_of_ours_has_run_there_long_enough() {
        let mut t = tracker();
        let start = Timestamp::from_millis(10_000);
        crash_at(&mut t, start);
        let running = vec![running_task("t2")];
        let host = blox_core::model::ContainerInstance::new(
            instance(),
            arn("arn:aws:ecs:us-east-1:000000000000:cluster/c"),
        );
        let view = IndexedView::of(vec![Arc::new(host)], running.clone());
        t.observe(&view, &running, &[], start.plus(Duration::from_secs(2)));
        // Seen running once; later cycles see no change of it.
        t.observe(&view, &[], &[], start.plus(Duration::from_secs(60)));
        assert_eq!(t.snapshot().len(), 1, "not healthy yet");
        t.observe(&view, &[], &[], start.plus(Duration::from_secs(200)));
        assert!(t.snapshot().is_empty(), "healthy: the record is cleared");
    }

    #[test]
    fn an_ended_backoff_of_an_instance_gone_from_the_view_is_dropped() {
        let mut t = tracker();
        let start = Timestamp::from_millis(10_000);
        crash_at(&mut t, start);
        let view = IndexedView::default();
        t.observe(&view, &[], &[], start);
        assert_eq!(t.snapshot().len(), 1, "held while its backoff runs");
        t.observe(&view, &[], &[], start.plus(Duration::from_secs(2)));
        assert!(t.snapshot().is_empty(), "ended, and the instance is gone");
    }
}
