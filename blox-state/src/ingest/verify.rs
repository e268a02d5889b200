//! Events a fresh store cannot judge on its own.
//!
//! A store that started empty (a process's memory store, see
//! [`StateStore::remembers_since`]) holds no tombstone of what ECS stopped
//! before it. An event dated before then about an entity the store has no
//! record of may be the late event of a task that has stopped since, and ECS's
//! listings may not name that task for a while (they are eventually
//! consistent), so neither the event nor the bootstrap's listings can be
//! trusted about it. Such an event is not applied as it is: ECS describes the
//! entity and its described state is applied instead (a `MISSING` answer
//! makes the event too old to apply). Without an ECS port to ask, the event
//! is too old to apply and the reconciler owns that entity's truth.
//!
//! Events dated after the store's start, events about entities the store
//! already holds (their versions judge them), and events without a time are
//! applied as they are.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use blox_core::model::{Arn, Entity, EntityKind, Timestamp};
use blox_core::ports::{EcsApi, EcsError, MAX_DESCRIBE_BATCH};

use crate::store::{Change, Op, StateStore};

/// What becomes of one change after the check.
#[derive(Debug)]
pub(super) enum Checked {
    /// Apply this change (the event's own, or ECS's description).
    Apply(Change),
    /// ECS no longer has the entity, or it cannot be asked: too old to apply.
    Expired,
    /// ECS or the store could not answer now: keep the message for
    /// redelivery.
    Failed,
}

/// Checks `changes` (each with its event's time) against what `store`
/// remembers; `ecs`, when given, describes the entities that need its word.
pub(super) async fn check(
    store: &dyn StateStore,
    ecs: Option<&Arc<dyn EcsApi>>,
    changes: Vec<(Change, Option<Timestamp>)>,
) -> Vec<Checked> {
    let Some(since) = store.remembers_since() else {
        return changes
            .into_iter()
            .map(|(c, _)| Checked::Apply(c))
            .collect();
    };
    let mut checked = Vec::with_capacity(changes.len());
    // Per (kind, cluster): the ARNs to describe and where their results go.
    let mut ask: BTreeMap<(EntityKind, Arn), Vec<(Arn, usize)>> = BTreeMap::new();
    for (change, time) in changes {
        let index = checked.len();
        let dated_before = time.is_some_and(|t| t < since);
        let Op::Put(entity) = &change.op else {
            checked.push(Checked::Apply(change));
            continue;
        };
        if !dated_before {
            checked.push(Checked::Apply(change));
            continue;
        }
        match store.get(entity.arn()).await {
            Ok(Some(_)) => checked.push(Checked::Apply(change)),
            Ok(None) if ecs.is_some() => {
                ask.entry((entity.kind(), entity.cluster_arn().clone()))
                    .or_default()
                    .push((entity.arn().clone(), index));
                checked.push(Checked::Failed);
            }
            Ok(None) => {
                tracing::info!(arn = %entity.arn(), "an event from before this store started, about an entity it never saw, with no ECS to ask: too old to apply");
                checked.push(Checked::Expired);
            }
            Err(e) => {
                tracing::warn!(error = %e, "could not read the store to check an early event; its message is kept for redelivery");
                checked.push(Checked::Failed);
            }
        }
    }
    if let Some(ecs) = ecs {
        for ((kind, cluster), wanted) in ask {
            for batch in wanted.chunks(MAX_DESCRIBE_BATCH) {
                let arns: Vec<Arn> = batch.iter().map(|(arn, _)| arn.clone()).collect();
                match describe(ecs.as_ref(), kind, &cluster, &arns).await {
                    Ok((mut found, missing)) => {
                        for (arn, index) in batch {
                            checked[*index] = match found.remove(arn) {
                                Some(entity) => Checked::Apply(Change::put(entity)),
                                None if missing.iter().any(|m| m == arn) => Checked::Expired,
                                // ECS said nothing of it: ask again later.
                                None => Checked::Failed,
                            };
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, %cluster, "could not describe entities of early events; their messages are kept for redelivery");
                    }
                }
            }
        }
    }
    checked
}

/// Describes `arns` (all of `kind`, in `cluster`): what ECS found by ARN, and
/// what it answered `MISSING`.
async fn describe(
    ecs: &dyn EcsApi,
    kind: EntityKind,
    cluster: &Arn,
    arns: &[Arn],
) -> Result<(HashMap<Arn, Entity>, Vec<Arn>), EcsError> {
    let cluster = cluster.as_str();
    Ok(match kind {
        EntityKind::Task => {
            let d = ecs.describe_tasks_with_missing(cluster, arns).await?;
            let found = d
                .found
                .into_iter()
                .map(|t| (t.task_arn.clone(), Entity::Task(Arc::new(t))))
                .collect();
            (found, d.missing)
        }
        EntityKind::Instance => {
            let d = ecs
                .describe_container_instances_with_missing(cluster, arns)
                .await?;
            let found = d
                .found
                .into_iter()
                .map(|i| {
                    (
                        i.container_instance_arn.clone(),
                        Entity::Instance(Arc::new(i)),
                    )
                })
                .collect();
            (found, d.missing)
        }
    })
}
