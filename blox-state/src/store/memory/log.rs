//! The bounded change log of the memory store and the streams that follow it.
//!
//! Every write that watchers can see appends an entry (a [`WatchEvent`] or a
//! [`KvEvent`], whose entity bodies are shared `Arc`s) tagged with the write's
//! sequence number. When the log is full the oldest entry is dropped and the
//! log remembers the highest sequence number it has dropped: a watch must
//! start at or after it. Followers never hold the store's lock while they
//! wait and never slow writers down: they copy a chunk of entries under the
//! lock, release it, and wait on a `tokio::sync::watch` channel that writers
//! bump once per batch. Followers yield one [`WatchBatch`] per write (the
//! selected entries of one sequence number). A follower that falls behind
//! the log gets [`StoreError::Compacted`] as its last item.

use std::collections::VecDeque;
use std::sync::Arc;

use futures::StreamExt;
use futures::stream::BoxStream;

use super::Shared;
use crate::store::{KvEvent, Result, Revision, StoreError, WatchBatch, WatchEvent};

/// How many log entries a follower copies per visit to the lock.
const READ_CHUNK: usize = 1024;

/// A change visible to watchers.
#[derive(Debug, Clone)]
pub(super) enum LogEntry {
    /// A change to an entity.
    Entity(WatchEvent),
    /// A change to a key of the key-value API.
    Kv(KvEvent),
}

/// The bounded history of changes, oldest first.
#[derive(Debug)]
pub(super) struct ChangeLog {
    entries: VecDeque<(u64, LogEntry)>,
    capacity: usize,
    /// The highest sequence number dropped from the log (0 = none dropped).
    compacted: u64,
}

impl ChangeLog {
    /// An empty log keeping at most `capacity` entries.
    pub(super) fn new(capacity: usize) -> Self {
        ChangeLog {
            entries: VecDeque::with_capacity(capacity.min(READ_CHUNK * 16)),
            capacity,
            compacted: 0,
        }
    }

    /// Appends the entry of write `seq`, dropping the oldest one if full.
    pub(super) fn push(&mut self, seq: u64, entry: LogEntry) {
        if self.capacity == 0 {
            self.compacted = seq;
            return;
        }
        if self.entries.len() >= self.capacity
            && let Some((dropped, _)) = self.entries.pop_front()
        {
            self.compacted = dropped;
        }
        self.entries.push_back((seq, entry));
    }

    /// The oldest sequence number a watch may start after.
    pub(super) fn oldest_start(&self) -> u64 {
        self.compacted
    }

    /// Calls `visit` on the entries after `after`, at most about
    /// [`READ_CHUNK`] of them (never splitting the entries of one write), and
    /// returns the sequence number of the last entry visited (or `after`).
    fn read_after(&self, after: u64, mut visit: impl FnMut(u64, &LogEntry)) -> u64 {
        let start = self.entries.partition_point(|(seq, _)| *seq <= after);
        let mut cursor = after;
        for (count, (seq, entry)) in self.entries.range(start..).enumerate() {
            if count >= READ_CHUNK && *seq != cursor {
                break;
            }
            visit(*seq, entry);
            cursor = *seq;
        }
        cursor
    }
}

/// The state of one stream following the log.
struct Follower<T, F> {
    shared: Arc<Shared>,
    /// The sequence number of the last log entry looked at.
    cursor: u64,
    wake: tokio::sync::watch::Receiver<u64>,
    ready: VecDeque<WatchBatch<T>>,
    select: F,
    finished: bool,
}

