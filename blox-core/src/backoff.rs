//! Exponential backoff with jitter, for loops that wait on something that
//! is down (the store, the event source, ECS) and for retried calls.

use std::time::Duration;

use rand::Rng;

/// How a delay is drawn below its ceiling.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Jitter {
    /// Uniform between half the ceiling and the ceiling: waiters spread out
    /// and still back off (the default).
    #[default]
    Equal,
    /// Uniform between zero and the ceiling ("full jitter"): the widest
    /// spread, for many clients throttled at once.
    Full,
    /// The ceiling itself: for schedules that must be predictable.
    None,
}

impl Jitter {
    /// A delay below `ceiling` drawn as this jitter says.
    pub fn draw(self, ceiling: Duration) -> Duration {
        let nanos = u64::try_from(ceiling.as_nanos()).unwrap_or(u64::MAX);
        if nanos == 0 {
            return ceiling;
        }
        let low = match self {
            Jitter::None => return ceiling,
            Jitter::Equal => nanos / 2,
            Jitter::Full => 0,
        };
        Duration::from_nanos(crate::random::with_rng(|r| r.random_range(low..=nanos)))
    }
}

/// The ceiling of delay `n` (0 = the first) of a backoff from `start`
/// doubling up to `cap`.
pub fn ceiling(start: Duration, cap: Duration, n: u32) -> Duration {
    let factor = 2u32.checked_pow(n).unwrap_or(u32::MAX);
    start.checked_mul(factor).unwrap_or(Duration::MAX).min(cap)
}

/// Exponential backoff: each [`Backoff::next_delay`] doubles the ceiling up
/// to `cap` and returns a random delay below it ([`Jitter::Equal`] unless
/// told otherwise), so many waiters do not retry in step.
/// [`Backoff::reset`] after a success.
#[derive(Debug, Clone)]
pub struct Backoff {
    start: Duration,
    cap: Duration,
    ceiling: Duration,
    jitter: Jitter,
}

impl Backoff {
    /// Backoff from `start` doubling up to `cap`, with [`Jitter::Equal`].
    pub fn new(start: Duration, cap: Duration) -> Self {
        Backoff {
            start,
            cap,
            ceiling: start.min(cap),
            jitter: Jitter::Equal,
        }
    }

    /// The same with another jitter.
    pub fn with_jitter(mut self, jitter: Jitter) -> Self {
        self.jitter = jitter;
        self
    }

    /// The same without jitter (each delay is the ceiling itself): for
    /// schedules that must be predictable, such as per-instance crash backoff.
    pub fn without_jitter(self) -> Self {
        self.with_jitter(Jitter::None)
    }

    /// The delay to wait now; the next one will be up to twice as long.
    pub fn next_delay(&mut self) -> Duration {
        let ceiling = self.ceiling;
        self.ceiling = ceiling.saturating_mul(2).min(self.cap);
        self.jitter.draw(ceiling)
    }

    /// Back to the first delay.
    pub fn reset(&mut self) {
        self.ceiling = self.start.min(self.cap);
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
    fn full_jitter_spans_zero_to_the_ceiling() {
        let ceiling = Duration::from_millis(800);
        let draws: Vec<Duration> = (0..400).map(|_| Jitter::Full.draw(ceiling)).collect();
        assert!(draws.iter().all(|d| *d <= ceiling));
        assert!(draws.iter().any(|d| *d < ceiling / 2), "never below half");
        assert_eq!(Jitter::Full.draw(Duration::ZERO), Duration::ZERO);
    }

    #[test]
    fn the_nth_ceiling_matches_the_running_backoff() {
        let (start, cap) = (Duration::from_millis(50), Duration::from_secs(1));
        let mut b = Backoff::new(start, cap).without_jitter();
        for n in 0..40 {
            assert_eq!(b.next_delay(), ceiling(start, cap, n), "delay {n}");
        }
    }

    #[test]
    fn without_jitter_the_schedule_is_exact() {
        let mut b = Backoff::new(Duration::from_secs(1), Duration::from_secs(300)).without_jitter();
        let got: Vec<u64> = (0..10).map(|_| b.next_delay().as_secs()).collect();
        assert_eq!(got, [1, 2, 4, 8, 16, 32, 64, 128, 256, 300]);
    }
}
