//! The SQLite queue as the consumer's port: claims become deliveries, dispositions become the
//! queue's ack, reschedule and dead-letter; and the credential breaker kept as a cursor row,
//! so every process on one database file pauses together.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::queue::QueuedMessage;
use super::SqliteDb;
use crate::breaker::CredentialBreaker;
use crate::queue::QueueError;
use crate::queue::{ClaimQueue, Delivery, WorkQueue};
use crate::state::{StoreError, SweepStore};

const BREAKER_CURSOR: &str = "breaker/target-credential";

fn queued(d: &Delivery) -> Result<QueuedMessage, QueueError> {
    Ok(QueuedMessage {
        id: d
            .id
            .parse()
            .map_err(|_| QueueError(format!("not a queue row id: {}", d.id)))?,
        group_id: d.group_id.clone(),
        body: d.body.clone(),
        attempts: d.attempt.saturating_sub(1),
        claim: d.handle.clone(),
    })
}

fn queue_error(e: super::SqliteError) -> QueueError {
    QueueError(e.0)
}

#[async_trait]
impl WorkQueue for SqliteDb {
    async fn ack(&self, delivery: &Delivery) -> Result<(), QueueError> {
        SqliteDb::ack(self, &queued(delivery)?)
            .await
            .map_err(queue_error)
    }

    async fn retry_at(
        &self,
        delivery: &Delivery,
        at: DateTime<Utc>,
        reason: &str,
        counted: bool,
    ) -> Result<(), QueueError> {
        let m = queued(delivery)?;
        if counted {
            self.retry_later(&m, at, reason).await
        } else {
            self.postpone(&m, at, reason).await
        }
        .map_err(queue_error)
    }

    async fn dead_letter(&self, delivery: &Delivery, reason: &str) -> Result<(), QueueError> {
        SqliteDb::dead_letter(self, &queued(delivery)?, reason)
            .await
            .map_err(queue_error)
    }
}

#[async_trait]
impl ClaimQueue for SqliteDb {
    async fn claim(
        &self,
        now: DateTime<Utc>,
        lease: Duration,
    ) -> Result<Option<Delivery>, QueueError> {
        let lease = chrono::Duration::from_std(lease).unwrap_or(chrono::Duration::MAX);
        let claimed = self.next_message(now, lease).await.map_err(queue_error)?;
        Ok(claimed.map(|m| Delivery {
            id: m.id.to_string(),
            group_id: m.group_id,
            body: m.body,
            attempt: m.attempts + 1,
            handle: m.claim,
        }))
    }

    async fn renew(
        &self,
        delivery: &Delivery,
        now: DateTime<Utc>,
        lease: Duration,
    ) -> Result<bool, QueueError> {
        let id: i64 = delivery
            .id
            .parse()
            .map_err(|_| QueueError(format!("not a SQLite queue id: {}", delivery.id)))?;
        let until = (now + chrono::Duration::from_std(lease).unwrap_or(chrono::Duration::MAX))
            .timestamp_millis();
        let claim = delivery.handle.clone();
        let changed = self
            .run(move |conn| {
                Ok(conn.execute(
                    "UPDATE queue SET visible_at = ?2 WHERE id = ?1 AND claim = ?3",
                    rusqlite::params![id, until, claim],
                )?)
            })
            .await
            .map_err(queue_error)?;
        Ok(changed == 1)
    }
}

#[async_trait]
impl CredentialBreaker for SqliteDb {
    async fn open_until(&self, now: DateTime<Utc>) -> Result<Option<DateTime<Utc>>, StoreError> {
        let until = self
            .load_cursor(BREAKER_CURSOR)
            .await?
            .and_then(|v| DateTime::parse_from_rfc3339(&v).ok())
            .map(|t| t.with_timezone(&Utc));
        Ok(until.filter(|u| *u > now))
    }

    async fn open(&self, until: DateTime<Utc>) -> Result<(), StoreError> {
        self.save_cursor(BREAKER_CURSOR, &until.to_rfc3339()).await
    }
}
