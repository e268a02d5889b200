//! The conformance suite of [`StateStore`] backends.
//!
//! Every check is a public async function generic over the store, so each
//! backend runs the same suite:
//!
//! * [`conformance_tests!`](crate::conformance_tests) generates one
//!   `#[tokio::test]` per check from an async factory giving a fresh, empty
//!   store (`conformance_tests!(make_store);`, optionally with attributes
//!   such as `#[ignore]` first and `, random_size = RandomSize::small()`
//!   last);
//! * [`run_all`] runs them all in one test.
//!
//! Compaction depends on how a backend bounds its history, so
//! [`watch_from_compacted_revision_is_an_error`] takes the way to force it as
//! an argument and is not part of the generated set: call it yourself.
//!
//! Checks panic (fail the test) with a message on any violation; they never
//! sleep, and wait for watch events with a generous deadline.

// A test kit: failing loudly is its purpose.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;

use blox_core::model::{
    Arn, ContainerInstance, Entity, EntityKind, InstanceStatus, ResourceKind, Task, TaskStatus,
    Timestamp,
};
use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use rand::rngs::SmallRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

use crate::store::{
    ApplyOutcome, Change, Expiry, ExpiryReport, Filter, KvEvent, KvExpect, KvOp, KvTxn,
    KvTxnOutcome, Result, Revision, StaleReason, StateStore, StoreError, WatchEvent,
};
use crate::testing::ManualClock;
use blox_core::clock::Clock;

/// The account of the fixtures.
pub const ACCOUNT: &str = "111122223333";
/// A second account, for checks that keys do not collide across accounts.
pub const OTHER_ACCOUNT: &str = "444455556666";
/// The region of the fixtures.
pub const REGION: &str = "us-east-1";
/// A second region.
pub const OTHER_REGION: &str = "eu-west-1";

/// How long a check waits for a watch event before failing.
const DEADLINE: Duration = Duration::from_secs(30);

// ----------------------------------------------------------------------------
// Fixtures
// ----------------------------------------------------------------------------

/// The ARN of a cluster in an account and region.
pub fn cluster_arn_in(account: &str, region: &str, cluster: &str) -> Arn {
    Arn::build("aws", region, account, ResourceKind::Cluster, cluster).unwrap()
}

/// The ARN of a cluster of [`ACCOUNT`] in [`REGION`].
pub fn cluster_arn(cluster: &str) -> Arn {
    cluster_arn_in(ACCOUNT, REGION, cluster)
}

/// A long-format task ARN.
pub fn task_arn_in(account: &str, region: &str, cluster: &str, id: &str) -> Arn {
    Arn::build(
        "aws",
        region,
        account,
        ResourceKind::Task,
        &format!("{cluster}/{id}"),
    )
    .unwrap()
}

/// A long-format container instance ARN.
pub fn instance_arn_in(account: &str, region: &str, cluster: &str, id: &str) -> Arn {
    Arn::build(
        "aws",
        region,
        account,
        ResourceKind::ContainerInstance,
        &format!("{cluster}/{id}"),
    )
    .unwrap()
}

/// A PENDING task in an account and region, at an ECS version.
pub fn task_in(account: &str, region: &str, cluster: &str, id: &str, version: Option<u64>) -> Task {
    let mut t = Task::new(
        task_arn_in(account, region, cluster, id),
        cluster_arn_in(account, region, cluster),
        format!("arn:aws:ecs:{region}:{account}:task-definition/app:1"),
    );
    t.version = version;
    t
}

/// A PENDING task of [`ACCOUNT`] in [`REGION`], at an ECS version.
pub fn task(cluster: &str, id: &str, version: Option<u64>) -> Task {
    task_in(ACCOUNT, REGION, cluster, id, version)
}

/// An ACTIVE container instance in an account and region, at an ECS version.
pub fn instance_in(
    account: &str,
    region: &str,
    cluster: &str,
    id: &str,
    version: Option<u64>,
) -> ContainerInstance {
    let mut i = ContainerInstance::new(
        instance_arn_in(account, region, cluster, id),
        cluster_arn_in(account, region, cluster),
    );
    i.version = version;
    i
}

/// An ACTIVE container instance of [`ACCOUNT`] in [`REGION`], at an ECS version.
pub fn instance(cluster: &str, id: &str, version: Option<u64>) -> ContainerInstance {
    instance_in(ACCOUNT, REGION, cluster, id, version)
}

// ----------------------------------------------------------------------------
// Helpers
// ----------------------------------------------------------------------------

/// Applies a put, failing the check on a store error.
async fn put<S: StateStore>(store: &S, entity: impl Into<Entity>) -> ApplyOutcome {
    store.apply(Change::put(entity)).await.expect("apply put")
}

/// Applies a delete, failing the check on a store error.
async fn delete<S: StateStore>(store: &S, arn: &Arn, version: Option<u64>) -> ApplyOutcome {
    store
        .apply(Change::delete(arn.clone(), version))
        .await
        .expect("apply delete")
}

/// The revision of an applied outcome; fails the check if it was stale.
#[track_caller]
fn applied(outcome: ApplyOutcome) -> Revision {
    match outcome {
        ApplyOutcome::Applied { revision } => revision,
        stale => panic!("expected the change to apply, got {stale:?}"),
    }
}

/// Fails the check unless the outcome is stale for this reason and version.
#[track_caller]
fn assert_stale(outcome: ApplyOutcome, reason: StaleReason, stored_version: Option<u64>) {
    assert_eq!(
        outcome,
        ApplyOutcome::Stale {
            reason,
            stored_version
        },
        "expected a stale outcome"
    );
}

/// The ECS version of the live entity, `None` if there is none.
async fn live_version<S: StateStore>(store: &S, arn: &Arn) -> Option<Option<u64>> {
    store
        .get(arn)
        .await
        .expect("get")
        .map(|v| v.entity.version())
}

async fn current<S: StateStore>(store: &S) -> Revision {
    store.current_revision().await.expect("current_revision")
}

/// The next item of a stream, waiting up to a generous deadline; fails the
/// check if the stream ends or nothing comes.
pub async fn next_item<T>(stream: &mut BoxStream<'static, Result<T>>) -> Result<T> {
    match tokio::time::timeout(DEADLINE, stream.next()).await {
        Ok(Some(item)) => item,
        Ok(None) => panic!("the stream ended"),
        Err(_) => panic!("no stream item within {DEADLINE:?}"),
    }
}

/// The next `n` events of a watch; fails the check on an error item.
async fn next_events(
    stream: &mut BoxStream<'static, Result<WatchEvent>>,
    n: usize,
) -> Vec<WatchEvent> {
    let mut events = Vec::with_capacity(n);
    for _ in 0..n {
        events.push(next_item(stream).await.expect("watch event"));
    }
    events
}

/// Writes `n` puts of fresh tasks (cluster `filler`), e.g. to push a bounded
/// history past a revision before [`watch_from_compacted_revision_is_an_error`].
pub async fn write_filler<S: StateStore>(store: &S, n: usize) {
    let base = current(store).await.seq;
    for i in 0..n {
        applied(put(store, task("filler", &format!("f-{base}-{i}"), Some(1))).await);
    }
}

/// The ARNs of a list, in order.
async fn listed<S: StateStore>(store: &S, kind: EntityKind, filter: Filter) -> Vec<Arn> {
    let mut arns: Vec<_> = store
        .list(kind, &filter)
        .await
        .expect("list")
        .items
        .into_iter()
        .map(|v| v.entity.arn().clone())
        .collect();
    arns.sort();
    arns
}

fn sorted(mut arns: Vec<Arn>) -> Vec<Arn> {
    arns.sort();
    arns
}

// ----------------------------------------------------------------------------
// Versions and tombstones
// ----------------------------------------------------------------------------

/// A put applies only over a strictly lower version; equal and lower are stale.
pub async fn versioned_apply_ignores_equal_and_lower_versions<S: StateStore>(store: &S) {
    let arn = task("web", "t1", None).task_arn;
    let r2 = applied(put(store, task("web", "t1", Some(2))).await);
    assert_stale(
        put(store, task("web", "t1", Some(2))).await,
        StaleReason::Version,
        Some(2),
    );
    assert_stale(
        put(store, task("web", "t1", Some(1))).await,
        StaleReason::Version,
        Some(2),
    );
    let got = store.get(&arn).await.unwrap().expect("stored");
    assert_eq!(got.entity.version(), Some(2));
    assert_eq!(got.revision, r2, "a stale write must not touch the entity");
    let r3 = applied(put(store, task("web", "t1", Some(3))).await);
    assert!(r3.seq > r2.seq);
    assert_eq!(live_version(store, &arn).await, Some(Some(3)));
    assert_eq!(store.get(&arn).await.unwrap().unwrap().revision, r3);
}

