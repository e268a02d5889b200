//! Watches: etcd watch streams translated into [`WatchEvent`]s and
//! [`KvEvent`]s, resumed from their last revision when a member fails.
//!
//! An entity watch asks etcd for each event's previous value (`prev_kv`):
//! a put of a tombstone over a live entity becomes [`WatchEvent::Delete`]
//! carrying that entity; a tombstone written where nothing live was (a
//! delete of an unknown entity, a raised tombstone) yields nothing, and so
//! do etcd deletes (tombstone purges).
//!
//! An entity watch yields whole revisions ([`WatchBatch`]): the events of
//! one etcd response grouped by `mod_revision`. etcd never splits one
//! revision across watch responses unless asked to fragment (blox does
//! not), so a batch holds every change of its revision (up to the 127 keys
//! the writer commits at once). A record that cannot be decoded is skipped
//! and counted (see [`super::record::decode_or_skip`]): the rest of its
//! revision is still reported.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use etcd_client::{Event, EventType, WatchOptions, WatchStream as EtcdWatchStream};
use futures::StreamExt;
use futures::stream::BoxStream;

use super::Inner;
use super::keys::Keys;
use super::record::{Record, decode_or_skip};
use super::retry::{AttemptError, EtcdClientError, Failure, RetryPolicy, classify, to_store_error};
use crate::store::{
    KvEvent, KvWatchStream, Result, Revision, RevisionStream, StoreError, Versioned, WatchBatch,
    WatchEvent,
};

/// Opens a watch of every entity change after `after`, one item per revision.
pub(crate) async fn watch_entities(inner: &Inner, after: Revision) -> Result<RevisionStream> {
    let raw = open(inner, inner.keys.entities(), after).await?;
    let epoch = inner.epoch;
    let skipped = Arc::clone(&inner.undecodable);
    Ok(raw
        .flat_map(move |batch| {
            let items: Vec<Result<WatchBatch<WatchEvent>>> = match batch {
                Err(e) => vec![Err(e)],
                Ok(events) => WatchBatch::group(
                    events
                        .iter()
                        .filter_map(|e| entity_event(epoch, &skipped, e)),
                    WatchEvent::revision,
                )
                .into_iter()
                .map(Ok)
                .collect(),
            };
            futures::stream::iter(items)
        })
        .boxed())
}

/// Opens a watch of the key-value API's keys under `prefix` after `after`.
pub(crate) async fn watch_kv(
    inner: &Inner,
    prefix: &str,
    after: Revision,
) -> Result<KvWatchStream> {
    let raw = open(inner, inner.keys.kv(prefix), after).await?;
    let epoch = inner.epoch;
    let keys = inner.keys.clone();
    Ok(raw
        .flat_map(move |batch| {
            let items: Vec<Result<KvEvent>> = match batch {
                Err(e) => vec![Err(e)],
                Ok(events) => events
                    .iter()
                    .filter_map(|e| kv_event(&keys, epoch, e))
                    .map(Ok)
                    .collect(),
            };
            futures::stream::iter(items)
        })
        .boxed())
}

/// Translates an etcd event on an entity key (`None`: nothing to report,
/// or a record that cannot be decoded, skipped and counted in `skipped`).
fn entity_event(epoch: u64, skipped: &AtomicU64, event: &Event) -> Option<WatchEvent> {
    if event.event_type() != EventType::Put {
        return None;
    }
    let kv = event.kv()?;
    let revision = Revision::new(epoch, u64::try_from(kv.mod_revision()).unwrap_or(0));
    match decode_or_skip(skipped, kv.key(), kv.value())? {
        Record::Live(entity) => Some(WatchEvent::Put(Versioned { entity, revision })),
        Record::Tombstone(t) => {
            // version 1: this put created the key, so nothing was live.
            if kv.version() <= 1 {
                return None;
            }
            // What was live before, if the previous value is known and can
            // be decoded (else report the delete without it rather than
            // lose it: compacted away, or an undecodable value).
            let last = match event.prev_kv().map(|p| Record::decode(p.key(), p.value())) {
                Some(Ok(Record::Tombstone(_))) => return None,
                Some(Ok(Record::Live(last))) => Some(last),
                Some(Err(_)) | None => None,
            };
            Some(WatchEvent::Delete {
                arn: t.arn,
                last,
                revision,
            })
        }
    }
}

