//! A [`StateStore`] wrapper that injects faults, for testing what depends on
//! a store (ingester, cache, reconciler, runner) without stopping a server.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use async_trait::async_trait;
use blox_core::model::{Arn, EntityKind};

use crate::store::{
    ApplyOutcome, Change, Expiry, ExpiryReport, Filter, KvEntry, KvTxn, KvTxnOutcome,
    KvWatchStream, Listing, Result, Revision, RevisionStream, StateStore, StoreError, Versioned,
};

/// Wraps a store; while [`FaultyStore::set_down`] is on, every call fails
/// with [`StoreError::Unavailable`], while [`FaultyStore::set_exhausted`] is
/// on every write fails with [`StoreError::Exhausted`] (etcd's `NOSPACE`
/// alarm: reads still work), [`FaultyStore::compact_next_watch`] makes
/// the next `watch` fail with [`StoreError::Compacted`], and while
/// [`FaultyStore::hold_watches`] is on, watches deliver nothing (a view
/// that lags behind the store, deterministically).
#[derive(Debug)]
pub struct FaultyStore<S> {
    inner: S,
    down: AtomicBool,
    exhausted: AtomicBool,
    held: tokio::sync::watch::Sender<bool>,
    compact_next_watch: AtomicBool,
    apply_calls: AtomicUsize,
    list_calls: AtomicUsize,
}

impl<S: StateStore> FaultyStore<S> {
    /// Wraps `inner`, healthy.
    pub fn new(inner: S) -> Self {
        FaultyStore {
            inner,
            down: AtomicBool::new(false),
            exhausted: AtomicBool::new(false),
            held: tokio::sync::watch::channel(false).0,
            compact_next_watch: AtomicBool::new(false),
            apply_calls: AtomicUsize::new(0),
            list_calls: AtomicUsize::new(0),
        }
    }

    /// The wrapped store.
    pub fn inner(&self) -> &S {
        &self.inner
    }

    /// Makes every call fail (`true`) or pass through (`false`).
    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
    }

    /// Makes every write fail with `Exhausted` (`true`) or pass through
    /// (`false`).
    pub fn set_exhausted(&self, exhausted: bool) {
        self.exhausted.store(exhausted, Ordering::SeqCst);
    }

    /// Holds back every watch batch, of watches open and to come (`true`),
    /// until released (`false`): they are then delivered in order.
    pub fn hold_watches(&self, hold: bool) {
        self.held.send_replace(hold);
    }

    /// Makes the next `watch` call fail with `Compacted`.
    pub fn compact_next_watch(&self) {
        self.compact_next_watch.store(true, Ordering::SeqCst);
    }

    /// How many `apply_batch` calls were made (failed ones included).
    pub fn apply_calls(&self) -> usize {
        self.apply_calls.load(Ordering::SeqCst)
    }

    /// How many `list` calls were made (failed ones included).
    pub fn list_calls(&self) -> usize {
        self.list_calls.load(Ordering::SeqCst)
    }

    fn check(&self) -> Result<()> {
        if self.down.load(Ordering::SeqCst) {
            return Err(StoreError::Unavailable {
                message: "injected outage".into(),
                source: None,
            });
        }
        Ok(())
    }

    /// [`FaultyStore::check`], and the injected exhaustion of writes.
    fn check_write(&self) -> Result<()> {
        self.check()?;
        if self.exhausted.load(Ordering::SeqCst) {
            return Err(StoreError::Exhausted {
                message: "injected NOSPACE alarm".into(),
                source: None,
            });
        }
        Ok(())
    }
}

#[async_trait]
impl<S: StateStore> StateStore for FaultyStore<S> {
    async fn apply_each(&self, changes: Vec<Change>) -> Result<Vec<Result<ApplyOutcome>>> {
        self.apply_calls.fetch_add(1, Ordering::SeqCst);
        self.check_write()?;
        self.inner.apply_each(changes).await
    }
    async fn get(&self, arn: &Arn) -> Result<Option<Versioned>> {
        self.check()?;
        self.inner.get(arn).await
    }
    async fn list(&self, kind: EntityKind, filter: &Filter) -> Result<Listing<Versioned>> {
        self.list_calls.fetch_add(1, Ordering::SeqCst);
        self.check()?;
        self.inner.list(kind, filter).await
    }
    async fn list_all(&self) -> Result<Listing<Versioned>> {
        self.list_calls.fetch_add(1, Ordering::SeqCst);
        self.check()?;
        self.inner.list_all().await
    }
    async fn watch_revisions(&self, after: Revision) -> Result<RevisionStream> {
        self.check()?;
        if self.compact_next_watch.swap(false, Ordering::SeqCst) {
            return Err(StoreError::Compacted {
                requested: after,
                oldest: self.inner.current_revision().await?,
            });
        }
        use futures::StreamExt;
        let stream = self.inner.watch_revisions(after).await?;
        let held = self.held.subscribe();
        Ok(stream
            .then(move |batch| {
                let mut held = held.clone();
                async move {
                    // An error means the store is gone: deliver what is left.
                    let _ = held.wait_for(|h| !*h).await;
                    batch
                }
            })
            .boxed())
    }
    fn undecodable_records(&self) -> u64 {
        self.inner.undecodable_records()
    }
    async fn current_revision(&self) -> Result<Revision> {
        self.check()?;
        self.inner.current_revision().await
    }
    async fn expire(&self, expiry: Expiry) -> Result<ExpiryReport> {
        self.check_write()?;
        self.inner.expire(expiry).await
    }
    async fn kv_get(&self, key: &str) -> Result<Option<KvEntry>> {
        self.check()?;
        self.inner.kv_get(key).await
    }
    async fn kv_list(&self, prefix: &str) -> Result<Listing<KvEntry>> {
        self.check()?;
        self.inner.kv_list(prefix).await
    }
    async fn kv_txn(&self, txn: KvTxn) -> Result<KvTxnOutcome> {
        self.check_write()?;
        self.inner.kv_txn(txn).await
    }
    fn txn_limits(&self) -> crate::store::TxnLimits {
        self.inner.txn_limits()
    }
    fn layout_version(&self) -> u32 {
        self.inner.layout_version()
    }
    fn remembers_since(&self) -> Option<blox_core::model::Timestamp> {
        self.inner.remembers_since()
    }
    async fn kv_watch(&self, prefix: &str, after: Revision) -> Result<KvWatchStream> {
        self.check()?;
        self.inner.kv_watch(prefix, after).await
    }
}
