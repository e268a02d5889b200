//! The size limits of one key-value transaction, enforced in one place for
//! every backend and every caller.
//!
//! etcd refuses a transaction with more than `--max-txn-ops` operations
//! (128 by default: compares and each branch's ops are counted separately,
//! the largest count must fit) or a request larger than
//! `--max-request-bytes` (1.5 MiB by default). A refused transaction fails
//! the same way every time it is retried, so a caller that builds one from
//! data that grows with the cluster (one delete per resolved intent, say)
//! stalls for good once the cluster is large enough.
//!
//! So every backend checks [`KvTxn::validate`] before it writes (the memory
//! store too, so a test on it fails where etcd would), and callers that do
//! not need one atomic write use [`StateStore::kv_txn_chunked`](super::StateStore::kv_txn_chunked),
//! which splits the ops into transactions that fit, each guarded by the
//! same checks.

use std::collections::HashSet;

use super::{KvExpect, KvOp, KvTxn, StoreError};

/// Bytes one operation adds to a request beyond its key and value (protobuf
/// framing, the compare's fields), rounded up.
const OP_OVERHEAD: usize = 64;

/// How large one key-value transaction may be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TxnLimits {
    /// The most operations of one kind (checks, or writes) in one
    /// transaction: etcd's `--max-txn-ops`, 128 by default.
    pub max_ops: usize,
    /// The largest transaction in bytes, keys, values and framing counted.
    /// The default, 1 MiB, stays below etcd's default `--max-request-bytes`
    /// (1.5 MiB) with room for the request's envelope.
    pub max_bytes: usize,
}

impl Default for TxnLimits {
    fn default() -> Self {
        TxnLimits {
            max_ops: 128,
            max_bytes: 1 << 20,
        }
    }
}

impl KvOp {
    /// The key this op writes.
    pub fn key(&self) -> &str {
        match self {
            KvOp::Put { key, .. } | KvOp::Delete { key } => key,
        }
    }

    /// The op's size in a request (key, value and framing).
    fn request_bytes(&self) -> usize {
        OP_OVERHEAD
            + match self {
                KvOp::Put { key, value } => key.len() + value.len(),
                KvOp::Delete { key } => key.len(),
            }
    }
}

fn check_bytes((key, _): &(String, KvExpect)) -> usize {
    OP_OVERHEAD + key.len()
}

impl KvTxn {
    /// The transaction's size in a request (checks and ops).
    pub fn request_bytes(&self) -> usize {
        self.checks.iter().map(check_bytes).sum::<usize>()
            + self.ops.iter().map(KvOp::request_bytes).sum::<usize>()
    }

    /// Checks that the transaction writes each key at most once and fits
    /// `limits`; [`StoreError::TooLarge`] names what is over.
    pub fn validate(&self, limits: TxnLimits) -> Result<(), StoreError> {
        let mut seen = HashSet::with_capacity(self.ops.len());
        for op in &self.ops {
            if !seen.insert(op.key()) {
                return Err(StoreError::Invalid(format!(
                    "key-value transaction writes {:?} more than once",
                    op.key()
                )));
            }
        }
        let ops = self.checks.len().max(self.ops.len());
        let bytes = self.request_bytes();
        if ops > limits.max_ops || bytes > limits.max_bytes {
            return Err(StoreError::TooLarge { ops, bytes, limits });
        }
        Ok(())
    }

