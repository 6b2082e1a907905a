//! The worker: one trigger in, the target converged to the directory's truth, state recorded.
//!
//! Per trigger: check the envelope's signature, skip an event already applied, re-read the
//! user from the directory, map, plan against the recorded state, apply only the difference,
//! and record the result with a conditional write. Entry points (Lambda, standalone) decide
//! what to do with the error classes: retry later, or park in the dead-letter queue.

mod apply;
mod doubt;
mod explain;
mod groups;
mod hold;
mod preview;
mod read;
mod rehearsal;

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::attributes::{Expression, ScopingRules};
use crate::clock::Clock;
use crate::config::{HardDeletePolicy, TargetProfile};
use crate::deprovision::{DeprovisionLimit, MembershipLimit};
use crate::directory::Directory;
use crate::envelope::{EnvelopeSigner, Subject, Trigger};
use crate::history::{Finish, KeptBy, Trace};
use crate::pii::fingerprint;
use crate::scim::{
    any_named, guard_owner, guard_protected, plan, plan_hard_delete, DesiredUser, RoleMap,
    ScimPlan, ScimTarget,
};
use crate::state::{HistoryRecord, ProcessedEvent, StateStore, StoreError, UserKey, UserState};
pub use crate::work::{Outcome, TenantEventHandler, WorkError};

pub use preview::{plan_report, Action, PlanReport, TargetAccounts, UserPreview, PREVIEW_EVENT};
pub use rehearsal::Rehearsal;

use doubt::Doubt;
use hold::Gate;
use read::Truth;

/// The lifecycle recorded for a create whose answer was lost (see [`ScimPlan`]'s planner).
pub const CREATE_IN_DOUBT: &str = "create-in-doubt";

/// How often a conflicting concurrent write makes the worker re-read and re-plan in-process.
const PLAN_ATTEMPTS: usize = 3;

pub struct Worker {
    signer: EnvelopeSigner,
    store: Arc<dyn StateStore>,
    target: Arc<dyn ScimTarget>,
    okta: Option<Arc<dyn Directory>>,
    entra: Option<Arc<dyn Directory>>,
    profile: TargetProfile,
    clock: Arc<dyn Clock>,
    dedupe_ttl: chrono::Duration,
    invite_ttl: chrono::Duration,
    history_ttl: chrono::Duration,
    owner: Option<String>,
    hard_delete: HardDeletePolicy,
    hard_delete_confirm: chrono::Duration,
    trust_event_content: bool,
    keep_suspended: bool,
    sync_groups: bool,
    leavers_leave_groups: bool,
    roles: RoleMap,
    attribute_map: std::collections::BTreeMap<String, Expression>,
    scoping: ScopingRules,
    protected: Vec<String>,
    deprovision: DeprovisionLimit,
    membership: MembershipLimit,
    tenant_events: Option<Arc<dyn TenantEventHandler>>,
}

/// Everything a worker is built from.
pub struct WorkerParts {
    pub signer: EnvelopeSigner,
    pub store: Arc<dyn StateStore>,
    pub target: Arc<dyn ScimTarget>,
    pub okta: Option<Arc<dyn Directory>>,
    pub entra: Option<Arc<dyn Directory>>,
    pub profile: TargetProfile,
    pub clock: Arc<dyn Clock>,
    pub dedupe_ttl: Duration,
    pub invite_ttl: Duration,
    /// How long per-user history is kept (zero: none).
    pub history_ttl: Duration,
    /// userName of the account that owns the target credential: never deactivated.
    pub owner: Option<String>,
    /// What a hard-deleted Entra user becomes on the target.
    pub hard_delete: HardDeletePolicy,
    /// Under `delete`: how long a second read waits to confirm the user is gone for good.
    pub hard_delete_confirm: Duration,
    /// Whether an event's own content may stand in for a directory read (demo only).
    pub trust_event_content: bool,
    /// Leave a suspended user's account as it is instead of deactivating it.
    pub keep_suspended: bool,
    /// Mirror memberships of the configured groups as SCIM Groups.
    pub sync_groups: bool,
    /// With group sync: a switched-off or deleted user leaves every mirrored group.
    pub leavers_leave_groups: bool,
    /// The roles a user gets from their role groups (empty: the target decides).
    pub roles: RoleMap,
    /// `target.attributes`: SCIM path → expression over the IdP's attributes, over the
    /// profile's defaults.
    pub attribute_map: std::collections::BTreeMap<String, Expression>,
    /// `scope.rules`: who is in scope by their attributes, beside app and group scope.
    pub scoping: ScopingRules,
    /// `target.protected_users`: accounts no path touches.
    pub protected: Vec<String>,
    /// The deprovisioning breaker's window and limit.
    pub deprovision: DeprovisionLimit,
    /// The membership breaker's: members a mirrored group may lose per window.
    pub membership: MembershipLimit,
}

