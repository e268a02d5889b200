//! Bounding history: compaction of old revisions (on a schedule or on
//! demand), and retention ([`StateStore::expire`]) over the retention
//! indexes (see [`super::keys`]).
//!
//! Retention reads the index entries that are due (a page at a time), reads
//! each one's entity, and then:
//! * a retired entity still retired before the cut-off is deleted through
//!   the writer, guarded on its `mod_revision` (so a write since wins), which
//!   leaves a tombstone and its index entry;
//! * a tombstone recorded before the cut-off is deleted with its index
//!   entries, in one transaction guarded on its `mod_revision`;
//! * an entry whose entity has changed since (written again, resurrected,
//!   purged) is stale and removed, guarded on the entry's own
//!   `mod_revision` (a writer that put it again keeps it).

use std::collections::HashSet;
use std::sync::atomic::Ordering;

use blox_core::model::{Arn, Timestamp};
use etcd_client::{CompactionOptions, Compare, CompareOp, GetOptions, KeyValue, Txn, TxnOp};
use futures::StreamExt;

use super::apply::NESTED_OPS;
use super::keys::{Index, prefix_end};
use super::record::Record;
use super::retry::{Failure, classify, to_store_error};
use super::{EtcdStore, Inner, PAGE};
use crate::store::retention::retired_since;
use crate::store::{Change, Expiry, ExpiryReport, Result, Revision, StateStore};

/// What one maintenance run did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MaintenanceReport {
    /// The revision history was compacted to, if it was.
    pub compacted_to: Option<Revision>,
}

/// Index entries and entities read at once.
const READ_CONCURRENCY: usize = 16;

impl EtcdStore {
    /// Compacts history so that only the last `keep_revisions` revisions
    /// remain; returns the revision compacted to (`None` if there was
    /// nothing to compact). Watches from an older revision then fail with
    /// [`crate::store::StoreError::Compacted`].
    pub async fn compact(&self, keep_revisions: u64) -> Result<Option<Revision>> {
        let inner = &self.inner;
        let current = inner.current_seq().await?;
        let keep = i64::try_from(keep_revisions).unwrap_or(i64::MAX);
        let target = current.saturating_sub(keep);
        if target <= 0 || target <= inner.compacted.load(Ordering::Relaxed) {
            return Ok(None);
        }
        let mut attempt = || {
            let mut kv = inner.client.kv_client();
            async move { kv.compact(target, Some(CompactionOptions::new())).await }
        };
        match inner.policy.run_raw(&mut attempt).await {
            Ok(_) => {}
            // Someone (another process, etcd's auto-compaction) got there first.
            Err(super::retry::AttemptError::Client(e)) if classify(&e) == Failure::Compacted => {}
            Err(super::retry::AttemptError::Client(e)) => {
                return Err(to_store_error("compacting", e));
            }
            Err(super::retry::AttemptError::TimedOut) => {
                return Err(crate::store::StoreError::Unavailable {
                    message: "compacting: no etcd member answered".into(),
                    source: None,
                });
            }
        }
        inner.compacted.fetch_max(target, Ordering::Relaxed);
        Ok(Some(inner.revision(target)))
    }

    /// One maintenance run: compacts to [`super::EtcdOptions::keep_revisions`].
    /// (Retention is [`StateStore::expire`], run by the leader.)
    pub async fn maintain(&self) -> Result<MaintenanceReport> {
        let compacted_to = self.compact(self.inner.options.keep_revisions).await?;
        Ok(MaintenanceReport { compacted_to })
    }

    /// Runs [`EtcdStore::maintain`] every
    /// [`super::EtcdOptions::compaction_interval`] until the handle is
    /// aborted; failures are logged and retried at the next tick. Several
    /// processes may run it against one cluster (compaction is idempotent),
    /// though running it only on the leader saves work.
    pub fn spawn_maintenance(&self) -> tokio::task::JoinHandle<()> {
        let store = self.clone();
        let every = self.inner.options.compaction_interval;
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            loop {
                tick.tick().await;
                match store.maintain().await {
                    Ok(r) => tracing::debug!(?r, "etcd maintenance done"),
                    Err(e) => tracing::warn!(error = %e, "etcd maintenance failed"),
                }
            }
        })
    }
}

/// An index entry that is due: its key, its `mod_revision` and its entity.
struct Due {
    key: Vec<u8>,
    revision: i64,
    arn: Arn,
}

/// A guarded delete: if `guard` is still at `revision`, delete `keys`.
struct GuardedDelete {
    guard: Vec<u8>,
    revision: i64,
    keys: Vec<Vec<u8>>,
}

