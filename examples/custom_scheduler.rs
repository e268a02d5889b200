//! A custom scheduler written only against blox-sched's public API: a
//! *replica scheduler* that keeps `per_instance` copies of a task definition
//! on every instance of a cluster whose container-instance attribute
//! `name` has a given value (say `role=web`: three web tasks per web
//! instance). Several copies share an instance; every start carries a task
//! group and container overrides.
//!
//! It reads the snapshot only through indexed queries, so a decision costs
//! O(matching instances + their tasks), not O(every task in the view):
//! [`Snapshot::instances_with_attribute`] finds the instances,
//! [`Snapshot::live_tasks_on`] and [`Snapshot::pending_count`] count the
//! copies on each, [`Snapshot::tasks_started_by`] finds copies left on
//! instances that no longer match. Starts the runner has issued but the view
//! does not show yet count as copies, so it never over-starts while starts
//! are in flight.
//!
//! Run with `cargo run -p blox-examples --example custom_scheduler`: it
//! prints the decision for a small snapshot built with the test kit.
//! `cargo test -p blox-examples --example custom_scheduler` runs the unit
//! tests at the bottom of this file.

use std::collections::HashSet;

use blox_core::model::{
    Arn, ContainerInstance, ContainerOverride, InstanceStatus, KeyValuePair, TaskOverride,
};
use blox_sched::scheduler::{Action, Scheduler, Snapshot, StartAction};

/// What the replica scheduler maintains.
#[derive(Debug, Clone)]
pub struct ReplicaSpec {
    /// The cluster name.
    pub cluster: String,
    /// The task definition (`family:revision`).
    pub task_definition: String,
    /// The container-instance attribute that selects instances: (name, value).
    pub attribute: (String, String),
    /// How many copies to keep on each selected instance.
    pub per_instance: usize,
    /// The `startedBy` tag that marks this scheduler's tasks (at most 36 characters).
    pub started_by: String,
    /// The task group of the copies.
    pub group: String,
    /// The container that gets [`Self::environment`].
    pub container: String,
    /// Extra environment variables of [`Self::container`] (passed as overrides).
    pub environment: Vec<(String, String)>,
}

impl ReplicaSpec {
    /// The overrides every start carries.
    fn overrides(&self) -> TaskOverride {
        TaskOverride {
            container_overrides: vec![ContainerOverride {
                name: Some(self.container.clone()),
                environment: self
                    .environment
                    .iter()
                    .map(|(k, v)| KeyValuePair {
                        name: Some(k.clone()),
                        value: Some(v.clone()),
                    })
                    .collect(),
                ..ContainerOverride::default()
            }],
            ..TaskOverride::default()
        }
    }

    /// Whether an instance belongs to the spec's cluster.
    fn in_cluster(&self, i: &ContainerInstance) -> bool {
        i.cluster_arn.cluster_name() == Some(self.cluster.as_str())
    }
}

/// Keeps [`ReplicaSpec::per_instance`] copies on every selected instance.
pub struct Replicas;

impl Scheduler for Replicas {
    type Desired = ReplicaSpec;

    fn name(&self) -> &str {
        "replicas"
    }

    fn decide(&self, snap: &Snapshot<ReplicaSpec>) -> Vec<Action> {
        let spec = &snap.desired;
        let tag = spec.started_by.as_str();
        let (name, value) = (&spec.attribute.0, &spec.attribute.1);
        let mut actions = Vec::new();
        let mut cluster = None;
        let mut targets: Vec<Arn> = Vec::new();
        let mut selected: HashSet<&Arn> = HashSet::new();

        for i in snap.instances_with_attribute(name, value) {
            if !spec.in_cluster(i) || i.status != InstanceStatus::Active || !i.agent_connected {
                continue;
            }
            let arn = &i.container_instance_arn;
            selected.insert(arn);
            cluster = Some(&i.cluster_arn);
            let mine: Vec<_> = snap
                .live_tasks_on(arn)
                .filter(|t| t.started_by.as_deref() == Some(tag))
                .collect();
            // Starts in flight are copies too: never start more while the
            // view has not caught up with them.
            let have = mine.len() + snap.pending_count(arn, tag);
            if have < spec.per_instance && !snap.in_backoff(arn) {
                // One entry per copy: several copies on one instance.
                targets.extend(std::iter::repeat_n(arn.clone(), spec.per_instance - have));
            }
            // Too many running: stop the newest (last in the view's order).
            for t in mine.iter().skip(spec.per_instance) {
                actions.push(Action::stop(
                    t.cluster_arn.clone(),
                    t.task_arn.clone(),
                    "replicas: more copies than wanted on the instance",
                ));
            }
        }

        // Copies on instances no longer selected. The view may be stale, so a
        // stop decided from a DRAINING status asks ECS to confirm it first;
        // an instance the view cannot place (disconnected, gone) is left alone.
        for t in snap.tasks_started_by(tag).filter(|t| t.is_live()) {
            let Some(on) = &t.container_instance_arn else {
                continue;
            };
            if selected.contains(on) {
                continue;
            }
            let Some(i) = snap.instance(on) else { continue };
            let (cluster, task) = (t.cluster_arn.clone(), t.task_arn.clone());
            match i.status {
                InstanceStatus::Draining => actions.push(Action::stop_if(
                    cluster,
                    task,
                    "replicas: instance draining",
                    on.clone(),
                    InstanceStatus::Draining,
                )),
                InstanceStatus::Active if i.agent_connected && spec.in_cluster(i) => actions.push(
                    Action::stop(cluster, task, "replicas: instance no longer selected"),
                ),
                _ => {}
            }
        }

        if let Some(cluster) = cluster
            && !targets.is_empty()
        {
            let reason = format!("replicas: {} missing copies", targets.len());
            let start = StartAction::new(
                cluster.clone(),
                spec.task_definition.clone(),
                targets,
                tag,
                reason,
            )
            .with_group(spec.group.clone())
            .with_overrides(spec.overrides());
            actions.push(start.into());
        }
        actions
    }
}

