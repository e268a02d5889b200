//! The queue of emitted events, with SQS-like delivery: a received message is
//! invisible for the visibility timeout and comes back unless deleted; each
//! delivery has its own receipt handle and increases the receive count.

use std::collections::BTreeMap;
use std::time::Duration;

use tokio::time::Instant;

use crate::ports::{DeleteFailure, Message};

/// SQS's limit on messages per receive and per delete batch.
pub(crate) const MAX_BATCH: usize = 10;

const RECEIPT_PREFIX: &str = "fake-rh-";

#[derive(Debug)]
struct Queued {
    body: String,
    invisible_until: Option<Instant>,
    receive_count: u32,
}

/// The queued events.
#[derive(Debug)]
pub(crate) struct EventQueue {
    next_seq: u64,
    messages: BTreeMap<u64, Queued>,
    visibility: Duration,
}

/// What a receive found.
pub(crate) struct Received {
    /// The messages now in flight.
    pub(crate) messages: Vec<Message>,
    /// When the earliest in-flight message becomes visible again, if none was ready.
    pub(crate) next_visible: Option<Instant>,
}

impl EventQueue {
    pub(crate) fn new(visibility: Duration) -> Self {
        EventQueue {
            next_seq: 0,
            messages: BTreeMap::new(),
            visibility,
        }
    }

    /// Appends a message body.
    pub(crate) fn push(&mut self, body: String) {
        self.next_seq += 1;
        self.messages.insert(
            self.next_seq,
            Queued {
                body,
                invisible_until: None,
                receive_count: 0,
            },
        );
    }

    /// Messages not yet deleted (visible or in flight).
    pub(crate) fn len(&self) -> usize {
        self.messages.len()
    }

    /// Removes every message and returns the bodies, oldest first.
    pub(crate) fn take_all(&mut self) -> Vec<String> {
        std::mem::take(&mut self.messages)
            .into_values()
            .map(|q| q.body)
            .collect()
    }

    /// Hands out up to `max` visible messages, oldest first.
    pub(crate) fn receive(&mut self, now: Instant, max: usize) -> Received {
        let mut messages = Vec::new();
        let mut next_visible: Option<Instant> = None;
        for (seq, q) in self.messages.iter_mut() {
            if messages.len() >= max {
                break;
            }
            if let Some(until) = q.invisible_until
                && until > now
            {
                next_visible = Some(next_visible.map_or(until, |n| n.min(until)));
                continue;
            }
            q.receive_count += 1;
            q.invisible_until = Some(now + self.visibility);
            messages.push(Message {
                id: format!("fake-msg-{seq}"),
                receipt_handle: format!("{RECEIPT_PREFIX}{seq}-{}", q.receive_count),
                body: q.body.clone(),
                receive_count: Some(q.receive_count),
            });
        }
        Received {
            next_visible: if messages.is_empty() {
                next_visible
            } else {
                None
            },
            messages,
        }
    }

    /// Deletes by receipt handle, as SQS does: the latest handle of a
    /// message deletes it; an outdated handle of a redelivered message or a
    /// handle of an already deleted message succeeds without effect; a
    /// handle the queue never issued fails.
    pub(crate) fn delete(&mut self, handles: &[String]) -> Vec<DeleteFailure> {
        let mut failures = Vec::new();
        for handle in handles {
            match parse_receipt(handle) {
                Some((seq, count)) => {
                    if self
                        .messages
                        .get(&seq)
                        .is_some_and(|q| q.receive_count == count)
                    {
                        self.messages.remove(&seq);
                    }
                }
                None => failures.push(DeleteFailure {
                    receipt_handle: handle.clone(),
                    code: "ReceiptHandleIsInvalid".into(),
                    message: "the receipt handle was not issued by this queue".into(),
                }),
            }
        }
        failures
    }
}

fn parse_receipt(handle: &str) -> Option<(u64, u32)> {
    let rest = handle.strip_prefix(RECEIPT_PREFIX)?;
    let (seq, count) = rest.split_once('-')?;
    Some((seq.parse().ok()?, count.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn queue_of(n: usize) -> EventQueue {
        let mut q = EventQueue::new(Duration::from_secs(30));
        for i in 0..n {
            q.push(format!("body-{i}"));
        }
        q
    }

    #[test]
    fn received_messages_are_invisible_until_the_timeout_then_return_with_a_higher_count() {
        let mut q = queue_of(3);
        let t0 = Instant::now();
        let first = q.receive(t0, 2).messages;
        assert_eq!(first.len(), 2);
        assert_eq!(first[0].body, "body-0");
        let rest = q.receive(t0, 10);
        assert_eq!(rest.messages.len(), 1);
        assert_eq!(rest.messages[0].body, "body-2");
        let none = q.receive(t0 + Duration::from_secs(29), 10);
        assert!(none.messages.is_empty());
        assert_eq!(none.next_visible, Some(t0 + Duration::from_secs(30)));
        let again = q.receive(t0 + Duration::from_secs(30), 10).messages;
        assert_eq!(again.len(), 3);
        assert!(again.iter().all(|m| m.receive_count == Some(2)));
        assert_ne!(again[0].receipt_handle, first[0].receipt_handle);
    }

    #[test]
    fn only_the_latest_receipt_handle_deletes() {
        let mut q = queue_of(1);
        let t0 = Instant::now();
        let old = q.receive(t0, 1).messages.remove(0);
        let new = q
            .receive(t0 + Duration::from_secs(31), 1)
            .messages
            .remove(0);
        assert!(
            q.delete(std::slice::from_ref(&old.receipt_handle))
                .is_empty()
        );
        assert_eq!(q.len(), 1);
        assert!(
            q.delete(std::slice::from_ref(&new.receipt_handle))
                .is_empty()
        );
        assert_eq!(q.len(), 0);
        // Deleting again is harmless, a foreign handle is not.
        assert!(q.delete(&[new.receipt_handle]).is_empty());
        let failures = q.delete(&["AQEB-not-ours".to_string()]);
        assert_eq!(failures[0].code, "ReceiptHandleIsInvalid");
    }
}
