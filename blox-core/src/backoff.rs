//! Exponential backoff with full jitter, for loops that wait on something
//! that is down (the store, the event source, ECS).

use std::time::Duration;

use rand::Rng;

/// Exponential backoff: each [`Backoff::next_delay`] doubles the ceiling up
/// to `cap` and returns a random delay below it (full jitter), so many
/// waiters do not retry in step. [`Backoff::reset`] after a success.
#[derive(Debug, Clone)]
pub struct Backoff {
    start: Duration,
    cap: Duration,
    ceiling: Duration,
    jitter: bool,
}

impl Backoff {
    /// Backoff from `start` doubling up to `cap`, with full jitter.
    pub fn new(start: Duration, cap: Duration) -> Self {
        Backoff {
            start,
            cap,
            ceiling: start,
            jitter: true,
        }
    }

    /// The same without jitter (each delay is the ceiling itself): for
    /// schedules that must be predictable, such as per-instance crash backoff.
    pub fn without_jitter(mut self) -> Self {
        self.jitter = false;
        self
    }

    /// The delay to wait now; the next one will be up to twice as long.
    pub fn next_delay(&mut self) -> Duration {
        let ceiling = self.ceiling;
        self.ceiling = (self.ceiling * 2).min(self.cap);
        if !self.jitter || ceiling.is_zero() {
            return ceiling;
        }
        let ms = u64::try_from(ceiling.as_millis())
            .unwrap_or(u64::MAX)
            .max(1);
        // At least half the ceiling, so a retry loop still backs off.
        Duration::from_millis(rand::rng().random_range(ms / 2..=ms))
    }

    /// Back to the first delay.
    pub fn reset(&mut self) {
        self.ceiling = self.start;
    }

    /// The ceiling of the next delay.
    pub fn ceiling(&self) -> Duration {
        self.ceiling
    }
}

impl Default for Backoff {
    /// 100 ms doubling to 10 s.
    fn default() -> Self {
        Backoff::new(Duration::from_millis(100), Duration::from_secs(10))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_up_to_the_cap_and_stay_within_the_ceiling() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_millis(1000));
        let mut ceilings = Vec::new();
        for _ in 0..6 {
            let c = b.ceiling();
            let d = b.next_delay();
            assert!(d <= c && d >= c / 2, "{d:?} within ({:?}, {c:?}]", c / 2);
            ceilings.push(c.as_millis());
        }
        assert_eq!(ceilings, [100, 200, 400, 800, 1000, 1000]);
        b.reset();
        assert_eq!(b.ceiling(), Duration::from_millis(100));
    }

    #[test]
    fn without_jitter_the_schedule_is_exact() {
        let mut b = Backoff::new(Duration::from_secs(1), Duration::from_secs(300)).without_jitter();
        let got: Vec<u64> = (0..10).map(|_| b.next_delay().as_secs()).collect();
        assert_eq!(got, [1, 2, 4, 8, 16, 32, 64, 128, 256, 300]);
    }
}
