//! Shared fixtures of the runner and election tests: a fake ECS whose events
//! are pumped into a store, a cache over it, a "one task per instance" test
//! scheduler and an ECS wrapper that records when tasks were started.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

pub mod proxy;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use blox_core::event::{EcsEvent, parse_event};
use blox_core::model::{Arn, Cluster, ContainerInstance, InstanceStatus, Task, TaskDefinition};
use blox_core::ports::{
    Described, EcsApi, EcsError, Page, StartTaskOutput, StartTaskRequest, TaskListFilter,
};
use blox_core::testing::{FakeEcs, InstanceSpec};
use blox_sched::runner::{Runner, RunnerGates, RunnerHandle, RunnerOptions};
use blox_sched::scheduler::{Action, Fixed, InstanceBackoff, Scheduler, Snapshot};
use blox_state::cache::Cache;
use blox_state::store::{Change, StateStore};
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

/// The `startedBy` tag of the test scheduler.
pub const TAG: &str = "daemon-test";

/// Starts one task of `Desired` (a task definition) on every ACTIVE
/// instance that has no live task of [`TAG`], no pending start and no backoff.
#[derive(Default, Clone)]
pub struct OnePerInstance {
    /// The backoff map of the last snapshot.
    pub last_backoff: Arc<Mutex<HashMap<Arn, InstanceBackoff>>>,
}

impl Scheduler for OnePerInstance {
    type Desired = String;

    fn name(&self) -> &str {
        "one-per-instance"
    }

    fn decide(&self, snap: &Snapshot<String>) -> Vec<Action> {
        *self.last_backoff.lock().unwrap() = snap.backoff.clone();
        let mut by_cluster: HashMap<Arn, Vec<Arn>> = HashMap::new();
        for i in snap.active_instances() {
            let arn = &i.container_instance_arn;
            let has_task = snap
                .live_tasks_on(arn)
                .any(|t| t.started_by.as_deref() == Some(TAG));
            let pending = snap.pending_count(arn, TAG) > 0;
            if !has_task && !pending && !snap.in_backoff(arn) {
                by_cluster
                    .entry(i.cluster_arn.clone())
                    .or_default()
                    .push(arn.clone());
            }
        }
        let mut clusters: Vec<_> = by_cluster.into_iter().collect();
        clusters.sort_by(|a, b| a.0.cmp(&b.0));
        clusters
            .into_iter()
            .map(|(c, mut instances)| {
                instances.sort();
                Action::start(c, snap.desired.clone(), instances, TAG, "one per instance")
            })
            .collect()
    }
}

/// Keeps `copies` tasks of [`TAG`] on every ACTIVE instance, counting live
/// tasks and pending starts (several copies per instance).
#[derive(Clone)]
pub struct Copies(pub usize);

impl Scheduler for Copies {
    type Desired = String;

    fn name(&self) -> &str {
        "copies"
    }

    fn decide(&self, snap: &Snapshot<String>) -> Vec<Action> {
        let mut out = Vec::new();
        for i in snap.active_instances() {
            let arn = &i.container_instance_arn;
            let live = snap
                .live_tasks_on(arn)
                .filter(|t| t.started_by.as_deref() == Some(TAG))
                .count();
            let pending = snap.pending_count(arn, TAG);
            let missing = self.0.saturating_sub(live + pending);
            if missing > 0 && !snap.in_backoff(arn) {
                out.push(Action::start(
                    i.cluster_arn.clone(),
                    snap.desired.clone(),
                    vec![arn.clone(); missing],
                    TAG,
                    "copies",
                ));
            }
        }
        out
    }
}

/// Applies every queued fake event to the store.
pub async fn pump(fake: &FakeEcs, store: &dyn StateStore) -> usize {
    apply_events(store, fake.take_events()).await
}

/// Applies event bodies to the store.
pub async fn apply_events(store: &dyn StateStore, bodies: Vec<String>) -> usize {
    let changes: Vec<Change> = bodies
        .into_iter()
        .filter_map(|body| match parse_event(body.as_bytes()).unwrap().event {
            EcsEvent::Task(t) => Some(Change::put(*t)),
            EcsEvent::Instance(i) => Some(Change::put(*i)),
            EcsEvent::Ignored { .. } => None,
        })
        .collect();
    let n = changes.len();
    if n > 0 {
        store.apply_batch(changes).await.unwrap();
    }
    n
}

