//! Churn scenarios that check the view is exact at every revision it
//! reports, over any store: a writer commits many tasks per batch (one
//! revision per batch on etcd) while readers list the cache and
//! list-then-stream clients follow it over HTTP.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use blox_core::model::{Arn, Task};
use blox_state::Cache;
use blox_state::cache::spawn_follower;
use blox_state::store::{ApplyOutcome, Change, Filter, Revision, StateStore};
use tokio::sync::watch;

use crate::http_support::client;

const CLUSTER: &str = "arn:aws:ecs:us-east-1:123456789012:cluster/churn";

/// How many tasks the writer churns.
pub const TASKS: u32 = 100;

fn task_arn(id: u32) -> Arn {
    Arn::parse(&format!(
        "arn:aws:ecs:us-east-1:123456789012:task/churn/t-{id:03}"
    ))
    .unwrap()
}

fn task(id: u32, version: u64) -> Task {
    let mut t = Task::new(task_arn(id), Arn::parse(CLUSTER).unwrap(), "td:1");
    t.version = Some(version);
    t
}

/// What the writer wrote: per revision, each task's new version (`None`:
/// deleted), in revision order.
#[derive(Debug, Default, Clone)]
pub struct Log {
    writes: Vec<(Revision, String, Option<u64>)>,
}

impl Log {
    /// Each task's version at `at`.
    pub fn state_at(&self, at: Revision) -> BTreeMap<String, u64> {
        let mut state = BTreeMap::new();
        for (rev, arn, version) in &self.writes {
            if rev.seq > at.seq {
                break;
            }
            match version {
                Some(v) => state.insert(arn.clone(), *v),
                None => state.remove(arn),
            };
        }
        state
    }

    /// The revision of the last write.
    pub fn last(&self) -> Revision {
        self.writes.last().map(|w| w.0).unwrap_or_default()
    }
}

/// Writes `rounds` batches: round `r` puts (at version `r`) or deletes
/// most of the tasks in one `apply_batch` (puts only in the last round),
/// then one more task alone. Publishes the round number as it goes.
pub async fn write(store: &dyn StateStore, rounds: u64, progress: &watch::Sender<u64>) -> Log {
    let mut log = Log::default();
    for r in 1..=rounds {
        let changes: Vec<Change> = (0..TASKS)
            .filter(|id| (u64::from(*id) + r) % 4 != 0)
            .map(|id| {
                if r < rounds && (u64::from(id) + r) % 7 == 0 {
                    Change::delete(task_arn(id), Some(r))
                } else {
                    Change::put(task(id, r))
                }
            })
            .collect();
        let arns: Vec<(String, Option<u64>)> = changes
            .iter()
            .map(|c| match &c.op {
                blox_state::store::Op::Put(_) => (c.arn().to_string(), Some(r)),
                blox_state::store::Op::Delete { .. } => (c.arn().to_string(), None),
            })
            .collect();
        let outcomes = store.apply_batch(changes).await.unwrap();
        for ((arn, version), outcome) in arns.into_iter().zip(outcomes) {
            match outcome {
                ApplyOutcome::Applied { revision } => log.writes.push((revision, arn, version)),
                // A delete of what is already deleted, a put under a tombstone.
                ApplyOutcome::Stale { .. } => {}
            }
        }
        progress.send_replace(r);
        // Let readers run between rounds (the memory store never waits).
        tokio::task::yield_now().await;
    }
    // A last write of its own revision: a client that has read it has read
    // every revision before it whole.
    let marker = store
        .apply(Change::put(task(TASKS, rounds + 1)))
        .await
        .unwrap();
    if let ApplyOutcome::Applied { revision } = marker {
        log.writes
            .push((revision, task_arn(TASKS).to_string(), Some(rounds + 1)));
    }
    log.writes.sort_by_key(|w| w.0.seq);
    log
}

/// A cache's list: its revision and each task's version.
pub type Observation = (Revision, BTreeMap<String, u64>);

