//! The standalone worker: each loop claims one message at a time from the SQLite queue (a claim
//! holds back the user's later messages, which keeps each user's events in order), retries with
//! backoff, dead-letters what cannot be applied. Several loops work different users at once.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use scim_relay::sqlite::{QueuedMessage, SqliteDb};
use scim_relay::worker::{WorkError, Worker};
use tokio::sync::{watch, Notify};

/// How retryable failures are spaced, and when they give up.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Attempts in all before a retryable failure is dead-lettered.
    pub max_attempts: u32,
    pub base_delay: Duration,
    pub max_delay: Duration,
    /// How often an idle worker looks for delayed messages that became visible.
    pub idle_poll: Duration,
    /// How long the worker stops consuming after the target rejected its credential.
    pub credential_pause: Duration,
    /// How long a claimed message is a worker's alone: a worker that dies mid-work gives it up
    /// when this runs out. Longer than any one message's work.
    pub lease: Duration,
}

impl RetryPolicy {
    pub fn from_settings(settings: &scim_relay::config::Settings) -> Self {
        Self {
            max_attempts: settings.queue.max_attempts.clamp(1, u64::from(u32::MAX)) as u32,
            ..Self::default()
        }
    }

    /// Exponential backoff with jitter, or the target's own wait when it gave one.
    fn delay(&self, attempts_so_far: u32, asked: Option<Duration>) -> Duration {
        if let Some(wait) = asked {
            return wait;
        }
        let exp = self
            .base_delay
            .saturating_mul(2u32.saturating_pow(attempts_so_far.min(16)));
        let capped = exp.min(self.max_delay);
        let jitter = fastrand::u64(0..=capped.as_millis() as u64 / 4 + 1);
        capped + Duration::from_millis(jitter)
    }
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 8,
            base_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(300),
            idle_poll: Duration::from_millis(500),
            credential_pause: Duration::from_secs(60),
            lease: Duration::from_secs(300),
        }
    }
}

/// Whether the target accepts the relay's credential, as last seen by the worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CredentialHealth {
    Unknown,
    Accepted,
    Rejected,
}

/// What the workers did since the start: every message ends in one of these.
#[derive(Debug, Default)]
pub struct WorkerStats {
    /// Applied (the target changed) or found already right.
    pub applied: AtomicU64,
    /// Recognised as already applied (a redelivery).
    pub duplicates: AtomicU64,
    pub dead_lettered: AtomicU64,
    /// Attempts that failed and were put back for later (not final outcomes).
    pub retried: AtomicU64,
}

/// A snapshot of [`WorkerStats`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WorkerCounts {
    pub applied: u64,
    pub duplicates: u64,
    pub dead_lettered: u64,
    pub retried: u64,
}

impl WorkerStats {
    pub fn snapshot(&self) -> WorkerCounts {
        WorkerCounts {
            applied: self.applied.load(Ordering::Relaxed),
            duplicates: self.duplicates.load(Ordering::Relaxed),
            dead_lettered: self.dead_lettered.load(Ordering::Relaxed),
            retried: self.retried.load(Ordering::Relaxed),
        }
    }
}

pub async fn run(
    worker: Arc<Worker>,
    db: SqliteDb,
    stats: Arc<WorkerStats>,
    retry: RetryPolicy,
    wake: Arc<Notify>,
    health: Arc<watch::Sender<CredentialHealth>>,
    mut stopped: watch::Receiver<bool>,
) {
    loop {
        if *stopped.borrow() {
            return;
        }
        let lease = chrono::Duration::from_std(retry.lease).unwrap_or(chrono::Duration::MAX);
        match db.next_message(Utc::now(), lease).await {
            Ok(Some(message)) => match handle(&worker, &db, &retry, &stats, message).await {
                Some(CredentialHealth::Rejected) => {
                    health.send_replace(CredentialHealth::Rejected);
                    // Stop consuming: every message would be refused the same way. The next
                    // message after the pause is the probe.
                    tokio::select! {
                        _ = tokio::time::sleep(retry.credential_pause) => {}
                        _ = stopped.changed() => {}
                    }
                }
                Some(CredentialHealth::Accepted) => {
                    health.send_if_modified(|h| {
                        let changed = *h != CredentialHealth::Accepted;
                        *h = CredentialHealth::Accepted;
                        changed
                    });
                }
                _ => {}
            },
            Ok(None) => {
                tokio::select! {
                    _ = wake.notified() => {}
                    _ = tokio::time::sleep(retry.idle_poll) => {}
                    _ = stopped.changed() => {}
                }
            }
            Err(e) => {
                tracing::error!("cannot read the queue: {e}");
                tokio::time::sleep(retry.idle_poll).await;
            }
        }
    }
}

