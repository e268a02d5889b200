//! A custom scheduler written only against blox-sched's public API: keep
//! `copies` tasks of a task definition in a cluster, spread evenly across
//! availability zones (the `ecs.availability-zone` attribute).
//!
//! Run with `cargo run --example custom_scheduler`: it prints the decision
//! for a small snapshot built with the test kit. `cargo test` runs the unit
//! tests at the bottom of this file.

use std::collections::{BTreeMap, HashMap};

use blox_core::model::Arn;
use blox_sched::scheduler::{Action, Scheduler, Snapshot};

/// What the spread scheduler maintains.
#[derive(Debug, Clone)]
pub struct SpreadSpec {
    /// The cluster name.
    pub cluster: String,
    /// The task definition (`family:revision`).
    pub task_definition: String,
    /// How many copies to keep.
    pub copies: usize,
    /// The `startedBy` tag that marks this scheduler's tasks.
    pub started_by: String,
}

/// Keeps `copies` tasks spread across availability zones.
pub struct AzSpread;

/// One zone's instances and the copies on each.
#[derive(Default)]
struct Zone<'a> {
    /// (instance, copies on it), in snapshot order.
    instances: Vec<(&'a Arn, usize)>,
    /// Live tasks in this zone (for stopping).
    tasks: Vec<&'a Arn>,
}

impl Zone<'_> {
    fn copies(&self) -> usize {
        self.instances.iter().map(|(_, n)| n).sum()
    }
}

impl Scheduler for AzSpread {
    type Desired = SpreadSpec;

    fn name(&self) -> &str {
        "az-spread"
    }

    fn decide(&self, snap: &Snapshot<SpreadSpec>) -> Vec<Action> {
        let spec = &snap.desired;
        let mine = |s: Option<&str>| s == Some(spec.started_by.as_str());

        // Usable instances by zone (BTreeMap: deterministic zone order).
        let mut zones: BTreeMap<&str, Zone<'_>> = BTreeMap::new();
        let mut zone_of: HashMap<&Arn, (&str, usize)> = HashMap::new();
        let mut cluster = None;
        for i in snap.active_instances() {
            if i.cluster_arn.cluster_name() != Some(spec.cluster.as_str()) {
                continue;
            }
            let Some(az) = i.availability_zone() else {
                continue;
            };
            cluster = Some(i.cluster_arn.clone());
            let z = zones.entry(az).or_default();
            zone_of.insert(&i.container_instance_arn, (az, z.instances.len()));
            z.instances.push((&i.container_instance_arn, 0));
        }
        let Some(cluster) = cluster else {
            return Vec::new();
        };

        // Count our live tasks and starts in flight.
        let mut count = 0;
        for t in snap.live_tasks().filter(|t| mine(t.started_by.as_deref())) {
            count += 1;
            let placed = t
                .container_instance_arn
                .as_ref()
                .and_then(|i| zone_of.get(i));
            if let Some(&(az, k)) = placed
                && let Some(z) = zones.get_mut(az)
            {
                z.instances[k].1 += 1;
                z.tasks.push(&t.task_arn);
            }
        }
        for p in snap
            .pending_starts
            .iter()
            .filter(|p| mine(Some(&p.started_by)))
        {
            count += 1;
            if let Some(&(az, k)) = zone_of.get(&p.instance)
                && let Some(z) = zones.get_mut(az)
            {
                z.instances[k].1 += 1;
            }
        }

        let mut actions = Vec::new();
        // Too many: stop from the most loaded zone, one at a time.
        while count > spec.copies {
            let Some(z) = zones
                .values_mut()
                .filter(|z| !z.tasks.is_empty())
                .max_by_key(|z| z.copies())
            else {
                break;
            };
            let Some(task) = z.tasks.pop() else { break };
            if let Some(slot) = z.instances.iter_mut().find(|(_, n)| *n > 0) {
                slot.1 -= 1;
            }
            actions.push(Action::stop(
                cluster.clone(),
                task.clone(),
                "az-spread: too many copies",
            ));
            count -= 1;
        }
        // Too few: add each copy to the least loaded zone, on its least loaded
        // instance that is not backing off.
        let mut targets = Vec::new();
        while count < spec.copies {
            let pick = zones
                .values_mut()
                .filter(|z| z.instances.iter().any(|(i, _)| !snap.in_backoff(i)))
                .min_by_key(|z| z.copies());
            let Some(z) = pick else { break };
            let slot = z
                .instances
                .iter_mut()
                .filter(|(i, _)| !snap.in_backoff(i))
                .min_by_key(|(_, n)| *n);
            let Some(slot) = slot else { break };
            slot.1 += 1;
            targets.push(slot.0.clone());
            count += 1;
        }
        if !targets.is_empty() {
            actions.push(Action::start(
                cluster,
                spec.task_definition.clone(),
                targets,
                spec.started_by.clone(),
                "az-spread: missing copies",
            ));
        }
        actions
    }
}

