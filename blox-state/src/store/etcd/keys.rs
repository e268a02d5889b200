//! The key layout of the etcd backend.
//!
//! ```text
//! {prefix}/e/task/{task ARN}                  a task (or its tombstone)
//! {prefix}/e/instance/{container instance ARN} an instance (or its tombstone)
//! {prefix}/kv/{key}                           the key-value API
//! {prefix}/layout                             the layout version (see super::layout)
//! ```
//! Entities are keyed by their full ARN, which is unique across partitions,
//! regions and accounts, so clusters of the same name never collide.

use blox_core::model::{Arn, EntityKind};

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
    fn prefix_end_increments_the_last_byte() {
        assert_eq!(prefix_end(b"/a/"), b"/a0".to_vec());
        assert_eq!(prefix_end(&[b'a', 0xff]), b"b".to_vec());
    }
}
