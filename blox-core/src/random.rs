//! The randomness blox draws (backoff jitter, deployment ids and tokens):
//! the operating system's by default, or, on a thread that a simulation
//! seeded with [`seed_this_thread`], a generator replayed from that seed,
//! so a seeded run on a single-threaded runtime repeats itself exactly.

use std::cell::RefCell;

use rand::rngs::StdRng;
use rand::{RngCore, SeedableRng};

thread_local! {
    static SEEDED: RefCell<Option<StdRng>> = const { RefCell::new(None) };
}

/// Draws from this thread's seeded generator, or from the OS-seeded one.
pub fn with_rng<R>(f: impl FnOnce(&mut dyn RngCore) -> R) -> R {
    SEEDED.with(|cell| match cell.borrow_mut().as_mut() {
        Some(rng) => f(rng),
        None => f(&mut rand::rng()),
    })
}

/// Until the guard drops, this thread draws from a generator seeded with
/// `seed`.
#[must_use = "the seed holds only while the guard lives"]
pub fn seed_this_thread(seed: u64) -> SeedGuard {
    SEEDED.with(|cell| *cell.borrow_mut() = Some(StdRng::seed_from_u64(seed)));
    SeedGuard(())
}

/// Restores the OS-seeded generator when dropped.
#[derive(Debug)]
pub struct SeedGuard(());

impl Drop for SeedGuard {
    fn drop(&mut self) {
        SEEDED.with(|cell| *cell.borrow_mut() = None);
    }
}

#[cfg(test)]
mod tests {
    use rand::Rng;

    use super::*;

    fn draw() -> u64 {
        with_rng(|r| r.random_range(0..u64::MAX))
    }

    #[test]
    fn a_seeded_thread_repeats_its_draws() {
        let first: Vec<u64> = {
            let _g = seed_this_thread(9);
            (0..4).map(|_| draw()).collect()
        };
        let again: Vec<u64> = {
            let _g = seed_this_thread(9);
            (0..4).map(|_| draw()).collect()
        };
        assert_eq!(first, again);
        assert_ne!(draw(), draw(), "unseeded again after the guard");
    }
}
