//! EventBridge and SQS as the simulation plays them: every event the fake
//! ECS emits is delivered to the queue after a seeded delay (so events
//! arrive out of order), some twice, and some again much later, as after
//! a dead-letter-queue redrive.

use std::collections::BTreeMap;
use std::time::Duration;

use blox_core::testing::FakeEcs;
use rand::Rng;
use rand::rngs::SmallRng;
use tokio::time::Instant;

/// How events are delivered, while faults are on.
#[derive(Debug, Clone, Copy)]
pub struct DeliveryFaults {
    /// The longest delay of a delivery.
    pub max_delay: Duration,
    /// Probability that an event is delivered twice.
    pub duplicate: f64,
    /// Probability that an event is delivered again much later.
    pub redrive: f64,
    /// How much later a redrive comes (at most).
    pub redrive_after: Duration,
}

impl DeliveryFaults {
    /// Prompt, once, in order.
    pub const NONE: DeliveryFaults = DeliveryFaults {
        max_delay: Duration::ZERO,
        duplicate: 0.0,
        redrive: 0.0,
        redrive_after: Duration::ZERO,
    };
}

/// Events on their way to the queue.
#[derive(Debug, Default)]
pub struct Delivery {
    pending: BTreeMap<(Instant, u64), String>,
    seq: u64,
    /// Events taken from the fake.
    pub emitted: u64,
    /// Messages put on the queue (duplicates included).
    pub delivered: u64,
}

impl Delivery {
    fn schedule(&mut self, at: Instant, body: String) {
        self.seq += 1;
        self.pending.insert((at, self.seq), body);
    }

    /// Takes what the fake emitted and schedules it under `faults`.
    pub fn collect(&mut self, fake: &FakeEcs, faults: DeliveryFaults, rng: &mut SmallRng) {
        let now = Instant::now();
        let delay = |rng: &mut SmallRng, max: Duration| {
            let ms = u64::try_from(max.as_millis()).unwrap_or(u64::MAX);
            Duration::from_millis(if ms == 0 { 0 } else { rng.random_range(0..=ms) })
        };
        for body in fake.take_outbox() {
            self.emitted += 1;
            let d = delay(rng, faults.max_delay);
            if rng.random_bool(faults.duplicate.clamp(0.0, 1.0)) {
                let d2 = delay(rng, faults.max_delay);
                self.schedule(now + d2, body.clone());
            }
            if rng.random_bool(faults.redrive.clamp(0.0, 1.0)) {
                let later = delay(rng, faults.redrive_after);
                self.schedule(now + faults.redrive_after / 2 + later / 2, body.clone());
            }
            self.schedule(now + d, body);
        }
    }

    /// Puts every due event on the queue (every pending one if `all`).
    pub fn deliver(&mut self, fake: &FakeEcs, all: bool) {
        let now = Instant::now();
        while let Some(entry) = self.pending.first_entry() {
            if !all && entry.key().0 > now {
                break;
            }
            fake.enqueue_event(entry.remove());
            self.delivered += 1;
        }
    }

    /// Events not yet on the queue.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }
}
