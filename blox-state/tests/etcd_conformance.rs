//! The backend conformance suite against `EtcdStore`.
//!
//! All tests share one throwaway etcd server, each on a fresh key prefix.
//! etcd's revision is global to the server, and several checks assert exact
//! revisions ("a stale write does not move the current revision"), so the
//! tests take turns: each store holds a process-wide lock until it is
//! dropped ([`Serial`]).
#![cfg(feature = "testing")]
#![allow(clippy::unwrap_used, clippy::expect_used)]
#![cfg(all(feature = "etcd", feature = "testing"))]

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use async_trait::async_trait;
use blox_core::model::{Arn, EntityKind};
use blox_state::store::etcd::{EtcdOptions, EtcdStore};
use blox_state::store::{
    ApplyOutcome, Change, Expiry, ExpiryReport, Filter, KvEntry, KvTxn, KvTxnOutcome,
    KvWatchStream, Listing, Result, Revision, RevisionStream, StateStore, Versioned,
};
use blox_state::testing::conformance::{self, RandomSize};
use blox_state::testing::etcd_server::EtcdServer;
use tokio::sync::{Mutex, OnceCell, OwnedMutexGuard};

static SERVER: OnceCell<EtcdServer> = OnceCell::const_new();
static TURN: OnceCell<Arc<Mutex<()>>> = OnceCell::const_new();
static NEXT: AtomicU32 = AtomicU32::new(0);

/// An `EtcdStore` that holds the suite's lock while it lives.
struct Serial {
    store: EtcdStore,
    _turn: OwnedMutexGuard<()>,
}

async fn make_store() -> Serial {
    let turn = TURN
        .get_or_init(|| async { Arc::new(Mutex::new(())) })
        .await
        .clone()
        .lock_owned()
        .await;
    let server = SERVER
        .get_or_init(|| async { EtcdServer::start().await.expect("start etcd") })
        .await;
    let prefix = format!("/conformance-{}", NEXT.fetch_add(1, Ordering::SeqCst));
    let store = EtcdStore::connect(EtcdOptions::new([server.endpoint()]).with_prefix(prefix))
        .await
        .unwrap();
    Serial { store, _turn: turn }
}

#[async_trait]
impl StateStore for Serial {
    async fn apply_each(&self, changes: Vec<Change>) -> Result<Vec<Result<ApplyOutcome>>> {
        self.store.apply_each(changes).await
    }
    async fn get(&self, arn: &Arn) -> Result<Option<Versioned>> {
        self.store.get(arn).await
    }
    async fn list(&self, kind: EntityKind, filter: &Filter) -> Result<Listing<Versioned>> {
        self.store.list(kind, filter).await
    }
    async fn list_all(&self) -> Result<Listing<Versioned>> {
        self.store.list_all().await
    }
    async fn watch_revisions(&self, after: Revision) -> Result<RevisionStream> {
        self.store.watch_revisions(after).await
    }
    async fn current_revision(&self) -> Result<Revision> {
        self.store.current_revision().await
    }
    async fn expire(&self, expiry: Expiry) -> Result<ExpiryReport> {
        self.store.expire(expiry).await
    }
    async fn kv_get(&self, key: &str) -> Result<Option<KvEntry>> {
        self.store.kv_get(key).await
    }
    async fn kv_list(&self, prefix: &str) -> Result<Listing<KvEntry>> {
        self.store.kv_list(prefix).await
    }
    async fn kv_txn(&self, txn: KvTxn) -> Result<KvTxnOutcome> {
        self.store.kv_txn(txn).await
    }
    fn txn_limits(&self) -> blox_state::store::TxnLimits {
        self.store.txn_limits()
    }
    fn layout_version(&self) -> u32 {
        self.store.layout_version()
    }
    async fn kv_watch(&self, prefix: &str, after: Revision) -> Result<KvWatchStream> {
        self.store.kv_watch(prefix, after).await
    }
}

blox_state::testing::conformance_tests!(make_store, random_size = RandomSize::default());

#[tokio::test]
async fn watch_from_a_compacted_revision_is_an_error() {
    let s = make_store().await;
    let store = s.store.clone();
    conformance::watch_from_compacted_revision_is_an_error(&s, || async move {
        store.compact(0).await.unwrap();
    })
    .await;
}