impl Worker {
    pub fn new(p: WorkerParts) -> Self {
        Self {
            signer: p.signer,
            store: p.store,
            target: p.target,
            okta: p.okta,
            entra: p.entra,
            profile: p.profile,
            clock: p.clock,
            dedupe_ttl: chrono::Duration::from_std(p.dedupe_ttl)
                .unwrap_or(chrono::Duration::hours(72)),
            invite_ttl: chrono::Duration::from_std(p.invite_ttl)
                .unwrap_or(chrono::Duration::hours(48)),
            history_ttl: chrono::Duration::from_std(p.history_ttl)
                .unwrap_or(chrono::Duration::days(30)),
            owner: p.owner.filter(|o| !o.trim().is_empty()),
            hard_delete: p.hard_delete,
            hard_delete_confirm: chrono::Duration::from_std(p.hard_delete_confirm)
                .unwrap_or(chrono::Duration::minutes(10)),
            trust_event_content: p.trust_event_content,
            keep_suspended: p.keep_suspended,
            sync_groups: p.sync_groups,
            leavers_leave_groups: p.leavers_leave_groups,
            roles: p.roles,
            attribute_map: p.attribute_map,
            scoping: p.scoping,
            protected: p.protected,
            deprovision: p.deprovision,
            membership: p.membership,
            tenant_events: None,
        }
    }

    /// Hands tenant-level events (Graph subscription lifecycle, group changes) to the sweeper
    /// instead of parking them.
    pub fn with_tenant_events(mut self, handler: Arc<dyn TenantEventHandler>) -> Self {
        self.tenant_events = Some(handler);
        self
    }

    /// Processes one queue message body.
    pub async fn process(&self, body: &str) -> Result<Outcome, WorkError> {
        self.process_traced(body, &mut Trace::default()).await
    }

    /// Processes one queue message body, noting in `trace` what history needs (who, which
    /// event, the plan and its calls) as it learns it.
    pub async fn process_traced(
        &self,
        body: &str,
        trace: &mut Trace,
    ) -> Result<Outcome, WorkError> {
        let trigger = self.signer.open(body).map_err(|e| match e {
            crate::envelope::EnvelopeError::UnknownKey { .. } => {
                WorkError::KeyNotHeld(format!("rejected message for now: {e}"))
            }
            e => WorkError::Permanent(format!("rejected message: {e}")),
        })?;
        self.work(&trigger, trace).await
    }

