//! One store watch, many readers: whole revisions fanned out through a
//! bounded broadcast, with a bounded history to resume from.
//!
//! Modelled on kube-runtime's shared reflector. One follower (the cache's,
//! or a [`super::KvFeed`]) publishes every revision it applies; each reader
//! (an HTTP stream, a wake-up loop) [`Fanout::subscribe`]s from the revision
//! it has seen and gets the revisions after it from the history, then live
//! ones from a `tokio::sync::broadcast` channel. Nothing is buffered per
//! reader: a reader that falls more than the channel's capacity behind
//! (`Lagged`) is ended with [`FeedEnd::Lagged`], so it resumes or relists.
//! Dropping a reader's stream releases its place at once.
//!
//! Memory: the history keeps at most [`FeedOptions::history_events`] events
//! (whole revisions, oldest dropped first) and the channel at most
//! [`FeedOptions::broadcast_revisions`] revisions; both hold shared pointers
//! to events (entities the view also holds cost nothing more).

use std::collections::VecDeque;
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};

use futures::StreamExt;
use futures::stream::BoxStream;
use tokio::sync::broadcast;

use crate::store::{Revision, StoreError, WatchBatch};

/// The default [`FeedOptions::history_events`].
pub const DEFAULT_HISTORY_EVENTS: usize = 10_000;
/// The default [`FeedOptions::broadcast_revisions`].
pub const DEFAULT_BROADCAST_REVISIONS: usize = 1024;

/// Bounds of a feed's memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FeedOptions {
    /// How many events of recent revisions the feed keeps for readers to
    /// resume from without asking the store (whole revisions: the oldest are
    /// dropped while more are kept). 0 keeps none.
    pub history_events: usize,
    /// How many revisions a reader may fall behind the newest before it is
    /// ended with [`FeedEnd::Lagged`] (at least 1).
    pub broadcast_revisions: usize,
}

impl Default for FeedOptions {
    fn default() -> Self {
        FeedOptions {
            history_events: DEFAULT_HISTORY_EVENTS,
            broadcast_revisions: DEFAULT_BROADCAST_REVISIONS,
        }
    }
}

/// Why a reader's stream of revisions ended.
#[derive(Debug, thiserror::Error)]
pub enum FeedEnd {
    /// The reader fell too far behind the feed: resume from the last
    /// revision it handled (or relist).
    #[error(
        "this reader fell more than {0} revisions behind the feed and was ended; resume from the last revision read, or relist"
    )]
    Lagged(u64),
    /// The feed's follower relisted the store (its watch was compacted or
    /// it restarted): changes may be missing, resume or relist.
    #[error(
        "the view relisted the store; resume from the last revision read, or relist and stream from the list's revision"
    )]
    Relisted,
    /// The store failed while the reader caught up from its history.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A shared revision.
pub type SharedBatch<E> = Arc<WatchBatch<E>>;

/// A reader's stream: revisions in order, until the feed closes (`None`)
/// or an error ends it.
pub type FeedStream<E> = BoxStream<'static, Result<SharedBatch<E>, FeedEnd>>;

/// What a reader gets when it subscribes.
pub struct Subscription<E> {
    /// Revisions after the asked one, from the history.
    replay: VecDeque<SharedBatch<E>>,
    /// Live revisions published after the subscription.
    live: Option<broadcast::Receiver<SharedBatch<E>>>,
    /// Revisions up to this one are not wanted.
    after: Revision,
    /// The shared state (to tell a shutdown from a relist).
    shared: Arc<Mutex<State<E>>>,
}

impl<E> std::fmt::Debug for Subscription<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscription")
            .field("replay", &self.replay.len())
            .field("after", &self.after)
            .finish_non_exhaustive()
    }
}

/// Where a reader can start.
#[derive(Debug)]
pub enum Start<E> {
    /// From the feed alone.
    Ready(Subscription<E>),
    /// The asked revision is older than the history (or of another epoch):
    /// catch up from the store's history up to `start`, then go on with the
    /// subscription (every revision after `start`) — see [`catch_up`].
    Behind {
        /// The subscription to go on with.
        subscription: Subscription<E>,
        /// The newest revision the history does not hold.
        start: Revision,
    },
    /// The asked revision is newer than the feed has applied.
    Ahead {
        /// The subscription, which skips revisions up to the asked one.
        subscription: Subscription<E>,
        /// The newest revision the feed has applied.
        head: Revision,
    },
}

