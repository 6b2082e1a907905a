//! The rehearsal behind `scim-relay plan`: the worker's own path — directory read, plan,
//! guards, breaker, ownership rule, apply, record — run over a store that keeps its writes to
//! itself and a target that answers from one listing of the target's users and writes nothing.
//! What the worker would do is then read off the calls it made, so the preview cannot drift
//! from the worker: there is no second copy of any rule.
//!
//! One rehearsal previews a whole plan in order, so what one user's rehearsal wrote (an
//! account created, a claim, a slot of the deprovisioning breaker's window) is seen by the
//! next, as it would be by the queue's worker.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde_json::Value;

use super::preview::{Action, TargetAccounts, UserPreview, PREVIEW_EVENT};
use super::Worker;
use crate::clock::FixedClock;
use crate::envelope::Trigger;
use crate::history::{Explanation, HistoryEntry, KeptBy, Trace};
use crate::scim::{
    CallLog, ListedUser, PatchOp, ScimCall, ScimError, ScimFailure, ScimRecord, ScimTarget,
    UserPage,
};
use crate::state::{ProcessedEvent, StateStore, StoreError, UserKey, UserState};
use crate::work::{Outcome, WorkError};

/// A worker that rehearses: every decision its own, every write kept from the world.
pub struct Rehearsal {
    worker: Worker,
    target: Arc<PlannedTarget>,
    store: Arc<ShadowStore>,
    now: DateTime<Utc>,
}

impl Worker {
    /// A rehearsal of this worker at `now` over the target's users as `accounts` lists them.
    /// Reads the relay's records and the directories as the worker does; never writes either.
    pub fn rehearsal(&self, accounts: TargetAccounts, now: DateTime<Utc>) -> Rehearsal {
        let store = Arc::new(ShadowStore::over(self.store.clone()));
        let target = Arc::new(PlannedTarget::over(accounts, self.target.clone()));
        let worker = Worker {
            signer: self.signer.clone(),
            store: store.clone(),
            target: target.clone(),
            okta: self.okta.clone(),
            entra: self.entra.clone(),
            profile: self.profile,
            clock: Arc::new(FixedClock(now)),
            dedupe_ttl: self.dedupe_ttl,
            invite_ttl: self.invite_ttl,
            // Nothing is kept of a rehearsal.
            history_ttl: chrono::Duration::zero(),
            owner: self.owner.clone(),
            hard_delete: self.hard_delete,
            hard_delete_confirm: self.hard_delete_confirm,
            trust_event_content: self.trust_event_content,
            keep_suspended: self.keep_suspended,
            sync_groups: self.sync_groups,
            leavers_leave_groups: self.leavers_leave_groups,
            roles: self.roles.clone(),
            attribute_map: self.attribute_map.clone(),
            scoping: self.scoping.clone(),
            protected: self.protected.clone(),
            deprovision: self.deprovision,
            membership: self.membership,
            tenant_events: None,
        };
        Rehearsal {
            worker,
            target,
            store,
            now,
        }
    }
}

impl Rehearsal {
    /// What the worker would do for `key` if its trigger came next, and why.
    pub async fn preview(&self, key: &UserKey) -> UserPreview {
        self.preview_listed(key, None).await
    }

    /// [`Self::preview`] of a user a directory listing gave whole: the rehearsal takes the
    /// listing for its read where the worker would (a whole directory's plan then reads the
    /// IdP once a page, not once a user).
    pub async fn preview_listed(
        &self,
        key: &UserKey,
        listed: Option<crate::model::ListedDirectoryUser>,
    ) -> UserPreview {
        let recorded = self.store.load_user(key).await.ok().flatten();
        let mut line = UserPreview {
            action: Action::LeaveAlone,
            source: Some(key.source),
            tenant: Some(key.tenant.clone()),
            user_id: Some(key.user_id.clone()),
            user_name: recorded
                .as_ref()
                .map(|r| r.user_name.clone())
                .unwrap_or_default(),
            scim_id: recorded.as_ref().and_then(|r| r.scim_id.clone()),
            attributes: Vec::new(),
            reason: String::new(),
            steps: Vec::new(),
            calls: Vec::new(),
        };
        if self.worker.directory(key.source).is_none() {
            // Event-content mode has no truth to preview: the worker acts on each event's word.
            line.action = Action::Error;
            line.reason = format!(
                "no {} directory credentials: nothing to preview",
                key.source
            );
            return line;
        }
        // Unique per user and per plan, so no rehearsal is taken for a redelivery.
        let event_id = format!("plan-{}", self.now.timestamp_millis());
        let mut trigger = Trigger::for_user(key, PREVIEW_EVENT, event_id, self.now);
        trigger.listed = listed.map(Box::new);
        let mark = self.target.log.len();
        let mut trace = Trace::explained();
        let result = self.worker.work(&trigger, &mut trace).await;
        line.calls = self.target.log.since(mark);
        let explanation = trace.explanation.take().unwrap_or_default();
        // A user the directory still has goes by its name there; otherwise by the record's.
        if let Some(name) = explanation.user_name.clone() {
            line.user_name = name;
        }
        line.steps = explanation.steps.clone();
        judge(&mut line, &result, &explanation, &self.target);
        line
    }
}

