//! The driver: one seed, one shape, the whole stack, faults on a seeded
//! schedule, invariants checked all along and once the faults stop.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use blox_core::clock::TokioClock;
use blox_core::model::{Arn, ContainerInstance, InstanceStatus, Task, TaskStatus, Timestamp};
use blox_core::ports::{EcsApi, EcsApiExt, EventSource, TaskListFilter};
use blox_core::testing::{FakeEcs, FakeEcsConfig, InstanceSpec};
use blox_sched::daemon::{EnvironmentStore, NewEnvironment};
use blox_state::store::StateStore;
use blox_state::store::etcd::EtcdStore;
use blox_state::store::memory::{MemoryOptions, MemoryStore};
use blox_state::testing::FaultyStore;
use blox_state::testing::etcd_server::EtcdCluster;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use tokio::time::Instant;

use crate::client::StreamClient;
use crate::delivery::Delivery;
use crate::ecs::ReplicaEcs;
use crate::election::{Election, LeaseWatch, SimElection, etcd_election, revoke_leader_lease};
use crate::oracle::{Compared, StoreOracle, difference};
use crate::replica::{CLUSTER, Parts, Replica};
use crate::shape::{Shape, StoreKind};
use crate::world::{Violation, World, short};
use blox_sched::election::LeaderElection;

/// Replicas of the daemon.
const REPLICAS: usize = 2;
/// One step of the driver.
const TICK: Duration = Duration::from_secs(1);
/// How long two live tasks of one environment may share an instance.
pub const DUPLICATE_BOUND: Duration = Duration::from_secs(180);
/// How long a replica may notice a lost lease after it is lost.
const NOTICE: Duration = Duration::from_secs(10);
/// How long a deposed leader may still act: noticing, plus one second.
pub const FENCE_BOUND: Duration = Duration::from_secs(11);

/// What a run found.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The seed.
    pub seed: u64,
    /// Every invariant violated.
    pub violations: Vec<Violation>,
    /// The steps that led to the first violation (or the last steps).
    pub trace: Vec<String>,
    /// Events emitted by ECS.
    pub events: u64,
    /// Deployments created.
    pub deployments: usize,
    /// Faults injected (outages, lease losses, kills, churn steps).
    pub faults: usize,
    /// Times the stream client's view was compared with the store's at
    /// the client's revision (while the run went on).
    pub stream_checks: u64,
    /// Restarts of the process on the memory store.
    pub restarts: u64,
    /// Leases the driver took from a leader.
    pub lease_losses: u64,
}

impl Outcome {
    /// A report: the seed, each violation, and the trace.
    pub fn report(&self) -> String {
        let mut out = format!(
            "seed {}: {} violation(s), {} events, {} deployments, {} faults ({} restarts, {} lease losses), {} stream checks\n",
            self.seed,
            self.violations.len(),
            self.events,
            self.deployments,
            self.faults,
            self.restarts,
            self.lease_losses,
            self.stream_checks
        );
        for v in &self.violations {
            out.push_str(&format!(
                "  [{:>5}s] {}: {}\n",
                v.at_secs, v.invariant, v.detail
            ));
        }
        if !self.violations.is_empty() {
            out.push_str("  trace:\n");
            for line in &self.trace {
                out.push_str(&format!("    {line}\n"));
            }
        }
        out
    }
}

/// Runs `shape` with `seed` on a runtime of its own: paused time for the
/// memory store, real time (and a real etcd) for etcd.
pub fn run_blocking(seed: u64, shape: Shape) -> Outcome {
    let runtime = match shape.store {
        StoreKind::Memory => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .start_paused(true)
            .build(),
        StoreKind::Etcd => tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build(),
    };
    // Ids, tokens and jitter drawn on this thread replay from the seed.
    let _seed = blox_core::random::seed_this_thread(seed);
    match runtime {
        Ok(rt) => rt.block_on(run(seed, shape)),
        Err(e) => Outcome {
            seed,
            violations: vec![Violation {
                invariant: "setup",
                detail: format!("no runtime: {e}"),
                at_secs: 0,
            }],
            trace: Vec::new(),
            events: 0,
            deployments: 0,
            faults: 0,
            stream_checks: 0,
            restarts: 0,
            lease_losses: 0,
        },
    }
}

/// Something the driver does later.
#[derive(Debug)]
enum Later {
    StoreUp,
    Notice(usize),
    Restart(usize),
    /// The process on the memory store starts again, on an empty store.
    ProcessBack,
    /// etcd members come back (together: after a lost quorum, one alone
    /// cannot be healthy).
    EtcdMembersBack(Vec<usize>),
}

