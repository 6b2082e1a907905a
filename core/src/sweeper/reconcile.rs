//! Reconciliation: every user a directory changed since the stored position becomes a trigger
//! on the same queue as webhook events. It only ever re-checks users, so it cannot deactivate
//! anyone the directory still has. The listing is handed on page by page as it is read, so a
//! pass over 100,000 users holds one page and the ids seen, not the directory; a read that
//! fails part-way has enqueued re-checks only (harmless) and keeps the old position.
//!
//! Where the listing returns whole users (Okta's `/api/v1/users`), each trigger carries its
//! user as listed ([`ListedDirectoryUser`]): the worker takes it for its own read of an active user,
//! so a pass costs the IdP one call per page instead of one or more per user.

use std::collections::HashSet;
use std::time::Instant;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{FeedKind, FeedOutcome, FeedReport, FeedSource, Sweeper};
use crate::directory::{FeedError, Flow, Listing, ListingSink, ReadEnd};
use crate::envelope::{Subject, Trigger, ENVELOPE_VERSION};
use crate::model::ListedDirectoryUser;

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
    /// One feed's reconciliation; a pass still reading at `until` pauses and goes on at the
    /// next run (where the feed can resume).
    pub(super) async fn reconcile(
        &self,
        feed: &FeedSource,
        pass: Pass,
        until: Option<Instant>,
    ) -> FeedReport {
        let outcome = match self.reconcile_feed(feed, pass, until).await {
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

    async fn reconcile_feed(
        &self,
        feed: &FeedSource,
        pass: Pass,
        until: Option<Instant>,
    ) -> Result<FeedOutcome, String> {
        let name = feed.cursor_name();
        let paused_name = format!("{name}/paused");
        let store = &self.p.store;
        let paused = store
            .load_cursor(&paused_name)
            .await
            .map_err(|e| e.to_string())?
            .and_then(|v| serde_json::from_str::<PausedPass>(&v).ok());
        if pass == Pass::DeltaOnly && paused.is_some() {
            // A pass is under way, one run at a time: the scheduled run goes on with it.
            return Ok(FeedOutcome::Deferred);
        }
        let now = self.p.clock.now();
        let full_name = format!("{name}/last-full");
        let mut resumed = None;
        if let Some(paused) = paused {
            let mut sink = PassSink::resuming(self, feed, &paused, until);
            match feed
                .feed
                .read_changes(None, Some(&paused.resume), now, &mut sink)
                .await
            {
                Ok(end) => resumed = Some((sink, end)),
                Err(FeedError::CursorExpired) => {
                    tracing::info!(source = %feed.source, "the paused pass cannot go on; starting over");
                    self.forget_paused(&paused_name, &paused).await;
                }
                Err(e) => return Err(sink.failed(e)),
            }
        }
        let (mut sink, end) = match resumed {
            Some(resumed) => resumed,
            None => {
                let cursor = store.load_cursor(&name).await.map_err(|e| e.to_string())?;
                let last_full = store
                    .load_cursor(&full_name)
                    .await
                    .map_err(|e| e.to_string())?
                    .and_then(|t| chrono::DateTime::parse_from_rfc3339(&t).ok())
                    .map(|t| t.with_timezone(&chrono::Utc));
                // A full pass now and then finds what no change feed shows: users deleted
                // outright.
                let full_due = feed.kind == FeedKind::Users
                    && last_full.is_none_or(|t| now - t >= self.p.full_pass_interval);
                let cursor = if full_due { None } else { cursor };
                if pass == Pass::DeltaOnly && cursor.is_none() {
                    return Ok(FeedOutcome::Deferred);
                }
                let mut sink = PassSink::new(self, feed, cursor.is_none(), until);
                let end = match feed
                    .feed
                    .read_changes(cursor.as_deref(), None, now, &mut sink)
                    .await
                {
                    Ok(end) => end,
                    Err(FeedError::CursorExpired) if pass == Pass::DeltaOnly => {
                        return Ok(FeedOutcome::Deferred)
                    }
                    Err(FeedError::CursorExpired) => {
                        tracing::info!(source = %feed.source, "stored position expired; reading every user");
                        sink.full = true;
                        feed.feed
                            .read_changes(None, None, now, &mut sink)
                            .await
                            .map_err(|e| sink.failed(e))?
                    }
                    Err(e) => return Err(sink.failed(e)),
                };
                (sink, end)
            }
        };
        let next = match end {
            ReadEnd::Done { cursor } => cursor,
            ReadEnd::Paused { resume } => return self.pause(&paused_name, &sink, resume).await,
        };
        let full = sink.full;
        let listed_users = sink.earlier + sink.listed.len();
        if sink.checks_vanished() && listed_users == 0 {
            // No real directory has nobody in it: this is a broken read, not a fact. (A
            // configured group may well be empty.)
            return Err(
                "a full read of the directory returned no users; nothing enqueued, position kept"
                    .into(),
            );
        }
        let mut vanished = 0;
        if sink.checks_vanished() {
            // Whom earlier runs of this pass listed.
            let mut earlier = HashSet::new();
            for k in 0..sink.chunks {
                let chunk = store
                    .load_cursor(&chunk_name(&paused_name, &sink.pass, k))
                    .await
                    .map_err(|e| e.to_string())?
                    .unwrap_or_default();
                earlier.extend(chunk.lines().map(str::to_string));
            }
            let listed = |id: &String| sink.listed.contains(id) || earlier.contains(id);
            let gone: Vec<Listing> = store
                .active_user_ids(feed.source, &feed.tenant)
                .await
                .map_err(|e| e.to_string())?
                .into_iter()
                .filter(|id| !listed(id))
                .map(Listing::id)
                .collect();
            vanished = gone.len();
            sink.page(gone).await.map_err(|e| e.to_string())?;
        }
        let users = listed_users + vanished;
        store.save_cursor(&name, &next).await.map_err(|e| {
            format!("triggers enqueued, position not saved (next run repeats them): {e}")
        })?;
        if full {
            if let Err(e) = store
                .save_cursor(&full_name, &sink.started.to_rfc3339())
                .await
            {
                tracing::warn!("time of the full pass not recorded: {e}");
            }
        }
        if sink.resumed {
            self.forget_paused(&paused_name, &sink.paused(String::new()))
                .await;
        }
        tracing::info!(
            source = %feed.source,
            tenant = %feed.tenant,
            users,
            full,
            vanished,
            carried = sink.carried,
            runs = sink.chunks + 1,
            "reconciliation enqueued"
        );
        Ok(FeedOutcome::Enqueued {
            users,
            full,
            vanished,
        })
    }

    /// Keeps a pass that ran out of time for the next run: whom this run listed (in chunks a
    /// DynamoDB item holds), and where the listing goes on. The position is not moved.
    async fn pause(
        &self,
        paused_name: &str,
        sink: &PassSink<'_>,
        resume: String,
    ) -> Result<FeedOutcome, String> {
        let store = &self.p.store;
        // Only the vanished-user check at the pass's end reads them.
        let ids: Vec<&String> = if sink.checks_vanished() {
            sink.listed.iter().collect()
        } else {
            Vec::new()
        };
        let mut chunks = sink.chunks;
        for text in listed_chunks(ids) {
            store
                .save_cursor(&chunk_name(paused_name, &sink.pass, chunks), &text)
                .await
                .map_err(|e| e.to_string())?;
            chunks += 1;
        }
        let mut paused = sink.paused(resume);
        paused.chunks = chunks;
        let text = serde_json::to_string(&paused).map_err(|e| e.to_string())?;
        store
            .save_cursor(paused_name, &text)
            .await
            .map_err(|e| format!("the pass could not be kept for the next run: {e}"))?;
        tracing::info!(
            source = %sink.feed.source,
            tenant = %sink.feed.tenant,
            users = paused.listed,
            full = paused.full,
            "reconciliation paused: the sweeper's time runs low; the next run goes on"
        );
        Ok(FeedOutcome::Paused {
            users: paused.listed,
            full: paused.full,
        })
    }

    /// Drops a paused pass and the ids its runs kept. A failure only leaves them behind: a
    /// pass that cannot be read is started over, and chunks are named by their pass.
    async fn forget_paused(&self, paused_name: &str, paused: &PausedPass) {
        let store = &self.p.store;
        for k in 0..paused.chunks {
            if let Err(e) = store
                .save_cursor(&chunk_name(paused_name, &paused.pass, k), "")
                .await
            {
                tracing::warn!("a paused pass's ids were not cleared: {e}");
            }
        }
        if let Err(e) = store.save_cursor(paused_name, "").await {
            tracing::warn!("the paused pass was not cleared: {e}");
        }
    }
}

/// Bytes of ids a stored chunk holds at most: well within a DynamoDB item's 400 KB, whatever
/// the ids' length (Okta's are 20 characters, Graph's 36: about 10,000 or 5,000 a chunk).
const LISTED_CHUNK_BYTES: usize = 200_000;

/// The ids, one a line, in chunks of at most [`LISTED_CHUNK_BYTES`].
fn listed_chunks<'i>(ids: impl IntoIterator<Item = &'i String>) -> Vec<String> {
    let mut chunks = Vec::new();
    let mut text = String::new();
    for id in ids {
        if !text.is_empty() && text.len() + 1 + id.len() > LISTED_CHUNK_BYTES {
            chunks.push(std::mem::take(&mut text));
        }
        if !text.is_empty() {
            text.push('\n');
        }
        text.push_str(id);
    }
    if !text.is_empty() {
        chunks.push(text);
    }
    chunks
}

