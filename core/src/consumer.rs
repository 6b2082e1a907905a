//! The one consumer: how every deployment turns a worked message into what happens to it on
//! the queue. The SQS batch handler (Lambda) and the claim loop (standalone, in memory) are
//! thin adapters of it, so a failure means the same thing everywhere:
//!
//! | outcome | disposition |
//! |---|---|
//! | applied, unchanged, duplicate | acked |
//! | retryable | visible again after the backoff curve (or the target's own wait); past `max_attempts`, dead-lettered |
//! | permanent | dead-lettered with its reason (a failed dead-letter send is retried instead) |
//! | target credential rejected | the breaker opens; the message waits, not counted as an attempt |
//! | directory unavailable, or its rate limit | visible again after the backoff (or the IdP's own wait); never dead-lettered |
//! | signed with a queue key not held | visible again after `key_wait` (the Lambda re-reads its secrets meanwhile); past `key_attempts`, dead-lettered |
//!
//! On a FIFO batch, once a record must wait every later record of its group (its user) waits
//! too, so a user's later event never overtakes an earlier one; other users' records go on.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::breaker::{CachedBreaker, CredentialBreaker};
use crate::clock::{Clock, SystemClock};
use crate::history::{Finish, Trace};
use crate::queue::{Delivery, QueueError, WorkQueue};
use crate::work::{Outcome, WorkError};
use crate::worker::Worker;

/// Exponential backoff with jitter: `base` after the first attempt, doubling, at most `max`,
/// plus up to a fifth more so a burst of failures does not come back at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    pub base: Duration,
    pub max: Duration,
}

impl Backoff {
    /// The wait after attempt number `attempt` (from 1) failed.
    pub fn after(&self, attempt: u32) -> Duration {
        let doubling = attempt.saturating_sub(1).min(20);
        let wait = self.base.saturating_mul(1u32 << doubling).min(self.max);
        let millis = wait.as_millis().min(u128::from(u64::MAX)) as u64;
        wait + Duration::from_millis(fastrand::u64(0..=millis / 5))
    }
}

/// How a deployment's consumer retries, gives up and pauses. The values differ by queue (SQS
/// counts visibility in seconds and redrives after its own `maxReceiveCount`); the rules do not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConsumerPolicy {
    pub backoff: Backoff,
    /// Attempts in all before a retryable failure is dead-lettered; `None` leaves it to the
    /// queue's own redrive policy (SQS `maxReceiveCount`).
    pub max_attempts: Option<u32>,
    /// How long the breaker stays open after the target refused the credential: the next
    /// message after it is the probe.
    pub credential_pause: Duration,
    /// How long a batch handed back unworked while the breaker is open waits (SQS: long, so
    /// days of outage fit in `maxReceiveCount`).
    pub breaker_hold: Duration,
    /// How long one read of the breaker is trusted by this process ([`CachedBreaker`]); zero
    /// reads it for every batch.
    pub breaker_cache: Duration,
    /// Work on one message is abandoned (and retried) after this long (a claim's lease).
    pub work_budget: Option<Duration>,
    /// How long a message signed with a queue key the worker does not hold waits before it is
    /// tried again (a rotation: the worker re-reads its secrets meanwhile).
    pub key_wait: Duration,
    /// Attempts before such a message is taken for a forgery and dead-lettered.
    pub key_attempts: u32,
    /// Whether a message refused for the credential is hidden on the queue until the breaker's
    /// pause ends (SQS: the queue holds it, no invocation is spent on it) or left visible for
    /// the claim loop, which holds back while the breaker is open and resumes as soon as a
    /// probe finds the key accepted again.
    pub hide_until_unpaused: bool,
    /// What a record's work leaves of the invocation (Lambda), to settle it and report the
    /// batch: a visibility change, a dead-letter send, the metrics line.
    pub settle_margin: Duration,
}

