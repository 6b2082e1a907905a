//! Reconciliation: every user a directory changed since the stored position becomes a trigger
//! on the same queue as webhook events. It only ever re-checks users, so it cannot deactivate
//! anyone the directory still has. The listing is handed on page by page as it is read, so a
//! pass over 100,000 users holds one page and the ids seen, not the directory; a read that
//! fails part-way has enqueued re-checks only (harmless) and keeps the old position.
//!
//! Where the listing returns whole users (Okta's `/api/v1/users`), each trigger carries its
//! user as listed ([`ListedUser`]): the worker takes it for its own read of an active user,
//! so a pass costs the IdP one call per page instead of one or more per user.

use std::collections::HashSet;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::{FeedKind, FeedOutcome, FeedReport, FeedSource, Sweeper};
use crate::directory::{FeedError, Listing, ListingSink};
use crate::envelope::{Subject, Trigger, ENVELOPE_VERSION};
use crate::model::ListedUser;

pub const RECONCILIATION_EVENT: &str = "scim-relay.reconciliation";

/// Triggers a queue request carries at most (the queue's adapters split further as they must).
const ENQUEUE_SLICE: usize = 100;

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
        let mut sink = PassSink::new(self, feed, cursor.is_none());
        let next = match feed
            .feed
            .read_changes(cursor.as_deref(), now, &mut sink)
            .await
        {
            Ok(next) => next,
            Err(FeedError::CursorExpired) if pass == Pass::DeltaOnly => {
                return Ok(FeedOutcome::Deferred)
            }
            Err(FeedError::CursorExpired) => {
                tracing::info!(source = %feed.source, "stored position expired; reading every user");
                sink.full = true;
                feed.feed
                    .read_changes(None, now, &mut sink)
                    .await
                    .map_err(|e| sink.failed(e))?
            }
            Err(e) => return Err(sink.failed(e)),
        };
        let full = sink.full;
        if full && sink.listed.is_empty() && feed.kind == FeedKind::Users {
            // No real directory has nobody in it: this is a broken read, not a fact. (A
            // configured group may well be empty.)
            return Err(
                "a full read of the directory returned no users; nothing enqueued, position kept"
                    .into(),
            );
        }
        let mut vanished = 0;
        if full && feed.kind == FeedKind::Users {
            let gone: Vec<Listing> = self
                .p
                .store
                .active_user_ids(feed.source, &feed.tenant)
                .await
                .map_err(|e| e.to_string())?
                .into_iter()
                .filter(|id| !sink.listed.contains(id))
                .map(Listing::id)
                .collect();
            vanished = gone.len();
            sink.page(gone).await.map_err(|e| e.to_string())?;
        }
        let users = sink.listed.len();
        self.p.store.save_cursor(&name, &next).await.map_err(|e| {
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
        tracing::info!(
            source = %feed.source,
            tenant = %feed.tenant,
            users,
            full,
            vanished,
            carried = sink.carried,
            "reconciliation enqueued"
        );
        Ok(FeedOutcome::Enqueued {
            users,
            full,
            vanished,
        })
    }
}

/// Where a pass's pages go: each page's triggers are enqueued as the page comes, and the ids
/// are kept (once each; a full pass then knows whom the directory no longer lists).
struct PassSink<'a> {
    sweeper: &'a Sweeper,
    feed: &'a FeedSource,
    full: bool,
    /// One id per pass: a user changed again after this pass gets a new trigger, never one
    /// the worker would skip as already applied.
    pass: String,
    listed: HashSet<String>,
    /// Taken before the page being read now was asked for: no later than the IdP's answer.
    asked_at: DateTime<Utc>,
    /// Triggers that carry their user as listed.
    carried: usize,
}

impl<'a> PassSink<'a> {
    fn new(sweeper: &'a Sweeper, feed: &'a FeedSource, full: bool) -> Self {
        Self {
            sweeper,
            feed,
            full,
            pass: uuid::Uuid::new_v4().simple().to_string(),
            listed: HashSet::new(),
            asked_at: sweeper.p.clock.now(),
            carried: 0,
        }
    }

    fn trigger(&self, listing: Listing, now: DateTime<Utc>) -> Trigger {
        Trigger {
            v: ENVELOPE_VERSION,
            source: self.feed.source,
            tenant: self.feed.tenant.clone(),
            subject: Subject::User {
                user_id: listing.id,
            },
            event_id: format!("sweep-{}", self.pass),
            event_type: if self.full {
                format!("{RECONCILIATION_EVENT}.full")
            } else {
                RECONCILIATION_EVENT.to_string()
            },
            published: None,
            received: now,
            hint: None,
            listed: listing.user.map(|user| {
                Box::new(ListedUser {
                    user: *user,
                    read_at: self.asked_at,
                })
            }),
        }
    }

    /// Why the pass stopped, with what it had enqueued by then.
    fn failed(&self, e: FeedError) -> String {
        match self.listed.len() {
            0 => e.to_string(),
            n => format!("{e} (after {n} users enqueued for a re-check; position kept)"),
        }
    }
}

#[async_trait]
impl ListingSink for PassSink<'_> {
    async fn page(&mut self, page: Vec<Listing>) -> Result<(), FeedError> {
        let now = self.sweeper.p.clock.now();
        let mut messages = Vec::with_capacity(page.len());
        for listing in page {
            if self.listed.insert(listing.id.clone()) {
                self.carried += usize::from(listing.user.is_some());
                messages.push(self.sweeper.p.signer.seal(&self.trigger(listing, now)));
            }
        }
        // In slices, so one failure leaves little half-done (the position is not saved, and
        // the next run enqueues the same users again).
        for slice in messages.chunks(ENQUEUE_SLICE) {
            self.sweeper
                .p
                .queue
                .enqueue(slice)
                .await
                .map_err(|e| FeedError::Sink(format!("triggers not enqueued: {e}")))?;
        }
        self.asked_at = self.sweeper.p.clock.now();
        Ok(())
    }
}
