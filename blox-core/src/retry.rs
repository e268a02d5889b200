//! Retries of one call with exponential backoff and full jitter.
//!
//! The SDK's own retries are disabled in the AWS adapters; this is their
//! only retry loop, so its behaviour is explicit and testable with paused
//! tokio time. The reconciler uses it too, to retry a single failed call of
//! a reconcile (a list page, a describe batch) before giving up on a cluster.

use std::future::Future;
use std::time::Duration;

use crate::backoff::{self, Backoff, Jitter};

/// How often and how patiently a throttled or unanswered call is retried.
///
/// The wait before retry `n` (0-based) is drawn uniformly from
/// `[0, min(max_delay, base_delay * 2^n)]` ("full jitter"), so many clients
/// throttled at once do not retry in lockstep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in total, the first included (1 = no retry).
    pub max_attempts: u32,
    /// The ceiling of the first backoff.
    pub base_delay: Duration,
    /// The largest ceiling of any backoff.
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    /// 5 attempts, backoff ceilings of 200 ms, 400 ms, 800 ms, 1.6 s (capped at 20 s).
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 5,
            base_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(20),
        }
    }
}

impl RetryPolicy {
    /// A policy that makes one attempt and never retries.
    pub const NONE: RetryPolicy = RetryPolicy {
        max_attempts: 1,
        base_delay: Duration::ZERO,
        max_delay: Duration::ZERO,
    };

    /// The upper bound of the wait before retry `retry` (0 = the first retry).
    pub fn backoff_ceiling(&self, retry: u32) -> Duration {
        backoff::ceiling(self.base_delay, self.max_delay, retry)
    }

    /// A random wait before retry `retry`, uniform in `[0, backoff_ceiling(retry)]`.
    pub fn backoff(&self, retry: u32) -> Duration {
        Jitter::Full.draw(self.backoff_ceiling(retry))
    }

    /// Runs `attempt` until it succeeds, fails with an error `retryable`
    /// rejects, or the attempts run out (the last error is returned). Waits
    /// with `tokio::time::sleep`, so paused test time and a simulation's
    /// clock drive it.
    pub async fn run<T, E, F, Fut>(
        &self,
        operation: &str,
        mut attempt: F,
        retryable: impl Fn(&E) -> bool,
    ) -> Result<T, E>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, E>>,
        E: std::fmt::Display,
    {
        let mut retry = 0u32;
        let mut waits = Backoff::new(self.base_delay, self.max_delay).with_jitter(Jitter::Full);
        loop {
            match attempt().await {
                Ok(v) => return Ok(v),
                Err(e) if retry + 1 < self.max_attempts && retryable(&e) => {
                    let wait = waits.next_delay();
                    tracing::debug!(operation, attempt = retry + 1, ?wait, error = %e, "retrying");
                    tokio::time::sleep(wait).await;
                    retry += 1;
                }
                Err(e) => return Err(e),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[test]
    fn backoff_ceilings_double_up_to_the_cap() {
        let p = RetryPolicy {
            max_attempts: 10,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(1000),
        };
        let ceilings: Vec<_> = (0..6).map(|n| p.backoff_ceiling(n).as_millis()).collect();
        assert_eq!(ceilings, [100, 200, 400, 800, 1000, 1000]);
        assert_eq!(p.backoff_ceiling(200), Duration::from_millis(1000));
    }

    #[test]
    fn jittered_backoff_stays_within_its_ceiling_and_varies() {
        let p = RetryPolicy::default();
        let draws: Vec<_> = (0..200).map(|_| p.backoff(3)).collect();
        assert!(draws.iter().all(|d| *d <= p.backoff_ceiling(3)));
        let first = draws[0];
        assert!(draws.iter().any(|d| *d != first), "no jitter");
    }

    #[tokio::test(start_paused = true)]
    async fn retries_retryable_errors_until_success() {
        let calls = AtomicU32::new(0);
        let out: Result<u32, String> = RetryPolicy::default()
            .run(
                "Op",
                || async {
                    let n = calls.fetch_add(1, Ordering::SeqCst);
                    if n < 3 { Err("busy".to_owned()) } else { Ok(n) }
                },
                |_| true,
            )
            .await;
        assert_eq!(out, Ok(3));
        assert_eq!(calls.load(Ordering::SeqCst), 4);
    }

    #[tokio::test(start_paused = true)]
    async fn gives_up_after_max_attempts_with_the_last_error() {
        let calls = AtomicU32::new(0);
        let policy = RetryPolicy {
            max_attempts: 3,
            ..RetryPolicy::default()
        };
        let out: Result<(), String> = policy
            .run(
                "Op",
                || async { Err(format!("busy {}", calls.fetch_add(1, Ordering::SeqCst))) },
                |_| true,
            )
            .await;
        assert_eq!(out, Err("busy 2".to_owned()));
        assert_eq!(calls.load(Ordering::SeqCst), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn non_retryable_errors_return_at_once() {
        let calls = AtomicU32::new(0);
        let out: Result<(), String> = RetryPolicy::default()
            .run(
                "Op",
                || async {
                    calls.fetch_add(1, Ordering::SeqCst);
                    Err("denied".to_owned())
                },
                |e| e != "denied",
            )
            .await;
        assert!(out.is_err());
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn total_wait_is_bounded_by_the_sum_of_ceilings() {
        let policy = RetryPolicy {
            max_attempts: 4,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(250),
        };
        let start = tokio::time::Instant::now();
        let _: Result<(), String> = policy
            .run("Op", || async { Err("x".to_owned()) }, |_| true)
            .await;
        // Ceilings 100 + 200 + 250 ms.
        assert!(start.elapsed() <= Duration::from_millis(551));
    }
}