impl ConsumerPolicy {
    /// The worker Lambda on SQS FIFO: 10 s doubling to 15 min; redrive after
    /// `maxReceiveCount`; a probe every 5 minutes at most, batches held 15 minutes meanwhile.
    pub fn lambda() -> Self {
        Self {
            backoff: Backoff {
                base: Duration::from_secs(10),
                max: Duration::from_secs(900),
            },
            max_attempts: None,
            credential_pause: Duration::from_secs(300),
            breaker_hold: Duration::from_secs(900),
            // A DynamoDB request saved on every batch; a breaker opened elsewhere is seen
            // within 5 s (until then this container's own 401 opens it as well).
            breaker_cache: Duration::from_secs(5),
            work_budget: None,
            // Longer than the pause between two forced secret reads of a container
            // (`refresh::FORCED_REFRESH_INTERVAL`), so the second attempt finds the new key.
            key_wait: Duration::from_secs(6),
            key_attempts: 5,
            hide_until_unpaused: true,
            settle_margin: Duration::from_secs(5),
        }
    }

    /// The standalone claim loop: 1 s doubling to 5 min, `queue.max_attempts` in all, a probe
    /// a minute, work bounded by 90 % of the claim's lease.
    pub fn standalone(max_attempts: u32, lease: Duration) -> Self {
        Self {
            backoff: Backoff {
                base: Duration::from_secs(1),
                max: Duration::from_secs(300),
            },
            max_attempts: Some(max_attempts.max(1)),
            credential_pause: Duration::from_secs(60),
            breaker_hold: Duration::from_secs(60),
            // The breaker is a local SQLite row: no round trip to save.
            breaker_cache: Duration::ZERO,
            work_budget: Some(lease.mul_f32(0.9)),
            // Standalone reads its keys at start: another process on the same database, restarted
            // with the new key, may take the message meanwhile.
            key_wait: Duration::from_secs(5),
            key_attempts: 3,
            hide_until_unpaused: false,
            // No invocation deadline standalone: the claim's lease bounds the work.
            settle_margin: Duration::ZERO,
        }
    }
}

/// What a batch's records came to: the worker Lambda's metrics, and the records to hand back.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BatchReport {
    /// Ids of the records not finished (`batchItemFailures`).
    pub unfinished: Vec<String>,
    /// The target was changed.
    pub applied: u64,
    /// Worked, and the target already matched.
    pub unchanged: u64,
    /// Recognised as already applied.
    pub duplicates: u64,
    /// Deactivations the deprovisioning breaker holds.
    pub held: u64,
    /// Failed, back on the queue for later.
    pub retried: u64,
    pub dead_lettered: u64,
    /// A credential (the target's or a directory's) refused: the breaker opened.
    pub credential_rejected: u64,
    /// Handed back unworked (breaker open, an earlier record waiting, time running out).
    pub handed_back: u64,
    /// Signed with a queue key not held (yet): the container should re-read its secrets.
    pub key_not_held: u64,
    /// For each applied trigger: milliseconds from the IdP's change to the target changed.
    pub apply_latencies_ms: Vec<u64>,
}

impl BatchReport {
    fn count(&mut self, disposition: &Disposition) {
        let counter = match disposition {
            Disposition::Done(Outcome::Applied { .. }) => &mut self.applied,
            Disposition::Done(Outcome::Unchanged { .. }) => &mut self.unchanged,
            Disposition::Done(Outcome::Duplicate) => &mut self.duplicates,
            Disposition::Done(Outcome::Held) => &mut self.held,
            Disposition::Retry { .. } => &mut self.retried,
            Disposition::DeadLettered { .. } => &mut self.dead_lettered,
            Disposition::CredentialRejected { .. } => &mut self.credential_rejected,
            Disposition::HeldBack { .. } => &mut self.handed_back,
            Disposition::AwaitingKey { .. } => &mut self.key_not_held,
        };
        *counter += 1;
    }

    /// As CloudWatch metrics (all of them, zeros included, so alarms see data).
    pub fn metrics(&self) -> Vec<(&'static str, u64)> {
        vec![
            ("TriggersApplied", self.applied),
            ("TriggersUnchanged", self.unchanged),
            ("TriggersDuplicate", self.duplicates),
            ("DeprovisionsHeldInBatch", self.held),
            ("TriggersRetried", self.retried),
            ("TriggersDeadLettered", self.dead_lettered),
            ("CredentialRejections", self.credential_rejected),
            ("TriggersHandedBack", self.handed_back),
            ("TriggersAwaitingQueueKey", self.key_not_held),
        ]
    }

