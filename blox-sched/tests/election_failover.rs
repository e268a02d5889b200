//! Leader election on a real etcd: two runners campaign, one leads; the
//! leader dies without resigning; the other takes over after the lease TTL,
//! resolves the dead leader's intents first, and no instance ever runs two
//! tasks of the scheduler.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use blox_core::testing::{FakeEcs, InstanceSpec};
use blox_sched::election::{EtcdElection, EtcdElectionOptions, LeaderElection};
use blox_sched::runner::{Runner, RunnerGates, RunnerHandle, RunnerOptions, intent_prefix};
use blox_sched::scheduler::Fixed;
use blox_state::store::StateStore;
use blox_state::store::etcd::{EtcdOptions, EtcdStore};
use blox_state::testing::etcd_server::EtcdServer;
use support::{OnePerInstance, apply_events, live_tagged, wait_until};
use tokio::sync::watch;
use tokio::task::JoinHandle;

const PREFIX: &str = "/failover-test";
const TTL: Duration = Duration::from_secs(2);

/// Pump modes.
const ALL: u8 = 0;
const HOLD_TASKS: u8 = 1;

async fn connect(endpoint: &str) -> EtcdStore {
    EtcdStore::connect(EtcdOptions::new([endpoint.to_owned()]).with_prefix(PREFIX))
        .await
        .unwrap()
}

