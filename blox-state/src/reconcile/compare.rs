//! Deciding what a reconcile writes: whether ECS's state of an entity
//! differs from the stored one, and when retained entities expire.

use std::time::Duration;

use crate::store::retention::{instance_retired_since, task_retired_since};
use blox_core::model::{ContainerInstance, InstanceStatus, Task, Timestamp};

/// Whether ECS's description of an instance says something the store lacks.
///
/// With known versions on both sides the version decides (equal = same
/// state; an older ECS answer than the store is never a change). Without
/// versions (emulators) the content decides, ignoring `updated_at`, which
/// only events carry.
pub(crate) fn instance_changed(ecs: &ContainerInstance, stored: &ContainerInstance) -> bool {
    changed(
        ecs,
        stored,
        |i| i.version,
        |a, b| a.updated_at = b.updated_at,
    )
}

/// Whether ECS's description of a task says something the store lacks (see
/// [`instance_changed`]).
pub(crate) fn task_changed(ecs: &Task, stored: &Task) -> bool {
    changed(
        ecs,
        stored,
        |t| t.version,
        |a, b| a.updated_at = b.updated_at,
    )
}

/// The comparison [`instance_changed`] describes, for any entity given how
/// to read its ECS version and copy `updated_at` from one to another.
fn changed<T: Clone + PartialEq>(
    ecs: &T,
    stored: &T,
    version: impl Fn(&T) -> Option<u64>,
    copy_updated_at: impl Fn(&mut T, &T),
) -> bool {
    match (version(ecs), version(stored)) {
        (Some(a), Some(b)) => a > b,
        (None, Some(_)) => false,
        _ => {
            let mut a = ecs.clone();
            copy_updated_at(&mut a, stored);
            a != *stored
        }
    }
}

/// Whether a stopped task has been stopped for longer than `retention`.
pub(crate) fn task_expired(t: &Task, now: Timestamp, retention: Duration) -> bool {
    task_retired_since(t).is_some_and(|s| now.since(s) > retention)
}

/// Whether an INACTIVE instance has been inactive for longer than `retention`.
pub(crate) fn instance_expired(i: &ContainerInstance, now: Timestamp, retention: Duration) -> bool {
    instance_retired_since(i).is_some_and(|s| now.since(s) > retention)
}

/// The INACTIVE state blox records for an instance ECS no longer lists: one
/// version above the last known one (so it orders after it), stamped now so
/// its retention period can run.
pub(crate) fn inactive_copy(stored: &ContainerInstance, now: Timestamp) -> ContainerInstance {
    let mut i = stored.clone();
    i.status = InstanceStatus::Inactive;
    i.agent_connected = false;
    i.status_reason = Some("no longer listed by ECS".into());
    i.version = stored.version.map(|v| v + 1);
    i.updated_at = Some(now);
    i
}

#[cfg(test)]
mod tests {
    use super::*;
    use blox_core::model::{Arn, TaskStatus};

    fn task(version: Option<u64>) -> Task {
        let mut t = Task::new(
            Arn::parse("arn:aws:ecs:us-east-1:1:task/c/t").unwrap(),
            Arn::parse("arn:aws:ecs:us-east-1:1:cluster/c").unwrap(),
            "td:1",
        );
        t.version = version;
        t
    }

    #[test]
    fn known_versions_decide_and_an_older_ecs_answer_is_no_change() {
        assert!(!task_changed(&task(Some(3)), &task(Some(3))));
        assert!(task_changed(&task(Some(4)), &task(Some(3))));
        assert!(!task_changed(&task(Some(2)), &task(Some(3))));
        assert!(!task_changed(&task(None), &task(Some(3))));
    }

    #[test]
    fn without_versions_content_decides_ignoring_event_timestamps() {
        let a = task(None);
        let mut b = task(None);
        b.updated_at = Some(Timestamp::from_millis(5));
        assert!(!task_changed(&a, &b));
        b.last_status = TaskStatus::Running;
        assert!(task_changed(&a, &b));
    }

    #[test]
    fn stopped_tasks_expire_after_the_retention_period_only() {
        let mut t = task(Some(1));
        t.last_status = TaskStatus::Stopped;
        t.stopped_at = Some(Timestamp::from_millis(0));
        let hour = Duration::from_secs(3600);
        assert!(!task_expired(&t, Timestamp::from_millis(3_599_000), hour));
        assert!(task_expired(&t, Timestamp::from_millis(3_601_000), hour));
        t.last_status = TaskStatus::Running;
        assert!(!task_expired(&t, Timestamp::from_millis(9_999_999), hour));
    }
}
