//! What an entity key holds (a live entity or a tombstone) and the version
//! rules that decide whether a change applies over it.
//!
//! The rules are pure functions over a [`Stored`] summary (kind of value,
//! ECS version, etcd `mod_revision`), so the batch writer can run them on
//! values it read, on values it cached, or on the result of an earlier change
//! of the same batch.

use blox_core::model::{Arn, Entity, Timestamp, supersedes};
use serde::{Deserialize, Serialize};

use super::keys::{Index, Keys};
use crate::store::retention::retired_since;
use crate::store::tombstone::TombstoneRule;
use crate::store::{Op, StaleReason, StoreError};

/// The JSON value stored at an entity key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Record {
    /// The entity's current state.
    Live(Entity),
    /// The entity was deleted.
    Tombstone(Tombstone),
}

/// What remains of a deleted entity until it is purged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Tombstone {
    /// The deleted entity's ARN.
    pub arn: Arn,
    /// The version it was deleted at (`None` = unknown).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<u64>,
    /// When it was deleted.
    pub deleted_at: Timestamp,
    /// A soft deletion (listing evidence alone): blocks only older versions.
    /// Absent in layout-1 records, which are all hard.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub soft: bool,
}

impl Tombstone {
    /// What this tombstone blocks.
    pub(crate) fn rule(&self) -> TombstoneRule {
        TombstoneRule {
            version: self.version,
            soft: self.soft,
        }
    }
}

/// The first bytes of a compressed record: `0xFF` never starts JSON (nor
/// any UTF-8 text), so both forms can be told apart and read.
const SNAPPY_TAG: [u8; 2] = [0xFF, b's'];

/// The largest record a compressed value may expand to (etcd refuses
/// requests over 1.5 MiB by default; this leaves room for larger limits).
const MAX_RECORD_BYTES: usize = 16 << 20;

/// Decodes a stored entity record for a read that must go on without it:
/// a record that cannot be decoded is logged, counted in `skipped` and
/// left out (`None`), so one bad value neither fails a list (which would
/// make a following cache relist forever) nor ends a watch.
pub(crate) fn decode_or_skip(
    skipped: &std::sync::atomic::AtomicU64,
    key: &[u8],
    value: &[u8],
) -> Option<Record> {
    match Record::decode(key, value) {
        Ok(record) => Some(record),
        Err(e) => {
            skipped.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            tracing::error!(error = %e, "skipping an entity record that cannot be decoded");
            None
        }
    }
}

impl Record {
    /// Decodes a stored value: JSON, or JSON compressed with Snappy behind
    /// [`SNAPPY_TAG`].
    pub(crate) fn decode(key: &[u8], value: &[u8]) -> Result<Record, StoreError> {
        let corrupt = |message: String| StoreError::Corrupt {
            key: String::from_utf8_lossy(key).into_owned(),
            message,
        };
        let expanded;
        let json = match value.strip_prefix(&SNAPPY_TAG) {
            None => value,
            Some(block) => {
                let len = snap::raw::decompress_len(block)
                    .map_err(|e| corrupt(format!("bad compressed record: {e}")))?;
                if len > MAX_RECORD_BYTES {
                    return Err(corrupt(format!(
                        "compressed record claims {len} bytes, over the {MAX_RECORD_BYTES}-byte limit"
                    )));
                }
                expanded = snap::raw::Decoder::new()
                    .decompress_vec(block)
                    .map_err(|e| corrupt(format!("bad compressed record: {e}")))?;
                &expanded[..]
            }
        };
        serde_json::from_slice(json).map_err(|e| corrupt(e.to_string()))
    }

