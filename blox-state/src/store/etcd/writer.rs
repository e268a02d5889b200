//! The coalescing writer: one task per store that merges the changes of all
//! concurrent callers into few, full transactions.
//!
//! Callers hand their batch to the writer and wait for its outcomes. The
//! writer keeps the changes it has not written yet grouped by key, in the
//! order they arrived, and keeps up to [`super::EtcdOptions::write_concurrency`]
//! transactions in flight. Whenever one is free it takes the oldest keys (up
//! to a transaction's worth) whose earlier changes are not in flight, and
//! writes all their changes together (one transaction, unless a conflict or
//! the byte budget needs another round: see [`super::apply`]).
//!
//! So a key is never in two transactions at once (concurrent callers do not
//! conflict with each other, and its changes apply in arrival order); while
//! every slot is busy new changes accumulate, so under load transactions are
//! full; and when the store is idle a batch is written at once. When
//! callers outpace etcd, the writer stops taking requests past a bound and
//! callers wait to hand theirs over, so memory stays bounded.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;

use futures::StreamExt;
use futures::future::BoxFuture;
use futures::stream::FuturesUnordered;
use tokio::sync::{mpsc, oneshot};

use super::Inner;
use super::apply::{Group, KeyOutcome, write_chunk};
use crate::store::{ApplyOutcome, Change, Result, StoreError, check_change};

/// Requests waiting in the channel before callers wait to send theirs.
const QUEUED_REQUESTS: usize = 256;

/// Unwritten changes the writer holds before it stops taking requests (so
/// memory stays bounded when callers outpace etcd: they wait instead).
const QUEUED_CHANGES: usize = 16_384;

/// The callers' side of the writer. Dropping it (with the last clone of the
/// store) stops the writer task once its work is done.
pub(super) struct Writer {
    tx: mpsc::Sender<Request>,
}

/// Per-change results of a batch (see [`crate::StateStore::apply_each`]).
type Outcomes = Vec<Result<ApplyOutcome>>;

/// One caller's batch: each change with its key.
struct Request {
    items: Vec<(Vec<u8>, Change)>,
    reply: oneshot::Sender<Result<Outcomes>>,
}

impl Writer {
    /// Starts the writer task on the current tokio runtime.
    pub(super) fn spawn(inner: Arc<Inner>) -> Writer {
        let (tx, rx) = mpsc::channel(QUEUED_REQUESTS);
        tokio::spawn(run(inner, rx));
        Writer { tx }
    }

    /// Applies a batch: validates it (an invalid change fails alone; a
    /// guard from another epoch fails the batch before anything is sent),
    /// then waits for the writer's outcomes, one per change.
    pub(super) async fn apply(&self, inner: &Inner, changes: Vec<Change>) -> Result<Outcomes> {
        for guard in changes.iter().filter_map(|c| c.unchanged_since) {
            inner.check_epoch(guard)?;
        }
        let mut results: Vec<Option<Result<ApplyOutcome>>> = Vec::with_capacity(changes.len());
        let mut items = Vec::with_capacity(changes.len());
        for change in changes {
            match check_change(&change).and_then(|()| inner.keys.entity(change.arn())) {
                Ok(key) => {
                    results.push(None);
                    items.push((key, change));
                }
                Err(e) => results.push(Some(Err(e))),
            }
        }
        let mut written = if items.is_empty() {
            Vec::new()
        } else {
            let (reply, outcome) = oneshot::channel();
            self.tx
                .send(Request { items, reply })
                .await
                .map_err(|_| stopped())?;
            outcome.await.map_err(|_| stopped())??
        }
        .into_iter();
        Ok(results
            .into_iter()
            .map(|r| {
                r.or_else(|| written.next())
                    .unwrap_or_else(|| Err(no_outcome()))
            })
            .collect())
    }
}

fn no_outcome() -> StoreError {
    StoreError::Backend {
        message: "an etcd write returned no outcome for a change".into(),
        source: None,
    }
}

fn stopped() -> StoreError {
    StoreError::Unavailable {
        message:
            "the etcd store's writer task has stopped (its tokio runtime shut down, or it failed)"
                .into(),
        source: None,
    }
}

/// Where a change's outcome goes: its request and its position there.
type Route = (u64, usize);

/// A request waiting for outcomes.
struct Waiting {
    outcomes: Vec<Option<Result<ApplyOutcome>>>,
    remaining: usize,
    reply: Option<oneshot::Sender<Result<Outcomes>>>,
}