/// Lists the cache until `done`, keeping every list that saw a new revision.
pub async fn observe(cache: Cache, done: watch::Receiver<bool>) -> Vec<Observation> {
    let mut seen = Vec::new();
    let mut last = None;
    loop {
        let page = cache.list_tasks_page(&Filter::default(), None, usize::MAX - 1);
        if last != Some(page.revision) {
            last = Some(page.revision);
            let items = page
                .items
                .iter()
                .map(|e| {
                    let t = e.value();
                    (t.task_arn.to_string(), t.version.unwrap_or(0))
                })
                .collect();
            seen.push((page.revision, items));
        }
        if *done.borrow() {
            return seen;
        }
        tokio::task::yield_now().await;
    }
}

/// Runs the writer against a cache following `store` while a reader lists
/// the cache; returns the lists that did not match the store at their
/// revision, and how many lists were checked.
pub async fn lists_under_churn(store: Arc<dyn StateStore>, rounds: u64) -> (Vec<String>, usize) {
    let (cache, follower) = spawn_follower(Arc::clone(&store));
    tokio::time::timeout(Duration::from_secs(30), cache.wait_until_ready())
        .await
        .expect("cache ready");
    let (done_tx, done_rx) = watch::channel(false);
    let reader = tokio::spawn(observe(cache.clone(), done_rx));
    let (progress, _) = watch::channel(0);
    let log = write(store.as_ref(), rounds, &progress).await;
    wait_for(&cache, log.last()).await;
    done_tx.send_replace(true);
    let seen = reader.await.unwrap();
    follower.abort();
    let mut wrong = Vec::new();
    for (rev, items) in &seen {
        let expected = log.state_at(*rev);
        if &expected != items {
            let missing = expected
                .iter()
                .filter(|(a, v)| items.get(*a) != Some(v))
                .count();
            let extra = items
                .iter()
                .filter(|(a, v)| expected.get(*a) != Some(v))
                .count();
            wrong.push(format!(
                "list at {rev}: {missing} expected items missing or older, {extra} unexpected"
            ));
        }
    }
    (wrong, seen.len())
}

/// Waits (generously) until the cache has reached `revision`.
pub async fn wait_for(cache: &Cache, revision: Revision) {
    let mut changes = cache.changes();
    tokio::time::timeout(
        Duration::from_secs(60),
        changes.wait_for(|r| r.seq >= revision.seq),
    )
    .await
    .expect("cache caught up")
    .unwrap();
}