/// Unknown versions: they apply over nothing or over unknown (last write
/// wins), never over a known version, and a known version beats them.
pub async fn unknown_versions_apply_only_over_unknown_versions<S: StateStore>(store: &S) {
    let arn = task("web", "u", None).task_arn;
    let mut first = task("web", "u", None);
    first.started_by = Some("first".into());
    applied(put(store, first).await);
    let mut second = task("web", "u", None);
    second.started_by = Some("second".into());
    applied(put(store, second.clone()).await);
    assert_eq!(
        store.get(&arn).await.unwrap().unwrap().entity,
        Entity::from(second),
        "with both versions unknown the last write wins"
    );
    applied(put(store, task("web", "u", Some(1))).await);
    assert_stale(
        put(store, task("web", "u", None)).await,
        StaleReason::Version,
        Some(1),
    );
    assert_eq!(live_version(store, &arn).await, Some(Some(1)));

    // A tombstone of unknown version blocks unknown versions, not known ones.
    let gone = instance("web", "i-unknown", None);
    let gone_arn = gone.container_instance_arn.clone();
    applied(put(store, gone.clone()).await);
    applied(delete(store, &gone_arn, None).await);
    assert_stale(put(store, gone).await, StaleReason::Tombstone, None);
    applied(put(store, instance("web", "i-unknown", Some(1))).await);
    assert_eq!(live_version(store, &gone_arn).await, Some(Some(1)));
}

/// A tombstone blocks states of its version or lower; a higher one resurrects.
pub async fn tombstones_block_equal_and_lower_versions_but_not_higher<S: StateStore>(store: &S) {
    let arn = task("web", "t", None).task_arn;
    applied(put(store, task("web", "t", Some(3))).await);
    applied(delete(store, &arn, Some(3)).await);
    assert_eq!(store.get(&arn).await.unwrap(), None);
    assert_stale(
        put(store, task("web", "t", Some(2))).await,
        StaleReason::Tombstone,
        Some(3),
    );
    assert_stale(
        put(store, task("web", "t", Some(3))).await,
        StaleReason::Tombstone,
        Some(3),
    );
    assert_stale(
        put(store, task("web", "t", None)).await,
        StaleReason::Tombstone,
        Some(3),
    );
    assert_eq!(store.get(&arn).await.unwrap(), None);
    applied(put(store, task("web", "t", Some(4))).await);
    assert_eq!(live_version(store, &arn).await, Some(Some(4)));

    // A delete of unknown version leaves the tombstone at the stored version.
    let i = instance("web", "i1", Some(7));
    let i_arn = i.container_instance_arn.clone();
    applied(put(store, i).await);
    applied(delete(store, &i_arn, None).await);
    assert_stale(
        put(store, instance("web", "i1", Some(7))).await,
        StaleReason::Tombstone,
        Some(7),
    );
    applied(put(store, instance("web", "i1", Some(8))).await);
}

/// A delete older than the stored state is stale and leaves it in place.
pub async fn delete_is_stale_when_the_stored_state_is_newer<S: StateStore>(store: &S) {
    let arn = task("web", "t", None).task_arn;
    applied(put(store, task("web", "t", Some(5))).await);
    let before = current(store).await;
    assert_stale(
        delete(store, &arn, Some(4)).await,
        StaleReason::Version,
        Some(5),
    );
    assert_eq!(
        current(store).await,
        before,
        "a stale delete writes nothing"
    );
    assert_eq!(live_version(store, &arn).await, Some(Some(5)));
    applied(delete(store, &arn, Some(5)).await);
    assert_eq!(store.get(&arn).await.unwrap(), None);
}

/// Deleting an entity the store never had records a tombstone, so a late
/// state of that version or lower cannot create it.
pub async fn delete_of_an_absent_entity_leaves_a_tombstone<S: StateStore>(store: &S) {
    let arn = task("web", "late", None).task_arn;
    applied(delete(store, &arn, Some(7)).await);
    assert_eq!(store.get(&arn).await.unwrap(), None);
    assert_stale(
        put(store, task("web", "late", Some(6))).await,
        StaleReason::Tombstone,
        Some(7),
    );
    assert_stale(
        put(store, task("web", "late", Some(7))).await,
        StaleReason::Tombstone,
        Some(7),
    );
    assert_eq!(
        listed(store, EntityKind::Task, Filter::default()).await,
        Vec::<Arn>::new()
    );
    applied(put(store, task("web", "late", Some(8))).await);
    assert_eq!(live_version(store, &arn).await, Some(Some(8)));
}

/// Deleting a tombstone again at an equal or lower version writes nothing; a
/// higher version raises the tombstone.
pub async fn delete_of_a_tombstone_at_an_equal_or_lower_version_is_stale<S: StateStore>(store: &S) {
    let arn = instance("web", "i", None).container_instance_arn;
    applied(put(store, instance("web", "i", Some(3))).await);
    applied(delete(store, &arn, Some(3)).await);
    let before = current(store).await;
    assert_stale(
        delete(store, &arn, Some(3)).await,
        StaleReason::Tombstone,
        Some(3),
    );
    assert_stale(
        delete(store, &arn, Some(2)).await,
        StaleReason::Tombstone,
        Some(3),
    );
    assert_stale(
        delete(store, &arn, None).await,
        StaleReason::Tombstone,
        Some(3),
    );
    assert_eq!(current(store).await, before, "stale deletes write nothing");
    applied(delete(store, &arn, Some(5)).await);
    assert_stale(
        put(store, instance("web", "i", Some(5))).await,
        StaleReason::Tombstone,
        Some(5),
    );
    applied(put(store, instance("web", "i", Some(6))).await);
}

/// A soft delete (listing evidence alone) leaves a tombstone that blocks
/// only older versions: ECS's own report of the deleted version applies. A
/// hard delete of that version hardens it; a soft one never softens a hard one.
pub async fn soft_tombstones_block_only_older_versions<S: StateStore>(store: &S) {
    let arn = task("web", "soft", None).task_arn;
    let soft = |version| {
        let arn = arn.clone();
        async move {
            store
                .apply(Change::soft_delete(arn, version))
                .await
                .expect("apply soft delete")
        }
    };
    applied(put(store, task("web", "soft", Some(3))).await);
    applied(soft(Some(3)).await);
    assert_eq!(store.get(&arn).await.unwrap(), None);
    assert_stale(
        put(store, task("web", "soft", Some(2))).await,
        StaleReason::Tombstone,
        Some(3),
    );
    applied(put(store, task("web", "soft", Some(3))).await);
    assert_eq!(
        live_version(store, &arn).await,
        Some(Some(3)),
        "the deleted version itself comes back"
    );
    // Softly deleted again, then deleted for good at the same version.
    applied(soft(Some(3)).await);
    assert_stale(soft(Some(3)).await, StaleReason::Tombstone, Some(3));
    applied(delete(store, &arn, Some(3)).await);
    assert_stale(
        put(store, task("web", "soft", Some(3))).await,
        StaleReason::Tombstone,
        Some(3),
    );
    assert_stale(soft(Some(3)).await, StaleReason::Tombstone, Some(3));
    // A soft delete of a never-seen entity: a late older state stays out,
    // the deleted version gets in.
    let late = task("web", "soft-late", None).task_arn;
    applied(
        store
            .apply(Change::soft_delete(late.clone(), Some(5)))
            .await
            .unwrap(),
    );
    assert_stale(
        put(store, task("web", "soft-late", Some(4))).await,
        StaleReason::Tombstone,
        Some(5),
    );
    applied(put(store, task("web", "soft-late", Some(5))).await);
    assert_eq!(live_version(store, &late).await, Some(Some(5)));
}

// ----------------------------------------------------------------------------
// Guards
// ----------------------------------------------------------------------------

/// A guarded put applies only if the key (entity or tombstone) was last
/// written at or before the guard's revision.
pub async fn unchanged_since_guards_puts<S: StateStore>(store: &S) {
    let arn = task("web", "g", None).task_arn;
    let r1 = applied(put(store, task("web", "g", Some(1))).await);
    let r2 = applied(put(store, task("web", "g", Some(2))).await);
    let guarded =
        |v: u64, since: Revision| Change::put(task("web", "g", Some(v))).unchanged_since(since);
    assert_stale(
        store.apply(guarded(3, r1)).await.unwrap(),
        StaleReason::ModifiedSince,
        Some(2),
    );
    assert_eq!(live_version(store, &arn).await, Some(Some(2)));
    let r3 = applied(store.apply(guarded(3, r2)).await.unwrap());
    assert_eq!(store.get(&arn).await.unwrap().unwrap().revision, r3);

    // A key never written passes any guard.
    applied(
        store
            .apply(Change::put(task("web", "new", Some(1))).unchanged_since(r1))
            .await
            .unwrap(),
    );

    // A tombstone counts as the key: a guard older than the delete fails even
    // for a version the tombstone would let through.
    let d_arn = task("web", "d", None).task_arn;
    let listed_at = applied(put(store, task("web", "d", Some(1))).await);
    applied(delete(store, &d_arn, Some(1)).await);
    assert_stale(
        store
            .apply(Change::put(task("web", "d", Some(9))).unchanged_since(listed_at))
            .await
            .unwrap(),
        StaleReason::ModifiedSince,
        Some(1),
    );
    assert_eq!(store.get(&d_arn).await.unwrap(), None);
}

