//! Layout 1 → 2 migration of the runner's start intents
//! (`intents/{scheduler}/...`, JSON records owned by `blox-sched`).
//!
//! Layout 1 kept one intent per instance and `startedBy`, at
//! `intents/{scheduler}/{startedBy}/{instance ARN}`. Layout 2 keeps one per
//! start, at `intents/{scheduler}/{id}` (an id without `/`), and the record
//! may name its task. The step moves each layout-1 record to a key of its
//! own (`v1-` and a hash of the old key, so running it again finds nothing
//! left to move) and marks it layout 2; its other fields read as before
//! (without a known task, any task of its instance and `startedBy` may
//! resolve it, as in layout 1).

use futures::FutureExt;
use futures::future::BoxFuture;

use super::EtcdStore;
use crate::store::{KvExpect, KvOp, KvTxn, Result, StateStore};

/// The key-value prefix of every scheduler's intents.
const INTENTS: &str = "intents/";

/// The migration step (registered in [`super::layout::MIGRATIONS`]).
pub(crate) fn run(store: &EtcdStore) -> BoxFuture<'_, Result<()>> {
    async move { restamp_intents(store, 1, 2).await }.boxed()
}

/// Marks every outstanding start intent written under layout `from` as
/// written under `to` (moving a layout-1 record to a key of its own), so
/// a leader of layout `to` resolves it instead of waiting for a daemon of
/// `from`. A migration step of a layout bump that leaves the intents'
/// meaning unchanged runs this; one that changes it rewrites them itself.
/// Idempotent; a record changed concurrently is left as it is.
pub async fn restamp_intents(store: &EtcdStore, from: u32, to: u32) -> Result<()> {
    let listing = store.kv_list(INTENTS).await?;
    for entry in listing.items {
        let Ok(serde_json::Value::Object(mut record)) =
            serde_json::from_slice::<serde_json::Value>(&entry.value)
        else {
            tracing::warn!(key = %entry.key, "layout migration: leaving an unreadable intent");
            continue;
        };
        let layout = record
            .get("layout")
            .and_then(serde_json::Value::as_u64)
            .unwrap_or(1);
        if layout != u64::from(from) {
            continue;
        }
        record.insert("layout".to_owned(), to.into());
        let value = serde_json::to_vec(&record)
            .map_err(|e| crate::store::StoreError::Invalid(e.to_string()))?;
        let new_key = new_key(&entry.key);
        let mut ops = vec![KvOp::Put {
            key: new_key.clone(),
            value: value.into(),
        }];
        if new_key != entry.key {
            ops.push(KvOp::Delete {
                key: entry.key.clone(),
            });
        }
        // Only the record as listed moves (a concurrent change wins).
        store
            .kv_txn(KvTxn {
                checks: vec![(entry.key.clone(), KvExpect::Revision(entry.revision))],
                ops,
            })
            .await?;
    }
    Ok(())
}

/// The layout-2 key of a layout-1 intent key: `intents/{scheduler}/v1-{hash}`.
fn new_key(old: &str) -> String {
    let Some(rest) = old.strip_prefix(INTENTS) else {
        return old.to_owned();
    };
    let Some((scheduler, id)) = rest.split_once('/') else {
        return old.to_owned();
    };
    if !id.contains('/') {
        return old.to_owned();
    }
    format!("{INTENTS}{scheduler}/v1-{:016x}", fnv1a(old.as_bytes()))
}

/// FNV-1a (64 bits): stable across builds, unlike the std hasher.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_one_keys_move_to_a_key_without_a_slash_and_others_stay() {
        let old = "intents/daemon/d-1/arn:aws:ecs:us-east-1:1:container-instance/c/i1";
        let new = new_key(old);
        assert!(new.starts_with("intents/daemon/v1-"));
        assert!(!new["intents/daemon/".len()..].contains('/'));
        assert_eq!(new_key(old), new, "stable");
        assert_ne!(
            new_key("intents/daemon/d-1/arn:aws:ecs:us-east-1:1:container-instance/c/i2"),
            new
        );
        assert_eq!(new_key("intents/daemon/abc-1"), "intents/daemon/abc-1");
    }
}
