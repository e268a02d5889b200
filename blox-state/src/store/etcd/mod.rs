//! The etcd backend of [`StateStore`]: the production store.
//!
//! # Layout
//! Entities live under `{prefix}/e/{task|instance}/{ARN}`, the key-value API
//! under `{prefix}/kv/{key}` (see [`EtcdOptions::prefix`]). An entity key holds
//! the JSON of either the live entity (`{"live": {...}}`) or its tombstone
//! (`{"tombstone": {"arn", "version", "deletedAt"}}`), so the
//! compare-and-swap logic is the same for puts and deletes. That JSON is
//! stored compressed (Snappy, behind the two bytes `0xFF 's'`) unless
//! [`EtcdOptions::compress_records`] is off; both forms are always read.
//!
//! # Revisions
//! A [`Revision`] is etcd's revision with the etcd cluster id as its epoch: a
//! revision handed out by another etcd cluster is answered with
//! [`StoreError::EpochMismatch`], one older than the compacted history with
//! [`StoreError::Compacted`].
//!
//! # Writes
//! [`StateStore::apply_batch`] never reads then blindly writes. One writer
//! task per store merges the changes of all concurrent callers by ARN (in
//! arrival order), takes each key's state from a local cache of
//! `key -> (mod_revision, version)` (a key it does not know is assumed
//! absent), decides with the version rules, and writes in transactions of up
//! to `max_txn_ops - 2` keys (126 by default) and at most
//! [`EtcdOptions::max_txn_bytes`], each key in a nested transaction whose compare checks the
//! key's `mod_revision` is still what was decided on. Every transaction
//! also compares the stored layout record with the one checked at connect
//! (see [`layout`]), so no write reaches a prefix migrated under it. It keeps up to
//! [`EtcdOptions::write_concurrency`] transactions in flight and never puts
//! one key in two of them, so concurrent callers do not conflict; under load
//! the transactions fill up. Where another process got in first (or the
//! cache was behind), the nested transaction's failure branch returns the
//! key's current value and that key is decided again.
//!
//! The writer runs on the tokio runtime that called [`EtcdStore::connect`];
//! use the store on that runtime.
//!
//! # History and maintenance
//! etcd keeps every revision until it is compacted.
//! [`EtcdStore::spawn_maintenance`] (or [`EtcdStore::maintain`] on your own
//! schedule) compacts history older than [`EtcdOptions::keep_revisions`].
//! Retention (stopped tasks, INACTIVE instances, tombstones) is
//! [`StateStore::expire`], driven by `store::retention::Retention` on the
//! leader; it reads only the due entries of two indexes kept by the writer
//! (see `keys`).
//!
//! Compaction frees revisions logically, but etcd's database file does not
//! shrink: the freed pages are reused by later writes. To return the space to
//! the file system, defragment each member, one at a time and off-peak (a
//! member blocks reads and writes while it defragments):
//! `etcdctl --endpoints=http://member:2379 defrag`. Watch the database size
//! with `etcdctl endpoint status` and keep it below etcd's quota
//! (`--quota-backend-bytes`, 2 GiB by default): past the quota etcd raises a
//! `NOSPACE` alarm and refuses writes until it is compacted, defragmented and
//! the alarm disarmed (`etcdctl alarm disarm`).
//!
//! # Resilience
//! Requests that fail because a member is unreachable are retried with
//! back-off ([`EtcdOptions::retry_attempts`]), so a client configured with
//! several endpoints keeps working while one member is down; when none
//! answers, the error is [`StoreError::Unavailable`]. Watches resume from
//! their last revision after a member fails.

mod apply;
mod intent_layout;
mod keys;
mod kv;
pub mod layout;
mod maintenance;
mod record;
mod retry;
mod watch;
mod writer;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use blox_core::model::{Arn, EntityKind};
use etcd_client::{Client, Compare, CompareOp, ConnectOptions, GetOptions, KeyValue, Txn, TxnOp};

use self::keys::{Keys, prefix_end};
use self::record::{Record, Stored};
use self::retry::{AttemptError, Failure, RetryPolicy, classify, to_store_error};
use crate::store::{
    ApplyOutcome, Change, Expiry, ExpiryReport, Filter, KvEntry, KvTxn, KvTxnOutcome,
    KvWatchStream, Listing, Result, Revision, RevisionStream, StateStore, StoreError, Versioned,
};

pub use self::maintenance::MaintenanceReport;
pub use self::retry::EtcdClientError;