/// What a finished transaction reports: its keys, where each of its
/// changes' outcome goes, and the outcomes (by change index) or the error.
type Done = (Vec<Vec<u8>>, Vec<Route>, Result<Vec<(usize, KeyOutcome)>>);

/// The writer's state.
struct State {
    inner: Arc<Inner>,
    /// Keys with unwritten changes, oldest first.
    queue: VecDeque<Vec<u8>>,
    /// The unwritten changes of each queued key, in arrival order.
    pending: HashMap<Vec<u8>, Vec<(Change, Route)>>,
    /// Keys in a transaction in flight.
    writing: HashSet<Vec<u8>>,
    waiting: HashMap<u64, Waiting>,
    next_request: u64,
    /// Changes in `pending`.
    queued: usize,
    in_flight: FuturesUnordered<BoxFuture<'static, Done>>,
}

async fn run(inner: Arc<Inner>, mut rx: mpsc::Receiver<Request>) {
    let mut state = State {
        inner,
        queue: VecDeque::new(),
        pending: HashMap::new(),
        writing: HashSet::new(),
        waiting: HashMap::new(),
        next_request: 0,
        queued: 0,
        in_flight: FuturesUnordered::new(),
    };
    let mut open = true;
    loop {
        // Take everything already sent before filling transactions, so
        // they are as full as the load allows.
        while state.queued < QUEUED_CHANGES
            && let Ok(request) = rx.try_recv()
        {
            state.enqueue(request);
        }
        state.dispatch();
        if !open && state.in_flight.is_empty() {
            return;
        }
        tokio::select! {
            request = rx.recv(), if open && state.queued < QUEUED_CHANGES => match request {
                Some(request) => state.enqueue(request),
                None => open = false,
            },
            Some(done) = state.in_flight.next(), if !state.in_flight.is_empty() => {
                state.finish(done);
            }
            // Unreachable: with nothing in flight `dispatch` starts the
            // queued changes. Yield rather than panic.
            else => tokio::task::yield_now().await,
        }
    }
}

impl State {
    fn enqueue(&mut self, request: Request) {
        let id = self.next_request;
        self.next_request += 1;
        self.waiting.insert(
            id,
            Waiting {
                outcomes: std::iter::repeat_with(|| None)
                    .take(request.items.len())
                    .collect(),
                remaining: request.items.len(),
                reply: Some(request.reply),
            },
        );
        self.queued += request.items.len();
        for (pos, (key, change)) in request.items.into_iter().enumerate() {
            match self.pending.get_mut(&key) {
                Some(changes) => changes.push((change, (id, pos))),
                None => {
                    self.queue.push_back(key.clone());
                    self.pending.insert(key, vec![(change, (id, pos))]);
                }
            }
        }
    }

    /// Starts transactions while slots are free and keys are ready.
    fn dispatch(&mut self) {
        let slots = self.inner.options.write_concurrency.max(1);
        let max_keys = self
            .inner
            .options
            .max_txn_ops
            .saturating_sub(super::apply::NESTED_OPS)
            .max(1);
        while self.in_flight.len() < slots && !self.queue.is_empty() {
            let mut keys = Vec::new();
            let mut busy = Vec::new();
            while keys.len() < max_keys {
                let Some(key) = self.queue.pop_front() else {
                    break;
                };
                if self.writing.contains(&key) {
                    busy.push(key);
                } else {
                    keys.push(key);
                }
            }
            // Keys still being written keep their place at the front.
            for key in busy.into_iter().rev() {
                self.queue.push_front(key);
            }
            if keys.is_empty() {
                return;
            }
            self.start(keys);
        }
    }

    /// Starts one transaction over these keys' pending changes.
    fn start(&mut self, keys: Vec<Vec<u8>>) {
        let mut changes = Vec::new();
        let mut routes = Vec::new();
        let mut groups = Vec::with_capacity(keys.len());
        for key in &keys {
            let mut idxs = Vec::new();
            for (change, route) in self.pending.remove(key).unwrap_or_default() {
                self.queued = self.queued.saturating_sub(1);
                idxs.push(changes.len());
                changes.push(change);
                routes.push(route);
            }
            self.writing.insert(key.clone());
            groups.push(Group {
                key: key.clone(),
                idxs,
            });
        }
        // Each transaction is its own task: deciding, encoding and decoding
        // run in parallel on the runtime's threads.
        let inner = self.inner.clone();
        let now = inner.options.clock.now();
        let task = tokio::spawn(async move { write_chunk(&inner, &changes, groups, now).await });
        self.in_flight.push(Box::pin(async move {
            let result = task.await.unwrap_or_else(|e| {
                Err(StoreError::Backend {
                    message: format!("an etcd write task failed: {e}"),
                    source: None,
                })
            });
            (keys, routes, result)
        }));
    }

