//! Group mirroring: the user's memberships of the configured IdP groups, as SCIM Groups.

use super::apply::Applied;
use super::{Worker, PLAN_ATTEMPTS};
use std::collections::BTreeMap;

use crate::envelope::Trigger;
use crate::history::{KeptBy, Trace};
use crate::scim::{plan_groups, ScimError, ScimFailure};
use crate::state::{ProcessedEvent, StoreError, UserKey, UserState};
use crate::work::WorkError;

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

impl Worker {
    /// The second step of a trigger with group sync: converge the memberships from the state
    /// just committed to `wanted` (the configured IdP groups the directory lists the user in,
    /// id → display name; none for a user gone from it), and record the event as done.
    pub(super) async fn groups_phase(
        &self,
        key: &UserKey,
        wanted: &BTreeMap<String, String>,
        processed: &ProcessedEvent,
        trigger: &Trigger,
        trace: &mut Trace,
    ) -> Result<Applied, WorkError> {
        for _ in 0..PLAN_ATTEMPTS {
            match self
                .apply_groups(key, wanted, processed, trigger, trace)
                .await
            {
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
        wanted: &BTreeMap<String, String>,
        processed: &ProcessedEvent,
        trigger: &Trigger,
        trace: &mut Trace,
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
        let Some(member) = recorded.scim_id.clone() else {
            commit(None, Some(recorded.version), processed.clone()).await?;
            return Ok(applied);
        };
        let planned = plan_groups(
            wanted,
            &recorded.groups,
            recorded.active,
            self.leavers_leave_groups,
        );
        // Pending joins: the desired ones are added again, the others removed.
        let (redo, undo): (Vec<_>, Vec<_>) = recorded
            .groups_pending
            .iter()
            .map(|(g, s)| (g.clone(), s.clone()))
            .partition(|(g, _)| recorded.active && wanted.contains_key(g));
        // Groups the user stays in whose name in the directory is not the one last applied:
        // renamed in the IdP (the target group follows; it stays one group with its members).
        let renamed: Vec<(String, String, String)> = recorded
            .groups
            .iter()
            .filter(|_| recorded.active)
            .filter_map(|(g, scim)| {
                let name = wanted.get(g)?;
                (recorded.group_names.get(g) != Some(name))
                    .then(|| (g.clone(), scim.clone(), name.clone()))
            })
            .collect();
        // Removals from groups of an account that stays active go through the membership
        // breaker; a leaver's were weighed as its deprovision.
        let gate = self
            .membership_gate(key, &recorded, planned.leave, recorded.active, trigger)
            .await?;
        if let Some(hold) = gate.hold.as_ref().filter(|h| !h.is_deprovision()) {
            trace.kept(KeptBy::Held(format!(
                "the membership breaker holds removals from groups for an operator: {}",
                hold.reason
            )));
        }
        let hold_changed = gate.hold != recorded.held;
        if planned.join.is_empty()
            && gate.allowed.is_empty()
            && !hold_changed
            && redo.is_empty()
            && undo.is_empty()
            && renamed.is_empty()
        {
            commit(None, Some(recorded.version), processed.clone()).await?;
            return Ok(applied);
        }
        let mut state = recorded.clone();
        state.held = gate.hold;
        let mut joins = Vec::new();
        // A pending join is made again with the group's current id: the one written down may
        // be of a group deleted on the target since (then forgotten, and found or made anew).
        for (idp_group, _) in redo {
            let name = wanted.get(&idp_group).cloned().unwrap_or_default();
            let scim_group = self
                .scim_group(&idp_group, &name, &mut applied.calls)
                .await
                .map_err(GroupsError::Work)?;
            joins.push((idp_group, scim_group));
        }
        for (idp_group, name) in planned.join {
            if state.groups_pending.contains_key(&idp_group) {
                continue;
            }
            let scim_group = self
                .scim_group(&idp_group, &name, &mut applied.calls)
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
            state = state.successor(self.clock.now());
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
                    let name = wanted.get(&idp_group).cloned().unwrap_or_default();
                    self.store
                        .forget_group(&group_key(&idp_group), &scim_group)
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
            if let Some(name) = wanted.get(&idp_group) {
                state.group_names.insert(idp_group.clone(), name.clone());
            }
            state.groups.insert(idp_group, scim_group);
        }
        let leaves = gate.allowed.into_iter().chain(undo);
        for (idp_group, scim_group) in leaves {
            self.target
                .remove_member(&scim_group, &member)
                .await
                .map_err(|e| GroupsError::Work(group_error(e)))?;
            applied.calls += 1;
            state.groups.remove(&idp_group);
            state.groups_pending.remove(&idp_group);
            state.group_names.remove(&idp_group);
        }
        for (idp_group, scim_group, name) in renamed {
            self.keep_group_name(&idp_group, &scim_group, &name, &mut applied.calls)
                .await
                .map_err(GroupsError::Work)?;
            state.group_names.insert(idp_group, name);
        }
        state = state.successor(self.clock.now());
        commit(Some(state.clone()), Some(written), processed.clone()).await?;
        applied.writes += 1;
        applied.state = Some(state);
        Ok(applied)
    }

    /// The SCIM group mirroring IdP group `idp_group` (now called `name`): recorded by its IdP
    /// id, found by displayName (and recorded), or created. A create is reserved in the store
    /// first (a placeholder record), so two workers never both create the group, and a worker
    /// that dies between the target's create and the record leaves a trace: the next one finds
    /// the group by name and records it, instead of making a twin. Kept by IdP id, a group
    /// renamed in the IdP stays one group: its target displayName follows.
    async fn scim_group(
        &self,
        idp_group: &str,
        name: &str,
        calls: &mut u32,
    ) -> Result<String, WorkError> {
        let key = group_key(idp_group);
        for _ in 0..PLAN_ATTEMPTS {
            let reserved = match self.store.group_id(&key).await? {
                Some(id) if !GroupReservation::is(&id) => {
                    self.keep_group_name(idp_group, &id, name, calls).await?;
                    return Ok(id);
                }
                None => {
                    // Recorded before groups were kept by IdP id, by displayName: taken over
                    // under the IdP id on the group's next use, no operator step.
                    if let Some(id) = self.legacy_group(name).await? {
                        self.store.record_group(&key, &id).await?;
                        continue;
                    }
                    None
                }
                other => other,
            };
            *calls += 1;
            if let Some(found) = self.target.find_group(name).await.map_err(group_error)? {
                // Already on the target (made by a reserving worker that did not live to
                // record it, or is about to): that group is the one.
                if let Some(reserved) = &reserved {
                    self.store.forget_group(&key, reserved).await?;
                }
                let recorded = self.store.record_group(&key, &found).await?;
                if !GroupReservation::is(&recorded) {
                    self.keep_group_name(idp_group, &recorded, name, calls)
                        .await?;
                    return Ok(recorded);
                }
                continue;
            }
            if let Some(reserved) = reserved {
                if GroupReservation::stale(&reserved, self.clock.now()) {
                    // Its worker died before creating: the reservation lapses.
                    self.store.forget_group(&key, &reserved).await?;
                    continue;
                }
                return Err(WorkError::Retryable {
                    reason: "another worker is creating the SCIM group".into(),
                    retry_after: Some(std::time::Duration::from_secs(2)),
                });
            }
            let reservation = GroupReservation::make(self.clock.now());
            if self.store.record_group(&key, &reservation).await? != reservation {
                continue;
            }
            *calls += 1;
            let created = self.target.create_group(name).await;
            // Lifted whatever the answer: whoever comes next looks the group up first, so a
            // create that did land despite an error is found.
            self.store.forget_group(&key, &reservation).await?;
            let mine = created.map_err(group_error)?;
            // Between the two, another worker may have found this group and recorded it: the
            // same id either way.
            let recorded = self.store.record_group(&key, &mine).await?;
            let id = if GroupReservation::is(&recorded) {
                mine
            } else {
                recorded
            };
            self.keep_group_name(idp_group, &id, name, calls).await?;
            return Ok(id);
        }
        Err(WorkError::retry(
            "the SCIM group's record kept changing concurrently",
        ))
    }

    /// The group's record from before groups were kept by IdP id: by displayName.
    async fn legacy_group(&self, name: &str) -> Result<Option<String>, WorkError> {
        Ok(self
            .store
            .group_id(name)
            .await?
            .filter(|id| !GroupReservation::is(id)))
    }

    /// The target group's displayName follows the IdP group's name: the last name applied is
    /// recorded, and a different one now is a rename (one `PATCH`). The first time, the name
    /// the group was found or made with is recorded.
    async fn keep_group_name(
        &self,
        idp_group: &str,
        scim_group: &str,
        name: &str,
        calls: &mut u32,
    ) -> Result<(), WorkError> {
        if name.is_empty() {
            return Ok(());
        }
        let key = group_name_key(idp_group);
        match self.store.group_id(&key).await? {
            Some(applied) if applied == name => return Ok(()),
            Some(applied) => {
                *calls += 1;
                self.target
                    .rename_group(scim_group, name)
                    .await
                    .map_err(group_error)?;
                tracing::info!(group = %idp_group, "group renamed in the IdP: target group renamed");
                self.store.forget_group(&key, &applied).await?;
            }
            None => {}
        }
        self.store.record_group(&key, name).await?;
        Ok(())
    }
}

/// The store's record of the SCIM group mirroring an IdP group, by the IdP's id (stable across
/// renames; before, groups were recorded by displayName).
fn group_key(idp_group: &str) -> String {
    format!("idp-group:{idp_group}")
}

/// The store's record of the name last applied to the SCIM group mirroring an IdP group.
fn group_name_key(idp_group: &str) -> String {
    format!("idp-group-name:{idp_group}")
}

/// A group create in progress, recorded in the group's place until the target answers:
/// `reserved:<unix seconds>:<random>`, never a SCIM id.
struct GroupReservation;

impl GroupReservation {
    const PREFIX: &'static str = "reserved:";
    /// Longer than one create takes (the target's timeout); only a worker that died holding
    /// it leaves one this old.
    const LAPSES_AFTER_SECONDS: i64 = 60;

    fn make(now: chrono::DateTime<chrono::Utc>) -> String {
        format!("{}{}:{}", Self::PREFIX, now.timestamp(), fastrand::u64(..))
    }

    fn is(id: &str) -> bool {
        id.starts_with(Self::PREFIX)
    }

    fn stale(id: &str, now: chrono::DateTime<chrono::Utc>) -> bool {
        id.strip_prefix(Self::PREFIX)
            .and_then(|rest| rest.split(':').next())
            .and_then(|secs| secs.parse::<i64>().ok())
            .is_none_or(|at| now.timestamp() - at > Self::LAPSES_AFTER_SECONDS)
    }
}

#[cfg(test)]
mod reservation_tests {
    use super::GroupReservation;

    #[test]
    fn a_reservation_is_told_from_an_id_and_lapses() {
        let now = chrono::Utc::now();
        let r = GroupReservation::make(now);
        assert!(GroupReservation::is(&r));
        assert!(!GroupReservation::is("9f1c0b2e"));
        assert!(!GroupReservation::stale(&r, now));
        assert!(GroupReservation::stale(
            &r,
            now + chrono::Duration::seconds(121)
        ));
        assert!(GroupReservation::stale("reserved:garbage", now));
    }
}