fn main() {
    use blox_sched::testing::SnapshotBuilder;
    let spec = SpreadSpec {
        cluster: "prod".into(),
        task_definition: "web:3".into(),
        copies: 5,
        started_by: "az-spread".into(),
    };
    let snap = SnapshotBuilder::new()
        .cluster("prod")
        .instance("a1", |i| i.az("us-east-1a"))
        .instance("a2", |i| i.az("us-east-1a"))
        .instance("b1", |i| i.az("us-east-1b"))
        .instance("c1", |i| i.az("us-east-1c"))
        .task("t1", "a1", |t| {
            t.task_definition("web:3").started_by("az-spread")
        })
        .build(spec);
    for action in AzSpread.decide(&snap) {
        match action {
            Action::Start(s) => {
                let ids: Vec<&str> = s.instances.iter().map(|i| i.id()).collect();
                println!(
                    "start {} on {} ({})",
                    s.task_definition,
                    ids.join(", "),
                    s.reason
                );
            }
            Action::Stop(s) => println!("stop {} ({})", s.task.id(), s.reason),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use blox_sched::testing::{SnapshotBuilder, starts, stops};

    fn spec(copies: usize) -> SpreadSpec {
        SpreadSpec {
            cluster: "prod".into(),
            task_definition: "web:3".into(),
            copies,
            started_by: "az-spread".into(),
        }
    }

    fn three_zones() -> SnapshotBuilder {
        SnapshotBuilder::new()
            .cluster("prod")
            .instance("a1", |i| i.az("us-east-1a"))
            .instance("a2", |i| i.az("us-east-1a"))
            .instance("b1", |i| i.az("us-east-1b"))
            .instance("c1", |i| i.az("us-east-1c"))
    }

    fn per_zone(snap: &Snapshot<SpreadSpec>, started: &[Arn]) -> BTreeMap<String, usize> {
        let mut m = BTreeMap::new();
        for arn in started {
            let i = snap
                .instances
                .iter()
                .find(|i| &i.container_instance_arn == arn)
                .unwrap();
            *m.entry(i.availability_zone().unwrap().to_owned())
                .or_insert(0) += 1;
        }
        m
    }

    #[test]
    fn six_copies_spread_two_per_zone_and_over_instances_within_a_zone() {
        let snap = three_zones().build(spec(6));
        let started = starts(&AzSpread.decide(&snap));
        assert_eq!(started.len(), 6);
        let zones = per_zone(&snap, &started);
        assert_eq!(zones.values().copied().collect::<Vec<_>>(), vec![2, 2, 2]);
        let b = SnapshotBuilder::new().cluster("prod");
        assert_eq!(
            started
                .iter()
                .filter(|a| **a == b.instance_arn("a1"))
                .count(),
            1
        );
        assert_eq!(
            started
                .iter()
                .filter(|a| **a == b.instance_arn("a2"))
                .count(),
            1
        );
    }

    #[test]
    fn running_tasks_and_starts_in_flight_count_toward_the_copies() {
        let snap = three_zones()
            .task("t1", "a1", |t| t.started_by("az-spread"))
            .pending_start("b1", "web:3", "az-spread")
            .task("other", "c1", |t| t.started_by("someone-else"))
            .build(spec(3));
        let b = SnapshotBuilder::new().cluster("prod");
        assert_eq!(starts(&AzSpread.decide(&snap)), vec![b.instance_arn("c1")]);
    }

    #[test]
    fn extra_copies_are_stopped_from_the_most_loaded_zone() {
        let snap = three_zones()
            .task("a", "a1", |t| t.started_by("az-spread"))
            .task("b", "a2", |t| t.started_by("az-spread"))
            .task("c", "b1", |t| t.started_by("az-spread"))
            .build(spec(2));
        let actions = AzSpread.decide(&snap);
        let b = SnapshotBuilder::new().cluster("prod");
        assert_eq!(stops(&actions), vec![b.task_arn("b")]);
        assert!(starts(&actions).is_empty());
    }

    #[test]
    fn instances_in_backoff_draining_or_without_a_zone_are_skipped() {
        let snap = SnapshotBuilder::new()
            .cluster("prod")
            .instance("a1", |i| i.az("us-east-1a"))
            .instance("b1", |i| i.az("us-east-1b"))
            .instance("c1", |i| i.az("us-east-1c").draining())
            .instance("nozone", |i| i)
            .backoff("a1", "RESOURCE:MEMORY")
            .build(spec(2));
        let b = SnapshotBuilder::new().cluster("prod");
        assert_eq!(
            starts(&AzSpread.decide(&snap)),
            vec![b.instance_arn("b1"), b.instance_arn("b1")]
        );
    }
}
