//! A client-side token bucket, so a burst of API calls (a reconcile of a large
//! cluster) is spread out instead of hitting the service's own throttling.
//!
//! Written here rather than taken from `governor`, which waits on real time:
//! this bucket waits on tokio's clock, which paused-time tests and the
//! simulation need.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// The rate of a [`RateLimiter`]: `per_second` tokens are added each second,
/// up to `burst` tokens saved.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimit {
    /// Sustained calls per second; must be positive. `f64::INFINITY` disables limiting.
    pub per_second: f64,
    /// Calls that may be made at once after a quiet period (at least 1).
    pub burst: u32,
}

impl RateLimit {
    /// No limit at all.
    pub const UNLIMITED: RateLimit = RateLimit {
        per_second: f64::INFINITY,
        burst: u32::MAX,
    };
}

impl Default for RateLimit {
    /// 10 calls per second with bursts of 20: well below the ECS API's own
    /// refill rates for the describe and list calls blox makes.
    fn default() -> Self {
        RateLimit {
            per_second: 10.0,
            burst: 20,
        }
    }
}

#[derive(Debug)]
struct Bucket {
    /// Saved tokens; negative when callers have reserved tokens not yet refilled.
    tokens: f64,
    /// When `tokens` was last brought up to date.
    updated: Instant,
}

/// A token bucket shared by all calls of one adapter (and its clones).
///
/// Callers reserve a token and sleep until it is due, so waiting callers are
/// served in arrival order; a caller dropped while it waits (a timeout, a
/// shutdown) gives its token back. It uses tokio's clock, so tests can run
/// with paused time.
#[derive(Debug)]
pub struct RateLimiter {
    limit: RateLimit,
    bucket: Mutex<Bucket>,
}

impl RateLimiter {
    /// A limiter that starts with a full bucket.
    pub fn new(limit: RateLimit) -> Self {
        let limit = RateLimit {
            per_second: if limit.per_second > 0.0 {
                limit.per_second
            } else {
                f64::MIN_POSITIVE
            },
            burst: limit.burst.max(1),
        };
        RateLimiter {
            bucket: Mutex::new(Bucket {
                tokens: f64::from(limit.burst),
                updated: Instant::now(),
            }),
            limit,
        }
    }

    /// The limit this limiter enforces.
    pub fn limit(&self) -> RateLimit {
        self.limit
    }

    /// Takes one token, waiting until one is available. Cancel-safe: when the
    /// future is dropped before it completes, the reserved token is returned.
    pub async fn acquire(&self) {
        let wait = self.reserve();
        if wait.is_zero() {
            return;
        }
        let reservation = Reservation {
            limiter: self,
            used: false,
        };
        tokio::time::sleep(wait).await;
        reservation.use_token();
    }

    /// The bucket, brought up to date with the tokens refilled since its
    /// last update.
    fn refilled(&self) -> std::sync::MutexGuard<'_, Bucket> {
        let now = Instant::now();
        // A poisoned lock only means another caller panicked mid-update of two
        // plain numbers; the state is still usable.
        let mut b = self
            .bucket
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let elapsed = now.saturating_duration_since(b.updated).as_secs_f64();
        b.tokens = (b.tokens + elapsed * self.limit.per_second).min(f64::from(self.limit.burst));
        b.updated = now;
        b
    }

    /// Reserves a token and returns how long to wait until it is due.
    fn reserve(&self) -> Duration {
        if self.limit.per_second.is_infinite() {
            return Duration::ZERO;
        }
        let mut b = self.refilled();
        b.tokens -= 1.0;
        if b.tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::try_from_secs_f64(-b.tokens / self.limit.per_second).unwrap_or(Duration::MAX)
        }
    }
}

/// A token reserved by a waiting caller: returned to the bucket if the
/// caller goes away before its turn.
struct Reservation<'a> {
    limiter: &'a RateLimiter,
    used: bool,
}

impl Reservation<'_> {
    /// The caller's turn came: the token is spent.
    fn use_token(mut self) {
        self.used = true;
    }
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        if !self.used {
            let mut b = self.limiter.refilled();
            b.tokens = (b.tokens + 1.0).min(f64::from(self.limiter.limit.burst));
        }
    }
}

impl Default for RateLimiter {
    fn default() -> Self {
        RateLimiter::new(RateLimit::default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_full_bucket_allows_the_burst_without_waiting() {
        let limiter = RateLimiter::new(RateLimit {
            per_second: 2.0,
            burst: 5,
        });
        let start = Instant::now();
        for _ in 0..5 {
            limiter.acquire().await;
        }
        assert_eq!(start.elapsed(), Duration::ZERO);
    }

    #[tokio::test(start_paused = true)]
    async fn calls_beyond_the_burst_are_spread_at_the_rate() {
        let limiter = RateLimiter::new(RateLimit {
            per_second: 4.0,
            burst: 4,
        });
        let start = Instant::now();
        for _ in 0..12 {
            limiter.acquire().await;
        }
        // 4 from the bucket, 8 more at 4 per second.
        let elapsed = start.elapsed();
        assert!(elapsed >= Duration::from_millis(1990), "{elapsed:?}");
        assert!(elapsed <= Duration::from_millis(2010), "{elapsed:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn concurrent_callers_share_one_bucket() {
        let limiter = std::sync::Arc::new(RateLimiter::new(RateLimit {
            per_second: 10.0,
            burst: 1,
        }));
        let start = Instant::now();
        let tasks: Vec<_> = (0..10)
            .map(|_| {
                let l = limiter.clone();
                tokio::spawn(async move { l.acquire().await })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        let elapsed = start.elapsed();
        assert!(elapsed >= Duration::from_millis(890), "{elapsed:?}");
        assert!(elapsed <= Duration::from_millis(910), "{elapsed:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn the_bucket_refills_while_idle_but_not_beyond_the_burst() {
        let limiter = RateLimiter::new(RateLimit {
            per_second: 1.0,
            burst: 2,
        });
        limiter.acquire().await;
        limiter.acquire().await;
        tokio::time::sleep(Duration::from_secs(60)).await;
        let start = Instant::now();
        limiter.acquire().await;
        limiter.acquire().await;
        assert_eq!(start.elapsed(), Duration::ZERO);
        limiter.acquire().await;
        assert!(start.elapsed() >= Duration::from_millis(990));
    }

    #[tokio::test(start_paused = true)]
    async fn a_caller_cancelled_while_waiting_gives_its_token_back() {
        let limiter = RateLimiter::new(RateLimit {
            per_second: 1.0,
            burst: 1,
        });
        let start = Instant::now();
        limiter.acquire().await;
        // This caller reserves the next token (due at 1 s) and gives up at 0.1 s.
        let gave_up = tokio::time::timeout(Duration::from_millis(100), limiter.acquire()).await;
        assert!(gave_up.is_err(), "the second call should have had to wait");
        // The token it reserved is free again: the next caller gets it when
        // it is due (1 s), not a second later.
        limiter.acquire().await;
        let elapsed = start.elapsed();
        assert!(elapsed <= Duration::from_millis(1010), "{elapsed:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn an_unlimited_limiter_never_waits() {
        let limiter = RateLimiter::new(RateLimit::UNLIMITED);
        let start = Instant::now();
        for _ in 0..10_000 {
            limiter.acquire().await;
        }
        assert_eq!(start.elapsed(), Duration::ZERO);
    }
}
