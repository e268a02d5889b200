//! The fake's state: entities, the indexes that keep listing cheap at tens
//! of thousands of tasks, ids, the clock, and the one place where a change
//! bumps an entity's version and queues its event.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::config::FakeEcsConfig;
use super::events::{self, Origin};
use super::failures::Failures;
use super::lag::ListingLag;
use super::queue::EventQueue;
use super::{FakeAction, FakeError};
use crate::model::{Arn, ArnError, ContainerInstance, ResourceKind, Task, TaskStatus, Timestamp};

/// One cluster and its indexes.
#[derive(Debug)]
pub(crate) struct ClusterEntry {
    /// The cluster's ARN.
    pub(crate) arn: Arn,
    /// Its name.
    pub(crate) name: String,
    /// Listed container instances (every status but INACTIVE).
    pub(crate) instances: BTreeSet<Arn>,
    /// Tasks by desired status.
    pub(crate) tasks_by_desired: HashMap<TaskStatus, BTreeSet<Arn>>,
    /// Tasks (of any status) by container instance.
    pub(crate) tasks_by_instance: HashMap<Arn, BTreeSet<Arn>>,
}

/// Everything behind the fake's lock.
#[derive(Debug)]
pub(crate) struct State {
    pub(crate) cfg: FakeEcsConfig,
    rng: StdRng,
    clock_ms: i64,
    /// Clusters by name.
    pub(crate) clusters: BTreeMap<String, ClusterEntry>,
    /// Container instances, INACTIVE ones included until expired.
    pub(crate) instances: HashMap<Arn, ContainerInstance>,
    /// Tasks, STOPPED ones included until expired.
    pub(crate) tasks: HashMap<Arn, Task>,
    /// CPU and memory each live task holds on its instance.
    pub(crate) reservations: HashMap<Arn, (i64, i64)>,
    /// Tasks waiting for [`State::advance`] to move them on.
    pub(crate) in_flight: BTreeSet<Arn>,
    /// Task definitions by `family:revision`.
    pub(crate) task_definitions: HashMap<String, crate::model::TaskDefinition>,
    /// The latest revision of each family.
    pub(crate) latest_revision: HashMap<String, i64>,
    pub(crate) queue: EventQueue,
    pub(crate) failures: Failures,
    pub(crate) actions: Vec<FakeAction>,
    pub(crate) events_emitted: u64,
    /// What listings still show of recent changes.
    pub(crate) lag: ListingLag,
    /// Emitted events not yet delivered (with [`FakeEcsConfig::event_outbox`]).
    pub(crate) outbox: Vec<String>,
}

impl State {
    pub(crate) fn new(cfg: FakeEcsConfig) -> Self {
        let rng = match cfg.seed {
            Some(seed) => StdRng::seed_from_u64(seed),
            None => StdRng::from_os_rng(),
        };
        State {
            queue: EventQueue::new(cfg.visibility_timeout),
            cfg,
            rng,
            clock_ms: 0,
            lag: ListingLag::default(),
            outbox: Vec::new(),
            clusters: BTreeMap::new(),
            instances: HashMap::new(),
            tasks: HashMap::new(),
            reservations: HashMap::new(),
            in_flight: BTreeSet::new(),
            task_definitions: HashMap::new(),
            latest_revision: HashMap::new(),
            failures: Failures::default(),
            actions: Vec::new(),
            events_emitted: 0,
        }
    }

    /// The current time: the configured clock, the logical clock (one
    /// millisecond per reading) or the wall clock.
    pub(crate) fn now(&mut self) -> Timestamp {
        if self.cfg.clock.is_none() && self.cfg.start_time.is_some() {
            self.clock_ms += 1;
        }
        self.peek_now()
    }

    /// `n` random lowercase hex digits.
    pub(crate) fn hex(&mut self, n: usize) -> String {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        (0..n)
            .map(|_| char::from(DIGITS[self.rng.random_range(0..16)]))
            .collect()
    }

    /// A random UUID-shaped id.
    pub(crate) fn uuid(&mut self) -> String {
        format!(
            "{}-{}-4{}-{}-{}",
            self.hex(8),
            self.hex(4),
            self.hex(3),
            self.hex(4),
            self.hex(12)
        )
    }

    /// A random index below `n` (`n > 0`).
    pub(crate) fn pick(&mut self, n: usize) -> usize {
        self.rng.random_range(0..n)
    }

    /// The ARN of a resource of this fake's partition, region and account.
    pub(crate) fn arn(&self, kind: ResourceKind, path: &str) -> Result<Arn, ArnError> {
        Arn::build(
            &self.cfg.partition,
            &self.cfg.region,
            &self.cfg.account,
            kind,
            path,
        )
    }

    /// The ARN of a new task or container instance in `cluster`, in the
    /// configured format.
    pub(crate) fn member_arn(
        &self,
        kind: ResourceKind,
        cluster: &str,
        id: &str,
    ) -> Result<Arn, ArnError> {
        if self.cfg.long_arns {
            self.arn(kind, &format!("{cluster}/{id}"))
        } else {
            self.arn(kind, id)
        }
    }

    /// The cluster named by `name_or_arn` (an empty name means `default`).
    pub(crate) fn cluster_name(&self, name_or_arn: &str) -> Option<String> {
        let name = if name_or_arn.starts_with("arn:") {
            let arn = Arn::parse(name_or_arn).ok()?;
            if arn.kind() != ResourceKind::Cluster {
                return None;
            }
            let entry = self.clusters.get(arn.id())?;
            if entry.arn != arn {
                return None;
            }
            arn.id().to_owned()
        } else if name_or_arn.is_empty() {
            "default".to_owned()
        } else {
            name_or_arn.to_owned()
        };
        self.clusters.contains_key(&name).then_some(name)
    }