struct State<E> {
    options: FeedOptions,
    /// `None` once closed.
    tx: Option<broadcast::Sender<SharedBatch<E>>>,
    history: VecDeque<SharedBatch<E>>,
    /// Events held by `history`.
    events: usize,
    /// Every revision after this one, up to `head`, is in `history`.
    start: Revision,
    /// The newest revision published (or relisted at).
    head: Revision,
}

/// The publishing side and subscription point of a feed (cheap to clone).
pub struct Fanout<E> {
    shared: Arc<Mutex<State<E>>>,
}

impl<E> Clone for Fanout<E> {
    fn clone(&self) -> Self {
        Fanout {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<E> std::fmt::Debug for Fanout<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = lock(&self.shared);
        f.debug_struct("Fanout")
            .field("start", &s.start)
            .field("head", &s.head)
            .field("history", &s.history.len())
            .field("closed", &s.tx.is_none())
            .finish()
    }
}

fn lock<E>(m: &Mutex<State<E>>) -> MutexGuard<'_, State<E>> {
    // No code panics while holding it; the state is whole between calls.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn channel<E: Clone>(options: &FeedOptions) -> broadcast::Sender<E> {
    broadcast::channel(options.broadcast_revisions.max(1)).0
}

impl<E: Send + Sync + 'static> Fanout<E> {
    /// An empty, open feed.
    pub fn new(options: FeedOptions) -> Self {
        Fanout {
            shared: Arc::new(Mutex::new(State {
                options,
                tx: Some(channel(&options)),
                history: VecDeque::new(),
                events: 0,
                start: Revision::default(),
                head: Revision::default(),
            })),
        }
    }

    /// Publishes one whole revision (newer than every one before).
    pub fn publish(&self, batch: WatchBatch<E>) {
        let mut s = lock(&self.shared);
        let batch = Arc::new(batch);
        s.head = batch.revision;
        s.events += batch.events.len();
        s.history.push_back(Arc::clone(&batch));
        while s.events > s.options.history_events {
            let Some(old) = s.history.pop_front() else {
                break;
            };
            s.events -= old.events.len();
            s.start = old.revision;
        }
        if let Some(tx) = &s.tx {
            // No receiver is not an error: nobody is streaming.
            let _ = tx.send(batch);
        }
    }

    /// The follower relisted at `revision`: the history restarts there and
    /// every current reader is ended with [`FeedEnd::Relisted`].
    pub fn reset(&self, revision: Revision) {
        let mut s = lock(&self.shared);
        s.history.clear();
        s.events = 0;
        s.start = revision;
        s.head = revision;
        if s.tx.is_some() {
            let options = s.options;
            s.tx = Some(channel(&options));
        }
    }

    /// Ends every reader's stream cleanly and refuses new ones (at shutdown).
    pub fn close(&self) {
        lock(&self.shared).tx = None;
    }

    /// Whether [`Fanout::close`] was called.
    pub fn is_closed(&self) -> bool {
        lock(&self.shared).tx.is_none()
    }

    /// How many readers are subscribed now.
    pub fn readers(&self) -> usize {
        lock(&self.shared)
            .tx
            .as_ref()
            .map_or(0, |tx| tx.receiver_count())
    }

    /// The newest revision published.
    pub fn head(&self) -> Revision {
        lock(&self.shared).head
    }

    /// Subscribes to every revision after `after`.
    pub fn subscribe(&self, after: Revision) -> Start<E> {
        let s = lock(&self.shared);
        let same_epoch = after.epoch == s.head.epoch;
        let mut subscription = Subscription {
            replay: VecDeque::new(),
            live: s.tx.as_ref().map(broadcast::Sender::subscribe),
            after,
            shared: Arc::clone(&self.shared),
        };
        if !same_epoch || after.seq < s.start.seq {
            subscription.replay = s.history.iter().cloned().collect();
            subscription.after = s.start;
            return Start::Behind {
                subscription,
                start: s.start,
            };
        }
        subscription.replay = s
            .history
            .iter()
            .filter(|b| b.revision.seq > after.seq)
            .cloned()
            .collect();
        if after.seq > s.head.seq {
            return Start::Ahead {
                subscription,
                head: s.head,
            };
        }
        Start::Ready(subscription)
    }
}

