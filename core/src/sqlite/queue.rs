//! A durable FIFO queue in SQLite with per-user ordering, delayed retries and dead letters.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rusqlite::{params, OptionalExtension};

use super::{SqliteDb, SqliteError};
use crate::queue::{
    DeadLetterReasons, Queue, QueueError, QueueFigures, QueueMessage, QueueMonitor,
};

/// A message handed to the worker; it stays in the queue until acked, retried or dead-lettered,
/// so a crash mid-work means it is simply worked again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuedMessage {
    pub id: i64,
    /// The FIFO group (source/tenant/user).
    pub group_id: String,
    pub body: String,
    /// Attempts before this one.
    pub attempts: u32,
    /// This claim's token: an outcome recorded under an expired claim (the message was
    /// claimed again meanwhile) changes nothing.
    pub claim: String,
}

#[async_trait]
impl Queue for SqliteDb {
    async fn enqueue(&self, messages: &[QueueMessage]) -> Result<(), QueueError> {
        let messages = messages.to_vec();
        let now = Utc::now().timestamp_millis();
        self.run(move |conn| {
            let tx = conn.transaction()?;
            {
                // A redelivery still waiting in the queue is dropped here; one that was already
                // worked is recognised by the worker's dedupe record.
                let mut insert = tx.prepare_cached(
                    "INSERT INTO queue (group_id, dedupe_id, body, visible_at, enqueued_at)
                     VALUES (?1, ?2, ?3, ?4, ?4) ON CONFLICT (dedupe_id) DO NOTHING",
                )?;
                for m in &messages {
                    insert.execute(params![m.group_id, m.dedupe_id, m.body, now])?;
                }
            }
            tx.commit()?;
            Ok(())
        })
        .await
        .map_err(|e| QueueError(e.0))
    }
}

impl SqliteDb {
    /// Claims the oldest visible message that is first in its group, for `lease`: a user's
    /// later events wait while an earlier one is being worked or retried (as on SQS FIFO), so
    /// several workers, in one process or several, never work one user at once. A worker that
    /// dies mid-work loses its claim when the lease runs out, and the message is worked again.
    pub async fn next_message(
        &self,
        now: DateTime<Utc>,
        lease: chrono::Duration,
    ) -> Result<Option<QueuedMessage>, SqliteError> {
        let (now, until) = (now.timestamp_millis(), (now + lease).timestamp_millis());
        // `<process>.<random>` once the process registered as a worker: a restart on this file
        // can tell a dead process's claims from a live one's.
        let random = uuid::Uuid::new_v4().simple().to_string();
        let claim = match self.claim_prefix() {
            Some(instance) => format!("{instance}.{random}"),
            None => random,
        };
        self.run(move |conn| {
            let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let message = tx
                .query_row(
                    "SELECT id, group_id, body, attempts FROM queue q
                     WHERE visible_at <= ?1
                       AND id = (SELECT MIN(id) FROM queue WHERE group_id = q.group_id)
                     ORDER BY id LIMIT 1",
                    params![now],
                    |row| {
                        Ok(QueuedMessage {
                            id: row.get(0)?,
                            group_id: row.get(1)?,
                            body: row.get(2)?,
                            attempts: row.get(3)?,
                            claim: claim.clone(),
                        })
                    },
                )
                .optional()?;
            if let Some(m) = &message {
                tx.execute(
                    "UPDATE queue SET visible_at = ?2, claim = ?3 WHERE id = ?1",
                    params![m.id, until, m.claim],
                )?;
            }
            tx.commit()?;
            Ok(message)
        })
        .await
    }

    pub async fn ack(&self, m: &QueuedMessage) -> Result<(), SqliteError> {
        let (id, claim) = (m.id, m.claim.clone());
        self.run(move |conn| {
            conn.execute(
                "DELETE FROM queue WHERE id = ?1 AND claim = ?2",
                params![id, claim],
            )?;
            Ok(())
        })
        .await
    }

    /// Makes the message visible again at `visible_at`, counting the attempt.
    pub async fn retry_later(
        &self,
        m: &QueuedMessage,
        visible_at: DateTime<Utc>,
        error: &str,
    ) -> Result<(), SqliteError> {
        self.reschedule(m, visible_at, error, 1).await
    }

    /// Makes the message visible again at `visible_at` without counting an attempt (the failure
    /// was not the message's: the target refused the relay's credential).
    pub async fn postpone(
        &self,
        m: &QueuedMessage,
        visible_at: DateTime<Utc>,
        error: &str,
    ) -> Result<(), SqliteError> {
        self.reschedule(m, visible_at, error, 0).await
    }

