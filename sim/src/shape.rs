//! What a run simulates: its size, its store, how long, and which faults.

use std::time::Duration;

use crate::delivery::DeliveryFaults;
use crate::ecs::EcsFaults;

/// Which store the replicas share.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreKind {
    /// One in-memory store, on tokio's paused clock (fast, replayable).
    Memory,
    /// A real etcd server with its default limits, in real time.
    Etcd,
}

/// The faults a run injects (each can be turned off, so a seed that finds
/// a known, not yet fixed gap can be kept as an ignored regression test).
#[derive(Debug, Clone, Copy)]
pub struct FaultPlan {
    /// ECS call faults.
    pub ecs: EcsFaults,
    /// Event delivery faults.
    pub delivery: DeliveryFaults,
    /// How far ECS listings lag.
    pub listing_lag: Duration,
    /// The store goes away for a while (memory: every call fails; etcd: two
    /// of its three members are lost, so it has no quorum).
    pub store_outages: bool,
    /// The leader loses its lease (memory: and notices late; etcd: its
    /// lease is revoked at etcd).
    pub lease_losses: bool,
    /// A replica is killed and restarted.
    pub replica_kills: bool,
    /// The process on the memory store restarts: it dies with the store's
    /// content (views, environments, intents, the leader key), and a new
    /// one starts on an empty store (memory shapes only).
    pub memory_restarts: bool,
    /// Instances join, drain, come back and leave.
    pub instance_churn: bool,
}

impl FaultPlan {
    /// Every fault.
    pub fn all() -> Self {
        FaultPlan {
            ecs: EcsFaults {
                throttle: 0.05,
                transient: 0.02,
                lost_start_reply: 0.05,
            },
            delivery: DeliveryFaults {
                max_delay: Duration::from_secs(20),
                duplicate: 0.1,
                redrive: 0.02,
                redrive_after: Duration::from_secs(2 * 3600),
            },
            listing_lag: Duration::from_secs(15),
            store_outages: true,
            lease_losses: true,
            replica_kills: true,
            memory_restarts: true,
            instance_churn: true,
        }
    }

    /// These faults without the named ones (`lag`, `delay`, `duplicates`,
    /// `redrive`, `throttle`, `transient`, `lost-replies`, `outages`,
    /// `lease`, `kills`, `restarts`, `churn`); an unknown name is an error.
    pub fn without(mut self, names: &[&str]) -> Result<Self, String> {
        for name in names {
            match *name {
                "lag" => self.listing_lag = Duration::ZERO,
                "delay" => self.delivery.max_delay = Duration::ZERO,
                "duplicates" => self.delivery.duplicate = 0.0,
                "redrive" => self.delivery.redrive = 0.0,
                "throttle" => self.ecs.throttle = 0.0,
                "transient" => self.ecs.transient = 0.0,
                "lost-replies" => self.ecs.lost_start_reply = 0.0,
                "outages" => self.store_outages = false,
                "lease" => self.lease_losses = false,
                "kills" => self.replica_kills = false,
                "restarts" => self.memory_restarts = false,
                "churn" => self.instance_churn = false,
                other => return Err(format!("unknown fault {other:?}")),
            }
        }
        Ok(self)
    }

    /// No faults at all (the control).
    pub fn none() -> Self {
        FaultPlan {
            ecs: EcsFaults::NONE,
            delivery: DeliveryFaults::NONE,
            listing_lag: Duration::ZERO,
            store_outages: false,
            lease_losses: false,
            replica_kills: false,
            memory_restarts: false,
            instance_churn: false,
        }
    }
}

/// One simulated run.
#[derive(Debug, Clone, Copy)]
pub struct Shape {
    /// Container instances at the start.
    pub instances: usize,
    /// Environments the driver creates (at most).
    pub environments: usize,
    /// Simulated time with faults on.
    pub duration: Duration,
    /// The store.
    pub store: StoreKind,
    /// The faults.
    pub faults: FaultPlan,
    /// Time between the leader's reconciles.
    pub reconcile_every: Duration,
    /// How long deployments get to finish once faults stop (the bound of
    /// the stall check).
    pub settle: Duration,
    /// How long the views get to catch up once the runners pause (the
    /// bound of "views converge" and "nothing lost"; more than one
    /// reconcile interval).
    pub quiesce: Duration,
}

impl Shape {
    /// A real-time run on etcd, with shorter phases.
    pub fn etcd(instances: usize, environments: usize, duration: Duration) -> Self {
        Shape {
            store: StoreKind::Etcd,
            reconcile_every: Duration::from_secs(15),
            // Real time on a loaded 2-core machine: more than an intent's
            // timeout (60 s) plus the per-instance backoffs a fault period
            // leaves behind.
            settle: Duration::from_secs(180),
            quiesce: Duration::from_secs(25),
            ..Shape::memory(instances, environments, duration)
        }
    }

    /// A memory-store run with every fault.
    pub fn memory(instances: usize, environments: usize, duration: Duration) -> Self {
        Shape {
            instances,
            environments,
            duration,
            store: StoreKind::Memory,
            faults: FaultPlan::all(),
            reconcile_every: Duration::from_secs(60),
            settle: Duration::from_secs(240),
            quiesce: Duration::from_secs(90),
        }
    }
}