    fn note(&mut self, consumed: &Consumed) {
        self.count(&consumed.disposition);
        if let Some(ms) = consumed.apply_latency_ms {
            self.apply_latencies_ms.push(ms);
        }
    }
}

/// What became of one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Disposition {
    /// Applied, found unchanged, or recognised as a redelivery: acked.
    Done(Outcome),
    /// Back on the queue until `at`.
    Retry { at: DateTime<Utc>, reason: String },
    /// In the dead-letter queue.
    DeadLettered { reason: String },
    /// The target (or, `directory`, the IdP) refused the relay's credential: the breaker is
    /// open until `until`, the message waits.
    CredentialRejected {
        until: DateTime<Utc>,
        reason: String,
        directory: bool,
    },
    /// Not worked: the breaker was open, or an earlier message of the batch must wait first.
    HeldBack { until: DateTime<Utc> },
    /// Signed with a queue key the worker does not hold yet: back on the queue until `at`,
    /// while the worker reads its secrets again.
    AwaitingKey { at: DateTime<Utc>, reason: String },
}

impl Disposition {
    /// Whether the message left the queue for good (acked or dead-lettered).
    pub fn finished(&self) -> bool {
        matches!(self, Self::Done(_) | Self::DeadLettered { .. })
    }

    /// When a message that is not finished comes back.
    fn until(&self) -> Option<DateTime<Utc>> {
        match self {
            Self::Retry { at, .. } | Self::AwaitingKey { at, .. } => Some(*at),
            Self::CredentialRejected { until, .. } | Self::HeldBack { until } => Some(*until),
            Self::Done(_) | Self::DeadLettered { .. } => None,
        }
    }
}

/// A message's disposition, and whether the queue took it. When it did not, the message is
/// still on the queue and comes back by itself: nothing is lost.
#[derive(Debug)]
pub struct Consumed {
    pub disposition: Disposition,
    pub settled: Result<(), QueueError>,
    /// An applied trigger's latency, from the IdP's change to the target changed.
    pub apply_latency_ms: Option<u64>,
}

pub struct Consumer {
    worker: Arc<Worker>,
    breaker: Arc<dyn CredentialBreaker>,
    /// Queue time is wall time (visibility, the breaker), whatever clock the worker's domain
    /// runs on (tests move that one days ahead to expire invitations).
    clock: SystemClock,
    policy: ConsumerPolicy,
}

impl Consumer {
    pub fn new(
        worker: Arc<Worker>,
        breaker: Arc<dyn CredentialBreaker>,
        policy: ConsumerPolicy,
    ) -> Self {
        let breaker = if policy.breaker_cache.is_zero() {
            breaker
        } else {
            Arc::new(CachedBreaker::new(breaker, policy.breaker_cache))
        };
        Self {
            worker,
            breaker,
            clock: SystemClock,
            policy,
        }
    }

    /// The worker behind the consumer (tests race two of them directly).
    pub fn worker(&self) -> &Worker {
        &self.worker
    }

    pub fn policy(&self) -> &ConsumerPolicy {
        &self.policy
    }

    /// Until when nothing should be consumed (the credential breaker is open). A breaker that
    /// cannot be read does not stop work: the next 401 would open it again.
    pub async fn paused_until(&self) -> Option<DateTime<Utc>> {
        match self.breaker.open_until(self.clock.now()).await {
            Ok(until) => until,
            Err(e) => {
                tracing::warn!("cannot read the credential breaker: {e}");
                None
            }
        }
    }

    /// How long the target still asked every caller to wait (a 429): a loop that can choose
    /// when to claim waits this out instead of handing each message it claims back.
    pub fn target_asked_to_wait(&self) -> Option<Duration> {
        self.worker.target_asked_to_wait()
    }

