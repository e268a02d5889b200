//! What a tombstone blocks, shared by both backends.
//!
//! A delete is *hard* (ECS said the entity is gone: an event, a `STOPPED`
//! or `MISSING` answer of `Describe*`, the end of a retention period) or
//! *soft* (the reconciler saw it missing from listings only, which ECS
//! keeps eventually consistent). A hard tombstone blocks its version and
//! lower ([`blocked_by_tombstone`]); a soft one only strictly lower known
//! versions ([`blocked_by_soft_tombstone`]), so ECS's own later report of
//! the deleted version still applies.

use blox_core::model::{blocked_by_soft_tombstone, blocked_by_tombstone};

/// The part of a tombstone the version rules read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TombstoneRule {
    /// The version the entity was deleted at (`None` = unknown).
    pub version: Option<u64>,
    /// Whether the deletion was soft (listing evidence alone).
    pub soft: bool,
}

impl TombstoneRule {
    /// Whether a put of version `incoming` is stale over this tombstone.
    pub(crate) fn blocks_put(&self, incoming: Option<u64>) -> bool {
        if self.soft {
            blocked_by_soft_tombstone(incoming, self.version)
        } else {
            blocked_by_tombstone(incoming, self.version)
        }
    }

    /// The tombstone a delete (at `version`, `soft` or not) leaves over this
    /// one, or `None` if the delete is stale. A hard delete of a softly
    /// deleted entity hardens its tombstone (at the higher of the two
    /// versions); otherwise only a strictly higher version raises it.
    pub(crate) fn after_delete(&self, version: Option<u64>, soft: bool) -> Option<TombstoneRule> {
        let hardens = self.soft && !soft;
        let blocked = if hardens {
            blocked_by_soft_tombstone(version, self.version)
        } else {
            blocked_by_tombstone(version, self.version)
        };
        (!blocked).then_some(TombstoneRule {
            version: version.or(self.version),
            soft,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HARD: TombstoneRule = TombstoneRule {
        version: Some(3),
        soft: false,
    };
    const SOFT: TombstoneRule = TombstoneRule {
        version: Some(3),
        soft: true,
    };

    #[test]
    fn a_soft_tombstone_lets_the_deleted_version_and_newer_through() {
        assert!(HARD.blocks_put(Some(3)));
        assert!(!SOFT.blocks_put(Some(3)));
        assert!(!SOFT.blocks_put(Some(4)));
        assert!(SOFT.blocks_put(Some(2)));
        assert!(!SOFT.blocks_put(None));
    }

    #[test]
    fn a_hard_delete_hardens_a_soft_tombstone_and_a_soft_one_never_softens_a_hard_one() {
        assert_eq!(SOFT.after_delete(Some(3), false), Some(HARD));
        assert_eq!(SOFT.after_delete(None, false), Some(HARD));
        assert_eq!(SOFT.after_delete(Some(3), true), None);
        assert_eq!(HARD.after_delete(Some(3), true), None);
        assert_eq!(HARD.after_delete(Some(3), false), None);
        assert_eq!(
            HARD.after_delete(Some(4), true),
            Some(TombstoneRule {
                version: Some(4),
                soft: true
            })
        );
    }
}