/// The plan's line from what the rehearsal did: its target writes, its outcome, its guards.
fn judge(
    line: &mut UserPreview,
    result: &Result<Outcome, WorkError>,
    explanation: &Explanation,
    target: &PlannedTarget,
) {
    let writes: Vec<&ScimCall> = line
        .calls
        .iter()
        .filter(|c| c.writes() && c.on_users() && !c.answer.starts_with("failed"))
        .collect();
    let looked_up = line
        .calls
        .iter()
        .find(|c| c.method == "GET" && c.on_users());
    if let Some(id) = writes
        .iter()
        .find_map(|c| c.answer.strip_prefix("created "))
        .or_else(|| writes.last().and_then(|c| c.path.strip_prefix("/Users/")))
    {
        line.scim_id = Some(id.to_string());
    }
    let off = explanation.off_because.clone();
    match (writes.last(), result) {
        (_, Err(WorkError::NotOurs(why))) => {
            line.action = Action::Conflict;
            line.reason =
                format!("{why}; the worker would leave it alone and dead-letter the trigger");
        }
        (None, Err(e)) => {
            line.action = Action::Error;
            line.reason = format!("the worker would not get through: {e}");
        }
        (None, Ok(_)) => match &explanation.kept_by {
            Some(KeptBy::Protected(why)) => {
                line.action = Action::Protected;
                line.reason = why.clone();
            }
            Some(KeptBy::Held(why)) => {
                line.action = Action::Held;
                line.reason = why.clone();
            }
            None => {
                line.reason = nothing_because(explanation, looked_up);
                if let Some(id) = line.scim_id.as_deref().filter(|id| !target.has(id)) {
                    line.reason.push_str(&format!(
                        "; note: the recorded account {id} is not among the target's users"
                    ));
                }
            }
        },
        (Some(last), _) => {
            match last.method {
                "DELETE" => {
                    line.action = Action::Delete;
                    line.reason =
                        "hard-deleted in Entra, and entra.hard_delete = delete (confirmed by a second read)"
                            .into();
                }
                "POST" => {
                    line.action = Action::Create;
                    line.attributes = last.names.clone();
                    line.reason = if writes.len() > 1 {
                        "the recorded account is gone from the target: the worker would create it again"
                            .into()
                    } else {
                        "no account with this userName on the target".into()
                    };
                }
                _ if off.is_some() => {
                    line.action = Action::Deactivate;
                    line.attributes = last.names.clone();
                    line.reason = off.clone().unwrap_or_default();
                    if looked_up.is_some() {
                        line.reason
                            .push_str("; the account has no record (made before the relay ran)");
                    }
                }
                _ if looked_up.is_some() => {
                    line.action = Action::Adopt;
                    line.attributes = target.differing(last);
                    line.reason = if line.attributes.is_empty() {
                        "the account exists with no record and already holds the directory's values"
                            .into()
                    } else {
                        "the account exists with no record; these attributes differ from the directory"
                            .into()
                    };
                }
                _ => {
                    line.action = Action::Update;
                    line.attributes = last.names.clone();
                    line.reason = "the directory changed since the last apply".into();
                }
            }
            if let Err(e) = result {
                line.reason.push_str(&format!("; then {e}"));
            }
        }
    }
}

/// Why nothing would be written: the planner's reason, or what the look-up found.
fn nothing_because(explanation: &Explanation, looked_up: Option<&ScimCall>) -> String {
    if let Some(call) = looked_up {
        return match call.answer.as_str() {
            "none" => "no account on the target to switch off".into(),
            _ => "the account is already inactive".into(),
        };
    }
    explanation
        .steps
        .iter()
        .rev()
        .find(|s| s.step == "plan")
        .map(|s| s.detail.trim_start_matches("nothing: ").to_string())
        .unwrap_or_default()
}

