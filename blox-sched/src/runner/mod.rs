//! The runner: executes a [`Scheduler`]'s decisions against ECS.
//!
//! A [`Runner`] owns one scheduler. It acts only on a complete view: the
//! cache has loaded, the bootstrap reconcile of this leader term is done
//! (one made for this very term, [`BootstrapDone::term`]) and the cache has reached the
//! revision of everything that bootstrap read and wrote (so a task it
//! re-added is in the view), this process leads, and (at the start of each
//! term) the intents the previous leader left are resolved against
//! `ListTasks(startedBy)`. The bootstrap is per cluster: a cluster whose
//! bootstrap is still pending ([`BootstrapDone::pending`]) is not acted on,
//! the others are. Then, on every cache change
//! (debounced), on a timer and when a backoff ends, it
//!
//! 1. builds a [`Snapshot`](crate::scheduler::Snapshot) from the cache (its clusters only), the pending
//!    intents and the per-instance backoff, and calls
//!    [`Scheduler::decide`];
//! 2. filters the actions (no start where the instance is in backoff,
//!    nothing outside its clusters; starts are not deduplicated: a
//!    scheduler counts the pending starts of its snapshot, and may want
//!    several copies on one instance) and caps them
//!    ([`RunnerOptions::max_actions_per_cycle`]); in dry-run it only logs and
//!    records them ([`RunnerStatus::last_dry_run`]); paused, it does nothing;
//! 3. executes them: stops through `StopTask` (not issued again while the
//!    view still shows the task live, up to the intent timeout; a stop
//!    with an instance check, [`StopAction::only_if`](crate::scheduler::StopAction::only_if),
//!    only once `DescribeContainerInstances` confirms it), starts through `StartTask` in
//!    batches of at most ten distinct instances, each batch preceded by intent records
//!    written in a `kv_txn` fenced by the leader key
//!    ([`LeaderTerm::check`](crate::election::LeaderTerm::check)), so a
//!    deposed leader never reaches ECS and a task started but not yet
//!    visible is never started twice. A throttled StartTask is retried
//!    with backoff (the only retry layer of a start: the adapter does not
//!    repeat it), each attempt after re-checking the leader term, and none
//!    later than the term's lease TTL after its intents were written (half
//!    the intent timeout at most), so a leader cut off from the store stops
//!    calling ECS before a successor may act. Intents are stamped when
//!    they are written, not at the start of the cycle.
//!
//! Each start has its own intent, which names its task once StartTask's
//! reply does. Intents are deleted when the view shows their task (while it
//! is unknown: a task of their instance and `startedBy` that the view did
//! not show when they were written, each task standing for one intent), or after
//! [`RunnerOptions::intent_timeout`] when `ListTasks` shows none. Instances
//! whose tasks stop soon after starting, or where ECS refuses a placement,
//! are held off 1 s, 2 s, 4 s... (up to five minutes), with ECS's reason in
//! [`Snapshot::backoff`](crate::scheduler::Snapshot::backoff) for the scheduler to report.
//!
//! Wiring a runner in one process on the memory store:
//!
//! ```no_run
//! # async fn demo(ecs: std::sync::Arc<dyn blox_core::ports::EcsApi>) -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//!
//! use blox_sched::election::{LeaderElection, LocalElection};
//! use blox_sched::runner::{Runner, RunnerGates, RunnerOptions};
//! use blox_sched::scheduler::{Action, Fixed, Scheduler, Snapshot};
//! use blox_state::reconcile::{ReconcileOptions, Reconciler};
//! use blox_state::store::{StateStore, memory::MemoryStore};
//!
//! struct Idle;
//! impl Scheduler for Idle {
//!     type Desired = ();
//!     fn name(&self) -> &str { "idle" }
//!     fn decide(&self, _: &Snapshot<()>) -> Vec<Action> { Vec::new() }
//! }
//!
//! let store: Arc<dyn StateStore> = Arc::new(MemoryStore::new());
//! let (cache, _follower) = blox_state::cache::spawn_follower(Arc::clone(&store));
//! let election = LocalElection::start(Arc::clone(&store), "scheduler", "me").await?;
//! let reconciler = Reconciler::new(Arc::clone(&ecs), Arc::clone(&store), ReconcileOptions::default());
//! let gates = RunnerGates {
//!     bootstrapped: reconciler.bootstrap_done(),
//!     leadership: election.term(),
//! };
//! tokio::spawn(reconciler.run(election.term(), std::future::pending::<()>()));
//! let runner = Runner::new(Idle, Arc::new(Fixed(())), cache, ecs, store, gates, RunnerOptions::default());
//! let handle = runner.handle();
//! let shutdown = async {
//!     let _ = tokio::signal::ctrl_c().await;
//! };
//! runner.run(shutdown).await;
//! println!("{:?}", handle.counters().values());
//! election.resign().await;
//! # Ok(()) }
//! ```