/// A guarded delete applies only if the key was not written after the guard.
pub async fn unchanged_since_guards_deletes<S: StateStore>(store: &S) {
    let arn = task("web", "g", None).task_arn;
    applied(put(store, task("web", "g", Some(1))).await);
    let listing = store
        .list(EntityKind::Task, &Filter::default())
        .await
        .unwrap();
    // An event updates the task after the reconciler's listing began.
    let r2 = applied(put(store, task("web", "g", Some(2))).await);
    assert_stale(
        store
            .apply(Change::delete(arn.clone(), None).unchanged_since(listing.revision))
            .await
            .unwrap(),
        StaleReason::ModifiedSince,
        Some(2),
    );
    assert_eq!(live_version(store, &arn).await, Some(Some(2)));
    applied(
        store
            .apply(Change::delete(arn.clone(), None).unchanged_since(r2))
            .await
            .unwrap(),
    );
    assert_eq!(store.get(&arn).await.unwrap(), None);

    // An absent key passes the guard and gets its tombstone.
    let absent = task("web", "absent", None).task_arn;
    applied(
        store
            .apply(Change::delete(absent.clone(), Some(4)).unchanged_since(listing.revision))
            .await
            .unwrap(),
    );
    assert_stale(
        put(store, task("web", "absent", Some(4))).await,
        StaleReason::Tombstone,
        Some(4),
    );
}

// ----------------------------------------------------------------------------
// Reads
// ----------------------------------------------------------------------------

/// `get` returns the live entity with its last write's revision, and nothing
/// for unknown or deleted ARNs.
pub async fn get_returns_live_entities_only<S: StateStore>(store: &S) {
    let t = task("web", "t", Some(1));
    let arn = t.task_arn.clone();
    assert_eq!(store.get(&arn).await.unwrap(), None);
    let r = applied(put(store, t.clone()).await);
    let got = store.get(&arn).await.unwrap().expect("live");
    assert_eq!(got.entity, Entity::from(t));
    assert_eq!(got.revision, r);
    assert_eq!(
        store
            .get(&instance("web", "t", None).container_instance_arn)
            .await
            .unwrap(),
        None,
        "an instance and a task with the same id are different keys"
    );
    applied(delete(store, &arn, Some(1)).await);
    assert_eq!(store.get(&arn).await.unwrap(), None);
}

/// ARNs of kinds the store does not keep are rejected as invalid.
pub async fn other_arn_kinds_are_invalid<S: StateStore>(store: &S) {
    let cluster = cluster_arn("web");
    assert!(matches!(
        store.get(&cluster).await,
        Err(StoreError::Invalid(_))
    ));
    assert!(matches!(
        store.apply(Change::delete(cluster, Some(1))).await,
        Err(StoreError::Invalid(_))
    ));
}

/// Instance lists honour every filter field and their combinations.
pub async fn list_filters_instances_by_every_field<S: StateStore>(store: &S) {
    let i1 = instance("prod", "i1", Some(1));
    let mut i2 = instance("prod", "i2", Some(1));
    i2.status = InstanceStatus::Draining;
    let i3 = instance("dev", "i3", Some(1));
    let i4 = instance_in(OTHER_ACCOUNT, REGION, "prod", "i4", Some(1));
    let gone = instance("prod", "gone", Some(1));
    let [a1, a2, a3, a4] = [&i1, &i2, &i3, &i4].map(|i| i.container_instance_arn.clone());
    for i in [i1, i2, i3, i4, gone.clone()] {
        applied(put(store, i).await);
    }
    applied(delete(store, &gone.container_instance_arn, Some(1)).await);
    applied(put(store, task("prod", "t", Some(1))).await);

    let f = |cluster: Option<&str>, status: Option<&str>| Filter {
        cluster: cluster.map(str::to_owned),
        status: status.map(str::to_owned),
        ..Filter::default()
    };
    let list = |filter| listed(store, EntityKind::Instance, filter);
    assert_eq!(
        list(Filter::default()).await,
        sorted(vec![a1.clone(), a2.clone(), a3.clone(), a4.clone()]),
        "lists hold live instances only, no tasks or tombstones"
    );
    assert_eq!(
        list(f(Some("prod"), None)).await,
        sorted(vec![a1.clone(), a2.clone(), a4.clone()]),
        "a cluster name matches that name in every account"
    );
    assert_eq!(
        list(f(Some(cluster_arn("prod").as_str()), None)).await,
        sorted(vec![a1.clone(), a2.clone()]),
        "a cluster ARN matches that cluster only"
    );
    assert_eq!(list(f(Some("nope"), None)).await, Vec::<Arn>::new());
    assert_eq!(list(f(None, Some("draining"))).await, vec![a2.clone()]);
    assert_eq!(list(f(None, Some("DRAINING"))).await, vec![a2.clone()]);
    assert_eq!(
        list(f(None, Some("Active"))).await,
        sorted(vec![a1.clone(), a3.clone(), a4.clone()])
    );
    assert_eq!(
        list(f(Some(cluster_arn("prod").as_str()), Some("active"))).await,
        vec![a1.clone()]
    );
    assert_eq!(
        list(f(Some("dev"), Some("draining"))).await,
        Vec::<Arn>::new()
    );
    assert_eq!(
        list(Filter {
            container_instance: Some(a3.clone()),
            ..Filter::default()
        })
        .await,
        vec![a3.clone()]
    );
    assert_eq!(
        list(Filter {
            container_instance: Some(a3.clone()),
            cluster: Some("prod".into()),
            ..Filter::default()
        })
        .await,
        Vec::<Arn>::new()
    );
    assert_eq!(
        list(Filter {
            started_by: Some("anyone".into()),
            ..Filter::default()
        })
        .await,
        Vec::<Arn>::new(),
        "startedBy applies to tasks only: no instance matches it"
    );
}

/// Task lists honour every filter field and their combinations.
pub async fn list_filters_tasks_by_every_field<S: StateStore>(store: &S) {
    let on = |c: &str, i: &str| Some(instance(c, i, None).container_instance_arn);
    let mut t1 = task("prod", "t1", Some(1));
    t1.last_status = TaskStatus::Running;
    t1.started_by = Some("sched-a".into());
    t1.container_instance_arn = on("prod", "i1");
    let mut t2 = task("prod", "t2", Some(1));
    t2.started_by = Some("sched-b".into());
    t2.container_instance_arn = on("prod", "i2");
    let mut t3 = task("dev", "t3", Some(1));
    t3.last_status = TaskStatus::Running;
    t3.started_by = Some("sched-a".into());
    t3.container_instance_arn = on("dev", "i3");
    let mut t4 = task_in(OTHER_ACCOUNT, REGION, "prod", "t4", Some(1));
    t4.last_status = TaskStatus::Stopped;
    // An old-format ARN (no cluster in it) is filtered by its clusterArn.
    let mut t5 = Task::new(
        Arn::parse(&format!(
            "arn:aws:ecs:{REGION}:{ACCOUNT}:task/old-format-id"
        ))
        .unwrap(),
        cluster_arn("prod"),
        "td",
    );
    t5.version = Some(1);
    t5.last_status = TaskStatus::Running;
    let [a1, a2, a3, a4, a5] = [&t1, &t2, &t3, &t4, &t5].map(|t| t.task_arn.clone());
    for t in [t1, t2, t3, t4, t5] {
        applied(put(store, t).await);
    }
    applied(put(store, instance("prod", "i1", Some(1))).await);

    let list = |filter| listed(store, EntityKind::Task, filter);
    let by = |cluster: Option<&str>, status: Option<&str>, started_by: Option<&str>| Filter {
        cluster: cluster.map(str::to_owned),
        status: status.map(str::to_owned),
        started_by: started_by.map(str::to_owned),
        container_instance: None,
    };
    assert_eq!(
        list(Filter::default()).await,
        sorted(vec![
            a1.clone(),
            a2.clone(),
            a3.clone(),
            a4.clone(),
            a5.clone()
        ])
    );
    assert_eq!(
        list(by(Some("prod"), None, None)).await,
        sorted(vec![a1.clone(), a2.clone(), a4.clone(), a5.clone()])
    );
    assert_eq!(
        list(by(Some(cluster_arn("prod").as_str()), None, None)).await,
        sorted(vec![a1.clone(), a2.clone(), a5.clone()])
    );
    assert_eq!(
        list(by(None, Some("running"), None)).await,
        sorted(vec![a1.clone(), a3.clone(), a5.clone()])
    );
    assert_eq!(
        list(by(None, Some("STOPPED"), None)).await,
        vec![a4.clone()]
    );
    assert_eq!(
        list(by(None, Some("Pending"), None)).await,
        vec![a2.clone()]
    );
    assert_eq!(
        list(by(None, None, Some("sched-a"))).await,
        sorted(vec![a1.clone(), a3.clone()])
    );
    assert_eq!(
        list(by(Some("prod"), None, Some("sched-a"))).await,
        vec![a1.clone()]
    );
    assert_eq!(
        list(by(Some("prod"), Some("running"), Some("sched-b"))).await,
        Vec::<Arn>::new()
    );
    assert_eq!(
        list(Filter {
            container_instance: on("prod", "i1"),
            ..Filter::default()
        })
        .await,
        vec![a1.clone()]
    );
    assert_eq!(
        list(Filter {
            cluster: Some(cluster_arn("prod").to_string()),
            status: Some("RUNNING".into()),
            started_by: Some("sched-a".into()),
            container_instance: on("prod", "i1"),
        })
        .await,
        vec![a1.clone()]
    );
    assert_eq!(
        list(Filter {
            container_instance: on("prod", "i1"),
            started_by: Some("sched-b".into()),
            ..Filter::default()
        })
        .await,
        Vec::<Arn>::new()
    );
}