/// Settings of an [`EtcdStore`].
#[derive(Debug, Clone)]
pub struct EtcdOptions {
    /// etcd members, as `host:port` or `http://host:port`.
    pub endpoints: Vec<String>,
    /// The prefix of every key this store writes (default `/blox`). Several
    /// stores can share one etcd cluster under different prefixes.
    pub prefix: String,
    /// How often [`EtcdStore::spawn_maintenance`] runs (default 5 minutes).
    pub compaction_interval: Duration,
    /// How many revisions of history maintenance keeps (default 100,000): a
    /// watcher that falls further behind than this must relist.
    pub keep_revisions: u64,
    /// Deadline of one request attempt (default 5 s).
    pub request_timeout: Duration,
    /// Attempts per request when members are unreachable (default 10).
    pub retry_attempts: u32,
    /// The first back-off between attempts, doubled each time up to 1 s
    /// (default 50 ms).
    pub retry_backoff: Duration,
    /// The etcd cluster's `--max-txn-ops` (default 128, etcd's default): a
    /// batch is written in transactions of at most two less keys (each
    /// key's nested transaction holds up to two operations: its record and
    /// its retention index entry).
    pub max_txn_ops: usize,
    /// How many keys' `(mod_revision, version)` the write path caches to skip
    /// reads (default 1,000,000; 0 disables the cache).
    pub cache_capacity: usize,
    /// The largest write transaction, in bytes (default 1 MiB): keys of a
    /// transaction that would grow past it wait for the next one. Keep it
    /// below the etcd cluster's `--max-request-bytes` (1.5 MiB by default),
    /// which refuses larger requests.
    pub max_txn_bytes: usize,
    /// How many write transactions the store keeps in flight at once
    /// (default 8). Callers' changes wait while all are busy and are then
    /// merged into full transactions.
    pub write_concurrency: usize,
    /// Whether entity records are written compressed (default true): Snappy
    /// over the JSON, about half its size for a typical task, so etcd's
    /// database, its write-ahead log and the watch streams carry half the
    /// bytes and writes go faster. Records of either form are always read,
    /// so this can be changed at any time. Compressed values are not
    /// readable with `etcdctl get`; read entities through the store or the
    /// HTTP API.
    pub compress_records: bool,
    /// The clock of tombstones' deletion times and of maintenance's purge
    /// horizon (default: the wall clock).
    pub clock: blox_core::clock::SharedClock,
    /// Whether connecting checks the stored layout version (default true:
    /// see [`layout`]); off only for the migration itself.
    pub check_layout: bool,
    /// The stored layout this store reads ([`layout::CURRENT`] by default).
    pub layout: layout::Layout,
}

impl Default for EtcdOptions {
    fn default() -> Self {
        EtcdOptions {
            endpoints: vec!["127.0.0.1:2379".to_owned()],
            prefix: "/blox".to_owned(),
            compaction_interval: Duration::from_secs(300),
            keep_revisions: 100_000,
            request_timeout: Duration::from_secs(5),
            retry_attempts: 10,
            retry_backoff: Duration::from_millis(50),
            max_txn_ops: 128,
            cache_capacity: 1_000_000,
            write_concurrency: 8,
            max_txn_bytes: 1 << 20,
            compress_records: true,
            clock: blox_core::clock::system(),
            check_layout: true,
            layout: layout::CURRENT,
        }
    }
}

impl EtcdOptions {
    /// Default options for these endpoints.
    pub fn new<S: Into<String>>(endpoints: impl IntoIterator<Item = S>) -> Self {
        EtcdOptions {
            endpoints: endpoints.into_iter().map(Into::into).collect(),
            ..EtcdOptions::default()
        }
    }

    /// Sets the key prefix.
    pub fn with_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }
}

/// The etcd-backed [`StateStore`] (see the module docs). Cheap to clone:
/// clones share one connection and one cache.
#[derive(Clone)]
pub struct EtcdStore {
    inner: Arc<Inner>,
    writer: Arc<writer::Writer>,
    layout: layout::LayoutStatus,
}

impl std::fmt::Debug for EtcdStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdStore")
            .field("endpoints", &self.inner.options.endpoints)
            .field("prefix", &self.inner.keys.root())
            .field("epoch", &self.inner.epoch)
            .finish()
    }
}

