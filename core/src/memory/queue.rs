//! The work queue in memory, with the SQLite queue's semantics: FIFO per group (a user's later
//! message waits while an earlier one is claimed or waiting for a retry), a redelivery still
//! queued is dropped by its deduplication id, claims under a lease with a token, delayed
//! retries, and dead letters with their reasons.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::queue::{ClaimQueue, Delivery, WorkQueue};
use crate::queue::{
    DeadLetterReasons, Queue, QueueError, QueueFigures, QueueMessage, QueueMonitor,
};

#[derive(Debug, Clone)]
struct Queued {
    id: u64,
    message: QueueMessage,
    visible_at: DateTime<Utc>,
    /// When it was queued (the oldest message's wait is an operator's figure).
    enqueued_at: DateTime<Utc>,
    attempts: u32,
    claim: Option<String>,
}

#[derive(Debug, Default)]
struct Inner {
    next_id: u64,
    queued: Vec<Queued>,
    dead: Vec<(QueueMessage, String)>,
    /// Set by tests: the next enqueue fails (ingress must answer 503).
    refuse_enqueue: bool,
}

#[derive(Debug, Clone, Default)]
pub struct MemoryQueue {
    inner: Arc<Mutex<Inner>>,
}

impl MemoryQueue {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Messages waiting (claimed or delayed ones included) and dead letters.
    pub fn depth(&self) -> (u64, u64) {
        let inner = self.lock();
        (inner.queued.len() as u64, inner.dead.len() as u64)
    }

    /// The dead letters' reasons, oldest first.
    pub fn dead_letter_reasons(&self) -> Vec<String> {
        self.lock().dead.iter().map(|(_, r)| r.clone()).collect()
    }

    /// The dead letters' bodies, oldest first.
    pub fn dead_letter_bodies(&self) -> Vec<String> {
        self.lock()
            .dead
            .iter()
            .map(|(m, _)| m.body.clone())
            .collect()
    }

    /// Puts every dead letter back on the queue; returns how many.
    pub fn redrive_dead_letters(&self) -> usize {
        let mut inner = self.lock();
        let dead = std::mem::take(&mut inner.dead);
        let moved = dead.len();
        for (message, _) in dead {
            push(&mut inner, message);
        }
        moved
    }

    /// Makes every delayed message visible now: a test's way of letting retry waits pass.
    pub fn release_delayed(&self) {
        let now = Utc::now();
        for q in self.lock().queued.iter_mut().filter(|q| q.claim.is_none()) {
            q.visible_at = q.visible_at.min(now);
        }
    }

    /// Whether the next enqueue is refused (an unavailable queue).
    pub fn refuse_enqueue(&self, refuse: bool) {
        self.lock().refuse_enqueue = refuse;
    }

    fn with_claimed<T>(
        &self,
        delivery: &Delivery,
        f: impl FnOnce(&mut Inner, usize) -> T,
    ) -> Result<Option<T>, QueueError> {
        let id: u64 = delivery
            .id
            .parse()
            .map_err(|_| QueueError(format!("not a memory queue id: {}", delivery.id)))?;
        let mut inner = self.lock();
        // An outcome recorded under an expired claim (claimed again meanwhile) changes nothing.
        let at = inner
            .queued
            .iter()
            .position(|q| q.id == id && q.claim.as_deref() == Some(delivery.handle.as_str()));
        Ok(at.map(|i| f(&mut inner, i)))
    }
}

fn push(inner: &mut Inner, message: QueueMessage) {
    if inner
        .queued
        .iter()
        .any(|q| q.message.dedupe_id == message.dedupe_id)
    {
        return;
    }
    inner.next_id += 1;
    let id = inner.next_id;
    let now = Utc::now();
    inner.queued.push(Queued {
        id,
        message,
        visible_at: now,
        enqueued_at: now,
        attempts: 0,
        claim: None,
    });
}

#[async_trait]
impl Queue for MemoryQueue {
    async fn enqueue(&self, messages: &[QueueMessage]) -> Result<(), QueueError> {
        let mut inner = self.lock();
        if inner.refuse_enqueue {
            return Err(QueueError("memory queue refuses messages (test)".into()));
        }
        for m in messages {
            push(&mut inner, m.clone());
        }
        Ok(())
    }
}