impl<E: Send + Sync + 'static> Start<E> {
    /// The subscription alone, for a reader that needs no catch-up (one
    /// that subscribes from the feed's newest revision: its changes start
    /// at the feed's history, or at `after` if that is newer).
    pub fn subscription(self) -> Subscription<E> {
        match self {
            Start::Ready(subscription)
            | Start::Behind { subscription, .. }
            | Start::Ahead { subscription, .. } => subscription,
        }
    }

    /// The reader's stream of every revision after `after` (the revision it
    /// subscribed from): from the feed alone when it can; otherwise from
    /// the store's history first (`history`, a store watch from `after`, is
    /// awaited only then); a revision the feed has not applied yet is
    /// checked against the store's current revision (`current`, awaited
    /// only then). The store's errors are the caller's (410 to relist, 503).
    pub async fn open<H, C>(
        self,
        after: Revision,
        current: C,
        history: H,
    ) -> Result<FeedStream<E>, StoreError>
    where
        H: Future<
            Output = Result<BoxStream<'static, Result<WatchBatch<E>, StoreError>>, StoreError>,
        >,
        C: Future<Output = Result<Revision, StoreError>>,
    {
        match self {
            Start::Ready(subscription) => Ok(subscription.into_stream()),
            Start::Ahead { subscription, .. } => {
                let current = current.await?;
                if after.epoch != current.epoch || after.seq > current.seq {
                    return Err(StoreError::FutureRevision {
                        requested: after,
                        current,
                    });
                }
                Ok(subscription.into_stream())
            }
            Start::Behind {
                subscription,
                start,
            } => Ok(catch_up(history.await?, start, subscription)),
        }
    }
}

impl<E: Send + Sync + 'static> Subscription<E> {
    /// The revisions: the replayed ones, then live ones.
    pub fn into_stream(self) -> FeedStream<E> {
        futures::stream::unfold(Some(self), |state| async move {
            let mut sub = state?;
            loop {
                let next = match sub.replay.pop_front() {
                    Some(b) => Ok(b),
                    None => match sub.live.as_mut() {
                        None => return None,
                        Some(rx) => match rx.recv().await {
                            Ok(b) => Ok(b),
                            Err(broadcast::error::RecvError::Lagged(n)) => Err(FeedEnd::Lagged(n)),
                            Err(broadcast::error::RecvError::Closed) => {
                                // Closed by `close` (shutdown): a clean end;
                                // replaced by `reset`: the view relisted.
                                let shut_down = lock(&sub.shared).tx.is_none();
                                match shut_down {
                                    true => return None,
                                    false => Err(FeedEnd::Relisted),
                                }
                            }
                        },
                    },
                };
                match next {
                    Ok(b) if b.revision.seq <= sub.after.seq => continue,
                    Ok(b) => {
                        sub.after = b.revision;
                        return Some((Ok(b), Some(sub)));
                    }
                    Err(e) => return Some((Err(e), None)),
                }
            }
        })
        .boxed()
    }
}