mod backoff;
mod confirm;
mod cycle;
mod execute;
mod intents;
mod live;
mod plan;

use blox_core::clock::SharedClock;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use blox_core::model::Timestamp;
use blox_core::ports::EcsApi;
use blox_state::cache::Cache;
pub use blox_state::reconcile::BootstrapDone;
use blox_state::store::StateStore;
use tokio::sync::{Notify, watch};

pub use intents::{IntentRecord, intent_prefix};

use crate::election::LeaderTerm;
use crate::scheduler::{Action, DesiredSource, Scheduler};

use backoff::BackoffTracker;
use intents::IntentBook;

/// Settings of a [`Runner`].
#[derive(Debug, Clone)]
pub struct RunnerOptions {
    /// The clusters (names or ARNs) the scheduler manages; empty = all in the view.
    pub clusters: Vec<String>,
    /// At most this many instance starts plus stops per cycle.
    pub max_actions_per_cycle: usize,
    /// Decide and log, but call no ECS action and write no intent.
    pub dry_run: bool,
    /// Cycles wait this long after a cache change, so bursts coalesce.
    pub debounce: Duration,
    /// A cycle runs at least this often.
    pub interval: Duration,
    /// An intent whose task the view does not show after this long is
    /// checked against `ListTasks(startedBy)` (and dropped if ECS has none).
    pub intent_timeout: Duration,
    /// The first per-instance hold-off (doubles per failure).
    pub backoff_start: Duration,
    /// The longest per-instance hold-off.
    pub backoff_cap: Duration,
    /// A task of ours that stops within this long of starting counts as a crash.
    pub crash_window: Duration,
    /// An instance's failure record is cleared once a task of ours has run there this long.
    pub healthy_after: Duration,
    /// How many times a throttled StartTask is retried (the runner's only
    /// retry layer: each attempt re-checks the leader term, and none is made
    /// later than the term's lease TTL, or half the intent timeout, after
    /// the start's intent was written). Other calls are retried by the ECS
    /// adapter alone.
    pub throttle_retries: u32,
    /// The first wait before retrying a throttled StartTask (doubles, jittered, up to 20 s).
    pub throttle_backoff: Duration,
    /// The clock of intents, backoffs and crash detection (default: a
    /// [`blox_core::clock::TokioClock`] from the wall clock's time now, so
    /// its timers and timestamps agree and tests on paused time see them
    /// expire; a simulation passes its own).
    pub clock: SharedClock,
}

impl Default for RunnerOptions {
    fn default() -> Self {
        RunnerOptions {
            clusters: Vec::new(),
            max_actions_per_cycle: 100,
            dry_run: false,
            debounce: Duration::from_millis(500),
            interval: Duration::from_secs(30),
            intent_timeout: Duration::from_secs(60),
            backoff_start: Duration::from_secs(1),
            backoff_cap: Duration::from_secs(300),
            crash_window: Duration::from_secs(60),
            healthy_after: Duration::from_secs(120),
            throttle_retries: 5,
            throttle_backoff: Duration::from_millis(500),
            clock: blox_core::clock::TokioClock::new().shared(),
        }
    }
}

/// The signals that say the view is complete and this process may act.
#[derive(Debug, Clone)]
pub struct RunnerGates {
    /// Set once the bootstrap reconcile of this leadership is done, with
    /// the revision the cache must reach before the runner acts
    /// ([`Reconciler::bootstrap_done`](blox_state::reconcile::Reconciler::bootstrap_done));
    /// [`BootstrapDone::UNGATED`] where nothing is reconciled.
    pub bootstrapped: watch::Receiver<Option<BootstrapDone>>,
    /// The current leader term ([`LeaderElection::term`](crate::election::LeaderElection::term)).
    pub leadership: watch::Receiver<Option<LeaderTerm>>,
}