    /// While the breaker is open: asks the target whether it takes the credential again, and
    /// closes the breaker at once if it does, so work resumes within a probe of the key being
    /// fixed rather than when the pause runs out. True when it closed it. A refusal (or a
    /// target that cannot answer) leaves the breaker as it is.
    pub async fn probe_credential(&self) -> bool {
        match self.worker.probe_target().await {
            Ok(()) => {
                let now = self.clock.now();
                if let Err(e) = self.breaker.open(now).await {
                    tracing::warn!("cannot close the credential breaker: {e}");
                    return false;
                }
                tracing::info!(
                    alarm = "target_credential",
                    "the target takes the credential again: resuming"
                );
                true
            }
            Err(e) => {
                tracing::debug!("credential probe: {e}");
                false
            }
        }
    }

    /// Works one message and settles it on `queue`; a finished one is written down (log line,
    /// the user's history).
    pub async fn consume(&self, queue: &dyn WorkQueue, delivery: &Delivery) -> Consumed {
        self.consume_within(queue, delivery, self.policy.work_budget)
            .await
    }

    /// [`Self::consume`], the work abandoned (and retried) after `budget`.
    async fn consume_within(
        &self,
        queue: &dyn WorkQueue,
        delivery: &Delivery,
        budget: Option<Duration>,
    ) -> Consumed {
        let mut trace = Trace::default();
        let mut consumed = self
            .work_and_settle(queue, delivery, &mut trace, budget)
            .await;
        if consumed.settled.is_ok() {
            let finish = match &consumed.disposition {
                Disposition::Done(outcome) => Some((Finish::of(outcome), None)),
                Disposition::DeadLettered { reason } => {
                    Some((Finish::DeadLettered, Some(reason.as_str())))
                }
                _ => None,
            };
            if let Some((finish, reason)) = finish {
                let entry = self.worker.finished(&trace, finish, reason).await;
                if finish == Finish::Applied {
                    consumed.apply_latency_ms =
                        entry.latency_ms.and_then(|ms| u64::try_from(ms).ok());
                }
            }
        }
        consumed
    }

    async fn work_and_settle(
        &self,
        queue: &dyn WorkQueue,
        delivery: &Delivery,
        trace: &mut Trace,
        budget: Option<Duration>,
    ) -> Consumed {
        let work = self.worker.process_traced(&delivery.body, trace);
        let result = match budget {
            Some(budget) => tokio::time::timeout(budget, work)
                .await
                .unwrap_or_else(|_| {
                    // Work that outlives its claim is abandoned (as a crash would be): the
                    // message may be another worker's by then.
                    Err(WorkError::Retryable {
                        reason: format!("took longer than its {} s budget", budget.as_secs()),
                        retry_after: None,
                    })
                }),
            None => work.await,
        };
        let disposition = self.dispose(delivery, result).await;
        let settled = self.settle(queue, delivery, &disposition).await;
        match settled {
            Ok(()) => Consumed {
                disposition,
                settled: Ok(()),
                apply_latency_ms: None,
            },
            // The dead-letter queue refused it: keep the message and try again later.
            Err(e) if matches!(disposition, Disposition::DeadLettered { .. }) => {
                tracing::error!(message = %delivery.id, "could not dead-letter, retrying instead: {e}");
                let retry = Disposition::Retry {
                    at: self.after(self.policy.backoff.after(delivery.attempt)),
                    reason: format!("dead-letter queue unavailable: {e}"),
                };
                let settled = self.settle(queue, delivery, &retry).await;
                Consumed {
                    disposition: retry,
                    settled,
                    apply_latency_ms: None,
                }
            }
            Err(e) => {
                tracing::error!(message = %delivery.id, "cannot record the outcome: {e}");
                Consumed {
                    disposition,
                    settled: Err(e),
                    apply_latency_ms: None,
                }
            }
        }
    }