struct Sim {
    shape: Shape,
    rng: SmallRng,
    world: Arc<World>,
    clock: blox_core::clock::SharedClock,
    /// The store outage switch (every replica's client goes through it).
    store: Arc<FaultyStore<Arc<dyn StateStore>>>,
    replicas: Vec<Option<Replica>>,
    /// Each replica's election (`None` once killed, until it restarts).
    elections: Vec<Option<Election>>,
    leader: Option<usize>,
    envs: EnvironmentStore,
    env_names: Vec<String>,
    delivery: Delivery,
    later: BTreeMap<(Instant, u64), Later>,
    later_seq: u64,
    client: Option<StreamClient>,
    /// The store's own view, to check the client against all along.
    oracle: Option<StoreOracle>,
    /// Comparisons of the client with the oracle so far.
    stream_checks: u64,
    /// The ingest counters of every replica ever started (killed ones too).
    ingest: Vec<Arc<blox_state::ingest::IngestCounters>>,
    /// The etcd cluster (etcd shapes), to lose a member.
    etcd: Option<EtcdCluster>,
    /// The etcd store (etcd shapes): its client runs blox's election.
    etcd_store: Option<EtcdStore>,
    /// Who holds the lease, as etcd says (etcd shapes).
    lease_watch: Option<LeaseWatch>,
    deployments: usize,
    faults: usize,
    faults_on: bool,
    generation: u64,
    /// Memory store restarts so far (the next store's epoch follows).
    restarts: u64,
    /// Leases taken from a leader so far.
    lease_losses: u64,
    /// The process on the memory store is down (its API too).
    process_down: bool,
}

/// An empty memory store of epoch `epoch` (a process's start-up nonce,
/// drawn from the run so it replays).
fn memory_store(epoch: u64, clock: &blox_core::clock::SharedClock) -> Arc<dyn StateStore> {
    Arc::new(MemoryStore::with_options(MemoryOptions {
        epoch: Some(epoch),
        clock: clock.clone(),
        ..MemoryOptions::default()
    }))
}

/// The store a run starts with, and on etcd its cluster and client.
type Made = (Arc<dyn StateStore>, Option<(EtcdCluster, EtcdStore)>);

async fn make_store(shape: &Shape, clock: &blox_core::clock::SharedClock) -> Result<Made, String> {
    match shape.store {
        StoreKind::Memory => Ok((memory_store(1, clock), None)),
        StoreKind::Etcd => {
            // Three members, so one can be lost.
            let server = EtcdCluster::start(3).await.map_err(|e| e.to_string())?;
            let store =
                blox_state::store::etcd::EtcdStore::connect(blox_state::store::etcd::EtcdOptions {
                    clock: clock.clone(),
                    ..blox_state::store::etcd::EtcdOptions::new(server.endpoints())
                        .with_prefix("/sim")
                })
                .await
                .map_err(|e| e.to_string())?;
            Ok((Arc::new(store.clone()), Some((server, store))))
        }
    }
}