/// Time a paused pass leaves the rest of the sweep (invitations, the store's census), and
/// itself to be kept.
const PAUSE_MARGIN: std::time::Duration = std::time::Duration::from_secs(60);

fn chunk_name(paused_name: &str, pass: &str, k: usize) -> String {
    format!("{paused_name}/{pass}/{k}")
}

/// A pass the sweeper's time cut short, kept for the next run.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct PausedPass {
    /// The pass's id (its triggers' event id): a user listed again in a later run of the same
    /// pass is a duplicate.
    pass: String,
    full: bool,
    /// The feed's own token for where the listing goes on.
    resume: String,
    /// How many chunks of listed ids earlier runs kept.
    chunks: usize,
    /// Users enqueued so far.
    listed: usize,
    /// When the pass began: a full pass counts from then.
    started: DateTime<Utc>,
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
    /// Whom this run listed.
    listed: HashSet<String>,
    /// Taken before the page being read now was asked for: no later than the IdP's answer.
    asked_at: DateTime<Utc>,
    /// Triggers that carry their user as listed.
    carried: usize,
    /// When to pause, if the feed can (the sweeper's deadline less its margin).
    until: Option<Instant>,
    /// Earlier runs of this pass: their chunks of ids, and how many users they listed.
    chunks: usize,
    earlier: usize,
    started: DateTime<Utc>,
    /// Whether this run goes on with a paused pass (kept in the store until it ends).
    resumed: bool,
}