impl<T, F: Fn(&LogEntry) -> Option<T>> Follower<T, F> {
    /// Copies the next chunk of selected entries into `ready`.
    fn fill(&mut self) -> Result<()> {
        let state = self.shared.lock();
        let oldest = state.log.oldest_start();
        if self.cursor < oldest {
            return Err(StoreError::Compacted {
                requested: Revision::new(self.shared.epoch, self.cursor),
                oldest: Revision::new(self.shared.epoch, oldest),
            });
        }
        let ready = &mut self.ready;
        let select = &self.select;
        let epoch = self.shared.epoch;
        self.cursor = state.log.read_after(self.cursor, |seq, entry| {
            let Some(item) = select(entry) else { return };
            let revision = Revision::new(epoch, seq);
            match ready.back_mut() {
                Some(last) if last.revision == revision => last.events.push(item),
                _ => ready.push_back(WatchBatch {
                    revision,
                    events: vec![item],
                }),
            }
        });
        Ok(())
    }

    /// The next write: buffered, else read from the log, else waited for.
    async fn next(mut self) -> Option<(Result<WatchBatch<T>>, Self)> {
        if self.finished {
            return None;
        }
        loop {
            if let Some(item) = self.ready.pop_front() {
                return Some((Ok(item), self));
            }
            // Mark the current write as seen before reading, so a write that
            // lands after the read always wakes us.
            self.wake.borrow_and_update();
            if let Err(e) = self.fill() {
                self.finished = true;
                return Some((Err(e), self));
            }
            if self.ready.is_empty() && self.wake.changed().await.is_err() {
                return None;
            }
        }
    }
}

/// A stream of the selected log entries after sequence number `after`, then
/// of new ones as they are written, one batch per write (writes with no
/// selected entry are left out). The caller has checked `after`.
pub(super) fn follow<T, F>(
    shared: Arc<Shared>,
    after: u64,
    select: F,
) -> BoxStream<'static, Result<WatchBatch<T>>>
where
    T: Send + 'static,
    F: Fn(&LogEntry) -> Option<T> + Send + 'static,
{
    let wake = shared.wake.subscribe();
    let follower = Follower {
        shared,
        cursor: after,
        wake,
        ready: VecDeque::new(),
        select,
        finished: false,
    };
    futures::stream::unfold(follower, Follower::next).boxed()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kv(seq: u64) -> LogEntry {
        LogEntry::Kv(KvEvent {
            key: format!("k{seq}"),
            value: None,
            revision: Revision::new(1, seq),
        })
    }

    fn keys_after(log: &ChangeLog, after: u64) -> (Vec<String>, u64) {
        let mut keys = Vec::new();
        let cursor = log.read_after(after, |_, e| {
            if let LogEntry::Kv(k) = e {
                keys.push(k.key.clone());
            }
        });
        (keys, cursor)
    }

    #[test]
    fn a_full_log_drops_its_oldest_entry_and_remembers_it() {
        let mut log = ChangeLog::new(2);
        for seq in 1..=3 {
            log.push(seq, kv(seq));
        }
        assert_eq!(log.oldest_start(), 1);
        assert_eq!(keys_after(&log, 1), (vec!["k2".into(), "k3".into()], 3));
        assert_eq!(keys_after(&log, 2), (vec!["k3".into()], 3));
        assert_eq!(keys_after(&log, 3), (vec![], 3));
    }

    #[test]
    fn a_log_of_capacity_zero_keeps_nothing() {
        let mut log = ChangeLog::new(0);
        log.push(4, kv(4));
        assert_eq!(log.oldest_start(), 4);
        assert_eq!(keys_after(&log, 4), (vec![], 4));
    }

    #[test]
    fn a_chunked_read_never_splits_the_entries_of_one_write() {
        let mut log = ChangeLog::new(READ_CHUNK * 2);
        for seq in 1..READ_CHUNK as u64 {
            log.push(seq, kv(seq));
        }
        // One transaction writing three keys at the same sequence number.
        let last = READ_CHUNK as u64;
        for _ in 0..3 {
            log.push(last, kv(last));
        }
        log.push(last + 1, kv(last + 1));
        let (keys, cursor) = keys_after(&log, 0);
        assert_eq!(cursor, last);
        assert_eq!(keys.len(), READ_CHUNK + 2);
        assert_eq!(keys_after(&log, cursor).0, vec![format!("k{}", last + 1)]);
    }
}