/// What the runner is waiting for before it acts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum WaitingFor {
    /// The cache's first complete list.
    Cache,
    /// The bootstrap reconcile (of this leader term).
    Bootstrap,
    /// The cache, to reach the revision of everything the bootstrap read
    /// and wrote.
    View,
    /// Leadership.
    Leadership,
    /// The resolution of the previous leader's intents.
    Intents,
}

impl WaitingFor {
    /// The lowercase name (`cache`, `bootstrap`, `view`, `leadership`, `intents`).
    pub fn as_str(self) -> &'static str {
        match self {
            WaitingFor::Cache => "cache",
            WaitingFor::Bootstrap => "bootstrap",
            WaitingFor::View => "view",
            WaitingFor::Leadership => "leadership",
            WaitingFor::Intents => "intents",
        }
    }
}

/// The runner's state, for status pages and tests.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RunnerStatus {
    /// The scheduler's name.
    pub scheduler: String,
    /// What the runner waits for; `None` when it acts.
    pub waiting_for: Option<WaitingFor>,
    /// Whether the runner is paused.
    pub paused: bool,
    /// Whether the runner is in dry-run mode.
    pub dry_run: bool,
    /// Whether the runner holds a leader term it has not been fenced out of.
    pub leader: bool,
    /// Outstanding intents.
    pub pending_intents: usize,
    /// Instances held off now.
    pub instances_in_backoff: usize,
    /// The actions the last dry-run cycle would have taken.
    pub last_dry_run: Vec<Action>,
    /// The error of the last cycle (ECS, store, desired state), if it failed.
    pub last_error: Option<String>,
    /// When the last cycle ran (runner clock).
    pub last_cycle: Option<Timestamp>,
}

/// Counters for metrics (monotonic).
#[derive(Debug, Default)]
pub struct RunnerCounters {
    /// Cycles run (including ones that waited).
    pub cycles: AtomicU64,
    /// Tasks ECS started.
    pub started: AtomicU64,
    /// Tasks stopped.
    pub stopped: AtomicU64,
    /// Instance starts and stops that failed (placement failures included).
    pub failed: AtomicU64,
    /// Actions recorded but not executed in dry-run.
    pub dry_run: AtomicU64,
    /// Throttled ECS calls retried.
    pub throttled: AtomicU64,
    /// Intent writes refused because the leader key changed.
    pub fenced: AtomicU64,
    /// Intents resolved (deleted).
    pub intents_resolved: AtomicU64,
    /// Acting cycles that skipped reading the view: the scheduler wanted
    /// nothing ([`Scheduler::is_idle`]) and nothing of its was in flight.
    pub idle: AtomicU64,
    /// Times the runner loaded its view of the cache whole (when it starts
    /// acting, and when it could not follow the cache's changes).
    pub view_loads: AtomicU64,
    /// Task changes the runner applied to its view, one at a time.
    pub view_changes: AtomicU64,
    /// Decisions made on the whole view rather than on the changed instances.
    pub full_decisions: AtomicU64,
}

/// A copy of the counters at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CounterValues {
    /// See [`RunnerCounters::cycles`].
    pub cycles: u64,
    /// See [`RunnerCounters::started`].
    pub started: u64,
    /// See [`RunnerCounters::stopped`].
    pub stopped: u64,
    /// See [`RunnerCounters::failed`].
    pub failed: u64,
    /// See [`RunnerCounters::dry_run`].
    pub dry_run: u64,
    /// See [`RunnerCounters::throttled`].
    pub throttled: u64,
    /// See [`RunnerCounters::fenced`].
    pub fenced: u64,
    /// See [`RunnerCounters::intents_resolved`].
    pub intents_resolved: u64,
    /// See [`RunnerCounters::idle`].
    pub idle: u64,
    /// See [`RunnerCounters::view_loads`].
    pub view_loads: u64,
    /// See [`RunnerCounters::view_changes`].
    pub view_changes: u64,
    /// See [`RunnerCounters::full_decisions`].
    pub full_decisions: u64,
}

