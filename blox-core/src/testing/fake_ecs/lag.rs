//! Eventually consistent listings, as ECS has them: `ListTasks` and
//! `ListContainerInstances` show a change only some time after it happened
//! (a started task is missing at first, a stopped one still listed as
//! running; a new instance is missing, a deregistered one still listed).
//! `Describe*` calls see every change at once.
//!
//! With [`FakeEcsConfig::listing_lag`](super::FakeEcsConfig::listing_lag)
//! zero (the default) nothing lags. Otherwise each change draws its own lag,
//! uniformly up to that bound, from the fake's seeded generator.

use std::collections::{BTreeSet, HashMap};

use crate::model::{Arn, TaskStatus, Timestamp};

/// What listings show of an entity until a time.
#[derive(Debug, Clone)]
pub(crate) struct Shown<T> {
    /// What listings show (`None`: not listed).
    pub(crate) shown: Option<T>,
    /// From when listings show the entity as it is.
    pub(crate) until: Timestamp,
}

/// Records that listings show `arn` as `shown` until `until`; an earlier,
/// unexpired record keeps what it shows (that is what listings still show)
/// and only lasts longer.
fn lag_until<T>(map: &mut HashMap<Arn, Shown<T>>, arn: &Arn, shown: Option<T>, until: Timestamp) {
    let entry = map.entry(arn.clone()).or_insert(Shown { shown, until });
    entry.until = entry.until.max(until);
}

/// The lagging listings of one fake.
#[derive(Debug, Default)]
pub(crate) struct ListingLag {
    /// Tasks whose listed desired status lags.
    pub(crate) tasks: HashMap<Arn, Shown<TaskStatus>>,
    /// Instances whose listed membership lags (`Some(())`: still listed).
    pub(crate) instances: HashMap<Arn, Shown<()>>,
}

impl ListingLag {
    /// Records that listings show `task` as `before` until `until` (an
    /// earlier, unexpired record wins: it is what listings still show).
    pub(crate) fn task_changed(
        &mut self,
        task: &Arn,
        before: Option<TaskStatus>,
        until: Timestamp,
    ) {
        lag_until(&mut self.tasks, task, before, until);
    }

    /// Records that listings show `instance` as listed (`true`) or not
    /// until `until`.
    pub(crate) fn instance_changed(&mut self, instance: &Arn, listed: bool, until: Timestamp) {
        lag_until(&mut self.instances, instance, listed.then_some(()), until);
    }

    /// Forgets what has caught up by `now`.
    pub(crate) fn expire(&mut self, now: Timestamp) {
        self.tasks.retain(|_, s| s.until > now);
        self.instances.retain(|_, s| s.until > now);
    }

    /// The desired status listings show for `task`, whose current one is
    /// `current` (`None`: not listed).
    pub(crate) fn task_shown(&self, task: &Arn, current: &TaskStatus) -> Option<TaskStatus> {
        match self.tasks.get(task) {
            Some(s) => s.shown.clone(),
            None => Some(current.clone()),
        }
    }

    /// The instances listings show, given the ones listed now.
    pub(crate) fn instances_shown(
        &self,
        listed: &BTreeSet<Arn>,
        in_cluster: impl Fn(&Arn) -> bool,
    ) -> BTreeSet<Arn> {
        let mut out = listed.clone();
        for (arn, s) in &self.instances {
            if !in_cluster(arn) {
                continue;
            }
            match s.shown {
                Some(()) => out.insert(arn.clone()),
                None => out.remove(arn),
            };
        }
        out
    }
}