    /// A FIFO batch (SQS): records in order. Once a record must wait, every later record of
    /// its message group (its user) waits as long, handed back unworked, so a user's later event
    /// never overtakes an earlier one; other users' records go on (FIFO orders within a group
    /// only, so one user's wait — a rate limit, a hard delete's confirming read ten minutes
    /// off — delays nobody else). The whole rest of the batch waits when the credential breaker
    /// is open, and when less than `reserve` of the invocation is left; while the target asks
    /// every caller to wait (a 429), records go back unworked for the rest of it. A record is given the
    /// time left less `settle_margin` at most: work that would outlast the invocation is
    /// abandoned and retried (as a crash would be), so the batch's results are always reported.
    pub async fn consume_batch(
        &self,
        queue: &dyn WorkQueue,
        batch: &[Delivery],
        time_left: impl Fn() -> Option<Duration>,
        reserve: Duration,
    ) -> BatchReport {
        let mut report = BatchReport::default();
        let mut unfinished = Vec::new();
        let mut all_held = self.paused_until().await.map(|_| {
            tracing::warn!(
                alarm = "target_credential",
                "credential breaker open; not consuming"
            );
            self.after(self.policy.breaker_hold)
        });
        let mut groups_held: std::collections::HashMap<String, DateTime<Utc>> = Default::default();
        for delivery in batch {
            if all_held.is_none() && time_left().is_some_and(|left| left < reserve) {
                tracing::warn!(
                    "not enough time left in this invocation; returning the rest of the batch"
                );
                all_held = Some(self.clock.now());
            }
            let held = all_held
                .or_else(|| groups_held.get(&delivery.group_id).copied())
                .or_else(|| self.target_asked_to_wait().map(|wait| self.after(wait)));
            if let Some(until) = held {
                let held = Disposition::HeldBack { until };
                if let Err(e) = self.settle(queue, delivery, &held).await {
                    tracing::warn!(message = %delivery.id, "could not delay the message: {e}");
                }
                report.count(&held);
                unfinished.push(delivery.id.clone());
                continue;
            }
            let budget = match (self.policy.work_budget, time_left()) {
                (own, Some(left)) => {
                    let left = left.saturating_sub(self.policy.settle_margin);
                    Some(own.map_or(left, |own| own.min(left)))
                }
                (own, None) => own,
            };
            let consumed = self.consume_within(queue, delivery, budget).await;
            report.note(&consumed);
            if !consumed.disposition.finished() || consumed.settled.is_err() {
                let until = consumed
                    .disposition
                    .until()
                    .unwrap_or_else(|| self.after(self.policy.backoff.after(delivery.attempt)));
                if matches!(consumed.disposition, Disposition::CredentialRejected { .. }) {
                    // Every later record would meet the same refusal.
                    all_held = Some(until);
                } else {
                    groups_held.insert(delivery.group_id.clone(), until);
                }
                unfinished.push(delivery.id.clone());
            }
        }
        report.unfinished = unfinished;
        report
    }