/// Shared state of a store.
struct Inner {
    client: Client,
    keys: Keys,
    epoch: u64,
    policy: RetryPolicy,
    options: EtcdOptions,
    /// key (its [`digest`] under `digest_key`) -> what the key held at its last known
    /// `mod_revision`.
    cache: Mutex<rustc_hash::FxHashMap<u128, Stored>>,
    /// The SipHash keys of the write cache's digests, random per process.
    digest_key: std::hash::RandomState,
    /// The revision maintenance last compacted to.
    compacted: std::sync::atomic::AtomicI64,
    /// Entity records skipped because they could not be decoded.
    undecodable: Arc<std::sync::atomic::AtomicU64>,
    /// The mod revision of the layout record checked at connect: every
    /// write is guarded by it (see [`Inner::txn`]). Unset when unchecked.
    layout_guard: std::sync::OnceLock<i64>,
}

/// The write cache's key for an etcd key: 128 bits of SipHash (the key
/// hashed after two different first bytes), under keys random per process
/// so that no one can choose keys that collide.
///
/// Entity keys are about 120 bytes; the digest keeps the cache at about 50
/// bytes an entity instead of some 200 (`benches/RESULTS.md`, issue 17).
/// Two keys would have to share all 128 bits to be confused (odds about
/// 10^-27 among a million keys); any other stale entry costs only a failed
/// compare and a read.
fn digest(hashers: &impl std::hash::BuildHasher, key: &[u8]) -> u128 {
    use std::hash::Hasher;
    let half = |salt: u8| {
        let mut h = hashers.build_hasher();
        h.write_u8(salt);
        h.write(key);
        h.finish()
    };
    (u128::from(half(0)) << 64) | u128::from(half(1))
}

/// A transaction's outcome: whether its compares held, the revision it
/// committed at, and its branch's responses.
struct Committed {
    succeeded: bool,
    revision: i64,
    responses: Vec<etcd_client::TxnOpResponse>,
}

/// Page size of range reads (keeps responses well under gRPC's 4 MiB limit
/// for 1-2 KB values).
const PAGE: i64 = 1000;

impl EtcdStore {
    /// Connects to etcd and learns its cluster id (the revisions' epoch).
    ///
    /// Fails with [`StoreError::Unavailable`] when no endpoint answers within
    /// the retry budget, [`StoreError::Invalid`] for a malformed endpoint.
    pub async fn connect(options: EtcdOptions) -> Result<EtcdStore> {
        if options.endpoints.is_empty() {
            return Err(StoreError::Invalid("no etcd endpoints configured".into()));
        }
        let endpoints: Vec<String> = options
            .endpoints
            .iter()
            .map(|e| {
                if e.contains("://") {
                    e.clone()
                } else {
                    format!("http://{e}")
                }
            })
            .collect();
        let connect = ConnectOptions::new()
            .with_connect_timeout(options.request_timeout)
            .with_keep_alive(Duration::from_secs(5), Duration::from_secs(5))
            .with_keep_alive_while_idle(true);
        let client =
            Client::connect(&endpoints, Some(connect))
                .await
                .map_err(|e| match classify(&e) {
                    Failure::Transient => to_store_error("connecting to etcd", e),
                    _ => StoreError::Invalid(format!("etcd endpoints {endpoints:?}: {e}")),
                })?;
        let policy = RetryPolicy {
            attempts: options.retry_attempts,
            backoff: options.retry_backoff,
            timeout: options.request_timeout,
        };
        let keys = Keys::new(&options.prefix);
        let root = keys.root().to_owned();
        let header = policy
            .run("reading the etcd cluster id", || {
                let mut kv = client.kv_client();
                let root = root.clone();
                async move {
                    kv.get(root, Some(GetOptions::new().with_count_only()))
                        .await
                }
            })
            .await?
            .take_header()
            .ok_or_else(|| StoreError::Backend {
                message: "etcd response without a header".into(),
                source: None,
            })?;
        let inner = Arc::new(Inner {
            client,
            keys,
            epoch: header.cluster_id(),
            policy,
            options,
            cache: Mutex::default(),
            digest_key: std::hash::RandomState::new(),
            compacted: std::sync::atomic::AtomicI64::new(0),
            undecodable: Arc::default(),
            layout_guard: std::sync::OnceLock::new(),
        });
        // Before anything else is written: refuse a layout this build does
        // not read (the writer has not started yet).
        let layout = if inner.options.check_layout {
            let (status, revision) = layout::check(&inner).await?;
            // From now on every write holds only while no migration has
            // touched the prefix.
            let _ = inner.layout_guard.set(revision);
            status
        } else {
            layout::LayoutStatus::Unchecked
        };
        let writer = Arc::new(writer::Writer::spawn(inner.clone()));
        Ok(EtcdStore {
            inner,
            writer,
            layout,
        })
    }