/// The target as a plan sees it: users from one listing, look-ups answered from it, writes
/// written down and played on the listing (so a later user of the plan meets them), never sent.
/// Group look-ups, which no listing holds, are read from the real target.
struct PlannedTarget {
    accounts: Mutex<TargetAccounts>,
    /// Per account, the paths the last PATCH changed.
    changed: Mutex<HashMap<String, Vec<String>>>,
    groups: Mutex<HashMap<String, String>>,
    inner: Arc<dyn ScimTarget>,
    log: CallLog,
}

impl PlannedTarget {
    fn over(accounts: TargetAccounts, inner: Arc<dyn ScimTarget>) -> Self {
        Self {
            accounts: Mutex::new(accounts),
            changed: Mutex::default(),
            groups: Mutex::default(),
            inner,
            log: CallLog::default(),
        }
    }

    fn accounts(&self) -> Result<MutexGuard<'_, TargetAccounts>, ScimError> {
        self.accounts
            .lock()
            .map_err(|_| ScimError::transport("the plan's listing is poisoned"))
    }

    fn has(&self, id: &str) -> bool {
        self.accounts().is_ok_and(|a| a.has_id(id))
    }

    /// The attributes a PATCH of `id` changes on the listed account (an adoption sends every
    /// mapped attribute; the plan names those whose value differs).
    fn differing(&self, patch: &ScimCall) -> Vec<String> {
        patch
            .path
            .strip_prefix("/Users/")
            .and_then(|id| self.changed.lock().ok()?.get(id).cloned())
            .unwrap_or_else(|| patch.names.clone())
    }
}

fn not_found(id: &str) -> ScimError {
    ScimError {
        failure: ScimFailure::NotFound,
        status: Some(404),
        detail: format!("no account {id} among the target's users"),
        retry_after: None,
    }
}

#[async_trait]
impl ScimTarget for PlannedTarget {
    async fn find_user(&self, user_name: &str) -> Result<Option<ScimRecord>, ScimError> {
        let result = self.accounts().and_then(|a| {
            a.named(user_name)
                .map(|found| found.map(ListedUser::record))
                .map_err(|detail| ScimError {
                    failure: ScimFailure::Ambiguous,
                    status: None,
                    detail,
                    retry_after: None,
                })
        });
        self.log.push(ScimCall::find_user(user_name, &result));
        result
    }

    async fn create_user(&self, resource: &Value) -> Result<ScimRecord, ScimError> {
        let result = self.accounts().map(|mut a| a.create(resource).record());
        self.log.push(ScimCall::create_user(resource, &result));
        result
    }

    async fn patch_user(&self, id: &str, ops: &[PatchOp]) -> Result<(), ScimError> {
        let result = self.accounts().and_then(|mut a| match a.patch(id, ops) {
            Some(changed) => {
                if let Ok(mut all) = self.changed.lock() {
                    all.insert(id.to_string(), changed);
                }
                Ok(())
            }
            None => Err(not_found(id)),
        });
        self.log.push(ScimCall::patch_user(id, ops, &result));
        result
    }

    async fn delete_user(&self, id: &str) -> Result<(), ScimError> {
        let result = self.accounts().map(|mut a| a.remove(id));
        self.log.push(ScimCall::delete_user(id, &result));
        result
    }

    async fn find_group(&self, display_name: &str) -> Result<Option<String>, ScimError> {
        let planned = self
            .groups
            .lock()
            .ok()
            .and_then(|g| g.get(display_name).cloned());
        let result = match planned {
            Some(id) => Ok(Some(id)),
            None => self.inner.find_group(display_name).await,
        };
        self.log.push(ScimCall::find_group(display_name, &result));
        result
    }

    async fn create_group(&self, display_name: &str) -> Result<String, ScimError> {
        let id = format!("(new group {display_name})");
        if let Ok(mut groups) = self.groups.lock() {
            groups.insert(display_name.to_string(), id.clone());
        }
        let result = Ok(id);
        self.log.push(ScimCall::create_group(display_name, &result));
        result
    }

    async fn delete_group(&self, group_id: &str) -> Result<(), ScimError> {
        let result = Ok(());
        self.log.push(ScimCall::delete_group(group_id, &result));
        result
    }

    async fn rename_group(&self, group_id: &str, display_name: &str) -> Result<(), ScimError> {
        let result = Ok(());
        self.log
            .push(ScimCall::rename_group(group_id, display_name, &result));
        result
    }

