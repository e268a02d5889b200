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
    /// non-idempotent call (`StartTask`) is retried only when the service
    /// refused it (throttling), never after a transport error, since the
    /// first attempt may have taken effect.
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