/// Pumps events every 20 ms while `enabled` is set.
pub fn spawn_pump(
    fake: FakeEcs,
    store: Arc<dyn StateStore>,
    enabled: Arc<AtomicBool>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            if enabled.load(Ordering::SeqCst) {
                pump(&fake, store.as_ref()).await;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
}

/// Polls `cond` every 10 ms until it holds; panics after `secs` seconds.
pub async fn wait_until(secs: u64, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    while !cond() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Live tasks of [`TAG`] the fake holds on an instance.
pub fn live_tagged(fake: &FakeEcs, instance: &Arn) -> usize {
    live_started_by(fake, instance, TAG)
}

/// Live tasks started by `tag` the fake holds on an instance.
pub fn live_started_by(fake: &FakeEcs, instance: &Arn, tag: &str) -> usize {
    fake.tasks_on(instance)
        .iter()
        .filter(|t| t.is_live() && t.started_by.as_deref() == Some(tag))
        .count()
}

/// When each StartTask call was made, and on which instances.
pub type StartLog = Arc<Mutex<Vec<(tokio::time::Instant, Vec<Arn>)>>>;

/// An ECS that forwards to a fake and records when each StartTask call was
/// made; it can lose StartTask's replies (the tasks start, the caller sees a
/// transport error).
#[derive(Clone)]
pub struct Recording {
    pub fake: FakeEcs,
    pub starts: StartLog,
    /// How many of the next StartTask replies are lost.
    pub lose_replies: Arc<std::sync::atomic::AtomicU32>,
    /// Clusters (names or ARNs) whose container instances ECS refuses to
    /// list (`AccessDeniedException`).
    pub denied: Arc<Mutex<Vec<String>>>,
}

/// The transport error of a lost reply.
#[derive(Debug, thiserror::Error)]
#[error("reply lost")]
pub struct LostReply;

impl Recording {
    pub fn new(fake: FakeEcs) -> Self {
        Recording {
            fake,
            starts: Arc::default(),
            lose_replies: Arc::default(),
            denied: Arc::default(),
        }
    }

    /// Loses the replies of the next `n` StartTask calls.
    pub fn lose_next_replies(&self, n: u32) {
        self.lose_replies.store(n, Ordering::SeqCst);
    }

    pub fn start_times(&self) -> Vec<tokio::time::Instant> {
        self.starts.lock().unwrap().iter().map(|s| s.0).collect()
    }
}

#[async_trait]
impl EcsApi for Recording {
    async fn list_clusters(&self, t: Option<String>) -> Result<Page<Arn>, EcsError> {
        self.fake.list_clusters(t).await
    }
    async fn describe_clusters(&self, c: &[String]) -> Result<Vec<Cluster>, EcsError> {
        self.fake.describe_clusters(c).await
    }
    async fn list_container_instances(
        &self,
        c: &str,
        t: Option<String>,
    ) -> Result<Page<Arn>, EcsError> {
        let denied = self.denied.lock().unwrap().clone();
        if let Some(arn) = self.fake.cluster_arn(c).or_else(|| Arn::parse(c).ok())
            && denied
                .iter()
                .any(|d| blox_state::store::Filter::cluster_matches(d, &arn))
        {
            return Err(EcsError::Service {
                operation: "ListContainerInstances",
                code: "AccessDeniedException".into(),
                message: format!("not authorized on {c}"),
            });
        }
        self.fake.list_container_instances(c, t).await
    }
    async fn describe_container_instances_with_missing(
        &self,
        c: &str,
        i: &[Arn],
    ) -> Result<Described<ContainerInstance>, EcsError> {
        self.fake
            .describe_container_instances_with_missing(c, i)
            .await
    }
    async fn list_tasks(
        &self,
        f: &TaskListFilter,
        t: Option<String>,
    ) -> Result<Page<Arn>, EcsError> {
        self.fake.list_tasks(f, t).await
    }
    async fn describe_tasks_with_missing(
        &self,
        c: &str,
        t: &[Arn],
    ) -> Result<Described<Task>, EcsError> {
        self.fake.describe_tasks_with_missing(c, t).await
    }
    async fn start_task(&self, r: &StartTaskRequest) -> Result<StartTaskOutput, EcsError> {
        self.starts
            .lock()
            .unwrap()
            .push((tokio::time::Instant::now(), r.container_instances.clone()));
        let out = self.fake.start_task(r).await;
        let lose = self
            .lose_replies
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        if lose && out.is_ok() {
            return Err(EcsError::Transport {
                operation: "StartTask",
                source: Box::new(LostReply),
            });
        }
        out
    }
    async fn stop_task(&self, c: &str, t: &Arn, r: &str) -> Result<Task, EcsError> {
        self.fake.stop_task(c, t, r).await
    }
    async fn describe_task_definition(&self, d: &str) -> Result<TaskDefinition, EcsError> {
        self.fake.describe_task_definition(d).await
    }
    async fn update_container_instances_state(
        &self,
        c: &str,
        i: &[Arn],
        s: InstanceStatus,
    ) -> Result<Vec<ContainerInstance>, EcsError> {
        self.fake.update_container_instances_state(c, i, s).await
    }
}

/// A fake cluster "c" of `n` instances, a memory store holding them, a
/// ready cache, and hand-driven gates (open unless changed).
pub struct World {
    pub fake: FakeEcs,
    pub ecs: Recording,
    pub store: Arc<dyn StateStore>,
    pub cache: Cache,
    pub instances: Vec<Arn>,
    pub scheduler: OnePerInstance,
    pub bootstrapped: watch::Sender<Option<blox_sched::runner::BootstrapDone>>,
    pub leadership: watch::Sender<Option<blox_sched::election::LeaderTerm>>,
    pub term: blox_sched::election::LeaderTerm,
}

impl World {
    pub async fn new(n: usize) -> World {
        Self::with_spec(n, InstanceSpec::new()).await
    }

    pub async fn with_spec(n: usize, spec: InstanceSpec) -> World {
        Self::with_fake(FakeEcs::with_seed(7), n, spec).await
    }

    /// A world over a fake configured by the caller.
    pub async fn with_fake(fake: FakeEcs, n: usize, spec: InstanceSpec) -> World {
        use blox_sched::election::{LeaderElection, LocalElection};
        fake.create_cluster("c").unwrap();
        let instances = fake.add_instances("c", n, &spec).unwrap();
        let store: Arc<dyn StateStore> = Arc::new(blox_state::store::memory::MemoryStore::new());
        pump(&fake, store.as_ref()).await;
        let (cache, _follower) = blox_state::cache::spawn_follower(Arc::clone(&store));
        cache.wait_until_ready().await;
        let election = LocalElection::start(Arc::clone(&store), "test", "me")
            .await
            .unwrap();
        let term = election.term().borrow().clone().unwrap();
        World {
            ecs: Recording::new(fake.clone()),
            fake,
            store,
            cache,
            instances,
            scheduler: OnePerInstance::default(),
            bootstrapped: watch::channel(Some(blox_sched::runner::BootstrapDone::UNGATED)).0,
            leadership: watch::channel(Some(term.clone())).0,
            term,
        }
    }

    pub fn gates(&self) -> RunnerGates {
        RunnerGates {
            bootstrapped: self.bootstrapped.subscribe(),
            leadership: self.leadership.subscribe(),
        }
    }

    /// Spawns a runner of the test scheduler with task definition `td`.
    pub fn spawn(&self, td: &str, options: RunnerOptions) -> Running {
        self.spawn_with(self.scheduler.clone(), td.to_owned(), options)
    }

    /// Spawns a runner of any scheduler with a fixed desired state.
    pub fn spawn_with<S: Scheduler>(
        &self,
        scheduler: S,
        desired: S::Desired,
        options: RunnerOptions,
    ) -> Running
    where
        S::Desired: Clone,
    {
        let runner = Runner::new(
            scheduler,
            Arc::new(Fixed(desired)),
            self.cache.clone(),
            Arc::new(self.ecs.clone()),
            Arc::clone(&self.store),
            self.gates(),
            options,
        );
        let handle = runner.handle();
        let (stop, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(runner.run(async move {
            let _ = rx.await;
        }));
        Running {
            handle,
            task,
            stop: Some(stop),
        }
    }

    pub fn start_calls(&self) -> u64 {
        self.fake.calls("StartTask")
    }

    /// Instances started on, over all StartTask calls.
    pub fn started_instances(&self) -> Vec<Arn> {
        self.ecs
            .starts
            .lock()
            .unwrap()
            .iter()
            .flat_map(|s| s.1.clone())
            .collect()
    }
}

/// A spawned runner.
pub struct Running {
    pub handle: RunnerHandle,
    pub task: JoinHandle<()>,
    stop: Option<oneshot::Sender<()>>,
}

impl Running {
    pub async fn shutdown(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        self.task.await.unwrap();
    }
}

/// Options for tests: quick debounce, a long timer.
pub fn options() -> RunnerOptions {
    RunnerOptions {
        debounce: Duration::from_millis(100),
        interval: Duration::from_secs(30),
        ..RunnerOptions::default()
    }
}