impl RunnerCounters {
    /// The current values.
    pub fn values(&self) -> CounterValues {
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        CounterValues {
            cycles: g(&self.cycles),
            started: g(&self.started),
            stopped: g(&self.stopped),
            failed: g(&self.failed),
            dry_run: g(&self.dry_run),
            throttled: g(&self.throttled),
            fenced: g(&self.fenced),
            intents_resolved: g(&self.intents_resolved),
            idle: g(&self.idle),
            view_loads: g(&self.view_loads),
            view_changes: g(&self.view_changes),
            full_decisions: g(&self.full_decisions),
        }
    }
}

pub(crate) fn bump(c: &AtomicU64, n: usize) {
    c.fetch_add(u64::try_from(n).unwrap_or(u64::MAX), Ordering::Relaxed);
}

/// Controls a running [`Runner`]: pause, resume, status, counters. Cheap to clone.
#[derive(Debug, Clone)]
pub struct RunnerHandle {
    paused: Arc<AtomicBool>,
    wake: Arc<Notify>,
    status: watch::Receiver<RunnerStatus>,
    counters: Arc<RunnerCounters>,
}

impl RunnerHandle {
    /// Stops acting (cycles still keep the status current) until [`resume`](Self::resume).
    pub fn pause(&self) {
        self.paused.store(true, Ordering::SeqCst);
        self.wake.notify_one();
    }

    /// Acts again, at once.
    pub fn resume(&self) {
        self.paused.store(false, Ordering::SeqCst);
        self.wake.notify_one();
    }

    /// Asks for a cycle now.
    pub fn trigger(&self) {
        self.wake.notify_one();
    }

    /// Whether the runner is paused.
    pub fn is_paused(&self) -> bool {
        self.paused.load(Ordering::SeqCst)
    }

    /// The current status.
    pub fn status(&self) -> RunnerStatus {
        self.status.borrow().clone()
    }

    /// A receiver of status updates (one per cycle).
    pub fn watch_status(&self) -> watch::Receiver<RunnerStatus> {
        self.status.clone()
    }

    /// The counters.
    pub fn counters(&self) -> &Arc<RunnerCounters> {
        &self.counters
    }
}

/// The runner's clock: the options' clock, and the tokio instant at which
/// one of its timestamps falls (for timers).
#[derive(Debug, Clone)]
pub(crate) struct Clock {
    clock: SharedClock,
}

impl Clock {
    fn new(clock: SharedClock) -> Self {
        Clock { clock }
    }

    pub(crate) fn now(&self) -> Timestamp {
        self.clock.now()
    }

    /// The tokio instant of a runner-clock timestamp.
    pub(crate) fn instant_of(&self, t: Timestamp) -> tokio::time::Instant {
        let now = tokio::time::Instant::now();
        match u64::try_from(t.as_millis() - self.now().as_millis()) {
            Ok(ahead) => now + Duration::from_millis(ahead),
            Err(_) => now,
        }
    }
}

/// The leader-only state of a term.
#[derive(Debug)]
struct TermState {
    /// The term's revision once its takeover (intent resolution) is done.
    ready: Option<blox_state::store::Revision>,
    /// A term this runner was fenced out of: do not act on it again.
    fenced: Option<blox_state::store::Revision>,
    book: IntentBook,
    tracker: BackoffTracker,
    /// Stops issued this term that the view does not show yet, and when.
    stopping: std::collections::HashMap<blox_core::model::Arn, Timestamp>,
    /// Whether the backoff tracker still needs its baseline.
    baseline: bool,
    /// Set by a plan's execution that left an action unissued (a stop ECS
    /// did not confirm), so its decision does not count as complete.
    unissued: bool,
}

/// Executes a scheduler's decisions against ECS (see the module docs).
pub struct Runner<S: Scheduler> {
    scheduler: S,
    desired: Arc<dyn DesiredSource<S::Desired>>,
    cache: Cache,
    ecs: Arc<dyn EcsApi>,
    store: Arc<dyn StateStore>,
    gates: RunnerGates,
    options: RunnerOptions,
    clock: Clock,
    term: TermState,
    paused: Arc<AtomicBool>,
    wake: Arc<Notify>,
    status: watch::Sender<RunnerStatus>,
    counters: Arc<RunnerCounters>,
    /// Set when a cycle failed and should be retried before the timer.
    retry_soon: bool,
    /// Sees every snapshot the scheduler decides on.
    observer: Option<Arc<dyn SnapshotObserver<S::Desired>>>,
    /// The view of the runner's clusters, while it acts.
    live: Option<live::LiveView>,
    /// The last decision, while the next may be made from changes alone.
    last: Option<LastDecision<S::Desired>>,
    /// When the last full decision was made (runner clock): the next is
    /// due an `interval` later, however busy the cluster.
    last_full: Option<Timestamp>,
}