/// Applies retention (see [`StateStore::expire`] and the module docs).
pub(super) async fn expire(store: &EtcdStore, expiry: Expiry) -> Result<ExpiryReport> {
    let mut report = ExpiryReport::default();
    if let Some(before) = expiry.retired_before {
        report.retired = expire_retired(store, before).await?;
    }
    if let Some(before) = expiry.deleted_before {
        report.purged = purge_tombstones(&store.inner, before).await?;
    }
    Ok(report)
}

/// Deletes the entities retired before `before`; returns how many.
async fn expire_retired(store: &EtcdStore, before: Timestamp) -> Result<usize> {
    let inner = &store.inner;
    let mut removed = 0;
    let mut from = inner.keys.index(Index::Retired).into_bytes();
    let end = inner.keys.index_before(Index::Retired, before);
    while let Some((page, next)) = due_page(inner, Index::Retired, &from, &end).await? {
        let mut seen = HashSet::new();
        let mut changes = Vec::new();
        let mut handled = Vec::new();
        let mut stale = Vec::new();
        for (due, entity) in read_entities(inner, page).await? {
            let retire = match &entity {
                Some((Record::Live(e), rev)) if seen.insert(due.arn.clone()) => {
                    retired_since(e).is_some_and(|t| t < before).then(|| {
                        Change::delete(due.arn.clone(), e.version())
                            .unchanged_since(inner.revision(*rev))
                    })
                }
                _ => None,
            };
            match retire {
                Some(change) => {
                    changes.push(change);
                    handled.push(entry_delete(due));
                }
                None => stale.push(entry_delete(due)),
            }
        }
        if !changes.is_empty() {
            let outcomes = store.apply_each(changes).await?;
            removed += outcomes
                .iter()
                .filter(|o| matches!(o, Ok(o) if o.is_applied()))
                .count();
        }
        handled.extend(stale);
        delete_guarded(inner, handled).await?;
        from = next;
    }
    Ok(removed)
}

/// Purges the tombstones recorded before `before`; returns how many.
async fn purge_tombstones(inner: &Inner, before: Timestamp) -> Result<usize> {
    let mut purged = 0;
    let mut from = inner.keys.index(Index::Tombstone).into_bytes();
    let end = inner.keys.index_before(Index::Tombstone, before);
    while let Some((page, next)) = due_page(inner, Index::Tombstone, &from, &end).await? {
        let mut seen = HashSet::new();
        let mut deletes = Vec::new();
        let mut entities = Vec::new();
        for (due, entity) in read_entities(inner, page).await? {
            match &entity {
                Some((record @ Record::Tombstone(t), rev))
                    if t.deleted_at < before && seen.insert(due.arn.clone()) =>
                {
                    let key = inner.keys.entity(&due.arn)?;
                    let mut keys = vec![key.clone(), due.key];
                    // The tombstone's own entry, if this one is an older one's.
                    keys.extend(
                        record
                            .index_entry(&inner.keys)
                            .filter(|k| !keys.contains(k)),
                    );
                    entities.push(Some(key.clone()));
                    deletes.push(GuardedDelete {
                        guard: key,
                        revision: *rev,
                        keys,
                    });
                }
                _ => {
                    entities.push(None);
                    deletes.push(entry_delete(due));
                }
            }
        }
        for (done, entity) in delete_guarded(inner, deletes)
            .await?
            .into_iter()
            .zip(entities)
        {
            if let (true, Some(key)) = (done, entity) {
                inner.cache_remove(&key);
                purged += 1;
            }
        }
        from = next;
    }
    Ok(purged)
}

/// Removing an index entry unless it was written again since it was read.
fn entry_delete(due: Due) -> GuardedDelete {
    GuardedDelete {
        guard: due.key.clone(),
        revision: due.revision,
        keys: vec![due.key],
    }
}

/// One page of an index's entries from `from` up to `end` (exclusive), and
/// where the next page starts; `None` when there are none left.
async fn due_page(
    inner: &Inner,
    index: Index,
    from: &[u8],
    end: &[u8],
) -> Result<Option<(Vec<Due>, Vec<u8>)>> {
    let resp = inner
        .policy
        .run("reading a retention index", || {
            let mut kv = inner.client.kv_client();
            let opts = GetOptions::new()
                .with_range(end.to_vec())
                .with_limit(PAGE)
                .with_keys_only();
            let from = from.to_vec();
            async move { kv.get(from, Some(opts)).await }
        })
        .await?;
    let Some(last) = resp.kvs().last() else {
        return Ok(None);
    };
    let mut next = last.key().to_vec();
    next.push(0);
    let due = resp
        .kvs()
        .iter()
        .map(|kv| match inner.keys.index_arn(index, kv.key()) {
            Some(arn) => Some(Due {
                key: kv.key().to_vec(),
                revision: kv.mod_revision(),
                arn,
            }),
            None => {
                tracing::warn!(key = %String::from_utf8_lossy(kv.key()), "ignoring an unreadable retention index entry");
                None
            }
        })
        .collect::<Vec<_>>();
    Ok(Some((due.into_iter().flatten().collect(), next)))
}

