//! One transaction of versioned compare-and-swap writes over a chunk of
//! keys (the [`super::writer`] chooses the chunks: at most `max_txn_ops - 1`
//! keys, [`super::EtcdOptions::max_txn_ops`], etcd's `--max-txn-ops`, 128 by
//! default: etcd counts a transaction's nested transactions against what the
//! outer one leaves, so the outer one holds at most one less).
//!
//! 1. Each key's state comes from the cache of `key -> (mod_revision,
//!    version)`; a key the cache does not know is assumed absent.
//! 2. The changes of each key are decided in order over that state (as if
//!    applied one by one); the last record decided to be written is the key's
//!    write.
//! 3. One transaction holds one nested transaction per key: "if the key's
//!    `mod_revision` is still what the decision was based on, put the write,
//!    else read the key". All the writes land at one revision, in one raft
//!    entry. A key whose compare failed (another process wrote it, the cache
//!    was behind) comes back with its current value and is decided again in
//!    the next round; the other keys are done. A conflict thus costs a round
//!    for the conflicting keys only, and a cold cache costs one round.

use blox_core::model::Timestamp;
use etcd_client::{Compare, CompareOp, Txn, TxnOp, TxnOpResponse};

use super::Inner;
use super::record::{Decision, Record, Stored, decide};
use crate::store::{ApplyOutcome, Change, Result, StoreError};

/// Conflicting rounds before giving up (each conflict means another writer
/// succeeded, so this is only reached under extreme contention).
const MAX_ROUNDS: usize = 1000;

/// The changes to one key, by their index in the chunk's changes.
pub(super) struct Group {
    /// The key.
    pub(super) key: Vec<u8>,
    /// Its changes, in the order they apply.
    pub(super) idxs: Vec<usize>,
}

/// Writes one chunk: decide, then one transaction holding a nested
/// compare-and-swap transaction per key; keys whose compare failed come back
/// with their current value and are decided again in the next round.
pub(super) async fn write_chunk(
    inner: &Inner,
    changes: &[Change],
    chunk: Vec<Group>,
    now: Timestamp,
) -> Result<Vec<(usize, ApplyOutcome)>> {
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
    let mut out = Vec::with_capacity(changes.len());
    for _ in 0..MAX_ROUNDS {
        if pending.is_empty() {
            return Ok(out);
        }
        let mut ops = Vec::with_capacity(pending.len());
        // Per key sent: its index, its outcomes, what it writes.
        let mut sent: Vec<SentKey> = Vec::new();
        for &g in &pending {
            let (outcomes, write) = decide_group(inner, changes, &chunk[g], states[g], now);
            if write.is_none() && fresh[g] {
                out.extend(outcomes);
                continue;
            }
            let key = chunk[g].key.clone();
            let compare =
                Compare::mod_revision(key.clone(), CompareOp::Equal, states[g].mod_revision);
            let mut then = Vec::new();
            let written = match write {
                Some(record) => {
                    then.push(TxnOp::put(
                        key.clone(),
                        record.encode(inner.options.compress_records)?,
                        None,
                    ));
                    Some(Stored {
                        state: record.state(),
                        mod_revision: 0,
                    })
                }
                None => None,
            };
            ops.push(TxnOp::txn(
                Txn::new()
                    .when([compare])
                    .and_then(then)
                    .or_else([TxnOp::get(key, None)]),
            ));
            sent.push((g, outcomes, written));
        }
        if sent.is_empty() {
            return Ok(out);
        }
        let resp = inner
            .txn("writing entities", Txn::new().and_then(ops))
            .await?;
        let seq = resp.header().map(|h| h.revision()).unwrap_or(0);
        let revision = inner.revision(seq);
        let responses = resp.op_responses();
        if responses.len() != sent.len() {
            return Err(StoreError::Backend {
                message: "etcd returned a transaction response of the wrong size".into(),
                source: None,
            });
        }
        pending.clear();
        for ((g, outcomes, written), r) in sent.into_iter().zip(responses) {
            let TxnOpResponse::Txn(sub) = r else {
                return Err(unexpected());
            };
            if sub.succeeded() {
                if let Some(mut stored) = written {
                    stored.mod_revision = seq;
                    inner.cache_put(&chunk[g].key, stored);
                }
                out.extend(outcomes.into_iter().map(|(i, o)| match o {
                    ApplyOutcome::Applied { .. } => (i, ApplyOutcome::Applied { revision }),
                    stale => (i, stale),
                }));
            } else {
                // Someone else wrote the key (or the cache was behind).
                let read = read_states(inner, &sub.op_responses())?;
                let stored = read.into_iter().next().ok_or_else(unexpected)?;
                states[g] = stored;
                fresh[g] = true;
                pending.push(g);
            }
        }
    }
    Err(StoreError::Unavailable {
        message: format!("gave up writing a batch after {MAX_ROUNDS} conflicting attempts"),
        source: None,
    })
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