    /// Encodes a value to store: its JSON, compressed if `compress`.
    pub(crate) fn encode(&self, compress: bool) -> Result<Vec<u8>, StoreError> {
        let json = serde_json::to_vec(self)
            .map_err(|e| StoreError::Invalid(format!("cannot encode: {e}")))?;
        if !compress {
            return Ok(json);
        }
        let mut out = vec![0; SNAPPY_TAG.len() + snap::raw::max_compress_len(json.len())];
        out[..SNAPPY_TAG.len()].copy_from_slice(&SNAPPY_TAG);
        let n = snap::raw::Encoder::new()
            .compress(&json, &mut out[SNAPPY_TAG.len()..])
            .map_err(|e| StoreError::Invalid(format!("cannot compress: {e}")))?;
        out.truncate(SNAPPY_TAG.len() + n);
        Ok(out)
    }

    /// The key of this value's entry in a retention index, if it has one
    /// (a retired entity, a tombstone: see [`super::keys`]).
    pub(crate) fn index_entry(&self, keys: &Keys) -> Option<Vec<u8>> {
        match self {
            Record::Live(e) => {
                retired_since(e).map(|at| keys.index_entry(Index::Retired, at, e.arn()))
            }
            Record::Tombstone(t) => Some(keys.index_entry(Index::Tombstone, t.deleted_at, &t.arn)),
        }
    }

    /// The summary of this value.
    pub(crate) fn state(&self) -> State {
        match self {
            Record::Live(e) => State::Live(e.version()),
            Record::Tombstone(t) => State::Tombstone(t.rule()),
        }
    }
}

/// What a key holds, as far as the version rules care.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum State {
    /// Nothing (never written, or purged).
    Absent,
    /// A live entity at this version.
    Live(Option<u64>),
    /// A tombstone.
    Tombstone(TombstoneRule),
}

/// A key's state and the etcd revision of its last write (0 when absent).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Stored {
    /// What the key holds.
    pub state: State,
    /// etcd's `mod_revision` of the key (0 = absent).
    pub mod_revision: i64,
}

impl Stored {
    /// An absent key.
    pub(crate) const ABSENT: Stored = Stored {
        state: State::Absent,
        mod_revision: 0,
    };
}

/// The decision for one change over a stored state.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Decision {
    /// Write this record.
    Write(Record),
    /// Leave the key as it is.
    Stale {
        /// Why.
        reason: StaleReason,
        /// The stored version.
        stored_version: Option<u64>,
    },
}