#[async_trait]
impl ClaimQueue for MemoryQueue {
    async fn claim(
        &self,
        now: DateTime<Utc>,
        lease: Duration,
    ) -> Result<Option<Delivery>, QueueError> {
        let mut inner = self.lock();
        let mut heads = std::collections::HashSet::new();
        let mut found = None;
        for (i, q) in inner.queued.iter().enumerate() {
            // Only the first message of its group may be worked.
            if !heads.insert(q.message.group_id.clone()) {
                continue;
            }
            if q.visible_at <= now {
                found = Some(i);
                break;
            }
        }
        let Some(i) = found else { return Ok(None) };
        let token = uuid::Uuid::new_v4().simple().to_string();
        let q = &mut inner.queued[i];
        q.claim = Some(token.clone());
        q.visible_at = now + chrono::Duration::from_std(lease).unwrap_or(chrono::Duration::MAX);
        Ok(Some(Delivery {
            id: q.id.to_string(),
            group_id: q.message.group_id.clone(),
            body: q.message.body.clone(),
            attempt: q.attempts + 1,
            handle: token,
        }))
    }

    async fn renew(
        &self,
        delivery: &Delivery,
        now: DateTime<Utc>,
        lease: Duration,
    ) -> Result<bool, QueueError> {
        let until = now + chrono::Duration::from_std(lease).unwrap_or(chrono::Duration::MAX);
        Ok(self
            .with_claimed(delivery, |inner, i| inner.queued[i].visible_at = until)?
            .is_some())
    }
}

#[async_trait]
impl WorkQueue for MemoryQueue {
    async fn ack(&self, delivery: &Delivery) -> Result<(), QueueError> {
        self.with_claimed(delivery, |inner, i| {
            inner.queued.remove(i);
        })?;
        Ok(())
    }

    async fn retry_at(
        &self,
        delivery: &Delivery,
        at: DateTime<Utc>,
        _reason: &str,
        counted: bool,
    ) -> Result<(), QueueError> {
        self.with_claimed(delivery, |inner, i| {
            let q = &mut inner.queued[i];
            q.visible_at = at;
            q.claim = None;
            q.attempts += u32::from(counted);
        })?;
        Ok(())
    }

    async fn dead_letter(&self, delivery: &Delivery, reason: &str) -> Result<(), QueueError> {
        self.with_claimed(delivery, |inner, i| {
            let q = inner.queued.remove(i);
            inner.dead.push((q.message, reason.to_string()));
        })?;
        Ok(())
    }
}

#[async_trait]
impl QueueMonitor for MemoryQueue {
    async fn figures(&self, now: DateTime<Utc>) -> Result<QueueFigures, QueueError> {
        let inner = self.lock();
        let visible = inner.queued.iter().filter(|q| q.visible_at <= now).count() as u64;
        let oldest = inner.queued.iter().map(|q| q.enqueued_at).min();
        Ok(QueueFigures {
            messages: inner.queued.len() as u64,
            visible,
            not_visible: inner.queued.len() as u64 - visible,
            delayed: None,
            oldest_age_seconds: Some(oldest.map_or(0, |t| (now - t).num_seconds().max(0) as u64)),
        })
    }