/// A v0.3 client: lists tasks, streams from the list's revision and applies
/// each line, until it has seen the writer's last task (see [`write`]);
/// returns its view. When the server ends its stream (too slow a reader),
/// it resumes from the last line read.
pub async fn list_then_stream(addr: SocketAddr) -> BTreeMap<String, u64> {
    let marker = task_arn(TASKS).to_string();
    let list = client::get(addr, "/v1/tasks").await.json();
    let mut view: BTreeMap<String, u64> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            (
                i["entity"]["taskARN"].as_str().unwrap().to_owned(),
                i["entity"]["version"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    let mut at: Revision = list["metadata"]["entityVersion"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let mut stream = None;
    loop {
        if view.contains_key(&marker) {
            return view;
        }
        let open = match stream.as_mut() {
            Some(s) => s,
            None => {
                let s = client::Stream::open(addr, &format!("/v1/stream/tasks?entityVersion={at}"))
                    .await;
                assert_eq!(s.status, 200, "stream from {at}");
                stream.insert(s)
            }
        };
        let line = match tokio::time::timeout(Duration::from_secs(60), open.try_next_line())
            .await
            .expect("a line")
        {
            Ok(Some(line)) => line,
            Ok(None) => panic!("the stream ended"),
            Err(_) => {
                stream = None;
                continue;
            }
        };
        let arn = line["entity"]["taskARN"].as_str().unwrap().to_owned();
        at = line["metadata"]["entityVersion"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        if line["metadata"]["deleted"] == true {
            view.remove(&arn);
        } else {
            view.insert(arn, line["entity"]["version"].as_u64().unwrap_or(0));
        }
    }
}

/// One list-then-stream cycle: lists tasks at `R`, streams from `R` and
/// applies lines until the first line of a second revision `X` arrives (or
/// the writer's last task is seen); returns the last revision read whole and
/// the view at it, which must be the store's at that revision.
pub async fn list_then_stream_once(addr: SocketAddr) -> (Revision, BTreeMap<String, u64>) {
    let marker = task_arn(TASKS).to_string();
    let list = client::get(addr, "/v1/tasks").await.json();
    let mut view: BTreeMap<String, u64> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            (
                i["entity"]["taskARN"].as_str().unwrap().to_owned(),
                i["entity"]["version"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    let listed: Revision = list["metadata"]["entityVersion"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    if view.contains_key(&marker) {
        return (listed, view);
    }
    let mut stream =
        client::Stream::open(addr, &format!("/v1/stream/tasks?entityVersion={listed}")).await;
    let mut first: Option<Revision> = None;
    loop {
        let Ok(Some(line)) = stream.try_next_line().await else {
            // Ended (too slow): what was read so far is whole revisions.
            return (first.unwrap_or(listed), view);
        };
        let arn = line["entity"]["taskARN"].as_str().unwrap().to_owned();
        let at: Revision = line["metadata"]["entityVersion"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        match first {
            Some(f) if f != at => return (f, view),
            _ => first = Some(at),
        }
        if line["metadata"]["deleted"] == true {
            view.remove(&arn);
        } else {
            view.insert(arn, line["entity"]["version"].as_u64().unwrap_or(0));
        }
        if view.contains_key(&marker) {
            return (at, view);
        }
    }
}

/// Runs the writer while `clients` list-then-stream clients start one after
/// another during the churn, over the HTTP API at `addr` (serving `cache`),
/// and two more clients list-then-stream again and again, checking their
/// view one revision into each stream; returns what did not match the
/// store (clients' final views, cycles' views).
pub async fn streams_under_churn(
    store: Arc<dyn StateStore>,
    cache: Cache,
    addr: SocketAddr,
    rounds: u64,
    clients: u64,
) -> Vec<String> {
    let (progress_tx, progress) = watch::channel(0u64);
    let (done_tx, done) = watch::channel(false);
    let cycling: Vec<_> = (0..2)
        .map(|_| {
            let done = done.clone();
            tokio::spawn(async move {
                let mut seen = Vec::new();
                while !*done.borrow() {
                    seen.push(list_then_stream_once(addr).await);
                }
                seen
            })
        })
        .collect();
    let mut handles = Vec::new();
    for c in 0..clients {
        let mut progress = progress.clone();
        let start_at = c * rounds / clients;
        handles.push(tokio::spawn(async move {
            let _ = progress.wait_for(|r| *r >= start_at).await;
            list_then_stream(addr).await
        }));
    }
    let log = write(store.as_ref(), rounds, &progress_tx).await;
    done_tx.send_replace(true);
    let mut wrong = Vec::new();
    let mut check = |what: String, at: Revision, view: &BTreeMap<String, u64>| {
        let expected = log.state_at(at);
        if &expected != view {
            let missing = expected
                .iter()
                .filter(|(a, v)| view.get(*a) != Some(v))
                .count();
            let extra = view
                .iter()
                .filter(|(a, v)| expected.get(*a) != Some(v))
                .count();
            wrong.push(format!(
                "{what} at {at}: {missing} expected items missing or older, {extra} unexpected"
            ));
        }
    };
    for (n, h) in handles.into_iter().enumerate() {
        let view = h.await.unwrap();
        check(format!("client {n}"), log.last(), &view);
    }
    for h in cycling {
        for (at, view) in h.await.unwrap() {
            check("a list-then-stream cycle".into(), at, &view);
        }
    }
    wait_for(&cache, log.last()).await;
    wrong
}
