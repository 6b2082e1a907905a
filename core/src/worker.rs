//! The worker: one trigger in, the target converged to the directory's truth, state recorded.
//!
//! Per trigger: check the envelope's signature, skip an event already applied, re-read the
//! user from the directory, map, plan against the recorded state, apply only the difference,
//! and record the result with a conditional write. Entry points (Lambda, standalone) decide
//! what to do with the error classes: retry later, or park in the dead-letter queue.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::json;

use crate::clock::Clock;
use crate::config::{HardDeletePolicy, TargetProfile};
use crate::directory::{user_from_event, Directory, DirectoryRead, IdpStatus, Membership};
use crate::envelope::{EnvelopeSigner, Subject, Trigger};
use crate::pii::fingerprint;
use crate::scim::{
    apply_attribute_map, desired_user, guard_owner, plan, plan_groups, plan_hard_delete,
    DesiredUser, PatchOp, ScimError, ScimFailure, ScimPlan, ScimRecord, ScimTarget,
};
use crate::state::{
    attributes_hash, InviteState, ProcessedEvent, StateStore, StoreError, UserKey, UserState,
};
pub use crate::work::{Outcome, TenantEventHandler, WorkError};

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
    owner: Option<String>,
    hard_delete: HardDeletePolicy,
    trust_event_content: bool,
    keep_suspended: bool,
    sync_groups: bool,
    role_ids: Vec<String>,
    attribute_map: std::collections::BTreeMap<String, String>,
    tenant_events: Option<Arc<dyn TenantEventHandler>>,
}

/// What the directory says of the user.
enum Truth {
    Present(DesiredUser),
    /// Not returned any more (deleted, perhaps restorable).
    Deleted,
    /// Gone for good.
    HardDeleted,
    /// Suspended, and the policy is to leave the target as it is.
    LeaveAsIs,
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
    /// userName of the account that owns the target credential: never deactivated.
    pub owner: Option<String>,
    /// What a hard-deleted Entra user becomes on the target.
    pub hard_delete: HardDeletePolicy,
    /// Whether an event's own content may stand in for a directory read (demo only).
    pub trust_event_content: bool,
    /// Leave a suspended user's account as it is instead of deactivating it.
    pub keep_suspended: bool,
    /// Mirror memberships of the configured groups as SCIM Groups.
    pub sync_groups: bool,
    /// Datadog role UUIDs every provisioned user gets.
    pub role_ids: Vec<String>,
    /// `target.attributes`: SCIM path → IdP attribute, over the profile's defaults.
    pub attribute_map: std::collections::BTreeMap<String, String>,
}

/// Where a create whose answer is lost gets written down (see `remember_create_in_doubt`).
struct Doubt<'a> {
    key: &'a UserKey,
    recorded: Option<&'a UserState>,
    processed: &'a ProcessedEvent,
}

