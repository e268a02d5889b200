//! The store's own view of the tasks at any revision, for the "streams are
//! exact" invariant all along: it lists the store, then follows the store's
//! watch (not the cache, its feed or the HTTP routes a client goes
//! through), and keeps the revisions it received but has not applied yet,
//! so it can stop exactly at the revision a client has reached and compare
//! the two views entity by entity.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use blox_core::model::{Entity, EntityKind};
use blox_state::store::{Revision, RevisionStream, StateStore, WatchEvent};
use futures::StreamExt;
use tokio::task::JoinHandle;

use crate::client::{ClientView, Rebuilt};

/// One revision's task changes: ARN to version, `None` for a delete.
type Changes = Vec<(String, Option<u64>)>;

#[derive(Debug, Default)]
struct State {
    /// The tasks at `at`.
    view: ClientView,
    /// The revision `view` is exactly at (`None` before the first list).
    at: Option<Revision>,
    /// Revisions received after `at`, in order.
    pending: VecDeque<(Revision, Changes)>,
    /// The last revision received (every revision up to it is known).
    received: Option<Revision>,
}

/// What a comparison found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Compared {
    /// The views are equal at this revision.
    Equal(Revision),
    /// Not comparable now (the client is between revisions, behind the
    /// oracle's list, or ahead of what the oracle has received).
    Skipped,
    /// They differ at this revision.
    Differ(Revision, String),
}

/// The store's view of the tasks (see the module docs).
pub struct StoreOracle {
    state: Arc<Mutex<State>>,
    task: JoinHandle<()>,
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state.lock().unwrap_or_else(PoisonError::into_inner)
}

fn task_version(entity: &Entity) -> Option<(String, u64)> {
    match entity {
        Entity::Task(t) => Some((t.task_arn.to_string(), t.version.unwrap_or(0))),
        Entity::Instance(_) => None,
    }
}

/// Lists the store's tasks and opens its watch from there.
async fn open(store: &Arc<dyn StateStore>, state: &Mutex<State>) -> Result<RevisionStream, String> {
    let listed = store.list_all().await.map_err(|e| e.to_string())?;
    let watch = store
        .watch_revisions(listed.revision)
        .await
        .map_err(|e| e.to_string())?;
    {
        let mut s = lock(state);
        s.view = listed
            .items
            .iter()
            .filter_map(|v| task_version(&v.entity))
            .collect();
        s.at = Some(listed.revision);
        s.received = Some(listed.revision);
        s.pending.clear();
    }
    Ok(watch)
}

/// Follows the store's watch until it fails.
async fn follow(mut watch: RevisionStream, state: &Mutex<State>) -> Result<(), String> {
    while let Some(batch) = watch.next().await {
        let batch = batch.map_err(|e| e.to_string())?;
        let changes: Changes = batch
            .events
            .iter()
            .filter_map(|e| match e {
                WatchEvent::Put(v) => task_version(&v.entity).map(|(a, v)| (a, Some(v))),
                WatchEvent::Delete { arn, .. } => (EntityKind::of_arn(arn)
                    == Some(EntityKind::Task))
                .then(|| (arn.to_string(), None)),
            })
            .collect();
        let mut s = lock(state);
        if !changes.is_empty() {
            s.pending.push_back((batch.revision, changes));
        }
        s.received = Some(batch.revision);
    }
    Err("the store's watch ended".to_owned())
}

impl StoreOracle {
    /// Lists `store` now, then follows it in the background (again from a
    /// new list whenever its watch fails). Start it before anything writes
    /// to the store, so every revision a client reaches is one it knows.
    pub async fn start(store: Arc<dyn StateStore>) -> StoreOracle {
        let state = Arc::new(Mutex::new(State::default()));
        let first = open(&store, &state).await;
        let s = state.clone();
        let task = tokio::spawn(async move {
            let mut watch = first;
            loop {
                let why = match watch {
                    Ok(w) => follow(w, &s).await,
                    Err(e) => Err(e),
                };
                tracing::debug!(?why, "the oracle lists again");
                tokio::time::sleep(Duration::from_secs(1)).await;
                watch = open(&store, &s).await;
            }
        });
        StoreOracle { state, task }
    }

    /// Compares what a client rebuilt with the store's tasks at the
    /// client's revision.
    pub fn compare(&self, rebuilt: &Rebuilt) -> Compared {
        let Some(target) = rebuilt.revision else {
            return Compared::Skipped;
        };
        let mut s = lock(&self.state);
        let (Some(at), Some(received)) = (s.at, s.received) else {
            return Compared::Skipped;
        };
        if target.epoch != at.epoch || target.seq < at.seq || target.seq > received.seq {
            return Compared::Skipped;
        }
        while s.pending.front().is_some_and(|(r, _)| r.seq <= target.seq) {
            let Some((_, changes)) = s.pending.pop_front() else {
                break;
            };
            for (arn, version) in changes {
                match version {
                    Some(v) => s.view.insert(arn, v),
                    None => s.view.remove(&arn),
                };
            }
        }
        s.at = Some(target);
        if s.view == rebuilt.view {
            return Compared::Equal(target);
        }
        Compared::Differ(target, difference(&s.view, &rebuilt.view))
    }

    /// Stops following.
    pub fn stop(self) {
        self.task.abort();
    }
}

/// How `client` differs from `truth`, in counts and a first example.
pub fn difference(truth: &ClientView, client: &ClientView) -> String {
    let missing: Vec<&String> = truth.keys().filter(|k| !client.contains_key(*k)).collect();
    let extra: Vec<&String> = client.keys().filter(|k| !truth.contains_key(*k)).collect();
    let differ: Vec<&String> = truth
        .iter()
        .filter(|(k, v)| client.get(*k).is_some_and(|c| c != *v))
        .map(|(k, _)| k)
        .collect();
    let example = missing
        .first()
        .map(|a| format!("missing {a}"))
        .or_else(|| extra.first().map(|a| format!("extra {a}")))
        .or_else(|| {
            differ
                .first()
                .map(|a| format!("{a} at v{:?}, not v{:?}", client.get(*a), truth.get(*a)))
        })
        .unwrap_or_default();
    format!(
        "{} missing, {} extra, {} at another version (e.g. {example})",
        missing.len(),
        extra.len(),
        differ.len()
    )
}
