//! Failure injection and call counting.

use std::collections::HashMap;

use crate::ports::{EcsError, SourceError};

/// The names of the operations the fake counts and can fail, as ECS and SQS
/// spell them.
pub mod operations {
    /// `ListClusters`.
    pub const LIST_CLUSTERS: &str = "ListClusters";
    /// `DescribeClusters`.
    pub const DESCRIBE_CLUSTERS: &str = "DescribeClusters";
    /// `ListContainerInstances`.
    pub const LIST_CONTAINER_INSTANCES: &str = "ListContainerInstances";
    /// `DescribeContainerInstances`.
    pub const DESCRIBE_CONTAINER_INSTANCES: &str = "DescribeContainerInstances";
    /// `ListTasks`.
    pub const LIST_TASKS: &str = "ListTasks";
    /// `DescribeTasks`.
    pub const DESCRIBE_TASKS: &str = "DescribeTasks";
    /// `StartTask`.
    pub const START_TASK: &str = "StartTask";
    /// `StopTask`.
    pub const STOP_TASK: &str = "StopTask";
    /// `DescribeTaskDefinition`.
    pub const DESCRIBE_TASK_DEFINITION: &str = "DescribeTaskDefinition";
    /// `UpdateContainerInstancesState`.
    pub const UPDATE_CONTAINER_INSTANCES_STATE: &str = "UpdateContainerInstancesState";
    /// SQS `ReceiveMessage` (the event source).
    pub const RECEIVE_MESSAGE: &str = "ReceiveMessage";
    /// SQS `DeleteMessageBatch` (the event source).
    pub const DELETE_MESSAGE_BATCH: &str = "DeleteMessageBatch";
}

/// An error the fake returns on command. A description rather than an
/// [`EcsError`] so it can be cloned and returned many times.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InjectedError {
    /// Throttling (`ThrottlingException`).
    Throttled,
    /// A failed connection.
    Transport,
    /// Not found (`ClusterNotFoundException`, ...).
    NotFound,
    /// An answer the client cannot use (a malformed response).
    InvalidResponse,
    /// Any other service error.
    Service {
        /// The error code (`ServerException`, `AccessDeniedException`, ...).
        code: String,
        /// The message.
        message: String,
    },
}

/// The transport error the fake reports.
#[derive(Debug, thiserror::Error)]
#[error("injected connection failure")]
struct InjectedTransport;

impl InjectedError {
    /// The [`EcsError`] for `operation`.
    pub fn to_ecs(&self, operation: &'static str) -> EcsError {
        match self {
            InjectedError::Throttled => EcsError::Throttled {
                operation,
                message: "Rate exceeded".into(),
            },
            InjectedError::Transport => EcsError::Transport {
                operation,
                source: Box::new(InjectedTransport),
            },
            InjectedError::NotFound => EcsError::NotFound {
                operation,
                message: "injected: not found".into(),
            },
            InjectedError::InvalidResponse => EcsError::InvalidResponse {
                operation,
                message: "injected: malformed response".into(),
            },
            InjectedError::Service { code, message } => EcsError::Service {
                operation,
                code: code.clone(),
                message: message.clone(),
            },
        }
    }

    /// The [`SourceError`] for `operation`.
    pub fn to_source(&self, operation: &'static str) -> SourceError {
        match self {
            InjectedError::Throttled => SourceError::Throttled {
                operation,
                message: "Rate exceeded".into(),
            },
            InjectedError::Transport => SourceError::Transport {
                operation,
                source: Box::new(InjectedTransport),
            },
            InjectedError::NotFound => SourceError::Service {
                operation,
                code: "AWS.SimpleQueueService.NonExistentQueue".into(),
                message: "injected: queue does not exist".into(),
            },
            InjectedError::InvalidResponse => SourceError::Service {
                operation,
                code: "InternalError".into(),
                message: "injected: malformed response".into(),
            },
            InjectedError::Service { code, message } => SourceError::Service {
                operation,
                code: code.clone(),
                message: message.clone(),
            },
        }
    }
}

/// Counts calls and decides which ones fail.
#[derive(Debug, Default)]
pub(crate) struct Failures {
    /// Calls per operation, failed ones included.
    calls: HashMap<&'static str, u64>,
    /// Operation -> (remaining failures, error).
    next: HashMap<&'static str, (u32, InjectedError)>,
    /// Operation -> error for every call (an outage).
    always: HashMap<&'static str, InjectedError>,
    /// Every operation fails with this (a whole-service outage).
    outage: Option<InjectedError>,
    /// Every n-th call (of every operation, counted together) fails:
    /// (n, calls counted so far, error).
    every: Option<(u64, u64, InjectedError)>,
}