/// The same cluster name and task id in two accounts or regions are
/// different entities.
pub async fn keys_are_unique_across_accounts_and_regions<S: StateStore>(store: &S) {
    let tasks = [
        task_in(ACCOUNT, REGION, "prod", "t1", Some(5)),
        task_in(OTHER_ACCOUNT, REGION, "prod", "t1", Some(1)),
        task_in(ACCOUNT, OTHER_REGION, "prod", "t1", Some(1)),
    ];
    for t in &tasks {
        applied(put(store, t.clone()).await);
    }
    for t in &tasks {
        let got = store.get(&t.task_arn).await.unwrap().expect("stored");
        assert_eq!(got.entity, Entity::from(t.clone()));
    }
    assert_eq!(
        store
            .list(EntityKind::Task, &Filter::default())
            .await
            .unwrap()
            .items
            .len(),
        3
    );
    applied(delete(store, &tasks[1].task_arn, Some(1)).await);
    assert!(store.get(&tasks[0].task_arn).await.unwrap().is_some());
    assert!(store.get(&tasks[2].task_arn).await.unwrap().is_some());
    let i_a = instance_in(ACCOUNT, REGION, "prod", "i", Some(1));
    let i_b = instance_in(OTHER_ACCOUNT, REGION, "prod", "i", Some(1));
    applied(put(store, i_a).await);
    applied(put(store, i_b).await);
}

// ----------------------------------------------------------------------------
// Batches, revisions, housekeeping
// ----------------------------------------------------------------------------

/// Changes to one ARN within a batch apply in order, as if one by one.
pub async fn batch_applies_duplicate_arns_in_order<S: StateStore>(store: &S) {
    let arn = task("web", "a", None).task_arn;
    let out = store
        .apply_batch(vec![
            Change::put(task("web", "a", Some(1))),
            Change::put(task("web", "a", Some(2))),
            Change::put(task("web", "a", Some(2))),
            Change::delete(arn.clone(), Some(2)),
            Change::put(task("web", "a", Some(2))),
            Change::put(task("web", "b", Some(1))),
            Change::put(task("web", "a", Some(3))),
        ])
        .await
        .unwrap();
    assert_eq!(out.len(), 7);
    let stale = |reason, v| ApplyOutcome::Stale {
        reason,
        stored_version: Some(v),
    };
    assert!(out[0].is_applied() && out[1].is_applied());
    assert_eq!(out[2], stale(StaleReason::Version, 2));
    assert!(out[3].is_applied());
    assert_eq!(out[4], stale(StaleReason::Tombstone, 2));
    assert!(out[5].is_applied() && out[6].is_applied());
    let revisions: Vec<u64> = out
        .iter()
        .filter_map(|o| match o {
            ApplyOutcome::Applied { revision } => Some(revision.seq),
            ApplyOutcome::Stale { .. } => None,
        })
        .collect();
    // A backend may write a whole batch at one revision (etcd writes it in
    // one transaction), so revisions only never go backwards.
    assert!(
        revisions.windows(2).all(|w| w[0] <= w[1]),
        "applied changes of a batch get non-decreasing revisions: {revisions:?}"
    );
    assert_eq!(live_version(store, &arn).await, Some(Some(3)));
    assert!(store.apply_batch(Vec::new()).await.unwrap().is_empty());
}

/// The current revision advances with every applied write and with nothing else.
pub async fn current_revision_advances_only_on_writes<S: StateStore>(store: &S) {
    let r0 = current(store).await;
    let r1 = applied(put(store, task("web", "t", Some(1))).await);
    assert!(r1.seq > r0.seq && r1.epoch == r0.epoch);
    assert_eq!(current(store).await, r1);
    put(store, task("web", "t", Some(1))).await;
    store.get(&task("web", "t", None).task_arn).await.unwrap();
    store
        .list(EntityKind::Task, &Filter::default())
        .await
        .unwrap();
    assert_eq!(
        current(store).await,
        r1,
        "stale writes and reads write nothing"
    );
    let r2 = applied(delete(store, &task("web", "t", None).task_arn, None).await);
    assert!(r2.seq > r1.seq);
    assert_eq!(current(store).await, r2);
    assert_eq!(
        store
            .list(EntityKind::Task, &Filter::default())
            .await
            .unwrap()
            .revision,
        r2,
        "a list carries the revision it was read at"
    );
}

/// Retention purges only the tombstones recorded before its cut-off;
/// afterwards a lower version is no longer blocked.
pub async fn expire_purges_only_older_tombstones<S: StateStore>(store: &S) {
    let arn = task("web", "t", None).task_arn;
    applied(put(store, task("web", "t", Some(3))).await);
    applied(put(store, task("web", "live", Some(3))).await);
    applied(delete(store, &arn, Some(3)).await);
    let purge = |before| Expiry {
        retired_before: None,
        deleted_before: Some(before),
    };
    let long_ago = Timestamp::from_millis(0);
    assert_eq!(store.expire(purge(long_ago)).await.unwrap().purged, 0);
    assert_stale(
        put(store, task("web", "t", Some(2))).await,
        StaleReason::Tombstone,
        Some(3),
    );
    let later = Timestamp::now().plus(Duration::from_secs(3600));
    assert_eq!(
        store.expire(purge(later)).await.unwrap(),
        ExpiryReport {
            retired: 0,
            purged: 1
        }
    );
    assert_eq!(store.expire(purge(later)).await.unwrap().purged, 0);
    assert!(
        store
            .get(&task("web", "live", None).task_arn)
            .await
            .unwrap()
            .is_some(),
        "purging leaves live entities alone"
    );
    applied(put(store, task("web", "t", Some(2))).await);
    assert_eq!(live_version(store, &arn).await, Some(Some(2)));
}

/// A stopped task retired at `stopped_at` (ms).
fn stopped_task(cluster: &str, id: &str, version: u64, stopped_at: i64) -> Task {
    let mut t = task(cluster, id, Some(version));
    t.last_status = TaskStatus::Stopped;
    t.stopped_at = Some(Timestamp::from_millis(stopped_at));
    t
}

/// Retention deletes stopped tasks and INACTIVE instances retired before
/// its cut-off, in every cluster, leaving tombstones; it leaves running
/// tasks, active instances and what retired later alone.
pub async fn expire_removes_retired_entities_of_every_cluster<S: StateStore>(store: &S) {
    let old = 1_000_000;
    let mut gone_instance = instance("staging", "i-old", Some(4));
    gone_instance.status = InstanceStatus::Inactive;
    gone_instance.updated_at = Some(Timestamp::from_millis(old));
    let mut active = instance("staging", "i-up", Some(1));
    active.updated_at = Some(Timestamp::from_millis(old));
    let mut running = task("prod", "running", Some(2));
    running.updated_at = Some(Timestamp::from_millis(old));
    let batch = vec![
        Change::put(stopped_task("prod", "old", 3, old)),
        Change::put(stopped_task("staging", "old", 3, old)),
        Change::put(stopped_task("staging", "recent", 3, old + 10_000)),
        Change::put(running),
        Change::put(gone_instance.clone()),
        Change::put(active),
    ];
    for outcome in store.apply_batch(batch).await.unwrap() {
        applied(outcome);
    }
    let from = current(store).await;
    let expiry = Expiry {
        retired_before: Some(Timestamp::from_millis(old + 1)),
        deleted_before: Some(Timestamp::from_millis(old + 1)),
    };
    let report = store.expire(expiry).await.unwrap();
    assert_eq!(
        report,
        ExpiryReport {
            retired: 3,
            purged: 0
        },
        "two old stopped tasks and the INACTIVE instance, and none of the fresh tombstones"
    );
    let tasks = listed(store, EntityKind::Task, Filter::default()).await;
    assert_eq!(
        tasks,
        sorted(vec![
            task("prod", "running", None).task_arn,
            task("staging", "recent", None).task_arn
        ])
    );
    let instances = listed(store, EntityKind::Instance, Filter::default()).await;
    assert_eq!(
        instances,
        vec![instance("staging", "i-up", None).container_instance_arn]
    );
    // Watchers see the deletes; what was removed stays gone.
    let mut watch = store.watch(from).await.unwrap();
    let events = next_events(&mut watch, 3).await;
    assert!(
        events
            .iter()
            .all(|e| matches!(e, WatchEvent::Delete { .. })),
        "{events:?}"
    );
    assert_stale(
        put(store, stopped_task("prod", "old", 3, old)).await,
        StaleReason::Tombstone,
        Some(3),
    );
    assert_stale(
        put(store, gone_instance).await,
        StaleReason::Tombstone,
        Some(4),
    );
    assert_eq!(store.expire(expiry).await.unwrap(), ExpiryReport::default());
}