    /// Splits the ops into transactions that each fit `limits` with the
    /// same checks (in order; an op too large on its own is left alone in
    /// its transaction, for [`KvTxn::validate`] to refuse).
    pub fn split(self, limits: TxnLimits) -> Vec<KvTxn> {
        let check_bytes: usize = self.checks.iter().map(check_bytes).sum();
        let mut out = Vec::new();
        let mut ops: Vec<KvOp> = Vec::new();
        let mut bytes = check_bytes;
        for op in self.ops {
            let size = op.request_bytes();
            if !ops.is_empty() && (ops.len() == limits.max_ops || bytes + size > limits.max_bytes) {
                out.push(KvTxn {
                    checks: self.checks.clone(),
                    ops: std::mem::take(&mut ops),
                });
                bytes = check_bytes;
            }
            bytes += size;
            ops.push(op);
        }
        if !ops.is_empty() || out.is_empty() {
            out.push(KvTxn {
                checks: self.checks,
                ops,
            });
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;

    fn deletes(n: usize) -> Vec<KvOp> {
        (0..n)
            .map(|i| KvOp::Delete {
                key: format!("k{i:04}"),
            })
            .collect()
    }

    #[test]
    fn a_transaction_over_the_op_limit_is_refused_with_its_size() {
        let txn = KvTxn {
            checks: vec![("leader".into(), KvExpect::Present)],
            ops: deletes(129),
        };
        let err = txn.validate(TxnLimits::default()).unwrap_err();
        assert!(
            matches!(err, StoreError::TooLarge { ops: 129, .. }),
            "{err}"
        );
        assert!(err.to_string().contains("129 operations"), "{err}");
    }

    #[test]
    fn the_largest_transaction_within_limits_passes() {
        let txn = KvTxn {
            checks: (0..128)
                .map(|i| (format!("c{i}"), KvExpect::Absent))
                .collect(),
            ops: deletes(128),
        };
        txn.validate(TxnLimits::default()).unwrap();
    }

    #[test]
    fn a_transaction_over_the_byte_limit_is_refused() {
        let txn = KvTxn {
            checks: Vec::new(),
            ops: vec![KvOp::Put {
                key: "big".into(),
                value: Bytes::from(vec![0u8; 1 << 20]),
            }],
        };
        let err = txn.validate(TxnLimits::default()).unwrap_err();
        assert!(matches!(err, StoreError::TooLarge { ops: 1, .. }), "{err}");
    }

    #[test]
    fn a_key_written_twice_is_invalid() {
        let mut ops = deletes(2);
        ops.push(KvOp::Delete {
            key: "k0000".into(),
        });
        let txn = KvTxn {
            checks: Vec::new(),
            ops,
        };
        assert!(matches!(
            txn.validate(TxnLimits::default()),
            Err(StoreError::Invalid(_))
        ));
    }

    #[test]
    fn splitting_keeps_every_op_in_order_under_the_same_checks() {
        let checks = vec![("leader".to_owned(), KvExpect::Present)];
        let txn = KvTxn {
            checks: checks.clone(),
            ops: deletes(300),
        };
        let parts = txn.clone().split(TxnLimits::default());
        assert_eq!(
            parts.iter().map(|t| t.ops.len()).collect::<Vec<_>>(),
            [128, 128, 44]
        );
        for part in &parts {
            assert_eq!(part.checks, checks);
            part.validate(TxnLimits::default()).unwrap();
        }
        let rejoined: Vec<KvOp> = parts.into_iter().flat_map(|t| t.ops).collect();
        assert_eq!(rejoined, txn.ops);
    }

    #[test]
    fn splitting_respects_the_byte_limit() {
        let ops: Vec<KvOp> = (0..10)
            .map(|i| KvOp::Put {
                key: format!("k{i}"),
                value: Bytes::from(vec![0u8; 300 * 1024]),
            })
            .collect();
        let parts = KvTxn {
            checks: Vec::new(),
            ops,
        }
        .split(TxnLimits::default());
        assert_eq!(parts.len(), 4);
        for part in &parts {
            part.validate(TxnLimits::default()).unwrap();
        }
    }

    #[test]
    fn splitting_an_empty_transaction_keeps_its_checks() {
        let checks = vec![("leader".to_owned(), KvExpect::Present)];
        let parts = KvTxn {
            checks: checks.clone(),
            ops: Vec::new(),
        }
        .split(TxnLimits::default());
        assert_eq!(parts.len(), 1);
        assert_eq!(parts[0].checks, checks);
    }
}