impl Failures {
    /// Counts a call of `operation` and returns the error it must fail with, if any.
    pub(crate) fn on_call(&mut self, operation: &'static str) -> Option<InjectedError> {
        *self.calls.entry(operation).or_default() += 1;
        if let Some(e) = &self.outage {
            return Some(e.clone());
        }
        if let Some(e) = self.always.get(operation) {
            return Some(e.clone());
        }
        if let Some((left, e)) = self.next.get_mut(operation) {
            let e = e.clone();
            *left -= 1;
            if *left == 0 {
                self.next.remove(operation);
            }
            return Some(e);
        }
        if let Some((n, seen, e)) = &mut self.every {
            *seen += 1;
            if *seen % *n == 0 {
                return Some(e.clone());
            }
        }
        None
    }

    pub(crate) fn fail_every(&mut self, n: u64, error: InjectedError) {
        self.every = (n > 0).then_some((n, 0, error));
    }

    pub(crate) fn fail_next(&mut self, operation: &'static str, n: u32, error: InjectedError) {
        if n == 0 {
            self.next.remove(operation);
        } else {
            self.next.insert(operation, (n, error));
        }
    }

    pub(crate) fn fail_always(&mut self, operation: &'static str, error: InjectedError) {
        self.always.insert(operation, error);
    }

    pub(crate) fn outage(&mut self, error: Option<InjectedError>) {
        self.outage = error;
    }

    pub(crate) fn clear(&mut self) {
        self.next.clear();
        self.always.clear();
        self.outage = None;
        self.every = None;
    }

    pub(crate) fn calls(&self, operation: &str) -> u64 {
        self.calls.get(operation).copied().unwrap_or(0)
    }

    pub(crate) fn total_calls(&self) -> u64 {
        self.calls.values().sum()
    }

    pub(crate) fn reset_calls(&mut self) {
        self.calls.clear();
    }
}

/// Maps an operation name given by a caller to the fake's static name.
pub(crate) fn known_operation(name: &str) -> Option<&'static str> {
    use operations::*;
    [
        LIST_CLUSTERS,
        DESCRIBE_CLUSTERS,
        LIST_CONTAINER_INSTANCES,
        DESCRIBE_CONTAINER_INSTANCES,
        LIST_TASKS,
        DESCRIBE_TASKS,
        START_TASK,
        STOP_TASK,
        DESCRIBE_TASK_DEFINITION,
        UPDATE_CONTAINER_INSTANCES_STATE,
        RECEIVE_MESSAGE,
        DELETE_MESSAGE_BATCH,
    ]
    .into_iter()
    .find(|op| op.eq_ignore_ascii_case(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_nth_call_fails() {
        let mut f = Failures::default();
        f.fail_every(3, InjectedError::Transport);
        let failed: Vec<bool> = [operations::LIST_TASKS, operations::DESCRIBE_TASKS]
            .into_iter()
            .cycle()
            .take(7)
            .map(|op| f.on_call(op).is_some())
            .collect();
        assert_eq!(failed, [false, false, true, false, false, true, false]);
        f.clear();
        assert!((0..5).all(|_| f.on_call(operations::LIST_TASKS).is_none()));
    }

    #[test]
    fn next_n_failures_run_out_and_calls_are_counted() {
        let mut f = Failures::default();
        f.fail_next(operations::LIST_TASKS, 2, InjectedError::Throttled);
        assert!(f.on_call(operations::LIST_TASKS).is_some());
        assert!(f.on_call(operations::LIST_TASKS).is_some());
        assert!(f.on_call(operations::LIST_TASKS).is_none());
        assert!(f.on_call(operations::DESCRIBE_TASKS).is_none());
        assert_eq!(f.calls("ListTasks"), 3);
        assert_eq!(f.total_calls(), 4);
    }

    #[test]
    fn an_outage_fails_every_operation_until_cleared() {
        let mut f = Failures::default();
        f.outage(Some(InjectedError::Transport));
        assert!(f.on_call(operations::START_TASK).is_some());
        assert!(f.on_call(operations::RECEIVE_MESSAGE).is_some());
        f.clear();
        assert!(f.on_call(operations::START_TASK).is_none());
    }

    #[test]
    fn injected_throttling_is_retryable() {
        let e = InjectedError::Throttled.to_ecs(operations::LIST_TASKS);
        assert!(e.is_throttling() && e.is_retryable());
        assert_eq!(e.operation(), "ListTasks");
        assert!(
            InjectedError::Transport
                .to_source("ReceiveMessage")
                .is_retryable()
        );
    }

    #[test]
    fn operation_names_are_matched_ignoring_case() {
        assert_eq!(known_operation("listtasks"), Some(operations::LIST_TASKS));
        assert_eq!(known_operation("RunTask"), None);
    }
}