    /// What the connect-time layout check found.
    pub fn layout_status(&self) -> layout::LayoutStatus {
        self.layout
    }

    /// The layout this store reads ([`EtcdOptions::layout`]).
    pub fn layout(&self) -> layout::Layout {
        self.inner.options.layout
    }

    /// The etcd key of the layout record and its mod revision checked at
    /// connect (`None` when unchecked). A transaction that compares the
    /// key's `mod_revision` with it applies only while no migration has
    /// touched the prefix since: the store guards each of its own writes
    /// so, and the leader election its campaign.
    pub fn layout_guard(&self) -> Option<(String, i64)> {
        self.inner
            .layout_guard
            .get()
            .map(|r| (self.inner.keys.layout(), *r))
    }

    /// Resolves, with [`StoreError::Layout`] saying what changed, once the
    /// layout record is no longer the one checked at connect (a migration
    /// started under this process). Never resolves when unchecked. From
    /// that moment every write of this store is refused with the same
    /// error; a daemon stops on it.
    pub async fn layout_changed(&self) -> StoreError {
        match self.inner.layout_guard.get() {
            Some(guard) => layout::wait_for_change(&self.inner, *guard).await,
            None => std::future::pending().await,
        }
    }

    /// The store's epoch: the etcd cluster id.
    pub fn epoch(&self) -> u64 {
        self.inner.epoch
    }

    /// The options the store was connected with.
    pub fn options(&self) -> &EtcdOptions {
        &self.inner.options
    }

    /// The underlying etcd client (shares the store's connection), for
    /// elections, leases and other etcd features the store does not wrap.
    pub fn client(&self) -> &Client {
        &self.inner.client
    }

    /// The etcd key that holds `key` of the key-value API (for callers that
    /// write such keys with etcd features the store does not wrap, such as
    /// a lease-bound leader key).
    pub fn kv_key(&self, key: &str) -> String {
        self.inner.keys.kv(key)
    }

    /// The store [`Revision`] of an etcd revision (`mod_revision`, a header's revision).
    pub fn revision_of(&self, etcd_revision: i64) -> Revision {
        self.inner.revision(etcd_revision)
    }

    /// Forgets the write cache (the next writes read their keys first).
    pub fn clear_cache(&self) {
        if let Ok(mut c) = self.inner.cache.lock() {
            c.clear();
        }
    }
}

impl Inner {
    /// The transaction limits of this etcd cluster (from the options).
    pub(crate) fn txn_limits(&self) -> crate::store::TxnLimits {
        crate::store::TxnLimits {
            max_ops: self.options.max_txn_ops,
            max_bytes: self.options.max_txn_bytes,
        }
    }

    fn revision(&self, seq: i64) -> Revision {
        Revision::new(self.epoch, u64::try_from(seq).unwrap_or(0))
    }

    /// Checks a caller's revision belongs to this store's epoch.
    fn check_epoch(&self, r: Revision) -> Result<()> {
        if r.epoch == self.epoch {
            Ok(())
        } else {
            Err(StoreError::EpochMismatch {
                requested: r,
                current: self.epoch,
            })
        }
    }

    fn cache_put(&self, key: &[u8], stored: Stored) {
        let cap = self.options.cache_capacity;
        if cap == 0 {
            return;
        }
        let key = digest(&self.digest_key, key);
        if let Ok(mut c) = self.cache.lock() {
            if c.len() >= cap && !c.contains_key(&key) {
                c.clear();
            }
            c.insert(key, stored);
        }
    }

    fn cache_get(&self, key: &[u8]) -> Option<Stored> {
        let key = digest(&self.digest_key, key);
        self.cache.lock().ok().and_then(|c| c.get(&key).copied())
    }

    fn cache_remove(&self, key: &[u8]) {
        let key = digest(&self.digest_key, key);
        if let Ok(mut c) = self.cache.lock() {
            c.remove(&key);
        }
    }

    /// The current revision of the etcd cluster.
    async fn current_seq(&self) -> Result<i64> {
        let root = self.keys.root().to_owned();
        let mut resp = self
            .policy
            .run("reading the current revision", || {
                let mut kv = self.client.kv_client();
                let root = root.clone();
                async move {
                    kv.get(root, Some(GetOptions::new().with_count_only()))
                        .await
                }
            })
            .await?;
        Ok(resp.take_header().map(|h| h.revision()).unwrap_or(0))
    }