    async fn add_member(&self, group_id: &str, user_id: &str) -> Result<(), ScimError> {
        let result = Ok(());
        self.log
            .push(ScimCall::member(group_id, "add", user_id, &result));
        result
    }

    async fn remove_member(&self, group_id: &str, user_id: &str) -> Result<(), ScimError> {
        let result = Ok(());
        self.log
            .push(ScimCall::member(group_id, "remove", user_id, &result));
        result
    }

    async fn probe(&self) -> Result<(), ScimError> {
        Ok(())
    }

    async fn list_users(&self, start_index: u32, count: u32) -> Result<UserPage, ScimError> {
        self.accounts().map(|a| a.page(start_index, count))
    }
}

/// The relay's records as a rehearsal sees them: read from the real store, with the
/// rehearsal's own writes laid over them under the same conditions (versions, claims).
/// Nothing reaches the real store.
struct ShadowStore {
    inner: Arc<dyn StateStore>,
    written: Mutex<Written>,
}

#[derive(Default)]
struct Written {
    users: HashMap<String, UserState>,
    claims: HashMap<String, Option<UserKey>>,
    documents: HashMap<String, (String, u64)>,
    groups: HashMap<String, Option<String>>,
    events: HashSet<String>,
}

impl ShadowStore {
    fn over(inner: Arc<dyn StateStore>) -> Self {
        Self {
            inner,
            written: Mutex::default(),
        }
    }

    fn written(&self) -> Result<MutexGuard<'_, Written>, StoreError> {
        self.written
            .lock()
            .map_err(|_| StoreError::Backend("the rehearsal's records are poisoned".into()))
    }
}

#[async_trait]
impl StateStore for ShadowStore {
    async fn group_id(&self, name: &str) -> Result<Option<String>, StoreError> {
        if let Some(id) = self.written()?.groups.get(name) {
            return Ok(id.clone());
        }
        self.inner.group_id(name).await
    }

    async fn record_group(&self, name: &str, id: &str) -> Result<String, StoreError> {
        if let Some(recorded) = self.group_id(name).await? {
            return Ok(recorded);
        }
        self.written()?
            .groups
            .insert(name.to_string(), Some(id.to_string()));
        Ok(id.to_string())
    }

    async fn forget_group(&self, name: &str, id: &str) -> Result<(), StoreError> {
        if self.group_id(name).await?.as_deref() == Some(id) {
            self.written()?.groups.insert(name.to_string(), None);
        }
        Ok(())
    }

    async fn load_user(&self, key: &UserKey) -> Result<Option<UserState>, StoreError> {
        if let Some(state) = self.written()?.users.get(&key.storage_id()) {
            return Ok(Some(state.clone()));
        }
        self.inner.load_user(key).await
    }

    async fn event_seen(&self, event_key: &str, now: DateTime<Utc>) -> Result<bool, StoreError> {
        if self.written()?.events.contains(event_key) {
            return Ok(true);
        }
        self.inner.event_seen(event_key, now).await
    }

    async fn load_document(&self, name: &str) -> Result<Option<(String, u64)>, StoreError> {
        if let Some(document) = self.written()?.documents.get(name) {
            return Ok(Some(document.clone()));
        }
        self.inner.load_document(name).await
    }

    async fn save_document(
        &self,
        name: &str,
        value: &str,
        expected: Option<u64>,
    ) -> Result<(), StoreError> {
        let stored = self.load_document(name).await?.map(|(_, v)| v);
        if stored != expected {
            return Err(StoreError::Conflict);
        }
        self.written()?.documents.insert(
            name.to_string(),
            (value.to_string(), expected.map_or(1, |v| v + 1)),
        );
        Ok(())
    }

    async fn claimant(&self, scim_id: &str) -> Result<Option<UserKey>, StoreError> {
        if let Some(claim) = self.written()?.claims.get(scim_id) {
            return Ok(claim.clone());
        }
        self.inner.claimant(scim_id).await
    }

    async fn release_claim(&self, scim_id: &str, key: &UserKey) -> Result<(), StoreError> {
        if self.claimant(scim_id).await?.as_ref() == Some(key) {
            self.written()?.claims.insert(scim_id.to_string(), None);
        }
        Ok(())
    }

    async fn record_history(
        &self,
        _key: &UserKey,
        _fingerprint: Option<&str>,
        _entry: &HistoryEntry,
        _expires_at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        Ok(())
    }

