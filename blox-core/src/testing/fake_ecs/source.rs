//! [`EventSource`] over the fake's event queue (long polling with Notify).

use std::time::Duration;

use async_trait::async_trait;
use tokio::time::Instant;

use super::FakeEcs;
use super::failures::operations as op;
use super::queue::MAX_BATCH;
use crate::ports::{DeleteFailure, EventSource, Message, SourceError};

#[async_trait]
impl EventSource for FakeEcs {
    async fn receive(&self, max: usize, wait: Duration) -> Result<Vec<Message>, SourceError> {
        let operation = op::RECEIVE_MESSAGE;
        if let Some(e) = self.lock().failures.on_call(operation) {
            return Err(e.to_source(operation));
        }
        if max == 0 || max > MAX_BATCH {
            return Err(SourceError::InvalidRequest {
                operation,
                message: format!("max must be between 1 and {MAX_BATCH}, got {max}"),
            });
        }
        let deadline = Instant::now() + wait;
        loop {
            // Register for wake-ups before looking, so no push is missed.
            let notified = self.shared.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let now = Instant::now();
            let received = self.lock().queue.receive(now, max);
            if !received.messages.is_empty() {
                return Ok(received.messages);
            }
            if now >= deadline {
                return Ok(Vec::new());
            }
            let until = received.next_visible.map_or(deadline, |v| v.min(deadline));
            let _ = tokio::time::timeout_at(until, notified).await;
        }
    }

    async fn delete(&self, receipt_handles: &[String]) -> Result<Vec<DeleteFailure>, SourceError> {
        let operation = op::DELETE_MESSAGE_BATCH;
        let mut st = self.lock();
        if let Some(e) = st.failures.on_call(operation) {
            return Err(e.to_source(operation));
        }
        if receipt_handles.is_empty() || receipt_handles.len() > MAX_BATCH {
            return Err(SourceError::InvalidRequest {
                operation,
                message: format!("between 1 and {MAX_BATCH} receipt handles"),
            });
        }
        Ok(st.queue.delete(receipt_handles))
    }
}
