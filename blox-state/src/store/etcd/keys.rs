//! The key layout of the etcd backend.
//!
//! ```text
//! {prefix}/e/task/{task ARN}                  a task (or its tombstone)
//! {prefix}/e/instance/{container instance ARN} an instance (or its tombstone)
//! {prefix}/kv/{key}                           the key-value API
//! {prefix}/layout                             the layout version (see super::layout)
//! {prefix}/i/retired/{ms}/{ARN}               retention index: retired since ms (layout 2)
//! {prefix}/i/tombstone/{ms}/{ARN}             retention index: deleted at ms (layout 2)
//! ```
//! Entities are keyed by their full ARN, which is unique across partitions,
//! regions and accounts, so clusters of the same name never collide.
//!
//! The retention indexes hold empty values: the key says when (milliseconds
//! since the epoch, zero-padded to 20 digits, so key order is time order)
//! and which entity. A stopped task or INACTIVE instance is indexed under
//! `retired`, a tombstone under `tombstone`; each write of an entity puts its
//! entry in the same transaction, and retention removes entries once
//! handled, or once found stale (the entity changed since).

use blox_core::model::{Arn, EntityKind, Timestamp};

use crate::store::{Result, kind_of};

/// Builds keys under one store prefix.
#[derive(Debug, Clone)]
pub(crate) struct Keys {
    root: String,
}

impl Keys {
    /// Keys under `prefix` (a trailing `/` is ignored).
    pub(crate) fn new(prefix: &str) -> Self {
        Keys {
            root: prefix.trim_end_matches('/').to_owned(),
        }
    }

    /// The store's prefix, without a trailing `/`.
    pub(crate) fn root(&self) -> &str {
        &self.root
    }

    /// The prefix of every entity key.
    pub(crate) fn entities(&self) -> String {
        format!("{}/e/", self.root)
    }

    /// The prefix of the entity keys of one kind.
    pub(crate) fn kind(&self, kind: EntityKind) -> String {
        format!("{}/e/{}/", self.root, kind.as_str())
    }

    /// The key of an entity.
    pub(crate) fn entity(&self, arn: &Arn) -> Result<Vec<u8>> {
        let kind = kind_of(arn)?;
        Ok(format!("{}/e/{}/{}", self.root, kind.as_str(), arn).into_bytes())
    }

    /// The prefix of one retention index.
    pub(crate) fn index(&self, index: Index) -> String {
        format!("{}/i/{}/", self.root, index.as_str())
    }

    /// The key of an entity's entry in a retention index.
    pub(crate) fn index_entry(&self, index: Index, at: Timestamp, arn: &Arn) -> Vec<u8> {
        let ms = u64::try_from(at.as_millis()).unwrap_or(0);
        format!("{}{ms:020}/{arn}", self.index(index)).into_bytes()
    }

    /// The end (exclusive) of the entries of an index strictly before `at`.
    pub(crate) fn index_before(&self, index: Index, at: Timestamp) -> Vec<u8> {
        let ms = u64::try_from(at.as_millis()).unwrap_or(0);
        format!("{}{ms:020}", self.index(index)).into_bytes()
    }

    /// The ARN of an index entry's key.
    pub(crate) fn index_arn(&self, index: Index, key: &[u8]) -> Option<Arn> {
        let rest = key.strip_prefix(self.index(index).as_bytes())?;
        let rest = std::str::from_utf8(rest).ok()?;
        let (_, arn) = rest.split_once('/')?;
        Arn::parse(arn).ok()
    }

    /// The layout version record (see [`super::layout`]).
    pub(crate) fn layout(&self) -> String {
        format!("{}/layout", self.root)
    }

    /// The prefix of the key-value API's keys.
    pub(crate) fn kv_root(&self) -> String {
        format!("{}/kv/", self.root)
    }

    /// The etcd key of a key of the key-value API.
    pub(crate) fn kv(&self, key: &str) -> String {
        format!("{}/kv/{}", self.root, key)
    }

    /// The key-value API key of an etcd key under [`Keys::kv_root`].
    pub(crate) fn kv_key<'a>(&self, etcd_key: &'a [u8]) -> Option<&'a str> {
        let root = self.kv_root();
        etcd_key
            .strip_prefix(root.as_bytes())
            .and_then(|k| std::str::from_utf8(k).ok())
    }
}

/// The two retention indexes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Index {
    /// Stopped tasks and INACTIVE instances, by the time they were retired.
    Retired,
    /// Tombstones, by deletion time.
    Tombstone,
}

impl Index {
    fn as_str(self) -> &'static str {
        match self {
            Index::Retired => "retired",
            Index::Tombstone => "tombstone",
        }
    }
}

/// The end of the range of keys starting with `prefix` (etcd's convention:
/// the prefix with its last byte below 0xff incremented).
pub(crate) fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entity_keys_carry_the_kind_and_the_full_arn() {
        let keys = Keys::new("/blox/");
        let arn = Arn::parse("arn:aws:ecs:eu-west-1:111122223333:task/c1/abc").unwrap();
        assert_eq!(
            keys.entity(&arn).unwrap(),
            b"/blox/e/task/arn:aws:ecs:eu-west-1:111122223333:task/c1/abc".to_vec()
        );
        let cluster = Arn::parse("arn:aws:ecs:eu-west-1:111122223333:cluster/c1").unwrap();
        assert!(keys.entity(&cluster).is_err());
    }

    #[test]
    fn kv_keys_round_trip() {
        let keys = Keys::new("/p");
        let k = keys.kv("sched/a");
        assert_eq!(keys.kv_key(k.as_bytes()), Some("sched/a"));
        assert_eq!(keys.kv_key(b"/other/kv/x"), None);
    }

    #[test]
    fn index_entries_sort_by_time_and_name_their_entity() {
        let keys = Keys::new("/p");
        let arn = Arn::parse("arn:aws:ecs:eu-west-1:1:task/c1/abc").unwrap();
        let early = keys.index_entry(Index::Tombstone, Timestamp::from_millis(999), &arn);
        let late = keys.index_entry(Index::Tombstone, Timestamp::from_millis(1_000), &arn);
        assert!(early < late);
        assert_eq!(
            late,
            b"/p/i/tombstone/00000000000000001000/arn:aws:ecs:eu-west-1:1:task/c1/abc".to_vec()
        );
        let end = keys.index_before(Index::Tombstone, Timestamp::from_millis(1_000));
        assert!(early < end && end < late);
        assert_eq!(keys.index_arn(Index::Tombstone, &late), Some(arn.clone()));
        assert_eq!(keys.index_arn(Index::Retired, &late), None);
    }

    #[test]
    fn prefix_end_increments_the_last_byte() {
        assert_eq!(prefix_end(b"/a/"), b"/a0".to_vec());
        assert_eq!(prefix_end(&[b'a', 0xff]), b"b".to_vec());
    }
}
