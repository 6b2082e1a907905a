//! Reconciliation: every user a directory changed since the stored position becomes a trigger
//! on the same queue as webhook events, and the worker re-reads each one. It only ever re-checks
//! users, so it cannot deactivate anyone the directory still has; and a read that is empty or
//! fails part-way enqueues nothing and keeps the old position.

use super::{FeedKind, FeedOutcome, FeedReport, FeedSource, Sweeper};
use crate::directory::{DirectoryChanges, FeedError};
use crate::envelope::{Subject, Trigger, ENVELOPE_VERSION};

pub const RECONCILIATION_EVENT: &str = "scim-relay.reconciliation";

/// What a reconciliation may read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Pass {
    /// The scheduled run: the changes since the position, or every user when a full pass is
    /// due or the position is lost.
    Scheduled,
    /// A catch-up inside a worker: only the changes since the position; what needs a full
    /// pass is deferred to the scheduled run.
    DeltaOnly,
}

impl Sweeper {
    pub(super) async fn reconcile(&self, feed: &FeedSource, pass: Pass) -> FeedReport {
        let outcome = match self.reconcile_feed(feed, pass).await {
            Ok(outcome) => outcome,
            Err(reason) => {
                tracing::warn!(source = %feed.source, tenant = %feed.tenant, "reconciliation aborted: {reason}");
                FeedOutcome::Aborted { reason }
            }
        };
        FeedReport {
            source: feed.source,
            tenant: feed.tenant.clone(),
            feed: feed.kind,
            outcome,
        }
    }

    async fn reconcile_feed(&self, feed: &FeedSource, pass: Pass) -> Result<FeedOutcome, String> {
        let name = feed.cursor_name();
        let cursor = self
            .p
            .store
            .load_cursor(&name)
            .await
            .map_err(|e| e.to_string())?;
        let now = self.p.clock.now();
        let full_name = format!("{name}/last-full");
        let last_full = self
            .p
            .store
            .load_cursor(&full_name)
            .await
            .map_err(|e| e.to_string())?
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(&t).ok())
            .map(|t| t.with_timezone(&chrono::Utc));
        // A full pass now and then finds what no change feed shows: users deleted outright.
        let full_due = feed.kind == FeedKind::Users
            && last_full.is_none_or(|t| now - t >= self.p.full_pass_interval);
        let cursor = if full_due { None } else { cursor };
        if pass == Pass::DeltaOnly && cursor.is_none() {
            return Ok(FeedOutcome::Deferred);
        }
        let (mut changes, full) = match feed.feed.changes_since(cursor.as_deref(), now).await {
            Ok(changes) => (changes, cursor.is_none()),
            Err(FeedError::CursorExpired) if pass == Pass::DeltaOnly => {
                return Ok(FeedOutcome::Deferred)
            }
            Err(FeedError::CursorExpired) => {
                tracing::info!(source = %feed.source, "stored position expired; reading every user");
                let changes = feed
                    .feed
                    .changes_since(None, now)
                    .await
                    .map_err(|e| e.to_string())?;
                (changes, true)
            }
            Err(e) => return Err(e.to_string()),
        };
        if full && changes.user_ids.is_empty() && feed.kind == FeedKind::Users {
            // No real directory has nobody in it: this is a broken read, not a fact. (A
            // configured group may well be empty.)
            return Err(
                "a full read of the directory returned no users; nothing enqueued, position kept"
                    .into(),
            );
        }
        let mut vanished = 0;
        if full && feed.kind == FeedKind::Users {
            let listed: std::collections::HashSet<&String> = changes.user_ids.iter().collect();
            let gone: Vec<String> = self
                .p
                .store
                .active_user_ids(feed.source, &feed.tenant)
                .await
                .map_err(|e| e.to_string())?
                .into_iter()
                .filter(|id| !listed.contains(id))
                .collect();
            vanished = gone.len();
            changes.user_ids.extend(gone);
        }
        let users = changes.user_ids.len();
        self.enqueue_changes(feed, &changes, full).await?;
        self.p
            .store
            .save_cursor(&name, &changes.cursor)
            .await
            .map_err(|e| {
                format!("triggers enqueued, position not saved (next run repeats them): {e}")
            })?;
        if full {
            if let Err(e) = self
                .p
                .store
                .save_cursor(&full_name, &now.to_rfc3339())
                .await
            {
                tracing::warn!("time of the full pass not recorded: {e}");
            }
        }
        tracing::info!(source = %feed.source, tenant = %feed.tenant, users, full, vanished, "reconciliation enqueued");
        Ok(FeedOutcome::Enqueued {
            users,
            full,
            vanished,
        })
    }

    async fn enqueue_changes(
        &self,
        feed: &FeedSource,
        changes: &DirectoryChanges,
        full: bool,
    ) -> Result<(), String> {
        let now = self.p.clock.now();
        // One id per pass: a user changed again after this pass gets a new trigger, never one
        // the worker would skip as already applied.
        let pass = uuid::Uuid::new_v4().simple().to_string();
        let messages: Vec<_> = changes
            .user_ids
            .iter()
            .map(|user_id| {
                self.p.signer.seal(&Trigger {
                    v: ENVELOPE_VERSION,
                    source: feed.source,
                    tenant: feed.tenant.clone(),
                    subject: Subject::User {
                        user_id: user_id.clone(),
                    },
                    event_id: format!("sweep-{pass}"),
                    event_type: if full {
                        format!("{RECONCILIATION_EVENT}.full")
                    } else {
                        RECONCILIATION_EVENT.to_string()
                    },
                    published: None,
                    received: now,
                    hint: None,
                })
            })
            .collect();
        // Enqueued in slices, so one failure leaves little half-done (the position is not
        // saved, and the next run enqueues the same users again).
        for slice in messages.chunks(100) {
            self.p
                .queue
                .enqueue(slice)
                .await
                .map_err(|e| e.to_string())?;
        }
        Ok(())
    }
}