/// Translates an etcd event on a key-value API key.
fn kv_event(keys: &Keys, epoch: u64, event: &Event) -> Option<KvEvent> {
    let kv = event.kv()?;
    let key = keys.kv_key(kv.key())?.to_owned();
    let revision = Revision::new(epoch, u64::try_from(kv.mod_revision()).unwrap_or(0));
    let value = match event.event_type() {
        EventType::Put => Some(bytes::Bytes::copy_from_slice(kv.value())),
        EventType::Delete => None,
    };
    Some(KvEvent {
        key,
        value,
        revision,
    })
}

/// State of a raw watch.
struct Raw {
    client: etcd_client::Client,
    prefix: String,
    next: i64,
    requested: Revision,
    epoch: u64,
    policy: RetryPolicy,
    stream: Option<EtcdWatchStream>,
    failures: u32,
    done: bool,
}

/// Checks `after` and opens a resuming etcd watch of keys under `prefix`,
/// yielding batches of etcd events.
async fn open(
    inner: &Inner,
    prefix: String,
    after: Revision,
) -> Result<BoxStream<'static, Result<Vec<Event>>>> {
    inner.check_epoch(after)?;
    let next = i64::try_from(after.seq)
        .ok()
        .and_then(|s| s.checked_add(1))
        .ok_or_else(|| StoreError::Invalid(format!("revision {after} out of range")))?;
    // etcd accepts a watch from a compacted revision and cancels it a moment
    // later; a read at the start revision tells at once (same condition).
    match check_start(inner, next).await? {
        Start::Ok => {}
        Start::Future => {
            let current = inner.current_seq().await?;
            if after.seq > u64::try_from(current).unwrap_or(0) {
                return Err(StoreError::FutureRevision {
                    requested: after,
                    current: inner.revision(current),
                });
            }
        }
        Start::Compacted => {
            return Err(StoreError::Compacted {
                requested: after,
                oldest: inner.revision(compact_revision(inner, &prefix, next).await),
            });
        }
    }
    let mut raw = Raw {
        client: inner.client.clone(),
        prefix,
        next,
        requested: after,
        epoch: inner.epoch,
        policy: inner.policy,
        stream: None,
        failures: 0,
        done: false,
    };
    // Open the first stream now, so a compacted start fails the call
    // rather than the first poll where possible.
    raw.connect().await?;
    Ok(futures::stream::unfold(raw, |mut raw| async move {
        let item = raw.next_batch().await?;
        Some((item, raw))
    })
    .boxed())
}

/// Whether a watch can start at a revision.
enum Start {
    Ok,
    Future,
    Compacted,
}

async fn check_start(inner: &Inner, next: i64) -> Result<Start> {
    let root = inner.keys.root().to_owned();
    let mut attempt = || {
        let mut kv = inner.client.kv_client();
        let root = root.clone();
        async move {
            kv.get(
                root,
                Some(
                    etcd_client::GetOptions::new()
                        .with_count_only()
                        .with_revision(next),
                ),
            )
            .await
        }
    };
    match inner.policy.run_raw(&mut attempt).await {
        Ok(_) => Ok(Start::Ok),
        Err(AttemptError::Client(e)) => match classify(&e) {
            Failure::Compacted => Ok(Start::Compacted),
            Failure::Future => Ok(Start::Future),
            _ => Err(to_store_error("checking a watch's start revision", e)),
        },
        Err(AttemptError::TimedOut) => Err(StoreError::Unavailable {
            message: "watch: no etcd member answered".into(),
            source: None,
        }),
    }
}