/// Feeds the fake's events to the store; in `HOLD_TASKS` mode task events
/// are held back (the view lags behind ECS) and delivered, in order, once
/// the mode is `ALL` again.
fn spawn_pump(fake: FakeEcs, store: Arc<dyn StateStore>, mode: Arc<AtomicU8>) -> JoinHandle<()> {
    tokio::spawn(async move {
        let held: Mutex<Vec<String>> = Mutex::new(Vec::new());
        loop {
            let events = fake.take_events();
            let deliver = if mode.load(Ordering::SeqCst) == HOLD_TASKS {
                let (tasks, others): (Vec<String>, Vec<String>) = events
                    .into_iter()
                    .partition(|e| e.contains("ECS Task State Change"));
                held.lock().unwrap().extend(tasks);
                others
            } else {
                let mut all = std::mem::take(&mut *held.lock().unwrap());
                all.extend(events);
                all
            };
            apply_events(store.as_ref(), deliver).await;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
}

/// One daemon process: its own etcd connection, cache, election and runner.
struct Process {
    election: Option<EtcdElection>,
    runner: JoinHandle<()>,
    follower: JoinHandle<()>,
    handle: RunnerHandle,
}

impl Process {
    async fn start(endpoint: &str, holder: &str, fake: &FakeEcs) -> Process {
        Self::start_with(
            endpoint,
            holder,
            Arc::new(fake.clone()),
            RunnerOptions {
                interval: Duration::from_millis(500),
                debounce: Duration::from_millis(50),
                intent_timeout: Duration::from_secs(60),
                ..RunnerOptions::default()
            },
        )
        .await
    }

    async fn start_with(
        endpoint: &str,
        holder: &str,
        ecs: Arc<dyn blox_core::ports::EcsApi>,
        options: RunnerOptions,
    ) -> Process {
        let etcd = connect(endpoint).await;
        let election = EtcdElection::start(
            &etcd,
            EtcdElectionOptions {
                name: "daemon".into(),
                holder: holder.into(),
                ttl: TTL,
                retry: Duration::from_millis(200),
            },
        );
        let store: Arc<dyn StateStore> = Arc::new(etcd);
        let (cache, follower) = blox_state::cache::spawn_follower(Arc::clone(&store));
        let runner = Runner::new(
            OnePerInstance::default(),
            Arc::new(Fixed("web:1".to_owned())),
            cache,
            ecs,
            store,
            RunnerGates {
                bootstrapped: watch::channel(Some(blox_sched::runner::BootstrapDone::UNGATED)).1,
                leadership: election.term(),
            },
            options,
        );
        let handle = runner.handle();
        let runner = tokio::spawn(runner.run(std::future::pending()));
        Process {
            election: Some(election),
            runner,
            follower,
            handle,
        }
    }

    fn leads(&self) -> bool {
        self.election
            .as_ref()
            .is_some_and(|e| *e.is_leader().borrow())
    }

    /// Dies without resigning: the runner stops, keep-alives stop, the
    /// lease is left to expire.
    fn kill(&mut self) {
        self.runner.abort();
        self.follower.abort();
        self.election.take();
    }
}

/// Watches the fake for an instance with two live tasks of the scheduler.
fn spawn_monitor(fake: FakeEcs, worst: Arc<AtomicUsize>, stop: Arc<AtomicBool>) -> JoinHandle<()> {
    tokio::spawn(async move {
        while !stop.load(Ordering::SeqCst) {
            for i in fake.instance_arns("c").unwrap() {
                worst.fetch_max(live_tagged(&fake, &i), Ordering::SeqCst);
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
}

fn starts_on(fake: &FakeEcs, instance: &blox_core::model::Arn) -> usize {
    fake.actions()
        .iter()
        .filter(|a| match a {
            blox_core::testing::FakeAction::Start { instances, .. } => instances.contains(instance),
            _ => false,
        })
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_follower_takes_over_after_the_lease_expires_without_double_starts() {
    let server = EtcdServer::start().await.unwrap();
    let endpoint = server.endpoint();
    let fake = FakeEcs::with_seed(11);
    fake.create_cluster("c").unwrap();
    let mut instances = fake.add_instances("c", 4, &InstanceSpec::new()).unwrap();

    let ingest: Arc<dyn StateStore> = Arc::new(connect(&endpoint).await);
    let mode = Arc::new(AtomicU8::new(ALL));
    let pump = spawn_pump(fake.clone(), Arc::clone(&ingest), Arc::clone(&mode));
    let worst = Arc::new(AtomicUsize::new(0));
    let stop_monitor = Arc::new(AtomicBool::new(false));
    let monitor = spawn_monitor(fake.clone(), Arc::clone(&worst), Arc::clone(&stop_monitor));

    let mut a = Process::start(&endpoint, "a", &fake).await;
    let mut b = Process::start(&endpoint, "b", &fake).await;
    wait_until(30, "a leader", || a.leads() || b.leads()).await;
    wait_until(30, "a task on every instance", || {
        instances.iter().all(|i| live_tagged(&fake, i) == 1)
    })
    .await;
    assert!(a.leads() != b.leads(), "exactly one leader");
    let (leader, follower) = if a.leads() {
        (&mut a, &mut b)
    } else {
        (&mut b, &mut a)
    };
    let mut status = follower.handle.watch_status();
    tokio::time::timeout(
        Duration::from_secs(30),
        status.wait_for(|s| s.waiting_for == Some(blox_sched::runner::WaitingFor::Leadership)),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(follower.handle.counters().values().started, 0);

    wait_until(30, "the first intents resolved", || {
        leader.handle.status().pending_intents == 0
    })
    .await;

    // The view starts lagging; a new instance joins and the leader starts a
    // task on it that the view does not show. Then the leader dies.
    mode.store(HOLD_TASKS, Ordering::SeqCst);
    let late = fake
        .add_instance("c", InstanceSpec::new())
        .unwrap()
        .container_instance_arn;
    instances.push(late.clone());
    wait_until(30, "a start on the new instance", || {
        live_tagged(&fake, &late) == 1
    })
    .await;
    let prefix = intent_prefix("one-per-instance");
    // Earlier instances' intents may still await the runner's next cycle to
    // be resolved; what matters is that the in-flight start has one.
    let intents = ingest.kv_list(&prefix).await.unwrap().items;
    let records: Vec<blox_sched::runner::IntentRecord> = intents
        .iter()
        .map(|e| serde_json::from_slice(&e.value).unwrap())
        .collect();
    assert!(
        records.iter().any(|r| r.instance == late),
        "the in-flight start on the new instance has an intent: {records:?}"
    );
    leader.kill();

    wait_until(30, "the follower to lead", || follower.leads()).await;
    tokio::time::timeout(
        Duration::from_secs(30),
        status.wait_for(|s| s.leader && s.waiting_for.is_none()),
    )
    .await
    .unwrap()
    .unwrap();
    // Let the new leader run several cycles while the view still lags.
    let cycles = follower.handle.counters().values().cycles;
    wait_until(30, "more cycles", || {
        follower.handle.counters().values().cycles >= cycles + 5
    })
    .await;
    assert_eq!(live_tagged(&fake, &late), 1);
    assert_eq!(
        starts_on(&fake, &late),
        1,
        "the inherited intent held the start"
    );
    // Intents of the earlier instances may stay until the view catches up
    // (their tasks' events are held too); they are resolved below.

    // The view catches up: the intent is resolved.
    mode.store(ALL, Ordering::SeqCst);
    let store = Arc::clone(&ingest);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !store.kv_list(&prefix).await.unwrap().items.is_empty() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "intent never resolved"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // The new leader acts: a crashed task is replaced.
    let victim = fake
        .tasks_on(&instances[0])
        .into_iter()
        .find(|t| t.is_live())
        .unwrap();
    fake.crash_task(&victim.task_arn).unwrap();
    wait_until(30, "a replacement", || {
        fake.tasks_on(&instances[0])
            .iter()
            .any(|t| t.is_live() && t.task_arn != victim.task_arn)
    })
    .await;
    assert!(follower.handle.counters().values().started >= 1);

    stop_monitor.store(true, Ordering::SeqCst);
    monitor.await.unwrap();
    assert_eq!(
        worst.load(Ordering::SeqCst),
        1,
        "never two tasks on one instance"
    );

    follower.election.as_ref().unwrap().resign().await;
    assert!(!follower.leads());
    let leader_key = blox_sched::election::leader_key("daemon");
    assert!(ingest.kv_get(&leader_key).await.unwrap().is_none());
    pump.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_whose_key_is_deleted_steps_down_at_once_and_campaigns_again() {
    let server = EtcdServer::start().await.unwrap();
    let etcd = connect(&server.endpoint()).await;
    let election = EtcdElection::start(
        &etcd,
        EtcdElectionOptions {
            name: "solo".into(),
            holder: "me".into(),
            ttl: TTL,
            retry: Duration::from_millis(100),
        },
    );
    let mut term = election.term();
    let first = tokio::time::timeout(Duration::from_secs(10), term.wait_for(|t| t.is_some()))
        .await
        .unwrap()
        .unwrap()
        .clone()
        .unwrap();
    let stored = etcd.kv_get(&first.key).await.unwrap().unwrap();
    assert_eq!(stored.revision, first.revision);

    let mut leading = election.is_leader();
    etcd.kv_delete(&first.key, None).await.unwrap();
    // The lease is still kept alive, so only noticing the deletion can end
    // this term: a generous deadline still tests that.
    tokio::time::timeout(Duration::from_secs(30), leading.wait_for(|l| !*l))
        .await
        .expect("stepped down when its key was deleted")
        .unwrap();
    let second = tokio::time::timeout(
        Duration::from_secs(10),
        term.wait_for(|t| t.as_ref().is_some_and(|t| t.revision != first.revision)),
    )
    .await
    .unwrap()
    .unwrap()
    .clone()
    .unwrap();
    assert!(
        second.revision.seq > first.revision.seq,
        "a new term, a new fencing token"
    );
    election.resign().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resigning_hands_leadership_over_without_waiting_for_the_ttl() {
    let server = EtcdServer::start().await.unwrap();
    let options = |holder: &str| EtcdElectionOptions {
        name: "handover".into(),
        holder: holder.into(),
        ttl: Duration::from_secs(30),
        retry: Duration::from_millis(100),
    };
    let a = EtcdElection::start(&connect(&server.endpoint()).await, options("a"));
    let mut a_leads = a.is_leader();
    tokio::time::timeout(Duration::from_secs(10), a_leads.wait_for(|l| *l))
        .await
        .unwrap()
        .unwrap();
    let b = EtcdElection::start(&connect(&server.endpoint()).await, options("b"));
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!*b.is_leader().borrow(), "one leader at a time");
    a.resign().await;
    let mut b_leads = b.is_leader();
    // Far less than the 30 s TTL: the key was deleted on resign.
    tokio::time::timeout(Duration::from_secs(5), b_leads.wait_for(|l| *l))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(b.term().borrow().as_ref().unwrap().holder, "b");
    b.resign().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_that_loses_etcd_steps_down() {
    let server = EtcdServer::start().await.unwrap();
    let etcd = connect(&server.endpoint()).await;
    let election = EtcdElection::start(
        &etcd,
        EtcdElectionOptions {
            name: "lonely".into(),
            holder: "me".into(),
            ttl: TTL,
            retry: Duration::from_millis(100),
        },
    );
    let mut leading = election.is_leader();
    tokio::time::timeout(Duration::from_secs(10), leading.wait_for(|l| *l))
        .await
        .unwrap()
        .unwrap();
    drop(server);
    // Keep-alives fail or time out (every TTL/3, each bounded by TTL/3), so
    // by construction leadership goes within about 2/3 of the TTL; the
    // deadline here is generous so a loaded machine cannot fail the test.
    tokio::time::timeout(Duration::from_secs(30), leading.wait_for(|l| !*l))
        .await
        .expect("stepped down after losing etcd")
        .unwrap();
    assert!(election.term().borrow().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_cut_from_etcd_starts_nothing_after_the_bound_while_ecs_throttles() {
    let server = EtcdServer::start().await.unwrap();
    let endpoint = server.endpoint();
    let fake = FakeEcs::with_seed(12);
    fake.create_cluster("c").unwrap();
    let instances = fake.add_instances("c", 2, &InstanceSpec::new()).unwrap();
    let ingest: Arc<dyn StateStore> = Arc::new(connect(&endpoint).await);
    let pump = spawn_pump(
        fake.clone(),
        Arc::clone(&ingest),
        Arc::new(AtomicU8::new(ALL)),
    );
    let options = RunnerOptions {
        interval: Duration::from_millis(500),
        debounce: Duration::from_millis(50),
        intent_timeout: Duration::from_secs(6),
        throttle_retries: 30,
        throttle_backoff: Duration::from_millis(200),
        ..RunnerOptions::default()
    };

    // A leads, through a proxy that can be cut; B follows, on etcd directly.
    let proxy = support::proxy::Proxy::start(&endpoint).await;
    let a_ecs = support::Recording::new(fake.clone());
    let a = Process::start_with(
        &proxy.endpoint(),
        "a",
        Arc::new(a_ecs.clone()),
        options.clone(),
    )
    .await;
    wait_until(30, "a leads", || a.leads()).await;
    wait_until(30, "a task on every instance", || {
        instances.iter().all(|i| live_tagged(&fake, i) == 1)
    })
    .await;
    let b = Process::start_with(&endpoint, "b", Arc::new(fake.clone()), options).await;
    let mut b_status = b.handle.watch_status();
    tokio::time::timeout(
        Duration::from_secs(30),
        b_status.wait_for(|s| s.waiting_for == Some(blox_sched::runner::WaitingFor::Leadership)),
    )
    .await
    .unwrap()
    .unwrap();

    // ECS throttles every start; a new instance joins; A writes its intent
    // and keeps being throttled. Then A loses etcd, but not ECS.
    fake.fail_always("StartTask", blox_core::testing::InjectedError::Throttled)
        .unwrap();
    let late = fake
        .add_instance("c", InstanceSpec::new())
        .unwrap()
        .container_instance_arn;
    let a_calls_on = |i: &blox_core::model::Arn| -> Vec<tokio::time::Instant> {
        a_ecs
            .starts
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, on)| on.contains(i))
            .map(|(t, _)| *t)
            .collect()
    };
    wait_until(30, "A's first attempt on the new instance", || {
        !a_calls_on(&late).is_empty()
    })
    .await;
    let first = a_calls_on(&late)[0];
    proxy.cut();

    // B takes over; ECS stops throttling once B leads.
    wait_until(30, "B leads", || b.leads()).await;
    tokio::time::timeout(
        Duration::from_secs(30),
        b_status.wait_for(|s| s.leader && s.waiting_for.is_none()),
    )
    .await
    .unwrap()
    .unwrap();
    fake.clear_failures();
    wait_until(60, "a task on the new instance", || {
        live_tagged(&fake, &late) >= 1
    })
    .await;
    // Long enough for A's unfenced retries (doubling from 200 ms) to land.
    tokio::time::sleep(Duration::from_secs(8)).await;

    let last = *a_calls_on(&late).last().unwrap();
    assert!(
        last <= first + TTL + Duration::from_secs(1),
        "A called StartTask {:?} after its intent, past the bound of the lease TTL",
        last - first
    );
    assert!(!a.leads());
    assert_eq!(live_tagged(&fake, &late), 1, "one task on the new instance");
    b.election.as_ref().unwrap().resign().await;
    pump.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_waits_on_one_lease_after_the_leader_keys_revision_is_compacted() {
    let server = EtcdServer::start().await.unwrap();
    let options = |holder: &str| EtcdElectionOptions {
        name: "compacted".into(),
        holder: holder.into(),
        ttl: Duration::from_secs(30),
        retry: Duration::from_millis(100),
    };
    let etcd = connect(&server.endpoint()).await;
    let a = EtcdElection::start(&etcd, options("a"));
    let mut a_leads = a.is_leader();
    tokio::time::timeout(Duration::from_secs(10), a_leads.wait_for(|l| *l))
        .await
        .unwrap()
        .unwrap();
    // Later writes, then a compaction past the leader key's revision.
    for i in 0..5 {
        etcd.kv_put(&format!("other/{i}"), bytes::Bytes::from_static(b"x"), None)
            .await
            .unwrap();
    }
    let mut kv = etcd.client().kv_client();
    let now = kv
        .get("any", None)
        .await
        .unwrap()
        .header()
        .unwrap()
        .revision();
    kv.compact(now, None).await.unwrap();

    let b = EtcdElection::start(&connect(&server.endpoint()).await, options("b"));
    // A follower whose watch starts at the compacted revision is refused
    // and campaigns again every `retry`, with a new lease each time.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(!*b.is_leader().borrow());
    assert_eq!(b.campaigns(), 1, "the follower waits on one lease");

    a.resign().await;
    let mut b_leads = b.is_leader();
    tokio::time::timeout(Duration::from_secs(10), b_leads.wait_for(|l| *l))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(b.campaigns(), 1);
    b.resign().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_keeps_its_term_through_a_transient_stream_error() {
    let server = EtcdServer::start().await.unwrap();
    let proxy = support::proxy::Proxy::start(&server.endpoint()).await;
    let election = EtcdElection::start(
        &connect(&proxy.endpoint()).await,
        EtcdElectionOptions {
            name: "steady".into(),
            holder: "me".into(),
            ttl: Duration::from_secs(6),
            retry: Duration::from_millis(100),
        },
    );
    let mut term = election.term();
    let first = tokio::time::timeout(Duration::from_secs(10), term.wait_for(|t| t.is_some()))
        .await
        .unwrap()
        .unwrap()
        .clone()
        .unwrap();
    let mut leading = election.is_leader();
    let deposed = tokio::spawn(async move { leading.wait_for(|l| !*l).await.is_ok() });

    // Every connection drops at once (keep-alive and watch streams fail);
    // new connections succeed.
    proxy.interrupt();
    // Two TTLs: renewals and the watch recover, or the lease would be gone.
    tokio::time::sleep(Duration::from_secs(12)).await;

    assert!(!deposed.is_finished(), "the leader deposed itself");
    assert_eq!(election.campaigns(), 1);
    assert_eq!(
        election.term().borrow().as_ref().map(|t| t.revision),
        Some(first.revision),
        "the same term"
    );
    let stored = connect(&server.endpoint())
        .await
        .kv_get(&first.key)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.revision, first.revision, "its key is still there");
    election.resign().await;
    deposed.abort();
}
