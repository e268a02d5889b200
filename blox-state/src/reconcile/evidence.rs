//! When an entity ECS stopped listing is gone.
//!
//! ECS's `List*` calls are eventually consistent: a task started a moment
//! ago may be missing from them for a while, and an instance just
//! registered too. So missing from one listing proves nothing. An entity
//! the store has and a complete listing lacks is gone only on evidence:
//!
//! * **positive**: `Describe*` answers it `MISSING` (or describes it, which
//!   is no absence at all: its described state is applied instead);
//! * **listing evidence**: `Describe*` said neither (an ECS that cannot
//!   report failures), and it was also missing from a complete listing more
//!   than the listing lag after the first one that missed it
//!   ([`Unlisted::confirm`]). Such a deletion is *soft*: its tombstone never
//!   blocks ECS's own later report of that version.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use blox_core::model::{Arn, Timestamp};

/// What the reconciler knows of an entity a complete listing lacked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Absence {
    /// ECS said `MISSING`: gone.
    Missing,
    /// Missing from two complete listings further apart than the listing
    /// lag: gone, on listing evidence alone.
    Unlisted,
    /// Not yet known to be gone: keep it.
    Unconfirmed,
}

/// The first complete listing that missed each entity, per cluster, for
/// entities whose absence ECS has not confirmed.
#[derive(Debug, Default)]
pub(crate) struct Unlisted {
    since: HashMap<Arn, (Arn, Timestamp)>,
}

impl Unlisted {
    /// Records a complete listing of `cluster` at `now` that lacked
    /// `unknown` (entities neither described nor reported missing); returns
    /// those also lacking from a listing more than `lag` earlier. Forgets
    /// every other entity of the cluster (listed again, described, or no
    /// longer stored).
    pub(crate) fn confirm(
        &mut self,
        cluster: &Arn,
        unknown: &HashSet<Arn>,
        now: Timestamp,
        lag: Duration,
    ) -> HashSet<Arn> {
        self.since
            .retain(|arn, (c, _)| c != cluster || unknown.contains(arn));
        let mut confirmed = HashSet::new();
        for arn in unknown {
            let (_, first) = self
                .since
                .entry(arn.clone())
                .or_insert_with(|| (cluster.clone(), now));
            if now.since(*first) > lag {
                confirmed.insert(arn.clone());
            }
        }
        for arn in &confirmed {
            self.since.remove(arn);
        }
        confirmed
    }

    /// Forgets everything (leadership lost: another reconciler may act meanwhile).
    pub(crate) fn clear(&mut self) {
        self.since.clear();
    }
}

/// Classifies the entities of `vanished` (stored, not in a complete
/// listing, not described) by the evidence: `missing` are those ECS
/// reported `MISSING`; the others go through `unlisted`.
pub(crate) fn classify(
    vanished: &[Arn],
    missing: &HashSet<Arn>,
    unlisted: &mut Unlisted,
    cluster: &Arn,
    now: Timestamp,
    lag: Duration,
) -> HashMap<Arn, Absence> {
    let unknown: HashSet<Arn> = vanished
        .iter()
        .filter(|a| !missing.contains(*a))
        .cloned()
        .collect();
    let confirmed = unlisted.confirm(cluster, &unknown, now, lag);
    vanished
        .iter()
        .map(|a| {
            let absence = if missing.contains(a) {
                Absence::Missing
            } else if confirmed.contains(a) {
                Absence::Unlisted
            } else {
                Absence::Unconfirmed
            };
            (a.clone(), absence)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn arn(s: &str) -> Arn {
        Arn::parse(&format!("arn:aws:ecs:us-east-1:1:task/c/{s}")).unwrap()
    }

    fn at(secs: i64) -> Timestamp {
        Timestamp::from_millis(secs * 1000)
    }

    #[test]
    fn only_two_listings_further_apart_than_the_lag_confirm_an_absence() {
        let cluster = Arn::parse("arn:aws:ecs:us-east-1:1:cluster/c").unwrap();
        let other = Arn::parse("arn:aws:ecs:us-east-1:2:cluster/c").unwrap();
        let lag = Duration::from_secs(60);
        let mut u = Unlisted::default();
        let a = HashSet::from([arn("a")]);
        assert!(u.confirm(&cluster, &a, at(0), lag).is_empty());
        assert!(u.confirm(&other, &HashSet::new(), at(30), lag).is_empty());
        assert!(
            u.confirm(&cluster, &a, at(60), lag).is_empty(),
            "not further apart"
        );
        assert_eq!(u.confirm(&cluster, &a, at(61), lag), a);
        // Confirmed once: a new absence starts over.
        assert!(u.confirm(&cluster, &a, at(62), lag).is_empty());
        // Listed again in between: starts over too.
        assert!(
            u.confirm(&cluster, &HashSet::new(), at(100), lag)
                .is_empty()
        );
        assert!(u.confirm(&cluster, &a, at(200), lag).is_empty());
    }

    #[test]
    fn missing_is_positive_evidence_at_once() {
        let cluster = Arn::parse("arn:aws:ecs:us-east-1:1:cluster/c").unwrap();
        let mut u = Unlisted::default();
        let vanished = [arn("gone"), arn("lagging")];
        let missing = HashSet::from([arn("gone")]);
        let got = classify(&vanished, &missing, &mut u, &cluster, at(0), Duration::ZERO);
        assert_eq!(got[&arn("gone")], Absence::Missing);
        assert_eq!(got[&arn("lagging")], Absence::Unconfirmed);
        let got = classify(
            &vanished[1..],
            &missing,
            &mut u,
            &cluster,
            at(1),
            Duration::ZERO,
        );
        assert_eq!(got[&arn("lagging")], Absence::Unlisted);
    }
}
