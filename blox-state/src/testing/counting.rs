//! [`CountingStore`]: a wrapper that counts the watch streams open on a
//! store, to check (and measure) that a process keeps one entity watch and
//! one key-value watch whatever the number of readers.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use blox_core::model::{Arn, EntityKind};
use futures::StreamExt;

use crate::store::{
    ApplyOutcome, Change, Expiry, ExpiryReport, Filter, KvEntry, KvTxn, KvTxnOutcome,
    KvWatchStream, Listing, Result, Revision, RevisionStream, StateStore, Versioned,
};

/// Wraps a store and counts the entity and key-value watch streams open on
/// it now (a stream counts until it is dropped).
#[derive(Debug, Default)]
pub struct CountingStore<S> {
    inner: S,
    entity_watches: Arc<AtomicUsize>,
    kv_watches: Arc<AtomicUsize>,
}

/// Decrements a count when the stream it rides on is dropped.
struct Open(Arc<AtomicUsize>);

impl Open {
    fn new(count: &Arc<AtomicUsize>) -> Self {
        count.fetch_add(1, Ordering::SeqCst);
        Open(Arc::clone(count))
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl<S: StateStore> CountingStore<S> {
    /// Wraps `inner`.
    pub fn new(inner: S) -> Self {
        CountingStore {
            inner,
            entity_watches: Arc::default(),
            kv_watches: Arc::default(),
        }
    }

    /// Entity watch streams open now.
    pub fn entity_watches(&self) -> usize {
        self.entity_watches.load(Ordering::SeqCst)
    }

    /// Key-value watch streams open now.
    pub fn kv_watches(&self) -> usize {
        self.kv_watches.load(Ordering::SeqCst)
    }
}

#[async_trait]
impl<S: StateStore> StateStore for CountingStore<S> {
    async fn apply_each(&self, changes: Vec<Change>) -> Result<Vec<Result<ApplyOutcome>>> {
        self.inner.apply_each(changes).await
    }
    async fn get(&self, arn: &Arn) -> Result<Option<Versioned>> {
        self.inner.get(arn).await
    }
    async fn list(&self, kind: EntityKind, filter: &Filter) -> Result<Listing<Versioned>> {
        self.inner.list(kind, filter).await
    }
    async fn list_all(&self) -> Result<Listing<Versioned>> {
        self.inner.list_all().await
    }
    async fn watch_revisions(&self, after: Revision) -> Result<RevisionStream> {
        let stream = self.inner.watch_revisions(after).await?;
        let open = Open::new(&self.entity_watches);
        Ok(stream
            .map(move |item| {
                let _open = &open;
                item
            })
            .boxed())
    }
    async fn current_revision(&self) -> Result<Revision> {
        self.inner.current_revision().await
    }
    async fn expire(&self, expiry: Expiry) -> Result<ExpiryReport> {
        self.inner.expire(expiry).await
    }
    async fn kv_get(&self, key: &str) -> Result<Option<KvEntry>> {
        self.inner.kv_get(key).await
    }
    async fn kv_list(&self, prefix: &str) -> Result<Listing<KvEntry>> {
        self.inner.kv_list(prefix).await
    }
    async fn kv_txn(&self, txn: KvTxn) -> Result<KvTxnOutcome> {
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
        let stream = self.inner.kv_watch(prefix, after).await?;
        let open = Open::new(&self.kv_watches);
        Ok(stream
            .map(move |item| {
                let _open = &open;
                item
            })
            .boxed())
    }
    fn undecodable_records(&self) -> u64 {
        self.inner.undecodable_records()
    }
}
