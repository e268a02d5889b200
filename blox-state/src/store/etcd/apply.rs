//! The batch writer: versioned compare-and-swap of many entities in few
//! etcd transactions.
//!
//! 1. Changes are grouped by key, keeping their order within a key.
//! 2. Groups are cut into chunks of at most [`MAX_TXN_KEYS`] keys (etcd's
//!    default `--max-txn-ops` is 128, and one transaction may not write a key
//!    twice).
//! 3. For each chunk, every key's [`Stored`] state comes from the cache, or
//!    from one read-only transaction for the keys the cache misses.
//! 4. The changes of each key are decided in order over that state (as if
//!    applied one by one); the last record decided to be written is the key's
//!    write.
//! 5. One transaction checks every key's `mod_revision` is what the decision
//!    was based on and, if so, puts the writes; if not, its failure branch
//!    reads every key so the chunk can be decided again on fresh state. After
//!    a few conflicting rounds the chunk is retried key by key.

use std::collections::HashMap;

use blox_core::model::Timestamp;
use etcd_client::{Compare, CompareOp, Txn, TxnOp, TxnOpResponse};
use futures::StreamExt;

use super::Inner;
use super::record::{Decision, Record, Stored, decide};
use crate::store::{ApplyOutcome, Change, Result, StoreError};

/// At most this many keys per transaction.
pub(crate) const MAX_TXN_KEYS: usize = 128;

/// Chunks written concurrently by one batch.
const CONCURRENT_CHUNKS: usize = 4;

/// Conflicting rounds of a multi-key chunk before it is split into keys.
const ROUNDS_BEFORE_SPLIT: usize = 3;

/// Conflicting rounds of one key before giving up (each conflict means
/// another writer succeeded, so this is only reached under extreme load).
const MAX_ROUNDS: usize = 1000;

/// The changes to one key, by their index in the batch.
struct Group {
    key: Vec<u8>,
    idxs: Vec<usize>,
}

pub(crate) async fn apply_batch(inner: &Inner, changes: Vec<Change>) -> Result<Vec<ApplyOutcome>> {
    let mut groups: Vec<Group> = Vec::new();
    let mut by_key: HashMap<Vec<u8>, usize> = HashMap::new();
    for (i, change) in changes.iter().enumerate() {
        if let Some(guard) = change.unchanged_since {
            inner.check_epoch(guard)?;
        }
        let key = inner.keys.entity(change.arn())?;
        match by_key.get(&key) {
            Some(&g) => groups[g].idxs.push(i),
            None => {
                by_key.insert(key.clone(), groups.len());
                groups.push(Group { key, idxs: vec![i] });
            }
        }
    }
    let now = Timestamp::now();
    let mut outcomes: Vec<Option<ApplyOutcome>> = vec![None; changes.len()];
    let mut chunks: Vec<Vec<Group>> = Vec::new();
    let mut it = groups.into_iter().peekable();
    while it.peek().is_some() {
        chunks.push(it.by_ref().take(MAX_TXN_KEYS).collect());
    }
    let changes = &changes;
    let results: Vec<Result<Vec<(usize, ApplyOutcome)>>> = futures::stream::iter(chunks)
        .map(|chunk| write_chunk(inner, changes, chunk, now))
        .buffer_unordered(CONCURRENT_CHUNKS)
        .collect()
        .await;
    for r in results {
        for (i, o) in r? {
            outcomes[i] = Some(o);
        }
    }
    outcomes
        .into_iter()
        .map(|o| o.ok_or_else(|| StoreError::Invalid("a change got no outcome".into())))
        .collect()
}

/// Writes one chunk, splitting it into keys if it keeps conflicting.
async fn write_chunk(
    inner: &Inner,
    changes: &[Change],
    chunk: Vec<Group>,
    now: Timestamp,
) -> Result<Vec<(usize, ApplyOutcome)>> {
    let split_after = if chunk.len() > 1 {
        ROUNDS_BEFORE_SPLIT
    } else {
        MAX_ROUNDS
    };
    if let Some(out) = try_chunk(inner, changes, &chunk, now, split_after).await? {
        return Ok(out);
    }
    let mut all = Vec::new();
    for g in chunk {
        match try_chunk(inner, changes, std::slice::from_ref(&g), now, MAX_ROUNDS).await? {
            Some(out) => all.extend(out),
            None => {
                return Err(StoreError::Unavailable {
                    message: format!(
                        "gave up writing {} after {MAX_ROUNDS} conflicting attempts",
                        String::from_utf8_lossy(&g.key)
                    ),
                    source: None,
                });
            }
        }
    }
    Ok(all)
}