    /// Delivers a finished transaction's outcomes.
    fn finish(&mut self, (keys, routes, result): Done) {
        for key in &keys {
            self.writing.remove(key);
        }
        match result {
            Ok(outcomes) => {
                let mut answered = vec![false; routes.len()];
                for (i, outcome) in outcomes {
                    if let Some(&(id, pos)) = routes.get(i) {
                        answered[i] = true;
                        self.deliver(id, pos, outcome.map_err(|e| copy_error(&e)));
                    }
                }
                // Never leave a caller waiting for an outcome that is not
                // coming.
                for (&(id, pos), done) in routes.iter().zip(answered) {
                    if !done {
                        self.deliver(id, pos, Err(no_outcome()));
                    }
                }
            }
            Err(e) => {
                let e = Arc::new(e);
                for &(id, _) in &routes {
                    self.fail(id, &e);
                }
            }
        }
    }

    fn deliver(&mut self, id: u64, pos: usize, outcome: Result<ApplyOutcome>) {
        if let Some(w) = self.waiting.get_mut(&id)
            && let Some(slot) = w.outcomes.get_mut(pos)
            && slot.is_none()
        {
            *slot = Some(outcome);
            self.settle(id);
        }
    }

    /// Answers a request with the error of one of its transactions (one
    /// that failed as a whole: etcd unreachable; its other changes are still
    /// written, their outcomes dropped).
    fn fail(&mut self, id: u64, e: &Arc<StoreError>) {
        if let Some(w) = self.waiting.get_mut(&id) {
            if let Some(reply) = w.reply.take() {
                let _ = reply.send(Err(copy_error(e)));
            }
            self.settle(id);
        }
    }

    /// Counts one change of a request as done; answers the request when
    /// its last change is (unless an error answered it already).
    fn settle(&mut self, id: u64) {
        let Some(w) = self.waiting.get_mut(&id) else {
            return;
        };
        w.remaining = w.remaining.saturating_sub(1);
        if w.remaining == 0
            && let Some(w) = self.waiting.remove(&id)
            && let Some(reply) = w.reply
        {
            let _ = reply.send(Ok(w.outcomes.into_iter().flatten().collect()));
        }
    }
}

/// A copy of an error shared by several callers (`StoreError` is not
/// `Clone`: its source is a boxed error). The copy has the same variant and
/// message; its source displays and chains to the original's source.
fn copy_error(e: &Arc<StoreError>) -> StoreError {
    let source = || -> Option<Box<dyn std::error::Error + Send + Sync>> {
        std::error::Error::source(&**e)
            .map(|_| Box::new(SharedSource(e.clone())) as Box<dyn std::error::Error + Send + Sync>)
    };
    match &**e {
        StoreError::Compacted { requested, oldest } => StoreError::Compacted {
            requested: *requested,
            oldest: *oldest,
        },
        StoreError::EpochMismatch { requested, current } => StoreError::EpochMismatch {
            requested: *requested,
            current: *current,
        },
        StoreError::FutureRevision { requested, current } => StoreError::FutureRevision {
            requested: *requested,
            current: *current,
        },
        StoreError::Layout {
            stored,
            supported,
            detail,
        } => StoreError::Layout {
            stored: *stored,
            supported: *supported,
            detail: detail.clone(),
        },
        StoreError::TooLarge { ops, bytes, limits } => StoreError::TooLarge {
            ops: *ops,
            bytes: *bytes,
            limits: *limits,
        },
        StoreError::Unavailable { message, .. } => StoreError::Unavailable {
            message: message.clone(),
            source: source(),
        },
        StoreError::Exhausted { message, .. } => StoreError::Exhausted {
            message: message.clone(),
            source: source(),
        },
        StoreError::Corrupt { key, message } => StoreError::Corrupt {
            key: key.clone(),
            message: message.clone(),
        },
        StoreError::Invalid(message) => StoreError::Invalid(message.clone()),
        StoreError::Backend { message, .. } => StoreError::Backend {
            message: message.clone(),
            source: source(),
        },
    }
}

/// The source of a shared error, standing in for it in a copy.
#[derive(Debug)]
struct SharedSource(Arc<StoreError>);

impl std::fmt::Display for SharedSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match std::error::Error::source(&*self.0) {
            Some(source) => std::fmt::Display::fmt(source, f),
            None => Ok(()),
        }
    }
}

impl std::error::Error for SharedSource {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        std::error::Error::source(&*self.0).and_then(std::error::Error::source)
    }
}