    /// The disposition of a worked message (opening the breaker on a rejected credential).
    async fn dispose(
        &self,
        delivery: &Delivery,
        result: Result<Outcome, WorkError>,
    ) -> Disposition {
        let id = delivery.id.as_str();
        match result {
            Ok(outcome) => Disposition::Done(outcome),
            Err(WorkError::Permanent(reason) | WorkError::NotOurs(reason)) => {
                tracing::error!(message = id, "dead-lettering: {reason}");
                Disposition::DeadLettered { reason }
            }
            Err(e @ (WorkError::CredentialRejected(_) | WorkError::DirectoryRefused(_))) => {
                let directory = matches!(e, WorkError::DirectoryRefused(_));
                let alarm = if directory {
                    "directory_credential"
                } else {
                    "target_credential"
                };
                let reason = match e {
                    WorkError::DirectoryRefused(r) | WorkError::CredentialRejected(r) => r,
                    other => other.to_string(),
                };
                tracing::error!(
                    message = id,
                    alarm,
                    "credential rejected; pausing: {reason}"
                );
                let until = self.after(self.policy.credential_pause);
                if let Err(e) = self.breaker.open(until).await {
                    tracing::warn!("cannot open the credential breaker: {e}");
                }
                Disposition::CredentialRejected {
                    until,
                    reason,
                    directory,
                }
            }
            Err(WorkError::KeyNotHeld(reason)) => {
                if delivery.attempt >= self.policy.key_attempts {
                    let reason = format!(
                        "{reason}, after {} attempts and a fresh read of the keys: not signed by this deployment's inbound",
                        delivery.attempt
                    );
                    tracing::error!(message = id, "dead-lettering: {reason}");
                    return Disposition::DeadLettered { reason };
                }
                tracing::warn!(
                    message = id,
                    attempt = delivery.attempt,
                    "waiting for the queue key: {reason}"
                );
                Disposition::AwaitingKey {
                    at: self.after(self.policy.key_wait),
                    reason,
                }
            }
            // Never the message's fault: waited out however long, never dead-lettered.
            Err(WorkError::DirectoryUnavailable(reason)) => {
                let wait = self.policy.backoff.after(delivery.attempt);
                tracing::warn!(
                    message = id,
                    attempt = delivery.attempt,
                    wait_ms = wait.as_millis() as u64,
                    alarm = "directory_unavailable",
                    "directory unavailable; waiting it out: {reason}"
                );
                self.retry_after(wait, reason)
            }
            Err(WorkError::DirectoryThrottled { reason, wait }) => {
                tracing::warn!(
                    message = id,
                    attempt = delivery.attempt,
                    wait_ms = wait.as_millis() as u64,
                    "directory rate limit; back when it allows: {reason}"
                );
                self.retry_after(wait, reason)
            }
            Err(WorkError::Retryable {
                reason,
                retry_after,
            }) => {
                if let Some(max) = self.policy.max_attempts {
                    if delivery.attempt >= max {
                        let reason =
                            format!("gave up after {} attempts: {reason}", delivery.attempt);
                        tracing::error!(message = id, "dead-lettering: {reason}");
                        return Disposition::DeadLettered { reason };
                    }
                }
                // The target's own wait when it gave one, else the curve.
                let wait = retry_after.map_or_else(
                    || self.policy.backoff.after(delivery.attempt),
                    |w| w.max(Duration::from_secs(1)),
                );
                tracing::warn!(
                    message = id,
                    attempt = delivery.attempt,
                    wait_ms = wait.as_millis() as u64,
                    "will retry: {reason}"
                );
                self.retry_after(wait, reason)
            }
        }
    }

    /// Back on the queue after `wait`.
    fn retry_after(&self, wait: Duration, reason: String) -> Disposition {
        Disposition::Retry {
            at: self.after(wait),
            reason,
        }
    }

    async fn settle(
        &self,
        queue: &dyn WorkQueue,
        delivery: &Delivery,
        disposition: &Disposition,
    ) -> Result<(), QueueError> {
        match disposition {
            Disposition::Done(_) => queue.ack(delivery).await,
            Disposition::DeadLettered { reason } => queue.dead_letter(delivery, reason).await,
            Disposition::Retry { at, reason } | Disposition::AwaitingKey { at, reason } => {
                queue.retry_at(delivery, *at, reason, true).await
            }
            Disposition::CredentialRejected { until, reason, .. } => {
                let at = if self.policy.hide_until_unpaused {
                    *until
                } else {
                    self.clock.now()
                };
                queue.retry_at(delivery, at, reason, false).await
            }
            Disposition::HeldBack { until } => {
                queue
                    .retry_at(delivery, *until, "held behind an earlier message", false)
                    .await
            }
        }
    }

    fn after(&self, wait: Duration) -> DateTime<Utc> {
        self.clock.now() + chrono::Duration::from_std(wait).unwrap_or(chrono::Duration::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_backoff_curve_grows_doubling_and_is_capped() {
        let lambda = ConsumerPolicy::lambda().backoff;
        let within = |d: Duration, lo: u64, hi: u64| (lo..=hi).contains(&d.as_secs());
        assert!(within(lambda.after(1), 10, 12));
        assert!(within(lambda.after(2), 20, 24));
        assert!(within(lambda.after(7), 640, 768));
        assert!(within(lambda.after(50), 900, 1080));
        assert!(within(lambda.after(0), 10, 12));
        let standalone = ConsumerPolicy::standalone(8, Duration::from_secs(300)).backoff;
        let first = standalone.after(1);
        assert!(first >= Duration::from_secs(1) && first <= Duration::from_millis(1200));
        assert!(standalone.after(4) >= Duration::from_secs(8));
        assert!(standalone.after(40) <= Duration::from_secs(360));
    }
}