/// The spec of the demo and the tests: three copies of `web:3` on every
/// instance with `role=web`.
fn web_spec() -> ReplicaSpec {
    ReplicaSpec {
        cluster: "prod".into(),
        task_definition: "web:3".into(),
        attribute: ("role".into(), "web".into()),
        per_instance: 3,
        started_by: "replicas-web".into(),
        group: "service:web".into(),
        container: "web".into(),
        environment: vec![("MODE".into(), "replica".into())],
    }
}

fn main() {
    use blox_sched::testing::SnapshotBuilder;
    let snap = SnapshotBuilder::new()
        .cluster("prod")
        .instance("w1", |i| i.attr("role", "web"))
        .instance("w2", |i| i.attr("role", "web"))
        .instance("db1", |i| i.attr("role", "db"))
        .task("t1", "w1", |t| {
            t.task_definition("web:3").started_by("replicas-web")
        })
        .pending_start("w1", "web:3", "replicas-web")
        .build(web_spec());
    for action in Replicas.decide(&snap) {
        match action {
            Action::Start(s) => {
                let ids: Vec<&str> = s.instances.iter().map(|i| i.id()).collect();
                println!(
                    "start {} on {} in group {} ({})",
                    s.task_definition,
                    ids.join(", "),
                    s.group.as_deref().unwrap_or("-"),
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
    use blox_core::model::TaskStatus;
    use blox_sched::testing::{SnapshotBuilder, starts, stops};

    const TAG: &str = "replicas-web";

    fn cluster() -> SnapshotBuilder {
        SnapshotBuilder::new()
            .cluster("prod")
            .instance("w1", |i| i.attr("role", "web"))
            .instance("w2", |i| i.attr("role", "web"))
            .instance("db1", |i| i.attr("role", "db"))
    }

    fn ids(arns: &[Arn]) -> Vec<&str> {
        arns.iter().map(|a| a.id()).collect()
    }

    fn the_start(actions: &[Action]) -> &StartAction {
        let mut s = actions.iter().filter_map(|a| match a {
            Action::Start(s) => Some(s),
            Action::Stop(_) => None,
        });
        let first = s.next().expect("a start");
        assert!(s.next().is_none(), "one start action");
        first
    }

    #[test]
    fn every_selected_instance_gets_its_copies_and_no_other_does() {
        let snap = cluster().build(web_spec());
        let actions = Replicas.decide(&snap);
        assert_eq!(
            ids(&starts(&actions)),
            vec!["w1", "w1", "w1", "w2", "w2", "w2"]
        );
        assert!(stops(&actions).is_empty());
    }

    #[test]
    fn starts_carry_the_group_the_overrides_and_the_tag() {
        let snap = cluster().build(web_spec());
        let actions = Replicas.decide(&snap);
        let s = the_start(&actions);
        assert_eq!(s.group.as_deref(), Some("service:web"));
        assert_eq!(s.started_by, TAG);
        assert_eq!(s.task_definition, "web:3");
        let o = s.overrides.as_deref().expect("overrides");
        let c = &o.container_overrides[0];
        assert_eq!(c.name.as_deref(), Some("web"));
        assert_eq!(c.environment[0].name.as_deref(), Some("MODE"));
        assert_eq!(c.environment[0].value.as_deref(), Some("replica"));
    }

    #[test]
    fn running_copies_and_starts_in_flight_count() {
        let snap = cluster()
            .task("a", "w1", |t| t.started_by(TAG))
            .pending_start("w1", "web:3", TAG)
            .pending_start("w2", "web:3", TAG)
            .pending_start("w2", "web:3", TAG)
            .pending_start("w2", "web:3", TAG)
            .build(web_spec());
        let actions = Replicas.decide(&snap);
        // w1: one running, one in flight: one more. w2: three in flight: none.
        assert_eq!(ids(&starts(&actions)), vec!["w1"]);
    }

    #[test]
    fn deciding_again_before_the_view_catches_up_starts_nothing_more() {
        let snap = cluster().build(web_spec());
        let first = starts(&Replicas.decide(&snap));
        // The runner records each start as pending; the view shows no task yet.
        let mut b = cluster();
        for arn in &first {
            b = b.pending_start(arn.id(), "web:3", TAG);
        }
        let again = Replicas.decide(&b.build(web_spec()));
        assert!(again.is_empty(), "{again:?}");
    }

    #[test]
    fn other_tags_and_tasks_that_are_not_live_do_not_count() {
        let snap = cluster()
            .task("other", "w1", |t| t.started_by("someone-else"))
            .task("gone", "w1", |t| {
                t.started_by(TAG).stopped("Essential container exited")
            })
            .task("going", "w1", |t| t.started_by(TAG).stopping())
            .task("ok", "w2", |t| t.started_by(TAG))
            .task("ok2", "w2", |t| t.started_by(TAG).pending())
            .build(web_spec());
        let actions = Replicas.decide(&snap);
        assert_eq!(ids(&starts(&actions)), vec!["w1", "w1", "w1", "w2"]);
        assert!(stops(&actions).is_empty());
    }

    #[test]
    fn copies_over_the_count_are_stopped_newest_first() {
        let snap = cluster()
            .task("a", "w1", |t| t.started_by(TAG))
            .task("b", "w1", |t| t.started_by(TAG))
            .task("c", "w1", |t| t.started_by(TAG))
            .task("d", "w1", |t| t.started_by(TAG))
            .task("e", "w1", |t| t.started_by(TAG))
            .build(ReplicaSpec {
                per_instance: 3,
                ..web_spec()
            });
        let actions = Replicas.decide(&snap);
        assert_eq!(ids(&stops(&actions)), vec!["d", "e"]);
        assert_eq!(ids(&starts(&actions)), vec!["w2", "w2", "w2"]);
    }

    #[test]
    fn copies_on_instances_no_longer_selected_are_stopped_draining_ones_only_if_ecs_agrees() {
        let snap = SnapshotBuilder::new()
            .cluster("prod")
            .instance("was-web", |i| i.attr("role", "db"))
            .instance("drained", |i| i.attr("role", "web").draining())
            .instance("lost", |i| i.attr("role", "web").disconnected())
            .task("x", "was-web", |t| t.started_by(TAG))
            .task("y", "drained", |t| t.started_by(TAG))
            .task("z", "lost", |t| t.started_by(TAG))
            .build(web_spec());
        let actions = Replicas.decide(&snap);
        assert!(starts(&actions).is_empty());
        assert_eq!(ids(&stops(&actions)), vec!["x", "y"]);
        let checked: Vec<_> = actions
            .iter()
            .filter_map(|a| match a {
                Action::Stop(s) => s.only_if.as_ref().map(|c| (s.task.id(), c.status.clone())),
                Action::Start(_) => None,
            })
            .collect();
        assert_eq!(checked, vec![("y", InstanceStatus::Draining)]);
    }

    #[test]
    fn instances_in_backoff_or_in_another_cluster_get_nothing() {
        let snap = cluster()
            .backoff("w1", "RESOURCE:MEMORY")
            .cluster("staging")
            .instance("s1", |i| i.attr("role", "web"))
            .build(web_spec());
        assert_eq!(
            ids(&starts(&Replicas.decide(&snap))),
            vec!["w2", "w2", "w2"]
        );
    }

    #[test]
    fn a_task_still_pending_in_ecs_counts_as_a_copy() {
        let snap = cluster()
            .task("p", "w1", |t| {
                t.started_by(TAG)
                    .status(TaskStatus::Provisioning, TaskStatus::Running)
            })
            .build(ReplicaSpec {
                per_instance: 1,
                ..web_spec()
            });
        assert_eq!(ids(&starts(&Replicas.decide(&snap))), vec!["w2"]);
    }
}
