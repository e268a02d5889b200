//! [`Changes`]: what changed since a scheduler's previous decision.

use std::collections::HashSet;

use blox_core::model::Arn;

/// What changed since the previous decision (see
/// [`Scheduler::decide_changed`](super::Scheduler::decide_changed)).
#[derive(Debug)]
pub struct Changes<'a, D> {
    /// The previous decision's desired state and changed instances; `None`
    /// for a full decision.
    since: Option<(&'a D, &'a HashSet<Arn>)>,
}

impl<D> Clone for Changes<'_, D> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<D> Copy for Changes<'_, D> {}

impl<'a, D> Changes<'a, D> {
    /// Everything may have changed: decide on the whole snapshot.
    pub fn full() -> Self {
        Changes { since: None }
    }

    /// Since a decision made with desired state `previous`, only
    /// `instances` changed: their records, the tasks on them, their starts
    /// in flight or their backoff.
    pub fn since(previous: &'a D, instances: &'a HashSet<Arn>) -> Self {
        Changes {
            since: Some((previous, instances)),
        }
    }

    /// Whether the decision must cover the whole snapshot.
    pub fn is_full(&self) -> bool {
        self.since.is_none()
    }

    /// The desired state of the previous decision (`None` when full).
    pub fn previous_desired(&self) -> Option<&'a D> {
        self.since.map(|(d, _)| d)
    }

    /// The instances that changed (none when full: every instance may
    /// have), in no particular order: sort them where order matters, so a
    /// decision stays deterministic.
    pub fn instances(&self) -> impl Iterator<Item = &'a Arn> + use<'a, D> {
        self.since.into_iter().flat_map(|(_, i)| i.iter())
    }

    /// Whether an instance may have changed (always, when full).
    pub fn touches(&self, instance: &Arn) -> bool {
        self.since.is_none_or(|(_, i)| i.contains(instance))
    }
}
