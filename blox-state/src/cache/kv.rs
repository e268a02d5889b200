//! [`KvFeed`]: one watch of a prefix of the key-value API per process,
//! fanned out to every reader (HTTP streams, wake-ups) like the cache's.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use blox_core::backoff::Backoff;
use futures::StreamExt;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::fanout::{Fanout, FeedOptions, Start};
use crate::store::{KvEntry, KvEvent, Revision, StateStore, WatchBatch};

/// How many ready key-value events are read at once (whole revisions are
/// kept together across reads).
const READ_CHUNK: usize = 1024;

/// A follower of the keys under one prefix: a mirror of their values and a
/// feed of their changes, one whole revision at a time. Cheap to clone.
#[derive(Clone)]
pub struct KvFeed {
    prefix: Arc<str>,
    feed: Fanout<KvEvent>,
    mirror: Arc<Mutex<BTreeMap<String, KvEntry>>>,
    ready: watch::Receiver<bool>,
}

impl std::fmt::Debug for KvFeed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KvFeed")
            .field("prefix", &self.prefix)
            .field("feed", &self.feed)
            .finish_non_exhaustive()
    }
}

/// What a reader of a [`KvFeed`] starts with.
#[derive(Debug)]
pub struct KvSubscription {
    /// Where its changes start (see [`Fanout::subscribe`]).
    pub start: Start<KvEvent>,
    /// The keys' values as of the feed's newest revision (the last known
    /// state of what later changes delete).
    pub current: Vec<KvEntry>,
}

