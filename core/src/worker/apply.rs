//! Applying a plan: the SCIM calls that converge the account, and the state they leave.

use chrono::{DateTime, Utc};
use serde_json::json;

use super::doubt::Doubt;
use super::{latest, Worker};
use crate::config::TargetProfile;
use crate::envelope::{Source, Trigger};
use crate::scim::{create_in_doubt, DesiredUser, PatchOp, ScimFailure, ScimPlan, ScimRecord};
use crate::state::{attributes_hash, InviteState, UserKey, UserState};
use crate::work::WorkError;

/// What applying a plan produced: the state to record (if it changed) and the calls made.
pub(super) struct Applied {
    pub state: Option<UserState>,
    pub calls: u32,
    pub writes: u32,
}

impl Worker {
    /// Makes the plan's SCIM calls, and works out the state they leave for the caller to commit.
    pub(super) async fn apply(
        &self,
        plan: &ScimPlan,
        desired: Option<&DesiredUser>,
        doubt: &Doubt<'_>,
        trigger: &Trigger,
        looked_up: Option<super::hold::LookedUp>,
    ) -> Result<Applied, WorkError> {
        let recorded = doubt.recorded;
        // The breaker looked the account up already for an unrecorded deactivation.
        let find = |user_name: &str| {
            let user_name = user_name.to_string();
            let looked_up = looked_up.clone();
            async move {
                match looked_up {
                    Some(found) => Ok(found),
                    None => self.target.find_user(&user_name).await,
                }
            }
        };
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
            group_names: recorded
                .filter(|r| r.scim_id.is_some() && r.scim_id == scim_id)
                .map(|r| r.group_names.clone())
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
            hard_delete_seen: None,
            held: None,
            version: UserState::version_after(recorded),
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
                        expires_at: super::later(now, self.invite_ttl),
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
                let found = find(user_name).await?.filter(|r| {
                    r.external_id
                        .as_deref()
                        .is_none_or(|id| id == doubt.key.user_id)
                });
                if let Some(found) = &found {
                    self.refuse_others_account(found, doubt.key).await?;
                }
                let writes = self
                    .switch_off_claimed(found.as_ref(), user_name, doubt)
                    .await?;
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
                let found = find(user_name).await?;
                if let Some(found) = &found {
                    self.refuse_others_account(found, doubt.key).await?;
                }
                let writes = self
                    .switch_off_claimed(found.as_ref(), user_name, doubt)
                    .await?;
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

    /// Deactivates an account found by look-up, unless it is inactive already, once it is
    /// claimed for this user ([`Self::claim_ahead`]); the writes made.
    async fn switch_off_claimed(
        &self,
        found: Option<&ScimRecord>,
        user_name: &str,
        doubt: &Doubt<'_>,
    ) -> Result<u32, WorkError> {
        match found {
            Some(record) if record.active != Some(false) => {
                let off = [PatchOp::replace("active", json!(false))];
                self.patch_claimed(doubt, record, user_name, &off).await?;
                Ok(1)
            }
            _ => Ok(0),
        }
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
            self.refuse_others_account(&existing, doubt.key).await?;
            self.refuse_adoption_on_event_word(doubt)?;
            let calls = 1 + self.adopt(&existing, user, doubt).await?;
            return Ok((existing, calls, false));
        }
        self.write_create_ahead(doubt, user).await?;
        match self.target.create_user(&user.to_resource()).await {
            Ok(record) => Ok((record, 2, true)),
            Err(e) if e.failure == ScimFailure::Retryable => {
                // Ambiguous (timeout, 5xx): the account may exist now. Look before the queue
                // retries the create (which, failing that, finds the create in doubt).
                match self.target.find_user(&user.user_name).await? {
                    Some(existing) => {
                        self.refuse_others_account(&existing, doubt.key).await?;
                        self.refuse_adoption_on_event_word(doubt)?;
                        let calls = 3 + self.adopt(&existing, user, doubt).await?;
                        Ok((existing, calls, false))
                    }
                    None => Err(e.into()),
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
                self.refuse_others_account(&existing, doubt.key).await?;
                self.refuse_adoption_on_event_word(doubt)?;
                let calls = 3 + self.adopt(&existing, user, doubt).await?;
                Ok((existing, calls, false))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// An account found by userName is acted on only if it is not someone else's: no other
    /// user's record claims it, and its externalId (when it holds an id of this IdP) names
    /// this user. IdP userNames are not unique (Okta emails): two users may share one.
    async fn refuse_others_account(
        &self,
        found: &ScimRecord,
        key: &UserKey,
    ) -> Result<(), WorkError> {
        match self.others_claim(found, key).await? {
            Some(other) => Err(ownership_conflict(key, &found.id, &other)),
            None => Ok(()),
        }
    }

    /// Who else the account found for `key` belongs to, if anyone: the user whose record
    /// claims it, or the IdP user its externalId names. The rule [`Self::refuse_others_account`]
    /// enforces and `plan` reports.
    pub(super) async fn others_claim(
        &self,
        found: &ScimRecord,
        key: &UserKey,
    ) -> Result<Option<String>, WorkError> {
        Ok(match self.store.claimant(&found.id).await? {
            Some(owner) if owner != *key => Some(owner.storage_id()),
            _ => found
                .external_id
                .as_deref()
                .filter(|ext| *ext != key.user_id && is_idp_user_id(key.source, ext))
                .map(|ext| format!("{}#{}#{ext} (its externalId)", key.source, key.tenant)),
        })
    }

    /// Without a directory the event's word is all there is, and anyone holding the hook secret
    /// can speak it: an existing account is adopted only when the relay made it (a create in
    /// doubt it wrote), never one it has no record of.
    fn refuse_adoption_on_event_word(&self, doubt: &Doubt<'_>) -> Result<(), WorkError> {
        let ours = doubt.written_version().is_some() || create_in_doubt(doubt.recorded).is_some();
        if self.directory(doubt.key.source).is_some() || ours {
            return Ok(());
        }
        Err(WorkError::Permanent(format!(
            "{} names an account that already exists on the target and that the relay has no \
             record of; without a directory to confirm who it belongs to (event-content mode) \
             it is not adopted",
            doubt.key.storage_id()
        )))
    }

    /// Brings an adopted account to the desired attributes (we do not know what it holds),
    /// once it is claimed for this user ([`Self::claim_ahead`]).
    async fn adopt(
        &self,
        existing: &ScimRecord,
        user: &DesiredUser,
        doubt: &Doubt<'_>,
    ) -> Result<u32, WorkError> {
        self.patch_claimed(doubt, existing, &user.user_name, &adoption_ops(user))
            .await?;
        Ok(1)
    }

    /// Writes `ops` to an account found by userName once it is claimed for this user
    /// ([`Self::claim_ahead`]); a failed write gives the claim up again.
    async fn patch_claimed(
        &self,
        doubt: &Doubt<'_>,
        found: &ScimRecord,
        user_name: &str,
        ops: &[PatchOp],
    ) -> Result<(), WorkError> {
        let claimed = self.claim_ahead(doubt, found, user_name).await?;
        if let Err(e) = self.target.patch_user(&found.id, ops).await {
            if claimed {
                self.release_claim_ahead(doubt, found, user_name).await;
            }
            return Err(e.into());
        }
        Ok(())
    }
}

/// The refusal of an account another IdP user owns (found so by the check before a write, or by
/// the store's conditional claim): raised as an alarm, dead-lettered, the account left alone.
pub(super) fn ownership_conflict(key: &UserKey, scim_id: &str, owner: &str) -> WorkError {
    tracing::error!(
        alarm = "ownership_conflict",
        user = %key.user_id,
        scim_id = %scim_id,
        owner = %owner,
        "the account found for this user belongs to another IdP user: left alone, dead-lettered"
    );
    WorkError::NotOurs(format!(
        "ownership conflict: target account {scim_id} belongs to another IdP user ({owner}), not {}; \
         the relay leaves it alone. Two IdP users share one userName: resolve it in the IdP",
        key.storage_id()
    ))
}

/// What adopting an account sends: every mapped attribute but userName (the look-up matched
/// it), and `active`.
pub(super) fn adoption_ops(user: &DesiredUser) -> Vec<PatchOp> {
    let mut ops: Vec<PatchOp> = user
        .attributes
        .iter()
        .filter(|(path, _)| path.as_str() != "userName")
        .map(|(path, value)| PatchOp::replace(path.clone(), value.clone()))
        .collect();
    ops.push(PatchOp::replace("active", json!(user.active)));
    ops
}

/// Whether `id` is in the IdP's own user id format (Okta `00u…`, Entra object GUIDs): only then
/// does an externalId that differs name another user (a previous provisioning tool may have
/// filled it with something else, such as a mail nickname).
fn is_idp_user_id(source: Source, id: &str) -> bool {
    match source {
        Source::Okta => {
            id.len() == 20 && id.starts_with("00u") && id.chars().all(|c| c.is_ascii_alphanumeric())
        }
        Source::Entra => {
            id.len() == 36
                && id.chars().enumerate().all(|(i, c)| match i {
                    8 | 13 | 18 | 23 => c == '-',
                    _ => c.is_ascii_hexdigit(),
                })
        }
    }
}

/// The recorded state, switched off, as the next version.
fn switched_off(recorded: Option<&UserState>, now: DateTime<Utc>) -> Result<UserState, WorkError> {
    let mut s = recorded
        .ok_or_else(|| WorkError::Permanent("update planned without state".into()))?
        .successor(now);
    s.active = false;
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_ids_in_the_idps_own_format_name_another_user() {
        assert!(is_idp_user_id(Source::Okta, "00u1a2b3c4d5e6f7g8h9"));
        assert!(!is_idp_user_id(Source::Okta, "jane.doe"));
        assert!(!is_idp_user_id(Source::Okta, "00u-short"));
        assert!(is_idp_user_id(
            Source::Entra,
            "5b3f0a2e-9c1d-4e8b-a6f7-1d2c3b4a5e6f"
        ));
        assert!(!is_idp_user_id(Source::Entra, "alex.wilber"));
        assert!(!is_idp_user_id(
            Source::Entra,
            "5b3f0a2e+9c1d-4e8b-a6f7-1d2c3b4a5e6f"
        ));
    }
}