impl<'a> PassSink<'a> {
    fn new(sweeper: &'a Sweeper, feed: &'a FeedSource, full: bool, until: Option<Instant>) -> Self {
        let now = sweeper.p.clock.now();
        Self {
            sweeper,
            feed,
            full,
            pass: uuid::Uuid::new_v4().simple().to_string(),
            listed: HashSet::new(),
            asked_at: now,
            carried: 0,
            until: until.map(|u| u.checked_sub(PAUSE_MARGIN).unwrap_or(u)),
            chunks: 0,
            earlier: 0,
            started: now,
            resumed: false,
        }
    }

    fn resuming(
        sweeper: &'a Sweeper,
        feed: &'a FeedSource,
        paused: &PausedPass,
        until: Option<Instant>,
    ) -> Self {
        Self {
            pass: paused.pass.clone(),
            chunks: paused.chunks,
            earlier: paused.listed,
            started: paused.started,
            resumed: true,
            ..Self::new(sweeper, feed, paused.full, until)
        }
    }

    /// Whether the pass ends by re-checking the users it did not list (a full pass over the
    /// users): only then are the listed ids kept across its runs.
    fn checks_vanished(&self) -> bool {
        self.full && self.feed.kind == FeedKind::Users
    }

    /// This pass, to be kept for the next run.
    fn paused(&self, resume: String) -> PausedPass {
        PausedPass {
            pass: self.pass.clone(),
            full: self.full,
            resume,
            chunks: self.chunks,
            listed: self.earlier + self.listed.len(),
            started: self.started,
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
                Box::new(ListedDirectoryUser {
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
    async fn page(&mut self, page: Vec<Listing>) -> Result<Flow, FeedError> {
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
        // At least one page a run, so a pass always gets on.
        Ok(match self.until {
            Some(until) if Instant::now() >= until => Flow::Pause,
            _ => Flow::More,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listed_ids_are_kept_in_chunks_a_dynamodb_item_holds_whatever_their_length() {
        // Graph's ids are GUIDs: 10,000 of them a chunk would be 370 KB.
        let graph: Vec<String> = (0..12_000)
            .map(|_| uuid::Uuid::new_v4().to_string())
            .collect();
        let chunks = listed_chunks(&graph);
        assert!(chunks.len() >= 3, "{}", chunks.len());
        assert!(chunks.iter().all(|c| c.len() <= LISTED_CHUNK_BYTES));
        let back: Vec<&str> = chunks.iter().flat_map(|c| c.lines()).collect();
        assert_eq!(back, graph.iter().map(String::as_str).collect::<Vec<_>>());
        assert!(listed_chunks(&Vec::new()).is_empty());
    }
}