    /// Works one opened trigger: the one path the queue's messages, `sync` and `plan` (over a
    /// rehearsal's store and target) all take.
    pub(crate) async fn work(
        &self,
        trigger: &Trigger,
        trace: &mut Trace,
    ) -> Result<Outcome, WorkError> {
        // Tenant events too are finished with their event named; only a user's has a key.
        trace.opened(trigger, None);
        let user_id = match &trigger.subject {
            Subject::User { user_id } => user_id.clone(),
            Subject::Subscription { subscription_id } => {
                if let Some(handler) = &self.tenant_events {
                    return self.tenant_event(handler.as_ref(), trigger).await;
                }
                // Without a Graph app to act with, park the event where an operator sees it.
                tracing::error!(
                    alarm = "graph_subscription",
                    subscription = %subscription_id,
                    event_type = %trigger.event_type,
                    "Graph subscription lifecycle event needs an operator"
                );
                return Err(WorkError::Permanent(format!(
                    "Graph subscription {subscription_id} sent `{}`: renew or recreate the subscription \
                     (PATCH or POST /v1.0/subscriptions) and let reconciliation catch up",
                    trigger.event_type
                )));
            }
            Subject::Group { group_id } => {
                if let Some(handler) = &self.tenant_events {
                    return self.tenant_event(handler.as_ref(), trigger).await;
                }
                return Err(WorkError::Permanent(format!(
                    "Graph group {group_id} changed, and no Entra app is configured to read its members"
                )));
            }
        };
        let key = UserKey {
            source: trigger.source,
            tenant: trigger.tenant.clone(),
            user_id: user_id.clone(),
        };
        trace.key = Some(key.clone());
        let now = self.clock.now();
        let event_key = trigger.dedupe_key();
        // The record read with the dedupe record: used by the first plan, re-read after a
        // conflicting write (the commit is conditional on its version either way).
        // A trigger that may switch the account off brings the deprovisioning ledger along.
        let ledger = trigger
            .may_deprovision()
            .then_some(crate::deprovision::LEDGER);
        let first = self.store.first_read(&event_key, &key, ledger, now).await?;
        if first.seen {
            return Ok(Outcome::Duplicate);
        }
        let (mut prefetched, mut ledger) = (first.user, first.document);
        // Whether the event's own content stands in for the directory (the demo's fallback).
        let from_event_content = self.directory(trigger.source).is_none();
        let processed = ProcessedEvent {
            key: event_key,
            expires_at: later(now, self.dedupe_ttl),
        };
        let recorded_at = prefetched.as_ref().map(|r| r.updated_at);
        let truth = match self.read_desired(trigger, &user_id, recorded_at).await {
            Ok(truth) => truth,
            Err(e) => {
                trace.note("directory", || format!("read failed: {e}"));
                return Err(e);
            }
        };
        trace.note("directory", || explain::truth(&truth));
        if let Truth::Present(user) = &truth {
            trace.user_fingerprint = Some(fingerprint(&user.user_name));
            if let Some(explanation) = trace.explanation.as_mut() {
                explanation.user_name = Some(user.user_name.clone());
            }
        }
        let (desired, hard_deleted) = match truth {
            Truth::Present(user) => (Some(user), false),
            Truth::Deleted => (None, false),
            Truth::HardDeleted => (None, true),
            Truth::LeaveAsIs => {
                tracing::info!(user = %user_id, "suspended user left as is (okta.suspended = keep)");
                trace.note("plan", || {
                    "nothing: suspended in Okta, and okta.suspended = keep".into()
                });
                return self.leave_as_is(&key, &processed).await;
            }
        };
        for attempt in 0..PLAN_ATTEMPTS {
            let recorded = if attempt == 0 {
                prefetched.take()
            } else {
                self.store.load_user(&key).await?
            };
            trace.note("recorded", || explain::record(recorded.as_ref()));
            if let (None, Some(r)) = (&trace.user_fingerprint, &recorded) {
                trace.user_fingerprint = Some(fingerprint(&r.user_name));
            }
            let Decision {
                planned,
                plan,
                owner_kept,
                protected,
                delete_unconfirmed,
            } = self.decide(
                desired.as_ref(),
                hard_deleted,
                recorded.as_ref(),
                from_event_content,
                trigger.published,
                now,
            );
            if owner_kept {
                tracing::error!(
                    alarm = "credential_owner_protected",
                    user = %user_id,
                    "the IdP deactivated the owner of the target credential; the account is left active. \
                     Move the credential to a service account."
                );
            }
            if protected && planned.deprovisions() {
                tracing::warn!(user = %user_id, "protected account left as it is (target.protected_users)");
            }
            trace.note("plan", || explain::plan(&planned));
            if let Some(explanation) = trace.explanation.as_mut() {
                explanation.off_because = planned
                    .deprovisions()
                    .then(|| explain::why_off(desired.as_ref()));
            }
            if let (true, ScimPlan::Nothing { reason }) = (owner_kept || protected, &plan) {
                if protected || planned != plan {
                    trace.kept(KeptBy::Protected((*reason).to_string()));
                }
            }
            trace.plan = plan_name(&plan).to_string();
            trace.changed = changed_attributes(&plan);
            let looked_up = match self
                .gate(&key, &plan, recorded.as_ref(), trigger, &mut ledger)
                .await?
            {
                Gate::Go(looked_up) => looked_up,
                Gate::Hold(state) => {
                    let why = state.held.as_ref().map(|h| h.reason.clone());
                    trace.kept(KeptBy::Held(format!(
                        "the deprovisioning breaker holds it for an operator: {}",
                        why.unwrap_or_default()
                    )));
                    let expected = recorded.as_ref().map(|r| r.version);
                    match self
                        .commit_finishing(
                            &key,
                            Some(&state),
                            expected,
                            &processed,
                            trace,
                            Finish::Held,
                        )
                        .await
                    {
                        Ok(()) => return Ok(Outcome::Held),
                        Err(StoreError::Conflict) => continue,
                        Err(e) => return Err(e.into()),
                    }
                }
                Gate::Keep(why) => {
                    tracing::info!(user = %user_id, "deprovision not applied: {why}");
                    trace.kept(KeptBy::Held(format!("deprovision {why}")));
                    self.store.commit(&key, None, None, &processed).await?;
                    return Ok(Outcome::Held);
                }
            };
            let doubt = Doubt {
                key: &key,
                recorded: recorded.as_ref(),
                processed: &processed,
                written: Default::default(),
                raced: Default::default(),
            };
            let mut applied = match self
                .apply(&plan, desired.as_ref(), &doubt, trigger, looked_up)
                .await
            {
                Ok(applied) => applied,
                Err(_) if doubt.raced() => {
                    tracing::info!(user = %user_id, "state changed before the create; re-planning");
                    continue;
                }
                Err(e) => return Err(e),
            };
            let deprovision_held =
                |r: &&UserState| r.held.as_ref().is_some_and(|h| h.is_deprovision());
            if let Some(r) = recorded.as_ref().filter(deprovision_held) {
                // Applied as approved, or no longer asked for: either way the hold is done. (A
                // held membership removal is the groups step's to settle.)
                tracing::info!(user = %user_id, plan = plan_name(&plan), "held deprovision settled");
                applied.state.get_or_insert_with(|| r.successor(now)).held = None;
            }
            if let Some(r) = recorded.as_ref() {
                let seen = delete_unconfirmed.map(|(seen, _)| seen);
                if r.hard_delete_seen != seen {
                    applied
                        .state
                        .get_or_insert_with(|| r.successor(now))
                        .hard_delete_seen = seen;
                }
            }
            if let Some(state) = applied.state.as_mut() {
                state.last_event_at = latest(state.last_event_at, trigger.published);
            } else if let (true, Some(r)) = (from_event_content, recorded.as_ref()) {
                // When events are the only truth, even one that changed nothing moves the
                // clock, so an older event arriving later cannot undo it.
                if latest(r.last_event_at, trigger.published) != r.last_event_at {
                    let mut s = r.successor(now);
                    s.last_event_at = latest(r.last_event_at, trigger.published);
                    applied.state = Some(s);
                }
            }
            // A create written ahead moved the stored version on: the commit follows it.
            let expected = match doubt.written_version() {
                Some(written) => {
                    if let Some(state) = applied.state.as_mut() {
                        state.version = written + 1;
                    }
                    Some(written)
                }
                None => recorded.as_ref().map(|r| r.version),
            };
            // With group sync the event is only done once the groups are too: the user's part is
            // committed under its own marker, so a failed group call retries the groups (the
            // user's plan is then empty) instead of losing them to the dedupe record. A user
            // gone from the directory wants no group (`leavers_leave_groups`), once its
            // account's fate is settled (not while a hard delete waits for its second read).
            let no_groups = std::collections::BTreeMap::new();
            let wanted_groups = match desired.as_ref() {
                _ if !self.sync_groups || protected => None,
                Some(user) => Some(&user.groups),
                None if self.leavers_leave_groups && delete_unconfirmed.is_none() => {
                    Some(&no_groups)
                }
                None => None,
            };
            let user_done = match (wanted_groups, delete_unconfirmed) {
                (Some(_), _) => ProcessedEvent {
                    key: format!("{}#user", processed.key),
                    expires_at: processed.expires_at,
                },
                // The event comes back for the confirming read: not recorded as done yet.
                (None, Some(_)) => ProcessedEvent {
                    key: format!("{}#delete-unconfirmed", processed.key),
                    expires_at: processed.expires_at,
                },
                (None, None) => processed.clone(),
            };
            trace.scim_calls = applied.calls;
            let committed = if user_done == processed {
                // Nothing follows the commit: it finishes the trigger, history entry and all.
                let finish = if applied.writes > 0 {
                    Finish::Applied
                } else {
                    Finish::Unchanged
                };
                self.commit_finishing(
                    &key,
                    applied.state.as_ref(),
                    expected,
                    &user_done,
                    trace,
                    finish,
                )
                .await
            } else {
                self.store
                    .commit(&key, applied.state.as_ref(), expected, &user_done)
                    .await
            };
            match committed {
                Ok(()) => {
                    if let Some((_, wait)) = delete_unconfirmed {
                        tracing::info!(user = %user_id, "gone for good at the first read: deactivated; deleted once a second read confirms");
                        return Err(WorkError::Retryable {
                            reason: "hard delete to be confirmed by a second read".into(),
                            retry_after: wait.to_std().ok(),
                        });
                    }
                    let mut applied = applied;
                    trace.scim_calls = applied.calls;
                    if let Some(wanted) = wanted_groups {
                        let groups = self
                            .groups_phase(&key, wanted, &processed, trigger, trace)
                            .await?;
                        applied.calls += groups.calls;
                        applied.writes += groups.writes;
                        trace.scim_calls = applied.calls;
                    }
                    return Ok(if applied.writes > 0 {
                        Outcome::Applied {
                            scim_calls: applied.calls,
                        }
                    } else {
                        Outcome::Unchanged {
                            scim_calls: applied.calls,
                        }
                    });
                }
                Err(StoreError::Conflict) => {
                    tracing::info!(user = %user_id, "state changed concurrently; re-planning");
                    continue;
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(WorkError::retry(
            "state of the user kept changing concurrently",
        ))
    }

    /// Commits a trigger that this commit finishes as `finish`, its history entry written
    /// with it when history is kept (one write instead of two, on DynamoDB), and noted on the
    /// trace so [`Self::finished`] does not write it again.
    async fn commit_finishing(
        &self,
        key: &UserKey,
        state: Option<&UserState>,
        expected: Option<u64>,
        processed: &ProcessedEvent,
        trace: &mut Trace,
        finish: Finish,
    ) -> Result<(), StoreError> {
        if self.history_ttl <= chrono::Duration::zero() {
            return self.store.commit(key, state, expected, processed).await;
        }
        let entry = trace.entry(self.clock.now(), finish, None);
        let history = HistoryRecord {
            fingerprint: trace.user_fingerprint.clone(),
            expires_at: later(entry.at, self.history_ttl),
            entry,
        };
        self.store
            .commit_finished(key, state, expected, processed, &history)
            .await?;
        trace.committed = Some(history.entry);
        Ok(())
    }

    /// Writes down a finished trigger: one line in the log (the line operators and log
    /// metrics read) and, for a user's trigger, an entry in their history (unless its commit
    /// wrote it). History is told, never relied on: a failed write is logged and the trigger
    /// stays finished.
    pub async fn finished(
        &self,
        trace: &Trace,
        finish: Finish,
        reason: Option<&str>,
    ) -> crate::history::HistoryEntry {
        let committed = trace
            .committed
            .as_ref()
            .filter(|e| e.outcome == finish && reason.is_none());
        let entry = match committed {
            Some(entry) => entry.clone(),
            None => trace.entry(self.clock.now(), finish, reason),
        };
        let user = trace.key.as_ref().map(|k| k.user_id.as_str()).unwrap_or("");
        tracing::info!(
            source = %trace.key.as_ref().map(|k| k.source.to_string()).unwrap_or_default(),
            user,
            user_name = trace.user_fingerprint.as_deref().unwrap_or(""),
            event_type = %entry.event_type,
            event = %entry.event_id,
            outcome = finish.name(),
            plan = %entry.plan,
            changed = %entry.changed.join(","),
            scim_calls = entry.scim_calls,
            latency_ms = entry.latency_ms.unwrap_or(0),
            reason = reason.unwrap_or(""),
            "trigger finished"
        );
        let Some(key) = trace.key.as_ref() else {
            return entry;
        };
        if self.history_ttl <= chrono::Duration::zero() || committed.is_some() {
            return entry;
        }
        let expires_at = later(entry.at, self.history_ttl);
        if let Err(e) = self
            .store
            .record_history(key, trace.user_fingerprint.as_deref(), &entry, expires_at)
            .await
        {
            tracing::warn!(user, "history entry not recorded: {e}");
        }
        entry
    }

    /// The plan for one user from what the directory says (`desired`, or gone: `hard_deleted`
    /// for good) and what the relay recorded, with the guards applied. Pure.
    fn decide(
        &self,
        desired: Option<&DesiredUser>,
        hard_deleted: bool,
        recorded: Option<&UserState>,
        from_event_content: bool,
        published: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> Decision {
        // Under `delete`, a hard delete is acted on only when a second read, some minutes
        // after the first, finds the same: until then, when to look again.
        let delete_unconfirmed = recorded
            .filter(|r| {
                hard_deleted && self.hard_delete == HardDeletePolicy::Delete && r.scim_id.is_some()
            })
            .and_then(|r| {
                let seen = r.hard_delete_seen.unwrap_or(now);
                let confirmed_at = later(seen, self.hard_delete_confirm);
                (confirmed_at > now).then(|| (seen, confirmed_at - now))
            });
        let stale =
            from_event_content && is_older(published, recorded.and_then(|r| r.last_event_at));
        let planned = if stale {
            // Without a directory the event is the only truth, so its age matters: an event
            // older than the state last applied changes nothing.
            ScimPlan::Nothing {
                reason: "event is older than the state last applied",
            }
        } else if delete_unconfirmed.is_some() {
            // Not yet confirmed: switched off as a soft delete would be, deleted later.
            plan(self.profile, None, recorded)
        } else if hard_deleted && self.hard_delete == HardDeletePolicy::Delete {
            plan_hard_delete(recorded)
        } else {
            plan(self.profile, desired, recorded)
        };
        // Without a directory, an event is anyone's word who holds the hook secret: it may
        // change accounts the relay made, never switch off one it has no record of.
        let planned = match planned {
            ScimPlan::DeactivateUnrecorded { .. } if from_event_content && recorded.is_none() => {
                ScimPlan::Nothing {
                    reason:
                        "event content never switches off an account the relay has no record of",
                }
            }
            planned => planned,
        };
        let user_names: Vec<&str> = desired
            .map(|d| d.user_name.as_str())
            .into_iter()
            .chain(recorded.map(|r| r.user_name.as_str()))
            .collect();
        let guarded = guard_owner(planned.clone(), &user_names, self.owner.as_deref());
        let owner_kept = guarded != planned;
        let protected = any_named(&user_names, &self.protected);
        let plan = guard_protected(guarded, &user_names, &self.protected);
        Decision {
            planned,
            plan,
            owner_kept,
            protected,
            delete_unconfirmed,
        }
    }

    /// A user the directory asks to leave as it is (suspended, under `okta.suspended = keep`):
    /// no SCIM call. A held deprovision on the record is no longer asked for: it lapses, an
    /// approval included, so nothing is left approved for a later trigger.
    async fn leave_as_is(
        &self,
        key: &UserKey,
        processed: &ProcessedEvent,
    ) -> Result<Outcome, WorkError> {
        for _ in 0..PLAN_ATTEMPTS {
            let recorded = self.store.load_user(key).await?;
            let Some(r) = recorded.filter(|r| r.held.is_some()) else {
                self.store.commit(key, None, None, processed).await?;
                return Ok(Outcome::Unchanged { scim_calls: 0 });
            };
            let mut next = r.successor(self.clock.now());
            next.held = None;
            match self
                .store
                .commit(key, Some(&next), Some(r.version), processed)
                .await
            {
                Ok(()) => {
                    tracing::info!(user = %key.user_id, "held deprovision lapsed: the directory keeps the user as is");
                    return Ok(Outcome::Unchanged { scim_calls: 0 });
                }
                Err(StoreError::Conflict) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(WorkError::retry(
            "state of the user kept changing concurrently",
        ))
    }

    /// A tenant-level event, once: handed to the sweeper, then recorded as done.
    async fn tenant_event(
        &self,
        handler: &dyn TenantEventHandler,
        trigger: &Trigger,
    ) -> Result<Outcome, WorkError> {
        let now = self.clock.now();
        let event_key = trigger.dedupe_key();
        if self.store.event_seen(&event_key, now).await? {
            return Ok(Outcome::Duplicate);
        }
        let done = handler.on_tenant_event(trigger).await?;
        tracing::info!(event_type = %trigger.event_type, "tenant event handled: {done}");
        let key = UserKey {
            source: trigger.source,
            tenant: trigger.tenant.clone(),
            user_id: String::new(),
        };
        let processed = ProcessedEvent {
            key: event_key,
            expires_at: later(now, self.dedupe_ttl),
        };
        self.store.commit(&key, None, None, &processed).await?;
        Ok(Outcome::Unchanged { scim_calls: 0 })
    }

    /// Asks the target whether it takes the relay's credential again (a cheap authenticated
    /// read), while the credential breaker holds the workers.
    pub async fn probe_target(&self) -> Result<(), crate::scim::ScimError> {
        self.target.probe().await
    }

    /// How long the target still asked every caller to wait, if it did.
    pub fn target_asked_to_wait(&self) -> Option<std::time::Duration> {
        self.target.asked_to_wait()
    }

    /// The directory users of `source` are read from, if its credentials are configured.
    fn directory(&self, source: crate::envelope::Source) -> Option<&Arc<dyn Directory>> {
        match source {
            crate::envelope::Source::Okta => self.okta.as_ref(),
            crate::envelope::Source::Entra => self.entra.as_ref(),
        }
    }
}

/// What the worker decided for one user, before anything is applied.
pub(crate) struct Decision {
    /// The planner's answer, before the guards.
    pub planned: ScimPlan,
    /// What the worker applies.
    pub plan: ScimPlan,
    /// The owner guard dropped a deprovision of the credential's owner.
    pub owner_kept: bool,
    /// The user is in `target.protected_users` (by any of its names).
    pub protected: bool,
    /// Under `delete`: when the hard delete was first seen, and how long until a second read
    /// may confirm it.
    pub delete_unconfirmed: Option<(DateTime<Utc>, chrono::Duration)>,
}

/// True when the event was published before the last applied one.
fn is_older(event: Option<DateTime<Utc>>, last_applied: Option<DateTime<Utc>>) -> bool {
    matches!((event, last_applied), (Some(e), Some(last)) if e < last)
}

/// `at` plus a time from the settings. Settings are bounded at start-up (ten years at most), and
/// a worker built otherwise still never panics on a message for it: the end of time instead.
pub(crate) fn later(at: DateTime<Utc>, after: chrono::Duration) -> DateTime<Utc> {
    at.checked_add_signed(after)
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

fn latest(a: Option<DateTime<Utc>>, b: Option<DateTime<Utc>>) -> Option<DateTime<Utc>> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    }
}

/// The names (never the values) of the attributes an update sends: what history and a log
/// line may say about a change.
fn changed_attributes(plan: &ScimPlan) -> Vec<String> {
    match plan {
        ScimPlan::Update { ops, .. } => ops.iter().map(|op| op.path.clone()).collect(),
        _ => Vec::new(),
    }
}

fn plan_name(plan: &ScimPlan) -> &'static str {
    match plan {
        ScimPlan::Nothing { .. } => "nothing",
        ScimPlan::Create { .. } => "create",
        ScimPlan::Update { .. } => "update",
        ScimPlan::DeactivateUnrecorded { .. } => "deactivate-unrecorded",
        ScimPlan::Delete { .. } => "delete",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_log_line_names_the_changed_attributes_never_their_values() {
        let plan = ScimPlan::Update {
            scim_id: "s1".into(),
            ops: vec![
                crate::scim::PatchOp::replace("title", serde_json::json!("Secret Project Lead")),
                crate::scim::PatchOp::replace("active", serde_json::json!(false)),
            ],
        };
        assert_eq!(changed_attributes(&plan), ["title", "active"]);
        assert!(changed_attributes(&ScimPlan::Nothing { reason: "x" }).is_empty());
    }

    #[test]
    fn a_time_from_the_settings_never_overflows() {
        let now = Utc::now();
        assert_eq!(later(now, chrono::Duration::MAX), DateTime::<Utc>::MAX_UTC);
        assert_eq!(
            later(now, chrono::Duration::days(1)),
            now + chrono::Duration::days(1)
        );
    }

    #[test]
    fn only_an_event_published_before_the_last_applied_one_is_older() {
        let t = |s: i64| DateTime::from_timestamp(s, 0);
        assert!(is_older(t(10), t(20)));
        assert!(!is_older(t(20), t(20)));
        assert!(!is_older(t(30), t(20)));
        assert!(!is_older(None, t(20)), "no time, no verdict");
        assert!(!is_older(t(10), None));
    }
}