/// Retention judges an entity by what is stored now: a stopped task
/// stamped again later, and a tombstone whose entity came back at a higher
/// version, are not removed on their old times.
pub async fn expire_judges_entities_by_their_current_state<S: StateStore>(store: &S) {
    let t0 = 1_000_000;
    applied(put(store, stopped_task("prod", "t", 3, t0)).await);
    applied(put(store, stopped_task("prod", "t", 4, t0 + 5_000)).await);
    let retire = |before| Expiry {
        retired_before: Some(Timestamp::from_millis(before)),
        deleted_before: None,
    };
    assert_eq!(store.expire(retire(t0 + 1)).await.unwrap().retired, 0);
    assert_eq!(
        live_version(store, &task("prod", "t", None).task_arn).await,
        Some(Some(4))
    );
    assert_eq!(store.expire(retire(t0 + 5_001)).await.unwrap().retired, 1);
    assert_eq!(
        live_version(store, &task("prod", "t", None).task_arn).await,
        None
    );

    let back = task("prod", "back", None).task_arn;
    applied(delete(store, &back, Some(3)).await);
    applied(put(store, task("prod", "back", Some(4))).await);
    let later = Timestamp::now().plus(Duration::from_secs(3600));
    let purge = Expiry {
        retired_before: None,
        deleted_before: Some(later),
    };
    assert_eq!(
        store.expire(purge).await.unwrap().purged,
        1,
        "the tombstone of t only: back is live again"
    );
    assert_eq!(live_version(store, &back).await, Some(Some(4)));
}

/// Issue 14's "what is gone stays gone", end to end through the ingester,
/// on a store whose tombstones take their times from `clock`: with a
/// stopped-task retention of 5 s, a task goes RUNNING (version 2), then
/// STOPPED (version 3), and is removed by retention; a redelivered
/// version-2 RUNNING event is then stale against the tombstone, which is
/// kept for the tombstone horizon (its own setting); once that has passed
/// and the tombstone is purged, the same event is expired by its age and
/// deleted, never applied. Not part of the generated set (it needs a store
/// made with `clock`).
pub async fn what_is_gone_stays_gone(store: std::sync::Arc<dyn StateStore>, clock: &ManualClock) {
    use crate::ingest::{IngestOptions, Ingester};
    use crate::store::retention::{Retention, RetentionOptions};
    use crate::testing::queue::{TestQueue, task_event_at};

    let queue = std::sync::Arc::new(TestQueue::default());
    let horizon = Duration::from_secs(15 * 24 * 3600);
    let ingester = Ingester::new(
        queue.clone(),
        store.clone(),
        IngestOptions {
            clock: clock.shared(),
            event_horizon: Some(horizon),
            ..IngestOptions::default()
        },
    );
    let retention = Retention::new(RetentionOptions {
        stopped: Duration::from_secs(5),
        tombstones: horizon,
        clock: clock.shared(),
        ..RetentionOptions::default()
    });
    let arn = task_arn_in("1", "us-east-1", "prod", "t1");
    let t0 = clock.now();
    let running = task_event_at("e2", "t1", 2, "RUNNING", t0);
    queue.push("m1", running.clone());
    queue.push(
        "m2",
        task_event_at("e3", "t1", 3, "STOPPED", t0.plus(Duration::from_secs(1))),
    );
    let report = ingester.run_once().await.unwrap();
    assert_eq!(report.applied, 2);

    clock.advance(Duration::from_secs(10));
    assert_eq!(retention.run_once(store.as_ref()).await.unwrap().retired, 1);
    assert_eq!(store.get(&arn).await.unwrap(), None, "removed by retention");

    queue.push("m3", running.clone());
    let report = ingester.run_once().await.unwrap();
    assert_eq!(
        (report.stale, report.deleted),
        (1, 1),
        "blocked by the tombstone"
    );
    assert_eq!(store.get(&arn).await.unwrap(), None);

    clock.advance(horizon + Duration::from_secs(1));
    assert_eq!(retention.run_once(store.as_ref()).await.unwrap().purged, 1);
    queue.push("m4", running);
    let report = ingester.run_once().await.unwrap();
    assert_eq!(
        (report.expired, report.applied, report.deleted),
        (1, 0, 1),
        "older than the horizon: deleted, not applied"
    );
    assert_eq!(
        store.get(&arn).await.unwrap(),
        None,
        "what is gone stays gone"
    );
    assert_eq!(ingester.counters().snapshot().expired, 1);
}

// ----------------------------------------------------------------------------
// Watch
// ----------------------------------------------------------------------------

/// A watch from a list's revision yields exactly the later changes: puts and
/// deletes (carrying the last entity), nothing stale, no kv writes.
pub async fn list_then_watch_sees_exactly_the_later_changes<S: StateStore>(store: &S) {
    let a1 = task("web", "a", Some(1));
    let b1 = task("web", "b", Some(1));
    applied(put(store, a1).await);
    applied(put(store, b1.clone()).await);
    applied(put(store, instance("web", "i", Some(1))).await);
    let listing = store
        .list(EntityKind::Task, &Filter::default())
        .await
        .unwrap();
    assert_eq!(listing.items.len(), 2);
    assert_eq!(listing.revision, current(store).await);

    let a2 = task("web", "a", Some(2));
    let r_a2 = applied(put(store, a2.clone()).await);
    let r_del = applied(delete(store, &b1.task_arn, Some(1)).await);
    put(store, task("web", "a", Some(1))).await; // stale
    store
        .kv_put("conformance/x", Bytes::from_static(b"1"), None)
        .await
        .unwrap();
    let c = task("web", "c", Some(1));
    let r_c = applied(put(store, c.clone()).await);
    let i2 = instance("web", "i", Some(2));
    let r_i2 = applied(put(store, i2.clone()).await);

    let mut stream = store.watch(listing.revision).await.unwrap();
    let events = next_events(&mut stream, 4).await;
    assert_eq!(
        events,
        vec![
            WatchEvent::Put(crate::Versioned {
                entity: a2.into(),
                revision: r_a2
            }),
            WatchEvent::Delete {
                arn: b1.task_arn.clone(),
                last: Some(b1.into()),
                revision: r_del
            },
            WatchEvent::Put(crate::Versioned {
                entity: c.into(),
                revision: r_c
            }),
            WatchEvent::Put(crate::Versioned {
                entity: i2.into(),
                revision: r_i2
            }),
        ]
    );
    // Nothing else is pending: the next event is the next write.
    let marker = task("web", "marker", Some(1));
    let r_m = applied(put(store, marker).await);
    let next = next_item(&mut stream).await.unwrap();
    assert_eq!(next.revision(), r_m, "unexpected event {next:?}");
}

/// A revision is atomic: `watch_revisions` yields each revision once, whole
/// (every change a batch wrote at that revision, however the store groups
/// a batch's changes into revisions), in revision order; and `list_all`
/// reads both kinds of entity at one revision, the current one.
pub async fn revisions_are_watched_whole_and_listed_at_one_revision<S: StateStore>(store: &S) {
    let from = current(store).await;
    let changes: Vec<Change> = (0..5)
        .map(|n| Change::put(task("web", &format!("t{n}"), Some(1))))
        .chain([Change::put(instance("web", "i", Some(1)))])
        .collect();
    let outcomes = store.apply_batch(changes).await.expect("apply_batch");
    let mut expected: BTreeMap<u64, usize> = BTreeMap::new();
    for o in outcomes {
        *expected.entry(applied(o).seq).or_default() += 1;
    }
    let mut stream = store.watch_revisions(from).await.unwrap();
    let mut seen: BTreeMap<u64, usize> = BTreeMap::new();
    let mut last = from.seq;
    while seen.values().sum::<usize>() < 6 {
        let batch = next_item(&mut stream).await.unwrap();
        assert!(batch.revision.seq > last, "revisions in order, each once");
        last = batch.revision.seq;
        assert!(
            batch.events.iter().all(|e| e.revision() == batch.revision),
            "a batch holds one revision: {batch:?}"
        );
        seen.insert(batch.revision.seq, batch.events.len());
    }
    assert_eq!(seen, expected, "one whole batch per revision written");

    let all = store.list_all().await.unwrap();
    assert_eq!(all.revision, current(store).await);
    let tasks = store
        .list(EntityKind::Task, &Filter::default())
        .await
        .unwrap();
    let instances = store
        .list(EntityKind::Instance, &Filter::default())
        .await
        .unwrap();
    let mut both = instances.items;
    both.extend(tasks.items);
    both.sort_by(|a, b| a.entity.arn().cmp(b.entity.arn()));
    assert_eq!(all.items, both);
}

/// A watch follows live changes in revision order, with no gap and no
/// duplicate, for every watcher.
pub async fn watch_follows_live_changes_in_revision_order<S: StateStore>(store: &S) {
    applied(put(store, task("web", "old", Some(1))).await);
    let from = current(store).await;
    let mut first = store.watch(from).await.unwrap();
    let mut second = store.watch(from).await.unwrap();
    let arn = task("web", "x", None).task_arn;
    let mut revisions = Vec::new();
    for v in 1..=5 {
        revisions.push(applied(put(store, task("web", "x", Some(v))).await));
    }
    revisions.push(applied(delete(store, &arn, Some(5)).await));
    for stream in [&mut first, &mut second] {
        let events = next_events(stream, revisions.len()).await;
        let seen: Vec<Revision> = events.iter().map(WatchEvent::revision).collect();
        assert_eq!(seen, revisions);
        assert!(events.iter().all(|e| *e.arn() == arn));
        match events.last() {
            Some(WatchEvent::Delete {
                last: Some(last), ..
            }) => {
                assert_eq!(last.version(), Some(5));
            }
            other => panic!("expected a delete with the last entity, got {other:?}"),
        }
    }
}

