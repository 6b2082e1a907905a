//! The standalone worker: the core's claim loop on the SQLite queue (a claim holds back the
//! user's later messages, which keeps each user's events in order), several at once, with the
//! one consumer deciding what becomes of each message. This file keeps the standalone's own
//! settings, counters and credential health.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use scim_relay_core::claim_loop::ClaimTiming;
use scim_relay_core::consumer::{Backoff, Consumed, ConsumerPolicy, Disposition};
use scim_relay_core::work::Outcome;

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
    /// How long a claimed message is a worker's alone without renewal (renewed every third of
    /// it while worked): a process killed mid-work gives its messages up this long after.
    pub lease: Duration,
}

impl RetryPolicy {
    pub fn from_settings(settings: &scim_relay_core::config::Settings) -> Self {
        Self {
            max_attempts: settings.queue.max_attempts.clamp(1, u64::from(u32::MAX)) as u32,
            ..Self::default()
        }
    }

    /// The consumer's policy: the standalone curve with these settings.
    pub fn consumer(&self) -> ConsumerPolicy {
        ConsumerPolicy {
            backoff: Backoff {
                base: self.base_delay,
                max: self.max_delay,
            },
            credential_pause: self.credential_pause,
            breaker_hold: self.credential_pause,
            key_wait: self.base_delay.saturating_mul(5),
            ..ConsumerPolicy::standalone(self.max_attempts, self.lease)
        }
    }

    pub fn timing(&self) -> ClaimTiming {
        ClaimTiming {
            lease: self.lease,
            idle_poll: self.idle_poll,
        }
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
            lease: Duration::from_secs(30),
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
    /// Deactivations the deprovisioning breaker held.
    pub held: AtomicU64,
    pub dead_lettered: AtomicU64,
    /// Attempts that failed and were put back for later (not final outcomes).
    pub retried: AtomicU64,
    /// From the IdP's change to the target changed, per applied trigger.
    pub apply_latency: scim_relay_core::metrics::LatencyHistogram,
}

/// A snapshot of [`WorkerStats`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WorkerCounts {
    pub applied: u64,
    pub duplicates: u64,
    pub held: u64,
    pub dead_lettered: u64,
    pub retried: u64,
}

impl WorkerStats {
    pub fn snapshot(&self) -> WorkerCounts {
        WorkerCounts {
            applied: self.applied.load(Ordering::Relaxed),
            duplicates: self.duplicates.load(Ordering::Relaxed),
            held: self.held.load(Ordering::Relaxed),
            dead_lettered: self.dead_lettered.load(Ordering::Relaxed),
            retried: self.retried.load(Ordering::Relaxed),
        }
    }
}

/// Counts a consumed message, and learns the credential's health from it.
pub fn record(consumed: &Consumed, stats: &WorkerStats) -> Option<CredentialHealth> {
    let count = |c: &AtomicU64| {
        c.fetch_add(1, Ordering::Relaxed);
    };
    if consumed.settled.is_err() {
        // Not recorded: the message is worked again, and counted then.
        return None;
    }
    if let Some(ms) = consumed.apply_latency_ms {
        stats.apply_latency.observe(ms);
    }
    match &consumed.disposition {
        Disposition::Done(Outcome::Duplicate) => count(&stats.duplicates),
        Disposition::Done(Outcome::Held) => count(&stats.held),
        Disposition::Done(_) => count(&stats.applied),
        Disposition::DeadLettered { .. } => count(&stats.dead_lettered),
        Disposition::Retry { .. } | Disposition::AwaitingKey { .. } => count(&stats.retried),
        // The directory refusing its token says nothing of the target's key.
        Disposition::CredentialRejected {
            directory: false, ..
        } => return Some(CredentialHealth::Rejected),
        Disposition::CredentialRejected { .. } => return None,
        Disposition::HeldBack { .. } => {}
    }
    // Only a call the target answered tells that it takes the credential: a duplicate, a
    // held deactivation or a user with nothing to change made none, and must not turn a
    // "rejected" the probe just saw back into "accepted".
    match consumed.disposition {
        Disposition::Done(Outcome::Applied { scim_calls } | Outcome::Unchanged { scim_calls })
            if scim_calls > 0 =>
        {
            Some(CredentialHealth::Accepted)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_call_the_target_answered_says_the_credential_is_accepted() {
        let done = |outcome| Consumed {
            disposition: Disposition::Done(outcome),
            settled: Ok(()),
            apply_latency_ms: None,
        };
        let stats = WorkerStats::default();
        for outcome in [
            Outcome::Duplicate,
            Outcome::Held,
            Outcome::Unchanged { scim_calls: 0 },
        ] {
            assert_eq!(record(&done(outcome.clone()), &stats), None, "{outcome:?}");
        }
        for outcome in [
            Outcome::Unchanged { scim_calls: 1 },
            Outcome::Applied { scim_calls: 2 },
        ] {
            assert_eq!(
                record(&done(outcome.clone()), &stats),
                Some(CredentialHealth::Accepted),
                "{outcome:?}"
            );
        }
        let refused = Consumed {
            disposition: Disposition::CredentialRejected {
                until: chrono::Utc::now(),
                reason: "401".into(),
                directory: false,
            },
            settled: Ok(()),
            apply_latency_ms: None,
        };
        assert_eq!(record(&refused, &stats), Some(CredentialHealth::Rejected));
    }

    #[test]
    fn the_settings_become_the_consumers_curve_and_limit() {
        let p = RetryPolicy {
            max_attempts: 5,
            base_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(10),
            idle_poll: Duration::from_millis(10),
            credential_pause: Duration::from_millis(10),
            lease: Duration::from_secs(1),
        };
        let curve = p.consumer().backoff;
        let d0 = curve.after(1);
        let d3 = curve.after(4);
        assert!(
            d0 >= Duration::from_secs(1) && d0 < Duration::from_secs(2),
            "{d0:?}"
        );
        assert!(d3 >= Duration::from_secs(8), "{d3:?}");
        assert!(curve.after(21) <= Duration::from_millis(12_000));
        assert_eq!(p.consumer().max_attempts, Some(5));
    }
}