/// What applying a plan produced: the state to record (if it changed) and the calls made.
struct Applied {
    state: Option<UserState>,
    calls: u32,
    writes: u32,
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
            owner: p.owner.filter(|o| !o.trim().is_empty()),
            hard_delete: p.hard_delete,
            trust_event_content: p.trust_event_content,
            keep_suspended: p.keep_suspended,
            sync_groups: p.sync_groups,
            role_ids: p.role_ids,
            attribute_map: p.attribute_map,
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
        let trigger = self
            .signer
            .open(body)
            .map_err(|e| WorkError::Permanent(format!("rejected message: {e}")))?;
        let user_id = match &trigger.subject {
            Subject::User { user_id } => user_id.clone(),
            Subject::Subscription { subscription_id } => {
                if let Some(handler) = &self.tenant_events {
                    return self.tenant_event(handler.as_ref(), &trigger).await;
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
                    return self.tenant_event(handler.as_ref(), &trigger).await;
                }
                return Err(WorkError::Permanent(format!(
                    "Graph group {group_id} changed, and no Entra app is configured to read its members"
                )));
            }
        };
        let now = self.clock.now();
        let event_key = trigger.dedupe_key();
        if self.store.event_seen(&event_key, now).await? {
            tracing::info!(source = %trigger.source, user = %user_id, event = %trigger.event_id, "duplicate event skipped");
            return Ok(Outcome::Duplicate);
        }
        let key = UserKey {
            source: trigger.source,
            tenant: trigger.tenant.clone(),
            user_id: user_id.clone(),
        };
        // Whether the event's own content stands in for the directory (the demo's fallback).
        let from_event_content = self.directory(trigger.source).is_none();
        let processed = ProcessedEvent {
            key: event_key,
            expires_at: now + self.dedupe_ttl,
        };
        let (desired, hard_deleted) = match self.read_desired(&trigger, &user_id).await? {
            Truth::Present(user) => (Some(user), false),
            Truth::Deleted => (None, false),
            Truth::HardDeleted => (None, true),
            Truth::LeaveAsIs => {
                tracing::info!(user = %user_id, "suspended user left as is (okta.suspended = keep)");
                self.store.commit(&key, None, None, &processed).await?;
                return Ok(Outcome::Unchanged { scim_calls: 0 });
            }
        };
        for _ in 0..PLAN_ATTEMPTS {
            let recorded = self.store.load_user(&key).await?;
            let stale = from_event_content
                && is_older(
                    trigger.published,
                    recorded.as_ref().and_then(|r| r.last_event_at),
                );
            let planned = if stale {
                // Without a directory the event is the only truth, so its age matters: an event
                // older than the state last applied changes nothing.
                ScimPlan::Nothing {
                    reason: "event is older than the state last applied",
                }
            } else if hard_deleted && self.hard_delete == HardDeletePolicy::Delete {
                plan_hard_delete(recorded.as_ref())
            } else {
                plan(self.profile, desired.as_ref(), recorded.as_ref())
            };
            let user_name = desired
                .as_ref()
                .map(|d| d.user_name.as_str())
                .or(recorded.as_ref().map(|r| r.user_name.as_str()));
            let plan = guard_owner(planned.clone(), user_name, self.owner.as_deref());
            if plan != planned {
                tracing::error!(
                    alarm = "credential_owner_protected",
                    user = %user_id,
                    "the IdP deactivated the owner of the target credential; the account is left active. \
                     Move the credential to a service account."
                );
            }
            let doubt = Doubt {
                key: &key,
                recorded: recorded.as_ref(),
                processed: &processed,
            };
            let mut applied = self
                .apply(&plan, desired.as_ref(), &doubt, &trigger)
                .await?;
            if let Some(state) = applied.state.as_mut() {
                state.last_event_at = latest(state.last_event_at, trigger.published);
            } else if let (true, Some(r)) = (from_event_content, recorded.as_ref()) {
                // When events are the only truth, even one that changed nothing moves the
                // clock, so an older event arriving later cannot undo it.
                if latest(r.last_event_at, trigger.published) != r.last_event_at {
                    let mut s = r.clone();
                    s.last_event_at = latest(r.last_event_at, trigger.published);
                    s.version += 1;
                    s.updated_at = now;
                    applied.state = Some(s);
                }
            }
            let expected = recorded.as_ref().map(|r| r.version);
            // With group sync the event is only done once the groups are too: the user's part is
            // committed under its own marker, so a failed group call retries the groups (the
            // user's plan is then empty) instead of losing them to the dedupe record.
            let group_user = desired.as_ref().filter(|_| self.sync_groups);
            let user_done = match group_user {
                Some(_) => ProcessedEvent {
                    key: format!("{}#user", processed.key),
                    expires_at: processed.expires_at,
                },
                None => processed.clone(),
            };
            match self
                .store
                .commit(&key, applied.state.as_ref(), expected, &user_done)
                .await
            {
                Ok(()) => {
                    let mut applied = applied;
                    if let Some(user) = group_user {
                        let groups = self.groups_phase(&key, user, &processed).await?;
                        applied.calls += groups.calls;
                        applied.writes += groups.writes;
                    }
                    tracing::info!(
                        source = %trigger.source,
                        user = %user_id,
                        event_type = %trigger.event_type,
                        user_name = %desired.as_ref().map(|d| fingerprint(&d.user_name)).unwrap_or_default(),
                        plan = plan_name(&plan),
                        scim_calls = applied.calls,
                        "trigger applied"
                    );
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

    /// The directory's truth, mapped to the target; `None` when the directory no longer has
    /// the user.
    async fn read_desired(&self, trigger: &Trigger, user_id: &str) -> Result<Truth, WorkError> {
        let (user, membership) = match self.directory(trigger.source) {
            Some(d) => match d.read_user(user_id).await? {
                DirectoryRead::Found(u) => (*u, d.membership(user_id).await?),
                DirectoryRead::NotFound => return Ok(Truth::Deleted),
                DirectoryRead::HardDeleted => return Ok(Truth::HardDeleted),
            },
            None if !self.trust_event_content => {
                return Err(WorkError::Permanent(format!(
                    "no {} directory credentials are configured, and event content is not trusted",
                    trigger.source
                )))
            }
            None => {
                tracing::warn!(
                    source = %trigger.source,
                    "no directory credentials configured: using what the event itself carries"
                );
                let user = user_from_event(trigger, user_id).ok_or_else(|| {
                    WorkError::Permanent(format!(
                        "no {} directory credentials are configured and the event does not describe the user",
                        trigger.source
                    ))
                })?;
                (user, Membership::everyone())
            }
        };
        let mut desired =
            desired_user(self.profile, &user).map_err(|e| WorkError::Permanent(e.to_string()))?;
        apply_attribute_map(&mut desired, &self.attribute_map, trigger.source, &user);
        if self.profile == TargetProfile::Datadog && !self.role_ids.is_empty() {
            desired
                .attributes
                .insert("roles".into(), roles(&self.role_ids));
        }
        if self.sync_groups {
            desired.groups = membership
                .groups
                .into_iter()
                .map(|g| (g.id, g.name))
                .collect();
        }
        if !membership.in_scope {
            // Out of scope is not "not yet": a recorded account is deactivated, and an account
            // the relay never recorded is someone else's business.
            desired.active = false;
            desired.pending = true;
            desired.lifecycle = format!("{} (out of scope)", desired.lifecycle);
        } else if self.keep_suspended && user.status == Some(IdpStatus::Suspended) {
            return Ok(Truth::LeaveAsIs);
        }
        Ok(Truth::Present(desired))
    }

    async fn apply(
        &self,
        plan: &ScimPlan,
        desired: Option<&DesiredUser>,
        doubt: &Doubt<'_>,
        trigger: &Trigger,
    ) -> Result<Applied, WorkError> {
        let recorded = doubt.recorded;
        let now = self.clock.now();
        let next = |scim_id: Option<String>,
                    user: &DesiredUser,
                    attributes_applied: bool,
                    active: bool| UserState {
            // Memberships belong to the account: a new account starts with none.
            groups: recorded
                .filter(|r| r.scim_id.is_some() && r.scim_id == scim_id)
                .map(|r| r.groups.clone())
                .unwrap_or_default(),
            groups_pending: recorded
                .filter(|r| r.scim_id.is_some() && r.scim_id == scim_id)
                .map(|r| r.groups_pending.clone())
                .unwrap_or_default(),
            scim_id,
            user_name: user.user_name.clone(),
            attributes: if attributes_applied {
                user.attributes.clone()
            } else {
                recorded.map(|r| r.attributes.clone()).unwrap_or_default()
            },
            attributes_hash: String::new(),
            active,
            lifecycle: user.lifecycle.clone(),
            invite: recorded.and_then(|r| r.invite.clone()),
            version: recorded.map_or(1, |r| r.version + 1),
            last_event_at: latest(recorded.and_then(|r| r.last_event_at), trigger.published),
            updated_at: now,
        };
        let finish = |mut s: UserState| {
            s.attributes_hash = attributes_hash(&s.attributes);
            s
        };
        match plan {
            ScimPlan::Nothing { .. } => Ok(Applied {
                state: None,
                calls: 0,
                writes: 0,
            }),
            ScimPlan::Create { user } => {
                let (record, calls, created) = self.look_up_or_create(user, doubt).await?;
                let mut state = finish(next(Some(record.id), user, true, true));
                if created && self.profile == TargetProfile::Datadog {
                    // Datadog mails an invitation on create; its link dies after 48 h.
                    state.invite = Some(InviteState {
                        sent_at: now,
                        expires_at: now + self.invite_ttl,
                        count: 1,
                        outcome: None,
                    });
                }
                Ok(Applied {
                    state: Some(state),
                    calls,
                    writes: 1,
                })
            }
            ScimPlan::Update { scim_id, ops } => match self.target.patch_user(scim_id, ops).await {
                Ok(()) => {
                    let state = match desired {
                        Some(user) => {
                            finish(next(Some(scim_id.clone()), user, user.active, user.active))
                        }
                        None => {
                            // Gone from the directory: keep what we knew, switched off.
                            let mut s = switched_off(recorded, now)?;
                            s.lifecycle = "deleted".into();
                            s
                        }
                    };
                    Ok(Applied {
                        state: Some(state),
                        calls: 1,
                        writes: 1,
                    })
                }
                Err(e) if e.failure == ScimFailure::NotFound => {
                    // The account vanished from the target. Re-create it if the user should
                    // have one; otherwise there is nothing left to switch off.
                    tracing::warn!(scim_id = %scim_id, "target no longer has the user");
                    match desired.filter(|u| u.active) {
                        Some(user) => {
                            let (record, calls, _) = self.look_up_or_create(user, doubt).await?;
                            Ok(Applied {
                                state: Some(finish(next(Some(record.id), user, true, true))),
                                calls: calls + 1,
                                writes: 1,
                            })
                        }
                        None => {
                            let mut s = switched_off(recorded, now)?;
                            s.scim_id = None;
                            s.groups.clear();
                            Ok(Applied {
                                state: Some(s),
                                calls: 1,
                                writes: 0,
                            })
                        }
                    }
                }
                Err(e) => Err(e.into()),
            },
            ScimPlan::Delete { scim_id } => {
                self.target.delete_user(scim_id).await?;
                let mut s = switched_off(recorded, now)?;
                s.scim_id = None;
                s.groups.clear();
                s.lifecycle = "hard-deleted".into();
                Ok(Applied {
                    state: Some(s),
                    calls: 1,
                    writes: 1,
                })
            }
            ScimPlan::DeactivateUnrecorded { user_name } if desired.is_none() => {
                // A create in doubt for a user the directory no longer has. Where the target
                // keeps externalId, only an account made for this user is touched: the same
                // login may belong to someone else by now.
                let found = self.target.find_user(user_name).await?.filter(|r| {
                    r.external_id
                        .as_deref()
                        .is_none_or(|id| id == doubt.key.user_id)
                });
                let writes = self.switch_off(found.as_ref()).await?;
                let calls = 1 + writes;
                let mut s = switched_off(recorded, now)?;
                s.scim_id = found.map(|r| r.id);
                s.lifecycle = "deleted".into();
                Ok(Applied {
                    state: Some(s),
                    calls,
                    writes,
                })
            }
            ScimPlan::DeactivateUnrecorded { user_name } => {
                let user = desired.ok_or_else(|| {
                    WorkError::Permanent("deactivation planned without a user".into())
                })?;
                let found = self.target.find_user(user_name).await?;
                let writes = self.switch_off(found.as_ref()).await?;
                let calls = 1 + writes;
                // Attributes were not applied: recorded as empty so a reactivation sends them all.
                let mut state = next(found.map(|r| r.id), user, false, false);
                state.attributes.clear();
                Ok(Applied {
                    state: Some(finish(state)),
                    calls,
                    writes,
                })
            }
        }
    }

    /// Deactivates an account found by look-up, unless it is inactive already; the writes made.
    async fn switch_off(&self, found: Option<&ScimRecord>) -> Result<u32, WorkError> {
        match found {
            Some(ScimRecord { id, active, .. }) if *active != Some(false) => {
                self.target
                    .patch_user(id, &[PatchOp::replace("active", json!(false))])
                    .await?;
                Ok(1)
            }
            _ => Ok(0),
        }
    }

    /// Records a create whose outcome is unknown: no SCIM id, but the userName and `active`, so
    /// the planner looks the account up before anything else (best effort: the retry does the
    /// same look-up when the user is still there).
    async fn remember_create_in_doubt(
        &self,
        key: &UserKey,
        recorded: Option<&UserState>,
        user: &DesiredUser,
        processed: &ProcessedEvent,
    ) {
        if recorded.is_some_and(|r| r.scim_id.is_some()) {
            return;
        }
        let now = self.clock.now();
        let state = UserState {
            scim_id: None,
            user_name: user.user_name.clone(),
            attributes: Default::default(),
            attributes_hash: String::new(),
            active: true,
            lifecycle: CREATE_IN_DOUBT.into(),
            invite: None,
            groups: Default::default(),
            groups_pending: Default::default(),
            version: recorded.map_or(1, |r| r.version + 1),
            last_event_at: recorded.and_then(|r| r.last_event_at),
            updated_at: now,
        };
        let marker = ProcessedEvent {
            key: format!("{}#create-in-doubt", processed.key),
            expires_at: processed.expires_at,
        };
        let expected = recorded.map(|r| r.version);
        if let Err(e) = self
            .store
            .commit(key, Some(&state), expected, &marker)
            .await
        {
            tracing::warn!(user = %key.user_id, "create in doubt not recorded: {e}");
        }
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
            expires_at: now + self.dedupe_ttl,
        };
        self.store.commit(&key, None, None, &processed).await?;
        Ok(Outcome::Unchanged { scim_calls: 0 })
    }

    /// The directory users of `source` are read from, if its credentials are configured.
    fn directory(&self, source: crate::envelope::Source) -> Option<&Arc<dyn Directory>> {
        match source {
            crate::envelope::Source::Okta => self.okta.as_ref(),
            crate::envelope::Source::Entra => self.entra.as_ref(),
        }
    }

    /// The second step of a trigger with group sync: converge the memberships from the state
    /// just committed, and record the event as done.
    async fn groups_phase(
        &self,
        key: &UserKey,
        user: &DesiredUser,
        processed: &ProcessedEvent,
    ) -> Result<Applied, WorkError> {
        for _ in 0..PLAN_ATTEMPTS {
            match self.apply_groups(key, user, processed).await {
                Err(GroupsError::Conflict) => continue,
                Err(GroupsError::Work(e)) => return Err(e),
                Ok(applied) => return Ok(applied),
            }
        }
        Err(WorkError::retry(
            "state of the user kept changing concurrently",
        ))
    }

    /// Mirrors the user's memberships of the configured groups: joins only with an active
    /// account (creating the SCIM group when absent), leaves one membership at a time. Joins
    /// are written down as pending before they are made, so a worker that dies between the
    /// call and the record leaves a trace: the next run adds or removes them again.
    async fn apply_groups(
        &self,
        key: &UserKey,
        user: &DesiredUser,
        processed: &ProcessedEvent,
    ) -> Result<Applied, GroupsError> {
        let mut applied = Applied {
            state: None,
            calls: 0,
            writes: 0,
        };
        let recorded = self.store.load_user(key).await.map_err(WorkError::from)?;
        let commit = |state: Option<UserState>, expected: Option<u64>, event: ProcessedEvent| async move {
            match self
                .store
                .commit(key, state.as_ref(), expected, &event)
                .await
            {
                Ok(()) => Ok(()),
                Err(StoreError::Conflict) => Err(GroupsError::Conflict),
                Err(e) => Err(GroupsError::Work(e.into())),
            }
        };
        let Some(recorded) = recorded else {
            commit(None, None, processed.clone()).await?;
            return Ok(applied);
        };
        let next_version = |s: &mut UserState| {
            s.version += 1;
            s.updated_at = self.clock.now();
        };
        let Some(member) = recorded.scim_id.clone() else {
            commit(None, Some(recorded.version), processed.clone()).await?;
            return Ok(applied);
        };
        let planned = plan_groups(user, &recorded.groups, recorded.active);
        // Pending joins: the desired ones are added again, the others removed.
        let (redo, undo): (Vec<_>, Vec<_>) = recorded
            .groups_pending
            .iter()
            .map(|(g, s)| (g.clone(), s.clone()))
            .partition(|(g, _)| recorded.active && user.groups.contains_key(g));
        if planned.is_empty() && redo.is_empty() && undo.is_empty() {
            commit(None, Some(recorded.version), processed.clone()).await?;
            return Ok(applied);
        }
        let mut state = recorded.clone();
        let mut joins = Vec::new();
        // A pending join is made again with the group's current id: the one written down may
        // be of a group deleted on the target since (then forgotten, and found or made anew).
        for (idp_group, _) in redo {
            let name = user.groups.get(&idp_group).cloned().unwrap_or_default();
            let scim_group = self
                .scim_group(&name, &mut applied.calls)
                .await
                .map_err(GroupsError::Work)?;
            joins.push((idp_group, scim_group));
        }
        for (idp_group, name) in planned.join {
            if state.groups_pending.contains_key(&idp_group) {
                continue;
            }
            let scim_group = self
                .scim_group(&name, &mut applied.calls)
                .await
                .map_err(GroupsError::Work)?;
            joins.push((idp_group, scim_group));
        }
        let new_joins: Vec<_> = joins
            .iter()
            .filter(|(g, s)| state.groups_pending.get(g) != Some(s))
            .cloned()
            .collect();
        if !new_joins.is_empty() {
            state.groups_pending.extend(new_joins);
            next_version(&mut state);
            let ahead = ProcessedEvent {
                key: format!("{}#groups-ahead", processed.key),
                expires_at: processed.expires_at,
            };
            commit(Some(state.clone()), Some(recorded.version), ahead).await?;
        }
        let written = state.version;
        for (idp_group, scim_group) in joins {
            match self.target.add_member(&scim_group, &member).await {
                Ok(()) => {}
                Err(e) if e.failure == ScimFailure::NotFound => {
                    // Deleted on the target since: forget it, and find or create it again.
                    let name = user.groups.get(&idp_group).cloned().unwrap_or_default();
                    self.store
                        .forget_group(&name, &scim_group)
                        .await
                        .map_err(WorkError::from)?;
                    return Err(GroupsError::Work(WorkError::retry(format!(
                        "SCIM group for {name} is gone from the target"
                    ))));
                }
                Err(e) => return Err(GroupsError::Work(group_error(e))),
            }
            applied.calls += 1;
            state.groups_pending.remove(&idp_group);
            state.groups.insert(idp_group, scim_group);
        }
        let leaves = planned.leave.into_iter().chain(undo);
        for (idp_group, scim_group) in leaves {
            self.target
                .remove_member(&scim_group, &member)
                .await
                .map_err(|e| GroupsError::Work(group_error(e)))?;
            applied.calls += 1;
            state.groups.remove(&idp_group);
            state.groups_pending.remove(&idp_group);
        }
        next_version(&mut state);
        commit(Some(state.clone()), Some(written), processed.clone()).await?;
        applied.writes += 1;
        applied.state = Some(state);
        Ok(applied)
    }

    /// The target's id for the group mirroring `name`: recorded, found, or created. A group two
    /// workers created at once is recorded once; the loser deletes its own (empty) copy.
    async fn scim_group(&self, name: &str, calls: &mut u32) -> Result<String, WorkError> {
        if let Some(id) = self.store.group_id(name).await? {
            return Ok(id);
        }
        *calls += 1;
        if let Some(found) = self.target.find_group(name).await.map_err(group_error)? {
            return Ok(self.store.record_group(name, &found).await?);
        }
        *calls += 1;
        let mine = self.target.create_group(name).await.map_err(group_error)?;
        let recorded = self.store.record_group(name, &mine).await?;
        if recorded != mine {
            *calls += 1;
            if let Err(e) = self.target.delete_group(&mine).await {
                tracing::warn!(group = %mine, "duplicate SCIM group not deleted: {e}");
            }
        }
        Ok(recorded)
    }

    /// Look-up-first create: adopt an existing account (by userName), create otherwise, and
    /// adopt on a 409 (a create that raced, or one whose answer we lost). Returns the record,
    /// the calls made, and whether this call created the account.
    async fn look_up_or_create(
        &self,
        user: &DesiredUser,
        doubt: &Doubt<'_>,
    ) -> Result<(ScimRecord, u32, bool), WorkError> {
        if let Some(existing) = self.target.find_user(&user.user_name).await? {
            let calls = 1 + self.adopt(&existing, user).await?;
            return Ok((existing, calls, false));
        }
        match self.target.create_user(&user.to_resource()).await {
            Ok(record) => Ok((record, 2, true)),
            Err(e) if e.failure == ScimFailure::Retryable => {
                // Ambiguous (timeout, 5xx): the account may exist now. Look before the queue
                // retries the create; if the look-up fails too, write the doubt down first.
                match self.target.find_user(&user.user_name).await {
                    Ok(Some(existing)) => {
                        let calls = 3 + self.adopt(&existing, user).await?;
                        Ok((existing, calls, false))
                    }
                    Ok(None) => Err(e.into()),
                    Err(lookup) => {
                        self.remember_create_in_doubt(
                            doubt.key,
                            doubt.recorded,
                            user,
                            doubt.processed,
                        )
                        .await;
                        Err(lookup.into())
                    }
                }
            }
            Err(e) if e.failure == ScimFailure::Conflict => {
                let existing = self
                    .target
                    .find_user(&user.user_name)
                    .await?
                    .ok_or_else(|| {
                        WorkError::retry("create answered 409 but the user is not found")
                    })?;
                let calls = 3 + self.adopt(&existing, user).await?;
                Ok((existing, calls, false))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Brings an adopted account to the desired attributes: we do not know what it holds.
    async fn adopt(&self, existing: &ScimRecord, user: &DesiredUser) -> Result<u32, WorkError> {
        let mut ops: Vec<PatchOp> = user
            .attributes
            .iter()
            .filter(|(path, _)| path.as_str() != "userName")
            .map(|(path, value)| PatchOp::replace(path.clone(), value.clone()))
            .collect();
        ops.push(PatchOp::replace("active", json!(user.active)));
        self.target.patch_user(&existing.id, &ops).await?;
        Ok(1)
    }
}

/// Why a groups step stopped: someone else wrote the user (re-read and go again), or a failure.
enum GroupsError {
    Conflict,
    Work(WorkError),
}

impl From<WorkError> for GroupsError {
    fn from(e: WorkError) -> Self {
        GroupsError::Work(e)
    }
}

/// A 403 from a Groups endpoint is not the broken credential that stops everything: Datadog
/// answers it while Teams are not enabled for the org, or when the key lacks the scope.
fn group_error(e: ScimError) -> WorkError {
    if e.failure == ScimFailure::Credential && e.status == Some(403) {
        WorkError::Permanent(format!(
            "the target refused a Groups call ({e}); are SCIM Groups (Datadog Teams) enabled for this key?"
        ))
    } else {
        e.into()
    }
}

/// The recorded state, switched off, as the next version.
fn switched_off(recorded: Option<&UserState>, now: DateTime<Utc>) -> Result<UserState, WorkError> {
    let mut s = recorded
        .cloned()
        .ok_or_else(|| WorkError::Permanent("update planned without state".into()))?;
    s.active = false;
    s.version += 1;
    s.updated_at = now;
    Ok(s)
}

/// Datadog's `roles` attribute: role objects by UUID.
fn roles(role_ids: &[String]) -> serde_json::Value {
    serde_json::Value::Array(role_ids.iter().map(|id| json!({ "value": id })).collect())
}

/// True when the event was published before the last applied one.
fn is_older(event: Option<DateTime<Utc>>, last_applied: Option<DateTime<Utc>>) -> bool {
    matches!((event, last_applied), (Some(e), Some(last)) if e < last)
}

fn latest(a: Option<DateTime<Utc>>, b: Option<DateTime<Utc>>) -> Option<DateTime<Utc>> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
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
    fn only_an_event_published_before_the_last_applied_one_is_older() {
        let t = |s: i64| DateTime::from_timestamp(s, 0);
        assert!(is_older(t(10), t(20)));
        assert!(!is_older(t(20), t(20)));
        assert!(!is_older(t(30), t(20)));
        assert!(!is_older(None, t(20)), "no time, no verdict");
        assert!(!is_older(t(10), None));
    }

    #[test]
    fn datadog_roles_are_role_objects_by_uuid() {
        assert_eq!(
            roles(&["r1".to_string(), "r2".to_string()]),
            json!([{ "value": "r1" }, { "value": "r2" }])
        );
    }
}