/// Writers racing each other and a live watcher: the watcher sees every
/// applied write exactly once, in revision order (writes that landed
/// together share their revision).
pub async fn concurrent_writes_are_watched_without_gaps<S: StateStore>(store: &S) {
    const WRITERS: usize = 4;
    const WRITES: u64 = 25;
    let from = current(store).await;
    let mut stream = store.watch(from).await.unwrap();
    let writer = |w: usize| async move {
        let mut revisions = Vec::new();
        for v in 1..=WRITES {
            let id = format!("w{w}-{}", v % 5);
            revisions.push(applied(put(store, task("race", &id, Some(v))).await));
        }
        revisions
    };
    let reader = async {
        let total = WRITERS * WRITES as usize;
        let events = next_events(&mut stream, total).await;
        events.iter().map(WatchEvent::revision).collect::<Vec<_>>()
    };
    let (written, seen) =
        futures::join!(futures::future::join_all((0..WRITERS).map(writer)), reader);
    let mut written: Vec<Revision> = written.into_iter().flatten().collect();
    written.sort_by_key(|r| r.seq);
    // Concurrent writes may share a revision (a backend may write them in
    // one transaction), but the watcher never sees one go backwards.
    assert!(
        seen.windows(2).all(|w| w[0].seq <= w[1].seq),
        "watch revisions must not decrease: {seen:?}"
    );
    assert_eq!(seen, written, "the watcher sees exactly the applied writes");
}

/// Writing a tombstone for an entity that was never live is not a watch event.
pub async fn tombstone_of_a_never_live_entity_is_not_watched<S: StateStore>(store: &S) {
    let from = current(store).await;
    let mut stream = store.watch(from).await.unwrap();
    applied(delete(store, &task("web", "ghost", None).task_arn, Some(3)).await);
    applied(
        delete(
            store,
            &instance("web", "ghost", None).container_instance_arn,
            None,
        )
        .await,
    );
    let r = applied(put(store, task("web", "real", Some(1))).await);
    let event = next_item(&mut stream).await.unwrap();
    assert_eq!(event.revision(), r, "unexpected event {event:?}");
}

/// A revision from another epoch or from the future is refused: relist.
pub async fn watch_from_another_epoch_or_the_future_needs_relist<S: StateStore>(store: &S) {
    applied(put(store, task("web", "t", Some(1))).await);
    let now = current(store).await;
    let foreign = Revision::new(now.epoch.wrapping_add(1), now.seq);
    let future = Revision::new(now.epoch, now.seq + 1000);
    for result in [
        store.watch(foreign).await.err(),
        store.kv_watch("", foreign).await.err(),
    ] {
        match result {
            Some(e @ StoreError::EpochMismatch { .. }) => assert!(e.needs_relist()),
            other => panic!("expected EpochMismatch, got {other:?}"),
        }
    }
    for result in [
        store.watch(future).await.err(),
        store.kv_watch("", future).await.err(),
    ] {
        match result {
            Some(e @ StoreError::FutureRevision { .. }) => assert!(e.needs_relist()),
            other => panic!("expected FutureRevision, got {other:?}"),
        }
    }
    assert!(store.watch(now).await.is_ok());
}

/// A watch from a revision older than the retained history is
/// [`StoreError::Compacted`]. `compact` must make the store drop history past
/// the revision it was called at (e.g. write many changes into a small
/// memory log, or compact etcd at its current revision).
pub async fn watch_from_compacted_revision_is_an_error<S, F, Fut>(store: &S, compact: F)
where
    S: StateStore,
    F: FnOnce() -> Fut,
    Fut: Future<Output = ()>,
{
    let old = current(store).await;
    for i in 0..3 {
        applied(put(store, task("web", &format!("c{i}"), Some(1))).await);
    }
    compact().await;
    match store.watch(old).await.err() {
        Some(e @ StoreError::Compacted { requested, .. }) => {
            assert_eq!(requested, old);
            assert!(e.needs_relist());
        }
        other => panic!("expected Compacted, got {other:?}"),
    }
    assert!(matches!(
        store.kv_watch("", old).await.err(),
        Some(StoreError::Compacted { .. })
    ));
    // A fresh list's revision can be watched again.
    let listing = store
        .list(EntityKind::Task, &Filter::default())
        .await
        .unwrap();
    let mut stream = store.watch(listing.revision).await.unwrap();
    let r = applied(put(store, task("web", "after", Some(1))).await);
    assert_eq!(next_item(&mut stream).await.unwrap().revision(), r);
}

// ----------------------------------------------------------------------------
// Key-value API
// ----------------------------------------------------------------------------

/// `kv_txn` checks: `Absent`, `Present` and `Revision` (exact).
pub async fn kv_txn_checks_absent_present_and_revision<S: StateStore>(store: &S) {
    let v = |s: &'static str| Bytes::from_static(s.as_bytes());
    let key = "sched/leader";
    let KvTxnOutcome::Applied(r1) = store
        .kv_put(key, v("a"), Some(KvExpect::Absent))
        .await
        .unwrap()
    else {
        panic!("put of an absent key with Absent must apply");
    };
    assert_eq!(
        store
            .kv_put(key, v("b"), Some(KvExpect::Absent))
            .await
            .unwrap(),
        KvTxnOutcome::Conflict
    );
    let got = store.kv_get(key).await.unwrap().expect("written");
    assert_eq!((got.value, got.revision), (v("a"), r1));
    let KvTxnOutcome::Applied(r2) = store
        .kv_put(key, v("c"), Some(KvExpect::Present))
        .await
        .unwrap()
    else {
        panic!("Present must hold for an existing key");
    };
    assert!(r2.seq > r1.seq);
    assert_eq!(
        store
            .kv_put(key, v("d"), Some(KvExpect::Revision(r1)))
            .await
            .unwrap(),
        KvTxnOutcome::Conflict,
        "an outdated revision is a conflict"
    );
    let KvTxnOutcome::Applied(r3) = store
        .kv_put(key, v("e"), Some(KvExpect::Revision(r2)))
        .await
        .unwrap()
    else {
        panic!("the current revision must hold");
    };
    assert_eq!(store.kv_get(key).await.unwrap().unwrap().revision, r3);
    assert!(
        store
            .kv_delete(key, Some(KvExpect::Revision(r3)))
            .await
            .unwrap()
            != KvTxnOutcome::Conflict
    );
    assert_eq!(store.kv_get(key).await.unwrap(), None);
    assert_eq!(
        store.kv_delete(key, Some(KvExpect::Present)).await.unwrap(),
        KvTxnOutcome::Conflict
    );
    assert_eq!(
        store
            .kv_put(key, v("f"), Some(KvExpect::Revision(r3)))
            .await
            .unwrap(),
        KvTxnOutcome::Conflict,
        "a revision check on an absent key fails"
    );
    assert!(matches!(
        store.kv_put(key, v("g"), None).await.unwrap(),
        KvTxnOutcome::Applied(_)
    ));
}

/// A transaction writes all its ops at one revision, or nothing at all.
pub async fn kv_txn_is_all_or_nothing_at_one_revision<S: StateStore>(store: &S) {
    let v = |s: &'static str| Bytes::from_static(s.as_bytes());
    store.kv_put("t/a", v("1"), None).await.unwrap();
    let before = current(store).await;
    let failing = KvTxn {
        checks: vec![
            ("t/a".into(), KvExpect::Present),
            ("t/missing".into(), KvExpect::Present),
        ],
        ops: vec![
            KvOp::Put {
                key: "t/b".into(),
                value: v("2"),
            },
            KvOp::Delete { key: "t/a".into() },
        ],
    };
    assert_eq!(store.kv_txn(failing).await.unwrap(), KvTxnOutcome::Conflict);
    assert_eq!(current(store).await, before, "a conflict writes nothing");
    assert_eq!(store.kv_get("t/b").await.unwrap(), None);
    assert!(store.kv_get("t/a").await.unwrap().is_some());

    let ok = KvTxn {
        checks: vec![
            ("t/a".into(), KvExpect::Present),
            ("t/b".into(), KvExpect::Absent),
        ],
        ops: vec![
            KvOp::Put {
                key: "t/b".into(),
                value: v("2"),
            },
            KvOp::Put {
                key: "t/c".into(),
                value: v("3"),
            },
            KvOp::Delete { key: "t/a".into() },
        ],
    };
    let KvTxnOutcome::Applied(r) = store.kv_txn(ok).await.unwrap() else {
        panic!("the checks hold");
    };
    assert_eq!(current(store).await, r, "one transaction is one revision");
    assert_eq!(store.kv_get("t/a").await.unwrap(), None);
    assert_eq!(store.kv_get("t/b").await.unwrap().unwrap().revision, r);
    assert_eq!(store.kv_get("t/c").await.unwrap().unwrap().revision, r);
}

