//! Retrying etcd requests that failed because a member was unreachable, and
//! translating etcd-client's errors into [`StoreError`].
//!
//! etcd-client balances requests over all configured endpoints and keeps
//! sending some of them to a member that has died, so a request failing with
//! `Unavailable` or a transport error is retried (bounded attempts, doubling
//! back-off): the next attempt usually reaches a live member. Retrying a
//! write whose response was lost is safe: every write is a compare-and-swap,
//! so a duplicate fails its compare and the caller re-reads.

use std::future::Future;
use std::time::Duration;

use blox_core::backoff::Backoff;

use crate::store::StoreError;

/// The longest wait between two attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(1);

/// etcd-client's error, wrapped so that its cause (the gRPC status, the
/// transport or I/O error) is reachable through `source()`.
#[derive(Debug)]
pub struct EtcdClientError(pub etcd_client::Error);

impl std::fmt::Display for EtcdClientError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "etcd: {}", self.0)
    }
}

impl std::error::Error for EtcdClientError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.0 {
            etcd_client::Error::GRpcStatus(s) => Some(s),
            etcd_client::Error::TransportError(e) => Some(e),
            etcd_client::Error::IoError(e) => Some(e),
            etcd_client::Error::InvalidUri(e) => Some(e),
            _ => None,
        }
    }
}

/// gRPC status codes we look at (numeric, as `tonic::Code` converts to `i32`).
mod code {
    pub const CANCELLED: i32 = 1;
    pub const UNKNOWN: i32 = 2;
    pub const DEADLINE_EXCEEDED: i32 = 4;
    pub const RESOURCE_EXHAUSTED: i32 = 8;
    pub const UNAVAILABLE: i32 = 14;
}

/// How a failed request should be handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Failure {
    /// The member could not be reached (or lost its leader): try again.
    Transient,
    /// The requested revision has been compacted.
    Compacted,
    /// The requested revision is in the future.
    Future,
    /// etcd refuses work for lack of capacity (`NOSPACE` alarm, too many
    /// requests): back-pressure, for the caller to wait out, not to retry
    /// at once.
    Exhausted,
    /// Anything else: give up.
    Permanent,
}

/// Classifies an etcd-client error.
pub(crate) fn classify(e: &etcd_client::Error) -> Failure {
    match e {
        etcd_client::Error::TransportError(_) | etcd_client::Error::IoError(_) => {
            Failure::Transient
        }
        etcd_client::Error::GRpcStatus(s) => {
            let c = i32::from(s.code());
            let msg = s.message();
            if msg.contains("required revision has been compacted") {
                Failure::Compacted
            } else if msg.contains("future revision") {
                Failure::Future
            } else if c == code::RESOURCE_EXHAUSTED && !msg.contains("larger than max") {
                // "mvcc: database space exceeded" (the NOSPACE alarm), "too
                // many requests"; a response over gRPC's size limit is the
                // same code but permanent.
                Failure::Exhausted
            } else if c == code::UNAVAILABLE
                || c == code::DEADLINE_EXCEEDED
                || c == code::CANCELLED
                || (c == code::UNKNOWN
                    && ["transport", "connection", "broken pipe", "h2", "reset"]
                        .iter()
                        .any(|w| msg.contains(w)))
            {
                Failure::Transient
            } else {
                // Including OUT_OF_RANGE for other reasons, permission and
                // request-size errors.
                Failure::Permanent
            }
        }
        etcd_client::Error::WatchError(_) => Failure::Transient,
        _ => Failure::Permanent,
    }
}

/// Converts an etcd-client error into a store error.
pub(crate) fn to_store_error(what: &str, e: etcd_client::Error) -> StoreError {
    match classify(&e) {
        Failure::Transient => StoreError::Unavailable {
            message: format!("{what}: {e}"),
            source: Some(Box::new(EtcdClientError(e))),
        },
        Failure::Exhausted => StoreError::Exhausted {
            message: format!("{what}: {e}"),
            source: Some(Box::new(EtcdClientError(e))),
        },
        _ => StoreError::Backend {
            message: format!("{what}: {e}"),
            source: Some(Box::new(EtcdClientError(e))),
        },
    }
}

/// The retry policy of a store.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RetryPolicy {
    /// Attempts per request (at least 1).
    pub attempts: u32,
    /// The first back-off; doubled after each failure up to 1 s, each wait
    /// drawn between half that and that (so clients do not retry in step).
    pub backoff: Duration,
    /// Deadline of one attempt.
    pub timeout: Duration,
}