/// Runs one seed (call it on a paused runtime for the memory store).
pub async fn run(seed: u64, shape: Shape) -> Outcome {
    let clock = TokioClock::starting_at(Timestamp::from_millis(1_767_225_600_000)).shared();
    let fake = FakeEcs::with_config(FakeEcsConfig {
        clock: Some(clock.clone()),
        listing_lag: shape.faults.listing_lag,
        event_outbox: true,
        ..FakeEcsConfig::seeded(seed)
    });
    let world = Arc::new(World::new(fake.clone(), DUPLICATE_BOUND, FENCE_BOUND));
    let fail = |detail: String| Outcome {
        seed,
        violations: vec![Violation {
            invariant: "setup",
            detail,
            at_secs: 0,
        }],
        trace: Vec::new(),
        events: 0,
        deployments: 0,
        faults: 0,
        stream_checks: 0,
        restarts: 0,
        lease_losses: 0,
    };
    if let Err(e) = fake.create_cluster(CLUSTER) {
        return fail(e.to_string());
    }
    if let Err(e) = fake.add_instances(CLUSTER, shape.instances, &InstanceSpec::new()) {
        return fail(e.to_string());
    }
    let (inner, etcd) = match make_store(&shape, &clock).await {
        Ok(s) => s,
        Err(e) => return fail(e),
    };
    let (etcd, etcd_store) = etcd.unzip();
    let store = Arc::new(FaultyStore::new(inner));
    let shared: Arc<dyn StateStore> = store.clone();
    let mut sim = Sim {
        shape,
        rng: SmallRng::seed_from_u64(seed),
        world,
        clock: clock.clone(),
        store,
        replicas: (0..REPLICAS).map(|_| None).collect(),
        elections: Vec::new(),
        leader: None,
        envs: EnvironmentStore::new(shared).with_clock(clock),
        env_names: Vec::new(),
        delivery: Delivery::default(),
        later: BTreeMap::new(),
        later_seq: 0,
        client: None,
        oracle: None,
        stream_checks: 0,
        ingest: Vec::new(),
        etcd,
        etcd_store,
        lease_watch: None,
        deployments: 0,
        faults: 0,
        faults_on: true,
        generation: seed,
        restarts: 0,
        lease_losses: 0,
        process_down: false,
    };
    if let Some(es) = &sim.etcd_store {
        sim.lease_watch = Some(LeaseWatch::start(es, sim.world.clone()));
    }
    sim.oracle = Some(StoreOracle::start(sim.store.inner().clone()).await);
    for id in 0..REPLICAS {
        sim.start_replica(id);
    }
    sim.elect(0).await;
    sim.world.set_ecs_faults(Some(shape.faults.ecs));
    sim.client = sim.replicas[0]
        .as_ref()
        .map(|r| StreamClient::start(r.router.clone()));

    let end = Instant::now() + shape.duration;
    let mut ticks: u64 = 0;
    while Instant::now() < end {
        sim.step(ticks).await;
        ticks += 1;
        tokio::time::sleep(TICK).await;
    }
    sim.stop_faults().await;
    let settle_end = Instant::now() + sim.shape.settle;
    while Instant::now() < settle_end {
        sim.step(ticks).await;
        ticks += 1;
        tokio::time::sleep(TICK).await;
    }
    // Deployments finish, then the runners pause and the views catch up.
    if let Some((tasks, instances)) = sim.truth().await {
        sim.check_progress(&tasks, &instances).await;
    }
    for r in sim.replicas.iter().flatten() {
        r.runner.pause();
    }
    let quiet_end = Instant::now() + sim.shape.quiesce;
    while Instant::now() < quiet_end {
        sim.step(ticks).await;
        ticks += 1;
        tokio::time::sleep(TICK).await;
    }
    sim.final_checks().await;
    let outcome = Outcome {
        seed,
        violations: sim.world.violations(),
        trace: sim.world.trace_lines(),
        events: sim.delivery.emitted,
        deployments: sim.deployments,
        faults: sim.faults,
        stream_checks: sim.stream_checks,
        restarts: sim.restarts,
        lease_losses: sim.lease_losses,
    };
    for r in sim.replicas.into_iter().flatten() {
        r.kill();
    }
    if let Some(c) = sim.client {
        c.stop();
    }
    if let Some(o) = sim.oracle {
        o.stop();
    }
    if let Some(l) = sim.lease_watch {
        l.stop();
    }
    outcome
}

impl Sim {
    fn at_later(&mut self, after: Duration, what: Later) {
        self.later_seq += 1;
        self.later
            .insert((Instant::now() + after, self.later_seq), what);
    }

    fn start_replica(&mut self, id: usize) {
        self.generation = self.generation.wrapping_add(0x9e37_79b9);
        let store: Arc<dyn StateStore> = self.store.clone();
        let election = match &self.etcd_store {
            Some(es) => Election::Etcd(Arc::new(etcd_election(es, id))),
            None => Election::Sim(Arc::new(SimElection::new(
                store.clone(),
                crate::election::holder(id),
            ))),
        };
        if self.elections.len() <= id {
            self.elections.push(Some(election.clone()));
        } else {
            self.elections[id] = Some(election.clone());
        }
        let ecs = Arc::new(ReplicaEcs::new(
            self.world.fake.clone(),
            id,
            self.world.clone(),
            self.generation,
        ));
        let source: Arc<dyn EventSource> = Arc::new(self.world.fake.clone());
        let replica = Replica::start(Parts {
            id,
            store,
            ecs,
            source,
            election,
            clock: self.clock.clone(),
            reconcile_every: self.shape.reconcile_every,
        });
        self.ingest.push(replica.ingest.clone());
        self.replicas[id] = Some(replica);
        self.world.trace(format!("replica {id} started"));
    }