    async fn reschedule(
        &self,
        m: &QueuedMessage,
        visible_at: DateTime<Utc>,
        error: &str,
        attempts: u32,
    ) -> Result<(), SqliteError> {
        let at = visible_at.timestamp_millis();
        let error = error.to_string();
        let (id, claim) = (m.id, m.claim.clone());
        self.run(move |conn| {
            conn.execute(
                "UPDATE queue SET attempts = attempts + ?4, visible_at = ?2, last_error = ?3
                 WHERE id = ?1 AND claim = ?5",
                params![id, at, error, attempts, claim],
            )?;
            Ok(())
        })
        .await
    }

    /// Moves the message to the dead letters with its reason, in one transaction.
    pub async fn dead_letter(&self, m: &QueuedMessage, reason: &str) -> Result<(), SqliteError> {
        let reason = reason.to_string();
        let (id, claim) = (m.id, m.claim.clone());
        let now = Utc::now().timestamp_millis();
        self.run(move |conn| {
            let tx = conn.transaction()?;
            tx.execute(
                "INSERT INTO dead_letters (group_id, dedupe_id, body, reason, attempts, failed_at)
                 SELECT group_id, dedupe_id, body, ?2, attempts + 1, ?3 FROM queue WHERE id = ?1 AND claim = ?4",
                params![id, reason, now, claim],
            )?;
            tx.execute("DELETE FROM queue WHERE id = ?1 AND claim = ?2", params![id, claim])?;
            tx.commit()?;
            Ok(())
        })
        .await
    }

    /// Messages waiting (including those waiting for a retry) and dead letters.
    pub async fn depth(&self) -> Result<(u64, u64), SqliteError> {
        self.run(|conn| {
            let queued: u64 = conn.query_row("SELECT COUNT(*) FROM queue", [], |r| r.get(0))?;
            let dead: u64 =
                conn.query_row("SELECT COUNT(*) FROM dead_letters", [], |r| r.get(0))?;
            Ok((queued, dead))
        })
        .await
    }

    /// How long the oldest message on the queue has waited at `now` (0 when it is empty).
    pub async fn oldest_queued_age(&self, now: DateTime<Utc>) -> Result<u64, SqliteError> {
        let now = now.timestamp_millis();
        self.run(move |conn| {
            let oldest: Option<i64> =
                conn.query_row("SELECT MIN(enqueued_at) FROM queue", [], |r| r.get(0))?;
            Ok(oldest.map_or(0, |t| (now.saturating_sub(t) / 1000).max(0) as u64))
        })
        .await
    }

    /// Puts every dead letter back on the queue (once its cause is fixed); returns how many.
    /// Safe to repeat: the worker skips what was applied, and a message already queued again
    /// is not doubled.
    pub async fn redrive_dead_letters(&self) -> Result<usize, SqliteError> {
        let now = Utc::now().timestamp_millis();
        self.run(move |conn| {
            let tx = conn.transaction()?;
            let moved = tx.execute(
                "INSERT INTO queue (group_id, dedupe_id, body, visible_at, enqueued_at)
                 SELECT group_id, dedupe_id, body, ?1, ?1 FROM dead_letters ORDER BY id
                 ON CONFLICT (dedupe_id) DO NOTHING",
                params![now],
            )?;
            tx.execute("DELETE FROM dead_letters", [])?;
            tx.commit()?;
            Ok(moved)
        })
        .await
    }

    /// The dead letters' reasons, oldest first (for operators and tests).
    pub async fn dead_letter_reasons(&self) -> Result<Vec<String>, SqliteError> {
        self.run(|conn| {
            let mut stmt = conn.prepare("SELECT reason FROM dead_letters ORDER BY id")?;
            let rows = stmt.query_map([], |r| r.get(0))?;
            Ok(rows.collect::<Result<Vec<String>, _>>()?)
        })
        .await
    }
}

#[async_trait]
impl QueueMonitor for SqliteDb {
    async fn figures(&self, now: DateTime<Utc>) -> Result<QueueFigures, QueueError> {
        let at = now.timestamp_millis();
        let (messages, visible): (u64, u64) = self
            .run(move |conn| {
                Ok(conn.query_row(
                    "SELECT COUNT(*), COALESCE(SUM(visible_at <= ?1), 0) FROM queue",
                    params![at],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )?)
            })
            .await
            .map_err(|e| QueueError(e.0))?;
        let oldest = self
            .oldest_queued_age(now)
            .await
            .map_err(|e| QueueError(e.0))?;
        Ok(QueueFigures {
            messages,
            visible,
            not_visible: messages.saturating_sub(visible),
            delayed: None,
            oldest_age_seconds: Some(oldest),
        })
    }