/// An attempt's failure: the client's error, or our per-attempt deadline.
#[derive(Debug)]
pub(crate) enum AttemptError {
    /// etcd-client failed.
    Client(etcd_client::Error),
    /// The attempt exceeded its deadline.
    TimedOut,
}

impl RetryPolicy {
    /// Runs `attempt` until it succeeds, fails permanently, or the attempts
    /// run out (then [`StoreError::Unavailable`]).
    pub(crate) async fn run<T, F, Fut>(&self, what: &str, mut attempt: F) -> Result<T, StoreError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, etcd_client::Error>>,
    {
        match self.run_raw(&mut attempt).await {
            Ok(v) => Ok(v),
            Err(AttemptError::Client(e)) => Err(to_store_error(what, e)),
            Err(AttemptError::TimedOut) => Err(StoreError::Unavailable {
                message: format!("{what}: no etcd member answered within {:?}", self.timeout),
                source: None,
            }),
        }
    }

    /// Like [`RetryPolicy::run`], returning the last raw error (so the caller
    /// can recognise compaction).
    pub(crate) async fn run_raw<T, F, Fut>(&self, attempt: &mut F) -> Result<T, AttemptError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, etcd_client::Error>>,
    {
        let mut backoff = Backoff::new(self.backoff, MAX_BACKOFF);
        let attempts = self.attempts.max(1);
        let mut n = 0;
        loop {
            n += 1;
            let err = match tokio::time::timeout(self.timeout, attempt()).await {
                Ok(Ok(v)) => return Ok(v),
                Ok(Err(e)) if classify(&e) == Failure::Transient => AttemptError::Client(e),
                Ok(Err(e)) => return Err(AttemptError::Client(e)),
                Err(_) => AttemptError::TimedOut,
            };
            if n >= attempts {
                return Err(err);
            }
            tracing::debug!(attempt = n, error = ?err, "etcd request failed; retrying");
            tokio::time::sleep(backoff.next_delay()).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    fn policy(attempts: u32) -> RetryPolicy {
        RetryPolicy {
            attempts,
            backoff: Duration::from_millis(1),
            timeout: Duration::from_secs(5),
        }
    }

    #[tokio::test]
    async fn transient_failures_are_retried_until_success() {
        let calls = AtomicU32::new(0);
        let out = policy(5)
            .run("get", || {
                let n = calls.fetch_add(1, Ordering::SeqCst);
                async move {
                    if n < 2 {
                        Err(etcd_client::Error::IoError(std::io::Error::other(
                            "refused",
                        )))
                    } else {
                        Ok(n)
                    }
                }
            })
            .await
            .unwrap();
        assert_eq!(out, 2);
    }

    #[tokio::test]
    async fn exhausted_retries_report_unavailable() {
        let err = policy(3)
            .run("get", || async {
                Err::<(), _>(etcd_client::Error::IoError(std::io::Error::other(
                    "refused",
                )))
            })
            .await
            .unwrap_err();
        assert!(err.is_unavailable(), "{err}");
        assert!(std::error::Error::source(&err).is_some());
    }

    #[test]
    fn resource_exhausted_is_back_pressure_except_for_oversized_messages() {
        let status = |msg: &str| {
            etcd_client::Error::GRpcStatus(tonic::Status::new(tonic::Code::ResourceExhausted, msg))
        };
        for msg in [
            "etcdserver: mvcc: database space exceeded",
            "etcdserver: too many requests",
        ] {
            assert_eq!(classify(&status(msg)), Failure::Exhausted, "{msg}");
            let err = to_store_error("writing", status(msg));
            assert!(err.is_exhausted() && err.is_unavailable(), "{err}");
        }
        let big = status("grpc: received message larger than max (5000000 vs. 4194304)");
        assert_eq!(classify(&big), Failure::Permanent);
    }

    #[tokio::test]
    async fn permanent_failures_are_not_retried() {
        let calls = AtomicU32::new(0);
        let err = policy(5)
            .run("get", || {
                calls.fetch_add(1, Ordering::SeqCst);
                async { Err::<(), _>(etcd_client::Error::InvalidArgs("bad".into())) }
            })
            .await
            .unwrap_err();
        assert!(!err.is_unavailable());
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }
}