    /// Every key under `prefix` at one revision, in key order, read in pages.
    async fn range(&self, prefix: &str) -> Result<(Vec<KeyValue>, i64)> {
        self.range_between(prefix.as_bytes(), prefix_end(prefix.as_bytes()))
            .await
    }

    /// Every key from `start` (inclusive) to `end` (exclusive) at one
    /// revision, in key order, read in pages.
    async fn range_between(&self, start: &[u8], end: Vec<u8>) -> Result<(Vec<KeyValue>, i64)> {
        let mut restarts = 0;
        'list: loop {
            let mut out = Vec::new();
            let mut from = start.to_vec();
            let mut at = 0i64;
            loop {
                let mut attempt = || {
                    let mut kv = self.client.kv_client();
                    let mut opts = GetOptions::new().with_range(end.clone()).with_limit(PAGE);
                    if at > 0 {
                        opts = opts.with_revision(at);
                    }
                    let from = from.clone();
                    async move { kv.get(from, Some(opts)).await }
                };
                let mut resp = match self.policy.run_raw(&mut attempt).await {
                    Ok(r) => r,
                    Err(AttemptError::Client(e))
                        if classify(&e) == Failure::Compacted && restarts < 3 =>
                    {
                        restarts += 1;
                        continue 'list;
                    }
                    Err(AttemptError::Client(e)) => return Err(to_store_error("listing", e)),
                    Err(AttemptError::TimedOut) => {
                        return Err(StoreError::Unavailable {
                            message: "listing: no etcd member answered".into(),
                            source: None,
                        });
                    }
                };
                if at == 0 {
                    at = resp.header().map(|h| h.revision()).unwrap_or(0);
                }
                let more = resp.more();
                let kvs = resp.take_kvs();
                if let Some(last) = kvs.last() {
                    from = last.key().to_vec();
                    from.push(0);
                }
                let empty = kvs.is_empty();
                out.extend(kvs);
                if !more || empty {
                    return Ok((out, at));
                }
            }
        }
    }

    /// Runs a transaction (`when` the compares hold, `then` the
    /// operations, else `otherwise`) with retries. Once the layout was
    /// checked, one more compare holds it to the layout record's revision
    /// checked at connect, so no write reaches a prefix migrated under this
    /// store: such a transaction fails with [`StoreError::Layout`]. (The
    /// compare is added at the top level, not by nesting: etcd charges a
    /// nested transaction's operations to its parents' limit and does not
    /// refuse nested puts under a `NOSPACE` alarm.)
    async fn txn(
        &self,
        what: &str,
        when: Vec<Compare>,
        then: Vec<TxnOp>,
        mut otherwise: Vec<TxnOp>,
    ) -> Result<Committed> {
        let guard = self.layout_guard.get().copied();
        let mut compares = when;
        if let Some(revision) = guard {
            let key = self.keys.layout();
            compares.push(Compare::mod_revision(
                key.clone(),
                CompareOp::Equal,
                revision,
            ));
            otherwise.push(TxnOp::get(key, None));
        }
        let txn = Txn::new().when(compares).and_then(then).or_else(otherwise);
        let resp = self
            .policy
            .run(what, || {
                let mut kv = self.client.kv_client();
                let txn = txn.clone();
                async move { kv.txn(txn).await }
            })
            .await?;
        let revision = resp.header().map_or(0, |h| h.revision());
        let succeeded = resp.succeeded();
        let mut responses = resp.op_responses();
        if let (Some(guard), false) = (guard, succeeded) {
            // The last response is the layout record's read.
            let layout = responses.pop();
            let moved = match &layout {
                Some(etcd_client::TxnOpResponse::Get(g)) => {
                    g.kvs().first().map_or(0, KeyValue::mod_revision) != guard
                }
                _ => true,
            };
            if moved {
                return Err(layout::changed_from(self, layout.as_slice()));
            }
        }
        Ok(Committed {
            succeeded,
            revision,
            responses,
        })
    }

    async fn get_entity(&self, arn: &Arn) -> Result<Option<Versioned>> {
        let key = self.keys.entity(arn)?;
        let mut resp = self
            .policy
            .run("reading an entity", || {
                let mut kv = self.client.kv_client();
                let key = key.clone();
                async move { kv.get(key, None).await }
            })
            .await?;
        let Some(kv) = resp.take_kvs().into_iter().next() else {
            return Ok(None);
        };
        let record = Record::decode(kv.key(), kv.value())?;
        self.cache_put(
            kv.key(),
            Stored {
                state: record.state(),
                mod_revision: kv.mod_revision(),
            },
        );
        Ok(match record {
            Record::Live(entity) => Some(Versioned {
                entity,
                revision: self.revision(kv.mod_revision()),
            }),
            Record::Tombstone(_) => None,
        })
    }

    /// Live entities under `prefix` (one kind's, or every entity's)
    /// matching a filter, read at one revision. A record that cannot be
    /// decoded is skipped and counted (see [`record::decode_or_skip`]).
    async fn list(&self, prefix: &str, filter: &Filter) -> Result<Listing<Versioned>> {
        let (kvs, at) = self.range(prefix).await?;
        let mut items = Vec::new();
        for kv in kvs {
            let record = record::decode_or_skip(&self.undecodable, kv.key(), kv.value());
            if let Some(Record::Live(entity)) = record
                && filter.matches(&entity)
            {
                items.push(Versioned {
                    entity,
                    revision: self.revision(kv.mod_revision()),
                });
            }
        }
        Ok(Listing {
            items,
            revision: self.revision(at),
        })
    }
}

