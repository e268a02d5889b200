//! The key-value API over etcd: keys under `{prefix}/kv/`, checks as etcd
//! compares (`Absent`: `create_revision == 0`, `Present`:
//! `create_revision > 0`, `Revision(r)`: `mod_revision == r.seq`).

use bytes::Bytes;
use etcd_client::{Compare, CompareOp, KeyValue, TxnOp};

use super::Inner;
use crate::store::{KvEntry, KvExpect, KvOp, KvTxn, KvTxnOutcome, Listing, Result};

fn entry(inner: &Inner, kv: &KeyValue) -> Option<KvEntry> {
    Some(KvEntry {
        key: inner.keys.kv_key(kv.key())?.to_owned(),
        value: Bytes::copy_from_slice(kv.value()),
        revision: inner.revision(kv.mod_revision()),
    })
}

/// Reads one key.
pub(crate) async fn get(inner: &Inner, key: &str) -> Result<Option<KvEntry>> {
    let k = inner.keys.kv(key);
    let resp = inner
        .policy
        .run("reading a key", || {
            let mut kv = inner.client.kv_client();
            let k = k.clone();
            async move { kv.get(k, None).await }
        })
        .await?;
    Ok(resp.kvs().first().and_then(|kv| entry(inner, kv)))
}

/// Lists keys under a prefix, sorted, at one revision.
pub(crate) async fn list(inner: &Inner, prefix: &str) -> Result<Listing<KvEntry>> {
    let (kvs, at) = inner.range(&inner.keys.kv(prefix)).await?;
    Ok(Listing {
        items: kvs.iter().filter_map(|kv| entry(inner, kv)).collect(),
        revision: inner.revision(at),
    })
}

/// Applies a compare-and-swap transaction.
pub(crate) async fn txn(inner: &Inner, txn: KvTxn) -> Result<KvTxnOutcome> {
    txn.validate(inner.txn_limits())?;
    let mut compares = Vec::new();
    for (key, expect) in &txn.checks {
        let k = inner.keys.kv(key);
        match expect {
            KvExpect::Absent => compares.push(Compare::create_revision(k, CompareOp::Equal, 0)),
            KvExpect::Present => {
                compares.push(Compare::create_revision(k, CompareOp::Greater, 0));
            }
            KvExpect::Revision(r) => {
                let seq = i64::try_from(r.seq).unwrap_or(i64::MAX);
                if r.epoch != inner.epoch || seq == 0 {
                    return Ok(KvTxnOutcome::Conflict);
                }
                compares.push(Compare::mod_revision(k, CompareOp::Equal, seq));
            }
        }
    }
    let ops: Vec<TxnOp> = txn
        .ops
        .into_iter()
        .map(|op| match op {
            KvOp::Put { key, value } => TxnOp::put(inner.keys.kv(&key), value.to_vec(), None),
            KvOp::Delete { key } => TxnOp::delete(inner.keys.kv(&key), None),
        })
        .collect();
    let resp = inner
        .txn("key-value transaction", compares, ops, Vec::new())
        .await?;
    if resp.succeeded {
        Ok(KvTxnOutcome::Applied(inner.revision(resp.revision)))
    } else {
        Ok(KvTxnOutcome::Conflict)
    }
}