fn lock(m: &Mutex<BTreeMap<String, KvEntry>>) -> MutexGuard<'_, BTreeMap<String, KvEntry>> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl KvFeed {
    /// Follows the keys under `prefix` on a spawned task: list, then watch
    /// from the list's revision, resuming from the last whole revision
    /// after transient errors and relisting when the store says so. Abort
    /// the handle to stop it.
    pub fn spawn(
        store: Arc<dyn StateStore>,
        prefix: &str,
        options: FeedOptions,
    ) -> (KvFeed, JoinHandle<()>) {
        let (ready_tx, ready) = watch::channel(false);
        let feed = KvFeed {
            prefix: prefix.into(),
            feed: Fanout::new(options),
            mirror: Arc::default(),
            ready,
        };
        let handle = tokio::spawn(feed.clone().follow(store, ready_tx));
        (feed, handle)
    }

    /// The prefix followed.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Whether the first list has been loaded.
    pub fn is_ready(&self) -> bool {
        *self.ready.borrow()
    }

    /// Resolves once the first list has been loaded.
    pub async fn wait_until_ready(&self) {
        let mut rx = self.ready.clone();
        let _ = rx.wait_for(|r| *r).await;
    }

    /// Subscribes to every change after `after`, with the current values.
    pub fn subscribe(&self, after: Revision) -> KvSubscription {
        let mirror = lock(&self.mirror);
        KvSubscription {
            start: self.feed.subscribe(after),
            current: mirror.values().cloned().collect(),
        }
    }

    /// The feed (to count or end its readers).
    pub fn feed(&self) -> &Fanout<KvEvent> {
        &self.feed
    }

    /// Ends every reader cleanly and refuses new ones (at shutdown).
    pub fn end_streams(&self) {
        self.feed.close();
    }

    fn replace(&self, items: Vec<KvEntry>, revision: Revision) {
        let mut mirror = lock(&self.mirror);
        *mirror = items.into_iter().map(|e| (e.key.clone(), e)).collect();
        self.feed.reset(revision);
    }

    fn apply(&self, batch: WatchBatch<KvEvent>) {
        let mut mirror = lock(&self.mirror);
        for e in &batch.events {
            match &e.value {
                Some(value) => {
                    mirror.insert(
                        e.key.clone(),
                        KvEntry {
                            key: e.key.clone(),
                            value: value.clone(),
                            revision: e.revision,
                        },
                    );
                }
                None => {
                    mirror.remove(&e.key);
                }
            }
        }
        // Under the mirror's lock: a subscriber's values match its start.
        self.feed.publish(batch);
    }

    async fn follow(self, store: Arc<dyn StateStore>, ready: watch::Sender<bool>) {
        let mut backoff = Backoff::default();
        loop {
            let mut from = match store.kv_list(&self.prefix).await {
                Ok(listing) => {
                    self.replace(listing.items, listing.revision);
                    ready.send_replace(true);
                    backoff.reset();
                    listing.revision
                }
                Err(e) => {
                    let delay = backoff.next_delay();
                    tracing::warn!(error = %e, retry_in = ?delay, prefix = %self.prefix,
                        "key-value feed cannot list the store; retrying");
                    tokio::time::sleep(delay).await;
                    continue;
                }
            };
            loop {
                let stream = match store.kv_watch(&self.prefix, from).await {
                    Ok(s) => s,
                    Err(e) if e.needs_relist() => break,
                    Err(e) => {
                        let delay = backoff.next_delay();
                        tracing::warn!(error = %e, retry_in = ?delay, prefix = %self.prefix,
                            "key-value feed cannot watch the store; retrying");
                        tokio::time::sleep(delay).await;
                        continue;
                    }
                };
                let mut chunks = stream.ready_chunks(READ_CHUNK);
                // The events of a revision not yet known to be whole.
                let mut held: Vec<KvEvent> = Vec::new();
                let mut relist = false;
                while let Some(chunk) = chunks.next().await {
                    let full = chunk.len() == READ_CHUNK;
                    let mut events = std::mem::take(&mut held);
                    let mut failed = None;
                    for item in chunk {
                        match item {
                            Ok(e) => events.push(e),
                            Err(e) => {
                                failed = Some(e);
                                break;
                            }
                        }
                    }
                    let mut batches = WatchBatch::group(events, |e| e.revision);
                    // A full read may have cut its last revision short.
                    if full
                        && failed.is_none()
                        && let Some(last) = batches.pop()
                    {
                        held = last.events;
                    }
                    for batch in batches {
                        from = batch.revision;
                        self.apply(batch);
                    }
                    backoff.reset();
                    if let Some(e) = failed {
                        relist = e.needs_relist();
                        tracing::info!(error = %e, prefix = %self.prefix, "key-value feed's watch ended");
                        break;
                    }
                }
                if relist {
                    break;
                }
                tokio::time::sleep(backoff.next_delay()).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use bytes::Bytes;

    use super::*;
    use crate::cache::fanout::FeedEnd;
    use crate::store::memory::MemoryStore;
    use crate::store::{KvOp, KvTxn};

    #[tokio::test]
    async fn a_transaction_is_one_revision_of_the_feed_and_the_mirror_follows() {
        let store = Arc::new(MemoryStore::new());
        store
            .kv_put("p/a", Bytes::from_static(b"1"), None)
            .await
            .unwrap();
        let (feed, handle) = KvFeed::spawn(store.clone(), "p/", FeedOptions::default());
        feed.wait_until_ready().await;
        let sub = feed.subscribe(feed.feed().head());
        assert_eq!(sub.current.len(), 1);
        let Start::Ready(sub) = sub.start else {
            panic!("expected Ready");
        };
        let mut stream = sub.into_stream();
        let txn = KvTxn {
            checks: Vec::new(),
            ops: vec![
                KvOp::Put {
                    key: "p/b".into(),
                    value: Bytes::from_static(b"2"),
                },
                KvOp::Delete { key: "p/a".into() },
            ],
        };
        store.kv_txn(txn).await.unwrap();
        let batch = tokio::time::timeout(Duration::from_secs(10), stream.next())
            .await
            .unwrap()
            .unwrap()
            .map_err(|e: FeedEnd| e.to_string())
            .unwrap();
        assert_eq!(batch.events.len(), 2);
        let now = feed.subscribe(batch.revision);
        assert_eq!(
            now.current
                .iter()
                .map(|e| e.key.as_str())
                .collect::<Vec<_>>(),
            vec!["p/b"]
        );
        handle.abort();
    }
}