#[async_trait]
impl StateStore for EtcdStore {
    async fn apply_each(&self, changes: Vec<Change>) -> Result<Vec<Result<ApplyOutcome>>> {
        self.writer.apply(&self.inner, changes).await
    }

    async fn get(&self, arn: &Arn) -> Result<Option<Versioned>> {
        self.inner.get_entity(arn).await
    }

    async fn list(&self, kind: EntityKind, filter: &Filter) -> Result<Listing<Versioned>> {
        self.inner.list(&self.inner.keys.kind(kind), filter).await
    }

    async fn list_all(&self) -> Result<Listing<Versioned>> {
        let mut listing = self
            .inner
            .list(&self.inner.keys.entities(), &Filter::default())
            .await?;
        // Key order is kind, then ARN: sort by ARN as `list` does.
        listing
            .items
            .sort_unstable_by(|a, b| a.entity.arn().cmp(b.entity.arn()));
        Ok(listing)
    }

    async fn watch_revisions(&self, after: Revision) -> Result<RevisionStream> {
        watch::watch_entities(&self.inner, after).await
    }

    fn undecodable_records(&self) -> u64 {
        self.inner
            .undecodable
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    async fn current_revision(&self) -> Result<Revision> {
        let seq = self.inner.current_seq().await?;
        Ok(self.inner.revision(seq))
    }

    async fn expire(&self, expiry: Expiry) -> Result<ExpiryReport> {
        maintenance::expire(self, expiry).await
    }

    async fn kv_get(&self, key: &str) -> Result<Option<KvEntry>> {
        kv::get(&self.inner, key).await
    }

    async fn kv_list(&self, prefix: &str) -> Result<Listing<KvEntry>> {
        kv::list(&self.inner, prefix).await
    }

    async fn kv_txn(&self, txn: KvTxn) -> Result<KvTxnOutcome> {
        kv::txn(&self.inner, txn).await
    }

    fn txn_limits(&self) -> crate::store::TxnLimits {
        self.inner.txn_limits()
    }

    fn layout_version(&self) -> u32 {
        self.inner.options.layout.version
    }

    async fn kv_watch(&self, prefix: &str, after: Revision) -> Result<KvWatchStream> {
        watch::watch_kv(&self.inner, prefix, after).await
    }
}

#[cfg(test)]
mod tests {
    use super::digest;
    use std::hash::RandomState;

    #[test]
    fn the_write_cache_tells_keys_apart_by_their_digest() {
        let base =
            b"/blox/v1/entity/task/arn:aws:ecs:us-east-1:123456789012:task/web/0000".to_vec();
        let hashers = RandomState::new();
        let mut seen = std::collections::HashSet::new();
        for n in 0..10_000u32 {
            let mut key = base.clone();
            key.extend_from_slice(format!("{n:08x}").as_bytes());
            assert!(
                seen.insert(digest(&hashers, &key)),
                "key {n} shares a digest"
            );
            assert_eq!(
                digest(&hashers, &key),
                digest(&hashers, &key),
                "the same key, the same digest"
            );
        }
    }
}