    async fn dead_letters(&self, limit: usize) -> Result<DeadLetterReasons, QueueError> {
        let inner = self.lock();
        Ok(DeadLetterReasons {
            total: inner.dead.len() as u64,
            reasons: inner
                .dead
                .iter()
                .take(limit)
                .map(|(_, reason)| Some(reason.clone()))
                .collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(group: &str, dedupe: &str) -> QueueMessage {
        QueueMessage {
            group_id: group.into(),
            dedupe_id: dedupe.into(),
            body: format!("{group}/{dedupe}"),
        }
    }

    #[tokio::test]
    async fn a_users_later_message_waits_for_the_earlier_one() {
        let q = MemoryQueue::default();
        q.enqueue(&[message("u1", "a"), message("u1", "b"), message("u2", "c")])
            .await
            .unwrap();
        q.enqueue(&[message("u1", "a")]).await.unwrap();
        assert_eq!(q.depth(), (3, 0), "a queued redelivery is dropped");
        let lease = Duration::from_secs(60);
        let first = q.claim(Utc::now(), lease).await.unwrap().unwrap();
        let second = q.claim(Utc::now(), lease).await.unwrap().unwrap();
        assert_eq!(
            (first.body.as_str(), second.body.as_str()),
            ("u1/a", "u2/c")
        );
        assert!(q.claim(Utc::now(), lease).await.unwrap().is_none());
        let later = Utc::now() + chrono::Duration::seconds(30);
        q.retry_at(&first, later, "try again", true).await.unwrap();
        assert!(q.claim(Utc::now(), lease).await.unwrap().is_none());
        q.release_delayed();
        let again = q.claim(Utc::now(), lease).await.unwrap().unwrap();
        assert_eq!((again.body.as_str(), again.attempt), ("u1/a", 2));
        // An outcome under a stale claim changes nothing.
        q.ack(&first).await.unwrap();
        assert_eq!(q.depth(), (3, 0));
        q.dead_letter(&again, "broken").await.unwrap();
        assert_eq!(q.dead_letter_reasons(), vec!["broken".to_string()]);
        assert_eq!(q.redrive_dead_letters(), 1);
        assert_eq!(q.depth(), (3, 0));
    }

    #[tokio::test]
    async fn a_renewed_claim_stays_the_workers_and_a_lapsed_one_is_given_up() {
        let q = MemoryQueue::default();
        q.enqueue(&[message("u1", "a")]).await.unwrap();
        let lease = std::time::Duration::from_secs(30);
        let t0 = Utc::now();
        let first = q.claim(t0, lease).await.unwrap().expect("claimed");
        // Renewed before it lapses: nobody else gets it, at t0 + 50 s.
        assert!(q
            .renew(&first, t0 + chrono::Duration::seconds(20), lease)
            .await
            .unwrap());
        assert!(q
            .claim(t0 + chrono::Duration::seconds(45), lease)
            .await
            .unwrap()
            .is_none());
        // A worker killed mid-work renews no more: the message is worked again after the lease.
        let second = q
            .claim(t0 + chrono::Duration::seconds(51), lease)
            .await
            .unwrap()
            .expect("given up 30 s after the last renewal");
        assert!(
            !q.renew(&first, t0 + chrono::Duration::seconds(52), lease)
                .await
                .unwrap(),
            "the first claim is lost for good"
        );
        assert!(q
            .renew(&second, t0 + chrono::Duration::seconds(52), lease)
            .await
            .unwrap());
    }

    #[tokio::test]
    async fn an_operator_reads_depth_age_and_dead_letter_reasons_without_taking_work() {
        let q = MemoryQueue::default();
        let empty = q.figures(Utc::now()).await.unwrap();
        assert_eq!((empty.messages, empty.oldest_age_seconds), (0, Some(0)));
        q.enqueue(&[message("u1", "a"), message("u2", "b"), message("u3", "c")])
            .await
            .unwrap();
        let lease = Duration::from_secs(60);
        let worked = q.claim(Utc::now(), lease).await.unwrap().unwrap();
        let failed = q.claim(Utc::now(), lease).await.unwrap().unwrap();
        q.dead_letter(&failed, "user 00u2 has no email address")
            .await
            .unwrap();
        let later = Utc::now() + chrono::Duration::seconds(90);
        let figures = q.figures(later).await.unwrap();
        assert_eq!(
            (figures.messages, figures.visible, figures.not_visible),
            (2, 2, 0),
            "the claim's lease ran out by then"
        );
        assert!(figures.oldest_age_seconds.unwrap() >= 89, "{figures:?}");
        let now = q.figures(Utc::now()).await.unwrap();
        assert_eq!(
            (now.visible, now.not_visible),
            (1, 1),
            "one is being worked"
        );
        let dead = q.dead_letters(10).await.unwrap();
        assert_eq!(dead.total, 1);
        assert_eq!(
            dead.reasons,
            [Some("user 00u2 has no email address".into())]
        );
        assert_eq!(
            q.dead_letters(0).await.unwrap().reasons,
            Vec::<Option<String>>::new()
        );
        assert!(q.ack(&worked).await.is_ok());
        assert_eq!(q.depth(), (1, 1), "reading took nothing");
    }
}