    async fn dead_letters(&self, limit: usize) -> Result<DeadLetterReasons, QueueError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.run(move |conn| {
            let total: u64 =
                conn.query_row("SELECT COUNT(*) FROM dead_letters", [], |r| r.get(0))?;
            let mut stmt = conn.prepare("SELECT reason FROM dead_letters ORDER BY id LIMIT ?1")?;
            let reasons = stmt
                .query_map(params![limit], |r| r.get::<_, String>(0).map(Some))?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(DeadLetterReasons { total, reasons })
        })
        .await
        .map_err(|e| QueueError(e.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LEASE: chrono::Duration = chrono::Duration::seconds(30);

    fn msg(group: &str, dedupe: &str) -> QueueMessage {
        QueueMessage {
            group_id: group.into(),
            dedupe_id: dedupe.into(),
            body: format!("{group}:{dedupe}"),
        }
    }

    fn temp_db() -> (SqliteDb, std::path::PathBuf) {
        let path = std::env::temp_dir().join(format!("scim-relay-q-{}.db", uuid::Uuid::new_v4()));
        (SqliteDb::open(&path).unwrap(), path)
    }

    #[tokio::test]
    async fn messages_survive_reopening_the_file() {
        let (db, path) = temp_db();
        db.enqueue(&[msg("g", "1")]).await.unwrap();
        drop(db);
        let db = SqliteDb::open(&path).unwrap();
        let m = db.next_message(Utc::now(), LEASE).await.unwrap().unwrap();
        assert_eq!(m.body, "g:1");
        let _ = std::fs::remove_file(path);
    }

    #[tokio::test]
    async fn a_waiting_duplicate_is_dropped() {
        let (db, path) = temp_db();
        db.enqueue(&[msg("g", "1"), msg("g", "1")]).await.unwrap();
        db.enqueue(&[msg("g", "1")]).await.unwrap();
        assert_eq!(db.depth().await.unwrap(), (1, 0));
        let _ = std::fs::remove_file(path);
    }

    #[tokio::test]
    async fn a_retrying_message_holds_back_its_group_but_not_others() {
        let (db, path) = temp_db();
        db.enqueue(&[msg("a", "1"), msg("a", "2"), msg("b", "3")])
            .await
            .unwrap();
        let now = Utc::now();
        let first = db.next_message(now, LEASE).await.unwrap().unwrap();
        assert_eq!(first.body, "a:1");
        db.retry_later(&first, now + chrono::Duration::seconds(60), "boom")
            .await
            .unwrap();
        // a:2 must wait behind a:1; b:3 goes ahead.
        let next = db.next_message(now, LEASE).await.unwrap().unwrap();
        assert_eq!(next.body, "b:3");
        db.ack(&next).await.unwrap();
        assert_eq!(db.next_message(now, LEASE).await.unwrap(), None);
        // Once a:1 is visible again it comes back with its attempt counted.
        let later = db
            .next_message(now + chrono::Duration::seconds(61), LEASE)
            .await
            .unwrap()
            .unwrap();
        assert_eq!((later.body.as_str(), later.attempts), ("a:1", 1));
        // A postponement does not count as an attempt.
        db.postpone(&later, now, "credential").await.unwrap();
        let again = db
            .next_message(now + chrono::Duration::seconds(61), LEASE)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(again.attempts, 1);
        let _ = std::fs::remove_file(path);
    }

    #[tokio::test]
    async fn a_claimed_message_is_nobody_elses_until_its_lease_ends() {
        let (db, path) = temp_db();
        db.enqueue(&[msg("a", "1"), msg("a", "2"), msg("b", "3")])
            .await
            .unwrap();
        let now = Utc::now();
        let first = db.next_message(now, LEASE).await.unwrap().unwrap();
        // A second worker gets neither a:1 (claimed) nor a:2 (behind it), but b:3.
        let second = db.next_message(now, LEASE).await.unwrap().unwrap();
        assert_eq!((first.body.as_str(), second.body.as_str()), ("a:1", "b:3"));
        assert_eq!(db.next_message(now, LEASE).await.unwrap(), None);
        // The first worker died: after the lease a:1 is worked again, before a:2.
        let after = now + LEASE + chrono::Duration::seconds(1);
        let again = db.next_message(after, LEASE).await.unwrap().unwrap();
        assert_eq!(again.body, "a:1");
        // The first worker comes back late: its outcome, under the old claim, changes nothing.
        db.ack(&first).await.unwrap();
        assert_eq!(db.depth().await.unwrap(), (3, 0));
        db.ack(&again).await.unwrap();
        assert_eq!(db.depth().await.unwrap(), (2, 0));
        let _ = std::fs::remove_file(path);
    }

    #[tokio::test]
    async fn dead_letters_keep_the_reason() {
        let (db, path) = temp_db();
        db.enqueue(&[msg("a", "1")]).await.unwrap();
        let m = db.next_message(Utc::now(), LEASE).await.unwrap().unwrap();
        db.dead_letter(&m, "bad signature").await.unwrap();
        assert_eq!(db.depth().await.unwrap(), (0, 1));
        assert_eq!(
            db.dead_letter_reasons().await.unwrap(),
            vec!["bad signature".to_string()]
        );
        // Redriven once the cause is fixed: back on the queue, and the dead letters empty.
        assert_eq!(db.redrive_dead_letters().await.unwrap(), 1);
        assert_eq!(db.depth().await.unwrap(), (1, 0));
        let again = db.next_message(Utc::now(), LEASE).await.unwrap().unwrap();
        assert_eq!(again.body, "a:1");
        let _ = std::fs::remove_file(path);
    }

    #[tokio::test]
    async fn a_renewed_claim_stays_the_workers_and_a_lapsed_one_is_given_up() {
        use crate::queue::ClaimQueue;
        let (db, path) = temp_db();
        db.enqueue(&[msg("g", "1")]).await.unwrap();
        let lease = std::time::Duration::from_secs(30);
        let t0 = Utc::now();
        let first = db.claim(t0, lease).await.unwrap().expect("claimed");
        assert!(db
            .renew(&first, t0 + chrono::Duration::seconds(20), lease)
            .await
            .unwrap());
        assert!(db
            .claim(t0 + chrono::Duration::seconds(45), lease)
            .await
            .unwrap()
            .is_none());
        let second = db
            .claim(t0 + chrono::Duration::seconds(51), lease)
            .await
            .unwrap()
            .expect("given up 30 s after the last renewal");
        assert!(!db
            .renew(&first, t0 + chrono::Duration::seconds(52), lease)
            .await
            .unwrap());
        assert!(db
            .renew(&second, t0 + chrono::Duration::seconds(52), lease)
            .await
            .unwrap());
        let _ = std::fs::remove_file(path);
    }

    #[tokio::test]
    async fn an_operator_reads_depth_age_and_dead_letter_reasons_without_taking_work() {
        let (db, path) = temp_db();
        let empty = db.figures(Utc::now()).await.unwrap();
        assert_eq!((empty.messages, empty.oldest_age_seconds), (0, Some(0)));
        db.enqueue(&[msg("a", "1"), msg("b", "2"), msg("c", "3")])
            .await
            .unwrap();
        let now = Utc::now();
        let worked = db.next_message(now, LEASE).await.unwrap().unwrap();
        let failed = db.next_message(now, LEASE).await.unwrap().unwrap();
        db.dead_letter(&failed, "user 00u2 has no email address")
            .await
            .unwrap();
        let figures = db.figures(Utc::now()).await.unwrap();
        assert_eq!(
            (figures.messages, figures.visible, figures.not_visible),
            (2, 1, 1),
            "one is being worked"
        );
        let later = db
            .figures(Utc::now() + chrono::Duration::seconds(90))
            .await
            .unwrap();
        assert_eq!(
            (later.visible, later.not_visible),
            (2, 0),
            "its lease ran out"
        );
        assert!(later.oldest_age_seconds.unwrap() >= 89, "{later:?}");
        let dead = db.dead_letters(10).await.unwrap();
        assert_eq!(dead.total, 1);
        assert_eq!(
            dead.reasons,
            [Some("user 00u2 has no email address".into())]
        );
        assert!(db.dead_letters(0).await.unwrap().reasons.is_empty());
        db.ack(&worked).await.unwrap();
        assert_eq!(db.depth().await.unwrap(), (1, 1), "reading took nothing");
        let _ = std::fs::remove_file(path);
    }
}