/// Each due entry with its entity's record and `mod_revision` (`None` when
/// the key is absent or its value unreadable: the entry is then stale).
async fn read_entities(inner: &Inner, due: Vec<Due>) -> Result<Vec<(Due, Option<(Record, i64)>)>> {
    let read: Vec<Result<(Due, Option<KeyValue>)>> = futures::stream::iter(due)
        .map(|due| async move {
            let key = inner.keys.entity(&due.arn)?;
            let mut resp = inner
                .policy
                .run("reading an entity", || {
                    let mut kv = inner.client.kv_client();
                    let key = key.clone();
                    async move { kv.get(key, None).await }
                })
                .await?;
            Ok((due, resp.take_kvs().into_iter().next()))
        })
        .buffered(READ_CONCURRENCY)
        .collect()
        .await;
    let mut out = Vec::with_capacity(read.len());
    for r in read {
        let (due, kv) = r?;
        let record = kv.and_then(|kv| match Record::decode(kv.key(), kv.value()) {
            Ok(record) => Some((record, kv.mod_revision())),
            Err(e) => {
                tracing::warn!(error = %e, "retention skips an unreadable entity record");
                None
            }
        });
        out.push((due, record));
    }
    Ok(out)
}

/// Runs guarded deletes, as many per transaction as etcd allows (each is a
/// nested transaction); returns which ones applied.
async fn delete_guarded(inner: &Inner, deletes: Vec<GuardedDelete>) -> Result<Vec<bool>> {
    let per_txn = inner
        .options
        .max_txn_ops
        .saturating_sub(NESTED_OPS + 1)
        .max(1);
    let mut done = Vec::with_capacity(deletes.len());
    for chunk in deletes.chunks(per_txn) {
        let ops: Vec<TxnOp> = chunk
            .iter()
            .map(|d| {
                TxnOp::txn(
                    Txn::new()
                        .when([Compare::mod_revision(
                            d.guard.clone(),
                            CompareOp::Equal,
                            d.revision,
                        )])
                        .and_then(
                            d.keys
                                .iter()
                                .map(|k| TxnOp::delete(k.clone(), None))
                                .collect::<Vec<_>>(),
                        ),
                )
            })
            .collect();
        let resp = inner
            .txn("removing expired keys", Vec::new(), ops, Vec::new())
            .await?;
        done.extend(resp.responses.into_iter().map(|r| match r {
            etcd_client::TxnOpResponse::Txn(t) => t.succeeded(),
            _ => false,
        }));
    }
    Ok(done)
}

/// Writes the retention index entries of every record under the prefix
/// (the layout 1 to 2 migration step, also run when a prefix written before
/// the layout record is initialised; idempotent).
pub(super) async fn build_indexes(inner: &Inner) -> Result<()> {
    let prefix = inner.keys.entities();
    let end = prefix_end(prefix.as_bytes());
    let mut from = prefix.into_bytes();
    let per_txn = inner.options.max_txn_ops.max(1);
    loop {
        let resp = inner
            .policy
            .run("reading entities to index", || {
                let mut kv = inner.client.kv_client();
                let opts = GetOptions::new().with_range(end.clone()).with_limit(PAGE);
                let from = from.clone();
                async move { kv.get(from, Some(opts)).await }
            })
            .await?;
        let Some(last) = resp.kvs().last() else {
            return Ok(());
        };
        from = last.key().to_vec();
        from.push(0);
        let entries: Vec<Vec<u8>> = resp
            .kvs()
            .iter()
            .filter_map(|kv| match Record::decode(kv.key(), kv.value()) {
                Ok(record) => record.index_entry(&inner.keys),
                Err(e) => {
                    tracing::warn!(error = %e, "not indexing an unreadable entity record");
                    None
                }
            })
            .collect();
        for chunk in entries.chunks(per_txn) {
            let ops: Vec<TxnOp> = chunk
                .iter()
                .map(|k| TxnOp::put(k.clone(), Vec::new(), None))
                .collect();
            inner
                .txn(
                    "writing retention index entries",
                    Vec::new(),
                    ops,
                    Vec::new(),
                )
                .await?;
        }
    }
}
