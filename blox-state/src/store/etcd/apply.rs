//! Versioned compare-and-swap writes of a chunk of keys (the
//! [`super::writer`] chooses the chunks: at most `max_txn_ops - NESTED_OPS`
//! keys, [`super::EtcdOptions::max_txn_ops`], etcd's `--max-txn-ops`, 128 by
//! default: etcd counts a transaction's nested transactions against what the
//! outer one leaves, so the outer one holds at most [`NESTED_OPS`] less).
//!
//! 1. Each key's state comes from the cache of `key -> (mod_revision,
//!    version)`; a key the cache does not know is assumed absent.
//! 2. The changes of each key are decided in order over that state (as if
//!    applied one by one); the last record decided to be written is the key's
//!    write.
//! 3. A round is one transaction holding one nested transaction per key:
//!    "if the key's `mod_revision` is still what the decision was based on,
//!    put the write, else read the key". A round's writes land at one
//!    revision, in one raft entry. A key whose compare failed (another
//!    process wrote it, the cache was behind) comes back with its current
//!    value and is decided again in the next round; the other keys are done.
//!    A conflict thus costs a round for the conflicting keys only, and a
//!    cold cache costs one round. Keys that would take a round past
//!    [`super::EtcdOptions::max_txn_bytes`] wait for the next round.
//! 4. A key whose stored value cannot be read fails its own changes only.
//! 5. A write that retires an entity or leaves a tombstone also puts the
//!    record's retention index entry ([`super::keys`]), in the same nested
//!    transaction: [`NESTED_OPS`] operations at most.

use std::sync::Arc;

use blox_core::model::Timestamp;
use etcd_client::{Compare, CompareOp, Txn, TxnOp, TxnOpResponse};

use super::Inner;
use super::record::{Decision, Record, Stored, decide};
use crate::store::{ApplyOutcome, Change, Result, StoreError};

/// What a key's nested transaction adds to a request besides its key
/// (three times: compare, put, get) and value: headers and framing, rounded
/// up.
const TXN_OP_OVERHEAD: usize = 64;

/// The most operations a key's nested transaction holds in one branch (a
/// put of the record and of its index entry). etcd lets a nested
/// transaction hold at most `--max-txn-ops` minus the outer transaction's
/// operations, so a transaction holds at most `max_txn_ops - NESTED_OPS`
/// keys.
pub(super) const NESTED_OPS: usize = 2;

/// Rounds with a conflict before giving up (each conflict means another
/// writer succeeded, so this is only reached under extreme contention).
const MAX_CONFLICT_ROUNDS: usize = 1000;

/// The outcome of one change: applied or stale, or the error of its key
/// alone (shared by the key's changes).
pub(super) type KeyOutcome = std::result::Result<ApplyOutcome, Arc<StoreError>>;

/// The changes to one key, by their index in the chunk's changes.
pub(super) struct Group {
    /// The key.
    pub(super) key: Vec<u8>,
    /// Its changes, in the order they apply.
    pub(super) idxs: Vec<usize>,
}