/// The oldest revision a watch can start from, as etcd tells a watcher that
/// starts too early (falls back to `next` if it does not say in time).
async fn compact_revision(inner: &Inner, prefix: &str, next: i64) -> i64 {
    let mut client = inner.client.watch_client();
    let opts = WatchOptions::new().with_prefix().with_start_revision(next);
    let found = async {
        let mut stream = client.watch(prefix.to_owned(), Some(opts)).await.ok()?;
        while let Ok(Some(resp)) = stream.message().await {
            if resp.compact_revision() > 0 {
                return Some(resp.compact_revision());
            }
            if resp.canceled() {
                return None;
            }
        }
        None
    };
    tokio::time::timeout(Duration::from_secs(5), found)
        .await
        .ok()
        .flatten()
        .unwrap_or(next)
}

impl Raw {
    async fn connect(&mut self) -> Result<()> {
        let opts = WatchOptions::new()
            .with_prefix()
            .with_prev_key()
            .with_start_revision(self.next);
        let client = self.client.watch_client();
        let prefix = self.prefix.clone();
        let stream = self
            .policy
            .run("opening a watch", || {
                let opts = opts.clone();
                let prefix = prefix.clone();
                let mut client = client.clone();
                async move { client.watch(prefix, Some(opts)).await }
            })
            .await?;
        self.stream = Some(stream);
        Ok(())
    }

    /// The next non-empty batch of events, or the error that ends the
    /// stream (`None` once it has ended).
    async fn next_batch(&mut self) -> Option<Result<Vec<Event>>> {
        if self.done {
            return None;
        }
        let out = self.next_inner().await;
        if out.is_err() {
            self.done = true;
        }
        Some(out)
    }

    async fn next_inner(&mut self) -> Result<Vec<Event>> {
        loop {
            let Some(stream) = self.stream.as_mut() else {
                self.failures += 1;
                if self.failures > self.policy.attempts.max(1) {
                    return Err(StoreError::Unavailable {
                        message: "watch: no etcd member answered".into(),
                        source: None,
                    });
                }
                let backoff = self.policy.backoff * self.failures.min(20);
                tokio::time::sleep(backoff.min(Duration::from_secs(1))).await;
                if let Err(e) = self.connect().await
                    && !e.is_unavailable()
                {
                    return Err(e);
                }
                continue;
            };
            match stream.message().await {
                Ok(Some(resp)) => {
                    if resp.canceled() {
                        let compact = resp.compact_revision();
                        if compact > 0 {
                            return Err(StoreError::Compacted {
                                requested: self.requested,
                                oldest: Revision::new(
                                    self.epoch,
                                    u64::try_from(compact).unwrap_or(0),
                                ),
                            });
                        }
                        return Err(StoreError::Backend {
                            message: format!("etcd cancelled the watch: {}", resp.cancel_reason()),
                            source: None,
                        });
                    }
                    if let Some(h) = resp.header()
                        && h.cluster_id() != 0
                        && h.cluster_id() != self.epoch
                    {
                        return Err(StoreError::EpochMismatch {
                            requested: self.requested,
                            current: h.cluster_id(),
                        });
                    }
                    let events = resp.events();
                    let Some(last) = events.last().and_then(|e| e.kv()) else {
                        continue;
                    };
                    self.next = last.mod_revision() + 1;
                    self.failures = 0;
                    return Ok(events.to_vec());
                }
                Ok(None) => self.stream = None,
                Err(e) if classify(&e) == Failure::Transient => {
                    tracing::debug!(error = %e, "etcd watch failed; resuming");
                    self.stream = None;
                }
                Err(e) => {
                    return Err(StoreError::Backend {
                        message: format!("watch: {e}"),
                        source: Some(Box::new(EtcdClientError(e))),
                    });
                }
            }
        }
    }
}