async fn handle(
    worker: &Worker,
    db: &SqliteDb,
    retry: &RetryPolicy,
    stats: &WorkerStats,
    message: QueuedMessage,
) -> Option<CredentialHealth> {
    let mut learnt = None;
    // Counted once the outcome is recorded (a failed record means the message is worked again).
    let mut counted: Option<&AtomicU64> = None;
    let count = |c: &AtomicU64| {
        c.fetch_add(1, Ordering::Relaxed);
    };
    // Work that outlives its claim is abandoned (as a crash would be): the message may be
    // another worker's by then.
    let budget = retry.lease.mul_f32(0.9);
    let processed = match tokio::time::timeout(budget, worker.process(&message.body)).await {
        Ok(result) => result,
        Err(_) => Err(WorkError::Retryable {
            reason: format!("took longer than its {} s claim", retry.lease.as_secs()),
            retry_after: None,
        }),
    };
    let result = match processed {
        Ok(outcome) => {
            learnt = Some(CredentialHealth::Accepted);
            let acked = db.ack(&message).await;
            if acked.is_ok() {
                match outcome {
                    scim_relay::worker::Outcome::Duplicate => count(&stats.duplicates),
                    _ => count(&stats.applied),
                }
            }
            acked
        }
        Err(WorkError::CredentialRejected(reason)) => {
            learnt = Some(CredentialHealth::Rejected);
            tracing::error!(
                message = message.id,
                alarm = "target_credential",
                "pausing the worker: {reason}"
            );
            // Not an attempt of this message: it is put back as it was, never dead-lettered.
            let at =
                Utc::now() + chrono::Duration::from_std(retry.credential_pause).unwrap_or_default();
            db.postpone(&message, at, &reason).await
        }
        Err(WorkError::Permanent(reason)) => {
            tracing::error!(message = message.id, "dead-lettering: {reason}");
            counted = Some(&stats.dead_lettered);
            db.dead_letter(&message, &reason).await
        }
        Err(WorkError::Retryable {
            reason,
            retry_after,
        }) => {
            let attempts = message.attempts + 1;
            if attempts >= retry.max_attempts {
                let reason = format!("gave up after {attempts} attempts: {reason}");
                tracing::error!(message = message.id, "dead-lettering: {reason}");
                counted = Some(&stats.dead_lettered);
                db.dead_letter(&message, &reason).await
            } else {
                let wait = retry.delay(message.attempts, retry_after);
                tracing::warn!(
                    message = message.id,
                    attempts,
                    wait_ms = wait.as_millis() as u64,
                    "will retry: {reason}"
                );
                let at = Utc::now() + chrono::Duration::from_std(wait).unwrap_or_default();
                counted = Some(&stats.retried);
                db.retry_later(&message, at, &reason).await
            }
        }
    };
    if let (Ok(()), Some(counter)) = (&result, counted) {
        count(counter);
    }
    if let Err(e) = result {
        // The message stays in the queue and is worked again: nothing is lost.
        tracing::error!(message = message.id, "cannot record the outcome: {e}");
        tokio::time::sleep(retry.idle_poll).await;
    }
    learnt
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_is_capped_and_honours_the_targets_wait() {
        let p = RetryPolicy {
            max_attempts: 5,
            base_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(10),
            idle_poll: Duration::from_millis(10),
            credential_pause: Duration::from_millis(10),
            lease: Duration::from_secs(1),
        };
        let d0 = p.delay(0, None);
        let d3 = p.delay(3, None);
        assert!(
            d0 >= Duration::from_secs(1) && d0 < Duration::from_secs(2),
            "{d0:?}"
        );
        assert!(d3 >= Duration::from_secs(8), "{d3:?}");
        assert!(p.delay(20, None) <= Duration::from_millis(12_600));
        assert_eq!(
            p.delay(0, Some(Duration::from_secs(42))),
            Duration::from_secs(42)
        );
    }
}