/// Up to `rounds` decide-and-write rounds of a chunk; `None` if every round
/// conflicted.
async fn try_chunk(
    inner: &Inner,
    changes: &[Change],
    chunk: &[Group],
    now: Timestamp,
    rounds: usize,
) -> Result<Option<Vec<(usize, ApplyOutcome)>>> {
    // Each key's state, and whether it was read (rather than cached) for
    // this round: a decision on read state that writes nothing needs no txn.
    let mut states: Vec<Option<Stored>> = chunk.iter().map(|g| inner.cache_get(&g.key)).collect();
    let mut fresh = vec![false; chunk.len()];
    let misses: Vec<usize> = (0..chunk.len()).filter(|&i| states[i].is_none()).collect();
    if !misses.is_empty() {
        let ops: Vec<TxnOp> = misses
            .iter()
            .map(|&i| TxnOp::get(chunk[i].key.clone(), None))
            .collect();
        let resp = inner
            .txn("reading entities", Txn::new().and_then(ops))
            .await?;
        let read = read_states(inner, &resp.op_responses())?;
        for (&i, s) in misses.iter().zip(read) {
            states[i] = Some(s);
            fresh[i] = true;
        }
    }
    for _ in 0..rounds {
        let mut out = Vec::new();
        let mut writes: Vec<Option<Record>> = Vec::with_capacity(chunk.len());
        for (g, state) in chunk.iter().zip(&states) {
            let mut stored = state.unwrap_or(Stored::ABSENT);
            let mut pending = false;
            let mut write = None;
            for &i in &g.idxs {
                let change = &changes[i];
                let guard = change.unchanged_since.map(|r| r.seq);
                match decide(&change.op, guard, stored, pending, now) {
                    Decision::Write(record) => {
                        stored.state = record.state();
                        pending = true;
                        write = Some(record);
                        // The revision is filled in once the txn commits.
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
            writes.push(write);
        }
        let any_write = writes.iter().any(Option::is_some);
        if !any_write && fresh.iter().all(|&f| f) {
            return Ok(Some(out));
        }
        let mut compares = Vec::with_capacity(chunk.len());
        let mut puts = Vec::new();
        let mut reads = Vec::with_capacity(chunk.len());
        let mut encoded: Vec<Option<(Vec<u8>, Stored)>> = Vec::with_capacity(chunk.len());
        for ((g, state), write) in chunk.iter().zip(&states).zip(&writes) {
            let rev = state.map_or(0, |s| s.mod_revision);
            compares.push(Compare::mod_revision(g.key.clone(), CompareOp::Equal, rev));
            reads.push(TxnOp::get(g.key.clone(), None));
            match write {
                Some(record) => {
                    let bytes = record.encode()?;
                    puts.push(TxnOp::put(g.key.clone(), bytes, None));
                    encoded.push(Some((
                        g.key.clone(),
                        Stored {
                            state: record.state(),
                            mod_revision: 0,
                        },
                    )));
                }
                None => encoded.push(None),
            }
        }
        let txn = Txn::new().when(compares).and_then(puts).or_else(reads);
        let resp = inner.txn("writing entities", txn).await?;
        if resp.succeeded() {
            let seq = resp.header().map(|h| h.revision()).unwrap_or(0);
            for (key, mut stored) in encoded.into_iter().flatten() {
                stored.mod_revision = seq;
                inner.cache_put(&key, stored);
            }
            let revision = inner.revision(seq);
            for (_, o) in &mut out {
                if let ApplyOutcome::Applied { revision: r } = o {
                    *r = revision;
                }
            }
            return Ok(Some(out));
        }
        // Someone else wrote one of the keys (or the cache was stale):
        // decide again on the values the failure branch read.
        let read = read_states(inner, &resp.op_responses())?;
        for ((i, s), g) in read.into_iter().enumerate().zip(chunk) {
            states[i] = Some(s);
            fresh[i] = true;
            inner.cache_put(&g.key, s);
        }
    }
    Ok(None)
}

/// The states of the keys read by a transaction's get operations, in order.
fn read_states(inner: &Inner, responses: &[TxnOpResponse]) -> Result<Vec<Stored>> {
    let mut out = Vec::with_capacity(responses.len());
    for r in responses {
        let TxnOpResponse::Get(get) = r else {
            return Err(StoreError::Backend {
                message: "unexpected response to a read in a transaction".into(),
                source: None,
            });
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