/// What the next decision is made relative to.
struct LastDecision<D> {
    /// The desired state it was made with.
    desired: D,
    /// The instances that had starts in flight or a backoff then.
    marked: std::collections::HashSet<blox_core::model::Arn>,
    /// Whether every action was issued (none capped, held or failed, not a dry run).
    complete: bool,
}

/// Sees each snapshot the scheduler decided on, after the decision (the
/// daemon scheduler's deployment tracker persists progress from it). Runs
/// inside the cycle: keep it quick, and keep no clone of the snapshot past
/// the call (the runner's next change would then copy its whole view).
#[async_trait::async_trait]
pub trait SnapshotObserver<D>: Send + Sync {
    /// Called once per acting cycle with the snapshot given to `decide` and
    /// the term the runner acts in (fence its writes with
    /// [`LeaderTerm::check`]).
    async fn observe(&self, snapshot: &crate::scheduler::Snapshot<D>, term: &LeaderTerm);

    /// [`observe`](Self::observe), told what changed since the previous
    /// decision (as [`Scheduler::decide_changed`] is): an observer may skip
    /// its work when nothing it reads changed. The default observes.
    async fn observe_changed(
        &self,
        snapshot: &crate::scheduler::Snapshot<D>,
        changes: &crate::scheduler::Changes<'_, D>,
        term: &LeaderTerm,
    ) where
        D: Sync,
    {
        let _ = changes;
        self.observe(snapshot, term).await;
    }
}

impl<S: Scheduler> std::fmt::Debug for Runner<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runner")
            .field("scheduler", &self.scheduler.name())
            .field("options", &self.options)
            .field("status", &*self.status.borrow())
            .finish()
    }
}

impl<S: Scheduler> Runner<S> {
    /// A runner of `scheduler` over `cache`, acting on `ecs`, keeping its
    /// intents in `store`, gated by `gates`.
    pub fn new(
        scheduler: S,
        desired: Arc<dyn DesiredSource<S::Desired>>,
        cache: Cache,
        ecs: Arc<dyn EcsApi>,
        store: Arc<dyn StateStore>,
        gates: RunnerGates,
        options: RunnerOptions,
    ) -> Self {
        let status = RunnerStatus {
            scheduler: scheduler.name().to_owned(),
            waiting_for: Some(WaitingFor::Cache),
            dry_run: options.dry_run,
            ..RunnerStatus::default()
        };
        let term = TermState {
            ready: None,
            fenced: None,
            book: IntentBook::new(scheduler.name()),
            tracker: BackoffTracker::new(
                options.backoff_start,
                options.backoff_cap,
                options.crash_window,
                options.healthy_after,
            ),
            stopping: std::collections::HashMap::new(),
            baseline: true,
            unissued: false,
        };
        let clock = Clock::new(options.clock.clone());
        Runner {
            scheduler,
            desired,
            cache,
            ecs,
            store,
            gates,
            options,
            clock,
            term,
            paused: Arc::new(AtomicBool::new(false)),
            wake: Arc::new(Notify::new()),
            status: watch::channel(status).0,
            counters: Arc::new(RunnerCounters::default()),
            retry_soon: false,
            observer: None,
            live: None,
            last: None,
            last_full: None,
        }
    }

    /// Adds an observer of every snapshot the scheduler decides on.
    pub fn with_observer(mut self, observer: Arc<dyn SnapshotObserver<S::Desired>>) -> Self {
        self.observer = Some(observer);
        self
    }

    /// A handle to pause, resume and observe the runner.
    pub fn handle(&self) -> RunnerHandle {
        RunnerHandle {
            paused: Arc::clone(&self.paused),
            wake: Arc::clone(&self.wake),
            status: self.status.subscribe(),
            counters: Arc::clone(&self.counters),
        }
    }
}
