//! The AWS operations the adapters call, each with the IAM action that
//! authorizes it.

/// One AWS API operation as an adapter calls it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Operation {
    /// The API name (`ListTasks`, `DeleteMessageBatch`), used in errors and logs.
    pub name: &'static str,
    /// The IAM action that authorizes it (`ecs:ListTasks`). Not always
    /// `service:name`: `DeleteMessageBatch` is authorized by `sqs:DeleteMessage`.
    pub iam_action: &'static str,
    /// Whether repeating the call after a lost answer is harmless. A
    /// non-idempotent call (`StartTask`) is never retried by the adapter:
    /// the first attempt may have taken effect, and its caller retries a
    /// refused (throttled) one itself, under its own checks.
    pub idempotent: bool,
}

impl Operation {
    /// An idempotent operation.
    pub(crate) const fn idempotent(name: &'static str, iam_action: &'static str) -> Self {
        Operation {
            name,
            iam_action,
            idempotent: true,
        }
    }

    /// A non-idempotent operation.
    pub(crate) const fn non_idempotent(name: &'static str, iam_action: &'static str) -> Self {
        Operation {
            name,
            iam_action,
            idempotent: false,
        }
    }
}

/// Checks every call an adapter makes against the IAM actions it declares
/// and, in unit tests, records the actions called, so a test can compare
/// what the code calls with what the deployment policy grants.
#[derive(Debug, Clone, Default)]
pub(crate) struct CallLog {
    #[cfg(test)]
    called: std::sync::Arc<std::sync::Mutex<std::collections::BTreeSet<&'static str>>>,
}

impl CallLog {
    /// Notes a call of `op` by `adapter`, whose declared actions are `declared`.
    pub(crate) fn note(&self, op: Operation, declared: &[&str], adapter: &str) {
        debug_assert!(
            declared.contains(&op.iam_action),
            "{} is not declared in {adapter}::IAM_ACTIONS",
            op.iam_action
        );
        #[cfg(test)]
        self.called
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(op.iam_action);
    }

    /// The IAM actions called so far.
    #[cfg(test)]
    pub(crate) fn actions(&self) -> std::collections::BTreeSet<&'static str> {
        self.called
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}
