//! Turns a scheduler's actions into what the runner will do this cycle:
//! drops starts on instances in backoff, stops already issued or repeated,
//! and actions outside the runner's clusters, and caps the total. Starts are
//! not deduplicated: each is one copy with its own intent (a scheduler
//! counts [`pending starts`](crate::scheduler::Snapshot::pending_starts)
//! itself, and may want several copies on one instance).

use std::collections::HashSet;

use blox_core::model::Arn;

use crate::scheduler::{Action, StartAction, StopAction};

/// The actions of one cycle, after filtering.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Plan {
    /// Stops, in the scheduler's order.
    pub(crate) stops: Vec<StopAction>,
    /// Starts, in the scheduler's order (an instance may appear more than
    /// once: one entry per copy).
    pub(crate) starts: Vec<StartAction>,
    /// Instance starts and stops dropped by a filter.
    pub(crate) held: usize,
    /// Instance starts and stops dropped by the cap.
    pub(crate) capped: usize,
}

impl Plan {
    /// Instance starts plus stops.
    pub(crate) fn len(&self) -> usize {
        self.stops.len() + self.starts.iter().map(|s| s.instances.len()).sum::<usize>()
    }

    /// The plan as actions again (for dry-run records).
    pub(crate) fn actions(&self) -> Vec<Action> {
        self.stops
            .iter()
            .cloned()
            .map(Action::Stop)
            .chain(self.starts.iter().cloned().map(Action::Start))
            .collect()
    }
}

/// What the filters consult.
pub(crate) trait Holds {
    /// Whether the cluster is one this runner manages.
    fn manages(&self, cluster: &Arn) -> bool;
    /// Whether the instance is in backoff.
    fn backing_off(&self, instance: &Arn) -> bool;
    /// Whether a stop of the task was already issued and the view still shows it live.
    fn stopping(&self, task: &Arn) -> bool;
}

/// Filters and caps `actions` (an instance start or a stop counts as one
/// action against `cap`).
pub(crate) fn plan(actions: Vec<Action>, holds: &impl Holds, cap: usize) -> Plan {
    let mut out = Plan::default();
    let mut budget = cap;
    let mut stopping: HashSet<Arn> = HashSet::new();
    for action in actions {
        match action {
            Action::Stop(stop) => {
                if !holds.manages(&stop.cluster)
                    || holds.stopping(&stop.task)
                    || !stopping.insert(stop.task.clone())
                {
                    out.held += 1;
                } else if budget == 0 {
                    out.capped += 1;
                } else {
                    budget -= 1;
                    out.stops.push(stop);
                }
            }
            Action::Start(mut start) => {
                let manages = holds.manages(&start.cluster);
                let before = start.instances.len();
                start.instances.retain(|i| manages && !holds.backing_off(i));
                out.held += before - start.instances.len();
                if start.instances.len() > budget {
                    out.capped += start.instances.len() - budget;
                    start.instances.truncate(budget);
                }
                budget -= start.instances.len();
                if !start.instances.is_empty() {
                    out.starts.push(start);
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fixture {
        backoff: Vec<Arn>,
    }

    impl Holds for Fixture {
        fn manages(&self, cluster: &Arn) -> bool {
            cluster.cluster_name() == Some("mine")
        }
        fn backing_off(&self, instance: &Arn) -> bool {
            self.backoff.contains(instance)
        }
        fn stopping(&self, task: &Arn) -> bool {
            task.id() == "t0"
        }
    }

    fn cluster(name: &str) -> Arn {
        Arn::parse(&format!(
            "arn:aws:ecs:us-east-1:000000000000:cluster/{name}"
        ))
        .unwrap()
    }

    fn inst(n: usize) -> Arn {
        Arn::parse(&format!(
            "arn:aws:ecs:us-east-1:000000000000:container-instance/mine/i{n}"
        ))
        .unwrap()
    }

    fn none() -> Fixture {
        Fixture { backoff: vec![] }
    }

    #[test]
    fn starts_held_by_a_backoff_are_dropped_and_copies_kept() {
        let f = Fixture {
            backoff: vec![inst(2)],
        };
        let a = Action::start(
            cluster("mine"),
            "d:1",
            vec![inst(1), inst(2), inst(3), inst(1)],
            "me",
            "r",
        );
        let p = plan(vec![a], &f, 100);
        assert_eq!(p.starts[0].instances, vec![inst(1), inst(3), inst(1)]);
        assert_eq!(p.held, 1);
    }

    #[test]
    fn the_cap_counts_instance_starts_and_stops() {
        let stops = (0..3).map(|n| {
            Action::stop(
                cluster("mine"),
                Arn::parse(&format!(
                    "arn:aws:ecs:us-east-1:000000000000:task/mine/t{n}"
                ))
                .unwrap(),
                "r",
            )
        });
        let start = Action::start(
            cluster("mine"),
            "d:1",
            (0..10).map(inst).collect(),
            "me",
            "r",
        );
        let p = plan(stops.chain([start]).collect(), &none(), 5);
        assert_eq!(p.len(), 5);
        assert_eq!(p.stops.len(), 2, "t0 is already stopping");
        assert_eq!(p.starts[0].instances.len(), 3);
        assert_eq!(p.capped, 7);
        assert_eq!(p.held, 1);
    }

    #[test]
    fn actions_outside_the_runners_clusters_and_repeated_stops_are_dropped() {
        let a = Action::start(cluster("other"), "d:1", vec![inst(1)], "me", "r");
        let b = Action::start(cluster("mine"), "d:1", vec![inst(1)], "me", "r");
        let task = Arn::parse("arn:aws:ecs:us-east-1:000000000000:task/mine/t1").unwrap();
        let c = Action::stop(cluster("mine"), task.clone(), "r");
        let d = Action::stop(cluster("mine"), task, "r");
        let p = plan(vec![a, b, c, d], &none(), 100);
        assert_eq!(p.len(), 2);
        assert_eq!(p.starts[0].task_definition, "d:1");
        assert_eq!(p.held, 2);
    }
}