/// A transaction over the store's limits (etcd's defaults: 128 operations)
/// is refused with [`StoreError::TooLarge`] and writes nothing, and
/// [`StateStore::kv_txn_chunked`] writes the same ops in parts that fit.
pub async fn kv_txn_over_the_limits_is_refused_and_chunked_writes_fit<S: StateStore>(store: &S) {
    let limits = store.txn_limits();
    let n = limits.max_ops * 2 + 7;
    let puts: Vec<KvOp> = (0..n)
        .map(|i| KvOp::Put {
            key: format!("big/{i:05}"),
            value: Bytes::from_static(b"x"),
        })
        .collect();
    let before = current(store).await;
    let err = store
        .kv_txn(KvTxn {
            checks: vec![("big/guard".into(), KvExpect::Absent)],
            ops: puts.clone(),
        })
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::TooLarge { .. }), "{err}");
    assert_eq!(
        current(store).await,
        before,
        "a refused transaction writes nothing"
    );

    let outcome = store
        .kv_txn_chunked(KvTxn {
            checks: vec![("big/guard".into(), KvExpect::Absent)],
            ops: puts,
        })
        .await
        .unwrap();
    assert!(matches!(outcome, KvTxnOutcome::Applied(_)), "{outcome:?}");
    assert_eq!(store.kv_list("big/").await.unwrap().items.len(), n);

    let deletes: Vec<KvOp> = (0..n)
        .map(|i| KvOp::Delete {
            key: format!("big/{i:05}"),
        })
        .collect();
    store
        .kv_put("big/guard", Bytes::from_static(b"g"), None)
        .await
        .unwrap();
    let fenced = store
        .kv_txn_chunked(KvTxn {
            checks: vec![("big/guard".into(), KvExpect::Absent)],
            ops: deletes.clone(),
        })
        .await
        .unwrap();
    assert_eq!(fenced, KvTxnOutcome::Conflict, "every part is checked");
    assert_eq!(store.kv_list("big/").await.unwrap().items.len(), n + 1);
    store
        .kv_txn_chunked(KvTxn {
            checks: vec![("big/guard".into(), KvExpect::Present)],
            ops: deletes,
        })
        .await
        .unwrap();
    assert_eq!(store.kv_list("big/").await.unwrap().items.len(), 1);
}

/// `kv_list` returns the keys under a prefix, sorted, with the list's revision.
pub async fn kv_list_and_get_see_keys_under_a_prefix<S: StateStore>(store: &S) {
    let v = |s: &'static str| Bytes::from_static(s.as_bytes());
    for key in [
        "envs/b",
        "envs/a",
        "envs/a/deployments/1",
        "envsx/c",
        "other",
    ] {
        store.kv_put(key, v(key), None).await.unwrap();
    }
    store.kv_delete("envs/b", None).await.unwrap();
    let listing = store.kv_list("envs/").await.unwrap();
    let keys: Vec<&str> = listing.items.iter().map(|e| e.key.as_str()).collect();
    assert_eq!(keys, ["envs/a", "envs/a/deployments/1"]);
    assert_eq!(listing.items[0].value, v("envs/a"));
    assert_eq!(listing.revision, current(store).await);
    assert_eq!(store.kv_list("").await.unwrap().items.len(), 4);
    assert!(store.kv_list("nothing/").await.unwrap().items.is_empty());
    let got = store.kv_get("envsx/c").await.unwrap().unwrap();
    assert_eq!((got.key.as_str(), got.value), ("envsx/c", v("envsx/c")));
    assert_eq!(store.kv_get("envs/b").await.unwrap(), None);
}

/// `kv_watch` yields puts and deletes under its prefix only, in order.
pub async fn kv_watch_follows_a_prefix_including_deletes<S: StateStore>(store: &S) {
    let v = |s: &'static str| Bytes::from_static(s.as_bytes());
    store.kv_put("p/old", v("0"), None).await.unwrap();
    let from = current(store).await;
    let rev = |o: KvTxnOutcome| match o {
        KvTxnOutcome::Applied(r) => r,
        KvTxnOutcome::Conflict => panic!("unexpected conflict"),
    };
    let r1 = rev(store.kv_put("p/a", v("1"), None).await.unwrap());
    store.kv_put("q/a", v("x"), None).await.unwrap();
    applied(put(store, task("web", "t", Some(1))).await);
    let r2 = rev(store.kv_put("p/b", v("2"), None).await.unwrap());
    let r3 = rev(store.kv_delete("p/a", None).await.unwrap());
    let mut stream = store.kv_watch("p/", from).await.unwrap();
    let mut events = Vec::new();
    for _ in 0..3 {
        events.push(next_item(&mut stream).await.unwrap());
    }
    let ev = |key: &str, value: Option<Bytes>, revision| KvEvent {
        key: key.into(),
        value,
        revision,
    };
    assert_eq!(
        events,
        vec![
            ev("p/a", Some(v("1")), r1),
            ev("p/b", Some(v("2")), r2),
            ev("p/a", None, r3)
        ]
    );
    // Live: the next event under the prefix is the next write under it.
    store.kv_put("q/b", v("y"), None).await.unwrap();
    let r4 = rev(store.kv_put("p/c", v("3"), None).await.unwrap());
    assert_eq!(
        next_item(&mut stream).await.unwrap(),
        ev("p/c", Some(v("3")), r4)
    );
}

/// Entity writes and key-value writes share one revision sequence.
pub async fn entity_and_kv_writes_share_one_revision_sequence<S: StateStore>(store: &S) {
    let r1 = applied(put(store, task("web", "t", Some(1))).await);
    let KvTxnOutcome::Applied(r2) = store
        .kv_put("k", Bytes::from_static(b"v"), None)
        .await
        .unwrap()
    else {
        panic!("unconditional put");
    };
    let r3 = applied(put(store, instance("web", "i", Some(1))).await);
    assert_eq!((r1.epoch, r2.epoch), (r3.epoch, r3.epoch));
    assert!(r1.seq < r2.seq && r2.seq < r3.seq, "{r1} {r2} {r3}");
    assert_eq!(current(store).await, r3);
}

// ----------------------------------------------------------------------------
// Randomized delivery
// ----------------------------------------------------------------------------

/// The size of [`randomized_delivery_converges_with`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RandomSize {
    /// Entities per seed (a quarter are instances, the rest tasks).
    pub entities: usize,
    /// Each entity gets between 1 and this many versions.
    pub max_versions: u64,
    /// How many seeds to run (each in its own cluster, on the same store).
    pub seeds: u64,
    /// Changes are applied in batches of 1 to this many.
    pub max_batch: usize,
}

impl Default for RandomSize {
    /// About 1,500 changes per seed, 4 seeds.
    fn default() -> Self {
        RandomSize {
            entities: 300,
            max_versions: 6,
            seeds: 4,
            max_batch: 32,
        }
    }
}

impl RandomSize {
    /// A few hundred changes: for slow backends.
    pub fn small() -> Self {
        RandomSize {
            entities: 60,
            max_versions: 4,
            seeds: 2,
            max_batch: 16,
        }
    }
}

/// [`randomized_delivery_converges_with`] at the default size.
pub async fn randomized_delivery_converges<S: StateStore>(store: &S) {
    randomized_delivery_converges_with(store, RandomSize::default()).await;
}

/// Many entities, several versions each, some deleted, delivered shuffled and
/// duplicated in random batches: the final state (and the state rebuilt from
/// a watch of the whole run) is what the versions and tombstones dictate.
pub async fn randomized_delivery_converges_with<S: StateStore>(store: &S, size: RandomSize) {
    for seed in 0..size.seeds {
        randomized_run(store, seed, size).await;
    }
}

/// The state of entity `j` of a randomized run at version `v`; the body
/// depends on the version so a wrong body is caught, not just a wrong version.
fn random_entity(cluster: &str, j: usize, v: u64) -> Entity {
    if j.is_multiple_of(4) {
        let mut i = instance(cluster, &format!("ci-{j}"), Some(v));
        i.running_tasks_count = Some(i64::try_from(v).unwrap_or(i64::MAX));
        i.into()
    } else {
        let mut t = task(cluster, &format!("t-{j}"), Some(v));
        t.started_by = Some(format!("v{v}"));
        t.into()
    }
}