/// Decides a change over what is stored.
///
/// `guard_seq` is the change's `unchanged_since` sequence number; `pending`
/// says an earlier change of the same batch already wrote this key (so any
/// guard fails, as it would if the changes were applied one by one).
pub(crate) fn decide(
    op: &Op,
    guard_seq: Option<u64>,
    stored: Stored,
    pending: bool,
    now: Timestamp,
) -> Decision {
    let stored_version = match stored.state {
        State::Absent => None,
        State::Live(v) => v,
        State::Tombstone(t) => t.version,
    };
    if let Some(seq) = guard_seq {
        let modified_after = pending || u64::try_from(stored.mod_revision).unwrap_or(0) > seq;
        if modified_after {
            return Decision::Stale {
                reason: StaleReason::ModifiedSince,
                stored_version,
            };
        }
    }
    match op {
        Op::Put(entity) => {
            let incoming = entity.version();
            let stale = match stored.state {
                State::Absent => None,
                State::Live(v) => (!supersedes(incoming, v)).then_some(StaleReason::Version),
                State::Tombstone(t) => t.blocks_put(incoming).then_some(StaleReason::Tombstone),
            };
            match stale {
                Some(reason) => Decision::Stale {
                    reason,
                    stored_version,
                },
                None => Decision::Write(Record::Live(entity.clone())),
            }
        }
        Op::Delete { arn, version, soft } => {
            let tombstone = |v: Option<u64>| {
                Decision::Write(Record::Tombstone(Tombstone {
                    arn: arn.clone(),
                    version: v,
                    deleted_at: now,
                    soft: *soft,
                }))
            };
            match stored.state {
                // A tombstone where nothing was: a late put of this version
                // or lower must not create the entity.
                State::Absent => tombstone(*version),
                State::Live(v) => match (*version, v) {
                    (Some(d), Some(s)) if s > d => Decision::Stale {
                        reason: StaleReason::Version,
                        stored_version,
                    },
                    (d, s) => tombstone(d.or(s)),
                },
                // Already deleted: only a delete at a strictly higher version
                // raises the tombstone (or a hard one hardens a soft one).
                State::Tombstone(t) => match t.after_delete(*version, *soft) {
                    Some(new) => tombstone(new.version),
                    None => Decision::Stale {
                        reason: StaleReason::Tombstone,
                        stored_version,
                    },
                },
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use blox_core::model::Task;

    fn arn() -> Arn {
        Arn::parse("arn:aws:ecs:us-east-1:123456789012:task/c/abc").unwrap()
    }

    fn put(version: Option<u64>) -> Op {
        let cluster = Arn::parse("arn:aws:ecs:us-east-1:123456789012:cluster/c").unwrap();
        let mut t = Task::new(arn(), cluster, "td");
        t.version = version;
        Op::Put(t.into())
    }

    fn stored(state: State, rev: i64) -> Stored {
        Stored {
            state,
            mod_revision: rev,
        }
    }

    fn hard(version: Option<u64>) -> State {
        State::Tombstone(TombstoneRule {
            version,
            soft: false,
        })
    }

    fn is_write(d: &Decision) -> bool {
        matches!(d, Decision::Write(_))
    }

    #[test]
    fn put_applies_over_absent_and_older_but_not_equal() {
        let now = Timestamp::now();
        assert!(is_write(&decide(
            &put(Some(1)),
            None,
            Stored::ABSENT,
            false,
            now
        )));
        assert!(is_write(&decide(
            &put(Some(2)),
            None,
            stored(State::Live(Some(1)), 5),
            false,
            now
        )));
        assert_eq!(
            decide(
                &put(Some(2)),
                None,
                stored(State::Live(Some(2)), 5),
                false,
                now
            ),
            Decision::Stale {
                reason: StaleReason::Version,
                stored_version: Some(2)
            }
        );
    }

    #[test]
    fn tombstone_blocks_equal_version_but_not_higher() {
        let now = Timestamp::now();
        let s = stored(hard(Some(3)), 7);
        assert_eq!(
            decide(&put(Some(3)), None, s, false, now),
            Decision::Stale {
                reason: StaleReason::Tombstone,
                stored_version: Some(3)
            }
        );
        assert!(is_write(&decide(&put(Some(4)), None, s, false, now)));
    }

    #[test]
    fn guard_fails_when_key_modified_after_the_revision_or_earlier_in_the_batch() {
        let now = Timestamp::now();
        let s = stored(State::Live(Some(1)), 10);
        assert!(is_write(&decide(&put(Some(2)), Some(10), s, false, now)));
        assert_eq!(
            decide(&put(Some(2)), Some(9), s, false, now),
            Decision::Stale {
                reason: StaleReason::ModifiedSince,
                stored_version: Some(1)
            }
        );
        assert!(!is_write(&decide(&put(Some(2)), Some(10), s, true, now)));
    }

    #[test]
    fn delete_keeps_the_newer_of_its_version_and_the_stored_one() {
        let now = Timestamp::now();
        let del = |v| Op::Delete {
            arn: arn(),
            version: v,
            soft: false,
        };
        match decide(
            &del(None),
            None,
            stored(State::Live(Some(4)), 3),
            false,
            now,
        ) {
            Decision::Write(Record::Tombstone(t)) => assert_eq!(t.version, Some(4)),
            d => panic!("unexpected {d:?}"),
        }
        assert!(!is_write(&decide(
            &del(Some(3)),
            None,
            stored(State::Live(Some(4)), 3),
            false,
            now
        )));
        assert!(!is_write(&decide(
            &del(Some(3)),
            None,
            stored(hard(Some(3)), 3),
            false,
            now
        )));
        assert!(is_write(&decide(
            &del(Some(3)),
            None,
            Stored::ABSENT,
            false,
            now
        )));
    }

    #[test]
    fn a_soft_tombstone_lets_the_deleted_version_through_and_a_hard_delete_hardens_it() {
        let now = Timestamp::now();
        let soft = stored(
            State::Tombstone(TombstoneRule {
                version: Some(3),
                soft: true,
            }),
            7,
        );
        assert!(is_write(&decide(&put(Some(3)), None, soft, false, now)));
        assert!(!is_write(&decide(&put(Some(2)), None, soft, false, now)));
        let hard_delete = Op::Delete {
            arn: arn(),
            version: Some(3),
            soft: false,
        };
        match decide(&hard_delete, None, soft, false, now) {
            Decision::Write(Record::Tombstone(t)) => {
                assert_eq!((t.version, t.soft), (Some(3), false));
            }
            d => panic!("unexpected {d:?}"),
        }
        let soft_delete = Op::Delete {
            arn: arn(),
            version: Some(5),
            soft: true,
        };
        match decide(&soft_delete, None, Stored::ABSENT, false, now) {
            Decision::Write(Record::Tombstone(t)) => assert!(t.soft),
            d => panic!("unexpected {d:?}"),
        }
    }

    #[test]
    fn a_layout_1_tombstone_reads_as_hard_and_a_hard_one_is_written_as_before() {
        let v1 = br#"{"tombstone":{"arn":"arn:aws:ecs:us-east-1:123456789012:task/c/abc","version":3,"deletedAt":"2024-01-01T00:00:00Z"}}"#;
        let Record::Tombstone(t) = Record::decode(b"k", v1).unwrap() else {
            panic!("a tombstone")
        };
        assert!(!t.soft);
        let hard = String::from_utf8(Record::Tombstone(t).encode(false).unwrap()).unwrap();
        assert!(!hard.contains("soft"), "{hard}");
    }

    #[test]
    fn records_round_trip_plain_and_compressed() {
        let tombstone = Record::Tombstone(Tombstone {
            arn: arn(),
            version: Some(9),
            deleted_at: Timestamp::from_millis(1_000),
            soft: true,
        });
        let plain = tombstone.encode(false).unwrap();
        assert_eq!(plain.first(), Some(&b'{'));
        assert_eq!(Record::decode(b"k", &plain).unwrap(), tombstone);
        let compressed = tombstone.encode(true).unwrap();
        assert_eq!(compressed[..2], SNAPPY_TAG);
        assert_eq!(Record::decode(b"k", &compressed).unwrap(), tombstone);
    }

    #[test]
    fn compression_shrinks_a_task_record() {
        let mut t = blox_core::model::Task::new(
            Arn::parse("arn:aws:ecs:us-east-1:123456789012:task/prod/0123456789abcdef").unwrap(),
            Arn::parse("arn:aws:ecs:us-east-1:123456789012:cluster/prod").unwrap(),
            "arn:aws:ecs:us-east-1:123456789012:task-definition/web:42",
        );
        t.container_instance_arn = Some(
            Arn::parse("arn:aws:ecs:us-east-1:123456789012:container-instance/prod/0123").unwrap(),
        );
        t.version = Some(4);
        let live = Record::Live(Entity::from(t));
        let plain = live.encode(false).unwrap();
        let compressed = live.encode(true).unwrap();
        assert!(
            compressed.len() < plain.len(),
            "{} >= {}",
            compressed.len(),
            plain.len()
        );
        assert_eq!(Record::decode(b"k", &compressed).unwrap(), live);
    }

    #[test]
    fn corrupt_values_are_errors_naming_the_key() {
        for bad in [
            &b"{"[..],
            &[0xFF, b's'][..],
            &[0xFF, b's', 0x05, 0x01][..],
            &[0xFF, b's', 0xFF, 0xFF, 0xFF, 0xFF, 0x7F][..],
            &[0xFF, b'x', b'{', b'}'][..],
        ] {
            match Record::decode(b"/blox/e/task/x", bad) {
                Err(StoreError::Corrupt { key, .. }) => assert_eq!(key, "/blox/e/task/x"),
                other => panic!("{bad:?}: {other:?}"),
            }
        }
    }
}