    async fn history(
        &self,
        key: &UserKey,
        now: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<HistoryEntry>, StoreError> {
        self.inner.history(key, now, limit).await
    }

    async fn users_by_fingerprint(
        &self,
        fingerprint: &str,
        now: DateTime<Utc>,
    ) -> Result<Vec<UserKey>, StoreError> {
        self.inner.users_by_fingerprint(fingerprint, now).await
    }

    async fn commit(
        &self,
        key: &UserKey,
        state: Option<&UserState>,
        expected_version: Option<u64>,
        event: &ProcessedEvent,
    ) -> Result<(), StoreError> {
        if let Some(state) = state {
            let stored = self.load_user(key).await?.map(|s| s.version);
            if stored != expected_version {
                return Err(StoreError::Conflict);
            }
            if let Some(scim_id) = &state.scim_id {
                match self.claimant(scim_id).await? {
                    Some(owner) if owner != *key => {
                        return Err(StoreError::Claimed {
                            scim_id: scim_id.clone(),
                            owner: owner.storage_id(),
                        })
                    }
                    _ => {
                        self.written()?
                            .claims
                            .insert(scim_id.clone(), Some(key.clone()));
                    }
                }
            }
            self.written()?
                .users
                .insert(key.storage_id(), state.clone());
        }
        self.written()?.events.insert(event.key.clone());
        Ok(())
    }
}

#[cfg(all(test, feature = "memory"))]
mod tests {

    use super::*;
    use crate::memory::MemoryStore;
    use crate::model::Source;

    fn key(user_id: &str) -> UserKey {
        UserKey {
            source: Source::Okta,
            tenant: "example.okta.com".into(),
            user_id: user_id.into(),
        }
    }

    fn state(scim_id: &str, version: u64) -> UserState {
        UserState {
            scim_id: Some(scim_id.into()),
            user_name: "a@example.com".into(),
            active: true,
            lifecycle: "ACTIVE".into(),
            version,
            updated_at: Utc::now(),
            ..Default::default()
        }
    }

    fn event(name: &str) -> ProcessedEvent {
        ProcessedEvent {
            key: name.into(),
            expires_at: Utc::now() + chrono::Duration::hours(1),
        }
    }

    /// The rehearsal's writes obey the store's conditions (versions, claims) and reach only the
    /// rehearsal: the real store is as it was.
    #[tokio::test]
    async fn a_rehearsal_writes_under_the_stores_conditions_and_nothing_reaches_the_store() {
        let real = Arc::new(MemoryStore::new());
        real.commit(&key("00u1"), Some(&state("s1", 1)), None, &event("e1"))
            .await
            .expect("seeded");
        let shadow = ShadowStore::over(real.clone());
        // A write planned from a stale version is refused, as the store refuses it.
        assert!(matches!(
            shadow
                .commit(&key("00u1"), Some(&state("s1", 2)), None, &event("e2"))
                .await,
            Err(StoreError::Conflict)
        ));
        shadow
            .commit(&key("00u1"), Some(&state("s1", 2)), Some(1), &event("e2"))
            .await
            .expect("the next version");
        // Another user cannot claim an account the real store says is 00u1's.
        assert!(matches!(
            shadow
                .commit(&key("00u2"), Some(&state("s1", 1)), None, &event("e3"))
                .await,
            Err(StoreError::Claimed { .. })
        ));
        // Nor one the rehearsal itself claimed for 00u1, until 00u1 gives it up.
        shadow
            .commit(&key("00u1"), Some(&state("s9", 3)), Some(2), &event("e4"))
            .await
            .expect("claims s9");
        assert_eq!(
            shadow.claimant("s9").await.ok().flatten(),
            Some(key("00u1"))
        );
        shadow
            .release_claim("s9", &key("00u2"))
            .await
            .expect("no-op");
        assert_eq!(
            shadow.claimant("s9").await.ok().flatten(),
            Some(key("00u1"))
        );
        shadow
            .release_claim("s9", &key("00u1"))
            .await
            .expect("given up");
        assert_eq!(shadow.claimant("s9").await.ok().flatten(), None);
        shadow
            .save_document("ledger", "{}", None)
            .await
            .expect("a document");
        assert!(shadow.event_seen("e4", Utc::now()).await.unwrap_or(false));

        // The real store saw none of it.
        let kept = real.load_user(&key("00u1")).await.ok().flatten();
        assert_eq!(kept.map(|s| s.version), Some(1));
        assert_eq!(real.claimant("s9").await.ok().flatten(), None);
        assert_eq!(real.load_document("ledger").await.ok().flatten(), None);
        assert!(!real.event_seen("e4", Utc::now()).await.unwrap_or(true));
    }
}