/// Writes one chunk in rounds (see the module docs). Returns every
/// change's outcome by its index in `changes`; `Err` when a whole round
/// failed (etcd unreachable), in which case earlier rounds may have landed.
pub(super) async fn write_chunk(
    inner: &Inner,
    changes: &[Change],
    chunk: Vec<Group>,
    now: Timestamp,
) -> Result<Vec<(usize, KeyOutcome)>> {
    // Each key's assumed state: cached, or absent on a miss (new entities are
    // the common miss; if the key exists after all, its compare fails and the
    // failure branch returns its value at no extra round trip). `fresh`: the
    // state was read from etcd in this batch, so a decision to write nothing
    // needs no confirmation.
    let mut states: Vec<Stored> = chunk
        .iter()
        .map(|g| inner.cache_get(&g.key).unwrap_or(Stored::ABSENT))
        .collect();
    let mut fresh = vec![false; chunk.len()];
    let mut pending: Vec<usize> = (0..chunk.len()).collect();
    let mut out: Vec<(usize, KeyOutcome)> = Vec::with_capacity(changes.len());
    let mut conflict_rounds = 0;
    let fail_group = |out: &mut Vec<(usize, KeyOutcome)>, g: usize, e: StoreError| {
        let e = Arc::new(e);
        out.extend(chunk[g].idxs.iter().map(|&i| (i, Err(e.clone()))));
    };
    while !pending.is_empty() {
        let mut ops = Vec::with_capacity(pending.len());
        // Per key sent: its index, its outcomes, what it writes.
        let mut sent: Vec<SentKey> = Vec::new();
        // Keys left for the next round because this one is full.
        let mut deferred = Vec::new();
        let mut bytes = 0;
        for &g in &pending {
            let (outcomes, write) = decide_group(inner, changes, &chunk[g], states[g], now);
            if write.is_none() && fresh[g] {
                out.extend(outcomes.into_iter().map(|(i, o)| (i, Ok(o))));
                continue;
            }
            let key = chunk[g].key.clone();
            let (value, written, index) = match write {
                Some(record) => match record.encode(inner.options.compress_records) {
                    Ok(value) => {
                        let stored = Stored {
                            state: record.state(),
                            mod_revision: 0,
                        };
                        (Some(value), Some(stored), record.index_entry(&inner.keys))
                    }
                    Err(e) => {
                        fail_group(&mut out, g, e);
                        continue;
                    }
                },
                None => (None, None, None),
            };
            let size = 3 * key.len()
                + TXN_OP_OVERHEAD
                + value.as_ref().map_or(0, Vec::len)
                + index.as_ref().map_or(0, |k| k.len() + TXN_OP_OVERHEAD);
            if !ops.is_empty() && bytes + size > inner.options.max_txn_bytes {
                // Decided again next round (deciding is pure).
                deferred.push(g);
                continue;
            }
            bytes += size;
            let compare =
                Compare::mod_revision(key.clone(), CompareOp::Equal, states[g].mod_revision);
            let then: Vec<TxnOp> = value
                .map(|v| TxnOp::put(key.clone(), v, None))
                .into_iter()
                .chain(index.map(|k| TxnOp::put(k, Vec::new(), None)))
                .collect();
            ops.push(TxnOp::txn(
                Txn::new()
                    .when([compare])
                    .and_then(then)
                    .or_else([TxnOp::get(key, None)]),
            ));
            sent.push((g, outcomes, written));
        }
        if sent.is_empty() {
            // Nothing to send means nothing was deferred either.
            break;
        }
        let resp = inner
            .txn("writing entities", Vec::new(), ops, Vec::new())
            .await?;
        let seq = resp.revision;
        let revision = inner.revision(seq);
        let responses = resp.responses;
        if responses.len() != sent.len() {
            return Err(StoreError::Backend {
                message: "etcd returned a transaction response of the wrong size".into(),
                source: None,
            });
        }
        pending = deferred;
        let mut conflicted = false;
        for ((g, outcomes, written), r) in sent.into_iter().zip(responses) {
            let TxnOpResponse::Txn(sub) = r else {
                fail_group(&mut out, g, unexpected());
                continue;
            };
            if sub.succeeded() {
                if let Some(mut stored) = written {
                    stored.mod_revision = seq;
                    inner.cache_put(&chunk[g].key, stored);
                }
                out.extend(outcomes.into_iter().map(|(i, o)| match o {
                    ApplyOutcome::Applied { .. } => (i, Ok(ApplyOutcome::Applied { revision })),
                    stale => (i, Ok(stale)),
                }));
                continue;
            }
            // Someone else wrote the key (or the cache was behind).
            match read_states(inner, &sub.op_responses()).map(|r| r.into_iter().next()) {
                Ok(Some(stored)) => {
                    states[g] = stored;
                    fresh[g] = true;
                    pending.push(g);
                    conflicted = true;
                }
                Ok(None) => fail_group(&mut out, g, unexpected()),
                Err(e) => fail_group(&mut out, g, e),
            }
        }
        if conflicted {
            conflict_rounds += 1;
            if conflict_rounds >= MAX_CONFLICT_ROUNDS && !pending.is_empty() {
                return Err(StoreError::Unavailable {
                    message: format!(
                        "gave up writing a batch after {MAX_CONFLICT_ROUNDS} conflicting attempts"
                    ),
                    source: None,
                });
            }
        }
    }
    Ok(out)
}

/// A key sent in one transaction round: its group index, the outcomes it
/// yields if the round commits, and the record it writes (if any).
type SentKey = (usize, Vec<(usize, ApplyOutcome)>, Option<Stored>);

fn unexpected() -> StoreError {
    StoreError::Backend {
        message: "unexpected response in an etcd transaction".into(),
        source: None,
    }
}

/// Decides the changes of one key, in order, over its stored state: their
/// outcomes (applied ones with a placeholder revision) and the record to
/// write, if any.
fn decide_group(
    inner: &Inner,
    changes: &[Change],
    group: &Group,
    state: Stored,
    now: Timestamp,
) -> (Vec<(usize, ApplyOutcome)>, Option<Record>) {
    let mut stored = state;
    let mut pending = false;
    let mut write = None;
    let mut out = Vec::with_capacity(group.idxs.len());
    for &i in &group.idxs {
        let change = &changes[i];
        let guard = change.unchanged_since.map(|r| r.seq);
        match decide(&change.op, guard, stored, pending, now) {
            Decision::Write(record) => {
                stored.state = record.state();
                pending = true;
                write = Some(record);
                out.push((
                    i,
                    ApplyOutcome::Applied {
                        revision: inner.revision(0),
                    },
                ));
            }
            Decision::Stale {
                reason,
                stored_version,
            } => out.push((
                i,
                ApplyOutcome::Stale {
                    reason,
                    stored_version,
                },
            )),
        }
    }
    (out, write)
}

/// The states of the keys read by a transaction's get operations, in order.
fn read_states(inner: &Inner, responses: &[TxnOpResponse]) -> Result<Vec<Stored>> {
    let mut out = Vec::with_capacity(responses.len());
    for r in responses {
        let TxnOpResponse::Get(get) = r else {
            return Err(unexpected());
        };
        match get.kvs().first() {
            None => out.push(Stored::ABSENT),
            Some(kv) => {
                let record = Record::decode(kv.key(), kv.value())?;
                let stored = Stored {
                    state: record.state(),
                    mod_revision: kv.mod_revision(),
                };
                inner.cache_put(kv.key(), stored);
                out.push(stored);
            }
        }
    }
    Ok(out)
}