    /// Grants the lease to `id` (if its campaign can write the leader key
    /// now; otherwise [`Sim::ensure_leader`] tries again on the next tick,
    /// as a real election keeps campaigning).
    async fn elect(&mut self, id: usize) {
        if self.replicas[id].is_none() {
            return;
        }
        let Some(Some(Election::Sim(election))) = self.elections.get(id).cloned() else {
            // etcd's own election campaigns by itself.
            return;
        };
        // A replica that lost its lease without noticing yet cannot be
        // granted a new one first: a real election campaigns only once it
        // has seen its lease end (its keep-alive fails), so the new lease
        // is a new term after a deposition, never a silent switch.
        if *election.is_leader().borrow() {
            election.notice_loss();
            self.world
                .trace(format!("replica {id} notices it lost the lease"));
            // Its campaign takes a round trip: what follows the leadership
            // signal sees it end before the new term begins.
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        match election.campaign().await {
            Ok(()) => {
                self.leader = Some(id);
                self.world.set_lease_lost(id, false);
                self.world.trace(format!("replica {id} leads"));
            }
            Err(e) => self
                .world
                .trace(format!("replica {id} cannot campaign yet: {e}")),
        }
    }

    /// Makes sure someone live leads (the first live replica campaigns
    /// while nobody does).
    async fn ensure_leader(&mut self) {
        if self.etcd_store.is_some() {
            // etcd's election keeps campaigning by itself.
            return;
        }
        if let Some(l) = self.leader
            && self.replicas[l].is_some()
        {
            return;
        }
        self.leader = None;
        if let Some(id) = (0..REPLICAS).find(|i| self.replicas[*i].is_some()) {
            self.elect(id).await;
        }
    }

    async fn step(&mut self, tick: u64) {
        let faults = if self.faults_on {
            self.shape.faults.delivery
        } else {
            crate::delivery::DeliveryFaults::NONE
        };
        self.delivery
            .collect(&self.world.fake, faults, &mut self.rng);
        self.delivery.deliver(&self.world.fake, !self.faults_on);
        self.run_later().await;
        self.ensure_leader().await;
        if self.faults_on {
            self.inject().await;
        }
        if self.faults_on && self.rng.random_bool(0.03) {
            self.environment_step().await;
        }
        if tick.is_multiple_of(5) {
            self.check_continuous();
        }
        if let Some(c) = &self.client
            && let Some(why) = c.ended()
        {
            self.world
                .trace(format!("stream client ended ({why}); relisting"));
            self.restart_client();
        }
        self.check_stream();
    }

    /// Streams are exact all along: the client's view equals the store's
    /// at the revision the client has applied whole.
    fn check_stream(&mut self) {
        let (Some(c), Some(o)) = (&self.client, &self.oracle) else {
            return;
        };
        match c.with_rebuilt(|r| o.compare(r)) {
            Compared::Equal(_) => self.stream_checks += 1,
            Compared::Skipped => {}
            Compared::Differ(at, detail) => {
                self.stream_checks += 1;
                self.world.violate(
                    "streams",
                    format!("at revision {at}, the list-then-stream client differs from the store: {detail}"),
                );
            }
        }
    }

    fn restart_client(&mut self) {
        if let Some(c) = self.client.take() {
            c.stop();
        }
        self.client = self.replicas[0]
            .as_ref()
            .map(|r| StreamClient::start(r.router.clone()));
    }

    async fn run_later(&mut self) {
        let now = Instant::now();
        let mut due = Vec::new();
        while let Some(entry) = self.later.first_entry() {
            if entry.key().0 > now {
                break;
            }
            due.push(entry.remove());
        }
        for what in due {
            self.carry_out(what).await;
        }
    }

    /// Does what was scheduled for later (now).
    async fn carry_out(&mut self, what: Later) {
        match what {
            Later::StoreUp => {
                self.store.set_down(false);
                self.world.trace("store back");
            }
            // Unless it has won the lease back since.
            Later::Notice(id) if self.leader != Some(id) => {
                if let Some(Some(Election::Sim(e))) = self.elections.get(id) {
                    e.notice_loss();
                }
                self.world
                    .trace(format!("replica {id} notices it lost the lease"));
            }
            Later::Notice(_) => {}
            // Unless the whole process restarted since.
            Later::Restart(id) if self.replicas[id].is_some() || self.process_down => {}
            Later::Restart(id) => {
                self.start_replica(id);
                if id == 0 {
                    self.restart_client();
                }
                self.ensure_leader().await;
            }
            Later::ProcessBack => self.process_back().await,
            Later::EtcdMembersBack(members) => self.etcd_members_back(&members).await,
        }
    }

    /// The process on the memory store dies: every replica in it (the
    /// simulation's replicas share its store, so they are all in it), and
    /// everything its store held. Its operator removes the tasks of the
    /// environments it forgot while it is down, so the next ones have room.
    async fn restart_process(&mut self) {
        self.process_down = true;
        self.leader = None;
        for id in 0..REPLICAS {
            if let Some(r) = self.replicas[id].take() {
                r.kill();
            }
            self.world.set_lease_lost(id, true);
        }
        // Nobody is left to notice a loss or to restart alone.
        self.later
            .retain(|_, l| !matches!(l, Later::Notice(_) | Later::Restart(_)));
        if let Some(c) = self.client.take() {
            c.stop();
        }
        if let Some(o) = self.oracle.take() {
            o.stop();
        }
        let forgotten = std::mem::take(&mut self.env_names);
        self.world.forget_envs(self.restarts + 1);
        self.world.trace(format!(
            "the process on the memory store dies with its store ({} environment(s) forgotten)",
            forgotten.len()
        ));
        let fake = self.world.fake.clone();
        let live = fake
            .list_all_tasks(&TaskListFilter {
                cluster: CLUSTER.into(),
                desired_status: Some(TaskStatus::Running),
                ..TaskListFilter::default()
            })
            .await
            .unwrap_or_default();
        let mut removed = 0;
        for arn in live {
            if fake
                .stop_task(CLUSTER, &arn, "operator: environment forgotten")
                .await
                .is_ok()
            {
                removed += 1;
            }
        }
        self.world
            .trace(format!("the operator stops the {removed} task(s) it left"));
        let secs = self.rng.random_range(5..30);
        self.at_later(Duration::from_secs(secs), Later::ProcessBack);
        self.faults += 1;
    }

    /// A new process starts on an empty memory store: its replicas rebuild
    /// their views from ECS (bootstrap reconcile, then events) and elect a
    /// leader on the new store.
    async fn process_back(&mut self) {
        if !self.process_down {
            return;
        }
        self.restarts += 1;
        let inner = memory_store(1 + self.restarts, &self.clock);
        self.oracle = Some(StoreOracle::start(inner.clone()).await);
        self.store = Arc::new(FaultyStore::new(inner));
        let shared: Arc<dyn StateStore> = self.store.clone();
        self.envs = EnvironmentStore::new(shared).with_clock(self.clock.clone());
        self.process_down = false;
        self.world.trace(format!(
            "a new process starts on an empty memory store (epoch {})",
            1 + self.restarts
        ));
        for id in 0..REPLICAS {
            self.start_replica(id);
        }
        self.restart_client();
        self.ensure_leader().await;
    }

    async fn inject(&mut self) {
        let f = self.shape.faults;
        let roll: f64 = self.rng.random();
        let etcd_down = self
            .later
            .values()
            .any(|l| matches!(l, Later::StoreUp | Later::EtcdMembersBack(_)));
        if f.store_outages && roll < 0.003 && !etcd_down {
            let secs = self.rng.random_range(5..40);
            if let Some(cluster) = &mut self.etcd {
                // etcd goes away for real: two of its three members are
                // lost, so the store, the leases and the election's own
                // client all lose their quorum.
                let keep = self.rng.random_range(0..3);
                let lost: Vec<usize> = (0..3).filter(|m| *m != keep).collect();
                for m in &lost {
                    if let Err(e) = cluster.kill(*m) {
                        self.world
                            .trace(format!("cannot kill etcd member {m}: {e}"));
                    }
                }
                self.world.trace(format!(
                    "etcd loses its quorum (members {lost:?}) for {secs}s"
                ));
                self.at_later(Duration::from_secs(secs), Later::EtcdMembersBack(lost));
            } else {
                self.store.set_down(true);
                self.world.trace(format!("store down for {secs}s"));
                self.at_later(Duration::from_secs(secs), Later::StoreUp);
            }
            self.faults += 1;
        } else if f.lease_losses && roll < 0.006 {
            self.depose().await;
        } else if f.replica_kills && roll < 0.008 {
            let id = self.rng.random_range(0..REPLICAS);
            if let Some(r) = self.replicas[id].take() {
                r.kill();
                // On etcd its election stops with it: no more keep-alives,
                // so its key lingers until the lease expires.
                if self.etcd_store.is_some() {
                    self.elections[id] = None;
                }
                self.world.set_lease_lost(id, true);
                self.world.trace(format!("replica {id} killed"));
                let secs = self.rng.random_range(5..30);
                self.at_later(Duration::from_secs(secs), Later::Restart(id));
                self.faults += 1;
                if self.leader == Some(id) {
                    self.leader = None;
                    // The lease lapses after its TTL; then the other campaigns.
                    tokio::time::sleep(NOTICE).await;
                    self.ensure_leader().await;
                }
            }
        } else if f.memory_restarts && self.etcd.is_none() && !self.process_down && roll < 0.009 {
            self.restart_process().await;
        } else if f.store_outages
            && roll < 0.01
            && let Some(cluster) = &mut self.etcd
            && !self
                .later
                .values()
                .any(|l| matches!(l, Later::EtcdMembersBack(_)))
        {
            // An etcd member is lost (the other two keep quorum), then
            // comes back on its data.
            let member = self.rng.random_range(0..3);
            match cluster.kill(member) {
                Ok(()) => {
                    self.world.trace(format!("etcd member {member} lost"));
                    let secs = self.rng.random_range(5..30);
                    self.at_later(
                        Duration::from_secs(secs),
                        Later::EtcdMembersBack(vec![member]),
                    );
                }
                Err(e) => self
                    .world
                    .trace(format!("cannot kill etcd member {member}: {e}")),
            }
            self.faults += 1;
        } else if f.instance_churn && roll < 0.04 {
            self.churn_instances();
        }
    }

    /// The leader loses its lease now and notices within [`NOTICE`]; the
    /// other live replica takes over at once.
    async fn depose(&mut self) {
        if let Some(es) = &self.etcd_store {
            // etcd's own lease: revoked now; blox's election notices and
            // whoever campaigns first leads next.
            match revoke_leader_lease(es).await {
                Ok(Some(old)) => {
                    self.world.set_lease_lost(old, true);
                    self.world
                        .trace(format!("replica {old} loses its lease (revoked at etcd)"));
                    self.faults += 1;
                    self.lease_losses += 1;
                }
                Ok(None) => {}
                Err(e) => self.world.trace(format!("cannot revoke the lease: {e}")),
            }
            return;
        }
        let Some(old) = self.leader else { return };
        let Some(next) = (0..REPLICAS).find(|i| *i != old && self.replicas[*i].is_some()) else {
            return;
        };
        self.world.set_lease_lost(old, true);
        self.world.trace(format!("replica {old} loses its lease"));
        let ms = self.rng.random_range(0..=NOTICE.as_millis() as u64);
        self.at_later(Duration::from_millis(ms), Later::Notice(old));
        self.leader = None;
        self.elect(next).await;
        self.faults += 1;
        self.lease_losses += 1;
    }

    async fn etcd_members_back(&mut self, members: &[usize]) {
        if let Some(cluster) = &mut self.etcd {
            match cluster.restart_together(members).await {
                Ok(()) => self.world.trace(format!("etcd members {members:?} back")),
                Err(e) => self.world.violate(
                    "setup",
                    format!("etcd members {members:?} cannot restart: {e}"),
                ),
            }
        }
    }

    fn churn_instances(&mut self) {
        let fake = &self.world.fake;
        let arns = fake.instance_arns(CLUSTER).unwrap_or_default();
        self.faults += 1;
        let pick = |rng: &mut SmallRng| -> Option<Arn> {
            (!arns.is_empty()).then(|| arns[rng.random_range(0..arns.len())].clone())
        };
        match self.rng.random_range(0..4) {
            0 => {
                if let Ok(i) = fake.add_instance(CLUSTER, InstanceSpec::new()) {
                    self.world.trace(format!(
                        "instance {} joins",
                        short(i.container_instance_arn.as_str())
                    ));
                }
            }
            1 => {
                if let Some(a) = pick(&mut self.rng) {
                    let _ = fake.drain(&a);
                    self.world
                        .trace(format!("instance {} drains", short(a.as_str())));
                }
            }
            2 => {
                if let Some(a) = pick(&mut self.rng) {
                    let _ = fake.activate(&a);
                    self.world
                        .trace(format!("instance {} active", short(a.as_str())));
                }
            }
            _ => {
                if arns.len() > self.shape.instances / 2
                    && let Some(a) = pick(&mut self.rng)
                {
                    let _ = fake.deregister_instance(&a);
                    self.world
                        .trace(format!("instance {} leaves", short(a.as_str())));
                }
            }
        }
    }

    fn trigger_runners(&self) {
        for r in self.replicas.iter().flatten() {
            r.runner.trigger();
        }
    }

    /// Creates, updates and deploys, or deletes an environment.
    async fn environment_step(&mut self) {
        if self.process_down {
            return;
        }
        let n = self.env_names.len();
        let create = n < self.shape.environments && (n == 0 || self.rng.random_bool(0.5));
        if create {
            let name = format!("env{}", self.rng.random_range(0..1000));
            if self.env_names.contains(&name) {
                return;
            }
            // A rollout bound an operator would pick at this size.
            let bound = u32::try_from(self.shape.instances / 10)
                .unwrap_or(u32::MAX)
                .max(1);
            let req = NewEnvironment::new(name.clone(), CLUSTER, format!("{name}:1"))
                .max_unavailable(bound);
            if let Ok(env) = self.envs.create(req).await {
                self.world.update_env(&name, |_| {});
                self.env_names.push(name.clone());
                self.deploy(&name, &env.deployment_token).await;
            }
            return;
        }
        if n == 0 {
            return;
        }
        let name = self.env_names[self.rng.random_range(0..n)].clone();
        if self.rng.random_bool(0.8) {
            let rev = self.rng.random_range(2..50);
            if let Ok(env) = self
                .envs
                .update_task_definition(&name, &format!("{name}:{rev}"))
                .await
            {
                self.world.trace(format!("{name} -> {name}:{rev}"));
                self.deploy(&name, &env.deployment_token).await;
            }
        } else {
            // The model first: stops may begin as soon as the store has it.
            self.world.update_env(&name, |e| e.deleting = true);
            if self.envs.delete(&name, true).await.is_ok() {
                self.world.trace(format!("{name} deleted with stopTasks"));
                self.env_names.retain(|e| *e != name);
            } else {
                self.world.update_env(&name, |e| e.deleting = false);
            }
        }
        self.trigger_runners();
    }

    async fn deploy(&mut self, name: &str, token: &str) {
        match self.envs.create_deployment(name, token).await {
            Ok(dep) => {
                self.deployments += 1;
                self.world.update_env(name, |e| {
                    e.deployments.insert(dep.id.clone());
                    e.active = Some(dep.id.clone());
                });
                self.world.trace(format!(
                    "{name} deploys {} ({})",
                    dep.id, dep.task_definition
                ));
                self.trigger_runners();
            }
            Err(e) => self.world.trace(format!("{name}: deployment failed: {e}")),
        }
    }

    fn check_continuous(&self) {
        let fake = &self.world.fake;
        let mut instances = fake.instance_arns(CLUSTER).unwrap_or_default();
        instances.sort();
        self.world.check_one_task(&instances);
        for r in self.replicas.iter().flatten() {
            // Decoded after the view's lock, which the replica's writer needs.
            let tasks: Vec<(Arn, bool)> = r
                .cache
                .with_view(|v| v.tasks().cloned().collect::<Vec<_>>())
                .iter()
                .map(|e| {
                    let t = e.value();
                    (t.task_arn.clone(), t.is_live())
                })
                .collect();
            self.world.check_no_resurrection(r.id, &tasks);
        }
    }

    async fn stop_faults(&mut self) {
        self.faults_on = false;
        self.world.set_ecs_faults(None);
        self.store.set_down(false);
        let pending: Vec<Later> = std::mem::take(&mut self.later).into_values().collect();
        for what in pending {
            self.carry_out(what).await;
        }
        self.ensure_leader().await;
        self.world.trace("faults stop");
    }

    /// Every task and instance ECS has (faults are off: listings are exact).
    async fn truth(
        &self,
    ) -> Option<(
        BTreeMap<Arn, blox_core::model::Task>,
        BTreeMap<Arn, blox_core::model::ContainerInstance>,
    )> {
        let fake = &self.world.fake;
        let mut tasks = BTreeMap::new();
        for desired in [TaskStatus::Running, TaskStatus::Stopped] {
            let arns = fake
                .list_all_tasks(&TaskListFilter {
                    cluster: CLUSTER.into(),
                    desired_status: Some(desired),
                    ..TaskListFilter::default()
                })
                .await
                .ok()?;
            for chunk in arns.chunks(100) {
                for t in fake.describe_tasks(CLUSTER, chunk).await.ok()? {
                    tasks.insert(t.task_arn.clone(), t);
                }
            }
        }
        let mut instances = BTreeMap::new();
        let arns = fake.list_all_container_instances(CLUSTER).await.ok()?;
        for chunk in arns.chunks(100) {
            for i in fake
                .describe_container_instances(CLUSTER, chunk)
                .await
                .ok()?
            {
                instances.insert(i.container_instance_arn.clone(), i);
            }
        }
        Some((tasks, instances))
    }

    async fn final_checks(&mut self) {
        let w = self.world.clone();
        let Some((tasks, instances)) = self.truth().await else {
            w.violate("converge", "cannot read the fake ECS");
            return;
        };
        for r in self.replicas.iter().flatten() {
            let id = r.id;
            let mut wrong = Vec::new();
            let (view_tasks, view_instances) = r.cache.with_view(|v| {
                let tasks: Vec<_> = v.tasks().cloned().collect();
                let instances: Vec<_> = v.instances().cloned().collect();
                (tasks, instances)
            });
            let view_tasks: HashMap<Arn, Arc<Task>> = view_tasks
                .iter()
                .map(|e| {
                    let t = e.value();
                    (t.task_arn.clone(), t)
                })
                .collect();
            let view_instances: HashMap<Arn, Arc<ContainerInstance>> = view_instances
                .iter()
                .map(|e| {
                    let i = e.value();
                    (i.container_instance_arn.clone(), i)
                })
                .collect();
            for (arn, t) in &tasks {
                let live = t.is_live();
                match view_tasks.get(arn) {
                    Some(e) if e.is_live() != live || e.version != t.version => {
                        wrong.push(format!(
                            "task {arn}: view v{:?} {:?}, ECS v{:?} {:?}",
                            e.version, e.last_status, t.version, t.last_status
                        ));
                    }
                    None if live => {
                        wrong.push(format!("task {arn} live at ECS, missing from the view"))
                    }
                    _ => {}
                }
            }
            for e in view_tasks.values() {
                if e.is_live() && !tasks.contains_key(&e.task_arn) {
                    wrong.push(format!(
                        "task {} live in the view, unknown to ECS",
                        e.task_arn
                    ));
                }
            }
            for (arn, i) in &instances {
                match view_instances.get(arn) {
                    Some(e) if e.status != i.status => wrong.push(format!(
                        "instance {arn}: view {:?}, ECS {:?}",
                        e.status, i.status
                    )),
                    None => wrong.push(format!("instance {arn} missing from the view")),
                    _ => {}
                }
            }
            for e in view_instances.values() {
                if e.status != InstanceStatus::Inactive
                    && !instances.contains_key(&e.container_instance_arn)
                {
                    wrong.push(format!(
                        "instance {} {:?} in the view, not listed by ECS",
                        e.container_instance_arn, e.status
                    ));
                }
            }
            for line in wrong.iter().take(5) {
                w.violate("converge", format!("replica {id}: {line}"));
            }
        }
        if self.delivery.pending() > 0 || w.fake.queued_events() > 0 {
            w.violate(
                "nothing-lost",
                format!(
                    "{} events undelivered and {} messages still queued {:?} after the runners paused",
                    self.delivery.pending(),
                    w.fake.queued_events(),
                    self.shape.quiesce
                ),
            );
        }
        let deleted: u64 = self.ingest.iter().map(|c| c.snapshot().deleted).sum();
        // A message received twice (its first receiver was slow, or
        // killed) may be deleted twice: SQS accepts an older receipt handle.
        if deleted < self.delivery.delivered {
            w.violate(
                "nothing-lost",
                format!(
                    "{} messages delivered, only {deleted} deleted after being applied, found stale or malformed",
                    self.delivery.delivered
                ),
            );
        }
        if let (Some(c), Some(r)) = (&self.client, &self.replicas[0]) {
            let streamed = c.view();
            let view: BTreeMap<String, u64> = r
                .cache
                .with_view(|v| v.tasks().cloned().collect::<Vec<_>>())
                .iter()
                .map(|e| {
                    let t = e.value();
                    (t.task_arn.to_string(), t.version.unwrap_or(0))
                })
                .collect();
            if streamed != view {
                w.violate(
                    "streams",
                    format!(
                        "once settled, the list-then-stream client differs from the view: {}",
                        difference(&view, &streamed)
                    ),
                );
            }
        }
    }

    /// No stall: once settled, every environment's active deployment has a
    /// task on every ACTIVE instance with its agent connected.
    async fn check_progress(
        &self,
        tasks: &BTreeMap<Arn, blox_core::model::Task>,
        instances: &BTreeMap<Arn, blox_core::model::ContainerInstance>,
    ) {
        for name in &self.env_names {
            let Ok(env) = self.envs.get(name).await else {
                continue;
            };
            let Some(active) = env.active_deployment else {
                continue;
            };
            let missing = instances
                .values()
                .filter(|i| i.status == InstanceStatus::Active && i.agent_connected)
                .filter(|i| {
                    !tasks.values().any(|t| {
                        t.is_live()
                            && t.started_by.as_deref() == Some(active.as_str())
                            && t.container_instance_arn.as_ref() == Some(&i.container_instance_arn)
                    })
                })
                .count();
            if missing > 0 {
                self.world.violate(
                    "stall",
                    format!(
                        "{name}: deployment {active} has no task on {missing} ACTIVE instance(s) {:?} after faults stopped",
                        self.shape.settle
                    ),
                );
            }
        }
    }
}