/// A reader that is [`Start::Behind`]: the store's revisions after its own
/// up to `start` (from `history`, a store watch from the reader's
/// revision), then the subscription's. The store watch is dropped as soon
/// as it yields a revision after `start`.
pub fn catch_up<E: Send + Sync + 'static>(
    history: BoxStream<'static, Result<WatchBatch<E>, StoreError>>,
    start: Revision,
    subscription: Subscription<E>,
) -> FeedStream<E> {
    enum Phase<E> {
        Store(
            BoxStream<'static, Result<WatchBatch<E>, StoreError>>,
            Subscription<E>,
        ),
        Feed(FeedStream<E>),
    }
    futures::stream::unfold(
        Phase::Store(history, subscription),
        move |phase| async move {
            match phase {
                Phase::Store(mut history, subscription) => match history.next().await {
                    Some(Ok(batch)) if batch.revision.seq <= start.seq => {
                        Some((Ok(Arc::new(batch)), Phase::Store(history, subscription)))
                    }
                    Some(Err(e)) => Some((
                        Err(FeedEnd::Store(e)),
                        Phase::Feed(futures::stream::empty().boxed()),
                    )),
                    // Past the history's start (or the store's watch ended):
                    // the subscription holds the rest.
                    Some(Ok(_)) | None => {
                        drop(history);
                        let mut feed = subscription.into_stream();
                        let item = feed.next().await?;
                        Some((item, Phase::Feed(feed)))
                    }
                },
                Phase::Feed(mut feed) => {
                    let item = feed.next().await?;
                    Some((item, Phase::Feed(feed)))
                }
            }
        },
    )
    .boxed()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rev(seq: u64) -> Revision {
        Revision::new(1, seq)
    }

    fn batch(seq: u64, n: usize) -> WatchBatch<u64> {
        WatchBatch {
            revision: rev(seq),
            events: vec![seq; n],
        }
    }

    fn seqs(items: &[Result<SharedBatch<u64>, FeedEnd>]) -> Vec<u64> {
        items
            .iter()
            .map(|b| b.as_ref().map(|b| b.revision.seq).unwrap_or(0))
            .collect()
    }

    async fn take(
        stream: &mut FeedStream<u64>,
        n: usize,
    ) -> Vec<Result<SharedBatch<u64>, FeedEnd>> {
        let mut out = Vec::new();
        for _ in 0..n {
            out.push(stream.next().await.expect("an item"));
        }
        out
    }

    fn ready(start: Start<u64>) -> Subscription<u64> {
        match start {
            Start::Ready(s) => s,
            other => panic!("expected Ready, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn a_reader_resumes_from_the_history_then_live_revisions() {
        let feed = Fanout::new(FeedOptions::default());
        feed.reset(rev(1));
        feed.publish(batch(2, 2));
        feed.publish(batch(4, 1));
        let mut s = ready(feed.subscribe(rev(2))).into_stream();
        feed.publish(batch(5, 3));
        let got = take(&mut s, 2).await;
        assert_eq!(seqs(&got), vec![4, 5]);
        assert_eq!(got[1].as_ref().unwrap().events.len(), 3);
    }

    #[tokio::test]
    async fn the_history_is_bounded_by_events_in_whole_revisions() {
        let feed = Fanout::new(FeedOptions {
            history_events: 3,
            broadcast_revisions: 8,
        });
        feed.reset(rev(1));
        feed.publish(batch(2, 2));
        feed.publish(batch(3, 2));
        // Revision 2 was dropped whole: resuming from 1 needs the store.
        assert!(matches!(feed.subscribe(rev(1)), Start::Behind { start, .. } if start == rev(2)));
        assert!(matches!(feed.subscribe(rev(2)), Start::Ready(_)));
        assert!(matches!(
            feed.subscribe(Revision::new(9, 3)),
            Start::Behind { .. }
        ));
        assert!(matches!(feed.subscribe(rev(7)), Start::Ahead { head, .. } if head == rev(3)));
    }

    #[tokio::test]
    async fn a_slow_reader_is_ended_as_lagged_instead_of_buffered() {
        let feed = Fanout::new(FeedOptions {
            history_events: 0,
            broadcast_revisions: 2,
        });
        feed.reset(rev(1));
        let mut s = ready(feed.subscribe(rev(1))).into_stream();
        for seq in 2..10 {
            feed.publish(batch(seq, 1));
        }
        assert!(matches!(s.next().await, Some(Err(FeedEnd::Lagged(_)))));
        assert!(s.next().await.is_none());
    }

    #[tokio::test]
    async fn a_relist_ends_readers_with_an_error_and_close_ends_them_cleanly() {
        let feed = Fanout::new(FeedOptions::default());
        feed.reset(rev(1));
        let mut relisted = ready(feed.subscribe(rev(1))).into_stream();
        feed.reset(rev(5));
        assert!(matches!(
            relisted.next().await,
            Some(Err(FeedEnd::Relisted))
        ));
        let mut closed = ready(feed.subscribe(rev(5))).into_stream();
        assert_eq!(feed.readers(), 1);
        feed.close();
        assert!(closed.next().await.is_none());
        assert_eq!(feed.readers(), 0);
        // After close, a new reader ends at once.
        let mut late = ready(feed.subscribe(rev(5))).into_stream();
        assert!(late.next().await.is_none());
    }

    #[tokio::test]
    async fn dropping_a_reader_releases_it() {
        let feed: Fanout<u64> = Fanout::new(FeedOptions::default());
        let s = ready(feed.subscribe(Revision::default())).into_stream();
        assert_eq!(feed.readers(), 1);
        drop(s);
        assert_eq!(feed.readers(), 0);
    }

    #[tokio::test]
    async fn catching_up_takes_the_store_up_to_the_history_then_the_feed() {
        let feed = Fanout::new(FeedOptions {
            history_events: 2,
            broadcast_revisions: 8,
        });
        feed.reset(rev(1));
        for seq in 2..=5 {
            feed.publish(batch(seq, 1));
        }
        let Start::Behind {
            subscription,
            start,
        } = feed.subscribe(rev(1))
        else {
            panic!("expected Behind");
        };
        assert_eq!(start, rev(3));
        let store = futures::stream::iter((2..=6).map(|s| Ok(batch(s, 1)))).boxed();
        let mut s = catch_up(store, start, subscription);
        feed.publish(batch(6, 1));
        let got = take(&mut s, 5).await;
        assert_eq!(seqs(&got), vec![2, 3, 4, 5, 6]);
    }
}
