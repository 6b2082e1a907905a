//! The pull side of the one consumer, for queues a worker claims from (SQLite, memory): claim
//! the next message a user is not already being worked on for, consume it, and wait while the
//! credential breaker is open. Several loops on one queue work different users at once.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{watch, Notify};

use crate::consumer::{Consumed, Consumer};
use crate::queue::{ClaimQueue, Delivery};

/// While the credential breaker is open, the target is probed after this long, then twice as
/// long each time up to [`PROBE_MAX`]: a fixed key is seen within seconds, a key revoked for
/// days costs one cheap read every few seconds per loop.
const PROBE_FIRST: Duration = Duration::from_secs(1);
const PROBE_MAX: Duration = Duration::from_secs(8);

/// How a claim loop waits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClaimTiming {
    /// How long a claimed message is this loop's alone without renewal: the loop renews it
    /// every third of this while it works, so a process killed mid-work (`kill -9`) gives its
    /// messages up this long after, however long one message's work takes.
    pub lease: Duration,
    /// How often an idle loop looks for delayed messages that became visible.
    pub idle_poll: Duration,
}

/// Runs until `stopped` turns true; `on_consumed` sees every message's result (counters,
/// health).
pub async fn run(
    consumer: Arc<Consumer>,
    queue: Arc<dyn ClaimQueue>,
    timing: ClaimTiming,
    wake: Arc<Notify>,
    mut stopped: watch::Receiver<bool>,
    on_consumed: impl Fn(&Consumed) + Send + Sync,
) {
    let mut probe_after = PROBE_FIRST;
    loop {
        if *stopped.borrow() {
            return;
        }
        if let Some(until) = consumer.paused_until().await {
            // Every message would be refused the same way: wait for the breaker, probing the
            // target meanwhile; when the pause runs out the next message is the probe.
            let left = (until - chrono::Utc::now()).to_std().unwrap_or_default();
            let wait = left
                .min(consumer.policy().credential_pause)
                .min(probe_after)
                .max(timing.idle_poll);
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = stopped.changed() => continue,
            }
            if wait < left && consumer.paused_until().await.is_some() {
                if consumer.probe_credential().await {
                    probe_after = PROBE_FIRST;
                } else {
                    probe_after = (probe_after * 2).min(PROBE_MAX);
                }
            }
            continue;
        }
        probe_after = PROBE_FIRST;
        if let Some(wait) = consumer.target_asked_to_wait() {
            // Every message claimed now would only go back for the rest of the wait.
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = stopped.changed() => {}
            }
            continue;
        }
        match queue.claim(chrono::Utc::now(), timing.lease).await {
            Ok(Some(delivery)) => {
                let consumed = under_lease(
                    queue.as_ref(),
                    &delivery,
                    timing.lease,
                    consumer.consume(queue.as_ref(), &delivery),
                )
                .await;
                if consumed.settled.is_err() {
                    // The message stays claimed and comes back when its lease runs out.
                    tokio::time::sleep(timing.idle_poll).await;
                }
                on_consumed(&consumed);
            }
            Ok(None) => {
                tokio::select! {
                    _ = wake.notified() => {}
                    _ = tokio::time::sleep(timing.idle_poll) => {}
                    _ = stopped.changed() => {}
                }
            }
            Err(e) => {
                tracing::error!("cannot read the queue: {e}");
                tokio::time::sleep(timing.idle_poll).await;
            }
        }
    }
}

/// Runs `work` on a claimed message, renewing the claim every third of `lease` until it is
/// done: a message may take longer than the lease to work, and only a worker that stopped
/// (killed, stalled) gives it up.
pub async fn under_lease<T>(
    queue: &dyn ClaimQueue,
    delivery: &Delivery,
    lease: Duration,
    work: impl std::future::Future<Output = T>,
) -> T {
    tokio::pin!(work);
    let mut renewal = tokio::time::interval(lease / 3);
    renewal.tick().await;
    loop {
        tokio::select! {
            done = &mut work => return done,
            _ = renewal.tick() => {
                match queue.renew(delivery, chrono::Utc::now(), lease).await {
                    Ok(true) => {}
                    Ok(false) => tracing::warn!(message = %delivery.id, "claim lost while working (the process stalled past its lease)"),
                    Err(e) => tracing::warn!(message = %delivery.id, "cannot renew the claim: {e}"),
                }
            }
        }
    }
}

#[cfg(all(test, feature = "memory"))]
mod tests {
    use super::*;
    use crate::memory::MemoryQueue;
    use crate::queue::{Queue, QueueMessage};

    #[tokio::test]
    async fn work_longer_than_the_lease_keeps_its_claim_and_a_dead_worker_gives_it_up() {
        let q = MemoryQueue::default();
        q.enqueue(&[QueueMessage {
            group_id: "u1".into(),
            dedupe_id: "a".into(),
            body: "a".into(),
        }])
        .await
        .unwrap();
        // Wide margins: a stall of two thirds of a lease (a loaded CI machine) would be needed
        // to lose the claim while renewing.
        let lease = Duration::from_millis(900);
        let delivery = q.claim(chrono::Utc::now(), lease).await.unwrap().unwrap();
        // Work three leases long, while another worker keeps trying to claim.
        let others = async {
            let mut stolen = 0;
            for _ in 0..9 {
                tokio::time::sleep(Duration::from_millis(300)).await;
                if q.claim(chrono::Utc::now(), lease).await.unwrap().is_some() {
                    stolen += 1;
                }
            }
            stolen
        };
        let work = under_lease(
            &q,
            &delivery,
            lease,
            tokio::time::sleep(Duration::from_millis(2900)),
        );
        let ((), stolen) = tokio::join!(work, others);
        assert_eq!(stolen, 0, "never two workers on one message");
        // The worker is gone (no ack, no renewal): another gets it one lease later.
        tokio::time::sleep(Duration::from_millis(1000)).await;
        assert!(q.claim(chrono::Utc::now(), lease).await.unwrap().is_some());
    }
}
