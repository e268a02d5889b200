//! A seeded fault-injection simulation of the whole blox stack.
//!
//! One seed drives one run ([`run::run`]): two daemon replicas (each with
//! its ingester, reconciler, cache, daemon scheduler runner and deployment
//! tracker, and HTTP routes) share one store (memory on tokio's paused
//! clock, or a real etcd with its default limits in real time) and one fake
//! ECS, while the driver injects the faults real ECS, SQS and etcd have
//! ([`shape::FaultPlan`]) and the invariants ([`world::World`]) are checked
//! all along and once the faults stop:
//!
//! * **one-task**: never two live tasks of one environment on one instance
//!   for longer than [`run::DUPLICATE_BOUND`];
//! * **allowed-stops**: a daemon task is stopped only in a rollout, under
//!   the draining policy, when its environment is deleted with
//!   `stopTasks`, or as a duplicate;
//! * **converge**: within [`Shape::quiesce`] of the runners pausing once faults stopped, every
//!   replica's view equals ECS, entity by entity;
//! * **streams**: a client that lists, then streams from the list's
//!   revision ([`client::StreamClient`]), has at every step exactly the
//!   store's tasks at the revision it has applied whole (compared with
//!   [`oracle::StoreOracle`], a follower of the store's own watch stopped at
//!   that revision), and once settled exactly the replica's view;
//! * **fencing**: a replica that lost its lease makes no acting ECS call
//!   (StartTask, StopTask) later than [`run::FENCE_BOUND`] after (on etcd
//!   the loss is what etcd says: [`election::LeaseWatch`]);
//! * **nothing-lost**: every event is delivered and every message deleted
//!   (applied, stale or malformed) by then;
//! * **no-resurrection**: a task a view has shown stopped never shows live
//!   again in it, across restarts of its replica and of the memory store's
//!   process;
//! * **stall**: [`Shape::settle`] after the faults stop, every active deployment has its task on
//!   every ACTIVE instance.
//!
//! Leadership: on etcd the replicas run blox's own lease-backed
//! `EtcdElection`, and the driver only revokes the leader's lease, loses
//! a member, or takes etcd's quorum away (two members killed); on the
//! memory store the driver plays the lease service ([`election`]). A
//! restart of the process on the memory store ([`FaultPlan::memory_restarts`])
//! kills every replica (they share that store, as the parts of one process
//! would) and replaces the store with an empty one of a new epoch; the new
//! replicas rebuild their views from ECS and elect a leader again.
//!
//! A violation is reported with its seed and the last steps of the run
//! ([`run::Outcome::report`]). On the memory store the same seed and shape
//! replay the run step for step: time is tokio's paused clock, every
//! random draw (the driver's, the fake ECS's, and blox's own ids, tokens
//! and jitter through [`blox_core::random`]) comes from the seed, hash maps
//! on the path hash deterministically, and blox's `select!`s poll in order.
//! The etcd store runs in real time, so there a seed replays the schedule
//! of faults, not every interleaving.

pub mod client;
pub mod delivery;
pub mod ecs;
pub mod election;
pub mod oracle;
pub mod replica;
pub mod run;
pub mod shape;
pub mod world;

pub use run::{Outcome, run, run_blocking};
pub use shape::{FaultPlan, Shape, StoreKind};