async fn randomized_run<S: StateStore>(store: &S, seed: u64, size: RandomSize) {
    let mut rng = SmallRng::seed_from_u64(0x5eed_0000 + seed);
    let cluster = format!("rand-{seed}");
    let start = current(store).await;

    let mut expected: BTreeMap<Arn, Entity> = BTreeMap::new();
    let mut changes = Vec::new();
    for j in 0..size.entities {
        let versions = rng.random_range(1..=size.max_versions.max(1));
        for v in 1..=versions {
            changes.push(Change::put(random_entity(&cluster, j, v)));
        }
        let last = random_entity(&cluster, j, versions);
        let deleted_at = rng.random_bool(0.3).then(|| {
            if rng.random_bool(0.7) {
                versions
            } else {
                rng.random_range(1..=versions)
            }
        });
        if let Some(d) = deleted_at {
            changes.push(Change::delete(last.arn().clone(), Some(d)));
        }
        // A delete at the last version removes it for good; one at a lower
        // version is overtaken by the later states, whatever the order.
        if deleted_at.is_none_or(|d| d < versions) {
            expected.insert(last.arn().clone(), last);
        }
    }
    let duplicates: Vec<Change> = changes
        .iter()
        .filter(|_| rng.random_bool(0.25))
        .cloned()
        .collect();
    changes.extend(duplicates);
    changes.shuffle(&mut rng);

    while !changes.is_empty() {
        let n = rng
            .random_range(1..=size.max_batch.max(1))
            .min(changes.len());
        let batch: Vec<Change> = changes.drain(..n).collect();
        let outcomes = store.apply_batch(batch).await.expect("apply_batch");
        assert_eq!(outcomes.len(), n);
    }
    let marker = applied(put(store, task(&cluster, "marker", Some(1))).await);

    let filter = Filter {
        cluster: Some(cluster_arn(&cluster).to_string()),
        ..Filter::default()
    };
    let mut actual = BTreeMap::new();
    for kind in [EntityKind::Instance, EntityKind::Task] {
        for v in store.list(kind, &filter).await.unwrap().items {
            if v.revision != marker {
                actual.insert(v.entity.arn().clone(), v.entity);
            }
        }
    }
    assert_same_state(seed, "list", &expected, &actual);

    let mut stream = store
        .watch(start)
        .await
        .expect("watch from the run's start");
    let mut replayed = BTreeMap::new();
    let mut last = start;
    loop {
        let event = next_item(&mut stream).await.expect("watch event");
        // Events of one write transaction (an etcd batch) share a revision.
        assert!(
            event.revision().seq >= last.seq,
            "seed {seed}: watch revisions must not go backwards ({last} then {})",
            event.revision()
        );
        last = event.revision();
        if last == marker {
            break;
        }
        match event {
            WatchEvent::Put(v) => {
                replayed.insert(v.entity.arn().clone(), v.entity);
            }
            WatchEvent::Delete { arn, last, .. } => {
                let was = replayed.remove(&arn);
                assert!(
                    was.is_some(),
                    "seed {seed}: delete of {arn} never seen live"
                );
                assert_eq!(
                    was, last,
                    "seed {seed}: delete of {arn} carries the last state"
                );
            }
        }
    }
    assert_same_state(seed, "watch replay", &expected, &replayed);
}

#[track_caller]
fn assert_same_state(
    seed: u64,
    what: &str,
    expected: &BTreeMap<Arn, Entity>,
    actual: &BTreeMap<Arn, Entity>,
) {
    let mut diffs = Vec::new();
    for (arn, e) in expected {
        match actual.get(arn) {
            None => diffs.push(format!("missing {arn} (v{:?})", e.version())),
            Some(a) if a != e => diffs.push(format!(
                "{arn}: got v{:?}, expected v{:?}",
                a.version(),
                e.version()
            )),
            Some(_) => {}
        }
    }
    for (arn, a) in actual {
        if !expected.contains_key(arn) {
            diffs.push(format!("unexpected {arn} (v{:?})", a.version()));
        }
    }
    assert!(
        diffs.is_empty(),
        "seed {seed}: {what} differs from the model in {} entities, e.g. {:?}",
        diffs.len(),
        &diffs[..diffs.len().min(5)]
    );
}

// ----------------------------------------------------------------------------
// Running the suite
// ----------------------------------------------------------------------------

/// Runs every check of the generated set, each on a fresh store from `make`
/// (not [`watch_from_compacted_revision_is_an_error`], which needs a
/// backend-specific way to compact).
pub async fn run_all<S, F, Fut>(make: F)
where
    S: StateStore,
    F: Fn() -> Fut,
    Fut: Future<Output = S>,
{
    versioned_apply_ignores_equal_and_lower_versions(&make().await).await;
    unknown_versions_apply_only_over_unknown_versions(&make().await).await;
    tombstones_block_equal_and_lower_versions_but_not_higher(&make().await).await;
    delete_is_stale_when_the_stored_state_is_newer(&make().await).await;
    delete_of_an_absent_entity_leaves_a_tombstone(&make().await).await;
    delete_of_a_tombstone_at_an_equal_or_lower_version_is_stale(&make().await).await;
    soft_tombstones_block_only_older_versions(&make().await).await;
    unchanged_since_guards_puts(&make().await).await;
    unchanged_since_guards_deletes(&make().await).await;
    get_returns_live_entities_only(&make().await).await;
    other_arn_kinds_are_invalid(&make().await).await;
    list_filters_instances_by_every_field(&make().await).await;
    list_filters_tasks_by_every_field(&make().await).await;
    keys_are_unique_across_accounts_and_regions(&make().await).await;
    batch_applies_duplicate_arns_in_order(&make().await).await;
    current_revision_advances_only_on_writes(&make().await).await;
    expire_purges_only_older_tombstones(&make().await).await;
    expire_removes_retired_entities_of_every_cluster(&make().await).await;
    expire_judges_entities_by_their_current_state(&make().await).await;
    list_then_watch_sees_exactly_the_later_changes(&make().await).await;
    revisions_are_watched_whole_and_listed_at_one_revision(&make().await).await;
    watch_follows_live_changes_in_revision_order(&make().await).await;
    concurrent_writes_are_watched_without_gaps(&make().await).await;
    tombstone_of_a_never_live_entity_is_not_watched(&make().await).await;
    watch_from_another_epoch_or_the_future_needs_relist(&make().await).await;
    kv_txn_checks_absent_present_and_revision(&make().await).await;
    kv_txn_is_all_or_nothing_at_one_revision(&make().await).await;
    kv_txn_over_the_limits_is_refused_and_chunked_writes_fit(&make().await).await;
    kv_list_and_get_see_keys_under_a_prefix(&make().await).await;
    kv_watch_follows_a_prefix_including_deletes(&make().await).await;
    entity_and_kv_writes_share_one_revision_sequence(&make().await).await;
    randomized_delivery_converges(&make().await).await;
}

/// Generates one `#[tokio::test]` per conformance check (the same set as
/// [`run_all`](crate::testing::conformance::run_all)), each on a fresh store
/// from an async factory function.
///
/// ```ignore
/// async fn make_store() -> MemoryStore { MemoryStore::new() }
/// blox_state::testing::conformance_tests!(make_store);
/// // or, with attributes for every test and a smaller randomized run:
/// blox_state::testing::conformance_tests!(
///     #[ignore = "needs etcd"] make_store,
///     random_size = blox_state::testing::conformance::RandomSize::small()
/// );
/// ```
#[macro_export]
macro_rules! conformance_tests {
    (@one [$($attr:tt)*] $make:path, $name:ident) => {
        #[::tokio::test]
        $($attr)*
        async fn $name() {
            let store = $make().await;
            $crate::testing::conformance::$name(&store).await;
        }
    };
    (@checks $attrs:tt $make:path; $($name:ident),* $(,)?) => {
        $( $crate::conformance_tests!(@one $attrs $make, $name); )*
    };
    ($(#[$attr:meta])* $make:path, random_size = $size:expr $(,)?) => {
        $crate::conformance_tests!(@checks [$(#[$attr])*] $make;
            versioned_apply_ignores_equal_and_lower_versions,
            unknown_versions_apply_only_over_unknown_versions,
            tombstones_block_equal_and_lower_versions_but_not_higher,
            delete_is_stale_when_the_stored_state_is_newer,
            delete_of_an_absent_entity_leaves_a_tombstone,
            delete_of_a_tombstone_at_an_equal_or_lower_version_is_stale,
            soft_tombstones_block_only_older_versions,
            unchanged_since_guards_puts,
            unchanged_since_guards_deletes,
            get_returns_live_entities_only,
            other_arn_kinds_are_invalid,
            list_filters_instances_by_every_field,
            list_filters_tasks_by_every_field,
            keys_are_unique_across_accounts_and_regions,
            batch_applies_duplicate_arns_in_order,
            current_revision_advances_only_on_writes,
            expire_purges_only_older_tombstones,
            expire_removes_retired_entities_of_every_cluster,
            expire_judges_entities_by_their_current_state,
            list_then_watch_sees_exactly_the_later_changes,
            revisions_are_watched_whole_and_listed_at_one_revision,
            watch_follows_live_changes_in_revision_order,
            concurrent_writes_are_watched_without_gaps,
            tombstone_of_a_never_live_entity_is_not_watched,
            watch_from_another_epoch_or_the_future_needs_relist,
            kv_txn_checks_absent_present_and_revision,
            kv_txn_is_all_or_nothing_at_one_revision,
            kv_txn_over_the_limits_is_refused_and_chunked_writes_fit,
            kv_list_and_get_see_keys_under_a_prefix,
            kv_watch_follows_a_prefix_including_deletes,
            entity_and_kv_writes_share_one_revision_sequence,
        );

        #[::tokio::test]
        $(#[$attr])*
        async fn randomized_delivery_converges() {
            let store = $make().await;
            $crate::testing::conformance::randomized_delivery_converges_with(&store, $size).await;
        }
    };
    ($(#[$attr:meta])* $make:path $(,)?) => {
        $crate::conformance_tests!(
            $(#[$attr])* $make,
            random_size = $crate::testing::conformance::RandomSize::default()
        );
    };
}
