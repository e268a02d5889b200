//! The ordering rule for states of one entity.
//!
//! ECS gives every container instance and task a `version` that increases with
//! each change; blox applies a write only if it is newer than what is stored.
//! Emulators (moto) send no version at all, so a version may be unknown:
//!
//! * a known version applies only over a strictly lower known version, or over
//!   an unknown one (an event with a version always beats one without);
//! * an unknown version applies only when nothing is stored or the stored
//!   version is unknown too; it never replaces a known version.

/// `true` when a state with version `incoming` may replace a stored state with
/// version `stored` (`None` = unknown).
///
/// ```
/// use blox_core::model::supersedes;
/// assert!(supersedes(Some(5), Some(4)));
/// assert!(!supersedes(Some(4), Some(4))); // duplicates are stale
/// assert!(supersedes(Some(1), None));     // known beats unknown
/// assert!(!supersedes(None, Some(1)));    // unknown never replaces known
/// assert!(supersedes(None, None));        // both unknown: last write wins
/// ```
pub fn supersedes(incoming: Option<u64>, stored: Option<u64>) -> bool {
    match (incoming, stored) {
        (Some(new), Some(old)) => new > old,
        (Some(_), None) => true,
        (None, None) => true,
        (None, Some(_)) => false,
    }
}

/// `true` when a tombstone left at version `tombstone` blocks a state with
/// version `incoming`: a late or duplicated state of that version or lower
/// cannot bring a deleted entity back; a strictly higher one may. An unknown
/// incoming version never resurrects a deleted entity.
pub fn blocked_by_tombstone(incoming: Option<u64>, tombstone: Option<u64>) -> bool {
    match (incoming, tombstone) {
        (Some(new), Some(old)) => new <= old,
        (Some(_), None) => false,
        (None, _) => true,
    }
}

/// `true` when a *soft* tombstone at version `tombstone` blocks a state
/// with version `incoming`. A soft tombstone records a deletion made on
/// indirect evidence (the entity went missing from ECS's eventually
/// consistent listings), so it must never block ECS's own report of the
/// deleted version: it blocks only a known version strictly lower than its
/// known version.
///
/// ```
/// use blox_core::model::blocked_by_soft_tombstone;
/// assert!(blocked_by_soft_tombstone(Some(2), Some(3)));
/// assert!(!blocked_by_soft_tombstone(Some(3), Some(3))); // ECS's report of it applies
/// assert!(!blocked_by_soft_tombstone(None, Some(3)));
/// ```
pub fn blocked_by_soft_tombstone(incoming: Option<u64>, tombstone: Option<u64>) -> bool {
    matches!((incoming, tombstone), (Some(new), Some(old)) if new < old)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn higher_known_version_wins_and_equal_is_stale() {
        assert!(supersedes(Some(2), Some(1)));
        assert!(!supersedes(Some(1), Some(2)));
        assert!(!supersedes(Some(2), Some(2)));
    }

    #[test]
    fn tombstone_blocks_equal_and_lower_but_not_higher() {
        assert!(blocked_by_tombstone(Some(3), Some(3)));
        assert!(blocked_by_tombstone(Some(2), Some(3)));
        assert!(!blocked_by_tombstone(Some(4), Some(3)));
        assert!(blocked_by_tombstone(None, Some(3)));
        assert!(blocked_by_tombstone(None, None));
        assert!(!blocked_by_tombstone(Some(1), None));
    }
}