    /// The cluster entry named by `name_or_arn`.
    pub(crate) fn cluster(&self, name_or_arn: &str) -> Result<&ClusterEntry, FakeError> {
        self.cluster_name(name_or_arn)
            .and_then(|n| self.clusters.get(&n))
            .ok_or_else(|| FakeError::UnknownCluster(name_or_arn.chars().take(200).collect()))
    }

    /// The name of the cluster an entity belongs to.
    pub(crate) fn cluster_name_of(&self, cluster_arn: &Arn) -> Result<String, FakeError> {
        let name = cluster_arn.id();
        match self.clusters.get(name) {
            Some(c) if &c.arn == cluster_arn => Ok(name.to_owned()),
            _ => Err(FakeError::UnknownCluster(cluster_arn.to_string())),
        }
    }

    /// Creates a cluster (or returns the existing one of that name).
    pub(crate) fn create_cluster(&mut self, name: &str) -> Result<Arn, FakeError> {
        if let Some(c) = self.clusters.get(name) {
            return Ok(c.arn.clone());
        }
        let valid = !name.is_empty()
            && name.len() <= 255
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if !valid {
            return Err(FakeError::InvalidName(name.chars().take(300).collect()));
        }
        let arn = self.arn(ResourceKind::Cluster, name)?;
        self.clusters.insert(
            name.to_owned(),
            ClusterEntry {
                arn: arn.clone(),
                name: name.to_owned(),
                instances: BTreeSet::new(),
                tasks_by_desired: HashMap::new(),
                tasks_by_instance: HashMap::new(),
            },
        );
        Ok(arn)
    }

    /// Records a change of an instance: bumps its version, stamps it and
    /// queues its event.
    pub(crate) fn touch_instance(&mut self, arn: &Arn) {
        let now = self.now();
        let Some(instance) = self.instances.get_mut(arn) else {
            return;
        };
        instance.version = Some(instance.version.map_or(1, |v| v + 1));
        instance.updated_at = Some(now);
        if !self.cfg.emit_events {
            return;
        }
        let snapshot = instance.clone();
        let id = self.uuid();
        let body = events::instance_event(&self.origin(&id, now), &snapshot);
        self.enqueue(body);
    }

    /// Records a change of a task: bumps its version, stamps it and queues its event.
    pub(crate) fn touch_task(&mut self, arn: &Arn) {
        let now = self.now();
        let Some(task) = self.tasks.get_mut(arn) else {
            return;
        };
        task.version = Some(task.version.map_or(1, |v| v + 1));
        task.updated_at = Some(now);
        if !self.cfg.emit_events {
            return;
        }
        let snapshot = task.clone();
        let id = self.uuid();
        let body = events::task_event(&self.origin(&id, now), &snapshot);
        self.enqueue(body);
    }

    fn origin<'a>(&'a self, id: &'a str, time: Timestamp) -> Origin<'a> {
        Origin {
            id,
            account: &self.cfg.account,
            region: &self.cfg.region,
            time,
        }
    }

    fn enqueue(&mut self, body: Result<String, serde_json::Error>) {
        match body {
            Ok(body) if self.cfg.event_outbox => {
                self.events_emitted += 1;
                self.outbox.push(body);
            }
            Ok(body) => {
                self.queue.push(body);
                self.events_emitted += 1;
            }
            Err(e) => tracing::error!(error = %e, "fake ECS could not serialize an event"),
        }
    }

    /// Forgets listing lags that have run out.
    pub(crate) fn expire_lag(&mut self) {
        if self.lag.tasks.is_empty() && self.lag.instances.is_empty() {
            return;
        }
        let now = self.peek_now();
        self.lag.expire(now);
    }

    /// The current time without moving the logical clock.
    fn peek_now(&self) -> Timestamp {
        if let Some(clock) = &self.cfg.clock {
            return clock.now();
        }
        match self.cfg.start_time {
            Some(start) => Timestamp::from_millis(start.as_millis() + self.clock_ms),
            None => Timestamp::now(),
        }
    }

    /// When a change made now shows in listings (`None`: at once).
    pub(crate) fn listed_from(&mut self) -> Option<Timestamp> {
        let max = u64::try_from(self.cfg.listing_lag.as_millis()).unwrap_or(u64::MAX);
        if max == 0 {
            return None;
        }
        let lag = self.rng.random_range(0..=max);
        let now = self.now();
        Some(now.plus(std::time::Duration::from_millis(lag)))
    }

    /// Moves a task between the desired-status sets of its cluster.
    pub(crate) fn set_desired(&mut self, task: &Arn, desired: TaskStatus) {
        let until = self.listed_from();
        let Some(t) = self.tasks.get_mut(task) else {
            return;
        };
        let old = std::mem::replace(&mut t.desired_status, desired.clone());
        if let Some(until) = until
            && old != desired
        {
            self.lag.task_changed(task, Some(old.clone()), until);
        }
        let cluster = t.cluster_arn.id().to_owned();
        if let Some(c) = self.clusters.get_mut(&cluster) {
            if let Some(set) = c.tasks_by_desired.get_mut(&old) {
                set.remove(task);
            }
            c.tasks_by_desired
                .entry(desired)
                .or_default()
                .insert(task.clone());
        }
    }

    /// Adds `delta` to an instance's remaining CPU and memory.
    pub(crate) fn adjust_remaining(&mut self, instance: &Arn, cpu: i64, memory: i64) {
        if let Some(i) = self.instances.get_mut(instance) {
            for r in &mut i.remaining_resources {
                let delta = match r.name.as_str() {
                    "CPU" => cpu,
                    "MEMORY" => memory,
                    _ => continue,
                };
                if let Some(v) = r.integer_value.as_mut() {
                    *v += delta;
                }
            }
        }
    }
}
